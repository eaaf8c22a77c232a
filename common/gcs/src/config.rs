//! GCS settings, read once at start-up from environment variables (envy). Every variable is
//! in the README's configuration table; an error names the variable it is about.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Which byte store the registry uses (`STORAGE_BACKEND`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Files under `DATA_DIR` (the embedded default).
    #[default]
    Fs,
    /// A Google Cloud Storage bucket.
    Gcs,
    /// An S3-compatible bucket (AWS S3, Cloudflare R2, MinIO): the `registry-s3` crate.
    S3,
}

#[derive(Debug, Deserialize)]
struct BackendVar {
    #[serde(default)]
    storage_backend: Backend,
}

impl Backend {
    /// `STORAGE_BACKEND`: `fs` (default), `gcs` or `s3`.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    fn from_vars(vars: impl Iterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        envy::from_iter::<_, BackendVar>(vars)
            .map(|v| v.storage_backend)
            .map_err(|e| {
                ConfigError::Invalid(format!("STORAGE_BACKEND: {e} (expected fs, gcs or s3)"))
            })
    }
}

/// Where the bucket is and how to reach it.
#[derive(Debug, Clone, Deserialize)]
pub struct GcsConfig {
    /// `BUCKET_NAME`: the bucket holding blobs and upload parts.
    pub bucket_name: String,
    /// `GCS_PREFIX`: a prefix put before every object name (e.g. `registry/`), so that one
    /// bucket can hold several registries. Empty by default.
    #[serde(default)]
    pub gcs_prefix: String,
    /// `GCS_ENDPOINT`: base URL of the storage service, e.g. `http://127.0.0.2` for an
    /// emulator. Unset: the real service.
    #[serde(default)]
    pub gcs_endpoint: Option<String>,
    /// `GCS_ANONYMOUS`: send no credentials (for an emulator). Off by default: Application
    /// Default Credentials (the Cloud Run service account, or `GOOGLE_APPLICATION_CREDENTIALS`).
    #[serde(default)]
    pub gcs_anonymous: bool,
    /// `GCS_REDIRECT_DOWNLOADS`: answer blob downloads with a redirect to a signed URL, rather
    /// than streaming the bytes through the service. On by default.
    #[serde(default = "default_true")]
    pub gcs_redirect_downloads: bool,
    /// `GCS_SIGNED_URL_TTL_SECS`: lifetime of a signed download URL. A download that has
    /// started goes on after the URL expires.
    #[serde(default = "default_signed_url_ttl")]
    pub gcs_signed_url_ttl_secs: u64,
    /// `GCS_SIGNING_KEY_FILE`: a service-account JSON key that signs download URLs locally.
    /// Unset: the signer of Application Default Credentials (on Cloud Run, IAM `signBlob` as
    /// the service account).
    #[serde(default)]
    pub gcs_signing_key_file: Option<PathBuf>,
}

fn default_true() -> bool {
    true
}
fn default_signed_url_ttl() -> u64 {
    300
}

/// GCS signs URLs for at most seven days.
const MAX_SIGNED_URL_TTL: u64 = 7 * 24 * 3600;

/// A configuration error, naming the variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid GCS configuration: {0}")]
    Env(#[from] envy::Error),
    #[error("invalid GCS configuration: {0}")]
    Invalid(String),
}

impl GcsConfig {
    /// A configuration for `bucket` with every other setting at its default.
    pub fn new(bucket: impl Into<String>) -> Self {
        GcsConfig {
            bucket_name: bucket.into(),
            gcs_prefix: String::new(),
            gcs_endpoint: None,
            gcs_anonymous: false,
            gcs_redirect_downloads: true,
            gcs_signed_url_ttl_secs: default_signed_url_ttl(),
            gcs_signing_key_file: None,
        }
    }

    /// From `BUCKET_NAME` and the `GCS_*` variables.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    fn from_vars(vars: impl Iterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let config: GcsConfig = envy::from_iter(vars).map_err(|e| match e {
            envy::Error::MissingValue(var) => ConfigError::Invalid(format!(
                "{} must be set when STORAGE_BACKEND=gcs",
                var.to_uppercase()
            )),
            other => ConfigError::Env(other),
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.bucket_name.is_empty() || self.bucket_name.contains('/') {
            return Err(ConfigError::Invalid(format!(
                "BUCKET_NAME={:?}: expected a bucket name",
                self.bucket_name
            )));
        }
        if let Some(endpoint) = &self.gcs_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(ConfigError::Invalid(format!(
                "GCS_ENDPOINT={endpoint:?}: expected an http:// or https:// URL"
            )));
        }
        if self.gcs_signed_url_ttl_secs == 0 || self.gcs_signed_url_ttl_secs > MAX_SIGNED_URL_TTL {
            return Err(ConfigError::Invalid(format!(
                "GCS_SIGNED_URL_TTL_SECS={}: expected 1 to {MAX_SIGNED_URL_TTL} seconds",
                self.gcs_signed_url_ttl_secs
            )));
        }
        if self.gcs_prefix.starts_with('/') {
            return Err(ConfigError::Invalid(format!(
                "GCS_PREFIX={:?}: object names do not start with /",
                self.gcs_prefix
            )));
        }
        Ok(())
    }

    /// The prefix as object names use it: empty, or ending with one `/`.
    pub(crate) fn object_prefix(&self) -> String {
        let trimmed = self.gcs_prefix.trim_end_matches('/');
        if trimmed.is_empty() {
            String::new()
        } else {
            format!("{trimmed}/")
        }
    }

    /// The endpoint without a trailing slash, when one is configured.
    pub(crate) fn endpoint(&self) -> Option<&str> {
        self.gcs_endpoint
            .as_deref()
            .map(|e| e.trim_end_matches('/'))
    }

    pub(crate) fn signed_url_ttl(&self) -> Duration {
        Duration::from_secs(self.gcs_signed_url_ttl_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_normalised_to_one_trailing_slash() {
        let mut config = GcsConfig::new("b");
        assert_eq!(config.object_prefix(), "");
        config.gcs_prefix = "registry".into();
        assert_eq!(config.object_prefix(), "registry/");
        config.gcs_prefix = "a/b//".into();
        assert_eq!(config.object_prefix(), "a/b/");
    }

    fn vars(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn the_backend_defaults_to_files_and_names_its_variable_when_wrong() {
        assert_eq!(Backend::from_vars(vars(&[])).unwrap(), Backend::Fs);
        assert_eq!(
            Backend::from_vars(vars(&[("STORAGE_BACKEND", "gcs")])).unwrap(),
            Backend::Gcs
        );
        assert_eq!(
            Backend::from_vars(vars(&[("STORAGE_BACKEND", "s3")])).unwrap(),
            Backend::S3
        );
        let error = Backend::from_vars(vars(&[("STORAGE_BACKEND", "ftp")])).unwrap_err();
        assert!(error.to_string().contains("STORAGE_BACKEND"), "{error}");
    }

    #[test]
    fn variables_are_read_with_their_defaults() {
        let config = GcsConfig::from_vars(vars(&[
            ("BUCKET_NAME", "blobs"),
            ("GCS_ENDPOINT", "http://127.0.0.2/"),
            ("GCS_ANONYMOUS", "true"),
        ]))
        .unwrap();
        assert_eq!(config.bucket_name, "blobs");
        assert_eq!(config.endpoint(), Some("http://127.0.0.2"));
        assert!(config.gcs_anonymous);
        assert!(config.gcs_redirect_downloads);
        assert_eq!(config.signed_url_ttl(), Duration::from_secs(300));
        let missing = GcsConfig::from_vars(vars(&[])).unwrap_err().to_string();
        assert!(missing.contains("BUCKET_NAME must be set"), "{missing}");
        let malformed = GcsConfig::from_vars(vars(&[
            ("BUCKET_NAME", "blobs"),
            ("GCS_SIGNED_URL_TTL_SECS", "soon"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(malformed.contains("GCS_SIGNED_URL_TTL_SECS"), "{malformed}");
    }

    #[test]
    fn invalid_values_name_their_variable() {
        let mut config = GcsConfig::new("b");
        config.gcs_endpoint = Some("127.0.0.2".into());
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("GCS_ENDPOINT")
        );
        let mut config = GcsConfig::new("b");
        config.gcs_signed_url_ttl_secs = 0;
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains("GCS_SIGNED_URL_TTL_SECS"));
        assert!(
            GcsConfig::new("")
                .validate()
                .unwrap_err()
                .to_string()
                .contains("BUCKET_NAME")
        );
    }
}

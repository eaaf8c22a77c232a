//! Where bytes and metadata live: [`StorageConfig`] (`DATA_DIR`, and the byte store
//! `STORAGE_BACKEND` names, each backend with its own settings) and [`DbConfig`].
//!
//! Each backend's settings are plain data here, so that the backend's crate receives them
//! and reads no environment itself, and `common` depends on no backend crate.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, S3Config, Vars};

/// `DATA_DIR` and the byte store.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// `DATA_DIR`: the registry's local directory: the filesystem backend's bytes, and the
    /// SQLite file unless `DATABASE_URL` names another database. Created at start-up.
    pub data_dir: PathBuf,
    /// `STORAGE_BACKEND` and its settings.
    pub backend: StorageBackend,
}

/// The byte store, with its settings (`STORAGE_BACKEND`).
#[derive(Debug, Clone)]
pub enum StorageBackend {
    /// `fs` (the default): files under `DATA_DIR`.
    Filesystem,
    /// `gcs`: a Google Cloud Storage bucket.
    Gcs(GcsConfig),
    /// `s3`: an S3-compatible bucket (AWS S3, Cloudflare R2, MinIO).
    S3(S3Config),
}

impl StorageBackend {
    /// The value of `STORAGE_BACKEND` that selects it.
    pub fn name(&self) -> &'static str {
        match self {
            StorageBackend::Filesystem => "fs",
            StorageBackend::Gcs(_) => "gcs",
            StorageBackend::S3(_) => "s3",
        }
    }
}

#[derive(Debug, Deserialize)]
struct StorageVars {
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
    #[serde(default)]
    storage_backend: Option<String>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}

impl StorageConfig {
    /// `DATA_DIR`, `STORAGE_BACKEND`, and the chosen backend's variables (only those).
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let raw: StorageVars = vars.parse()?;
        let backend = match raw.storage_backend.as_deref().unwrap_or("fs") {
            "fs" => StorageBackend::Filesystem,
            "gcs" => StorageBackend::Gcs(GcsConfig::from_vars(vars)?),
            "s3" => StorageBackend::S3(S3Config::from_vars(vars)?),
            other => {
                return Err(ConfigError::Invalid(format!(
                    "STORAGE_BACKEND={other:?}: expected fs, gcs or s3"
                )));
            }
        };
        Ok(StorageConfig {
            data_dir: raw.data_dir,
            backend,
        })
    }

    /// Files under `data_dir`, the embedded default.
    pub fn filesystem(data_dir: impl Into<PathBuf>) -> Self {
        StorageConfig {
            data_dir: data_dir.into(),
            backend: StorageBackend::Filesystem,
        }
    }
}

/// Where the bucket is and how to reach it (`STORAGE_BACKEND=gcs`); the `registry-gcs` crate
/// opens it.
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
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let config: GcsConfig = vars.parse().map_err(|e| match e {
            ConfigError::Missing(var) => {
                ConfigError::Invalid(format!("{var} must be set when STORAGE_BACKEND=gcs"))
            }
            other => other,
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
    pub fn object_prefix(&self) -> String {
        let trimmed = self.gcs_prefix.trim_end_matches('/');
        if trimmed.is_empty() {
            String::new()
        } else {
            format!("{trimmed}/")
        }
    }

    /// The endpoint without a trailing slash, when one is configured.
    pub fn endpoint(&self) -> Option<&str> {
        self.gcs_endpoint
            .as_deref()
            .map(|e| e.trim_end_matches('/'))
    }

    pub fn signed_url_ttl(&self) -> Duration {
        Duration::from_secs(self.gcs_signed_url_ttl_secs)
    }
}

/// The metadata database.
#[derive(Debug, Clone, Deserialize)]
pub struct DbConfig {
    /// `DATABASE_URL` (`DB_URL` is rewritten to it, see `config::dropin`): `sqlite://…` or
    /// `postgres://…`; when unset, the SQLite file `DATA_DIR/registry.db` (see
    /// [`DbConfig::url_in`]).
    #[serde(default)]
    pub database_url: Option<String>,
    /// `DB_MAX_CONNECTIONS`: most connections in the pool (SQLite: the read pool; its writes
    /// always use one connection).
    #[serde(default = "default_db_max_connections")]
    pub db_max_connections: u32,
    /// `DB_MIN_CONNECTIONS`: connections kept open when idle; 0 suits scale-to-zero.
    #[serde(default)]
    pub db_min_connections: u32,
    /// `DB_ACQUIRE_TIMEOUT_SECS`: how long a request waits for a connection before failing.
    #[serde(default = "default_db_acquire_timeout")]
    pub db_acquire_timeout_secs: u64,
    /// `DB_IDLE_TIMEOUT_SECS`: an idle connection above the minimum is closed after this long.
    #[serde(default = "default_db_idle_timeout")]
    pub db_idle_timeout_secs: u64,
    /// `DB_MIGRATE_ON_START`: apply pending migrations when the process starts.
    #[serde(default = "default_true")]
    pub db_migrate_on_start: bool,
}

impl DbConfig {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        vars.parse()
    }

    /// The database URL in force: the configured one, or the SQLite file under `data_dir`
    /// (`DATA_DIR`).
    pub fn url_in(&self, data_dir: &Path) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("registry.db").display()
            ),
        }
    }
}

fn default_db_max_connections() -> u32 {
    8
}
fn default_db_acquire_timeout() -> u64 {
    10
}
fn default_db_idle_timeout() -> u64 {
    60
}

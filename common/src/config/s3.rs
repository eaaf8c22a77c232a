//! Where an S3-compatible bucket is and how to reach it (`STORAGE_BACKEND=s3`); the
//! `registry-s3` crate opens it. [`S3Config::from_vars`] is a pure function of the variables;
//! every variable is in the README's configuration table and an error names the variable it
//! is about. Credentials are not read here: they come from the AWS SDK's standard chain (see
//! the `registry-s3` crate docs).

use std::time::Duration;

use super::{ConfigError, Vars};

/// S3 presigns URLs for at most seven days.
const MAX_PRESIGNED_URL_TTL: u64 = 7 * 24 * 3600;

/// Where the bucket is and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// `S3_BUCKET` (required): the bucket holding blobs and upload parts.
    pub bucket: String,
    /// `S3_ENDPOINT`: base URL of the service, e.g. `https://<account>.r2.cloudflarestorage.com`
    /// or `http://127.0.0.1:9000`. Unset: AWS S3 of the region.
    pub endpoint: Option<String>,
    /// `S3_REGION`, else `AWS_REGION`, else `auto` (what R2 expects).
    pub region: String,
    /// `S3_PREFIX`: put before every object key (normalised to end with one `/`), so that one
    /// bucket can hold several registries. Empty by default.
    pub prefix: String,
    /// `S3_FORCE_PATH_STYLE`: `http://host/bucket/key` rather than `http://bucket.host/key`
    /// (MinIO and most self-hosted servers). Off by default.
    pub force_path_style: bool,
    /// `S3_REDIRECT_DOWNLOADS`: a blob `GET` answers `307` to a presigned URL. On by default.
    pub redirect_downloads: bool,
    /// `S3_PRESIGNED_URL_TTL_SECS`: lifetime of a presigned download URL (default 300). A
    /// download that has started goes on after the URL expires.
    pub presigned_url_ttl: Duration,
    /// `S3_PUBLIC_ENDPOINT`: the endpoint signed into download URLs, for a bucket that clients
    /// reach under another name than the registry does (a proxy, a custom domain). Unset: the
    /// endpoint the registry uses.
    pub public_endpoint: Option<String>,
    /// Fixed keys instead of the AWS credential chain: `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY` when both are set without `AWS_SESSION_TOKEN` (the chain's
    /// own first step, read here so that distribution's `REGISTRY_STORAGE_S3_ACCESSKEY` and
    /// `SECRETKEY` work the same), or given by tests and embedders.
    pub static_credentials: Option<StaticCredentials>,
}

/// An access key pair; the secret never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

impl S3Config {
    /// A configuration for `bucket` with every other setting at its default.
    pub fn new(bucket: impl Into<String>) -> Self {
        S3Config {
            bucket: bucket.into(),
            endpoint: None,
            region: "auto".to_owned(),
            prefix: String::new(),
            force_path_style: false,
            redirect_downloads: true,
            presigned_url_ttl: Duration::from_secs(300),
            public_endpoint: None,
            static_credentials: None,
        }
    }

    /// From `S3_*` (and `AWS_REGION`) in `vars`; empty values count as unset.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            vars.get(name)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let bucket = get("S3_BUCKET").ok_or_else(|| {
            ConfigError::Invalid("S3_BUCKET must be set when STORAGE_BACKEND=s3".to_owned())
        })?;
        if bucket.contains('/') {
            return Err(ConfigError::Invalid(format!(
                "S3_BUCKET={bucket:?}: expected a bucket name (put key prefixes in S3_PREFIX)"
            )));
        }
        let endpoint = get("S3_ENDPOINT")
            .map(|e| url("S3_ENDPOINT", e))
            .transpose()?;
        let public_endpoint = get("S3_PUBLIC_ENDPOINT")
            .map(|e| url("S3_PUBLIC_ENDPOINT", e))
            .transpose()?;
        let region = get("S3_REGION")
            .or_else(|| get("AWS_REGION"))
            .unwrap_or_else(|| "auto".to_owned());
        if endpoint.is_none() && region == "auto" {
            return Err(ConfigError::Invalid(
                "S3_REGION (or AWS_REGION) must be set for AWS S3 (S3_ENDPOINT unset)".to_owned(),
            ));
        }
        let prefix = get("S3_PREFIX").unwrap_or_default();
        if prefix.starts_with('/') {
            return Err(ConfigError::Invalid(format!(
                "S3_PREFIX={prefix:?}: object keys do not start with /"
            )));
        }
        let trimmed = prefix.trim_end_matches('/');
        let prefix = if trimmed.is_empty() {
            String::new()
        } else {
            format!("{trimmed}/")
        };
        let ttl = match get("S3_PRESIGNED_URL_TTL_SECS") {
            None => 300,
            Some(raw) => match raw.parse::<u64>() {
                Ok(secs) if (1..=MAX_PRESIGNED_URL_TTL).contains(&secs) => secs,
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "S3_PRESIGNED_URL_TTL_SECS={raw:?}: expected 1 to {MAX_PRESIGNED_URL_TTL} seconds"
                    )));
                }
            },
        };
        Ok(S3Config {
            bucket,
            endpoint,
            region,
            prefix,
            force_path_style: flag(vars, "S3_FORCE_PATH_STYLE", false)?,
            redirect_downloads: flag(vars, "S3_REDIRECT_DOWNLOADS", true)?,
            presigned_url_ttl: Duration::from_secs(ttl),
            public_endpoint,
            static_credentials: match (
                get("AWS_ACCESS_KEY_ID"),
                get("AWS_SECRET_ACCESS_KEY"),
                get("AWS_SESSION_TOKEN"),
            ) {
                (Some(access_key_id), Some(secret_access_key), None) => Some(StaticCredentials {
                    access_key_id,
                    secret_access_key,
                }),
                _ => None,
            },
        })
    }
}

fn url(name: &str, value: String) -> Result<String, ConfigError> {
    if value.starts_with("http://") || value.starts_with("https://") {
        Ok(value.trim_end_matches('/').to_owned())
    } else {
        Err(ConfigError::Invalid(format!(
            "{name}={value:?}: expected an http:// or https:// URL"
        )))
    }
}

fn flag(vars: &Vars, name: &str, default: bool) -> Result<bool, ConfigError> {
    match vars
        .get(name)
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") => Ok(default),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some("false" | "0" | "no" | "off") => Ok(false),
        Some(other) => Err(ConfigError::Invalid(format!(
            "{name}={other:?}: expected true or false"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs.iter().copied().collect()
    }

    #[test]
    fn defaults_apply_when_only_the_bucket_is_set() {
        let config = S3Config::from_vars(&vars(&[
            ("S3_BUCKET", "blobs"),
            ("S3_ENDPOINT", "https://acc.r2.cloudflarestorage.com"),
        ]))
        .unwrap();
        let mut expected = S3Config::new("blobs");
        expected.endpoint = Some("https://acc.r2.cloudflarestorage.com".to_owned());
        assert_eq!(config, expected);
    }

    #[test]
    fn every_variable_is_read() {
        let config = S3Config::from_vars(&vars(&[
            ("S3_BUCKET", "blobs"),
            ("S3_ENDPOINT", "http://127.0.0.1:9000/"),
            ("S3_REGION", "eu-west-1"),
            ("AWS_REGION", "us-east-1"),
            ("S3_PREFIX", "a/b//"),
            ("S3_FORCE_PATH_STYLE", "true"),
            ("S3_REDIRECT_DOWNLOADS", "false"),
            ("S3_PRESIGNED_URL_TTL_SECS", "60"),
            ("S3_PUBLIC_ENDPOINT", "https://cdn.example.com"),
        ]))
        .unwrap();
        assert_eq!(config.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(config.region, "eu-west-1");
        assert_eq!(config.prefix, "a/b/");
        assert!(config.force_path_style);
        assert!(!config.redirect_downloads);
        assert_eq!(config.presigned_url_ttl, Duration::from_secs(60));
        assert_eq!(
            config.public_endpoint.as_deref(),
            Some("https://cdn.example.com")
        );
    }

    #[test]
    fn the_region_falls_back_to_aws_region_then_auto() {
        let config =
            S3Config::from_vars(&vars(&[("S3_BUCKET", "b"), ("AWS_REGION", "us-east-2")])).unwrap();
        assert_eq!(config.region, "us-east-2");
        let config =
            S3Config::from_vars(&vars(&[("S3_BUCKET", "b"), ("S3_ENDPOINT", "http://h")])).unwrap();
        assert_eq!(config.region, "auto");
        let error = S3Config::from_vars(&vars(&[("S3_BUCKET", "b")])).unwrap_err();
        assert!(error.to_string().contains("S3_REGION"), "{error}");
    }

    #[test]
    fn errors_name_their_variable() {
        for (pairs, variable) in [
            (vec![], "S3_BUCKET must be set"),
            (vec![("S3_BUCKET", "a/b")], "S3_BUCKET"),
            (vec![("S3_ENDPOINT", "127.0.0.1:9000")], "S3_ENDPOINT"),
            (vec![("S3_PUBLIC_ENDPOINT", "cdn")], "S3_PUBLIC_ENDPOINT"),
            (vec![("S3_PREFIX", "/x")], "S3_PREFIX"),
            (
                vec![("S3_FORCE_PATH_STYLE", "maybe")],
                "S3_FORCE_PATH_STYLE",
            ),
            (
                vec![("S3_REDIRECT_DOWNLOADS", "2")],
                "S3_REDIRECT_DOWNLOADS",
            ),
            (
                vec![("S3_PRESIGNED_URL_TTL_SECS", "0")],
                "S3_PRESIGNED_URL_TTL_SECS",
            ),
            (
                vec![("S3_PRESIGNED_URL_TTL_SECS", "soon")],
                "S3_PRESIGNED_URL_TTL_SECS",
            ),
        ] {
            let mut all = pairs.clone();
            if !pairs.iter().any(|(k, _)| *k == "S3_REGION") {
                all.push(("S3_REGION", "us-east-1"));
            }
            if variable != "S3_BUCKET must be set" && !pairs.iter().any(|(k, _)| *k == "S3_BUCKET")
            {
                all.push(("S3_BUCKET", "b"));
            }
            let error = S3Config::from_vars(&vars(&all)).unwrap_err().to_string();
            assert!(error.contains(variable), "{error} should name {variable}");
        }
    }
}

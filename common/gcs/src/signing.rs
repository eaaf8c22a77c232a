//! V4 signed download URLs, with the google-cloud-storage crate's builder.
//!
//! The signer is a service-account key when `GCS_SIGNING_KEY_FILE` names one (signing is
//! local), or else that of Application Default Credentials: on Cloud Run, IAM `signBlob` as
//! the service account (which needs `roles/iam.serviceAccountTokenCreator` on itself). With
//! `GCS_ANONYMOUS` and no key there is nothing to sign with, and downloads stream through.

use std::time::Duration;

use google_cloud_auth::signer::Signer;
use google_cloud_storage::builder::storage::SignedUrlBuilder;
use registry_common::config::GcsConfig;

use crate::error::{GcsError, OpenError};

/// The signer download URLs use, or `None` when downloads are not redirected.
pub(crate) fn signer(config: &GcsConfig) -> Result<Option<Signer>, OpenError> {
    if !config.gcs_redirect_downloads {
        return Ok(None);
    }
    if let Some(path) = &config.gcs_signing_key_file {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| OpenError::SigningKeyFile {
            path: shown.clone(),
            source,
        })?;
        let key: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| OpenError::SigningKey {
                path: shown.clone(),
                source: Box::new(e),
            })?;
        let signer = google_cloud_auth::credentials::service_account::Builder::new(key)
            .build_signer()
            .map_err(|e| OpenError::SigningKey {
                path: shown,
                source: Box::new(e),
            })?;
        return Ok(Some(signer));
    }
    if config.gcs_anonymous {
        tracing::warn!(
            "GCS_ANONYMOUS without GCS_SIGNING_KEY_FILE: nothing can sign download URLs, so \
             blob downloads stream through the service"
        );
        return Ok(None);
    }
    google_cloud_auth::credentials::Builder::default()
        .build_signer()
        .map(Some)
        .map_err(OpenError::Credentials)
}

/// A URL that lets its holder `GET` one object (with or without `Range`) until `ttl` passes.
pub(crate) async fn signed_get_url(
    signer: &Signer,
    bucket_path: &str,
    object: &str,
    endpoint: Option<&str>,
    ttl: Duration,
) -> Result<String, GcsError> {
    let mut builder = SignedUrlBuilder::for_object(bucket_path, object)
        .with_method(http::Method::GET)
        .with_expiration(ttl);
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    builder
        .sign_with(signer)
        .await
        .map_err(|source| GcsError::Sign {
            object: object.to_owned(),
            source,
        })
}

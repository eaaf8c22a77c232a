//! Domain logic: what each registry operation means, over the metadata layer and storage.
//! Services of the distribution API return [`RegistryError`](crate::error::RegistryError)
//! values ready to answer; the management service returns its own typed errors, which the
//! `api` crate maps to its envelope. Handlers call services, services never call handlers.

mod blob_service;
pub mod management_model;
mod management_service;
mod manifest_service;
pub mod upload_service;

pub use blob_service::{BlobRead, BlobService};
pub use management_service::{ManagementError, ManagementService};
pub use manifest_service::{ManifestService, Page, PushedManifest};
pub use upload_service::{ContentRange, UploadService, UploadState};

use crate::error::RegistryError;
use crate::metadata::MetadataError;
use crate::storage::StorageError;

impl From<MetadataError> for RegistryError {
    fn from(error: MetadataError) -> Self {
        RegistryError::internal(&error)
    }
}

impl From<StorageError> for RegistryError {
    fn from(error: StorageError) -> Self {
        match &error {
            // Retryable: clients (docker, containerd) retry a 503 that says when.
            StorageError::Unavailable { .. } => {
                tracing::warn!(error = %crate::error::ErrorChain(&error), "storage unavailable");
                RegistryError::new(
                    crate::error::OciCode::Unavailable,
                    "storage unavailable; retry later",
                )
                .with_header(http::header::RETRY_AFTER, "1")
            }
            _ => RegistryError::internal(&error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unavailable_store_is_a_retryable_503_and_other_failures_a_500() {
        let unavailable = RegistryError::from(StorageError::Unavailable {
            key: "blobs/x".into(),
            source: std::io::Error::other("SlowDown"),
        });
        assert_eq!(unavailable.status, http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            unavailable
                .headers
                .iter()
                .any(|(name, value)| name == http::header::RETRY_AFTER && value == "1")
        );
        let broken = RegistryError::from(StorageError::Io {
            key: "blobs/x".into(),
            source: std::io::Error::other("disk"),
        });
        assert_eq!(broken.status, http::StatusCode::INTERNAL_SERVER_ERROR);
    }
}

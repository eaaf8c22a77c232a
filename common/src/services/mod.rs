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

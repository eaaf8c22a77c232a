//! Google Cloud Storage as the registry's byte store: [`GcsStorage`] implements the storage
//! trait of `registry-common` over one bucket.
//!
//! Kept in its own crate because google-cloud-storage is slow to compile: only this crate
//! and the binaries that link it pay for it. It reads no environment: the binaries read the
//! settings ([`GcsConfig`], `STORAGE_BACKEND=gcs`) and hand [`open_storage`] to
//! `registry_common::bootstrap::StorageBackends::with_gcs`.

mod error;
mod json_api;
mod listing;
mod signing;
mod storage;
mod upload;

use std::sync::Arc;

use registry_common::bootstrap::OpenedStorage;
use registry_common::storage::Storage;

pub use error::OpenError;
pub use json_api::{ListPage, ObjectInfo};
pub use registry_common::config::GcsConfig;
pub use storage::GcsStorage;

/// Opens the bucket `config` names, in the shape `StorageBackends::with_gcs` takes.
pub fn open_storage(config: &GcsConfig) -> OpenedStorage<'_> {
    Box::pin(async move {
        let storage = GcsStorage::new(config.clone()).await?;
        Ok(Arc::new(storage) as Arc<dyn Storage>)
    })
}

//! Google Cloud Storage as the registry's byte store: [`GcsStorage`] implements the storage
//! trait of `registry-common` over one bucket.
//!
//! Kept in its own crate because google-cloud-storage is slow to compile: only this crate
//! and the binaries that link it pay for it. The binaries choose the backend at start-up with
//! [`storage_from_env`] (`STORAGE_BACKEND=fs|gcs|s3`) and hand it to
//! `registry_common::bootstrap::open_state_with`.

mod config;
mod error;
mod json_api;
mod listing;
mod signing;
mod storage;
mod upload;

use std::sync::Arc;

use registry_common::config::{Config, StorageConfig};
use registry_common::http::service_main::OpenedStorage;
use registry_common::storage::{FsStorage, Storage};

pub use config::{Backend, ConfigError, GcsConfig};
pub use error::OpenError;
pub use json_api::{ListPage, ObjectInfo};
pub use storage::GcsStorage;

/// The byte store `STORAGE_BACKEND` names: files under `DATA_DIR` (`fs`, the default), the
/// bucket of `BUCKET_NAME` (`gcs`), or the bucket of `S3_BUCKET` (`s3`, see `registry-s3`).
/// The S3 dispatch sits here until configuration has one place that knows every backend.
pub async fn storage_from_env(storage: &StorageConfig) -> Result<Arc<dyn Storage>, OpenError> {
    Ok(match Backend::from_env()? {
        Backend::Fs => Arc::new(FsStorage::new(&storage.data_dir)),
        Backend::Gcs => Arc::new(GcsStorage::from_env().await?),
        Backend::S3 => Arc::new(registry_s3::S3Storage::from_env().await?),
    })
}

/// [`storage_from_env`] in the shape `registry_common::http::service_main::Plugins` takes.
pub fn open_storage(config: &Config) -> OpenedStorage<'_> {
    Box::pin(async move {
        storage_from_env(&config.storage)
            .await
            .map_err(|e| Box::new(e) as registry_common::http::service_main::PluginError)
    })
}

//! Domain logic: what each registry operation means, over the metadata layer and storage.
//! Services speak the domain only: typed arguments, typed results and one error enum each
//! (`BlobError`, `UploadError`, `ManifestError`, `CacheError`, `ManagementError`), no HTTP. The HTTP layer
//! maps those errors once (its `oci_error` module for the distribution API, the `api`
//! crate's envelope for management). Handlers call services, services never call handlers.

mod blob_service;
pub mod cache;
pub mod events;
pub mod management_model;
mod management_service;
mod manifest_service;
mod page;
pub mod upload_service;

pub use blob_service::{BlobAnswer, BlobError, BlobRead, BlobService, RangeSpec};
pub use cache::{CacheError, CacheService};
pub use events::EventRecorder;
pub use management_service::{ManagementError, ManagementService};
pub use manifest_service::{ManifestError, ManifestService, PushedManifest};
pub use page::Page;
pub use upload_service::{ContentRange, SessionAt, UploadError, UploadService, UploadState};

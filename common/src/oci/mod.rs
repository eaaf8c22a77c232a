//! The OCI domain: names, tags, digests and manifests, each parsed once at the edge so that
//! the rest of the code cannot hold an invalid one.

pub mod digest;
pub mod manifest;
pub mod name;
pub mod upload_id;

pub use digest::{Algorithm, Digest, DigestHasher};
pub use manifest::{Descriptor, ManifestKind, ParsedManifest};
pub use name::{Reference, RepositoryName, Tag};
pub use upload_id::UploadId;

//! The OCI domain: names, tags, digests and manifests, each parsed once at the edge so that
//! the rest of the code cannot hold an invalid one.

pub mod digest;
pub mod manifest;
pub mod name;
pub mod upload_id;

pub use digest::{Algorithm, Digest, DigestError, DigestHasher};
pub use manifest::{Descriptor, InvalidManifest, ManifestKind, MediaType, ParsedManifest};
pub use name::{NameError, Reference, ReferenceError, RepositoryName, Tag, TagError};
pub use upload_id::{UploadId, UploadIdError};

/// Cuts untrusted input kept in an error (and echoed in its detail) to a bounded length.
pub(crate) fn truncate(raw: &str, max: usize) -> String {
    if raw.len() <= max {
        return raw.to_owned();
    }
    let mut end = max;
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &raw[..end])
}

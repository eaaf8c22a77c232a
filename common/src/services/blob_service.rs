//! Reading and deleting blobs, always through the repository's link. A `GET` is one call
//! ([`BlobService::get`]) and one metadata query: the link gives the size, the size resolves
//! the requested range, and the answer is a redirect to the backend or the bytes.

use std::sync::Arc;

use super::events::EventRecorder;
use crate::error::ErrorChain;
use crate::events::EventOrigin;
use crate::metadata::{Deletion, Metadata, MetadataError};
use crate::oci::{Digest, RepositoryName};
use crate::storage::{BlobKey, ByteRange, ByteStream, Storage, StorageError};

/// Blob reads and deletes.
#[derive(Debug, Clone)]
pub struct BlobService {
    metadata: Metadata,
    storage: Arc<dyn Storage>,
    events: EventRecorder,
}

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The blob is not linked to the repository.
    #[error("blob {digest} unknown to the repository")]
    Unknown { digest: Digest },
    /// The requested range starts at or past the end of a blob of `size` bytes.
    #[error("range not satisfiable for a blob of {size} bytes")]
    RangeUnsatisfiable { size: u64 },
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A byte range as a client asks for it, before the size is known (RFC 9110's forms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `start-end`, inclusive; `end` may lie past the end.
    Bounded { start: u64, end: u64 },
    /// `start-`: to the end.
    From { start: u64 },
    /// `-len`: the last `len` bytes.
    Suffix { len: u64 },
}

impl RangeSpec {
    /// The bytes this names in an object of `size` bytes; `None` when it names none.
    pub fn resolve(self, size: u64) -> Option<ByteRange> {
        let last = size.checked_sub(1)?;
        let (start, end) = match self {
            RangeSpec::Bounded { start, end } => (start, end.min(last)),
            RangeSpec::From { start } => (start, last),
            RangeSpec::Suffix { len: 0 } => return None,
            RangeSpec::Suffix { len } => (size.saturating_sub(len), last),
        };
        (start <= last).then_some(ByteRange { start, end })
    }
}

/// What a blob `GET` sends.
#[derive(Debug)]
pub enum BlobAnswer {
    /// Fetch it from the storage backend (a signed URL, which honours `Range` itself).
    Redirect { url: String },
    /// The bytes, streamed through the registry.
    Bytes(BlobRead),
}

/// A blob being read: its full size, the range served (if any) and the bytes.
pub struct BlobRead {
    pub size: u64,
    pub range: Option<ByteRange>,
    pub body: ByteStream,
}

impl std::fmt::Debug for BlobRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobRead")
            .field("size", &self.size)
            .field("range", &self.range)
            .finish()
    }
}

impl BlobService {
    pub fn new(metadata: Metadata, storage: Arc<dyn Storage>, events: EventRecorder) -> Self {
        BlobService {
            metadata,
            storage,
            events,
        }
    }

    /// The size of a blob linked to the repository; never touches the bytes.
    pub async fn size(&self, name: &RepositoryName, digest: &Digest) -> Result<u64, BlobError> {
        self.metadata
            .linked_blob_size(name, digest)
            .await?
            .ok_or_else(|| BlobError::Unknown {
                digest: digest.clone(),
            })
    }

    /// A linked blob, or the part of it `range` names. A range that cannot be satisfied is
    /// refused even when the backend serves by redirect, since the registry knows the size.
    /// When the backend serves downloads by redirect (GCS signed URLs) the answer is a URL;
    /// signing failures fall back to streaming: a pull should not fail because a redirect
    /// could not be made.
    pub async fn get(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        range: Option<RangeSpec>,
    ) -> Result<BlobAnswer, BlobError> {
        let size = self.size(name, digest).await?;
        let range = match range {
            None => None,
            Some(spec) => Some(
                spec.resolve(size)
                    .ok_or(BlobError::RangeUnsatisfiable { size })?,
            ),
        };
        let key = BlobKey(digest.clone());
        match self.storage.download_url(&key).await {
            Ok(Some(url)) => return Ok(BlobAnswer::Redirect { url }),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(%digest, error = %ErrorChain(&e), "no download URL; streaming instead");
            }
        }
        match self.storage.read(&key, range).await {
            Ok(body) => Ok(BlobAnswer::Bytes(BlobRead { size, range, body })),
            Err(StorageError::NotFound { .. }) => {
                tracing::error!(%digest, repository = %name, "blob linked in metadata is missing from storage");
                Err(BlobError::Unknown {
                    digest: digest.clone(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the blob from the repository (its bytes go with garbage collection). While
    /// manifests of the repository reference it, it stays readable for them and goes with
    /// the last of them (see `Metadata::unlink_blob`).
    pub async fn delete(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        origin: &EventOrigin,
    ) -> Result<(), BlobError> {
        let events = self.events.blob_deleted(origin, name, digest);
        match self.metadata.unlink_blob(name, digest, &events).await? {
            // (A link in use is `Marked`; `InUse` is the manifests' outcome.)
            Deletion::Removed | Deletion::Marked | Deletion::InUse => {
                self.events.committed();
                Ok(())
            }
            Deletion::NotFound => Err(BlobError::Unknown {
                digest: digest.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> Option<ByteRange> {
        Some(ByteRange { start, end })
    }

    #[test]
    fn ranges_resolve_against_the_size_per_rfc_9110() {
        let bounded = |start, end| RangeSpec::Bounded { start, end };
        assert_eq!(bounded(0, 9).resolve(100), r(0, 9));
        assert_eq!(bounded(50, 1000).resolve(100), r(50, 99));
        assert_eq!(bounded(99, 99).resolve(100), r(99, 99));
        assert_eq!(bounded(100, 200).resolve(100), None);
        assert_eq!(RangeSpec::From { start: 90 }.resolve(100), r(90, 99));
        assert_eq!(RangeSpec::From { start: 100 }.resolve(100), None);
        assert_eq!(RangeSpec::Suffix { len: 10 }.resolve(100), r(90, 99));
        assert_eq!(RangeSpec::Suffix { len: 1000 }.resolve(100), r(0, 99));
        assert_eq!(RangeSpec::Suffix { len: 0 }.resolve(100), None);
        for empty in [
            bounded(0, 0),
            RangeSpec::From { start: 0 },
            RangeSpec::Suffix { len: 1 },
        ] {
            assert_eq!(empty.resolve(0), None, "{empty:?}");
        }
    }
}

//! Reading and deleting blobs, always through the repository's link.

use std::sync::Arc;

use http::StatusCode;
use http::header::CONTENT_RANGE;

use crate::error::{OciCode, RegistryError};
use crate::metadata::{Deletion, Metadata};
use crate::oci::{Digest, RepositoryName};
use crate::storage::{BlobKey, ByteRange, ByteStream, Storage, StorageError};

/// Blob reads and deletes.
#[derive(Debug, Clone)]
pub struct BlobService {
    metadata: Metadata,
    storage: Arc<dyn Storage>,
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
    pub fn new(metadata: Metadata, storage: Arc<dyn Storage>) -> Self {
        BlobService { metadata, storage }
    }

    /// The size of a blob linked to the repository; never touches the bytes.
    pub async fn size(&self, name: &RepositoryName, digest: &Digest) -> Result<u64, RegistryError> {
        self.metadata
            .linked_blob_size(name, digest)
            .await?
            .ok_or_else(|| RegistryError::blob_unknown(digest))
    }

    /// Where a client should fetch a linked blob from, when the backend serves downloads by
    /// redirect (GCS signed URLs). A `Range` that cannot be satisfied is answered here (416),
    /// since the registry knows the size. Signing failures fall back to streaming (`None`): a
    /// pull should not fail because a redirect could not be made.
    pub async fn download_url(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        range_header: Option<&str>,
    ) -> Result<Option<String>, RegistryError> {
        let size = self.size(name, digest).await?;
        if let Some(header) = range_header {
            checked_range(header, size)?;
        }
        match self.storage.download_url(&BlobKey(digest.clone())).await {
            Ok(url) => Ok(url),
            Err(e) => {
                tracing::warn!(%digest, error = %crate::error::ErrorChain(&e), "no download URL; streaming instead");
                Ok(None)
            }
        }
    }

    /// Opens a blob for reading, honouring a `Range` header when it names one satisfiable range.
    pub async fn read(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        range_header: Option<&str>,
    ) -> Result<BlobRead, RegistryError> {
        let size = self.size(name, digest).await?;
        let range = match range_header {
            None => None,
            Some(header) => checked_range(header, size)?,
        };
        match self.storage.read(&BlobKey(digest.clone()), range).await {
            Ok(body) => Ok(BlobRead { size, range, body }),
            Err(StorageError::NotFound { .. }) => {
                tracing::error!(%digest, repository = %name, "blob linked in metadata is missing from storage");
                Err(RegistryError::blob_unknown(digest))
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
    ) -> Result<(), RegistryError> {
        match self.metadata.unlink_blob(name, digest).await? {
            // (A link in use is `Marked`; `InUse` is the manifests' outcome.)
            Deletion::Removed | Deletion::Marked | Deletion::InUse => Ok(()),
            Deletion::NotFound => Err(RegistryError::blob_unknown(digest)),
        }
    }
}

/// The range a `Range` header names, `None` to send everything, or the 416 answer.
fn checked_range(header: &str, size: u64) -> Result<Option<ByteRange>, RegistryError> {
    match parse_range(header, size) {
        RangeRequest::Ignore => Ok(None),
        RangeRequest::Range(range) => Ok(Some(range)),
        RangeRequest::Unsatisfiable => Err(RegistryError::new(
            OciCode::RangeInvalid,
            "requested range not satisfiable",
        )
        .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
        .with_header(CONTENT_RANGE, format!("bytes */{size}"))),
    }
}

/// How a `Range` header applies to an object of a known size.
#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    /// Not a single byte range we serve (multiple ranges, other units, garbage): send it all.
    Ignore,
    Range(ByteRange),
    Unsatisfiable,
}

fn parse_range(header: &str, size: u64) -> RangeRequest {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeRequest::Ignore;
    };
    if spec.contains(',') {
        return RangeRequest::Ignore;
    }
    let Some((start, end)) = spec.trim().split_once('-') else {
        return RangeRequest::Ignore;
    };
    let parse = |s: &str| s.trim().parse::<u64>().ok();
    let (start, end) = match (start.trim().is_empty(), end.trim().is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match parse(end) {
            Some(0) => return RangeRequest::Unsatisfiable,
            Some(n) if size > 0 => (size.saturating_sub(n), size - 1),
            Some(_) => return RangeRequest::Unsatisfiable,
            None => return RangeRequest::Ignore,
        },
        (false, true) => match parse(start) {
            Some(s) => (s, size.saturating_sub(1)),
            None => return RangeRequest::Ignore,
        },
        (false, false) => match (parse(start), parse(end)) {
            (Some(s), Some(e)) if s <= e => (s, e.min(size.saturating_sub(1))),
            _ => return RangeRequest::Ignore,
        },
        (true, true) => return RangeRequest::Ignore,
    };
    if start >= size {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Range(ByteRange { start, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> RangeRequest {
        RangeRequest::Range(ByteRange { start, end })
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range("bytes=0-9", 100), r(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), r(90, 99));
        assert_eq!(parse_range("bytes=-10", 100), r(90, 99));
        assert_eq!(parse_range("bytes=-1000", 100), r(0, 99));
        assert_eq!(parse_range("bytes=50-1000", 100), r(50, 99));
        assert_eq!(parse_range("bytes=100-", 100), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=9-0", 100), RangeRequest::Ignore);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeRequest::Ignore);
        assert_eq!(parse_range("items=0-1", 100), RangeRequest::Ignore);
        assert_eq!(parse_range("bytes=x-y", 100), RangeRequest::Ignore);
    }
}

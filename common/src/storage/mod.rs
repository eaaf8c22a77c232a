//! Byte storage behind one small trait, addressed by typed keys. Blobs are content-addressed
//! and written once; uploads are written as parts that a finished upload assembles.
//! Implementations: the local filesystem here; GCS and S3 in crates of their own.
//!
//! # Crash consistency
//!
//! Every backend keeps two promises that make a `SIGKILL` or a power loss at any instant
//! harmless (per operation and per backend in docs/crash-consistency.md):
//!
//! - **Durable when it returns.** [`Storage::put_part`] and [`Storage::assemble`] return only
//!   once the bytes and the names they created survive a power loss (filesystem: `fsync` of
//!   the file and of each directory entry created; GCS and S3: the write request answered).
//!   The caller moves metadata (session row, blob row) only after that.
//! - **Visible only complete.** A part or a blob appears under its key whole or not at all
//!   (filesystem: `link`/`rename` of a synced file; GCS: a finalised upload or a `compose`;
//!   S3: `PutObject`, `CopyObject`, `CompleteMultipartUpload`). What a killed write leaves is
//!   elsewhere (a temp file or intermediates under the upload's prefix, an unfinished
//!   multipart upload) and goes with the upload's other leftovers at `upload-cleanup`.
//!
//! Assembly happens only after the upload service verified the digest, so nothing unverified
//! is ever under a blob key; a blob key is readable by clients only once the metadata links
//! it (`crate::metadata`).

mod fs;

use std::fmt;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;

pub use fs::FsStorage;

use crate::oci::Digest;
use crate::oci::UploadId;

/// A stream of bytes read from or written to storage.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;
/// A body being written; borrowed so the caller keeps what it wraps (e.g. a hasher).
pub type BodyStream<'a> = &'a mut (dyn Stream<Item = std::io::Result<Bytes>> + Send + Unpin);

/// Where a blob's bytes live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobKey(pub Digest);

impl BlobKey {
    /// Relative object path: `blobs/<algorithm>/<first two hex>/<hex>`.
    pub fn path(&self) -> String {
        let hex = self.0.hex();
        format!(
            "blobs/{}/{}/{}",
            self.0.algorithm().as_str(),
            &hex[..2],
            hex
        )
    }
}

/// One part of an upload session: the bytes of one PATCH (or final PUT) request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPartKey {
    pub upload: UploadId,
    pub part: PartName,
}

/// The name of one part within its upload: unique, so that racing requests never write the
/// same part, and ordered by the offset it starts at (`<offset, 20 digits>-<random>`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartName(String);

impl PartName {
    /// A fresh name for a part starting at `offset`.
    pub fn new(offset: u64) -> Self {
        PartName(format!("{offset:020}-{}", uuid::Uuid::new_v4().simple()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The offset the part starts at, for a name made by [`PartName::new`].
    pub fn offset(&self) -> Option<u64> {
        self.0.split_once('-')?.0.parse().ok()
    }
}

/// A name read back from the session's row or from a listing of the upload's parts.
impl From<String> for PartName {
    fn from(name: String) -> Self {
        PartName(name)
    }
}

impl From<&str> for PartName {
    fn from(name: &str) -> Self {
        PartName(name.to_owned())
    }
}

impl std::fmt::Display for PartName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl UploadPartKey {
    pub fn path(&self) -> String {
        format!("uploads/{}/{}", self.upload, self.part)
    }
}

/// An inclusive byte range already checked against the object's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    #[expect(
        clippy::len_without_is_empty,
        reason = "a range holds at least one byte: start <= end"
    )]
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }
}

/// A storage failure, with the key it concerned.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object {key} not found")]
    NotFound { key: String },
    #[error("I/O on {key}")]
    Io {
        key: String,
        #[source]
        source: std::io::Error,
    },
    /// The store is throttling or unreachable, still after the backend's own retries; the
    /// request may succeed later (a `503` to the client, with `Retry-After`).
    #[error("storage unavailable for {key}")]
    Unavailable {
        key: String,
        #[source]
        source: std::io::Error,
    },
    /// The backend cannot do this (e.g. list objects for garbage collection).
    #[error("storage backend does not support {0}")]
    Unsupported(&'static str),
    /// The request body failed (client went away, or sent nothing for too long).
    #[error("reading the request body")]
    Body {
        #[source]
        source: std::io::Error,
    },
}

/// A blob object found by listing storage.
#[derive(Debug, Clone)]
pub struct StoredBlob {
    pub key: BlobKey,
    pub size: u64,
    pub modified: std::time::SystemTime,
}

/// The parts an upload has in storage, found by listing.
#[derive(Debug, Clone)]
pub struct StoredUpload {
    pub upload: UploadId,
    pub parts: Vec<UploadPartKey>,
    /// When its newest part was written.
    pub modified: std::time::SystemTime,
}

/// Byte storage used by every service.
#[async_trait]
pub trait Storage: Send + Sync + fmt::Debug {
    /// Writes a whole part from a body; it is durable when this returns. Returns its length.
    /// On error nothing is left behind under the key.
    async fn put_part(
        &self,
        key: &UploadPartKey,
        body: BodyStream<'_>,
    ) -> Result<u64, StorageError>;

    /// Makes the blob from the parts, in order. A blob that already exists is left as it is.
    /// The parts stay until [`Storage::delete_parts`].
    async fn assemble(&self, parts: &[UploadPartKey], blob: &BlobKey) -> Result<(), StorageError>;

    /// Streams one part back (to hash it again with another algorithm).
    async fn read_part(&self, key: &UploadPartKey) -> Result<ByteStream, StorageError>;

    /// Streams a blob, or a range of it.
    async fn read(
        &self,
        blob: &BlobKey,
        range: Option<ByteRange>,
    ) -> Result<ByteStream, StorageError>;

    /// The blob's size, or `None` when it does not exist.
    async fn stat(&self, blob: &BlobKey) -> Result<Option<u64>, StorageError>;

    /// Deletes a blob; deleting a missing blob is not an error.
    async fn delete_blob(&self, blob: &BlobKey) -> Result<(), StorageError>;

    /// Deletes parts of an upload; missing parts are not an error.
    async fn delete_parts(&self, parts: &[UploadPartKey]) -> Result<(), StorageError>;

    /// A short-lived URL from which a client may `GET` the blob (with or without `Range`)
    /// directly, when this backend serves downloads by redirect; `None` means stream the bytes
    /// through [`Storage::read`]. The backend's configuration decides (GCS: a V4 signed URL,
    /// `GCS_REDIRECT_DOWNLOADS`, `GCS_SIGNED_URL_TTL_SECS`). Callers check that the blob is
    /// linked to the repository first: the URL itself grants access.
    async fn download_url(&self, _blob: &BlobKey) -> Result<Option<String>, StorageError> {
        Ok(None)
    }

    /// Blob objects of one algorithm whose hex starts with `prefix` (two hex digits), for
    /// garbage collection to find objects without a metadata row.
    async fn list_blobs(
        &self,
        _algorithm: crate::oci::Algorithm,
        _prefix: &str,
    ) -> Result<Vec<StoredBlob>, StorageError> {
        Err(StorageError::Unsupported("listing blobs"))
    }

    /// Uploads that have parts in storage, for clean-up of abandoned ones.
    async fn list_uploads(&self) -> Result<Vec<StoredUpload>, StorageError> {
        Err(StorageError::Unsupported("listing uploads"))
    }

    /// Cancels writes a crashed request left unfinished and started before `older_than`
    /// (S3: multipart uploads, billed yet invisible in listings); returns how many. Backends
    /// whose unfinished writes leave nothing behind keep the default.
    async fn abort_abandoned_writes(
        &self,
        _older_than: std::time::SystemTime,
    ) -> Result<u64, StorageError> {
        Ok(0)
    }
}

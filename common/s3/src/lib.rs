//! S3-compatible storage (AWS S3, Cloudflare R2, MinIO) as the registry's byte store:
//! [`S3Storage`] implements the storage trait of `registry-common` over one bucket.
//!
//! # Why the official SDK
//! `aws-sdk-s3` with `aws-config` is the one client that has everything this backend needs in
//! one well-kept place: the standard credential chain (environment keys, profiles, web
//! identity, container and instance metadata), the standard retry mode (exponential backoff
//! with jitter for `SlowDown`/503 throttling, see [`storage`]), presigning, and every
//! operation used below, `UploadPartCopy` with ranges and conditional writes included.
//! `object_store` hides multipart copies behind its own upload API, so it cannot build a
//! blob server-side from stored parts. Kept in a crate of its own because the SDK is heavy to
//! compile: only this crate and the binaries that link it pay for it.
//!
//! # Only operations R2 also implements
//! `PutObject`, `GetObject` (with `Range`), `HeadObject`, `HeadBucket`, `CopyObject`,
//! multipart (`CreateMultipartUpload`, `UploadPart`, `UploadPartCopy` with a source range,
//! `CompleteMultipartUpload`, `AbortMultipartUpload`, `ListMultipartUploads`),
//! `ListObjectsV2`, `DeleteObjects`, and presigned `GET` URLs. So one backend serves AWS, R2
//! and MinIO.
//!
//! # Uploads: stateless, memory flat
//! Every `PATCH` body (and the body of a final `PUT`) becomes one part object under
//! `uploads/<id>/<offset>-<uuid>`, as on the other backends: the upload service records it in
//! the session row only once it is durable, so any instance can take the next `PATCH`, and a
//! body cut off mid-way commits nothing (its multipart upload, if any, is aborted). A body is
//! read into one buffer of at most [`PART_SIZE`] (8 MiB): a body that ends before filling it is
//! one `PutObject`; a longer one is a multipart upload of equal 8 MiB parts, each uploaded as it
//! fills. Buffering one part makes each S3 request replayable, which is what lets the SDK retry
//! a throttled part (a streamed body cannot be rewound). One request body holds at most
//! 10,000 × 8 MiB (78 GiB); larger layers come in several `PATCH`es.
//!
//! At `PUT ?digest=` (after the service verified the digest, so nothing unverified is ever
//! visible) the blob is made from the part objects, server-side wherever it can be:
//! - one part object (a monolithic or one-`PATCH` upload, up to 5 GiB): one `CopyObject`;
//! - blobs up to 8 MiB from several parts: read into memory and written with one `PutObject`,
//!   never through multipart (MinIO is slow on tiny multipart uploads);
//! - larger: a multipart upload whose parts all have the same size `P` (R2 requires it; S3
//!   requires at least 5 MiB), part `n` covering bytes `[nP, (n+1)P)` of the blob. A part
//!   inside one stored object is an `UploadPartCopy` of that range (no bytes through the
//!   registry); a part spanning objects (small chunks) is read into one buffer and uploaded.
//!   Where every boundary between the stored objects is a multiple of some size of at least
//!   8 MiB (one big `PATCH`, or `PATCH`es of one size such as 64 MiB), `P` is the largest such
//!   size up to 1 GiB, so every part is a copy: a 6 GiB body sent in one `PATCH` is 6 copies,
//!   not 768 (and a server that reads a copy's source past its range, as s3s-fs does, reads
//!   21 GiB rather than 2 TiB). Otherwise `P` is 8 MiB, or more (whole MiB) for blobs over
//!   10,000 × 8 MiB, so the 10,000-part cap never binds and a blob may go up to S3's 5 TiB;
//!   copies have no 5 GiB limit this way.
//!
//! Memory per request: at most one part buffer while writing, and during assembly at most two
//! buffered parts per instance (the rest are server-side copies).
//!
//! A blob that exists is never rewritten: the target is checked first, and the final
//! `PutObject`, `CopyObject` or `CompleteMultipartUpload` carries `If-None-Match: *` (AWS, R2
//! and MinIO honour it on `PutObject` and `CompleteMultipartUpload`); a `412` counts as
//! success. A server that ignores it can only replace the object with the same verified bytes.
//!
//! Cost of this design, and what comes next: a chunked upload's bytes are written twice (as
//! part objects, then as the blob's parts: server-side copies where a part lies inside one
//! object). Folding the parts into the blob's multipart upload as they arrive, with the
//! upload id and part `ETag`s in the session row, would save that second pass.
//!
//! # Failures
//! Throttling and unreachable servers are retried by the SDK (standard mode,
//! [`storage`]); what still fails becomes `StorageError::Unavailable`, a `503` with
//! `Retry-After` for the client. The start checks the bucket with `HeadBucket`: a missing
//! bucket (404), refused credentials (403), a wrong region (301) or an unreachable endpoint
//! stop it with a message naming the cause ([`Problem`]) and the variables to check (exit
//! status 2); it never falls back to another store.
//!
//! # Clean-up
//! `list_blobs` and `list_uploads` list by prefix with `ListObjectsV2`; deletes go in
//! `DeleteObjects` batches of 1,000 keys; `upload-cleanup` also aborts multipart uploads
//! under `S3_PREFIX` older than its age limit (`ListMultipartUploads`), which would otherwise
//! be billed and invisible.

mod error;
mod listing;
mod plan;
mod storage;
mod write;

pub use error::{OpenError, Problem};
pub use plan::PART_SIZE;
pub use registry_common::config::{S3Config, StaticCredentials};
pub use storage::S3Storage;

use std::sync::Arc;

use registry_common::bootstrap::OpenedStorage;
use registry_common::storage::Storage;

/// Opens (and checks) the bucket `config` names, in the shape
/// `registry_common::bootstrap::StorageBackends::with_s3` takes.
pub fn open_storage(config: &S3Config) -> OpenedStorage<'_> {
    Box::pin(async move {
        let storage = S3Storage::new(config.clone()).await?;
        Ok(Arc::new(storage) as Arc<dyn Storage>)
    })
}

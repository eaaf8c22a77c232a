//! Blob uploads: monolithic, streamed and chunked sessions, and cross-repository mounts.
//!
//! Each PATCH (and the body of a final PUT) is written as a new part while it is hashed; the
//! session row (offset, hash state, parts) moves only after the part is durable, and only if
//! it is still at the offset the request started from. A dropped connection or a racing
//! request therefore never corrupts a session: its part is discarded and the session stays at
//! its last good offset.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::events::EventRecorder;
use crate::error::ErrorChain;
use crate::events::EventOrigin;
use crate::metadata::{Metadata, MetadataError, NewEvent, PartRecord, UploadRow};
use crate::oci::digest::InvalidHashState;
use crate::oci::{Algorithm, Digest, DigestHasher, RepositoryName, UploadId};
use crate::storage::{BlobKey, PartName, Storage, StorageError, UploadPartKey};

/// Sessions hash with sha256 as bytes arrive; a sha512 upload is re-read once at the end.
const SESSION_ALGORITHM: Algorithm = Algorithm::Sha256;

/// Upload operations.
#[derive(Debug, Clone)]
pub struct UploadService {
    metadata: Metadata,
    storage: Arc<dyn Storage>,
    events: EventRecorder,
}

/// Why an upload operation failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// No such session in the repository.
    #[error("upload session unknown")]
    UnknownSession,
    /// A chunk does not start where the session is.
    #[error("chunk does not start at the session's offset {}", at.offset)]
    OffsetMismatch { at: SessionAt },
    /// Another request moved the session on while this one ran.
    #[error("the session was moved on by another request (now at {})", at.offset)]
    MovedOn { at: SessionAt },
    /// The content's digest is not the one the client named.
    #[error("digest mismatch: provided {provided}, computed {computed}")]
    DigestMismatch { provided: Digest, computed: Digest },
    /// The request body ended (or stalled) before it was complete.
    #[error("request body cut off: {reason}")]
    BodyCutOff { reason: String },
    /// The body is not as long as its `Content-Range` or `Content-Length` declared.
    #[error("body of {received} bytes, {declared} declared")]
    LengthMismatch { declared: u64, received: u64 },
    /// `Content-Length` and `Content-Range` name different lengths.
    #[error("Content-Length {content_length} disagrees with a range of {range_length} bytes")]
    RangeLengthMismatch {
        content_length: u64,
        range_length: u64,
    },
    #[error(transparent)]
    HashState(#[from] InvalidHashState),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A session and the offset it is really at, for a client to resume from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionAt {
    pub repository: RepositoryName,
    pub id: UploadId,
    pub offset: u64,
}

/// Where a session stands, for the `Range` and `Location` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadState {
    pub offset: u64,
}

/// A `Content-Range` of a chunk: first and last byte, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    pub start: u64,
    pub end: u64,
}

impl ContentRange {
    fn len(&self) -> u64 {
        self.end - self.start + 1
    }
}

/// Hashes and counts bytes as they stream through, and refuses more than `limit` bytes.
pub(crate) struct Hashing<'a, S> {
    pub(crate) inner: S,
    pub(crate) hasher: &'a mut DigestHasher,
    pub(crate) count: u64,
    pub(crate) limit: Option<u64>,
}

impl<S> Stream for Hashing<'_, S>
where
    S: Stream<Item = std::io::Result<Bytes>> + Unpin,
{
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.count += chunk.len() as u64;
                if this.limit.is_some_and(|limit| this.count > limit) {
                    return Poll::Ready(Some(Err(std::io::Error::other(
                        "body longer than its Content-Range",
                    ))));
                }
                this.hasher.update(&chunk);
                Poll::Ready(Some(Ok(chunk)))
            }
            other => other,
        }
    }
}

fn new_part(upload: &UploadId, offset: u64) -> UploadPartKey {
    UploadPartKey {
        upload: upload.clone(),
        part: PartName::new(offset),
    }
}

fn part_keys(upload: &UploadId, parts: &[PartRecord]) -> Vec<UploadPartKey> {
    parts
        .iter()
        .map(|p| UploadPartKey {
            upload: upload.clone(),
            part: p.name.as_str().into(),
        })
        .collect()
}

fn body_failed(error: StorageError) -> UploadError {
    match error {
        StorageError::Body { source } => UploadError::BodyCutOff {
            reason: source.to_string(),
        },
        other => other.into(),
    }
}

fn at(name: &RepositoryName, id: &UploadId, offset: u64) -> SessionAt {
    SessionAt {
        repository: name.clone(),
        id: id.clone(),
        offset,
    }
}

/// A written, hashed, not yet committed part.
struct WrittenPart {
    key: UploadPartKey,
    size: u64,
}

impl UploadService {
    pub fn new(metadata: Metadata, storage: Arc<dyn Storage>, events: EventRecorder) -> Self {
        UploadService {
            metadata,
            storage,
            events,
        }
    }

    /// Opens a new upload session in the repository.
    pub async fn start(&self, name: &RepositoryName) -> Result<UploadId, UploadError> {
        let id = UploadId::new();
        let state = DigestHasher::new(SESSION_ALGORITHM).save();
        self.metadata.create_upload(name, &id, &state).await?;
        Ok(id)
    }

    /// Links a blob into `target` from `from` when it is there; `None` when not mountable.
    /// Without `from`, only a blob already linked to the target counts: a digest alone never
    /// grants access to another repository's blob.
    pub async fn mount(
        &self,
        target: &RepositoryName,
        from: Option<&RepositoryName>,
        digest: &Digest,
        origin: &EventOrigin,
    ) -> Result<Option<u64>, UploadError> {
        Ok(match from {
            Some(from) => {
                let events = |size| self.events.blob_mounted(origin, target, from, digest, size);
                let mounted = self
                    .metadata
                    .mount_blob(target, from, digest, &events)
                    .await?;
                if mounted.is_some() {
                    self.events.committed();
                }
                mounted
            }
            None => self.metadata.linked_blob_size(target, digest).await?,
        })
    }

    /// Links a blob this registry already stores (under any repository) to `name`, without
    /// its bytes: `jobs import`'s copy of content that is here already. `None` when the blob
    /// has no row or its object is gone (then its bytes must come again).
    pub async fn link_stored(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        origin: &EventOrigin,
    ) -> Result<Option<u64>, UploadError> {
        let mut lock = self.metadata.lock_blob(digest).await?;
        let Some(size) = lock.size().await? else {
            return Ok(None);
        };
        if self.storage.stat(&BlobKey(digest.clone())).await?.is_none() {
            return Ok(None);
        }
        lock.record(name, size).await?;
        lock.record_events(&self.events.blob_pushed(origin, name, digest, size))
            .await?;
        lock.commit().await?;
        self.events.committed();
        Ok(Some(size))
    }

    /// `POST ?digest=`: the whole blob in one request.
    pub async fn put_monolithic<S>(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        expected_len: Option<u64>,
        body: S,
        origin: &EventOrigin,
    ) -> Result<(), UploadError>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        let upload = UploadId::new();
        let mut hasher = DigestHasher::new(digest.algorithm());
        let part = self
            .write_part_unless_empty(&upload, 0, &mut hasher, expected_len, body)
            .await?;
        let keys: Vec<UploadPartKey> = part.iter().map(|p| p.key.clone()).collect();
        let size = part.as_ref().map_or(0, |p| p.size);
        let events = self.events.blob_pushed(origin, name, digest, size);
        let result = self
            .commit_monolithic(name, digest, hasher, &keys, size, &events)
            .await;
        self.discard(&keys).await;
        result
    }

    async fn commit_monolithic(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        hasher: DigestHasher,
        parts: &[UploadPartKey],
        size: u64,
        events: &[NewEvent],
    ) -> Result<(), UploadError> {
        verify(digest, hasher.finish())?;
        self.storage
            .assemble(parts, &BlobKey(digest.clone()))
            .await?;
        let mut lock = self.metadata.lock_blob(digest).await?;
        self.ensure_object(digest, parts).await?;
        lock.record(name, size).await?;
        lock.record_events(events).await?;
        lock.commit().await?;
        self.events.committed();
        Ok(())
    }

    /// Under the digest's lock: the object must exist before its row commits. A collector may
    /// have deleted it between assembly and the lock (it had no row yet); the parts are still
    /// here, so assemble again.
    async fn ensure_object(
        &self,
        digest: &Digest,
        parts: &[UploadPartKey],
    ) -> Result<(), UploadError> {
        let key = BlobKey(digest.clone());
        if self.storage.stat(&key).await?.is_none() {
            tracing::warn!(%digest, "blob object vanished before its row was recorded; assembling again");
            self.storage.assemble(parts, &key).await?;
        }
        Ok(())
    }

    /// The session's state.
    pub async fn status(
        &self,
        name: &RepositoryName,
        id: &UploadId,
    ) -> Result<UploadState, UploadError> {
        let row = self.session(name, id).await?;
        Ok(UploadState { offset: row.offset })
    }

    /// `PATCH`: appends a chunk (streamed, or at `range`) to the session.
    pub async fn append<S>(
        &self,
        name: &RepositoryName,
        id: &UploadId,
        range: Option<ContentRange>,
        content_length: Option<u64>,
        body: S,
    ) -> Result<UploadState, UploadError>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        let row = self.session(name, id).await?;
        let expected = expected_length(name, id, &row, range, content_length)?;
        let mut hasher = restore(&row)?;
        let part = self
            .write_part_unless_empty(id, row.offset, &mut hasher, expected, body)
            .await?;
        let Some(part) = part.filter(|p| p.size > 0) else {
            return Ok(UploadState { offset: row.offset });
        };
        let mut parts = row.parts.clone();
        parts.push(PartRecord {
            name: part.key.part.as_str().to_owned(),
            size: part.size,
        });
        let offset = row.offset + part.size;
        let moved = self
            .metadata
            .advance_upload(id, row.offset, offset, &hasher.save(), &parts)
            .await;
        match moved {
            Ok(true) => Ok(UploadState { offset }),
            Ok(false) => {
                self.discard(std::slice::from_ref(&part.key)).await;
                let now = self.session(name, id).await?;
                Err(UploadError::MovedOn {
                    at: at(name, id, now.offset),
                })
            }
            Err(e) => {
                self.discard(std::slice::from_ref(&part.key)).await;
                Err(e.into())
            }
        }
    }

    /// `PUT ?digest=`: appends an optional last chunk, verifies the digest, and makes the blob.
    /// On a digest mismatch the session stays as it was before this request.
    #[expect(
        clippy::too_many_arguments,
        reason = "the parts of one request, each distinct; a struct would only rename them"
    )]
    pub async fn finish<S>(
        &self,
        name: &RepositoryName,
        id: &UploadId,
        digest: &Digest,
        range: Option<ContentRange>,
        content_length: Option<u64>,
        body: S,
        origin: &EventOrigin,
    ) -> Result<(), UploadError>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        let row = self.session(name, id).await?;
        let expected = expected_length(name, id, &row, range, content_length)?;
        let mut hasher = restore(&row)?;
        let last = self
            .write_part_unless_empty(id, row.offset, &mut hasher, expected, body)
            .await?;
        // The last part counts only when it holds bytes; it is deleted either way.
        let last_key: Vec<UploadPartKey> = last.iter().map(|p| p.key.clone()).collect();
        let last_size = last.as_ref().map_or(0, |p| p.size);
        let mut keys = part_keys(id, &row.parts);
        if last_size > 0 {
            keys.extend(last_key.iter().cloned());
        }
        let size = row.offset + last_size;
        let events = self.events.blob_pushed(origin, name, digest, size);
        let result = self
            .commit_session(name, id, &row, digest, hasher, &keys, size, &events)
            .await;
        match result {
            Ok(()) => {
                self.discard(&keys).await;
                if last_size == 0 {
                    self.discard(&last_key).await;
                }
                Ok(())
            }
            Err(e) => {
                self.discard(&last_key).await;
                Err(e)
            }
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one call site; the values are all distinct"
    )]
    async fn commit_session(
        &self,
        name: &RepositoryName,
        id: &UploadId,
        row: &UploadRow,
        digest: &Digest,
        hasher: DigestHasher,
        keys: &[UploadPartKey],
        size: u64,
        events: &[NewEvent],
    ) -> Result<(), UploadError> {
        let computed = if digest.algorithm() == SESSION_ALGORITHM {
            hasher.finish()
        } else {
            self.rehash(digest.algorithm(), keys).await?
        };
        verify(digest, computed)?;
        self.storage
            .assemble(keys, &BlobKey(digest.clone()))
            .await?;
        let mut lock = self.metadata.lock_blob(digest).await?;
        if lock.close_session(id, row.offset).await? {
            self.ensure_object(digest, keys).await?;
            lock.record_in(row.repository_id, size).await?;
            lock.record_events(events).await?;
            lock.commit().await?;
            self.events.committed();
            return Ok(());
        }
        drop(lock);
        match self.metadata.upload(name, id).await? {
            Some(now) => Err(UploadError::MovedOn {
                at: at(name, id, now.offset),
            }),
            None => Err(UploadError::UnknownSession),
        }
    }

    /// `DELETE`: cancels the session and removes its parts.
    pub async fn cancel(&self, name: &RepositoryName, id: &UploadId) -> Result<(), UploadError> {
        let parts = self
            .metadata
            .delete_upload(name, id)
            .await?
            .ok_or(UploadError::UnknownSession)?;
        self.discard(&part_keys(id, &parts)).await;
        Ok(())
    }

    async fn session(
        &self,
        name: &RepositoryName,
        id: &UploadId,
    ) -> Result<UploadRow, UploadError> {
        self.metadata
            .upload(name, id)
            .await?
            .ok_or(UploadError::UnknownSession)
    }

    /// Writes a part, except for a body declared empty (`Content-Length: 0`, as the final
    /// `PUT` of a chunked or streamed upload has): no part then, which spares creating, syncing
    /// and deleting an empty file.
    async fn write_part_unless_empty<S>(
        &self,
        upload: &UploadId,
        offset: u64,
        hasher: &mut DigestHasher,
        expected: Option<u64>,
        body: S,
    ) -> Result<Option<WrittenPart>, UploadError>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        if expected == Some(0) {
            return Ok(None);
        }
        self.write_part(upload, offset, hasher, expected, body)
            .await
            .map(Some)
    }

    async fn write_part<S>(
        &self,
        upload: &UploadId,
        offset: u64,
        hasher: &mut DigestHasher,
        expected: Option<u64>,
        body: S,
    ) -> Result<WrittenPart, UploadError>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + Unpin,
    {
        let key = new_part(upload, offset);
        let mut hashing = Hashing {
            inner: body,
            hasher,
            count: 0,
            limit: expected,
        };
        let size = self
            .storage
            .put_part(&key, &mut hashing)
            .await
            .map_err(body_failed)?;
        if let Some(expected) = expected
            && size != expected
        {
            self.discard(std::slice::from_ref(&key)).await;
            return Err(UploadError::LengthMismatch {
                declared: expected,
                received: size,
            });
        }
        Ok(WrittenPart { key, size })
    }

    async fn rehash(
        &self,
        algorithm: Algorithm,
        keys: &[UploadPartKey],
    ) -> Result<Digest, UploadError> {
        let mut hasher = DigestHasher::new(algorithm);
        for key in keys {
            let mut stream = self.storage.read_part(key).await?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|source| StorageError::Io {
                    key: key.path(),
                    source,
                })?;
                hasher.update(&chunk);
            }
        }
        Ok(hasher.finish())
    }

    /// Best-effort removal of parts nothing refers to; leftovers go with upload clean-up.
    async fn discard(&self, keys: &[UploadPartKey]) {
        if let Err(e) = self.storage.delete_parts(keys).await {
            tracing::warn!(error = %ErrorChain(&e), "could not delete upload parts");
        }
    }
}

fn restore(row: &UploadRow) -> Result<DigestHasher, UploadError> {
    Ok(DigestHasher::restore(SESSION_ALGORITHM, &row.hash_state)?)
}

fn verify(claimed: &Digest, computed: Digest) -> Result<(), UploadError> {
    if *claimed == computed {
        return Ok(());
    }
    Err(UploadError::DigestMismatch {
        provided: claimed.clone(),
        computed,
    })
}

/// The body length a chunk must have, from its `Content-Range` and `Content-Length`.
pub(crate) fn expected_length(
    name: &RepositoryName,
    id: &UploadId,
    row: &UploadRow,
    range: Option<ContentRange>,
    content_length: Option<u64>,
) -> Result<Option<u64>, UploadError> {
    let Some(range) = range else {
        return Ok(content_length);
    };
    if range.start != row.offset {
        return Err(UploadError::OffsetMismatch {
            at: at(name, id, row.offset),
        });
    }
    if let Some(length) = content_length
        && length != range.len()
    {
        return Err(UploadError::RangeLengthMismatch {
            content_length: length,
            range_length: range.len(),
        });
    }
    Ok(Some(range.len()))
}

#[cfg(test)]
#[path = "upload_service_tests.rs"]
mod tests;

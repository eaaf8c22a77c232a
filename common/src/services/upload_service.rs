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
use http::StatusCode;

use crate::http::{OciCode, RegistryError};
use crate::metadata::{Metadata, PartRecord, UploadRow};
use crate::oci::{Algorithm, Digest, DigestHasher, RepositoryName, UploadId};
use crate::storage::{BlobKey, Storage, StorageError, UploadPartKey};

/// Sessions hash with sha256 as bytes arrive; a sha512 upload is re-read once at the end.
const SESSION_ALGORITHM: Algorithm = Algorithm::Sha256;

/// Upload operations.
#[derive(Debug, Clone)]
pub struct UploadService {
    metadata: Metadata,
    storage: Arc<dyn Storage>,
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
    /// Accepts the spec's `<start>-<end>` and the HTTP forms `bytes=<start>-<end>` and
    /// `bytes <start>-<end>/<total|*>`.
    pub fn parse(raw: &str) -> Result<Self, RegistryError> {
        let invalid = || {
            RegistryError::new(OciCode::BlobUploadInvalid, "invalid Content-Range")
                .with_detail(serde_json::json!({ "Content-Range": crate::oci::truncate(raw, 100) }))
        };
        let s = raw.trim();
        let s = s
            .strip_prefix("bytes=")
            .or_else(|| s.strip_prefix("bytes "))
            .unwrap_or(s);
        let (s, total) = match s.split_once('/') {
            Some((range, total)) => (range, Some(total.trim())),
            None => (s, None),
        };
        let (start, end) = s.split_once('-').ok_or_else(invalid)?;
        let start: u64 = start.trim().parse().map_err(|_| invalid())?;
        let end: u64 = end.trim().parse().map_err(|_| invalid())?;
        if end < start {
            return Err(invalid());
        }
        // A complete length, when given, must be `*` or a number the range fits in.
        match total {
            None | Some("*") => {}
            Some(total) => match total.parse::<u64>() {
                Ok(total) if total > end => {}
                _ => return Err(invalid()),
            },
        }
        Ok(ContentRange { start, end })
    }

    fn len(&self) -> u64 {
        self.end - self.start + 1
    }
}

/// Hashes and counts bytes as they stream through, and refuses more than `limit` bytes.
struct Hashing<'a, S> {
    inner: S,
    hasher: &'a mut DigestHasher,
    count: u64,
    limit: Option<u64>,
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
        part: format!("{offset:020}-{}", uuid::Uuid::new_v4().simple()),
    }
}

fn part_keys(upload: &UploadId, parts: &[PartRecord]) -> Vec<UploadPartKey> {
    parts
        .iter()
        .map(|p| UploadPartKey {
            upload: upload.clone(),
            part: p.name.clone(),
        })
        .collect()
}

fn body_failed(error: StorageError) -> RegistryError {
    match error {
        StorageError::Body { source } => RegistryError::new(
            OciCode::BlobUploadInvalid,
            "request body ended before it was complete",
        )
        .with_detail(serde_json::json!({ "reason": source.to_string() })),
        other => other.into(),
    }
}

/// A 416 telling the client where the session really is.
pub fn range_conflict(
    name: &RepositoryName,
    id: &UploadId,
    offset: u64,
    why: &str,
) -> RegistryError {
    RegistryError::new(OciCode::BlobUploadInvalid, why)
        .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
        .with_header(http::header::RANGE, range_header(offset))
        .with_header(http::header::LOCATION, upload_location(name, id))
        .with_header(
            http::HeaderName::from_static("docker-upload-uuid"),
            id.to_string(),
        )
}

/// `Range` header value for a session at `offset` (distribution's form: `0-0` when empty).
pub fn range_header(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

/// `Location` of an upload session.
pub fn upload_location(name: &RepositoryName, id: &UploadId) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

/// A written, hashed, not yet committed part.
struct WrittenPart {
    key: UploadPartKey,
    size: u64,
}

impl UploadService {
    pub fn new(metadata: Metadata, storage: Arc<dyn Storage>) -> Self {
        UploadService { metadata, storage }
    }

    /// Opens a new upload session in the repository.
    pub async fn start(&self, name: &RepositoryName) -> Result<UploadId, RegistryError> {
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
    ) -> Result<Option<u64>, RegistryError> {
        Ok(match from {
            Some(from) => self.metadata.mount_blob(target, from, digest).await?,
            None => self.metadata.linked_blob_size(target, digest).await?,
        })
    }

    /// `POST ?digest=`: the whole blob in one request.
    pub async fn put_monolithic<S>(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        expected_len: Option<u64>,
        body: S,
    ) -> Result<(), RegistryError>
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
        let result = self
            .commit_monolithic(name, digest, hasher, &keys, size)
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
    ) -> Result<(), RegistryError> {
        verify(digest, hasher.finish())?;
        self.storage
            .assemble(parts, &BlobKey(digest.clone()))
            .await?;
        let mut lock = self.metadata.lock_blob(digest).await?;
        self.ensure_object(digest, parts).await?;
        lock.record(name, size).await?;
        lock.commit().await?;
        Ok(())
    }

    /// Under the digest's lock: the object must exist before its row commits. A collector may
    /// have deleted it between assembly and the lock (it had no row yet); the parts are still
    /// here, so assemble again.
    async fn ensure_object(
        &self,
        digest: &Digest,
        parts: &[UploadPartKey],
    ) -> Result<(), RegistryError> {
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
    ) -> Result<UploadState, RegistryError> {
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
    ) -> Result<UploadState, RegistryError>
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
            name: part.key.part.clone(),
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
                Err(range_conflict(
                    name,
                    id,
                    now.offset,
                    "the upload was moved on by another request",
                ))
            }
            Err(e) => {
                self.discard(std::slice::from_ref(&part.key)).await;
                Err(e.into())
            }
        }
    }

    /// `PUT ?digest=`: appends an optional last chunk, verifies the digest, and makes the blob.
    /// On a digest mismatch the session stays as it was before this request.
    pub async fn finish<S>(
        &self,
        name: &RepositoryName,
        id: &UploadId,
        digest: &Digest,
        range: Option<ContentRange>,
        content_length: Option<u64>,
        body: S,
    ) -> Result<(), RegistryError>
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
        let result = self
            .commit_session(name, id, &row, digest, hasher, &keys, size)
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
    ) -> Result<(), RegistryError> {
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
            lock.commit().await?;
            return Ok(());
        }
        drop(lock);
        match self.metadata.upload(name, id).await? {
            Some(now) => Err(range_conflict(
                name,
                id,
                now.offset,
                "the upload was moved on by another request",
            )),
            None => Err(RegistryError::upload_unknown()),
        }
    }

    /// `DELETE`: cancels the session and removes its parts.
    pub async fn cancel(&self, name: &RepositoryName, id: &UploadId) -> Result<(), RegistryError> {
        let parts = self
            .metadata
            .delete_upload(name, id)
            .await?
            .ok_or_else(RegistryError::upload_unknown)?;
        self.discard(&part_keys(id, &parts)).await;
        Ok(())
    }

    async fn session(
        &self,
        name: &RepositoryName,
        id: &UploadId,
    ) -> Result<UploadRow, RegistryError> {
        self.metadata
            .upload(name, id)
            .await?
            .ok_or_else(RegistryError::upload_unknown)
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
    ) -> Result<Option<WrittenPart>, RegistryError>
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
    ) -> Result<WrittenPart, RegistryError>
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
            return Err(RegistryError::new(
                OciCode::BlobUploadInvalid,
                "body length differs from the declared range",
            )
            .with_detail(serde_json::json!({ "declared": expected, "received": size })));
        }
        Ok(WrittenPart { key, size })
    }

    async fn rehash(
        &self,
        algorithm: Algorithm,
        keys: &[UploadPartKey],
    ) -> Result<Digest, RegistryError> {
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
            tracing::warn!(error = %crate::error::ErrorChain(&e), "could not delete upload parts");
        }
    }
}

fn restore(row: &UploadRow) -> Result<DigestHasher, RegistryError> {
    DigestHasher::restore(SESSION_ALGORITHM, &row.hash_state)
        .map_err(|e| RegistryError::internal(&e))
}

fn verify(claimed: &Digest, computed: Digest) -> Result<(), RegistryError> {
    if *claimed == computed {
        return Ok(());
    }
    Err(RegistryError::new(
        OciCode::DigestInvalid,
        "provided digest did not match uploaded content",
    )
    .with_detail(
        serde_json::json!({ "provided": claimed.to_string(), "computed": computed.to_string() }),
    ))
}

/// The body length a chunk must have, from its `Content-Range` and `Content-Length`.
fn expected_length(
    name: &RepositoryName,
    id: &UploadId,
    row: &UploadRow,
    range: Option<ContentRange>,
    content_length: Option<u64>,
) -> Result<Option<u64>, RegistryError> {
    let Some(range) = range else {
        return Ok(content_length);
    };
    if range.start != row.offset {
        return Err(range_conflict(
            name,
            id,
            row.offset,
            "chunk does not start at the session's offset",
        ));
    }
    if let Some(length) = content_length
        && length != range.len()
    {
        return Err(RegistryError::new(
            OciCode::BlobUploadInvalid,
            "Content-Length disagrees with Content-Range",
        )
        .with_detail(
            serde_json::json!({ "Content-Length": length, "range length": range.len() }),
        ));
    }
    Ok(Some(range.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_forms() {
        assert_eq!(
            ContentRange::parse("0-99").unwrap(),
            ContentRange { start: 0, end: 99 }
        );
        assert_eq!(
            ContentRange::parse("bytes=5-9").unwrap(),
            ContentRange { start: 5, end: 9 }
        );
        assert_eq!(
            ContentRange::parse("bytes 5-9/100").unwrap(),
            ContentRange { start: 5, end: 9 }
        );
        for bad in [
            "",
            "abc",
            "5",
            "9-5",
            "-5",
            "1-x",
            "bytes=1-",
            "bytes 5-9/9",
            "bytes 5-9/10x",
        ] {
            assert!(ContentRange::parse(bad).is_err(), "{bad}");
        }
    }
}

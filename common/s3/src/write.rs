//! Writing: a request body into a part object, and parts into a blob.
//!
//! A body is read into a buffer of at most one part ([`PART_SIZE`]); a body that ends before
//! filling it is one `PutObject`, a longer one a multipart upload of equal parts. Buffering
//! makes every request replayable, so the SDK can retry a throttled or failed part; the body
//! itself cannot be rewound. A body that fails aborts its multipart upload: nothing is left
//! under the key.
//!
//! Assembly never rewrites a blob: the target is checked first, and the write is conditional
//! (`If-None-Match: *`) for the race between two uploads of the same digest; a server that
//! ignores the condition lets the second write replace the object with the same bytes (the
//! digest was verified before assembly), which readers cannot tell apart.

use aws_sdk_s3::primitives::ByteStream as SdkBody;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt};
use registry_common::storage::{BodyStream, StorageError, UploadPartKey};

use crate::error::S3Error;
use crate::plan::{
    MAX_PART_SIZE, MAX_PARTS, PART_SIZE, Piece, PlannedPart, aligned_part_size, part_size, plan,
};
use crate::storage::S3Storage;

/// Parts copied or uploaded at once while assembling one blob.
const CONCURRENCY: usize = 4;

/// How a write meets an object that is already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overwrite {
    /// Part keys are unique: no condition needed.
    Allowed,
    /// Blobs: `If-None-Match: *`; a 412 means the blob is there, which is success.
    Never,
}

/// A multipart upload in progress.
struct Multipart<'a> {
    storage: &'a S3Storage,
    object: &'a str,
    id: String,
}

impl<'a> Multipart<'a> {
    async fn create(storage: &'a S3Storage, object: &'a str) -> Result<Self, S3Error> {
        let created = storage
            .client
            .create_multipart_upload()
            .bucket(&storage.bucket)
            .key(object)
            .send()
            .await
            .map_err(|e| S3Error::sdk("starting a multipart upload of", object, e))?;
        let id = created.upload_id().ok_or_else(|| S3Error::Request {
            operation: "starting a multipart upload of",
            object: object.to_owned(),
            message: "the answer has no upload id".to_owned(),
        })?;
        Ok(Multipart {
            storage,
            object,
            id: id.to_owned(),
        })
    }

    async fn upload(&self, number: i32, bytes: Bytes) -> Result<CompletedPart, S3Error> {
        let uploaded = self
            .storage
            .client
            .upload_part()
            .bucket(&self.storage.bucket)
            .key(self.object)
            .upload_id(&self.id)
            .part_number(number)
            .content_length(bytes.len() as i64)
            .body(SdkBody::from(bytes))
            .send()
            .await
            .map_err(|e| S3Error::sdk("uploading a part of", self.object, e))?;
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(uploaded.e_tag().map(str::to_owned))
            .build())
    }

    async fn copy(
        &self,
        number: i32,
        source: &str,
        piece: Piece,
    ) -> Result<CompletedPart, S3Error> {
        let copied = self
            .storage
            .client
            .upload_part_copy()
            .bucket(&self.storage.bucket)
            .key(self.object)
            .upload_id(&self.id)
            .part_number(number)
            .copy_source(copy_source(&self.storage.bucket, source))
            .copy_source_range(format!("bytes={}-{}", piece.start, piece.end - 1))
            .send()
            .await
            .map_err(|e| S3Error::sdk("copying a part into", self.object, e))?;
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(
                copied
                    .copy_part_result()
                    .and_then(|r| r.e_tag())
                    .map(str::to_owned),
            )
            .build())
    }

    async fn complete(
        self,
        parts: Vec<CompletedPart>,
        overwrite: Overwrite,
    ) -> Result<(), S3Error> {
        let mut request = self
            .storage
            .client
            .complete_multipart_upload()
            .bucket(&self.storage.bucket)
            .key(self.object)
            .upload_id(&self.id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            );
        if overwrite == Overwrite::Never {
            request = request.if_none_match("*");
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let error = S3Error::sdk("completing a multipart upload of", self.object, e);
                self.abort().await;
                if overwrite == Overwrite::Never && error.status() == Some(412) {
                    return Ok(());
                }
                Err(error)
            }
        }
    }

    /// Best effort: `upload-cleanup` aborts what is left (it lists multipart uploads).
    async fn abort(&self) {
        let aborted = self
            .storage
            .client
            .abort_multipart_upload()
            .bucket(&self.storage.bucket)
            .key(self.object)
            .upload_id(&self.id)
            .send()
            .await;
        if let Err(e) = aborted {
            let error = S3Error::sdk("aborting a multipart upload of", self.object, e);
            tracing::warn!(error = %error, "could not abort a multipart upload");
        }
    }
}

/// `x-amz-copy-source`: `<bucket>/<key>`, the key percent-encoded but for `/`.
fn copy_source(bucket: &str, key: &str) -> String {
    let mut out = format!("{bucket}/");
    for byte in key.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(byte as char);
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

impl S3Storage {
    /// Writes a body to `object`; returns its length.
    pub(crate) async fn write_streamed(
        &self,
        object: &str,
        body: BodyStream<'_>,
    ) -> Result<u64, StorageError> {
        let mut buffer = BytesMut::new();
        // The buffer of the part before, once uploaded: refilled rather than freed. A long
        // body otherwise leaves a freed 8 MiB buffer in each allocator arena its task ran on
        // (measured: 78 MiB peak RSS for a 1 GiB body, 46 MiB with two arenas).
        let mut spare: Option<BytesMut> = None;
        let mut multipart: Option<(Multipart<'_>, Vec<CompletedPart>)> = None;
        let mut total: u64 = 0;
        let result: Result<(), StorageError> = async {
            while let Some(chunk) = body.next().await {
                let mut chunk = chunk.map_err(|source| StorageError::Body { source })?;
                total += chunk.len() as u64;
                while !chunk.is_empty() {
                    let room = PART_SIZE as usize - buffer.len();
                    buffer.extend_from_slice(&chunk.split_to(room.min(chunk.len())));
                    if buffer.len() < PART_SIZE as usize {
                        continue;
                    }
                    let next = spare
                        .take()
                        .unwrap_or_else(|| BytesMut::with_capacity(PART_SIZE as usize));
                    let full = std::mem::replace(&mut buffer, next).freeze();
                    if multipart.is_none() {
                        multipart = Some((Multipart::create(self, object).await?, Vec::new()));
                    }
                    if let Some((upload, parts)) = multipart.as_mut() {
                        if parts.len() as u64 >= MAX_PARTS {
                            return Err(S3Error::Request {
                                operation: "writing",
                                object: object.to_owned(),
                                message: format!(
                                    "one request body holds at most {MAX_PARTS} parts of {PART_SIZE} bytes; send it in several PATCH requests"
                                ),
                            }
                            .into());
                        }
                        let number = parts.len() as i32 + 1;
                        let kept = full.clone();
                        parts.push(upload.upload(number, full).await?);
                        // Unique again once the SDK dropped the request (and its retries).
                        if let Ok(mut reused) = kept.try_into_mut() {
                            reused.clear();
                            spare = Some(reused);
                        }
                    }
                }
            }
            Ok(())
        }
        .await;
        match (result, multipart) {
            (Err(e), Some((upload, _))) => {
                upload.abort().await;
                Err(e)
            }
            (Err(e), None) => Err(e),
            (Ok(()), None) => {
                self.put(object, buffer.freeze(), Overwrite::Allowed)
                    .await?;
                Ok(total)
            }
            (Ok(()), Some((upload, mut parts))) => {
                if !buffer.is_empty() {
                    match upload.upload(parts.len() as i32 + 1, buffer.freeze()).await {
                        Ok(part) => parts.push(part),
                        Err(e) => {
                            upload.abort().await;
                            return Err(e.into());
                        }
                    }
                }
                upload.complete(parts, Overwrite::Allowed).await?;
                Ok(total)
            }
        }
    }

    /// One `PutObject`.
    async fn put(&self, object: &str, bytes: Bytes, overwrite: Overwrite) -> Result<(), S3Error> {
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(object)
            .content_length(bytes.len() as i64)
            .body(SdkBody::from(bytes));
        if overwrite == Overwrite::Never {
            request = request.if_none_match("*");
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e) => match S3Error::sdk("writing", object, e) {
                error if overwrite == Overwrite::Never && error.status() == Some(412) => Ok(()),
                error => Err(error),
            },
        }
    }

    /// Makes `target` from the parts, in order, unless it exists.
    pub(crate) async fn assemble_blob(
        &self,
        parts: &[UploadPartKey],
        target: &str,
    ) -> Result<(), S3Error> {
        if self.head(target).await?.is_some() {
            return Ok(());
        }
        let sources: Vec<String> = parts.iter().map(|p| self.object(&p.path())).collect();
        let sizes = self.part_sizes(parts).await?;
        let total: u64 = sizes.iter().sum();
        let nonempty: Vec<usize> = (0..sizes.len()).filter(|&i| sizes[i] > 0).collect();
        if let [single] = nonempty.as_slice()
            && total <= MAX_PART_SIZE
        {
            // One server-side copy, whatever the size.
            return self.copy_object(&sources[*single], target).await;
        }
        if total <= PART_SIZE {
            // Small blobs in one PutObject: never multipart (slow on some servers).
            let mut buffer = BytesMut::with_capacity(total as usize);
            for &i in &nonempty {
                self.read_into(&sources[i], 0, sizes[i], &mut buffer)
                    .await?;
            }
            return self.put(target, buffer.freeze(), Overwrite::Never).await;
        }
        // Parts that are all server-side copies where the objects allow, else equal parts.
        let size = aligned_part_size(&sizes)
            .or_else(|| part_size(total))
            .ok_or_else(|| S3Error::Request {
                operation: "assembling",
                object: target.to_owned(),
                message: format!("{total} bytes is more than one S3 object holds"),
            })?;
        let upload = Multipart::create(self, target).await?;
        let made: Result<Vec<CompletedPart>, S3Error> =
            futures_util::stream::iter(plan(&sizes, size))
                .map(|part| self.make_part(&upload, &sources, part))
                .buffered(CONCURRENCY)
                .try_collect()
                .await;
        match made {
            Ok(parts) => upload.complete(parts, Overwrite::Never).await,
            Err(e) => {
                upload.abort().await;
                Err(e)
            }
        }
    }

    /// One part of an assembly: a ranged copy when one object holds it, else its pieces read
    /// into one buffer (at most [`crate::storage::S3Storage::buffers`] such at once).
    async fn make_part(
        &self,
        upload: &Multipart<'_>,
        sources: &[String],
        part: PlannedPart,
    ) -> Result<CompletedPart, S3Error> {
        if let [piece] = part.pieces.as_slice() {
            return upload
                .copy(part.number, &sources[piece.source], *piece)
                .await;
        }
        let _permit = self.buffers.acquire().await.map_err(|_| S3Error::Request {
            operation: "assembling",
            object: upload.object.to_owned(),
            message: "buffer semaphore closed".to_owned(),
        })?;
        let spare = self
            .spare_buffers
            .lock()
            .ok()
            .and_then(|mut spare| spare.pop());
        let mut buffer = spare.unwrap_or_default();
        buffer.reserve(part.len() as usize);
        for piece in &part.pieces {
            self.read_into(&sources[piece.source], piece.start, piece.end, &mut buffer)
                .await?;
        }
        let full = buffer.freeze();
        let kept = full.clone();
        let uploaded = upload.upload(part.number, full).await;
        // Unique again once the SDK dropped the request (and its retries): kept for the next
        // part, while this permit is still held, so the pool never outgrows the permits.
        if let Ok(mut reused) = kept.try_into_mut() {
            reused.clear();
            if let Ok(mut spare) = self.spare_buffers.lock() {
                spare.push(reused);
            }
        }
        uploaded
    }

    async fn copy_object(&self, source: &str, target: &str) -> Result<(), S3Error> {
        let copied = self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .key(target)
            .copy_source(copy_source(&self.bucket, source))
            .if_none_match("*")
            .send()
            .await;
        match copied {
            Ok(_) => Ok(()),
            Err(e) => match S3Error::sdk("copying into", target, e) {
                error if error.status() == Some(412) => Ok(()),
                error => Err(error),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::copy_source;

    #[test]
    fn copy_sources_are_encoded_but_for_slashes() {
        assert_eq!(copy_source("b", "p q/uploads/x+y"), "b/p%20q/uploads/x%2By");
    }
}

//! Listing and deleting: object keys under `blobs/` and `uploads/` turned back into typed
//! keys (keys that do not parse are skipped, never guessed at), deletes in batches of
//! `DeleteObjects`, and the abort of multipart uploads a crashed request left behind.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use aws_sdk_s3::types::{Delete, Object, ObjectIdentifier};
use futures_util::{StreamExt, TryStreamExt};
use registry_common::oci::{Algorithm, Digest, UploadId};
use registry_common::storage::{BlobKey, StoredBlob, StoredUpload, UploadPartKey};

use crate::error::S3Error;
use crate::storage::S3Storage;

/// Keys per `DeleteObjects` request (S3's maximum).
const DELETE_BATCH: usize = 1000;
/// `DeleteObjects` requests in flight at once.
const DELETE_CONCURRENCY: usize = 4;

fn modified(object: &Object) -> SystemTime {
    object
        .last_modified()
        .and_then(|t| SystemTime::try_from(*t).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

impl S3Storage {
    /// Every object under `prefix` (a full key prefix), following pages.
    pub(crate) async fn list_all(&self, prefix: &str) -> Result<Vec<Object>, S3Error> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| S3Error::sdk("listing", prefix, e))?;
            objects.extend(page.contents().iter().cloned());
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => return Ok(objects),
            }
        }
    }

    /// The sizes of an assembly's parts: one listing per upload (1,000 keys a page) rather
    /// than one `HeadObject` per part, which matters for thousands of 1 KiB chunks.
    pub(crate) async fn part_sizes(&self, parts: &[UploadPartKey]) -> Result<Vec<u64>, S3Error> {
        let mut sizes: HashMap<String, u64> = HashMap::new();
        let mut listed: Vec<&UploadId> = Vec::new();
        for part in parts {
            if !listed.contains(&&part.upload) {
                listed.push(&part.upload);
                let dir = self.object(&format!("uploads/{}/", part.upload));
                for object in self.list_all(&dir).await? {
                    if let Some(key) = object.key() {
                        sizes.insert(key.to_owned(), object.size().unwrap_or(0).max(0) as u64);
                    }
                }
            }
        }
        let mut out = Vec::with_capacity(parts.len());
        for part in parts {
            let object = self.object(&part.path());
            let size = match sizes.get(&object) {
                Some(size) => *size,
                None => self
                    .head(&object)
                    .await?
                    .ok_or(S3Error::NotFound { object })?,
            };
            out.push(size);
        }
        Ok(out)
    }

    /// Deletes objects in batches; missing ones are not an error.
    pub(crate) async fn delete_objects(&self, objects: Vec<String>) -> Result<(), S3Error> {
        let batches: Vec<Vec<String>> = objects
            .chunks(DELETE_BATCH)
            .map(<[String]>::to_vec)
            .collect();
        futures_util::stream::iter(batches)
            .map(|batch| self.delete_batch(batch))
            .buffer_unordered(DELETE_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await
            .map(drop)
    }

    async fn delete_batch(&self, batch: Vec<String>) -> Result<(), S3Error> {
        let Some(first) = batch.first().cloned() else {
            return Ok(());
        };
        let build = |message: String| S3Error::Request {
            operation: "deleting",
            object: first.clone(),
            message,
        };
        let identifiers = batch
            .into_iter()
            .map(|key| ObjectIdentifier::builder().key(key).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| build(e.to_string()))?;
        let delete = Delete::builder()
            .set_objects(Some(identifiers))
            .quiet(true)
            .build()
            .map_err(|e| build(e.to_string()))?;
        let answer = self
            .client
            .delete_objects()
            .bucket(&self.bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| S3Error::sdk("deleting", &first, e))?;
        match answer
            .errors()
            .iter()
            .find(|e| e.code() != Some("NoSuchKey"))
        {
            None => Ok(()),
            Some(failed) => Err(S3Error::Service {
                operation: "deleting",
                object: failed.key().unwrap_or(&first).to_owned(),
                status: 200,
                code: failed.code().unwrap_or("").to_owned(),
                message: failed.message().unwrap_or("").to_owned(),
            }),
        }
    }

    pub(crate) async fn stored_blobs(
        &self,
        algorithm: Algorithm,
        prefix: &str,
    ) -> Result<Vec<StoredBlob>, S3Error> {
        let dir = self.object(&format!("blobs/{}/{prefix}/", algorithm.as_str()));
        let mut found: Vec<StoredBlob> = self
            .list_all(&dir)
            .await?
            .into_iter()
            .filter_map(|object| {
                let hex = object.key()?.strip_prefix(&dir)?;
                let digest = Digest::parse(&format!("{}:{hex}", algorithm.as_str())).ok()?;
                Some(StoredBlob {
                    key: BlobKey(digest),
                    size: object.size().unwrap_or(0).max(0) as u64,
                    modified: modified(&object),
                })
            })
            .collect();
        found.sort_by(|a, b| a.key.0.cmp(&b.key.0));
        Ok(found)
    }

    pub(crate) async fn stored_uploads(&self) -> Result<Vec<StoredUpload>, S3Error> {
        let dir = self.object("uploads/");
        let mut uploads: BTreeMap<String, StoredUpload> = BTreeMap::new();
        for object in self.list_all(&dir).await? {
            let Some((id, part)) = object
                .key()
                .and_then(|k| k.strip_prefix(&dir))
                .and_then(|rest| rest.split_once('/'))
            else {
                continue;
            };
            let Ok(upload) = UploadId::parse(id) else {
                continue;
            };
            let when = modified(&object);
            let entry = uploads
                .entry(id.to_owned())
                .or_insert_with(|| StoredUpload {
                    upload: upload.clone(),
                    parts: Vec::new(),
                    modified: when,
                });
            entry.modified = entry.modified.max(when);
            entry.parts.push(UploadPartKey {
                upload,
                part: part.into(),
            });
        }
        Ok(uploads.into_values().collect())
    }

    /// Aborts the multipart uploads under the prefix started before `older_than`: left by a
    /// request that died mid-body or mid-assembly, invisible in listings, and billed.
    pub(crate) async fn abort_multipart_uploads(
        &self,
        older_than: SystemTime,
    ) -> Result<u64, S3Error> {
        let mut aborted = 0;
        let mut key_marker: Option<String> = None;
        let mut id_marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(&self.prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| S3Error::sdk("listing multipart uploads under", &self.prefix, e))?;
            for upload in page.uploads() {
                let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                let started = upload
                    .initiated()
                    .and_then(|t| SystemTime::try_from(*t).ok())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                if started > older_than {
                    continue;
                }
                self.client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(id)
                    .send()
                    .await
                    .map_err(|e| S3Error::sdk("aborting a multipart upload of", key, e))?;
                aborted += 1;
            }
            if page.is_truncated() != Some(true) {
                return Ok(aborted);
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            id_marker = page.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() {
                return Ok(aborted);
            }
        }
    }
}

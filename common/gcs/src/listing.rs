//! Listing for garbage collection and upload clean-up: object names under `blobs/` and
//! `uploads/` turned back into typed keys. Objects whose names do not parse (not a digest,
//! not an upload id) are skipped, never guessed at.

use std::collections::BTreeMap;

use registry_common::oci::{Algorithm, Digest, UploadId};
use registry_common::storage::{BlobKey, StorageError, StoredBlob, StoredUpload, UploadPartKey};

use crate::json_api::ObjectInfo;
use crate::storage::GcsStorage;

/// Objects per listing request (the JSON API's maximum).
const PAGE: u32 = 1000;

impl GcsStorage {
    /// Every object under `prefix` (relative to `GCS_PREFIX`), following pages.
    pub(crate) async fn list_all(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.list(prefix, token.as_deref(), PAGE).await?;
            objects.extend(page.objects);
            match page.next_page_token {
                Some(next) => token = Some(next),
                None => return Ok(objects),
            }
        }
    }

    pub(crate) async fn stored_blobs(
        &self,
        algorithm: Algorithm,
        prefix: &str,
    ) -> Result<Vec<StoredBlob>, StorageError> {
        let dir = format!("blobs/{}/{prefix}/", algorithm.as_str());
        let mut found: Vec<StoredBlob> = self
            .list_all(&dir)
            .await?
            .into_iter()
            .filter_map(|object| {
                let hex = object.name.strip_prefix(&dir)?;
                let digest = Digest::parse(&format!("{}:{hex}", algorithm.as_str())).ok()?;
                Some(StoredBlob {
                    key: BlobKey(digest),
                    size: object.size,
                    modified: object.updated,
                })
            })
            .collect();
        found.sort_by(|a, b| a.key.0.cmp(&b.key.0));
        Ok(found)
    }

    pub(crate) async fn stored_uploads(&self) -> Result<Vec<StoredUpload>, StorageError> {
        let mut uploads: BTreeMap<String, StoredUpload> = BTreeMap::new();
        for object in self.list_all("uploads/").await? {
            let Some((id, part)) = object
                .name
                .strip_prefix("uploads/")
                .and_then(|rest| rest.split_once('/'))
            else {
                continue;
            };
            let Ok(upload) = UploadId::parse(id) else {
                continue;
            };
            let entry = uploads
                .entry(id.to_owned())
                .or_insert_with(|| StoredUpload {
                    upload: upload.clone(),
                    parts: Vec::new(),
                    modified: object.updated,
                });
            entry.modified = entry.modified.max(object.updated);
            // Leftover compose intermediates live here too, and go with the upload.
            entry.parts.push(UploadPartKey {
                upload,
                part: part.into(),
            });
        }
        Ok(uploads.into_values().collect())
    }
}

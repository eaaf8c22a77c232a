//! [`GcsStorage`]: the storage trait over one GCS bucket.
//!
//! Object bytes go through the google-cloud-storage client (streamed writes and reads, ranged
//! reads, its checksums and retries); stat, list, delete and compose through the JSON API
//! ([`crate::json_api`]). Parts are objects under `uploads/<id>/`; a blob is assembled
//! server-side by composing its parts (in rounds of 32, the API's limit per request) and
//! appears under `blobs/<alg>/<xx>/<hex>` only complete. A blob that exists is never
//! rewritten: it is checked first, and the last compose is conditional (`ifGenerationMatch=0`)
//! for the race between two uploads of the same blob.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use google_cloud_auth::signer::Signer;
use google_cloud_storage::client::Storage as GcsClient;
use google_cloud_storage::model_ext::ReadRange;
use registry_common::oci::Algorithm;
use registry_common::storage::{
    BlobKey, BodyStream, ByteRange, ByteStream, Storage, StorageError, StoredBlob, StoredUpload,
    UploadPartKey,
};

use crate::error::{GcsError, OpenError};
use crate::json_api::{JsonApi, ListPage, Overwrite};
use registry_common::config::GcsConfig;

/// Most sources one compose request accepts.
const COMPOSE_MAX: usize = 32;
/// Compose or delete requests in flight at once for one operation.
const CONCURRENCY: usize = 8;

/// Blobs and upload parts in one GCS bucket, under an optional prefix.
#[derive(Debug, Clone)]
pub struct GcsStorage {
    client: GcsClient,
    api: JsonApi,
    /// `projects/_/buckets/<name>`, as the client names buckets.
    bucket_path: String,
    prefix: String,
    endpoint: Option<String>,
    signer: Option<Signer>,
    redirect_downloads: bool,
    signed_url_ttl: Duration,
}

impl GcsStorage {
    /// Builds the clients; nothing is sent until the first operation (instances start cold).
    pub async fn new(config: GcsConfig) -> Result<Self, OpenError> {
        config.validate()?;
        let credentials = if config.gcs_anonymous {
            google_cloud_auth::credentials::anonymous::Builder::new().build()
        } else {
            google_cloud_auth::credentials::Builder::default()
                .build()
                .map_err(OpenError::Credentials)?
        };
        let mut builder = GcsClient::builder().with_credentials(credentials.clone());
        if let Some(endpoint) = config.endpoint() {
            builder = builder.with_endpoint(endpoint);
        }
        let client = builder
            .build()
            .await
            .map_err(|e| OpenError::Client(Box::new(e)))?;
        let api = JsonApi::new(config.endpoint(), &config.bucket_name, credentials)?;
        let signer = crate::signing::signer(&config)?;
        Ok(GcsStorage {
            client,
            api,
            bucket_path: format!("projects/_/buckets/{}", config.bucket_name),
            prefix: config.object_prefix(),
            endpoint: config.endpoint().map(str::to_owned),
            signer,
            redirect_downloads: config.gcs_redirect_downloads,
            signed_url_ttl: config.signed_url_ttl(),
        })
    }

    /// The object name of a key path.
    fn object(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }

    /// One page of the objects under `prefix` (relative to `GCS_PREFIX`), in name order; the
    /// names returned are relative too. For clean-up jobs and tests.
    pub async fn list(
        &self,
        prefix: &str,
        page_token: Option<&str>,
        max_results: u32,
    ) -> Result<ListPage, StorageError> {
        let mut page = self
            .api
            .list(&self.object(prefix), page_token, max_results)
            .await?;
        for object in &mut page.objects {
            if let Some(relative) = object.name.strip_prefix(&self.prefix) {
                object.name = relative.to_owned();
            }
        }
        Ok(page)
    }

    /// Streams one object, or a range of it.
    async fn read_object(
        &self,
        object: String,
        range: Option<ByteRange>,
    ) -> Result<ByteStream, StorageError> {
        let mut request = self.client.read_object(&self.bucket_path, &object);
        if let Some(range) = range {
            request = request.set_read_range(ReadRange::segment(range.start, range.len()));
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) if e.http_status_code() == Some(404) => {
                return Err(GcsError::NotFound { object }.into());
            }
            Err(source) => {
                return Err(GcsError::Client {
                    operation: "reading",
                    object,
                    source,
                }
                .into());
            }
        };
        let stream = futures_util::stream::unfold(response, |mut response| async move {
            let item = response.next().await?;
            Some((item.map_err(std::io::Error::other), response))
        });
        Ok(Box::pin(stream))
    }

    /// Composes `sources` into `target` in rounds of at most 32; returns the intermediate
    /// objects made on the way (for the caller to delete, whatever the outcome).
    async fn compose_rounds(
        &self,
        mut sources: Vec<String>,
        target: &str,
        scratch: &str,
        intermediates: &mut Vec<String>,
    ) -> Result<(), GcsError> {
        let mut round = 0;
        while sources.len() > COMPOSE_MAX {
            round += 1;
            let groups: Vec<(usize, Vec<String>)> = sources
                .chunks(COMPOSE_MAX)
                .map(<[String]>::to_vec)
                .enumerate()
                .collect();
            let results: Vec<Result<String, GcsError>> = futures_util::stream::iter(groups)
                .map(|(index, group)| async move {
                    if let [single] = group.as_slice() {
                        return Ok(single.clone());
                    }
                    let name = format!("{scratch}{round}-{index}");
                    self.api.compose(&group, &name, Overwrite::Allowed).await?;
                    Ok(name)
                })
                .buffered(CONCURRENCY)
                .collect()
                .await;
            let mut next = Vec::with_capacity(results.len());
            let mut failure = None;
            for result in results {
                match result {
                    Ok(name) => {
                        if name.starts_with(scratch) {
                            intermediates.push(name.clone());
                        }
                        next.push(name);
                    }
                    Err(e) => failure = Some(e),
                }
            }
            if let Some(e) = failure {
                return Err(e);
            }
            sources = next;
        }
        self.api.compose(&sources, target, Overwrite::Never).await
    }

    /// Deletes objects, several at a time; missing ones are not an error.
    async fn delete_objects(&self, objects: Vec<String>) -> Result<(), GcsError> {
        futures_util::stream::iter(objects)
            .map(|object| async move { self.api.delete(&object).await })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await
            .map(drop)
    }
}

#[async_trait]
impl Storage for GcsStorage {
    async fn put_part(
        &self,
        key: &UploadPartKey,
        body: BodyStream<'_>,
    ) -> Result<u64, StorageError> {
        let object = self.object(&key.path());
        let result =
            crate::upload::write_part(&self.client, &self.bucket_path, &object, body).await;
        if result.is_err() {
            // An upload the client aborted was never finalised, so this is usually a no-op;
            // it keeps "nothing left under the key" true whatever went wrong.
            if let Err(e) = self.api.delete(&object).await {
                tracing::warn!(error = %e, object, "could not delete a failed part");
            }
        }
        result
    }

    async fn assemble(&self, parts: &[UploadPartKey], blob: &BlobKey) -> Result<(), StorageError> {
        let target = self.object(&blob.path());
        if self.api.stat(&target).await?.is_some() {
            return Ok(());
        }
        let Some(first) = parts.first() else {
            let written = self
                .client
                .write_object(&self.bucket_path, &target, bytes::Bytes::new())
                .with_known_crc32c(crc32c::crc32c(b""))
                .set_if_generation_match(0)
                .send_unbuffered()
                .await;
            return match written {
                Err(e) if e.http_status_code() != Some(412) => Err(GcsError::Client {
                    operation: "writing",
                    object: target,
                    source: e,
                }
                .into()),
                _ => Ok(()),
            };
        };
        let sources = parts.iter().map(|p| self.object(&p.path())).collect();
        // Intermediates live beside the parts, so that upload clean-up finds any left over.
        let scratch = self.object(&format!(
            "uploads/{}/compose-{}-",
            first.upload,
            uuid::Uuid::new_v4().simple()
        ));
        let mut intermediates = Vec::new();
        let composed = self
            .compose_rounds(sources, &target, &scratch, &mut intermediates)
            .await;
        if let Err(e) = self.delete_objects(intermediates).await {
            tracing::warn!(error = %e, "could not delete intermediate compose objects");
        }
        Ok(composed?)
    }

    async fn read_part(&self, key: &UploadPartKey) -> Result<ByteStream, StorageError> {
        self.read_object(self.object(&key.path()), None).await
    }

    async fn read(
        &self,
        blob: &BlobKey,
        range: Option<ByteRange>,
    ) -> Result<ByteStream, StorageError> {
        self.read_object(self.object(&blob.path()), range).await
    }

    async fn stat(&self, blob: &BlobKey) -> Result<Option<u64>, StorageError> {
        Ok(self.api.stat(&self.object(&blob.path())).await?)
    }

    async fn delete_blob(&self, blob: &BlobKey) -> Result<(), StorageError> {
        Ok(self.api.delete(&self.object(&blob.path())).await?)
    }

    async fn delete_parts(&self, parts: &[UploadPartKey]) -> Result<(), StorageError> {
        let objects = parts.iter().map(|p| self.object(&p.path())).collect();
        Ok(self.delete_objects(objects).await?)
    }

    async fn list_blobs(
        &self,
        algorithm: Algorithm,
        prefix: &str,
    ) -> Result<Vec<StoredBlob>, StorageError> {
        self.stored_blobs(algorithm, prefix).await
    }

    async fn list_uploads(&self) -> Result<Vec<StoredUpload>, StorageError> {
        self.stored_uploads().await
    }

    async fn download_url(&self, blob: &BlobKey) -> Result<Option<String>, StorageError> {
        let Some(signer) = self.signer.as_ref().filter(|_| self.redirect_downloads) else {
            return Ok(None);
        };
        let object = self.object(&blob.path());
        let url = crate::signing::signed_get_url(
            signer,
            &self.bucket_path,
            &object,
            self.endpoint.as_deref(),
            self.signed_url_ttl,
        )
        .await?;
        Ok(Some(url))
    }
}

//! [`S3Storage`]: the storage trait over one S3-compatible bucket. The client is built here
//! (credentials, region, retries, checksums); writes and assembly are in [`crate::write`],
//! listing and clean-up in [`crate::listing`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::presigning::PresigningConfig;
use bytes::{Bytes, BytesMut};
use registry_common::oci::Algorithm;
use registry_common::storage::{
    BlobKey, BodyStream, ByteRange, ByteStream, Storage, StorageError, StoredBlob, StoredUpload,
    UploadPartKey,
};
use tokio::sync::Semaphore;

use crate::S3Config;
use crate::error::{OpenError, Problem, S3Error};

/// Parts of an assembly read through memory at once, per instance.
const ASSEMBLY_BUFFERS: usize = 2;

/// Attempts per S3 request, the first included: the SDK's standard retry mode retries
/// throttling (`SlowDown`, 503, 429) and transient errors with exponential backoff and full
/// jitter, within a retry-token bucket that stops retry storms.
const MAX_ATTEMPTS: u32 = 5;
/// A connection that cannot be opened in this time counts as a transient failure (retried).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Blobs and upload parts in one S3 bucket, under an optional prefix.
#[derive(Debug, Clone)]
pub struct S3Storage {
    pub(crate) client: Client,
    /// The client that signs download URLs: the same, or one for `S3_PUBLIC_ENDPOINT`
    /// (presigning is local; this client sends nothing).
    presigner: Client,
    pub(crate) bucket: String,
    /// `S3_ENDPOINT`, or the AWS region's, for messages.
    endpoint: String,
    pub(crate) prefix: String,
    redirect_downloads: bool,
    presigned_url_ttl: Duration,
    /// Parts assembled through memory (spanning several stored objects) at once, per
    /// instance: each holds up to one part in memory.
    pub(crate) buffers: Arc<Semaphore>,
    /// The part buffers of those assemblies once uploaded, refilled by the next part rather
    /// than freed: freed 8 MiB buffers stay in each allocator arena an assembly ran on (a
    /// 6 GiB blob of 1 MiB chunks peaked at 73 MiB of RSS). At most one per permit.
    pub(crate) spare_buffers: Arc<Mutex<Vec<BytesMut>>>,
}

impl S3Storage {
    /// Builds the client from the configuration and the AWS credential chain, then checks
    /// the bucket with one `HeadBucket`, so that a wrong bucket, endpoint or credential stops
    /// the start with a message naming the cause rather than failing the first push.
    pub async fn new(config: S3Config) -> Result<Self, OpenError> {
        let storage = Self::without_check(config).await;
        storage.check().await?;
        Ok(storage)
    }

    /// Builds the client without contacting the service.
    pub async fn without_check(config: S3Config) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(keys) = &config.static_credentials {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                &keys.access_key_id,
                &keys.secret_access_key,
                None,
                None,
                "registry-s3 static",
            ));
        }
        let sdk = loader
            .region(Region::new(config.region.clone()))
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .build(),
            )
            .load()
            .await;
        let client_for = |endpoint: Option<&str>| {
            // Checksums only where an operation requires them: several S3-compatible
            // servers reject the SDK's default trailing checksums (aws-chunked bodies).
            let mut builder = aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(config.force_path_style)
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
            if let Some(endpoint) = endpoint {
                builder = builder.endpoint_url(endpoint);
            }
            Client::from_conf(builder.build())
        };
        let client = client_for(config.endpoint.as_deref());
        let presigner = match &config.public_endpoint {
            Some(public) => client_for(Some(public)),
            None => client.clone(),
        };
        S3Storage {
            client,
            presigner,
            bucket: config.bucket,
            endpoint: config
                .endpoint
                .clone()
                .unwrap_or_else(|| format!("AWS S3 ({})", config.region)),
            prefix: config.prefix,
            redirect_downloads: config.redirect_downloads,
            presigned_url_ttl: config.presigned_url_ttl,
            buffers: Arc::new(Semaphore::new(ASSEMBLY_BUFFERS)),
            spare_buffers: Arc::new(Mutex::new(Vec::with_capacity(ASSEMBLY_BUFFERS))),
        }
    }

    async fn check(&self) -> Result<(), OpenError> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) => Err(OpenError::Bucket {
                bucket: self.bucket.clone(),
                endpoint: self.endpoint.clone(),
                problem: Problem::of(&e),
                source: Box::new(S3Error::sdk("checking bucket", &self.bucket, e)),
            }),
        }
    }

    /// The SDK client, for tests and tools that look at the bucket directly.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The key prefix (empty, or ending with `/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The object key of a key path.
    pub(crate) fn object(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }

    /// The object's size, or `None` when it does not exist.
    pub(crate) async fn head(&self, object: &str) -> Result<Option<u64>, S3Error> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(object)
            .send()
            .await
        {
            Ok(head) => Ok(Some(head.content_length().unwrap_or(0).max(0) as u64)),
            Err(e) => match S3Error::sdk("stat", object, e) {
                S3Error::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Streams one object, or an inclusive range of it.
    pub(crate) async fn get(
        &self,
        object: &str,
        range: Option<(u64, u64)>,
    ) -> Result<ByteStream, S3Error> {
        let response = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(object)
            .set_range(range.map(|(start, end)| format!("bytes={start}-{end}")))
            .send()
            .await
            .map_err(|e| S3Error::sdk("reading", object, e))?;
        let name = object.to_owned();
        let stream =
            futures_util::stream::unfold((response.body, name), |(mut body, name)| async move {
                let item = body.next().await?;
                let item = item.map_err(|e| {
                    std::io::Error::other(S3Error::Read {
                        object: name.clone(),
                        source: Box::new(e),
                    })
                });
                Some((item, (body, name)))
            });
        Ok(Box::pin(stream))
    }

    /// Reads `[start, end)` of an object into memory (at most one part).
    pub(crate) async fn read_into(
        &self,
        object: &str,
        start: u64,
        end: u64,
        buffer: &mut bytes::BytesMut,
    ) -> Result<(), S3Error> {
        use futures_util::StreamExt;
        let mut stream = self.get(object, Some((start, end - 1))).await?;
        while let Some(chunk) = stream.next().await {
            let chunk: Bytes = chunk.map_err(|e| S3Error::Read {
                object: object.to_owned(),
                source: Box::new(e),
            })?;
            buffer.extend_from_slice(&chunk);
        }
        Ok(())
    }
}

#[async_trait]
impl Storage for S3Storage {
    async fn put_part(
        &self,
        key: &UploadPartKey,
        body: BodyStream<'_>,
    ) -> Result<u64, StorageError> {
        self.write_streamed(&self.object(&key.path()), body).await
    }

    async fn assemble(&self, parts: &[UploadPartKey], blob: &BlobKey) -> Result<(), StorageError> {
        Ok(self
            .assemble_blob(parts, &self.object(&blob.path()))
            .await?)
    }

    async fn read_part(&self, key: &UploadPartKey) -> Result<ByteStream, StorageError> {
        Ok(self.get(&self.object(&key.path()), None).await?)
    }

    async fn read(
        &self,
        blob: &BlobKey,
        range: Option<ByteRange>,
    ) -> Result<ByteStream, StorageError> {
        let range = range.map(|r| (r.start, r.end));
        Ok(self.get(&self.object(&blob.path()), range).await?)
    }

    async fn stat(&self, blob: &BlobKey) -> Result<Option<u64>, StorageError> {
        Ok(self.head(&self.object(&blob.path())).await?)
    }

    async fn delete_blob(&self, blob: &BlobKey) -> Result<(), StorageError> {
        Ok(self.delete_objects(vec![self.object(&blob.path())]).await?)
    }

    async fn delete_parts(&self, parts: &[UploadPartKey]) -> Result<(), StorageError> {
        let objects = parts.iter().map(|p| self.object(&p.path())).collect();
        Ok(self.delete_objects(objects).await?)
    }

    async fn download_url(&self, blob: &BlobKey) -> Result<Option<String>, StorageError> {
        if !self.redirect_downloads {
            return Ok(None);
        }
        let object = self.object(&blob.path());
        let presigning =
            PresigningConfig::expires_in(self.presigned_url_ttl).map_err(|e| S3Error::Request {
                operation: "presigning",
                object: object.clone(),
                message: e.to_string(),
            })?;
        let request = self
            .presigner
            .get_object()
            .bucket(&self.bucket)
            .key(&object)
            .presigned(presigning)
            .await
            .map_err(|e| S3Error::sdk("presigning", &object, e))?;
        Ok(Some(request.uri().to_owned()))
    }

    async fn list_blobs(
        &self,
        algorithm: Algorithm,
        prefix: &str,
    ) -> Result<Vec<StoredBlob>, StorageError> {
        Ok(self.stored_blobs(algorithm, prefix).await?)
    }

    async fn list_uploads(&self) -> Result<Vec<StoredUpload>, StorageError> {
        Ok(self.stored_uploads().await?)
    }

    async fn abort_abandoned_writes(
        &self,
        older_than: std::time::SystemTime,
    ) -> Result<u64, StorageError> {
        Ok(self.abort_multipart_uploads(older_than).await?)
    }
}

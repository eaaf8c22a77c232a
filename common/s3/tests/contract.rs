//! The storage trait's contract, held by `S3Storage` against a real S3 server over HTTP
//! (scripts/s3-server.sh): parts of mixed sizes assembled into a blob of equal-sized
//! multipart parts, aligned parts copied in parts of their own size, small blobs in one `PutObject`, ranged reads, bodies cut off mid-way that
//! leave nothing behind, existing blobs never rewritten, listing, deletes past one
//! `DeleteObjects` batch, the abort of abandoned multipart uploads, presigned URLs, and a
//! start-up that fails on a bucket it cannot use.

mod support;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use registry_common::oci::{Algorithm, Digest, UploadId};
use registry_common::storage::{BlobKey, ByteRange, Storage, StorageError, UploadPartKey};
use support::{body, bytes, collect, part, storage};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

fn blob_of(bytes: &[u8]) -> BlobKey {
    BlobKey(Digest::sha256_of(bytes))
}

/// Writes each buffer as a part; returns the keys and the concatenation.
async fn write_parts(
    storage: &registry_s3::S3Storage,
    sizes: &[usize],
) -> (Vec<UploadPartKey>, Vec<u8>) {
    let upload = UploadId::new();
    let mut keys = Vec::new();
    let mut all = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let data = bytes(size, i as u8);
        let key = part(&upload, &format!("{:020}-p{i}", all.len()));
        // Sent in 64 KiB chunks, as a client's body arrives.
        let chunks = data.chunks(64 * KIB).map(Bytes::copy_from_slice).collect();
        let written = storage
            .put_part(&key, &mut body(chunks))
            .await
            .expect("part");
        assert_eq!(written, size as u64);
        all.extend_from_slice(&data);
        keys.push(key);
    }
    (keys, all)
}

/// The sizes of the blob's multipart parts, as the server reports them (`HeadObject` with a
/// part number); empty for an object written in one piece.
async fn stored_part_sizes(storage: &registry_s3::S3Storage, blob: &BlobKey) -> Vec<u64> {
    let key = format!("{}{}", storage.prefix(), blob.path());
    let first = storage
        .client()
        .head_object()
        .bucket(&support::server().bucket)
        .key(&key)
        .part_number(1)
        .send()
        .await
        .expect("HeadObject of part 1");
    let count = first.parts_count().unwrap_or(0);
    let mut sizes = Vec::new();
    for number in 1..=count {
        let head = storage
            .client()
            .head_object()
            .bucket(&support::server().bucket)
            .key(&key)
            .part_number(number)
            .send()
            .await
            .expect("HeadObject of a part");
        sizes.push(head.content_length().expect("length") as u64);
    }
    sizes
}

/// Each inclusive range `(start, end)` of `blob` reads back as those bytes of `all`.
async fn assert_ranges(
    storage: &registry_s3::S3Storage,
    blob: &BlobKey,
    all: &[u8],
    ranges: &[(u64, u64)],
) {
    for &(start, end) in ranges {
        let range = ByteRange { start, end };
        let read = storage.read(blob, Some(range)).await.expect("ranged read");
        let got = collect(read).await;
        assert!(
            got == all[start as usize..=end as usize],
            "range {start}-{end}"
        );
    }
}

#[tokio::test]
async fn mixed_parts_make_a_blob_of_equal_parts() {
    let storage = storage().await;
    let sizes = [KIB, 3 * MIB, 7 * MIB, KIB, 7 * MIB, 3 * MIB, 5];
    let (keys, all) = write_parts(&storage, &sizes).await;
    let blob = blob_of(&all);
    storage.assemble(&keys, &blob).await.unwrap();
    assert_eq!(storage.stat(&blob).await.unwrap(), Some(all.len() as u64));
    assert!(collect(storage.read(&blob, None).await.unwrap()).await == all);
    let parts = stored_part_sizes(&storage, &blob).await;
    let part_size = registry_s3::PART_SIZE;
    assert_eq!(parts.len() as u64, (all.len() as u64).div_ceil(part_size));
    assert!(
        parts[..parts.len() - 1].iter().all(|&s| s == part_size),
        "{parts:?}"
    );
    assert_eq!(parts.iter().sum::<u64>(), all.len() as u64);
    // Ranges, across the parts' seams.
    assert_ranges(
        &storage,
        &blob,
        &all,
        &[
            (0, 0),
            (1023, 1024),
            (8 * MIB as u64 - 3, 8 * MIB as u64 + 3),
        ],
    )
    .await;
    storage.delete_parts(&keys).await.unwrap();
    assert!(collect(storage.read(&blob, None).await.unwrap()).await == all);
    storage.delete_blob(&blob).await.unwrap();
    assert_eq!(storage.stat(&blob).await.unwrap(), None);
    storage.delete_blob(&blob).await.unwrap();
}

#[tokio::test]
async fn aligned_parts_are_copied_in_parts_of_their_size() {
    let storage = storage().await;
    // PATCHes of 12 MiB and a shorter last one: every boundary falls on a multiple of 12 MiB,
    // so the blob is made of 12 MiB parts, each an UploadPartCopy of one stored object.
    let sizes = [12 * MIB, 12 * MIB, 12 * MIB, 5 * MIB];
    let (keys, all) = write_parts(&storage, &sizes).await;
    let blob = blob_of(&all);
    storage.assemble(&keys, &blob).await.unwrap();
    assert!(collect(storage.read(&blob, None).await.unwrap()).await == all);
    let parts = stored_part_sizes(&storage, &blob).await;
    assert_eq!(parts, sizes.map(|s| s as u64));
    assert_ranges(
        &storage,
        &blob,
        &all,
        &[
            (12 * MIB as u64 - 2, 12 * MIB as u64 + 1),
            (0, 36 * MIB as u64),
        ],
    )
    .await;
    storage.delete_parts(&keys).await.unwrap();
    storage.delete_blob(&blob).await.unwrap();
}

#[tokio::test]
async fn a_large_single_part_is_copied_and_small_blobs_are_one_object() {
    let storage = storage().await;
    // One 17 MiB body: written as a multipart part object, copied into place.
    let (keys, all) = write_parts(&storage, &[17 * MIB]).await;
    let blob = blob_of(&all);
    storage.assemble(&keys, &blob).await.unwrap();
    assert!(collect(storage.read(&blob, None).await.unwrap()).await == all);
    // Many 1 KiB chunks of a small blob: one PutObject, no multipart parts.
    let (keys, all) = write_parts(&storage, &[KIB; 40]).await;
    let blob = blob_of(&all);
    storage.assemble(&keys, &blob).await.unwrap();
    assert!(collect(storage.read(&blob, None).await.unwrap()).await == all);
    assert!(stored_part_sizes(&storage, &blob).await.is_empty());
    // No parts: the empty blob.
    let empty = blob_of(b"");
    storage.assemble(&[], &empty).await.unwrap();
    assert_eq!(storage.stat(&empty).await.unwrap(), Some(0));
}

#[tokio::test]
async fn an_existing_blob_is_not_rewritten() {
    let storage = storage().await;
    let (first, all) = write_parts(&storage, &[KIB, KIB]).await;
    let blob = blob_of(&all);
    storage.assemble(&first, &blob).await.unwrap();
    // Other bytes under the same key (which a verified digest never allows) stay out.
    for sizes in [&[2 * KIB][..], &[5 * MIB, 5 * MIB][..]] {
        let (other, _) = write_parts(&storage, sizes).await;
        storage.assemble(&other, &blob).await.unwrap();
        assert!(collect(storage.read(&blob, None).await.unwrap()).await == all);
    }
}

/// A body that yields `good` bytes, then fails as a dropped connection does.
fn cut_off(good: usize) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + Unpin {
    let chunks: Vec<std::io::Result<Bytes>> = bytes(good, 7)
        .chunks(256 * KIB)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .chain(std::iter::once(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client went away",
        ))))
        .collect();
    futures_util::stream::iter(chunks)
}

#[tokio::test]
async fn a_body_cut_off_midway_leaves_nothing() {
    let storage = storage().await;
    let upload = UploadId::new();
    for good in [3 * KIB, 20 * MIB] {
        let key = part(&upload, &format!("cut-{good}"));
        let error = storage
            .put_part(&key, &mut cut_off(good))
            .await
            .unwrap_err();
        assert!(matches!(error, StorageError::Body { .. }), "{error:?}");
        assert!(storage.read_part(&key).await.is_err());
    }
    assert!(storage.list_uploads().await.unwrap().is_empty());
    // The 20 MiB body had started a multipart upload: it was aborted.
    let open = storage
        .client()
        .list_multipart_uploads()
        .bucket(&support::server().bucket)
        .prefix(storage.prefix())
        .send()
        .await
        .unwrap();
    assert!(open.uploads().is_empty(), "{:?}", open.uploads());
}

#[tokio::test]
async fn listing_finds_blobs_and_uploads_and_deletes_go_in_batches() {
    let storage = std::sync::Arc::new(storage().await);
    let upload = UploadId::new();
    // Past one DeleteObjects batch of 1,000 keys.
    let keys: Vec<UploadPartKey> = (0..1003)
        .map(|i| part(&upload, &format!("{i:05}")))
        .collect();
    let writes = keys.iter().cloned().map(|key| {
        let storage = storage.clone();
        async move {
            storage
                .put_part(&key, &mut body(vec![Bytes::from_static(b"x")]))
                .await
        }
    });
    use futures_util::StreamExt;
    let written: Vec<_> = futures_util::stream::iter(writes)
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(written.iter().all(|w| matches!(w, Ok(1))));
    let uploads = storage.list_uploads().await.unwrap();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].upload, upload);
    assert_eq!(uploads[0].parts.len(), 1003);
    assert!(uploads[0].modified <= SystemTime::now() + Duration::from_secs(5));

    let (blob_parts, all) = write_parts(&storage, &[10]).await;
    let blob = blob_of(&all);
    storage.assemble(&blob_parts, &blob).await.unwrap();
    let hex = blob.0.hex().to_owned();
    let listed = storage
        .list_blobs(Algorithm::Sha256, &hex[..2])
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, blob);
    assert_eq!(listed[0].size, 10);

    storage.delete_parts(&keys).await.unwrap();
    storage.delete_parts(&blob_parts).await.unwrap();
    assert!(storage.list_uploads().await.unwrap().is_empty());
}

#[tokio::test]
async fn abandoned_multipart_uploads_are_aborted() {
    let storage = storage().await;
    let key = format!("{}uploads/{}/crashed", storage.prefix(), UploadId::new());
    storage
        .client()
        .create_multipart_upload()
        .bucket(&support::server().bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    // moto reports every upload as initiated in 2010 (a fixed `Initiated`), so the cut-off that
    // spares it is set before that; on AWS, R2 and MinIO it is the real start time.
    let long_ago = SystemTime::UNIX_EPOCH + Duration::from_secs(365 * 24 * 3600);
    assert_eq!(storage.abort_abandoned_writes(long_ago).await.unwrap(), 0);
    let later = SystemTime::now() + Duration::from_secs(60);
    assert_eq!(storage.abort_abandoned_writes(later).await.unwrap(), 1);
    assert_eq!(storage.abort_abandoned_writes(later).await.unwrap(), 0);
}

#[tokio::test]
async fn downloads_are_presigned_urls_that_serve_the_blob() {
    let storage = storage().await;
    let (keys, all) = write_parts(&storage, &[3 * KIB]).await;
    let blob = blob_of(&all);
    storage.assemble(&keys, &blob).await.unwrap();
    let url = storage.download_url(&blob).await.unwrap().expect("a URL");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let got = reqwest::get(&url).await.unwrap();
    assert_eq!(got.status(), 200);
    assert!(got.bytes().await.unwrap() == all);

    let mut config = support::config();
    config.redirect_downloads = false;
    let streaming = registry_s3::S3Storage::new(config).await.unwrap();
    assert_eq!(streaming.download_url(&blob).await.unwrap(), None);

    let mut config = support::config();
    config.public_endpoint = Some("https://blobs.example.com".into());
    let public = registry_s3::S3Storage::new(config).await.unwrap();
    let url = public.download_url(&blob).await.unwrap().expect("a URL");
    assert!(url.starts_with("https://blobs.example.com/"), "{url}");
}

#[tokio::test]
async fn a_bucket_that_cannot_be_used_stops_the_start() {
    let mut config = support::config();
    config.bucket = "no-such-bucket".into();
    let error = registry_s3::S3Storage::new(config).await.unwrap_err();
    let message = registry_common::error::ErrorChain(&error).to_string();
    assert!(
        message.contains("no-such-bucket") && message.contains("S3_BUCKET"),
        "{message}"
    );

    let registry_s3::OpenError::Bucket { problem, .. } = &error;
    assert_eq!(*problem, registry_s3::Problem::NoBucket, "{message}");

    // The server checks signatures: a wrong secret is refused, and the message says so.
    let mut config = support::config();
    if let Some(keys) = config.static_credentials.as_mut() {
        keys.secret_access_key = "not-the-secret".into();
    }
    let error = registry_s3::S3Storage::new(config).await.unwrap_err();
    let message = registry_common::error::ErrorChain(&error).to_string();
    assert!(
        message.contains("credentials were refused") && message.contains("AWS_SECRET_ACCESS_KEY"),
        "{message}"
    );
    let registry_s3::OpenError::Bucket { problem, .. } = &error;
    assert_eq!(*problem, registry_s3::Problem::Credentials, "{message}");

    let mut config = support::config();
    config.endpoint = Some("http://127.0.0.1:9".into());
    let error = registry_s3::S3Storage::new(config).await.unwrap_err();
    let message = registry_common::error::ErrorChain(&error).to_string();
    assert!(
        message.contains("127.0.0.1:9") && message.contains("S3_ENDPOINT"),
        "{message}"
    );
    let registry_s3::OpenError::Bucket { problem, .. } = &error;
    assert_eq!(*problem, registry_s3::Problem::Unreachable, "{message}");
}

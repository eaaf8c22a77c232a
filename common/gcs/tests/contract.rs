//! The storage trait's contract, held by `GcsStorage` against a real GCS emulator over HTTP:
//! parts, server-side assembly (in compose rounds past 32 parts), reads and ranged reads,
//! stat, deletes, idempotent assembly, and failed bodies that leave nothing behind.

mod support;

use bytes::Bytes;
use registry_common::oci::{Digest, UploadId};
use registry_common::storage::{BlobKey, ByteRange, Storage, StorageError};
use support::{body, names_under, part, read_all, storage};

fn blob_of(bytes: &[u8]) -> BlobKey {
    BlobKey(Digest::sha256_of(bytes))
}

#[tokio::test]
async fn parts_assemble_into_a_blob_that_reads_stats_and_deletes() {
    let storage = storage().await;
    let upload = UploadId::new();
    let a = part(&upload, "0-a");
    let b = part(&upload, "5-b");
    let written = storage
        .put_part(&a, &mut body(vec![Bytes::from("hel"), Bytes::from("lo")]))
        .await
        .unwrap();
    assert_eq!(written, 5);
    let written = storage
        .put_part(&b, &mut body(vec![Bytes::from(" world")]))
        .await
        .unwrap();
    assert_eq!(written, 6);
    assert_eq!(
        read_all(storage.read_part(&a).await.unwrap()).await,
        b"hello"
    );

    let key = blob_of(b"hello world");
    assert_eq!(storage.stat(&key).await.unwrap(), None);
    storage
        .assemble(&[a.clone(), b.clone()], &key)
        .await
        .unwrap();
    assert_eq!(storage.stat(&key).await.unwrap(), Some(11));
    assert_eq!(
        read_all(storage.read(&key, None).await.unwrap()).await,
        b"hello world"
    );
    let range = ByteRange { start: 6, end: 9 };
    assert_eq!(
        read_all(storage.read(&key, Some(range)).await.unwrap()).await,
        b"worl"
    );
    let last = ByteRange { start: 10, end: 10 };
    assert_eq!(
        read_all(storage.read(&key, Some(last)).await.unwrap()).await,
        b"d"
    );

    // Parts go; the blob stays, under its content address.
    storage.delete_parts(&[a.clone(), b.clone()]).await.unwrap();
    assert!(
        names_under(&storage, &format!("uploads/{upload}/"))
            .await
            .is_empty()
    );
    assert_eq!(names_under(&storage, "blobs/").await, vec![key.path()]);
    assert_eq!(
        read_all(storage.read(&key, None).await.unwrap()).await,
        b"hello world"
    );
    // Deleting what is already gone is not an error.
    storage.delete_parts(&[a, b]).await.unwrap();

    storage.delete_blob(&key).await.unwrap();
    assert_eq!(storage.stat(&key).await.unwrap(), None);
    assert!(matches!(
        storage.read(&key, None).await,
        Err(StorageError::NotFound { .. })
    ));
    storage.delete_blob(&key).await.unwrap();
}

/// Each part's bytes differ, so a part out of order or missing changes the blob.
async fn assemble_parts(count: usize) {
    let storage = storage().await;
    let upload = UploadId::new();
    let mut parts = Vec::new();
    let mut expected = Vec::new();
    for i in 0..count {
        let key = part(&upload, &format!("{i:04}-p"));
        let bytes = Bytes::from(format!("part {i} of {count};").repeat(i % 3 + 1));
        expected.extend_from_slice(&bytes);
        storage
            .put_part(&key, &mut body(vec![bytes]))
            .await
            .expect("put_part");
        parts.push(key);
    }
    let key = blob_of(&expected);
    storage.assemble(&parts, &key).await.expect("assemble");
    assert_eq!(
        storage.stat(&key).await.expect("stat"),
        Some(expected.len() as u64)
    );
    assert_eq!(
        read_all(storage.read(&key, None).await.expect("read")).await,
        expected
    );
    // The intermediate objects of compose rounds are gone; only the parts remain.
    let mut names = names_under(&storage, &format!("uploads/{upload}/")).await;
    names.sort();
    let mut part_names: Vec<String> = parts.iter().map(|p| p.path()).collect();
    part_names.sort();
    assert_eq!(names, part_names, "{count} parts");
}

#[tokio::test]
async fn one_part_assembles() {
    assemble_parts(1).await;
}

#[tokio::test]
async fn two_parts_assemble() {
    assemble_parts(2).await;
}

#[tokio::test]
async fn thirty_three_parts_take_two_compose_rounds() {
    assemble_parts(33).await;
}

#[tokio::test]
async fn seventy_parts_take_two_compose_rounds() {
    assemble_parts(70).await;
}

#[tokio::test]
async fn no_parts_make_an_empty_blob() {
    let storage = storage().await;
    let key = blob_of(b"");
    storage.assemble(&[], &key).await.unwrap();
    assert_eq!(storage.stat(&key).await.unwrap(), Some(0));
    assert!(
        read_all(storage.read(&key, None).await.unwrap())
            .await
            .is_empty()
    );
    storage.assemble(&[], &key).await.unwrap();
}

#[tokio::test]
async fn an_existing_blob_is_not_rewritten() {
    let storage = storage().await;
    let upload = UploadId::new();
    let first = part(&upload, "0-first");
    storage
        .put_part(&first, &mut body(vec![Bytes::from("original")]))
        .await
        .unwrap();
    let key = blob_of(b"original");
    storage
        .assemble(std::slice::from_ref(&first), &key)
        .await
        .unwrap();

    // A second upload of the same digest (here with other bytes, to see a rewrite).
    let other = part(&UploadId::new(), "0-other");
    storage
        .put_part(&other, &mut body(vec![Bytes::from("something else")]))
        .await
        .unwrap();
    storage
        .assemble(std::slice::from_ref(&other), &key)
        .await
        .unwrap();
    assert_eq!(
        read_all(storage.read(&key, None).await.unwrap()).await,
        b"original"
    );
}

fn failing_after(
    chunks: Vec<Bytes>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + Unpin {
    let items: Vec<std::io::Result<Bytes>> = chunks
        .into_iter()
        .map(Ok)
        .chain([Err(std::io::Error::other("client went away"))])
        .collect();
    futures_util::stream::iter(items)
}

#[tokio::test]
async fn a_small_body_failing_midway_leaves_nothing() {
    let storage = storage().await;
    let upload = UploadId::new();
    let key = part(&upload, "0-x");
    let result = storage
        .put_part(&key, &mut failing_after(vec![Bytes::from("abc")]))
        .await;
    assert!(
        matches!(result, Err(StorageError::Body { .. })),
        "{result:?}"
    );
    assert!(
        names_under(&storage, &format!("uploads/{upload}/"))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_large_body_failing_midway_leaves_nothing() {
    let storage = storage().await;
    let upload = UploadId::new();
    let key = part(&upload, "0-x");
    // Past the single-request size, so the part goes as a resumable upload and its first
    // chunks reach the service before the body fails.
    let chunk = Bytes::from(vec![7u8; 1024 * 1024]);
    let result = storage
        .put_part(&key, &mut failing_after(vec![chunk; 20]))
        .await;
    assert!(
        matches!(result, Err(StorageError::Body { .. })),
        "{result:?}"
    );
    assert!(
        names_under(&storage, &format!("uploads/{upload}/"))
            .await
            .is_empty()
    );
    assert!(matches!(
        storage.read_part(&key).await,
        Err(StorageError::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_part_larger_than_one_request_streams_whole() {
    let storage = storage().await;
    let upload = UploadId::new();
    let key = part(&upload, "0-big");
    // 20 MiB in 64 KiB chunks, each chunk different.
    let chunks: Vec<Bytes> = (0..320u32)
        .map(|i| Bytes::from(vec![(i % 251) as u8; 64 * 1024]))
        .collect();
    let expected: Vec<u8> = chunks.concat();
    let written = storage.put_part(&key, &mut body(chunks)).await.unwrap();
    assert_eq!(written, expected.len() as u64);
    let read = read_all(storage.read_part(&key).await.unwrap()).await;
    assert_eq!(read.len(), expected.len());
    assert!(read == expected, "the part's bytes differ from those sent");
}

#[tokio::test]
async fn objects_live_under_the_configured_prefix() {
    let config = support::config();
    let prefix = config.gcs_prefix.clone();
    let storage = registry_gcs::GcsStorage::new(config).await.unwrap();
    let upload = UploadId::new();
    let key = part(&upload, "0-a");
    storage
        .put_part(&key, &mut body(vec![Bytes::from("x")]))
        .await
        .unwrap();
    // Seen through a storage without a prefix, the object carries it.
    let mut bare = support::config();
    bare.gcs_prefix = String::new();
    let bare = registry_gcs::GcsStorage::new(bare).await.unwrap();
    assert_eq!(
        names_under(&bare, &prefix).await,
        vec![format!("{prefix}/{}", key.path())]
    );
}

#[tokio::test]
async fn without_a_signer_downloads_stream_through() {
    let storage = storage().await;
    let key = blob_of(b"");
    storage.assemble(&[], &key).await.unwrap();
    assert_eq!(storage.download_url(&key).await.unwrap(), None);
}

#[tokio::test]
async fn listing_finds_blobs_and_uploads_as_typed_keys() {
    let storage = storage().await;
    let upload = UploadId::new();
    let parts = [part(&upload, "0-a"), part(&upload, "1-b")];
    for (key, bytes) in parts.iter().zip(["list", "ed"]) {
        storage
            .put_part(key, &mut body(vec![Bytes::from(bytes)]))
            .await
            .unwrap();
    }
    let key = blob_of(b"listed");
    storage.assemble(&parts, &key).await.unwrap();

    let hex = key.0.hex().to_owned();
    let blobs = storage
        .list_blobs(key.0.algorithm(), &hex[..2])
        .await
        .unwrap();
    assert_eq!(blobs.len(), 1);
    assert_eq!(blobs[0].key, key);
    assert_eq!(blobs[0].size, 6);
    let age = std::time::SystemTime::now()
        .duration_since(blobs[0].modified)
        .unwrap_or_default();
    assert!(age.as_secs() < 300, "modified {age:?} ago");
    let other = if &hex[..2] == "00" { "01" } else { "00" };
    assert!(
        storage
            .list_blobs(key.0.algorithm(), other)
            .await
            .unwrap()
            .is_empty()
    );

    let uploads = storage.list_uploads().await.unwrap();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].upload, upload);
    let mut names: Vec<String> = uploads[0]
        .parts
        .iter()
        .map(|p| p.part.to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["0-a", "1-b"]);
    storage.delete_parts(&uploads[0].parts).await.unwrap();
    assert!(storage.list_uploads().await.unwrap().is_empty());
}

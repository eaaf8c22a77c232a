//! Flat memory through S3: a large blob (256 MiB by default), generated on the fly, is
//! streamed as one request body into a part object (a multipart upload of 8 MiB parts), made
//! into the blob server-side and streamed back out; a second blob of 1 MiB chunks is assembled through the
//! buffered path. Digests are checked, and this process's peak resident memory (`VmHWM`)
//! stays far below the blobs' sizes. Alone in its test binary, so that nothing else weighs on
//! the peak.

mod support;

use bytes::Bytes;
use futures_util::StreamExt;
use registry_common::oci::{Algorithm, DigestHasher, UploadId};
use registry_common::storage::{BlobKey, Storage};

const MIB: u64 = 1024 * 1024;
/// 256 MiB is twice the peak allowed, so a blob buffered whole fails the test; the test
/// server (moto) copies whole objects in Python, which makes 1 GiB take four minutes on two
/// cores. `S3_STREAM_TEST_MIB` sets another size.
const DEFAULT_SIZE_MIB: u64 = 256;
const CHUNK: usize = 256 * 1024;
/// Peak resident memory allowed: one 8 MiB part buffer and the SDK's copy of it, two buffered
/// parts while assembling, the runtime and libraries; a blob buffered whole would not fit.
const PEAK_LIMIT_MIB: u64 = 120;

fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmHWM value");
    kib / 1024
}

/// A body of `len` bytes in chunks of `CHUNK`, hashed as it is generated.
fn generated(
    len: u64,
    seed: u8,
    hasher: std::sync::Arc<std::sync::Mutex<DigestHasher>>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + Unpin {
    let pattern = support::bytes(2 * CHUNK, seed);
    let chunks = len.div_ceil(CHUNK as u64);
    futures_util::stream::iter(0..chunks).map(move |i| {
        let start = (i.wrapping_mul(7919) % CHUNK as u64) as usize;
        let size = (len - i * CHUNK as u64).min(CHUNK as u64) as usize;
        let chunk = pattern.slice(start..start + size);
        hasher.lock().expect("hasher").update(&chunk);
        Ok(chunk)
    })
}

async fn read_back(
    storage: &registry_s3::S3Storage,
    blob: &BlobKey,
) -> (u64, registry_common::oci::Digest) {
    let mut stream = storage.read(blob, None).await.expect("read");
    let mut hasher = DigestHasher::new(Algorithm::Sha256);
    let mut len = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("chunk");
        len += chunk.len() as u64;
        hasher.update(&chunk);
    }
    (len, hasher.finish())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_blobs_stream_through_in_flat_memory() {
    let size = std::env::var("S3_STREAM_TEST_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SIZE_MIB)
        * MIB;
    let storage = support::storage().await;
    let upload = UploadId::new();

    // One streamed body, as docker sends a layer.
    let hasher = std::sync::Arc::new(std::sync::Mutex::new(DigestHasher::new(Algorithm::Sha256)));
    let key = support::part(&upload, "00000000000000000000-one");
    let written = storage
        .put_part(&key, &mut generated(size, 1, hasher.clone()))
        .await
        .unwrap();
    assert_eq!(written, size);
    let digest = std::sync::Arc::try_unwrap(hasher)
        .ok()
        .unwrap()
        .into_inner()
        .unwrap()
        .finish();
    let blob = BlobKey(digest.clone());
    storage
        .assemble(std::slice::from_ref(&key), &blob)
        .await
        .unwrap();
    assert_eq!(read_back(&storage, &blob).await, (size, digest));
    storage.delete_parts(&[key]).await.unwrap();
    storage.delete_blob(&blob).await.unwrap();

    // 1 MiB chunks, each its own part object: every blob part is read back and uploaded.
    let chunked = 96 * MIB;
    let hasher = std::sync::Arc::new(std::sync::Mutex::new(DigestHasher::new(Algorithm::Sha256)));
    let mut keys = Vec::new();
    for i in 0..chunked / MIB {
        let key = support::part(&upload, &format!("{:020}-c", i * MIB));
        storage
            .put_part(&key, &mut generated(MIB, i as u8, hasher.clone()))
            .await
            .unwrap();
        keys.push(key);
    }
    let digest = std::sync::Arc::try_unwrap(hasher)
        .ok()
        .unwrap()
        .into_inner()
        .unwrap()
        .finish();
    let blob = BlobKey(digest.clone());
    storage.assemble(&keys, &blob).await.unwrap();
    assert_eq!(read_back(&storage, &blob).await, (chunked, digest));
    storage.delete_parts(&keys).await.unwrap();
    storage.delete_blob(&blob).await.unwrap();

    let peak = peak_rss_mib();
    assert!(
        peak < PEAK_LIMIT_MIB,
        "peak resident memory {peak} MiB for a {} MiB blob",
        size / MIB
    );
}

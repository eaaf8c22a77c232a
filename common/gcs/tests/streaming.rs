//! Flat memory through GCS: a 2 GiB blob, generated on the fly, is streamed into parts,
//! assembled server-side and streamed back out; its digest is checked, and this process's peak
//! resident memory (`VmHWM`) stays far below the blob's size. Alone in its test binary, so that
//! nothing else weighs on the peak.

mod support;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use registry_common::oci::{Algorithm, DigestHasher, UploadId};
use registry_common::storage::{BlobKey, ByteRange, Storage};

const MIB: u64 = 1024 * 1024;
/// `GCS_STREAM_TEST_MIB` may make it smaller for a quick local run; the test command keeps
/// the default.
const DEFAULT_SIZE_MIB: u64 = 2048;
const CHUNK: usize = 256 * 1024;
/// Parts the blob is sent in; each is far past the single-request size, so each streams as a
/// resumable upload.
const PARTS: u64 = 8;
/// Peak resident memory allowed: the client's 8 MiB resumable buffer and a few chunks in
/// flight, plus the runtime and libraries; a blob buffered whole would be 2 GiB.
const PEAK_LIMIT_MIB: u64 = 160;

/// Deterministic content: chunk `i` is a window into a fixed pseudo-random pattern, at an
/// offset that depends on `i`, so chunks differ and any byte can be recomputed.
struct Pattern(Bytes);

impl Pattern {
    fn new() -> Self {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let bytes: Vec<u8> = (0..2 * CHUNK)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        Pattern(bytes.into())
    }

    fn offset(index: u64) -> usize {
        (index.wrapping_mul(7919) % CHUNK as u64) as usize
    }

    fn chunk(&self, index: u64, len: usize) -> Bytes {
        let start = Self::offset(index);
        self.0.slice(start..start + len)
    }

    /// The bytes at `[start, end]` of the whole blob.
    fn range(&self, start: u64, end: u64) -> Vec<u8> {
        (start..=end)
            .map(|at| {
                let index = at / CHUNK as u64;
                self.0[Self::offset(index) + (at % CHUNK as u64) as usize]
            })
            .collect()
    }
}

fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmHWM value");
    kib / 1024
}

#[tokio::test]
async fn a_two_gib_blob_streams_in_and_out_with_flat_memory() {
    let size_mib = std::env::var("GCS_STREAM_TEST_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SIZE_MIB);
    let size = size_mib * MIB;
    assert_eq!(
        size % (PARTS * CHUNK as u64),
        0,
        "GCS_STREAM_TEST_MIB must be a multiple of 2"
    );
    let storage = support::storage().await;
    let pattern = Arc::new(Pattern::new());
    let before = peak_rss_mib();

    // In: generated as it is sent, hashed as it goes, as consecutive parts (like the PATCHes
    // of a chunked upload; one part of 2 GiB would mostly time the emulator, whose resumable
    // uploads slow down as they grow).
    let sent_hasher = Arc::new(Mutex::new(DigestHasher::new(Algorithm::Sha256)));
    let chunks_per_part = size / PARTS / CHUNK as u64;
    let upload = UploadId::new();
    let mut parts = Vec::new();
    for index in 0..PARTS {
        let first = index * chunks_per_part;
        let generator = {
            let pattern = pattern.clone();
            let hasher = sent_hasher.clone();
            futures_util::stream::iter(first..first + chunks_per_part).map(move |chunk| {
                let chunk = pattern.chunk(chunk, CHUNK);
                hasher.lock().expect("hasher").update(&chunk);
                Ok::<_, std::io::Error>(chunk)
            })
        };
        let part = support::part(&upload, &format!("{index:04}-big"));
        let written = storage
            .put_part(&part, &mut Box::pin(generator))
            .await
            .unwrap();
        assert_eq!(written, size / PARTS);
        parts.push(part);
    }
    let digest = Arc::into_inner(sent_hasher)
        .expect("the generators are gone")
        .into_inner()
        .expect("hasher")
        .finish();

    let key = BlobKey(digest.clone());
    storage.assemble(&parts, &key).await.unwrap();
    storage.delete_parts(&parts).await.unwrap();
    assert_eq!(storage.stat(&key).await.unwrap(), Some(size));

    // Out: streamed and hashed, never held.
    let mut hasher = DigestHasher::new(Algorithm::Sha256);
    let mut received = 0u64;
    let mut stream = storage.read(&key, None).await.unwrap();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        received += chunk.len() as u64;
        hasher.update(&chunk);
    }
    assert_eq!(received, size);
    assert_eq!(hasher.finish(), digest);

    // A range across a chunk boundary, deep into the blob.
    let start = size / 2 - 1000;
    let range = ByteRange {
        start,
        end: start + 4999,
    };
    let got = support::read_all(storage.read(&key, Some(range)).await.unwrap()).await;
    assert!(
        got == pattern.range(range.start, range.end),
        "ranged read differs"
    );

    let peak = peak_rss_mib();
    eprintln!("blob {size_mib} MiB; peak RSS {before} MiB before, {peak} MiB after");
    assert!(
        peak < PEAK_LIMIT_MIB,
        "peak RSS {peak} MiB for a {size_mib} MiB blob (limit {PEAK_LIMIT_MIB} MiB)"
    );
    storage.delete_blob(&key).await.unwrap();
}

//! What the GCS tests share: a real emulator over HTTP, and a storage isolated per test.
//!
//! `GCS_TEST_ENDPOINT` names a running emulator (bucket `GCS_TEST_BUCKET`, default
//! `registry-test`), as the test command provides. Unset, the first test of a binary starts
//! one with `scripts/gcs-emulator.sh serve` on a loopback address of its own; it stops when the
//! test process exits (its standard input closes). Each test writes under a prefix of its own.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;
use futures_util::StreamExt;
use registry_common::oci::UploadId;
use registry_common::storage::{ByteStream, UploadPartKey};
use registry_gcs::{GcsConfig, GcsStorage};

/// A running emulator and the bucket to use in it.
#[derive(Debug)]
pub struct Emulator {
    pub endpoint: String,
    pub bucket: String,
}

static EMULATOR: OnceLock<Emulator> = OnceLock::new();
/// An emulator this process started, held until the process exits: that closes its standard
/// input, which stops it.
static EMULATOR_PROCESS: Mutex<Option<Child>> = Mutex::new(None);

pub fn emulator() -> &'static Emulator {
    EMULATOR.get_or_init(|| {
        let bucket = std::env::var("GCS_TEST_BUCKET").unwrap_or_else(|_| "registry-test".into());
        if let Ok(endpoint) = std::env::var("GCS_TEST_ENDPOINT") {
            return Emulator { endpoint, bucket };
        }
        let pid = std::process::id();
        let address = format!("127.1.{}.{}", (pid >> 8) & 0xff, pid & 0xff);
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/gcs-emulator.sh");
        let mut child = Command::new("bash")
            .arg(&script)
            .args(["serve", &address])
            .env("GCS_EMULATOR_BUCKET", &bucket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reading the emulator's endpoint");
        let endpoint = line.trim().to_owned();
        assert!(
            endpoint.starts_with("http://"),
            "the GCS emulator did not start (see the messages of scripts/gcs-emulator.sh \
             above). Start one yourself and set GCS_TEST_ENDPOINT to the URL that \
             `scripts/gcs-emulator.sh start` prints (it needs root for port 80)"
        );
        *EMULATOR_PROCESS.lock().expect("emulator lock") = Some(child);
        Emulator { endpoint, bucket }
    })
}

/// A configuration for the emulator, under a prefix no other test uses.
pub fn config() -> GcsConfig {
    let emulator = emulator();
    let mut config = GcsConfig::new(&emulator.bucket);
    config.gcs_endpoint = Some(emulator.endpoint.clone());
    config.gcs_anonymous = true;
    config.gcs_prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    config
}

pub async fn storage() -> GcsStorage {
    GcsStorage::new(config()).await.expect("GCS storage")
}

pub fn part(upload: &UploadId, name: &str) -> UploadPartKey {
    UploadPartKey {
        upload: upload.clone(),
        part: name.into(),
    }
}

/// A body made of these chunks.
pub fn body(
    chunks: Vec<Bytes>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + Unpin {
    futures_util::stream::iter(chunks.into_iter().map(Ok))
}

pub async fn read_all(mut stream: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("chunk"));
    }
    out
}

/// Names of the objects under `prefix` (relative to the storage's own prefix).
pub async fn names_under(storage: &GcsStorage, prefix: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut token = None;
    loop {
        // Small pages, so that paging is exercised too.
        let page = storage
            .list(prefix, token.as_deref(), 50)
            .await
            .expect("list");
        names.extend(page.objects.into_iter().map(|o| o.name));
        match page.next_page_token {
            Some(next) => token = Some(next),
            None => return names,
        }
    }
}

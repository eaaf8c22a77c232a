//! What the S3 tests share: a real S3 server over HTTP, and a storage isolated per test.
//!
//! `S3_TEST_ENDPOINT` names a running server (bucket `S3_TEST_BUCKET`, default
//! `registry-test`; access key `S3_TEST_ACCESS_KEY_ID` and `S3_TEST_SECRET_ACCESS_KEY`), as
//! the test command provides. Unset, the first test of a binary starts one with
//! `scripts/s3-server.sh serve` on a loopback address and port of its own, which prints the
//! endpoint and the access key it made; it stops when the test process exits (its standard
//! input closes). Each test writes under a prefix of its own.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;
use futures_util::StreamExt;
use registry_common::oci::UploadId;
use registry_common::storage::{ByteStream, UploadPartKey};
use registry_s3::{S3Config, S3Storage, StaticCredentials};

#[derive(Debug)]
pub struct Server {
    pub endpoint: String,
    pub bucket: String,
    /// The access key the server knows (it checks signatures).
    pub keys: StaticCredentials,
}

static SERVER: OnceLock<Server> = OnceLock::new();
static SERVER_PROCESS: Mutex<Option<Child>> = Mutex::new(None);

pub fn server() -> &'static Server {
    SERVER.get_or_init(|| {
        let bucket = std::env::var("S3_TEST_BUCKET").unwrap_or_else(|_| "registry-test".into());
        if let Ok(endpoint) = std::env::var("S3_TEST_ENDPOINT") {
            let var = |name: &str| {
                std::env::var(name).unwrap_or_else(|_| {
                    panic!("S3_TEST_ENDPOINT needs {name} (scripts/s3-server.sh credentials)")
                })
            };
            let keys = StaticCredentials {
                access_key_id: var("S3_TEST_ACCESS_KEY_ID"),
                secret_access_key: var("S3_TEST_SECRET_ACCESS_KEY"),
            };
            return Server {
                endpoint,
                bucket,
                keys,
            };
        }
        let pid = std::process::id();
        let address = format!("127.2.{}.{}", (pid >> 8) & 0xff, pid & 0xff);
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/s3-server.sh");
        let mut child = Command::new("bash")
            .arg(&script)
            .args(["serve", &address, "9000"])
            .env("S3_SERVER_BUCKET", &bucket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut next = || {
            lines
                .next()
                .and_then(Result::ok)
                .unwrap_or_default()
                .trim()
                .to_owned()
        };
        let endpoint = next();
        assert!(
            endpoint.starts_with("http://"),
            "the S3 server did not start (see the messages of scripts/s3-server.sh above); \
             start one yourself and set S3_TEST_ENDPOINT to what `scripts/s3-server.sh start` \
             prints"
        );
        // `S3_TEST_ACCESS_KEY_ID=…` then `S3_TEST_SECRET_ACCESS_KEY=…`.
        let mut value = || next().split_once('=').map(|(_, v)| v.to_owned());
        let (Some(access_key_id), Some(secret_access_key)) = (value(), value()) else {
            panic!("scripts/s3-server.sh serve printed no access key");
        };
        *SERVER_PROCESS.lock().expect("server lock") = Some(child);
        Server {
            endpoint,
            bucket,
            keys: StaticCredentials {
                access_key_id,
                secret_access_key,
            },
        }
    })
}

/// A configuration for the server, under a prefix no other test uses.
pub fn config() -> S3Config {
    let server = server();
    let mut config = S3Config::new(&server.bucket);
    config.endpoint = Some(server.endpoint.clone());
    config.region = "us-east-1".into();
    config.force_path_style = true;
    config.prefix = format!("test-{}/", uuid::Uuid::new_v4().simple());
    config.static_credentials = Some(server.keys.clone());
    config
}

pub async fn storage() -> S3Storage {
    S3Storage::new(config()).await.expect("S3 storage")
}

pub fn part(upload: &UploadId, name: &str) -> UploadPartKey {
    UploadPartKey {
        upload: upload.clone(),
        part: name.into(),
    }
}

/// A body of the given chunks.
pub fn body(
    chunks: Vec<Bytes>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + Unpin {
    futures_util::stream::iter(chunks.into_iter().map(Ok))
}

pub async fn collect(mut stream: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("chunk"));
    }
    out
}

/// `len` deterministic bytes that differ with `seed`.
pub fn bytes(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ ((i >> 11) as u8))
        .collect::<Vec<u8>>()
        .into()
}

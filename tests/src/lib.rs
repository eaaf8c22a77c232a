//! Test harness: starts the real `registry` binary on a free loopback port with its own data
//! directory, and offers small helpers to speak the distribution API over real sockets.
//!
//! The binary is taken from `REGISTRY_BIN`, or else `target/debug/registry` of this workspace
//! (the test command builds it before running the tests). With `TEST_METADATA=postgres`, each
//! registry gets a fresh database on the server named by `TEST_DATABASE_URL` (dropped after);
//! otherwise the embedded default (SQLite) under its data directory.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

pub mod api;
pub mod auth;
pub mod chaos;
pub mod clients;
pub mod daemons;
pub mod database;
pub mod events;
pub mod import;
pub mod nats;
pub mod oci_layout;
pub mod services;
pub mod upstream;
pub mod webhook_receiver;

use std::sync::Arc;

pub use database::{TestDatabase, metadata_engine};

/// A running registry: the single binary, or (with `TEST_TOPOLOGY=services`) the four
/// service binaries behind a router applying the load balancer's route table. Killed when
/// dropped.
#[derive(Debug)]
pub struct Registry {
    process: Process,
    port: u16,
    data: Arc<tempfile::TempDir>,
    database: Option<Arc<TestDatabase>>,
    log_path: PathBuf,
    env: Vec<(String, String)>,
    pub client: reqwest::Client,
}

#[derive(Debug)]
enum Process {
    Single(Child),
    Services(Box<services::Fleet>),
}

/// `TEST_TOPOLOGY=services` runs the suites through the four services.
fn services_topology() -> bool {
    std::env::var("TEST_TOPOLOGY").as_deref() == Ok("services")
}

/// With `TEST_STORAGE=gcs`, the settings that put a registry's bytes in the GCS emulator at
/// `GCS_TEST_ENDPOINT` (bucket `GCS_TEST_BUCKET`, default `registry-test`); with
/// `TEST_STORAGE=s3`, in the S3 server at `S3_TEST_ENDPOINT` (bucket `S3_TEST_BUCKET`, default
/// `registry-test`; scripts/s3-server.sh). Each registry writes under a prefix of its own so
/// that registries never see (or collect) each other's objects. See [`redirected_downloads`]
/// for whether blob downloads redirect to the store.
fn storage_env() -> Vec<(String, String)> {
    match std::env::var("TEST_STORAGE").as_deref() {
        Ok("gcs") => gcs_env(),
        Ok("s3") => s3_env(),
        _ => Vec::new(),
    }
}

fn gcs_env() -> Vec<(String, String)> {
    let endpoint = std::env::var("GCS_TEST_ENDPOINT")
        .expect("TEST_STORAGE=gcs needs GCS_TEST_ENDPOINT (scripts/gcs-emulator.sh start)");
    let bucket = std::env::var("GCS_TEST_BUCKET").unwrap_or_else(|_| "registry-test".to_owned());
    let prefix = format!("test-{}/", database::unique_suffix());
    let mut env: Vec<(String, String)> = [
        ("STORAGE_BACKEND", "gcs".to_owned()),
        ("BUCKET_NAME", bucket),
        ("GCS_ENDPOINT", endpoint),
        ("GCS_ANONYMOUS", "true".to_owned()),
        ("GCS_PREFIX", prefix),
        ("GCS_REDIRECT_DOWNLOADS", redirected_downloads().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if redirected_downloads() {
        env.push(("GCS_SIGNING_KEY_FILE".to_owned(), signing_key_file()));
    }
    env
}

/// The access key is the one the S3 server made at its start (`S3_TEST_ACCESS_KEY_ID`,
/// `S3_TEST_SECRET_ACCESS_KEY`; `scripts/s3-server.sh credentials`), which it checks every
/// signature against; the SDK reads them from the environment, as it would real keys.
fn s3_env() -> Vec<(String, String)> {
    let endpoint = std::env::var("S3_TEST_ENDPOINT")
        .expect("TEST_STORAGE=s3 needs S3_TEST_ENDPOINT (scripts/s3-server.sh start)");
    let bucket = std::env::var("S3_TEST_BUCKET").unwrap_or_else(|_| "registry-test".to_owned());
    let prefix = format!("test-{}/", database::unique_suffix());
    [
        ("STORAGE_BACKEND", "s3".to_owned()),
        ("S3_BUCKET", bucket),
        ("S3_ENDPOINT", endpoint),
        ("S3_REGION", "us-east-1".to_owned()),
        ("S3_FORCE_PATH_STYLE", "true".to_owned()),
        ("S3_PREFIX", prefix),
        ("S3_REDIRECT_DOWNLOADS", redirected_downloads().to_string()),
        ("AWS_ACCESS_KEY_ID", s3_test_key("S3_TEST_ACCESS_KEY_ID")),
        (
            "AWS_SECRET_ACCESS_KEY",
            s3_test_key("S3_TEST_SECRET_ACCESS_KEY"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Names of the objects under `prefix` in a GCS emulator's bucket (the JSON API, every page).
pub async fn gcs_object_names(endpoint: &str, bucket: &str, prefix: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut page: Option<String> = None;
    loop {
        let mut url = format!("{endpoint}/storage/v1/b/{bucket}/o?prefix={prefix}");
        if let Some(token) = &page {
            url.push_str(&format!("&pageToken={token}"));
        }
        let listing: serde_json::Value = reqwest::get(&url)
            .await
            .expect("list the bucket")
            .json()
            .await
            .expect("listing json");
        for item in listing["items"].as_array().into_iter().flatten() {
            names.push(item["name"].as_str().expect("object name").to_owned());
        }
        match listing["nextPageToken"].as_str() {
            Some(token) => page = Some(token.to_owned()),
            None => return names,
        }
    }
}

/// A part of the S3 server's access key, from the environment the test command set.
pub fn s3_test_key(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("TEST_STORAGE=s3 needs {name} (scripts/s3-server.sh credentials)")
    })
}

/// Whether blob downloads answer 307 to the store: with `TEST_STORAGE=gcs`, when
/// `TEST_GCS_REDIRECTS=on` (V4 signed URLs of the emulator, signed with a service-account key
/// made for the run); with `TEST_STORAGE=s3`, unless `TEST_S3_REDIRECTS=off` (presigned URLs,
/// on as in the backend's default).
pub fn redirected_downloads() -> bool {
    match std::env::var("TEST_STORAGE").as_deref() {
        Ok("gcs") => std::env::var("TEST_GCS_REDIRECTS").as_deref() == Ok("on"),
        Ok("s3") => std::env::var("TEST_S3_REDIRECTS").as_deref() != Ok("off"),
        _ => false,
    }
}

/// A service-account JSON key with a fresh RSA key (by `openssl`), made once per test process.
fn signing_key_file() -> String {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let out = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .output()
            .expect("run openssl genpkey");
        assert!(
            out.status.success(),
            "openssl genpkey: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let key = serde_json::json!({
            "type": "service_account",
            "project_id": "registry-test",
            "private_key_id": "test-key",
            "private_key": String::from_utf8(out.stdout).expect("PEM is text"),
            "client_email": "registry@registry-test.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": "https://oauth2.googleapis.com/token",
        });
        let path =
            std::env::temp_dir().join(format!("registry-test-key-{}.json", std::process::id()));
        std::fs::write(&path, key.to_string()).expect("write the test key");
        path.display().to_string()
    })
    .clone()
}

/// Path of the registry binary under test.
pub fn registry_bin() -> PathBuf {
    if let Ok(path) = std::env::var("REGISTRY_BIN") {
        return PathBuf::from(path);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("debug/registry")
}

/// A port that is free now, below Linux's ephemeral range (32768–60999): a port the kernel
/// handed out for `bind(0)` is released before the registry binds it, and in that gap the
/// kernel may give it to any outgoing connection (a client, a database pool) of a loaded
/// machine, so the registry would fail with "Address already in use". Below the range only
/// another test can take it; the start differs per process and per call.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(7919)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    for _ in 0..SPAN {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + seed.wrapping_add(step.wrapping_mul(104_729)) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

impl Registry {
    /// Starts a registry on the embedded default (filesystem + SQLite) in a new temp directory.
    pub async fn start() -> Registry {
        Registry::start_with(&[]).await
    }

    /// Starts a registry with extra environment variables.
    pub async fn start_with(env: &[(&str, &str)]) -> Registry {
        let data = Arc::new(tempfile::tempdir().expect("temp dir"));
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        env.extend(storage_env());
        let database = match metadata_engine() {
            database::Engine::Postgres if !env.iter().any(|(k, _)| k == "DATABASE_URL") => {
                Some(Arc::new(TestDatabase::create().await))
            }
            _ => None,
        };
        if let Some(database) = &database {
            env.push(("DATABASE_URL".into(), database.url().to_owned()));
        }
        Registry::spawn(data, database, env).await
    }

    /// Starts the single binary with `env` alone (beside `HOST`, `PORT` and `DATA_DIR`): none
    /// of the `TEST_STORAGE` or `TEST_METADATA` settings are added, for tests that start it
    /// with another registry's settings. `database` lives as long as the registry.
    pub async fn start_alone(env: &[(&str, &str)], database: Option<TestDatabase>) -> Registry {
        let data = Arc::new(tempfile::tempdir().expect("temp dir"));
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Registry::spawn(data, database.map(Arc::new), env).await
    }

    /// Starts another process on the same data directory and database: several instances
    /// that must behave as one registry.
    pub async fn start_peer(&self) -> Registry {
        Registry::spawn(self.data.clone(), self.database.clone(), self.env.clone()).await
    }

    /// The database this registry uses, when it is a test PostgreSQL database.
    pub fn database(&self) -> Option<&TestDatabase> {
        self.database.as_deref()
    }

    async fn spawn(
        data: Arc<tempfile::TempDir>,
        database: Option<Arc<TestDatabase>>,
        env: Vec<(String, String)>,
    ) -> Registry {
        let mut full_env: Vec<(String, String)> = vec![("DB_MAX_CONNECTIONS".into(), "4".into())];
        full_env.extend(env.iter().cloned());
        let (process, port, log_path) = if services_topology() {
            let fleet = services::Fleet::start_in(data.path(), &full_env).await;
            let port = fleet.router.port();
            (Process::Services(Box::new(fleet)), port, PathBuf::new())
        } else {
            let (child, port, log_path) = spawn_single(data.path(), &full_env);
            (Process::Single(child), port, log_path)
        };
        let client = reqwest::Client::builder()
            // With redirected downloads a client follows the 307 to storage, as docker does.
            .redirect(if redirected_downloads() {
                reqwest::redirect::Policy::limited(3)
            } else {
                reqwest::redirect::Policy::none()
            })
            .build()
            .expect("http client");
        let mut registry = Registry {
            process,
            port,
            data,
            database,
            log_path,
            env,
            client,
        };
        registry.wait_ready().await;
        registry
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if !self.is_running() {
                panic!("registry exited early:\n{}", self.log());
            }
            if let Ok(resp) = self.client.get(self.url("/healthz")).send().await
                && resp.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "registry not ready after 30s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Stops the process and starts it again on the same data directory (on a new free port).
    pub async fn restart(mut self) -> Registry {
        self.stop();
        let (data, database, env) = (self.data.clone(), self.database.clone(), self.env.clone());
        drop(self);
        Registry::spawn(data, database, env).await
    }

    /// Kills the process (SIGKILL: nothing is flushed, no request finishes), keeping its data
    /// directory and database for a restart or a job.
    pub fn kill(&mut self) {
        self.stop();
    }

    /// `host:port` of the registry, as clients name it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Absolute URL for a path starting with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The byte store's settings the registry was started with (`TEST_STORAGE`), for a job
    /// that must work on the same store.
    pub fn storage_env(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .filter(|(k, _)| {
                ["STORAGE_BACKEND", "BUCKET_NAME"].contains(&k.as_str())
                    || ["GCS_", "S3_", "AWS_"].iter().any(|p| k.starts_with(p))
            })
            .cloned()
            .collect()
    }

    /// The data directory the registry was started with.
    pub fn data_dir(&self) -> PathBuf {
        self.data.path().join("data")
    }

    /// Everything the process (or every service) logged so far.
    pub fn log(&self) -> String {
        if let Process::Services(fleet) = &self.process {
            return fleet.logs();
        }
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.log_path) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.process {
            Process::Single(child) => matches!(child.try_wait(), Ok(None)),
            Process::Services(fleet) => fleet.all_running(),
        }
    }

    fn stop(&mut self) {
        match &mut self.process {
            Process::Single(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            // The fleet's processes stop when it drops; replace it with nothing running.
            Process::Services(_) => {
                let _ = std::mem::replace(&mut self.process, Process::Single(dead_child()));
            }
        }
    }

    /// Pushes a blob monolithically (`POST ?digest=`) and returns its digest.
    pub async fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = sha256_digest(bytes);
        let resp = self
            .client
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/?digest={digest}")))
            .header("Content-Type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .expect("push blob");
        assert_eq!(
            resp.status(),
            201,
            "push blob to {repo}: {:?}",
            resp.text().await
        );
        digest
    }

    /// Puts a manifest and asserts 201; returns its digest.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let resp = self
            .client
            .put(self.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header("Content-Type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .expect("push manifest");
        assert_eq!(
            resp.status(),
            201,
            "push manifest {repo}:{reference}: {:?}",
            resp.text().await
        );
        sha256_digest(body)
    }

    /// Pushes a small OCI image (config + `layers` random layers of the given sizes) tagged
    /// `tag`, and returns it.
    pub async fn push_image(&self, repo: &str, tag: &str, layer_sizes: &[usize]) -> PushedImage {
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"created":"2026-01-01T00:00:00Z","tag":"{tag}"}}"#
        )
        .into_bytes();
        let config_digest = self.push_blob(repo, &config).await;
        let mut layers = Vec::new();
        for (i, size) in layer_sizes.iter().enumerate() {
            let bytes = pseudo_random_bytes(*size, (i as u64 + 1) * 7919 + tag.len() as u64);
            let digest = self.push_blob(repo, &bytes).await;
            layers.push((digest, bytes));
        }
        let manifest = image_manifest_json(
            &(config_digest.clone(), config.len()),
            &layers
                .iter()
                .map(|(d, b)| (d.clone(), b.len()))
                .collect::<Vec<_>>(),
        );
        let digest = self
            .push_manifest(repo, tag, OCI_MANIFEST, manifest.as_bytes())
            .await;
        PushedImage {
            manifest: manifest.into_bytes(),
            digest,
            config: (config_digest, config),
            layers,
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts the single binary on a free port; returns it, the port and its log file.
fn spawn_single(root: &Path, env: &[(String, String)]) -> (Child, u16, PathBuf) {
    let bin = registry_bin();
    assert!(
        bin.exists(),
        "registry binary not found at {} (run `cargo build -p registry` or set REGISTRY_BIN)",
        bin.display()
    );
    // A test of distribution's settings gives the address and level in its names.
    let given = |name: &str| env.iter().any(|(k, _)| k == name);
    let port = match env.iter().find(|(k, _)| k == "REGISTRY_HTTP_ADDR") {
        Some((_, addr)) => addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("REGISTRY_HTTP_ADDR with a port"),
        None => free_port(),
    };
    let log_path = root.join(format!("registry-{port}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .expect("open log file");
    let mut command = Command::new(&bin);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", root.join("data"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log handle"))
        .stderr(log);
    if !given("REGISTRY_HTTP_ADDR") {
        command
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string());
    }
    if !given("REGISTRY_LOG_LEVEL") {
        command.env("LOG_LEVEL", "info");
    }
    if given("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY") {
        command.env_remove("DATA_DIR");
    }
    for (k, v) in env {
        command.env(k, v);
    }
    (command.spawn().expect("spawn registry"), port, log_path)
}

/// A child that has already exited, to stand where a stopped fleet was.
fn dead_child() -> Child {
    let mut child = Command::new("true").spawn().expect("spawn true");
    let _ = child.wait();
    child
}

/// Runs `bin args` with only `env` (plus a fresh `DATA_DIR`, and `HOST=127.0.0.1`, `PORT=0`
/// unless `env` has distribution's `REGISTRY_HTTP_ADDR`)
/// and returns its error output and that data directory; it must exit within `within` with
/// status 2 (a configuration it cannot use stops it before it serves).
pub fn start_fails(
    bin: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    within: Duration,
) -> (String, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(bin);
    command.args(args).env_clear().env("DATA_DIR", data.path());
    // distribution's address setting stands for both.
    if !env.iter().any(|(k, _)| *k == "REGISTRY_HTTP_ADDR") {
        command.env("HOST", "127.0.0.1").env("PORT", "0");
    }
    let mut child = command
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .expect("stderr")
                .read_to_string(&mut stderr)
                .expect("read stderr");
            assert_eq!(
                status.code(),
                Some(2),
                "exit status with {env:?}; stderr: {stderr}"
            );
            return (stderr, data);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{} kept running with {env:?}", bin.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An image pushed by [`Registry::push_image`], with every byte kept for comparison.
#[derive(Debug, Clone)]
pub struct PushedImage {
    pub manifest: Vec<u8>,
    pub digest: String,
    pub config: (String, Vec<u8>),
    pub layers: Vec<(String, Vec<u8>)>,
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// `sha256:<hex>` of the bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// Lowercase hex of the bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Deterministic bytes that do not compress, from a seed (xorshift64*).
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// An OCI image manifest naming a config and layers by (digest, size).
pub fn image_manifest_json(config: &(String, usize), layers: &[(String, usize)]) -> String {
    let layers: Vec<_> = layers
        .iter()
        .map(|(d, s)| serde_json::json!({"mediaType": OCI_LAYER, "digest": d, "size": s}))
        .collect();
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config.0, "size": config.1},
        "layers": layers,
    })
    .to_string()
}

// ===========================================================================================
// Conformance and robustness helpers, shared by `conformance_*.rs` and `robustness.rs`:
// whole responses read at once, spec error-body checks, upload sessions, byte-identical pull
// checks, and raw HTTP/1.1 over a TCP socket for requests reqwest refuses to send.
// ===========================================================================================

/// Media type of the OCI empty descriptor, used as the config of artifacts.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// The empty JSON object `{}`, the blob behind [`OCI_EMPTY`].
pub const EMPTY_JSON: &[u8] = b"{}";

/// Every error code the spec lists, plus the legacy ones this registry also uses.
pub const KNOWN_ERROR_CODES: &[&str] = &[
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
    "TAG_INVALID",
    "PAGINATION_NUMBER_INVALID",
    "RANGE_INVALID",
];

/// `sha512:<hex>` of the bytes.
pub fn sha512_digest(bytes: &[u8]) -> String {
    format!("sha512:{}", hex(&sha2::Sha512::digest(bytes)))
}

/// A response read to the end, so tests can look at it more than once.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// Reads the whole response.
    pub async fn read(resp: reqwest::Response) -> Reply {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.expect("read response body").to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// The header's value as text, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header value"))
    }

    /// The body parsed as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Body as lossy text, for assertion messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `code` of every error, after checking the body and Content-Type follow the spec's
    /// error format.
    pub fn error_codes(&self) -> Vec<String> {
        error_codes_of(
            self.header("content-type"),
            &self.body,
            &format!("status {}", self.status),
        )
    }
}

/// Sends the request and reads the whole response.
pub async fn send(request: reqwest::RequestBuilder) -> Reply {
    Reply::read(request.send().await.expect("send request")).await
}

fn error_codes_of(content_type: Option<&str>, body: &[u8], context: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    let content_type = content_type.unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "{context}: error Content-Type is {content_type:?}, want application/json; body {text}"
    );
    let value: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{context}: error body is not JSON ({e}): {text}"));
    let errors = value["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{context}: no `errors` array in {text}"));
    assert!(!errors.is_empty(), "{context}: empty `errors` in {text}");
    errors
        .iter()
        .map(|error| {
            let code = error["code"]
                .as_str()
                .unwrap_or_else(|| panic!("{context}: error without string `code`: {text}"));
            assert!(
                !code.is_empty() && code.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "{context}: code {code:?} is not uppercase letters and underscores"
            );
            if let Some(message) = error.get("message") {
                assert!(
                    message.is_string(),
                    "{context}: `message` is not a string: {text}"
                );
            }
            code.to_owned()
        })
        .collect()
}

/// Asserts the status and that the spec error body names `code` first.
#[track_caller]
pub fn assert_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(
        reply.status,
        status,
        "want {status} {code}, body {}",
        reply.text()
    );
    let codes = reply.error_codes();
    assert_eq!(
        codes[0],
        code,
        "want {status} {code}, body {}",
        reply.text()
    );
}

/// Asserts one of the statuses and that the first error code is one of `codes`.
#[track_caller]
pub fn assert_error_in(reply: &Reply, statuses: &[u16], codes: &[&str]) {
    assert!(
        statuses.contains(&reply.status),
        "want one of {statuses:?} {codes:?}, got {} {}",
        reply.status,
        reply.text()
    );
    let got = reply.error_codes();
    assert!(
        codes.contains(&got[0].as_str()),
        "want one of {codes:?}, got {got:?} (status {})",
        reply.status
    );
}

/// Asserts a 4xx answer with a spec error body whose codes are all known ones.
#[track_caller]
pub fn assert_client_error(reply: &Reply) {
    assert!(
        (400..500).contains(&reply.status),
        "want a 4xx, got {} {}",
        reply.status,
        reply.text()
    );
    for code in reply.error_codes() {
        assert!(
            KNOWN_ERROR_CODES.contains(&code.as_str()),
            "unknown error code {code} in {}",
            reply.text()
        );
    }
}

/// An absolute URL for a `Location` header that may be relative.
pub fn absolute(reg: &Registry, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_owned()
    } else {
        reg.url(location)
    }
}

/// Appends a query parameter to a URL that may already have a query.
pub fn with_query(url: &str, query: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{query}")
}

/// Opens an upload session (`POST /v2/<repo>/blobs/uploads/`), asserts 202 and returns the
/// absolute upload URL.
pub async fn start_upload(reg: &Registry, repo: &str) -> String {
    let reply = send(
        reg.client
            .post(reg.url(&format!("/v2/{repo}/blobs/uploads/")))
            .header("Content-Length", "0"),
    )
    .await;
    assert_eq!(reply.status, 202, "open upload in {repo}: {}", reply.text());
    absolute(reg, reply.header("location").expect("Location on 202"))
}

/// The end of a `Range: 0-<end>` header (upload progress).
#[track_caller]
pub fn range_end(reply: &Reply) -> u64 {
    let range = reply.header("range").expect("Range header");
    let end = range
        .strip_prefix("0-")
        .unwrap_or_else(|| panic!("Range {range:?} does not start with 0-"));
    end.parse()
        .unwrap_or_else(|_| panic!("Range {range:?} end is not a number"))
}

/// Bytes stored so far in an upload session, from `GET <location>` (204 + Range). Only
/// meaningful once more than one byte is stored (`0-0` means both 0 and 1 bytes).
pub async fn upload_progress(reg: &Registry, location: &str) -> u64 {
    let reply = send(reg.client.get(location)).await;
    assert_eq!(reply.status, 204, "upload status: {}", reply.text());
    range_end(&reply) + 1
}

/// `PATCH` of a chunk with `Content-Range: <start>-<end>`.
pub async fn patch_chunk(reg: &Registry, location: &str, start: u64, chunk: &[u8]) -> Reply {
    let end = start + chunk.len() as u64 - 1;
    send(
        reg.client
            .patch(location)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", format!("{start}-{end}"))
            .body(chunk.to_vec()),
    )
    .await
}

/// Closes an upload session with `PUT ?digest=` and an optional last chunk.
pub async fn finish_upload(reg: &Registry, location: &str, digest: &str, last: &[u8]) -> Reply {
    send(
        reg.client
            .put(with_query(location, &format!("digest={digest}")))
            .header("Content-Type", "application/octet-stream")
            .body(last.to_vec()),
    )
    .await
}

/// Asserts the process is alive and the image still pulls byte-identical: the manifest by tag
/// and by digest, and every blob the pulled manifest names, digests recomputed.
pub async fn assert_intact(reg: &mut Registry, repo: &str, tag: &str, image: &PushedImage) {
    assert!(reg.is_running(), "registry died:\n{}", reg.log());
    for reference in [tag, image.digest.as_str()] {
        let reply = send(
            reg.client
                .get(reg.url(&format!("/v2/{repo}/manifests/{reference}")))
                .header("Accept", OCI_MANIFEST),
        )
        .await;
        assert_eq!(
            reply.status,
            200,
            "pull {repo}:{reference}: {}",
            reply.text()
        );
        assert_eq!(
            reply.body, image.manifest,
            "manifest {repo}:{reference} changed"
        );
        assert_eq!(sha256_digest(&reply.body), image.digest);
        assert_eq!(
            reply.header("docker-content-digest"),
            Some(image.digest.as_str())
        );
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&image.manifest).expect("pushed manifest is JSON");
    let mut named = vec![
        manifest["config"]["digest"]
            .as_str()
            .expect("config digest"),
    ];
    for layer in manifest["layers"].as_array().expect("layers") {
        named.push(layer["digest"].as_str().expect("layer digest"));
    }
    let mut expected = vec![&image.config];
    expected.extend(image.layers.iter());
    assert_eq!(named.len(), expected.len());
    for (digest, (want_digest, want_bytes)) in named.into_iter().zip(expected) {
        assert_eq!(digest, want_digest);
        let reply = send(
            reg.client
                .get(reg.url(&format!("/v2/{repo}/blobs/{digest}"))),
        )
        .await;
        assert_eq!(reply.status, 200, "pull blob {digest}: {}", reply.text());
        assert_eq!(
            sha256_digest(&reply.body),
            digest,
            "blob {digest} content changed"
        );
        assert_eq!(&reply.body, want_bytes);
    }
}

/// A response read from a raw socket. `status` is 0 when the server closed the connection
/// without answering.
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawReply {
    /// Parses raw HTTP/1.1 response bytes (one response, body chunked or not).
    pub fn parse(bytes: &[u8]) -> RawReply {
        let Some(split) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
            return RawReply {
                status: 0,
                head: String::from_utf8_lossy(bytes).into_owned(),
                body: Vec::new(),
            };
        };
        let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut reply = RawReply {
            status,
            head,
            body: bytes[split + 4..].to_vec(),
        };
        if reply
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            reply.body = dechunk(&reply.body);
        } else if let Some(len) = reply.header("content-length").and_then(|v| v.parse().ok()) {
            reply.body.truncate(len);
        }
        reply
    }

    /// A header's value (first occurrence, name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then_some(value.trim())
        })
    }

    /// Error codes, after checking the spec error format.
    pub fn error_codes(&self) -> Vec<String> {
        error_codes_of(
            self.header("content-type"),
            &self.body,
            &format!("raw status {}", self.status),
        )
    }
}

fn dechunk(mut bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = bytes.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&bytes[..eol]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            break;
        };
        if size == 0 {
            break;
        }
        let start = eol + 2;
        let end = (start + size).min(bytes.len());
        out.extend_from_slice(&bytes[start..end]);
        bytes = &bytes[(end + 2).min(bytes.len())..];
    }
    out
}

/// Builds an HTTP/1.1 request with `Host`, `Connection: close` and (when `body` is given) an
/// honest `Content-Length`, followed by the body.
pub fn raw_request(
    reg: &Registry,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: {}\r\n", reg.host());
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body.unwrap_or_default());
    out
}

/// Opens a raw TCP connection to the registry.
pub async fn raw_connect(reg: &Registry) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(("127.0.0.1", reg.port()))
        .await
        .expect("connect to registry")
}

/// Reads until the server closes the connection (or resets it), for at most `limit`. Returns
/// the bytes read and whether the connection was closed within the limit.
pub async fn read_until_closed(
    stream: &mut tokio::net::TcpStream,
    limit: Duration,
) -> (Vec<u8>, bool) {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0_u8; 8192];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (out, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends raw request bytes on a new connection and reads the answer until the server closes
/// (at most 20 s). Writing and reading run side by side, so an answer sent before the whole
/// request was read (a 413 on the headers alone, say) is still seen.
pub async fn raw_exchange(reg: &Registry, request: &[u8]) -> RawReply {
    use tokio::io::AsyncWriteExt;
    let stream = raw_connect(reg).await;
    let (mut read, mut write) = stream.into_split();
    let request = request.to_vec();
    // The server may answer and close before reading everything; a failed write is fine then.
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&request).await;
        write
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut bytes = Vec::new();
    let mut buf = [0_u8; 8192];
    loop {
        use tokio::io::AsyncReadExt;
        match tokio::time::timeout_at(deadline, read.read(&mut buf)).await {
            Err(_) => panic!("server kept the connection open after `Connection: close`"),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
        }
    }
    // Keep the write half alive until the answer is read, then drop both.
    drop(writer.await);
    RawReply::parse(&bytes)
}

/// The path and query of an absolute URL (`http://host:port/path?q` → `/path?q`).
pub fn path_of(url: &str) -> String {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    match rest.find('/') {
        Some(i) if url.len() != rest.len() => rest[i..].to_owned(),
        _ => url.to_owned(),
    }
}

/// Asserts a raw answer is a 4xx with a spec error body of known codes.
#[track_caller]
pub fn assert_raw_client_error(reply: &RawReply, what: &str) {
    assert!(
        (400..500).contains(&reply.status),
        "{what}: want a 4xx, got {} {:?} {}",
        reply.status,
        reply.head,
        String::from_utf8_lossy(&reply.body)
    );
    for code in reply.error_codes() {
        assert!(
            KNOWN_ERROR_CODES.contains(&code.as_str()),
            "{what}: unknown error code {code}"
        );
    }
}

/// Writes the request head and part of a body on a new connection, then closes the socket
/// without sending the rest, like a client that crashed mid-upload.
pub async fn send_then_vanish(reg: &Registry, head_and_partial_body: &[u8]) {
    use tokio::io::AsyncWriteExt;
    let mut stream = raw_connect(reg).await;
    stream
        .write_all(head_and_partial_body)
        .await
        .expect("write partial request");
    stream.flush().await.expect("flush");
    // Give the server the bytes before the FIN arrives, then hang up.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(stream);
}

/// Upload progress once the server has settled after an aborted request: polls the session
/// status until three readings in a row agree (at most 10 s), then returns it.
pub async fn settled_progress(reg: &Registry, location: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = upload_progress(reg, location).await;
    let mut same = 0;
    while same < 2 {
        assert!(Instant::now() < deadline, "upload progress never settled");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = upload_progress(reg, location).await;
        if now == last {
            same += 1;
        } else {
            same = 0;
            last = now;
        }
    }
    last
}

/// Raw `PATCH` head for an upload session, streaming (no Content-Range) with the given
/// Content-Length; append (part of) a body to it.
pub fn raw_patch_head(reg: &Registry, location: &str, content_length: &str) -> Vec<u8> {
    let headers = [
        ("Content-Type", "application/octet-stream"),
        ("Content-Length", content_length),
    ];
    raw_request(reg, "PATCH", &path_of(location), &headers, None)
}

/// Resumes a session at whatever offset the server kept (asserted within `low..=high`),
/// uploads the rest of `bytes`, closes it with the whole digest and checks the stored blob.
pub async fn resume_and_finish(
    reg: &Registry,
    repo: &str,
    location: &str,
    bytes: &[u8],
    (low, high): (u64, u64),
) {
    let offset = settled_progress(reg, location).await;
    assert!(
        (low..=high).contains(&offset),
        "session at {offset}, want {low}..={high}"
    );
    let reply = patch_chunk(reg, location, offset, &bytes[offset as usize..]).await;
    assert_eq!(reply.status, 202, "resume at {offset}: {}", reply.text());
    let digest = sha256_digest(bytes);
    let reply = finish_upload(reg, location, &digest, b"").await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let pulled = send(
        reg.client
            .get(reg.url(&format!("/v2/{repo}/blobs/{digest}"))),
    )
    .await;
    assert_eq!(pulled.body, bytes, "resumed blob differs");
}

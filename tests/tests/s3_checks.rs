//! The registry binary against an S3 server that checks every signature (scripts/s3-server.sh:
//! moto with access control on): a configuration it cannot use — a wrong secret key, no
//! credentials at all, a bucket that does not exist, an endpoint nobody answers on, no
//! `S3_BUCKET` — stops the start with exit status 2 and a message naming the cause and the
//! variables to check, never falling back to the filesystem; and a blob download answers 307
//! to a presigned URL that the server honours, while the same URL with its signature or its
//! key altered is refused (so the skopeo suite on S3 shows that clients follow URLs signed for
//! real).
//!
//! The server is the one at `S3_TEST_ENDPOINT` (with `S3_TEST_ACCESS_KEY_ID` and
//! `S3_TEST_SECRET_ACCESS_KEY`, as the test command exports them); unset, this binary starts
//! its own with `scripts/s3-server.sh serve` on a loopback address of its own.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use registry_tests::{Registry, pseudo_random_bytes, registry_bin};

#[derive(Debug)]
struct Server {
    endpoint: String,
    bucket: String,
    access_key_id: String,
    secret_access_key: String,
}

static SERVER: OnceLock<Server> = OnceLock::new();
/// The server this binary started, if any; it stops when the test process exits.
static SERVER_PROCESS: Mutex<Option<Child>> = Mutex::new(None);

fn server() -> &'static Server {
    SERVER.get_or_init(|| {
        let bucket = std::env::var("S3_TEST_BUCKET").unwrap_or_else(|_| "registry-test".into());
        if let Ok(endpoint) = std::env::var("S3_TEST_ENDPOINT") {
            return Server {
                endpoint,
                bucket,
                access_key_id: registry_tests::s3_test_key("S3_TEST_ACCESS_KEY_ID"),
                secret_access_key: registry_tests::s3_test_key("S3_TEST_SECRET_ACCESS_KEY"),
            };
        }
        let pid = std::process::id();
        let address = format!("127.3.{}.{}", (pid >> 8) & 0xff, pid & 0xff);
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/s3-server.sh");
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
        let mut next = || lines.next().and_then(Result::ok).unwrap_or_default();
        let endpoint = next().trim().to_owned();
        assert!(
            endpoint.starts_with("http://"),
            "the S3 server did not start (see the messages of scripts/s3-server.sh above)"
        );
        let mut value = || next().trim().split_once('=').map(|(_, v)| v.to_owned());
        let (Some(access_key_id), Some(secret_access_key)) = (value(), value()) else {
            panic!("scripts/s3-server.sh serve printed no access key");
        };
        *SERVER_PROCESS.lock().expect("server lock") = Some(child);
        Server {
            endpoint,
            bucket,
            access_key_id,
            secret_access_key,
        }
    })
}

/// The settings of a registry on the server's bucket, under a prefix of its own, with the
/// server's access key.
fn s3_env() -> Vec<(String, String)> {
    let server = server();
    let prefix = format!("s3-checks-{}/", registry_tests::database::unique_suffix());
    [
        ("STORAGE_BACKEND", "s3".to_owned()),
        ("S3_BUCKET", server.bucket.clone()),
        ("S3_ENDPOINT", server.endpoint.clone()),
        ("S3_REGION", "us-east-1".to_owned()),
        ("S3_FORCE_PATH_STYLE", "true".to_owned()),
        ("S3_PREFIX", prefix),
        ("AWS_ACCESS_KEY_ID", server.access_key_id.clone()),
        ("AWS_SECRET_ACCESS_KEY", server.secret_access_key.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// `s3_env` with `changes` applied (a variable set to a new value).
fn s3_env_with(changes: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = s3_env();
    for (name, value) in changes {
        match env.iter_mut().find(|(k, _)| k == name) {
            Some(entry) => entry.1 = (*value).to_owned(),
            None => env.push(((*name).to_owned(), (*value).to_owned())),
        }
    }
    env
}

/// Runs the binary with `env` only (plus a data directory and a free port) and returns its
/// error output; it must exit within 60 s with status 2, and leave no blob store in its data
/// directory (it did not fall back to the filesystem).
fn start_fails(env: &[(String, String)]) -> String {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // The unreachable endpoint is tried with the SDK's retries and backoff first.
    let (stderr, data) =
        registry_tests::start_fails(&registry_bin(), &[], &env, Duration::from_secs(60));
    assert!(
        !data.path().join("blobs").exists(),
        "a blob directory appeared in DATA_DIR: it fell back to the filesystem"
    );
    stderr
}

fn assert_mentions(stderr: &str, needles: &[&str]) {
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
}

#[test]
fn a_wrong_secret_key_stops_the_start_naming_the_credentials() {
    let bucket = server().bucket.clone();
    let stderr = start_fails(&s3_env_with(&[(
        "AWS_SECRET_ACCESS_KEY",
        "not-the-secret-of-this-key",
    )]));
    assert_mentions(
        &stderr,
        &[
            "STORAGE_BACKEND=s3",
            &bucket,
            "credentials were refused",
            "HTTP 403",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        ],
    );
    assert!(
        !stderr.contains("not-the-secret-of-this-key"),
        "the secret is in the message: {stderr}"
    );
    // A key the server does not know is refused the same way.
    let stderr = start_fails(&s3_env_with(&[(
        "AWS_ACCESS_KEY_ID",
        "AKIAUNKNOWNKEY000000",
    )]));
    assert_mentions(&stderr, &["credentials were refused", "AWS_ACCESS_KEY_ID"]);
}

#[test]
fn a_missing_bucket_stops_the_start_naming_s3_bucket() {
    let stderr = start_fails(&s3_env_with(&[("S3_BUCKET", "no-such-registry-bucket")]));
    assert_mentions(
        &stderr,
        &[
            "no-such-registry-bucket",
            "no such bucket",
            "HTTP 404",
            "S3_BUCKET",
        ],
    );
}

#[test]
fn an_unreachable_endpoint_stops_the_start_naming_s3_endpoint() {
    // Nothing listens on the discard port of this loopback address.
    let stderr = start_fails(&s3_env_with(&[("S3_ENDPOINT", "http://127.0.0.1:9")]));
    assert_mentions(&stderr, &["http://127.0.0.1:9", "no answer", "S3_ENDPOINT"]);
}

#[test]
fn no_credentials_at_all_stop_the_start_naming_the_credentials() {
    let env: Vec<(String, String)> = s3_env()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("AWS_"))
        // No instance metadata to ask either (it would be tried, and time out, first).
        .chain([("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned())])
        .collect();
    let stderr = start_fails(&env);
    assert_mentions(
        &stderr,
        &[
            "no request could be made",
            "no credentials found",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        ],
    );
    assert!(
        !stderr.contains("no answer from the endpoint"),
        "missing credentials are not an unreachable endpoint: {stderr}"
    );
}

#[test]
fn a_missing_s3_bucket_setting_stops_the_start() {
    let env: Vec<(String, String)> = s3_env()
        .into_iter()
        .filter(|(k, _)| k != "S3_BUCKET")
        .collect();
    let stderr = start_fails(&env);
    assert_mentions(&stderr, &["S3_BUCKET"]);
}

#[tokio::test]
async fn downloads_redirect_to_presigned_urls_the_server_checks() {
    // The test command runs this binary without TEST_STORAGE, so these are the settings in
    // force (with TEST_STORAGE=s3 the harness's own, for the same server, come after them).
    let env = s3_env_with(&[
        ("S3_REDIRECT_DOWNLOADS", "true"),
        ("S3_PRESIGNED_URL_TTL_SECS", "300"),
    ]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let reg = Registry::start_with(&env).await;
    let blob = pseudo_random_bytes(300 * 1024 + 5, 15);
    let digest = reg.push_blob("s3/checks", &blob).await;

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let resp = client
        .get(reg.url(&format!("/v2/s3/checks/blobs/{digest}")))
        .send()
        .await
        .expect("GET blob");
    assert_eq!(resp.status(), 307, "{:?}", resp.text().await);
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("Location")
        .to_owned();
    assert!(
        location.starts_with(&server().endpoint) && location.contains("X-Amz-Signature="),
        "{location}"
    );

    let fetched = client.get(&location).send().await.expect("GET presigned");
    assert_eq!(fetched.status(), 200);
    assert_eq!(
        fetched.bytes().await.expect("body").as_ref(),
        blob.as_slice()
    );

    // The server checks what it is given: an altered signature, another key id, or no
    // signature at all are refused.
    let signature = location
        .split("X-Amz-Signature=")
        .nth(1)
        .expect("signature")
        .split('&')
        .next()
        .expect("signature value");
    let flipped: String = signature
        .chars()
        .map(|c| if c == '0' { '1' } else { '0' })
        .collect();
    let altered = location.replace(signature, &flipped);
    let other_key = location.replace(&server().access_key_id, "AKIAUNKNOWNKEY000000");
    let unsigned = location.split('?').next().expect("path").to_owned();
    for (what, url) in [
        ("altered signature", altered),
        ("unknown key", other_key),
        ("no signature", unsigned),
    ] {
        let resp = client.get(&url).send().await.expect("GET");
        assert_eq!(resp.status(), 403, "{what}: {url}");
    }
}

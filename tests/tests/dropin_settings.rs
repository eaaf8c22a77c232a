//! Other registries' settings, given alone, mean the same here (README, "Drop-in settings":
//! the Deploys.app registry, distribution, the Cloudflare serverless-registry):
//! each test starts the single binary with one system's deployment settings and nothing of
//! this registry's own names (beyond pointing a cloud client at its local emulator), then
//! pushes and pulls, or checks the documented refusal.

use std::time::Duration;

use registry_tests::auth::{ALICE, AuthFiles, BOB, Client, Scheme};
use registry_tests::clients::ACCEPT_MANIFESTS;
use registry_tests::oci_layout::Image;
use registry_tests::upstream::{Distribution, Flavour};
use registry_tests::{
    Registry, TestDatabase, assert_error, assert_intact, free_port, gcs_object_names, registry_bin,
    s3_test_key, send, start_fails,
};

/// The GCS emulator the test command started (`scripts/gcs-emulator.sh`), and its bucket.
fn gcs_emulator() -> (String, String) {
    let endpoint = std::env::var("GCS_TEST_ENDPOINT")
        .expect("the drop-in suite needs GCS_TEST_ENDPOINT (scripts/gcs-emulator.sh start)");
    let bucket = std::env::var("GCS_TEST_BUCKET").unwrap_or_else(|_| "registry-test".to_owned());
    (endpoint, bucket)
}

/// The Deploys.app registry's deployment: `DB_URL` (PostgreSQL), `BUCKET_NAME` (GCS) and
/// `LOG_LEVEL` in upper case, no `STORAGE_BACKEND`. The layers land in the bucket, not on the
/// instance's disk (where Cloud Run would lose them), and the metadata in the database.
#[tokio::test]
async fn the_deploys_app_registry_settings_keep_layers_in_the_bucket() {
    let (endpoint, bucket) = gcs_emulator();
    let database = TestDatabase::create().await;
    let db_url = database.url().to_owned();
    let prefix = format!("dropin-{}/", std::process::id());
    let mut reg = Registry::start_alone(
        &[
            ("DB_URL", &db_url),
            ("BUCKET_NAME", &bucket),
            ("LOG_LEVEL", "INFO"),
            // Where the emulator is (a real deployment reaches Cloud Storage with its
            // service account's credentials; these only point the client at the emulator).
            ("GCS_ENDPOINT", &endpoint),
            ("GCS_ANONYMOUS", "true"),
            ("GCS_REDIRECT_DOWNLOADS", "false"),
            ("GCS_PREFIX", &prefix),
        ],
        Some(database),
    )
    .await;
    let image = reg
        .push_image("deploys/app", "v1", &[64 * 1024, 3000])
        .await;
    assert_intact(&mut reg, "deploys/app", "v1", &image).await;

    let stored = gcs_object_names(&endpoint, &bucket, &prefix).await;
    for (digest, _) in &image.layers {
        let hex = digest.trim_start_matches("sha256:");
        assert!(
            stored.iter().any(|name| name.ends_with(hex)),
            "layer {digest} not in the bucket: {stored:?}"
        );
    }
    let local_blobs = reg.data_dir().join("blobs");
    assert!(
        !local_blobs.exists(),
        "blobs written to the local disk at {}",
        local_blobs.display()
    );
    // `LOG_LEVEL=INFO` is the level: request lines are logged.
    let log = reg.log();
    assert!(log.contains("/v2/deploys/app/manifests/v1"), "{log}");

    // The metadata is in PostgreSQL: a second instance on the same database and bucket (and
    // its own, empty, data directory) serves the image.
    let mut peer = Registry::start_alone(
        &[
            ("DB_URL", &db_url),
            ("BUCKET_NAME", &bucket),
            ("GCS_ENDPOINT", &endpoint),
            ("GCS_ANONYMOUS", "true"),
            ("GCS_REDIRECT_DOWNLOADS", "false"),
            ("GCS_PREFIX", &prefix),
        ],
        None,
    )
    .await;
    assert_intact(&mut peer, "deploys/app", "v1", &image).await;
}

/// `DB_URL` and `DATABASE_URL` both set: the start stops, naming both.
#[test]
fn both_names_of_the_database_url_stop_the_start() {
    let (stderr, _data) = start_fails(
        &registry_bin(),
        &[],
        &[
            ("DB_URL", "postgres://127.0.0.1:9/a"),
            ("DATABASE_URL", "postgres://127.0.0.1:9/b"),
        ],
        Duration::from_secs(10),
    );
    assert!(
        stderr.contains("DB_URL") && stderr.contains("DATABASE_URL"),
        "{stderr}"
    );
}

/// A distribution deployment (`registry:2` with an htpasswd file, the filesystem driver and
/// deletes off) started here with its settings alone: every user of the file may push and
/// pull anywhere, anonymous callers get the Basic challenge, deletes answer `405
/// UNSUPPORTED` on `/v2/` and in the management API, the bytes land under its root
/// directory, and the log is JSON at its level.
#[tokio::test]
async fn distributions_htpasswd_filesystem_settings_push_pull_and_refuse_deletes() {
    let files = AuthFiles::new();
    let root = tempfile::tempdir().expect("temp dir");
    let root_dir = root.path().join("registry");
    // The directory distribution used: its layout is there, which start-up points out.
    std::fs::create_dir_all(root_dir.join("docker/registry/v2/repositories")).expect("layout");
    let addr = format!("127.0.0.1:{}", free_port());
    let htpasswd = files.htpasswd.display().to_string();
    let root_text = root_dir.display().to_string();
    let reg = Registry::start_alone(
        &[
            ("REGISTRY_STORAGE", "filesystem"),
            ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", &root_text),
            ("REGISTRY_STORAGE_DELETE_ENABLED", "false"),
            ("REGISTRY_AUTH", "htpasswd"),
            ("REGISTRY_AUTH_HTPASSWD_PATH", &htpasswd),
            ("REGISTRY_AUTH_HTPASSWD_REALM", "Registry Realm"),
            ("REGISTRY_HTTP_ADDR", &addr),
            ("REGISTRY_HTTP_SECRET", "a-secret-distribution-needed"),
            ("REGISTRY_LOG_LEVEL", "info"),
            ("REGISTRY_LOG_FORMATTER", "json"),
        ],
        None,
    )
    .await;
    // Both users of the file may do everything, in any project (no rules file).
    for (user, repo) in [(ALICE, "team-a/app"), (BOB, "alpha/other")] {
        let client = Client::new(&reg, Scheme::Basic, Some(user));
        let image = client.push_image(repo, "v1", 7).await;
        let pulled = client
            .send("GET", &format!("/v2/{repo}/manifests/v1"), None)
            .await;
        assert_eq!(
            pulled.status,
            200,
            "{user:?} pull {repo}: {}",
            pulled.text()
        );
        assert_eq!(pulled.body, image.manifest);
        for (digest, bytes) in &image.layers {
            let blob = client
                .send("GET", &format!("/v2/{repo}/blobs/{digest}"), None)
                .await;
            assert_eq!(blob.status, 200);
            assert_eq!(&blob.body, bytes, "{repo} {digest}");
            let hex = digest.trim_start_matches("sha256:");
            assert!(
                root_dir
                    .join("blobs/sha256")
                    .join(&hex[..2])
                    .join(hex)
                    .exists()
                    || walk_finds(&root_dir, hex),
                "{digest} not under the root directory {}",
                root_dir.display()
            );
        }
    }
    let anonymous = Client::new(&reg, Scheme::Basic, None)
        .send("GET", "/v2/team-a/app/manifests/v1", None)
        .await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(
        anonymous.header("www-authenticate"),
        Some("Basic realm=\"Registry Realm\"")
    );
    let wrong = Client::new(&reg, Scheme::Basic, Some(("alice", "not-her-password")))
        .send("GET", "/v2/team-a/app/manifests/v1", None)
        .await;
    assert_eq!(wrong.status, 401);

    // Deletes are off: 405 UNSUPPORTED, and the image is still whole.
    let alice = Client::new(&reg, Scheme::Basic, Some(ALICE));
    let image = alice.push_image("team-a/app", "v2", 8).await;
    for path in [
        format!("/v2/team-a/app/manifests/{}", image.digest),
        "/v2/team-a/app/manifests/v2".to_owned(),
        format!("/v2/team-a/app/blobs/{}", image.layers[0].0),
    ] {
        let reply = alice.send("DELETE", &path, None).await;
        assert_error(&reply, 405, "UNSUPPORTED");
    }
    let api = alice
        .send(
            "POST",
            "/api/deleteTag",
            Some((
                br#"{"project":"team-a","repository":"app","tag":"v2"}"#,
                "application/json",
            )),
        )
        .await;
    assert_eq!(api.status, 405, "{}", api.text());
    assert_eq!(api.json()["ok"], false);
    let still = alice.send("GET", "/v2/team-a/app/manifests/v2", None).await;
    assert_eq!(still.status, 200);

    assert!(
        reg.log().contains("jobs import --from-layout"),
        "no word of distribution's layout: {}",
        reg.log()
    );
    // The log is JSON, and says what it made of REGISTRY_HTTP_SECRET.
    let log = reg.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.to_string().contains("REGISTRY_HTTP_SECRET")),
        "{log}"
    );
}

/// Whether a file named `hex` is anywhere under `dir`.
fn walk_finds(dir: &std::path::Path, hex: &str) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| {
            let path = entry.path();
            path.file_name().is_some_and(|n| n == hex) || (path.is_dir() && walk_finds(&path, hex))
        })
}

/// distribution's `s3` driver settings (a MinIO-style endpoint without a scheme, `secure:
/// false`, keys, a root directory, redirects off), against the S3 test server: pushes and
/// pulls, with the objects under the root directory's prefix.
#[tokio::test]
async fn distributions_s3_settings_push_and_pull() {
    let endpoint = std::env::var("S3_TEST_ENDPOINT")
        .expect("the drop-in suite needs S3_TEST_ENDPOINT (scripts/s3-server.sh start)");
    let bucket = std::env::var("S3_TEST_BUCKET").unwrap_or_else(|_| "registry-test".to_owned());
    let host = endpoint.trim_start_matches("http://").to_owned();
    let access = s3_test_key("S3_TEST_ACCESS_KEY_ID");
    let secret = s3_test_key("S3_TEST_SECRET_ACCESS_KEY");
    let root = format!("/dropin-{}-{}", std::process::id(), free_port());
    let mut reg = Registry::start_alone(
        &[
            ("REGISTRY_STORAGE", "s3"),
            ("REGISTRY_STORAGE_S3_REGIONENDPOINT", &host),
            ("REGISTRY_STORAGE_S3_SECURE", "false"),
            ("REGISTRY_STORAGE_S3_REGION", "us-east-1"),
            ("REGISTRY_STORAGE_S3_BUCKET", &bucket),
            ("REGISTRY_STORAGE_S3_ACCESSKEY", &access),
            ("REGISTRY_STORAGE_S3_SECRETKEY", &secret),
            ("REGISTRY_STORAGE_S3_ROOTDIRECTORY", &root),
            ("REGISTRY_STORAGE_S3_CHUNKSIZE", "10485760"),
            ("REGISTRY_STORAGE_REDIRECT_DISABLE", "true"),
        ],
        None,
    )
    .await;
    let image = reg
        .push_image("s3team/app", "v1", &[200 * 1024, 5000])
        .await;
    assert_intact(&mut reg, "s3team/app", "v1", &image).await;
    // The blob is served by the registry (no redirect), from under the root directory.
    let blob = reg
        .client
        .get(reg.url(&format!("/v2/s3team/app/blobs/{}", image.layers[0].0)))
        .send()
        .await
        .expect("GET blob");
    assert_eq!(blob.status(), 200);
    // The objects are under the root directory: an instance given this registry's own
    // names for that prefix, on the same metadata, serves the image.
    let prefix = format!("{}/", root.trim_start_matches('/'));
    let database = format!("sqlite://{}/registry.db", reg.data_dir().display());
    let mut own = Registry::start_alone(
        &[
            ("STORAGE_BACKEND", "s3"),
            ("S3_ENDPOINT", &endpoint),
            ("S3_REGION", "us-east-1"),
            ("S3_BUCKET", &bucket),
            ("S3_PREFIX", &prefix),
            ("S3_FORCE_PATH_STYLE", "true"),
            ("S3_REDIRECT_DOWNLOADS", "false"),
            ("AWS_ACCESS_KEY_ID", &access),
            ("AWS_SECRET_ACCESS_KEY", &secret),
            ("DATABASE_URL", &database),
        ],
        None,
    )
    .await;
    assert_intact(&mut own, "s3team/app", "v1", &image).await;
    assert!(
        reg.log().contains("REGISTRY_STORAGE_S3_CHUNKSIZE"),
        "{}",
        reg.log()
    );
}

/// Settings distribution has and this registry does not stop the start, naming them.
#[test]
fn distribution_settings_without_an_equivalent_stop_the_start() {
    for (env, needle) in [
        (vec![("REGISTRY_STORAGE", "azure")], "REGISTRY_STORAGE"),
        (
            vec![("REGISTRY_NOTIFICATIONS_ENDPOINTS_0_URL", "http://x")],
            "REGISTRY_NOTIFICATIONS_ENDPOINTS_0_URL",
        ),
        (
            vec![("REGISTRY_STORAGE_S3_BUCKET", "b"), ("S3_BUCKET", "c")],
            "S3_BUCKET",
        ),
        // Listening on every interface without authentication: refused, as any such start.
        (
            vec![("REGISTRY_HTTP_ADDR", ":5000")],
            "refusing to serve anonymous clients",
        ),
    ] {
        let (stderr, _data) = start_fails(&registry_bin(), &[], &env, Duration::from_secs(10));
        assert!(stderr.contains(needle), "{env:?}: {stderr}");
        // The jobs binary reads no address: the others stop it alike.
        if !needle.starts_with("refusing") {
            let (stderr, _data) = start_fails(
                &registry_tests::api::jobs_bin(),
                &["run-all"],
                &env,
                Duration::from_secs(10),
            );
            assert!(stderr.contains(needle), "jobs {env:?}: {stderr}");
        }
    }
}

/// The Cloudflare serverless-registry's settings: `USERNAME` and `PASSWORD` are the one user,
/// with every right; `REGISTRIES_JSON` lists a registry that pulls fall back to (a real
/// distribution with htpasswd, its password in the variable the entry names).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cloudflare_registry_settings_push_pull_and_fall_back() {
    let dist = Distribution::start(Flavour::Htpasswd).await;
    let old = Image::generate("amd64", 911, &[30 << 10]);
    dist.push_image("legacy/app", Some("1.0"), &old).await;
    let (upstream_user, upstream_password) = dist.credentials().expect("htpasswd flavour");
    let registries = serde_json::json!([{
        "registry": dist.base_url(),
        "username": upstream_user,
        "password_env": "REGISTRY_TOKEN",
    }])
    .to_string();
    let reg = Registry::start_alone(
        &[
            ("USERNAME", "ci"),
            ("PASSWORD", "cloudflare-password-1"),
            ("REGISTRIES_JSON", &registries),
            ("REGISTRY_TOKEN", upstream_password),
        ],
        None,
    )
    .await;
    let ci = Client::new(&reg, Scheme::Basic, Some(("ci", "cloudflare-password-1")));
    // Every right, in any project.
    let image = ci.push_image("anything/app", "v1", 5).await;
    let pulled = ci.send("GET", "/v2/anything/app/manifests/v1", None).await;
    assert_eq!(pulled.status, 200, "{}", pulled.text());
    assert_eq!(pulled.body, image.manifest);
    let deleted = ci
        .send("DELETE", "/v2/anything/app/manifests/v1", None)
        .await;
    assert_eq!(deleted.status, 202, "{}", deleted.text());
    // Missing here, found in the fallback registry.
    let fallback = send(
        ci.request("GET", "/v2/legacy/app/manifests/1.0", &[])
            .await
            .header("Accept", ACCEPT_MANIFESTS),
    )
    .await;
    assert_eq!(fallback.status, 200, "{}\n{}", fallback.text(), reg.log());
    assert_eq!(fallback.body, old.manifest.bytes);
    let layer = ci
        .send(
            "GET",
            &format!("/v2/legacy/app/blobs/{}", old.layers[0].digest),
            None,
        )
        .await;
    assert_eq!(layer.status, 200);
    assert_eq!(layer.body, old.layers[0].bytes);
    // Anyone else: the Basic challenge.
    for creds in [
        None,
        Some(("ci", "wrong")),
        Some(("other", "cloudflare-password-1")),
    ] {
        let reply = Client::new(&reg, Scheme::Basic, creds)
            .send("GET", "/v2/anything/app/tags/list", None)
            .await;
        assert_eq!(reply.status, 401, "{creds:?}");
    }
    assert!(!reg.log().contains(upstream_password), "secret in the log");
}

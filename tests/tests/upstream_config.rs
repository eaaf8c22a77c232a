//! `UPSTREAMS_FILE` on the real binaries: a file the registry cannot use stops `registry` and
//! `jobs` at start-up with status 2 and a message naming the file, the upstream and the field;
//! a valid one starts the registry.

use std::path::Path;
use std::time::Duration;

use registry_tests::api::jobs_bin;
use registry_tests::{Registry, registry_bin};

/// Runs `bin args` with `env` and returns its error output; it must exit within 30 s with
/// status 2.
fn start_fails(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    registry_tests::start_fails(bin, args, env, Duration::from_secs(30)).0
}

#[track_caller]
fn assert_names(stderr: &str, needles: &[&str]) {
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
}

#[tokio::test]
async fn a_file_it_cannot_use_stops_the_start_with_status_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("upstreams.json");
    let path = file.to_str().expect("UTF-8 path");
    let registry = registry_bin();

    std::fs::write(
        &file,
        r#"{"upstreams": [{"name": "hub", "url": "https://registry-1.docker.io",
                           "prefix": "cache/Hub"}]}"#,
    )
    .expect("write");
    let stderr = start_fails(&registry, &[], &[("UPSTREAMS_FILE", path)]);
    assert_names(
        &stderr,
        &[&format!(
            "invalid configuration: UPSTREAMS_FILE {path}: upstream \"hub\": prefix \"cache/Hub\" \
             is not a repository name"
        )],
    );
    // The jobs binary reads the same file (the eviction job needs the caps).
    let stderr = start_fails(&jobs_bin(), &["blob-gc"], &[("UPSTREAMS_FILE", path)]);
    assert_names(&stderr, &[path, "upstream \"hub\"", "prefix \"cache/Hub\""]);

    std::fs::write(
        &file,
        "{\"upstreams\": [\n  {\"name\": \"hub\", \"url\": \"https://registry-1.docker.io\",\n   \"prefx\": \"cache/hub\"}\n]}",
    )
    .expect("write");
    let stderr = start_fails(&registry, &[], &[("UPSTREAMS_FILE", path)]);
    assert_names(
        &stderr,
        &[path, "upstream \"hub\"", "unknown field `prefx`", "line 3"],
    );

    std::fs::write(
        &file,
        r#"{"upstreams": [{"name": "hub", "url": "https://registry-1.docker.io",
                           "prefix": "cache/hub", "username": "me", "password_env": "HUB_TOKEN"}]}"#,
    )
    .expect("write");
    let stderr = start_fails(&registry, &[], &[("UPSTREAMS_FILE", path)]);
    assert_names(
        &stderr,
        &[path, "upstream \"hub\"", "password_env", "HUB_TOKEN"],
    );

    let missing = dir.path().join("missing.json");
    let missing = missing.to_str().expect("UTF-8 path");
    let stderr = start_fails(&registry, &[], &[("UPSTREAMS_FILE", missing)]);
    assert_names(&stderr, &["UPSTREAMS_FILE", missing, "cannot read it"]);

    std::fs::write(&file, "{\"upstreams\": [\n  {\"name\": \"hub\",,}\n]}").expect("write");
    let stderr = start_fails(&registry, &[], &[("UPSTREAMS_FILE", path)]);
    assert_names(&stderr, &[path, "line 2 column"]);
}

#[tokio::test]
async fn a_valid_file_starts_the_registry() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("upstreams.json");
    std::fs::write(
        &file,
        r#"{"upstreams": [{"name": "hub", "url": "https://registry-1.docker.io",
                           "prefix": "cache/hub", "host": "docker.io",
                           "username": "me", "password_env": "HUB_TOKEN"}]}"#,
    )
    .expect("write");
    let reg = Registry::start_with(&[
        ("UPSTREAMS_FILE", file.to_str().expect("UTF-8 path")),
        ("HUB_TOKEN", "a-secret-token-value"),
    ])
    .await;
    let reply = reg
        .client
        .get(reg.url("/v2/"))
        .send()
        .await
        .expect("GET /v2/");
    assert_eq!(reply.status(), 200);
    assert!(
        !reg.log().contains("a-secret-token-value"),
        "the secret reached the log"
    );
}

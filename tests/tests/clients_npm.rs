//! The npm client `@snyk/docker-registry-v2-client` (installed by the test command under the
//! target directory) against the registry, driven by `tests/clients/registry_v2_client.js`:
//! a scanner's reads of a two-platform index (tags whole and page by page, the manifest for
//! each platform, its config and layers), anonymously and through the token flow.

use std::path::{Path, PathBuf};

use registry_tests::auth::{ALICE, AuthFiles, Client, Scheme};
use registry_tests::clients::{Tool, require, script};
use registry_tests::oci_layout::{Image, MultiArch};
use registry_tests::{OCI_INDEX, Registry};
use serde_json::{Value, json};

/// `node` with `NODE_PATH` at the client's install: `CLIENTS_NODE_PATH`, or else where the
/// test command puts it.
fn node() -> Tool {
    let modules = std::env::var_os("CLIENTS_NODE_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let bin = registry_tests::registry_bin();
            let target = bin
                .parent()
                .and_then(Path::parent)
                .unwrap_or(Path::new("."));
            target.join("clients-node/node_modules")
        });
    assert!(
        modules.join("@snyk/docker-registry-v2-client").is_dir(),
        "@snyk/docker-registry-v2-client is not installed in {} (set CLIENTS_NODE_PATH, or run \
         ./scripts/test.sh, whose ensure_clients installs it)",
        modules.display()
    );
    Tool::new(require("node", "apt-get install nodejs")).env("NODE_PATH", modules)
}

/// Pushes the images of `multi` by digest and the index as `repo:tag`, with `client`.
async fn seed(client: &Client<'_>, repo: &str, tags: &[&str], multi: &MultiArch) {
    for image in &multi.images {
        for blob in std::iter::once(&image.config).chain(&image.layers) {
            client.push_blob(repo, &blob.bytes).await;
        }
        put(
            client,
            repo,
            &image.manifest.digest,
            image.manifest.media_type,
            &image.manifest.bytes,
        )
        .await;
    }
    for tag in tags {
        put(client, repo, tag, OCI_INDEX, &multi.index.bytes).await;
    }
}

async fn put(client: &Client<'_>, repo: &str, reference: &str, media_type: &str, body: &[u8]) {
    let path = format!("/v2/{repo}/manifests/{reference}");
    let reply = client.send("PUT", &path, Some((body, media_type))).await;
    assert_eq!(reply.status, 201, "PUT {path}: {}", reply.text());
}

async fn read(reg: &Registry, repo: &str, creds: Option<(&str, &str)>) -> Value {
    let script = script("registry_v2_client.js");
    let host = reg.host();
    let mut args = vec![script.to_str().expect("UTF-8 path"), &host, repo, "1.0"];
    if let Some((user, password)) = creds {
        args.extend([user, password]);
    }
    let out = node().ok(reg, &args).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("registry_v2_client.js: {e}: {out}"))
}

/// What the client read is what was pushed, platform by platform.
fn assert_read(report: &Value, multi: &MultiArch) {
    let tags = json!(["1.0", "latest", "stable"]);
    assert_eq!(report["tags"], tags);
    assert_eq!(report["paginated"], tags, "tags one per page");
    for image in &multi.images {
        let Image { architecture, .. } = image;
        let read = &report["platforms"][architecture];
        assert_eq!(
            read["indexDigest"],
            multi.index.digest.as_str(),
            "{architecture}"
        );
        assert_eq!(
            read["manifestDigest"],
            image.manifest.digest.as_str(),
            "{architecture}"
        );
        assert_eq!(read["config"], image.config.digest.as_str());
        assert_eq!(read["configArchitecture"], architecture.as_str());
        let layers: Vec<&str> = image.layers.iter().map(|l| l.digest.as_str()).collect();
        assert_eq!(read["layers"], json!(layers), "{architecture} layers");
    }
}

#[tokio::test]
async fn scanner_reads_every_platform() {
    let reg = Registry::start().await;
    let multi = MultiArch::generate(&["amd64", "arm64"], 71);
    let client = Client::new(&reg, Scheme::Basic, None);
    seed(
        &client,
        "team/scanned",
        &["1.0", "latest", "stable"],
        &multi,
    )
    .await;
    assert_read(&read(&reg, "team/scanned", None).await, &multi);
}

#[tokio::test]
async fn scanner_reads_through_the_token_flow() {
    let files = AuthFiles::new();
    let reg = Registry::start_with(&[
        ("AUTH_MODE", "token"),
        (
            "JWT_SECRET",
            "a-test-secret-of-more-than-32-bytes-0123456789",
        ),
        ("HTPASSWD_FILE", &files.htpasswd.display().to_string()),
        ("AUTH_RULES_FILE", &files.rules.display().to_string()),
    ])
    .await;
    let multi = MultiArch::generate(&["amd64", "arm64"], 72);
    let alice = Client::new(&reg, Scheme::Token, Some(ALICE));
    seed(
        &alice,
        "alpha/scanned",
        &["1.0", "latest", "stable"],
        &multi,
    )
    .await;
    assert_read(&read(&reg, "alpha/scanned", Some(ALICE)).await, &multi);
}

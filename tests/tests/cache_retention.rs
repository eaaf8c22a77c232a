//! Cached content is ordinary content: `blob-gc` (no grace period) leaves every blob a cached
//! manifest needs, a layer shared by two cached repositories outlives the purge of one of them
//! (never a 200 with an empty body), an image pulled by digest only is not collected and
//! fetched again, an index cached with one platform keeps the other fetchable; and the rights:
//! pulling through a prefix needs `pull` on the prefix's project. The upstream is
//! distribution, stopped where the point is that nothing comes from it.

use std::collections::BTreeSet;

use registry_tests::api::{Api, run_job_with};
use registry_tests::auth::{ALICE, AuthFiles, BOB, Skopeo};
use registry_tests::oci_layout::{self, Blob, Image, MultiArch};
use registry_tests::upstream::{
    Distribution, Flavour, Upstreams, assert_body, get_accepting_manifests, prefix_cache_of,
    skopeo_pull_args,
};
use registry_tests::{OCI_CONFIG, OCI_MANIFEST, Registry, assert_error, send};

/// `blob-gc` with no grace period, with the registry's upstreams.
async fn collect(reg: &Registry, upstreams: &Upstreams) {
    let env = upstreams.env();
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    all.push(("GC_GRACE_SECS", "0"));
    run_job_with(reg, "blob-gc", &all).await;
}

async fn pull(
    skopeo: &Skopeo,
    reg: &Registry,
    reference: &str,
    name: &str,
    creds: Option<(&str, &str)>,
) -> Result<BTreeSet<String>, String> {
    let out = skopeo.path(name);
    let src = format!("docker://{}/{reference}", reg.host());
    let output = skopeo.run(&skopeo_pull_args(&src, &out, name, creds)).await;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(oci_layout::blob_digests(&out).expect("layout blobs"))
}

/// An image over the given layers (tar blobs), as `Image::generate` makes them.
fn image_of(layers: Vec<Blob>, seed: u64) -> Image {
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.digest.as_str()).collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
        "config": {"Env": [format!("SEED={seed}")]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = Blob::new(OCI_CONFIG, serde_json::to_vec(&config).expect("JSON"));
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config.descriptor(),
        "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
    });
    let manifest = Blob::new(OCI_MANIFEST, serde_json::to_vec(&manifest).expect("JSON"));
    Image {
        architecture: "amd64".to_owned(),
        manifest,
        config,
        layers,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_shared_by_two_cached_repositories_outlives_the_purge_of_one() {
    let mut dist = Distribution::start(Flavour::Open).await;
    let base = Image::generate("amd64", 501, &[90 << 10, 30 << 10]);
    let shared = base.layers[0].clone();
    let first = image_of(vec![shared.clone(), base.layers[1].clone()], 502);
    let second = image_of(vec![shared.clone()], 503);
    dist.push_image("team/first", None, &first).await;
    dist.push_image("team/second", None, &second).await;
    let (reg, upstreams) = prefix_cache_of(&dist, serde_json::json!({})).await;
    let skopeo = Skopeo::new();
    let by_digest =
        |repo: &str, image: &Image| format!("cache/dist/{repo}@{}", image.manifest.digest);

    // Pulled by digest only: nothing tags them.
    let got = pull(&skopeo, &reg, &by_digest("team/first", &first), "a", None).await;
    assert_eq!(got.expect("pull first"), first.digests());
    let got = pull(&skopeo, &reg, &by_digest("team/second", &second), "b", None).await;
    assert_eq!(got.expect("pull second"), second.digests());

    // Purge the first, collect, and take the upstream away.
    let path = format!(
        "/v2/cache/dist/team/first/manifests/{}",
        first.manifest.digest
    );
    let deleted = send(reg.client.delete(reg.url(&path))).await;
    assert_eq!(deleted.status, 202, "purge: {}", deleted.text());
    collect(&reg, &upstreams).await;
    dist.stop();

    let layer = get_accepting_manifests(
        &reg,
        &format!("/v2/cache/dist/team/second/blobs/{}", shared.digest),
    )
    .await;
    assert_body(
        &layer,
        &shared.bytes,
        "the shared layer after the purge and blob-gc",
    );
    let got = pull(
        &skopeo,
        &reg,
        &by_digest("team/second", &second),
        "b2",
        None,
    )
    .await;
    assert_eq!(
        got.unwrap_or_else(|e| panic!(
            "the untagged cached image after blob-gc: {e}\n{}",
            reg.log()
        )),
        second.digests()
    );
    // The purged one is gone, and with the upstream down it cannot come back.
    let reply = get_accepting_manifests(&reg, &path).await;
    assert_error(&reply, 503, "UNAVAILABLE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_cached_with_one_platform_keeps_the_other_fetchable_after_blob_gc() {
    let mut dist = Distribution::start(Flavour::Htpasswd).await;
    let multi = MultiArch::generate(&["amd64", "arm64"], 504);
    dist.push_multi_arch("team/multi", "1", &multi).await;
    let (reg, upstreams) = prefix_cache_of(&dist, serde_json::json!({})).await;
    let skopeo = Skopeo::new();

    let out = skopeo.path("arm64");
    let src = format!("docker://{}/cache/dist/team/multi:1", reg.host());
    let mut args = vec!["--override-arch".to_owned(), "arm64".to_owned()];
    args.extend(
        skopeo_pull_args(&src, &out, "arm", None)
            .into_iter()
            .filter(|a| a != "--all"),
    );
    let output = skopeo.run(&args).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    collect(&reg, &upstreams).await;

    let got = pull(&skopeo, &reg, "cache/dist/team/multi:1", "all", None).await;
    assert_eq!(got.expect("both platforms after blob-gc"), multi.digests());
    collect(&reg, &upstreams).await;
    dist.stop();
    let got = pull(&skopeo, &reg, "cache/dist/team/multi:1", "all-cached", None).await;
    assert_eq!(
        got.unwrap_or_else(|e| panic!("both platforms from the cache alone: {e}\n{}", reg.log())),
        multi.digests()
    );
    let index = get_accepting_manifests(
        &reg,
        &format!("/v2/cache/dist/team/multi/manifests/{}", multi.index.digest),
    )
    .await;
    assert_body(&index, &multi.index.bytes, "the index");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulling_through_a_prefix_needs_pull_on_its_project() {
    let dist = Distribution::start(Flavour::Token).await;
    let image = Image::generate("amd64", 505, &[20 << 10]);
    dist.push_image("team/app", Some("1"), &image).await;
    let files = AuthFiles::new();
    let mut upstreams = Upstreams::new();
    // alice owns `alpha`; anyone may pull from `public` (auth::RULES).
    upstreams
        .add("private", &dist, serde_json::json!({"prefix": "alpha/hub"}))
        .add("open", &dist, serde_json::json!({"prefix": "public/hub"}));
    let reg = upstreams
        .start_registry_with(&[
            ("AUTH_MODE", "basic"),
            (
                "HTPASSWD_FILE",
                files.htpasswd.to_str().expect("UTF-8 path"),
            ),
            ("AUTH_RULES_FILE", files.rules.to_str().expect("UTF-8 path")),
        ])
        .await;
    let skopeo = Skopeo::new();

    let got = pull(&skopeo, &reg, "alpha/hub/team/app:1", "alice", Some(ALICE)).await;
    assert_eq!(
        got.expect("alice pulls through her project's prefix"),
        image.digests()
    );
    let refused = pull(&skopeo, &reg, "alpha/hub/team/app:1", "bob", Some(BOB)).await;
    assert!(refused.is_err(), "bob pulled from alpha's prefix");
    let anonymous = get_accepting_manifests(&reg, "/v2/alpha/hub/team/app/manifests/1").await;
    assert_error(&anonymous, 401, "UNAUTHORIZED");
    // Anonymous callers may pull from `public`. Over HTTP: skopeo 1.9 without credentials
    // is refused (401) by `AUTH_MODE=basic` on a local `public` repository too, not only here.
    let manifest = get_accepting_manifests(&reg, "/v2/public/hub/team/app/manifests/1").await;
    assert_body(
        &manifest,
        &image.manifest.bytes,
        "anonymous pull through the public prefix",
    );
    let layer = &image.layers[0];
    let blob = get_accepting_manifests(
        &reg,
        &format!("/v2/public/hub/team/app/blobs/{}", layer.digest),
    )
    .await;
    assert_body(
        &blob,
        &layer.bytes,
        "anonymous blob through the public prefix",
    );
    upstreams.assert_no_secret_in("the registry log", &reg.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_content_counts_in_project_storage() {
    let dist = Distribution::start(Flavour::Open).await;
    let image = Image::generate("amd64", 506, &[40 << 10, 20 << 10]);
    dist.push_image("team/app", Some("1"), &image).await;
    let (reg, upstreams) = prefix_cache_of(&dist, serde_json::json!({})).await;
    let skopeo = Skopeo::new();
    let got = pull(&skopeo, &reg, "cache/dist/team/app:1", "app", None).await;
    assert_eq!(got.expect("pull through the prefix"), image.digests());

    let env = upstreams.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    run_job_with(&reg, "project-storage", &env).await;
    let counted = Api::anonymous(&reg)
        .call("getProjectStorage", serde_json::json!({"project": "cache"}))
        .await
        .ok();
    let size: usize = std::iter::once(&image.config)
        .chain(&image.layers)
        .map(|b| b.bytes.len())
        .sum();
    assert_eq!(
        counted["size"], size,
        "the cached blobs of the prefix's project: {counted}"
    );
}

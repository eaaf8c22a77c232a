//! The pull-through cache's fallback mode against real upstreams (distribution): a pull of a
//! manifest or blob missing locally goes to the `fallback` upstreams in file order, and what
//! they have is copied into the requested repository, then served as local content, with the
//! upstream stopped too. Local content wins; pushes into such repositories still work; the
//! `repositories` allow-list bounds what is looked up.

use std::collections::BTreeSet;

use registry_tests::auth::Skopeo;
use registry_tests::clients::ACCEPT_MANIFESTS;
use registry_tests::oci_layout::{self, Image, MultiArch};
use registry_tests::upstream::{Distribution, Flavour, Upstreams, assert_body, skopeo_pull_args};
use registry_tests::{Registry, Reply, assert_error_in, send};

async fn get_manifest(reg: &Registry, repo: &str, reference: &str) -> Reply {
    send(
        reg.client
            .get(reg.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header("Accept", ACCEPT_MANIFESTS),
    )
    .await
}

async fn pull(skopeo: &Skopeo, reg: &Registry, reference: &str, name: &str) -> BTreeSet<String> {
    let out = skopeo.path(name);
    let src = format!("docker://{}/{reference}", reg.host());
    let output = skopeo.run(&skopeo_pull_args(&src, &out, name, None)).await;
    assert!(
        output.status.success(),
        "skopeo pull {reference}: {}\nregistry log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        reg.log()
    );
    oci_layout::blob_digests(&out).expect("layout blobs")
}

async fn tags(reg: &Registry, repo: &str) -> Vec<String> {
    let reply = send(reg.client.get(reg.url(&format!("/v2/{repo}/tags/list")))).await;
    assert_eq!(reply.status, 200, "tags of {repo}: {}", reply.text());
    reply.json()["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_pull_copies_the_repository_in_and_it_is_served_with_the_upstream_stopped() {
    let mut dist = Distribution::start(Flavour::Htpasswd).await;
    let image = Image::generate("amd64", 301, &[120 << 10, 40 << 10]);
    dist.push_image("team/app", Some("1.0"), &image).await;
    let multi = MultiArch::generate(&["amd64", "arm64"], 302);
    dist.push_multi_arch("team/multi", "2.0", &multi).await;
    let mut upstreams = Upstreams::new();
    upstreams.add("old", &dist, serde_json::json!({"fallback": true}));
    let reg = upstreams.start_registry().await;
    let skopeo = Skopeo::new();

    assert_eq!(
        pull(&skopeo, &reg, "team/app:1.0", "app").await,
        image.digests()
    );
    assert_eq!(
        pull(&skopeo, &reg, "team/multi:2.0", "multi").await,
        multi.digests()
    );
    assert!(
        tags(&reg, "team/app").await.contains(&"1.0".to_owned()),
        "copied in with its tag"
    );
    let fetched = dist.settled_count_ok("GET", "/v2/team/").await;

    dist.stop();
    assert_eq!(
        pull(&skopeo, &reg, "team/app:1.0", "app-again").await,
        image.digests()
    );
    let index = get_manifest(&reg, "team/multi", &multi.index.digest).await;
    assert_eq!(index.status, 200, "{}", index.text());
    assert_body(&index, &multi.index.bytes, "the index");
    assert_eq!(
        pull(&skopeo, &reg, "team/multi:2.0", "multi-again").await,
        multi.digests()
    );
    assert!(tags(&reg, "team/multi").await.contains(&"2.0".to_owned()));
    assert_eq!(
        dist.count_ok("GET", "/v2/team/"),
        fetched,
        "served as local content"
    );
    upstreams.assert_no_secret_in("the registry log", &reg.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_content_wins_and_pushes_into_a_fallback_repository_work() {
    let dist = Distribution::start(Flavour::Open).await;
    let upstream_one = Image::generate("amd64", 303, &[10 << 10]);
    let upstream_two = Image::generate("amd64", 304, &[10 << 10]);
    dist.push_image("team/app", Some("1"), &upstream_one).await;
    dist.push_image("team/app", Some("2"), &upstream_two).await;
    let mut upstreams = Upstreams::new();
    upstreams.add("old", &dist, serde_json::json!({"fallback": true}));
    let reg = upstreams.start_registry().await;
    let local = reg.push_image("team/app", "1", &[12 << 10]).await;

    let reply = get_manifest(&reg, "team/app", "1").await;
    assert_body(&reply, &local.manifest, "the local tag, not the upstream's");
    assert_eq!(dist.requests("GET", "/v2/team/app/manifests/1").len(), 0);
    // A tag missing locally in the same repository comes from the upstream.
    let reply = get_manifest(&reg, "team/app", "2").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_body(&reply, &upstream_two.manifest.bytes, "the manifest");
    // Pushing still works (not a prefix) and stays local.
    let pushed = reg.push_image("team/app", "3", &[8 << 10]).await;
    let reply = get_manifest(&reg, "team/app", "3").await;
    assert_body(&reply, &pushed.manifest, "the manifest");
    assert_eq!(dist.requests("PUT", "/v2/team/app/manifests/3").len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_upstreams_are_asked_in_file_order() {
    let first = Distribution::start(Flavour::Open).await;
    let second = Distribution::start(Flavour::Token).await;
    let from_first = Image::generate("amd64", 305, &[10 << 10]);
    let from_second = Image::generate("amd64", 306, &[10 << 10]);
    let only_second = Image::generate("amd64", 307, &[10 << 10]);
    first.push_image("team/both", Some("1"), &from_first).await;
    second
        .push_image("team/both", Some("1"), &from_second)
        .await;
    second
        .push_image("team/second", Some("1"), &only_second)
        .await;
    let mut upstreams = Upstreams::new();
    upstreams
        .add("first", &first, serde_json::json!({"fallback": true}))
        .add("second", &second, serde_json::json!({"fallback": true}));
    let reg = upstreams.start_registry().await;

    let reply = get_manifest(&reg, "team/both", "1").await;
    assert_body(&reply, &from_first.manifest.bytes, "the first upstream's");
    assert_eq!(second.requests("GET", "/v2/team/both/").len(), 0);
    let reply = get_manifest(&reg, "team/second", "1").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_body(
        &reply,
        &only_second.manifest.bytes,
        "what only the second has",
    );
    let layer = &only_second.layers[0];
    let blob = send(
        reg.client
            .get(reg.url(&format!("/v2/team/second/blobs/{}", layer.digest))),
    )
    .await;
    assert_body(&blob, &layer.bytes, "the blob");
    let reply = get_manifest(&reg, "team/nowhere", "1").await;
    assert_error_in(&reply, &[404], &["MANIFEST_UNKNOWN", "NAME_UNKNOWN"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allow_list_bounds_what_the_fallback_looks_up() {
    let dist = Distribution::start(Flavour::Open).await;
    let allowed = Image::generate("amd64", 308, &[10 << 10]);
    let other = Image::generate("amd64", 309, &[10 << 10]);
    dist.push_image("team/app", Some("1"), &allowed).await;
    dist.push_image("other/app", Some("1"), &other).await;
    let mut upstreams = Upstreams::new();
    upstreams.add(
        "old",
        &dist,
        serde_json::json!({"fallback": true, "repositories": ["team/*"]}),
    );
    let reg = upstreams.start_registry().await;

    let reply = get_manifest(&reg, "team/app", "1").await;
    assert_body(&reply, &allowed.manifest.bytes, "the manifest");
    let reply = get_manifest(&reg, "other/app", "1").await;
    assert_error_in(&reply, &[404], &["MANIFEST_UNKNOWN", "NAME_UNKNOWN"]);
    assert_eq!(
        dist.requests("GET", "/v2/other/").len(),
        0,
        "outside the allow-list"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_pushed_here_over_a_copied_in_one_stays_local_past_the_ttl() {
    let dist = Distribution::start(Flavour::Open).await;
    let upstream = Image::generate("amd64", 310, &[10 << 10]);
    dist.push_image("team/app", Some("1"), &upstream).await;
    let mut upstreams = Upstreams::new();
    upstreams.add(
        "old",
        &dist,
        serde_json::json!({"fallback": true, "tag_ttl_secs": 1}),
    );
    let reg = upstreams.start_registry().await;

    let reply = get_manifest(&reg, "team/app", "1").await;
    assert_body(&reply, &upstream.manifest.bytes, "copied in");
    let pushed = reg.push_image("team/app", "1", &[11 << 10]).await;
    let asked = |d: &Distribution| {
        d.requests("HEAD", "/v2/team/app/manifests/1").len()
            + d.requests("GET", "/v2/team/app/manifests/1").len()
    };
    let before = asked(&dist);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    for _ in 0..2 {
        let reply = get_manifest(&reg, "team/app", "1").await;
        assert_body(
            &reply,
            &pushed.manifest,
            "the tag pushed here, past the TTL",
        );
    }
    dist.settled_count_ok("HEAD", "/v2/").await;
    assert_eq!(
        asked(&dist),
        before,
        "a local tag is not revalidated upstream"
    );
}

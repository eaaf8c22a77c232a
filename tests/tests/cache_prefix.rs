//! The pull-through cache's prefix mode against a real upstream (distribution, with htpasswd
//! or token auth): `GET /v2/<prefix>/<upstream name>/…` fetches from the upstream on a miss
//! and serves later pulls from storage. What reaches the upstream is counted in its access
//! log: a second pull sends no blob request; a tag is revalidated with a `HEAD` after its TTL
//! and not before; with the upstream stopped, cached images still pull and uncached ones get
//! `503 UNAVAILABLE`; the upstream's 404 and 401 become the spec's errors; pushes under a prefix
//! are refused. Also: only the platform pulled from an index is fetched, referrers come
//! through, and the registry itself is an upstream of another one (a chained cache).

use std::collections::BTreeSet;
use std::time::Duration;

use registry_tests::auth::Skopeo;
use registry_tests::clients::ACCEPT_MANIFESTS;
use registry_tests::oci_layout::{self, Image, MultiArch};
use registry_tests::upstream::{
    Distribution, Flavour, Upstreams, assert_body, prefix_cache_of, skopeo_pull_args,
};
use registry_tests::{Registry, Reply, assert_error, assert_error_in, send, sha256_digest};

async fn get_manifest(reg: &Registry, repo: &str, reference: &str) -> Reply {
    send(
        reg.client
            .get(reg.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header("Accept", ACCEPT_MANIFESTS),
    )
    .await
}

async fn get_blob(reg: &Registry, repo: &str, digest: &str) -> Reply {
    send(
        reg.client
            .get(reg.url(&format!("/v2/{repo}/blobs/{digest}"))),
    )
    .await
}

/// Copies `docker://<reg>/<reference>` into a new layout; returns the digests of its blobs.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pulls_through_the_prefix_and_a_second_pull_asks_upstream_for_no_blob() {
    let dist = Distribution::start(Flavour::Htpasswd).await;
    let image = Image::generate("amd64", 101, &[200 << 10, 50 << 10]);
    dist.push_image("team/app", Some("1.0"), &image).await;
    let (reg, upstreams) = prefix_cache_of(&dist, serde_json::json!({})).await;
    let skopeo = Skopeo::new();

    let first = pull(&skopeo, &reg, "cache/dist/team/app:1.0", "first").await;
    assert_eq!(first, image.digests(), "the image, digest for digest");
    let blobs = dist.settled_count_ok("GET", "/v2/team/app/blobs/").await;
    assert_eq!(
        blobs,
        image.layers.len() + 1,
        "config and layers, once each"
    );
    let manifests = dist.count_ok("GET", "/v2/team/app/manifests/");

    let second = pull(&skopeo, &reg, "cache/dist/team/app:1.0", "second").await;
    assert_eq!(second, image.digests());
    assert_eq!(
        dist.settled_count_ok("GET", "/v2/team/app/blobs/").await,
        blobs,
        "the second pull sent a blob request upstream: {:?}",
        dist.requests("GET", "/v2/team/app/")
    );
    assert_eq!(
        dist.count_ok("GET", "/v2/team/app/manifests/")
            + dist.count_ok("HEAD", "/v2/team/app/manifests/"),
        manifests,
        "within the tag's TTL the upstream is not asked again"
    );

    // By digest too, and byte-identical over HTTP.
    let by_digest = get_manifest(&reg, "cache/dist/team/app", &image.manifest.digest).await;
    assert_eq!(by_digest.status, 200, "{}", by_digest.text());
    assert_body(&by_digest, &image.manifest.bytes, "the manifest by digest");
    let layer = get_blob(&reg, "cache/dist/team/app", &image.layers[0].digest).await;
    assert_body(&layer, &image.layers[0].bytes, "the layer");
    // Cached content is ordinary content: listed like pushed content.
    let tags = send(reg.client.get(reg.url("/v2/cache/dist/team/app/tags/list"))).await;
    assert_eq!(tags.status, 200, "{}", tags.text());
    assert_eq!(tags.json()["tags"], serde_json::json!(["1.0"]));
    let catalog = send(reg.client.get(reg.url("/v2/_catalog"))).await;
    assert!(
        catalog.json()["repositories"]
            .as_array()
            .is_some_and(|r| r.iter().any(|n| n == "cache/dist/team/app")),
        "{}",
        catalog.text()
    );
    upstreams.assert_no_secret_in("the registry log", &reg.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_through_the_prefix_fetches_only_the_platform_pulled() {
    let dist = Distribution::start(Flavour::Token).await;
    let multi = MultiArch::generate(&["amd64", "arm64"], 102);
    dist.push_multi_arch("team/multi", "2.0", &multi).await;
    let (reg, upstreams) = prefix_cache_of(&dist, serde_json::json!({})).await;
    let skopeo = Skopeo::new();
    let (amd64, arm64) = (&multi.images[0], &multi.images[1]);

    // One platform, as a client on arm64 pulls it.
    let out = skopeo.path("arm64");
    let src = format!("docker://{}/cache/dist/team/multi:2.0", reg.host());
    let mut args = vec!["--override-arch".to_owned(), "arm64".to_owned()];
    args.extend(
        skopeo_pull_args(&src, &out, "arm", None)
            .into_iter()
            .filter(|a| a != "--all"),
    );
    let output = skopeo.run(&args).await;
    assert!(
        output.status.success(),
        "skopeo pull arm64: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        reg.log()
    );
    let got = oci_layout::blob_digests(&out).expect("layout blobs");
    assert!(got.is_superset(&arm64.digests()), "arm64's image: {got:?}");
    dist.settled_count_ok("GET", "/v2/team/multi/").await;
    for blob in std::iter::once(&amd64.config).chain(&amd64.layers) {
        let path = format!("/v2/team/multi/blobs/{}", blob.digest);
        assert_eq!(
            dist.requests("GET", &path).len(),
            0,
            "amd64's {} was fetched",
            blob.digest
        );
    }
    let amd64_manifest = format!("/v2/team/multi/manifests/{}", amd64.manifest.digest);
    assert_eq!(
        dist.requests("GET", &amd64_manifest).len(),
        0,
        "amd64's manifest was fetched"
    );

    // The index is stored: its digest answers (not only the platform's manifest).
    let index = get_manifest(&reg, "cache/dist/team/multi", &multi.index.digest).await;
    assert_eq!(index.status, 200, "index by digest: {}", index.text());
    assert_body(&index, &multi.index.bytes, "the index");

    // The other platform comes when it is asked for.
    let all = pull(&skopeo, &reg, "cache/dist/team/multi:2.0", "all").await;
    assert_eq!(all, multi.digests());
    let amd64_layer = format!("/v2/team/multi/blobs/{}", amd64.layers[0].digest);
    assert_eq!(dist.settled_count_ok("GET", &amd64_layer).await, 1);
    upstreams.assert_no_secret_in("the registry log", &reg.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_moved_upstream_is_seen_after_the_ttl_and_not_before() {
    const TTL: u64 = 3;
    let dist = Distribution::start(Flavour::Htpasswd).await;
    let first = Image::generate("amd64", 103, &[20 << 10]);
    let second = Image::generate("amd64", 104, &[20 << 10]);
    dist.push_image("team/moving", Some("1"), &first).await;
    let (reg, _upstreams) = prefix_cache_of(&dist, serde_json::json!({"tag_ttl_secs": TTL})).await;
    let digest_of = |reply: &Reply| reply.header("docker-content-digest").map(str::to_owned);
    let tag_path = "/v2/team/moving/manifests/1";

    let reply = get_manifest(&reg, "cache/dist/team/moving", "1").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_body(&reply, &first.manifest.bytes, "the manifest");
    let gets = dist.settled_count_ok("GET", tag_path).await;
    assert_eq!(gets, 1, "the miss fetched the tag");

    // After the TTL, unchanged upstream: one HEAD, no GET (rate-limit friendly).
    tokio::time::sleep(Duration::from_millis(TTL * 1000 + 500)).await;
    let reply = get_manifest(&reg, "cache/dist/team/moving", "1").await;
    assert_eq!(
        digest_of(&reply).as_deref(),
        Some(first.manifest.digest.as_str())
    );
    assert_eq!(
        dist.settled_count_ok("HEAD", tag_path).await,
        1,
        "revalidated with a HEAD"
    );
    assert_eq!(dist.count_ok("GET", tag_path), 1, "and no GET");

    // Moved upstream, asked again within the TTL: the cached one, the upstream not asked.
    dist.push_image("team/moving", Some("1"), &second).await;
    let reply = get_manifest(&reg, "cache/dist/team/moving", "1").await;
    assert_eq!(
        digest_of(&reply).as_deref(),
        Some(first.manifest.digest.as_str()),
        "the moved tag was seen before the TTL"
    );
    assert_eq!(dist.settled_count_ok("HEAD", tag_path).await, 1);

    // After the TTL: the new image.
    tokio::time::sleep(Duration::from_millis(TTL * 1000 + 500)).await;
    let reply = get_manifest(&reg, "cache/dist/team/moving", "1").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_body(
        &reply,
        &second.manifest.bytes,
        "the moved tag after the TTL",
    );
    assert!(dist.settled_count_ok("HEAD", tag_path).await >= 2);
    let layer = get_blob(&reg, "cache/dist/team/moving", &second.layers[0].digest).await;
    assert_body(&layer, &second.layers[0].bytes, "the layer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_upstream_stopped_cached_images_pull_and_an_uncached_one_gets_503() {
    let mut dist = Distribution::start(Flavour::Htpasswd).await;
    let cached = Image::generate("amd64", 105, &[60 << 10]);
    let uncached = Image::generate("amd64", 106, &[60 << 10]);
    dist.push_image("team/app", Some("1"), &cached).await;
    dist.push_image("team/other", Some("1"), &uncached).await;
    // A short TTL: the tag is stale by the time the upstream is down.
    let (reg, upstreams) = prefix_cache_of(&dist, serde_json::json!({"tag_ttl_secs": 1})).await;
    let skopeo = Skopeo::new();
    let pulled = pull(&skopeo, &reg, "cache/dist/team/app:1", "before").await;
    assert_eq!(pulled, cached.digests());

    dist.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pulled = pull(&skopeo, &reg, "cache/dist/team/app:1", "during").await;
    assert_eq!(pulled, cached.digests(), "the cached image, upstream down");
    let by_digest = get_manifest(&reg, "cache/dist/team/app", &cached.manifest.digest).await;
    assert_eq!(by_digest.status, 200);

    for reply in [
        get_manifest(&reg, "cache/dist/team/other", "1").await,
        get_manifest(&reg, "cache/dist/team/other", &uncached.manifest.digest).await,
        get_blob(&reg, "cache/dist/team/other", &uncached.layers[0].digest).await,
    ] {
        assert_error(&reply, 503, "UNAVAILABLE");
        assert!(
            reply.text().contains("dist"),
            "the message names the upstream: {}",
            reply.text()
        );
        assert!(
            reply.header("retry-after").is_some(),
            "Retry-After on the 503"
        );
        upstreams.assert_no_secret_in("a 503", &reply.text());
    }

    // Back up: what was missing comes.
    dist.start_again().await;
    let pulled = pull(&skopeo, &reg, "cache/dist/team/other:1", "after").await;
    assert_eq!(pulled, uncached.digests());
    upstreams.assert_no_secret_in("the registry log", &reg.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_404_and_401_become_the_specs_errors_and_pushes_are_refused() {
    let dist = Distribution::start(Flavour::Htpasswd).await;
    let image = Image::generate("amd64", 107, &[10 << 10]);
    dist.push_image("team/app", Some("1"), &image).await;
    let (reg, _upstreams) = prefix_cache_of(&dist, serde_json::json!({})).await;

    let reply = get_manifest(&reg, "cache/dist/team/app", "no-such-tag").await;
    assert_error_in(&reply, &[404], &["MANIFEST_UNKNOWN"]);
    let reply = get_manifest(&reg, "cache/dist/team/none", "1").await;
    assert_error_in(&reply, &[404], &["MANIFEST_UNKNOWN", "NAME_UNKNOWN"]);
    let missing = sha256_digest(b"not upstream");
    let reply = get_blob(&reg, "cache/dist/team/app", &missing).await;
    assert_error(&reply, 404, "BLOB_UNKNOWN");
    // Outside the prefix (and no fallback) nothing is fetched.
    let reply = get_manifest(&reg, "team/app", "1").await;
    assert_error_in(&reply, &[404], &["MANIFEST_UNKNOWN", "NAME_UNKNOWN"]);
    assert_eq!(dist.requests("GET", "/v2/team/app/manifests/1").len(), 0);

    // Pushes into the cache are refused, naming the upstream.
    let post = send(
        reg.client
            .post(reg.url("/v2/cache/dist/team/app/blobs/uploads/"))
            .header("Content-Length", "0"),
    )
    .await;
    assert_error(&post, 405, "UNSUPPORTED");
    assert!(post.text().contains("dist"), "{}", post.text());
    let put = send(
        reg.client
            .put(reg.url("/v2/cache/dist/team/app/manifests/2"))
            .header("Content-Type", registry_tests::OCI_MANIFEST)
            .body(image.manifest.bytes.clone()),
    )
    .await;
    assert_error(&put, 405, "UNSUPPORTED");
    assert_eq!(dist.requests("PUT", "/v2/team/app/manifests/2").len(), 0);

    // Wrong credentials for the upstream: 403 DENIED naming it, the password nowhere.
    let mut wrong = Upstreams::new();
    wrong.add_url(
        "strict",
        &dist.base_url(),
        Some(("puller", "a-wrong-password-9")),
        serde_json::json!({"prefix": "cache/strict"}),
    );
    let denied_reg = wrong.start_registry().await;
    let reply = get_manifest(&denied_reg, "cache/strict/team/app", "1").await;
    assert_error(&reply, 403, "DENIED");
    assert!(
        reply.text().contains("strict"),
        "names the upstream: {}",
        reply.text()
    );
    wrong.assert_no_secret_in("the 403", &reply.text());
    wrong.assert_no_secret_in("the registry log", &denied_reg.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referrer_and_its_fallback_tag_come_through_the_prefix() {
    let dist = Distribution::start(Flavour::Token).await;
    let subject = Image::generate("arm64", 108, &[12 << 10]);
    dist.push_image("team/signed", Some("1"), &subject).await;
    let referrer = dist.push_referrer("team/signed", &subject, 109).await;
    let (reg, _upstreams) = prefix_cache_of(&dist, serde_json::json!({})).await;
    let repo = "cache/dist/team/signed";

    let reply = get_manifest(&reg, repo, "1").await;
    assert_body(&reply, &subject.manifest.bytes, "the manifest");
    let listed = get_manifest(&reg, repo, &referrer.fallback_tag).await;
    assert_eq!(listed.status, 200, "tag-schema index: {}", listed.text());
    assert_body(
        &listed,
        &referrer.fallback_index.bytes,
        "the tag-schema index",
    );
    let artifact = get_manifest(&reg, repo, &referrer.manifest.digest).await;
    assert_eq!(artifact.status, 200, "{}", artifact.text());
    assert_body(&artifact, &referrer.manifest.bytes, "the artifact");
    for blob in &referrer.blobs {
        assert_body(
            &get_blob(&reg, repo, &blob.digest).await,
            &blob.bytes,
            "an artifact blob",
        );
    }

    // Cached, the artifact is ordinary content: the referrers API lists it.
    let path = format!("/v2/{repo}/referrers/{}", subject.manifest.digest);
    let reply = send(reg.client.get(reg.url(&path))).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let digests: Vec<String> = reply.json()["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["digest"].as_str().map(str::to_owned))
        .collect();
    assert!(
        digests.contains(&referrer.manifest.digest),
        "the cached referrer is listed: {}",
        reply.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_itself_is_the_upstream_of_another_one() {
    let dist = Distribution::start(Flavour::Open).await;
    let image = Image::generate("amd64", 110, &[80 << 10, 8 << 10]);
    dist.push_image("team/app", Some("1"), &image).await;
    let (first, _first_upstreams) = prefix_cache_of(&dist, serde_json::json!({})).await;
    let mut chained = Upstreams::new();
    chained.add_url(
        "first",
        &first.url(""),
        None,
        serde_json::json!({"prefix": "chain"}),
    );
    let second = chained.start_registry().await;
    let repo = "chain/cache/dist/team/app";

    // A HEAD on a blob neither cache holds answers with its size (and a GET the bytes).
    let layer = &image.layers[0];
    let head = send(
        second
            .client
            .head(second.url(&format!("/v2/{repo}/blobs/{}", layer.digest))),
    )
    .await;
    assert_eq!(
        head.status, 200,
        "HEAD of an uncached blob through two caches"
    );
    assert_eq!(
        head.header("content-length"),
        Some(layer.bytes.len().to_string().as_str())
    );
    let layer_path = format!("/v2/team/app/blobs/{}", layer.digest);
    assert_eq!(
        dist.settled_count_ok("GET", &layer_path).await,
        0,
        "a HEAD fetches nothing"
    );
    let got = get_blob(&second, repo, &layer.digest).await;
    assert_eq!(got.status, 200);
    assert_body(&got, &layer.bytes, "the blob through two caches");

    let skopeo = Skopeo::new();
    let pulled = pull(&skopeo, &second, &format!("{repo}:1"), "chained").await;
    assert_eq!(pulled, image.digests());
    let path = format!("/v2/team/app/blobs/{}", layer.digest);
    assert_eq!(
        dist.settled_count_ok("GET", &path).await,
        1,
        "one fetch from distribution"
    );
    // The first cache holds it too, under its own prefix.
    let direct = get_blob(&first, "cache/dist/team/app", &image.layers[1].digest).await;
    assert_body(
        &direct,
        &image.layers[1].bytes,
        "the blob in the first cache",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_hub_prefix_puts_one_component_names_under_library() {
    let dist = Distribution::start(Flavour::Open).await;
    let alpine = Image::generate("amd64", 111, &[10 << 10]);
    dist.push_image("library/alpine", Some("3"), &alpine).await;
    let mut upstreams = Upstreams::new();
    // distribution standing in for Docker Hub: named by its host.
    upstreams.add(
        "hub",
        &dist,
        serde_json::json!({"prefix": "cache/hub", "host": "docker.io"}),
    );
    let reg = upstreams.start_registry().await;

    let reply = get_manifest(&reg, "cache/hub/alpine", "3").await;
    assert_body(
        &reply,
        &alpine.manifest.bytes,
        "cache/hub/alpine:3 is library/alpine:3",
    );
    let reply = get_manifest(&reg, "cache/hub/library/alpine", "3").await;
    assert_body(
        &reply,
        &alpine.manifest.bytes,
        "and so is cache/hub/library/alpine:3",
    );
    assert_eq!(dist.requests("GET", "/v2/alpine/").len(), 0);
}

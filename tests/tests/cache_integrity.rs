//! What the cache does when its upstream (distribution) misbehaves, and details of its use: a
//! manifest that does not hash to its digest is a `502`; an upstream killed in the middle of a
//! blob leaves nothing half-stored; a range of an uncached blob is the right slice; a token
//! from the upstream's token server is reused, not fetched per request. (Corrupted blob bytes:
//! `cache_corruption.rs`.)

use std::time::Duration;

use registry_tests::clients::ACCEPT_MANIFESTS;
use registry_tests::oci_layout::Image;
use registry_tests::upstream::{
    Distribution, Flavour, Upstreams, assert_body, get_accepting_manifests, prefix_cache_of,
    stream_digest, try_stream,
};
use registry_tests::{assert_error, send, sha256_digest};
use sha2::{Digest as _, Sha256};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_that_does_not_hash_to_its_digest_is_a_502() {
    let dist = Distribution::start(Flavour::Open).await;
    let image = Image::generate("amd64", 602, &[8 << 10]);
    dist.push_image("team/app", Some("1"), &image).await;
    let (reg, _upstreams) = prefix_cache_of(&dist, serde_json::json!({})).await;
    // Still JSON, still an image manifest: one hex digit of the config's digest changed.
    let file = dist.blob_file(&image.manifest.digest);
    let text = String::from_utf8(std::fs::read(&file).expect("read")).expect("JSON text");
    let at = text.find("sha256:").expect("a digest in the manifest") + 7;
    let mut bad = text.into_bytes();
    bad[at] = if bad[at] == b'0' { b'1' } else { b'0' };
    std::fs::write(&file, bad).expect("corrupt the manifest");

    for reference in [image.manifest.digest.as_str(), "1"] {
        let reply = get_accepting_manifests(
            &reg,
            &format!("/v2/cache/dist/team/app/manifests/{reference}"),
        )
        .await;
        assert_error(&reply, 502, "UNAVAILABLE");
        assert!(
            reply.text().contains("dist"),
            "names the upstream: {}",
            reply.text()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_killed_mid_blob_leaves_nothing_half_stored() {
    let mut dist = Distribution::start(Flavour::Open).await;
    let big = dist.push_big_image("team/big", "1", 96, 603).await;
    let (reg, _upstreams) = prefix_cache_of(&dist, serde_json::json!({})).await;
    let manifest = get_accepting_manifests(&reg, "/v2/cache/dist/team/big/manifests/1").await;
    assert_body(&manifest, &big.manifest.bytes, "the manifest");
    let path = format!("/v2/cache/dist/team/big/blobs/{}", big.layer_digest);

    let mut resp = reg.client.get(reg.url(&path)).send().await.expect("GET");
    assert_eq!(resp.status(), 200);
    let first = resp
        .chunk()
        .await
        .expect("a first chunk")
        .expect("not empty");
    let mut size = first.len() as u64;
    let mut hasher = Sha256::new();
    hasher.update(&first);
    dist.stop();
    let mut broke = false;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                size += chunk.len() as u64;
                hasher.update(&chunk);
            }
            Ok(None) => break,
            Err(_) => {
                broke = true;
                break;
            }
        }
    }
    if !broke {
        // The cache had it all before the upstream died: it must be the blob, whole.
        assert_eq!(
            size, big.layer_size,
            "a body that ended without error is whole"
        );
        assert_eq!(
            format!("sha256:{}", registry_tests::hex(&hasher.finalize())),
            big.layer_digest
        );
    }

    // Upstream still down: the blob whole, or a 503; never a short or wrong 200.
    let (status, body) = try_stream(&reg, &path).await;
    match (status, body) {
        (200, Ok((size, digest))) => {
            assert_eq!((size, digest), (big.layer_size, big.layer_digest.clone()))
        }
        (503, _) => {}
        (status, body) => panic!("with the upstream down: {status} {body:?}"),
    }
    dist.start_again().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let got = stream_digest(&reg.client, &reg.url(&path)).await;
    assert_eq!(
        (got.status, got.size),
        (200, big.layer_size),
        "{}",
        reg.log()
    );
    assert_eq!(got.digest, big.layer_digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_of_an_uncached_blob_is_the_right_slice() {
    let dist = Distribution::start(Flavour::Htpasswd).await;
    let image = Image::generate("amd64", 604, &[300 << 10]);
    dist.push_image("team/app", Some("1"), &image).await;
    let (reg, _upstreams) = prefix_cache_of(&dist, serde_json::json!({})).await;
    let layer = &image.layers[0];
    let path = format!("/v2/cache/dist/team/app/blobs/{}", layer.digest);
    let reply = send(
        reg.client
            .get(reg.url(&path))
            .header("Range", "bytes=1000-1999"),
    )
    .await;
    assert_eq!(reply.status, 206, "{}", reply.text());
    assert!(
        reply.body == layer.bytes[1000..2000],
        "the bytes of the range"
    );
    let whole = get_accepting_manifests(&reg, &path).await;
    assert_body(&whole, &layer.bytes, "the whole blob after the range");
    assert_eq!(sha256_digest(&whole.body), layer.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_of_the_upstream_is_reused_for_the_requests_of_its_scope() {
    let dist = Distribution::start(Flavour::Token).await;
    let image = Image::generate("amd64", 605, &[10 << 10, 10 << 10, 10 << 10]);
    dist.push_image("team/app", Some("1"), &image).await;
    let (reg, upstreams) = prefix_cache_of(&dist, serde_json::json!({})).await;
    let repo = "/v2/cache/dist/team/app";

    let token = dist.token_server().expect("token server");
    let pulls = || {
        token
            .requested_scopes()
            .iter()
            .filter(|s| *s == "repository:team/app:pull")
            .count()
    };
    let manifest = get_accepting_manifests(&reg, &format!("{repo}/manifests/1")).await;
    assert_body(&manifest, &image.manifest.bytes, "the manifest");
    assert_eq!(
        pulls(),
        1,
        "a token for pull: {:?}",
        token.requested_scopes()
    );
    // The first blob may take a token of its own (with TEST_TOPOLOGY=services another
    // process serves blobs); the next ones reuse it.
    let mut blobs = std::iter::once(&image.config).chain(&image.layers);
    let first = blobs.next().expect("the config");
    assert_body(
        &get_accepting_manifests(&reg, &format!("{repo}/blobs/{}", first.digest)).await,
        &first.bytes,
        "a blob",
    );
    let after_first = pulls();
    for blob in blobs {
        let reply = get_accepting_manifests(&reg, &format!("{repo}/blobs/{}", blob.digest)).await;
        assert_body(&reply, &blob.bytes, "a blob");
    }
    assert_eq!(
        pulls(),
        after_first,
        "three more blobs took no new token: {:?}",
        token.requested_scopes()
    );
    upstreams.assert_no_secret_in("the registry log", &reg.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_of_an_uncached_manifest_answers_and_a_ttl_of_zero_asks_every_time() {
    let dist = Distribution::start(Flavour::Open).await;
    let image = Image::generate("amd64", 606, &[10 << 10]);
    dist.push_image("team/app", Some("1"), &image).await;
    let mut upstreams = Upstreams::new();
    upstreams.add(
        "dist",
        &dist,
        serde_json::json!({"prefix": "cache/dist", "tag_ttl_secs": 0}),
    );
    let reg = upstreams.start_registry().await;
    let path = "/v2/cache/dist/team/app/manifests/1";

    // docker resolves a tag with a HEAD first: on a miss it answers as a GET would.
    let head = send(
        reg.client
            .head(reg.url(path))
            .header("Accept", ACCEPT_MANIFESTS),
    )
    .await;
    assert_eq!(head.status, 200, "HEAD of an uncached manifest");
    assert_eq!(
        head.header("docker-content-digest"),
        Some(image.manifest.digest.as_str())
    );
    assert_eq!(
        head.header("content-length"),
        Some(image.manifest.bytes.len().to_string().as_str())
    );
    for _ in 0..2 {
        assert_body(
            &get_accepting_manifests(&reg, path).await,
            &image.manifest.bytes,
            "the manifest",
        );
    }
    let tag = "/v2/team/app/manifests/1";
    let asked = dist.settled_count_ok("HEAD", tag).await + dist.count_ok("GET", tag);
    assert!(
        asked >= 3,
        "with a TTL of 0 every pull asks: {:?}",
        dist.access_log()
    );
    assert!(
        dist.count_ok("GET", tag) <= 1,
        "by HEAD, the tag unchanged: {:?}",
        dist.access_log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allow_list_bounds_a_prefix() {
    let dist = Distribution::start(Flavour::Open).await;
    let image = Image::generate("amd64", 607, &[10 << 10]);
    dist.push_image("team/app", Some("1"), &image).await;
    dist.push_image("other/app", Some("1"), &image).await;
    let mut upstreams = Upstreams::new();
    upstreams.add(
        "dist",
        &dist,
        serde_json::json!({"prefix": "cache/dist", "repositories": ["team/*"]}),
    );
    let reg = upstreams.start_registry().await;
    let reply = get_accepting_manifests(&reg, "/v2/cache/dist/team/app/manifests/1").await;
    assert_body(&reply, &image.manifest.bytes, "an allowed repository");
    let reply = get_accepting_manifests(&reg, "/v2/cache/dist/other/app/manifests/1").await;
    assert!(
        matches!(reply.status, 403 | 404),
        "outside the allow-list: {} {}",
        reply.status,
        reply.text()
    );
    registry_tests::assert_client_error(&reply);
    assert_eq!(
        dist.requests("GET", "/v2/other/").len(),
        0,
        "never asked upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_server_refusing_the_credentials_is_a_403_naming_the_upstream() {
    let dist = Distribution::start(Flavour::Token).await;
    let image = Image::generate("amd64", 608, &[10 << 10]);
    dist.push_image("team/app", Some("1"), &image).await;
    let mut upstreams = Upstreams::new();
    upstreams.add_url(
        "tokened",
        &dist.base_url(),
        Some(("puller", "not-the-password-7")),
        serde_json::json!({"prefix": "cache/tokened"}),
    );
    let reg = upstreams.start_registry().await;
    let reply = get_accepting_manifests(&reg, "/v2/cache/tokened/team/app/manifests/1").await;
    assert_error(&reply, 403, "DENIED");
    assert!(
        reply.text().contains("tokened"),
        "names the upstream: {}",
        reply.text()
    );
    assert!(
        reply
            .header("www-authenticate")
            .is_none_or(|c| !c.contains("/token")),
        "the upstream's challenge reached the client"
    );
    upstreams.assert_no_secret_in("the 403", &reply.text());
    upstreams.assert_no_secret_in("the registry log", &reg.log());
    let token = dist.token_server().expect("token server");
    assert!(
        token
            .requested_scopes()
            .iter()
            .any(|s| s == "repository:team/app:pull"),
        "the cache asked the token server: {:?}",
        token.requested_scopes()
    );
}

//! The pull-through cache as a Docker Hub mirror: dockerd (Debian's docker.io) configured with
//! `registry-mirrors` pulls `alpine` through the registry, which has a real distribution
//! standing in for Docker Hub as its fallback upstream with `host: docker.io`; the image stays
//! pullable with the upstream stopped. containerd's `?ns=docker.io` selects the upstream by
//! host; local repositories always win.

use registry_tests::clients::ACCEPT_MANIFESTS;
use registry_tests::daemons::Dockerd;
use registry_tests::oci_layout::{Image, MultiArch};
use registry_tests::upstream::{Distribution, Flavour, Upstreams, assert_body};
use registry_tests::{Registry, Reply, assert_error_in, send};

/// A registry with `dist` as its Docker Hub: `host: docker.io`, and a fallback when
/// `fallback`.
async fn hub_mirror(dist: &Distribution, fallback: bool) -> (Registry, Upstreams) {
    let mut upstreams = Upstreams::new();
    upstreams.add(
        "hub",
        dist,
        serde_json::json!({"host": "docker.io", "fallback": fallback}),
    );
    let reg = upstreams.start_registry().await;
    (reg, upstreams)
}

async fn get_manifest(reg: &Registry, path: &str) -> Reply {
    send(
        reg.client
            .get(reg.url(path))
            .header("Accept", ACCEPT_MANIFESTS),
    )
    .await
}

async fn image_id(dockerd: &Dockerd, reference: &str) -> String {
    let out = dockerd
        .docker()
        .run(&["image", "inspect", "--format", "{{.Id}}", reference])
        .await;
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

async fn docker_pull(dockerd: &Dockerd, reg: &Registry, reference: &str) {
    dockerd.docker().ok(reg, &["pull", reference]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_pull_alpine_goes_through_the_mirror_and_survives_an_upstream_outage() {
    let mut dist = Distribution::start(Flavour::Htpasswd).await;
    let alpine = Image::generate("amd64", 201, &[300 << 10, 30 << 10]);
    dist.push_image("library/alpine", Some("latest"), &alpine)
        .await;
    let (reg, upstreams) = hub_mirror(&dist, true).await;
    let dockerd = Dockerd::start_with_mirrors(&[&reg.url("")]).await;

    docker_pull(&dockerd, &reg, "alpine").await;
    assert_eq!(image_id(&dockerd, "alpine").await, alpine.config.digest);
    let fetched = dist
        .settled_count_ok("GET", "/v2/library/alpine/blobs/")
        .await;
    assert_eq!(fetched, alpine.layers.len() + 1, "config and layers, once");

    // Upstream down, the image removed from docker: pulled again from the cache alone.
    dist.stop();
    dockerd.docker().ok(&reg, &["image", "rm", "alpine"]).await;
    docker_pull(&dockerd, &reg, "alpine:latest").await;
    assert_eq!(image_id(&dockerd, "alpine").await, alpine.config.digest);
    assert_eq!(dist.count_ok("GET", "/v2/library/alpine/blobs/"), fetched);
    upstreams.assert_no_secret_in("the registry log", &reg.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ns_parameter_selects_the_upstream_by_host() {
    let dist = Distribution::start(Flavour::Token).await;
    let busybox = Image::generate("arm64", 202, &[20 << 10]);
    dist.push_image("library/busybox", Some("1"), &busybox)
        .await;
    // Not a fallback: only `ns=docker.io` reaches it.
    let (reg, _upstreams) = hub_mirror(&dist, false).await;

    let reply = get_manifest(&reg, "/v2/library/busybox/manifests/1").await;
    assert_error_in(&reply, &[404], &["MANIFEST_UNKNOWN", "NAME_UNKNOWN"]);
    // A host no upstream has reaches nothing.
    let reply = get_manifest(&reg, "/v2/library/busybox/manifests/1?ns=quay.io").await;
    assert_error_in(&reply, &[404], &["MANIFEST_UNKNOWN", "NAME_UNKNOWN"]);
    assert_eq!(dist.requests("GET", "/v2/library/busybox/").len(), 0);

    // The upstream's host, compared without case.
    let reply = get_manifest(&reg, "/v2/library/busybox/manifests/1?ns=Docker.IO").await;
    assert_body(&reply, &busybox.manifest.bytes, "the manifest by ns");
    let layer = &busybox.layers[0];
    let blob = send(reg.client.get(reg.url(&format!(
        "/v2/library/busybox/blobs/{}?ns=docker.io",
        layer.digest
    ))))
    .await;
    assert_body(&blob, &layer.bytes, "the blob by ns");
    // Cached under the name asked for (the upstream has no prefix): local from now on.
    let reply = get_manifest(&reg, "/v2/library/busybox/manifests/1").await;
    assert_body(
        &reply,
        &busybox.manifest.bytes,
        "the cached manifest, no ns",
    );

    // A one-component name is Docker Hub's `library/`, as containerd sends it.
    let reply = get_manifest(&reg, "/v2/busybox/manifests/1?ns=docker.io").await;
    assert_body(
        &reply,
        &busybox.manifest.bytes,
        "busybox as library/busybox",
    );
    assert_eq!(dist.requests("GET", "/v2/busybox/").len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_repositories_win_over_the_mirror() {
    let dist = Distribution::start(Flavour::Open).await;
    let upstream = Image::generate("amd64", 203, &[20 << 10]);
    dist.push_image("library/alpine", Some("latest"), &upstream)
        .await;
    let (reg, _upstreams) = hub_mirror(&dist, true).await;
    let local = reg
        .push_image("library/alpine", "latest", &[30 << 10])
        .await;

    for path in [
        "/v2/library/alpine/manifests/latest",
        "/v2/library/alpine/manifests/latest?ns=docker.io",
    ] {
        let reply = get_manifest(&reg, path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        assert_body(
            &reply,
            &local.manifest,
            &format!("{path} served the local image"),
        );
    }
    let asked = dist.requests("GET", "/v2/library/alpine/").len()
        + dist.requests("HEAD", "/v2/library/alpine/").len();
    assert_eq!(asked, 0, "the upstream was asked for a local repository");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_pull_is_stored_under_the_upstreams_prefix_and_docker_picks_its_platform() {
    let mut dist = Distribution::start(Flavour::Htpasswd).await;
    let multi = MultiArch::generate(&["amd64", "arm64"], 204);
    dist.push_multi_arch("library/redis", "7", &multi).await;
    let mut upstreams = Upstreams::new();
    upstreams.add(
        "hub",
        &dist,
        serde_json::json!({"prefix": "cache/hub", "host": "docker.io", "fallback": true}),
    );
    let reg = upstreams.start_registry().await;
    let dockerd = Dockerd::start_with_mirrors(&[&reg.url("")]).await;

    docker_pull(&dockerd, &reg, "redis:7").await;
    let (amd64, arm64) = (&multi.images[0], &multi.images[1]);
    assert_eq!(
        image_id(&dockerd, "redis:7").await,
        amd64.config.digest,
        "docker's platform"
    );
    dist.settled_count_ok("GET", "/v2/").await;
    let arm64_layer = format!("/v2/library/redis/blobs/{}", arm64.layers[0].digest);
    assert_eq!(
        dist.requests("GET", &arm64_layer).len(),
        0,
        "the other platform stays upstream"
    );

    // Stored under the prefix: served from there with the upstream down.
    dist.stop();
    let reply = get_manifest(&reg, "/v2/cache/hub/library/redis/manifests/7").await;
    assert_body(&reply, &multi.index.bytes, "the index under the prefix");
    let path = format!(
        "/v2/cache/hub/library/redis/manifests/{}",
        amd64.manifest.digest
    );
    let reply = get_manifest(&reg, &path).await;
    assert_body(&reply, &amd64.manifest.bytes, "the platform docker pulled");
}

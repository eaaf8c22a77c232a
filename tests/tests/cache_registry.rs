//! The pull-through cache with this registry's own binary as the upstream (the other suites,
//! `cache_*.rs`, use distribution): prefix pulls that fill the cache and are then served
//! without the upstream, tag revalidation after the TTL, an index stored without its
//! platforms, pushes refused under a prefix, the mirror (`?ns=`) and fallback ways in,
//! concurrent first pulls through two instances fetching once, and the upstream's errors
//! as the spec's. Requests reaching the upstream are counted in its request log.

use std::time::Duration;

use registry_tests::api::run_job_with;
use registry_tests::auth::{ALICE, AuthFiles};
use registry_tests::{
    EMPTY_JSON, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, PushedImage, Registry, Reply, assert_error,
    assert_error_in, pseudo_random_bytes, send, sha256_digest,
};

/// Writes an `UPSTREAMS_FILE` into a temp dir and returns both (the dir must live).
fn upstreams_file(upstreams: serde_json::Value) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("upstreams.json");
    std::fs::write(
        &path,
        serde_json::to_vec(&serde_json::json!({ "upstreams": upstreams })).expect("json"),
    )
    .expect("write upstreams file");
    let path = path.to_str().expect("UTF-8 path").to_owned();
    (dir, path)
}

/// A registry whose upstream `origin` (at `upstream`) has the given extra settings.
async fn cache_of(
    upstream: &Registry,
    settings: serde_json::Value,
) -> (Registry, tempfile::TempDir) {
    let mut entry = serde_json::json!({ "name": "origin", "url": upstream.url("") });
    for (k, v) in settings.as_object().expect("settings object") {
        entry[k] = v.clone();
    }
    let (dir, path) = upstreams_file(serde_json::json!([entry]));
    let cache = Registry::start_with(&[("UPSTREAMS_FILE", path.as_str())]).await;
    (cache, dir)
}

/// Requests for `path_part` (e.g. `/v2/team/app/blobs/`) with `method` in a registry's log.
fn requests(reg: &Registry, method: &str, path_part: &str) -> usize {
    reg.log()
        .lines()
        .filter(|l| l.contains(&format!("method={method} ")) && l.contains(path_part))
        .filter(|l| l.contains("status="))
        .count()
}

async fn get(reg: &Registry, path: &str) -> Reply {
    send(
        reg.client
            .get(reg.url(path))
            .header("Accept", format!("{OCI_MANIFEST}, {OCI_INDEX}")),
    )
    .await
}

/// Pulls the whole image through `reg` under `repo` and checks every byte.
async fn assert_pulls(reg: &Registry, repo: &str, tag: &str, image: &PushedImage) {
    let manifest = get(reg, &format!("/v2/{repo}/manifests/{tag}")).await;
    assert_eq!(manifest.status, 200, "{repo}:{tag}: {}", manifest.text());
    assert_eq!(manifest.body, image.manifest);
    assert_eq!(
        manifest.header("docker-content-digest"),
        Some(image.digest.as_str())
    );
    for (digest, bytes) in image.layers.iter().chain([&image.config]) {
        let blob = get(reg, &format!("/v2/{repo}/blobs/{digest}")).await;
        assert_eq!(blob.status, 200, "{repo}@{digest}: {}", blob.text());
        assert_eq!(sha256_digest(&blob.body), *digest);
        assert!(blob.body == *bytes);
    }
}

#[tokio::test]
async fn prefix_pulls_fill_the_cache_which_then_serves_without_the_upstream() {
    let upstream = Registry::start().await;
    let image = upstream
        .push_image("team/app", "v1", &[1000, 300_000])
        .await;
    let other = upstream.push_image("team/app", "v2", &[2000]).await;
    let (cache, _dir) = cache_of(&upstream, serde_json::json!({ "prefix": "cache/origin" })).await;

    assert_pulls(&cache, "cache/origin/team/app", "v1", &image).await;
    let blob_gets = requests(&upstream, "GET", "/v2/team/app/blobs/");
    assert_eq!(blob_gets, 3, "the config and two layers, once each");
    let manifest_gets = requests(&upstream, "GET", "/v2/team/app/manifests/");
    // Pulled again: everything from the cache (the tag is within its TTL).
    assert_pulls(&cache, "cache/origin/team/app", "v1", &image).await;
    let by_digest = format!("/v2/cache/origin/team/app/manifests/{}", image.digest);
    assert_eq!(get(&cache, &by_digest).await.status, 200);
    assert_eq!(requests(&upstream, "GET", "/v2/team/app/blobs/"), blob_gets);
    assert_eq!(
        requests(&upstream, "GET", "/v2/team/app/manifests/"),
        manifest_gets
    );
    assert_eq!(requests(&upstream, "HEAD", "/v2/team/app/manifests/"), 0);

    // A blob HEAD of something not cached asks the upstream for the size, fetches nothing.
    let (layer, bytes) = &other.layers[0];
    let head = send(
        cache
            .client
            .head(cache.url(&format!("/v2/cache/origin/team/app/blobs/{layer}"))),
    )
    .await;
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(bytes.len().to_string().as_str())
    );
    assert_eq!(requests(&upstream, "GET", "/v2/team/app/blobs/"), blob_gets);

    // Cached content is ordinary content: listed, and served with the upstream gone.
    let tags = get(&cache, "/v2/cache/origin/team/app/tags/list").await;
    assert_eq!(tags.json()["tags"], serde_json::json!(["v1"]));
    drop(upstream);
    assert_pulls(&cache, "cache/origin/team/app", "v1", &image).await;
    let missing = get(&cache, "/v2/cache/origin/team/app/manifests/v2").await;
    assert_error(&missing, 503, "UNAVAILABLE");
    assert!(missing.text().contains("origin"), "{}", missing.text());
    assert!(missing.header("retry-after").is_some());
    let missing_blob = get(&cache, &format!("/v2/cache/origin/team/app/blobs/{layer}")).await;
    assert_error(&missing_blob, 503, "UNAVAILABLE");
}

#[tokio::test]
async fn a_moved_tag_is_seen_after_the_ttl_and_not_before() {
    let upstream = Registry::start().await;
    let first = upstream.push_image("team/app", "latest", &[100]).await;
    let (cache, _dir) = cache_of(
        &upstream,
        serde_json::json!({ "prefix": "cache/origin", "tag_ttl_secs": 3 }),
    )
    .await;
    let path = "/v2/cache/origin/team/app/manifests/latest";
    assert_eq!(get(&cache, path).await.body, first.manifest);
    let second = upstream.push_image("team/app", "latest", &[200, 300]).await;
    assert_ne!(first.digest, second.digest);
    assert_eq!(
        get(&cache, path).await.body,
        first.manifest,
        "within the TTL"
    );
    assert_eq!(
        requests(&upstream, "HEAD", "/v2/team/app/manifests/latest"),
        0
    );
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let moved = get(&cache, path).await;
    assert_eq!(moved.body, second.manifest, "after the TTL");
    assert_eq!(
        requests(&upstream, "HEAD", "/v2/team/app/manifests/latest"),
        1
    );
    // The old manifest stays pullable by digest; the new one is now cached.
    let old = format!("/v2/cache/origin/team/app/manifests/{}", first.digest);
    assert_eq!(get(&cache, &old).await.status, 200);
    drop(upstream);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    // Past the TTL again with the upstream gone: the revalidation fails, the cache answers.
    assert_eq!(get(&cache, path).await.body, second.manifest);
}

#[tokio::test]
async fn an_index_is_cached_without_its_platforms_until_one_is_asked_for() {
    let upstream = Registry::start().await;
    let amd = upstream.push_image("team/multi", "amd", &[500]).await;
    let arm = upstream.push_image("team/multi", "arm", &[600]).await;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": amd.digest, "size": amd.manifest.len(),
             "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": OCI_MANIFEST, "digest": arm.digest, "size": arm.manifest.len(),
             "platform": {"architecture": "arm64", "os": "linux"}},
        ]
    })
    .to_string();
    let index_digest = upstream
        .push_manifest("team/multi", "v1", OCI_INDEX, index.as_bytes())
        .await;
    let (cache, _dir) = cache_of(&upstream, serde_json::json!({ "prefix": "cache/origin" })).await;
    let repo = "cache/origin/team/multi";

    let got = get(&cache, &format!("/v2/{repo}/manifests/v1")).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.body, index.as_bytes());
    assert_eq!(
        got.header("docker-content-digest"),
        Some(index_digest.as_str())
    );
    for child in [&amd.digest, &arm.digest] {
        assert_eq!(
            requests(&upstream, "GET", &format!("/manifests/{child}")),
            0
        );
    }
    assert_pulls(&cache, repo, &amd.digest, &amd).await;
    assert_eq!(
        requests(&upstream, "GET", &format!("/manifests/{}", amd.digest)),
        1
    );
    assert_eq!(
        requests(&upstream, "GET", &format!("/manifests/{}", arm.digest)),
        0
    );
    assert_eq!(
        requests(&upstream, "GET", &format!("/blobs/{}", arm.layers[0].0)),
        0,
        "the other platform's layers are not fetched"
    );
    // The index now lists a cached child: deleting the child first is refused, as for
    // pushed content.
    let delete = send(
        cache
            .client
            .delete(cache.url(&format!("/v2/{repo}/manifests/{}", amd.digest))),
    )
    .await;
    assert_eq!(delete.status, 409, "{}", delete.text());
    drop(upstream);
    assert_eq!(
        get(&cache, &format!("/v2/{repo}/manifests/v1"))
            .await
            .status,
        200
    );
    assert_pulls(&cache, repo, &amd.digest, &amd).await;
    let arm_manifest = get(&cache, &format!("/v2/{repo}/manifests/{}", arm.digest)).await;
    assert_error(&arm_manifest, 503, "UNAVAILABLE");
}

#[tokio::test]
async fn pushes_into_a_prefix_are_refused_and_deletes_purge() {
    let upstream = Registry::start().await;
    let image = upstream.push_image("team/app", "v1", &[100]).await;
    let (cache, _dir) = cache_of(&upstream, serde_json::json!({ "prefix": "cache/origin" })).await;
    let post = send(
        cache
            .client
            .post(cache.url("/v2/cache/origin/team/app/blobs/uploads/")),
    )
    .await;
    assert_error(&post, 405, "UNSUPPORTED");
    assert!(post.text().contains("origin"), "{}", post.text());
    let mount = send(cache.client.post(cache.url(&format!(
        "/v2/cache/origin/team/app/blobs/uploads/?mount={}&from=team/app",
        image.layers[0].0
    ))))
    .await;
    assert_error(&mount, 405, "UNSUPPORTED");
    let put = send(
        cache
            .client
            .put(cache.url("/v2/cache/origin/team/app/manifests/v1"))
            .header("Content-Type", OCI_MANIFEST)
            .body(image.manifest.clone()),
    )
    .await;
    assert_error(&put, 405, "UNSUPPORTED");
    // Outside the prefix the registry is an ordinary one.
    cache.push_image("team/app", "v1", &[100]).await;

    assert_pulls(&cache, "cache/origin/team/app", "v1", &image).await;
    let delete = send(
        cache
            .client
            .delete(cache.url("/v2/cache/origin/team/app/manifests/v1")),
    )
    .await;
    assert_eq!(delete.status, 202, "{}", delete.text());
    let before = requests(&upstream, "GET", "/v2/team/app/manifests/v1");
    assert_pulls(&cache, "cache/origin/team/app", "v1", &image).await;
    assert_eq!(
        requests(&upstream, "GET", "/v2/team/app/manifests/v1"),
        before + 1
    );
}

#[tokio::test]
async fn fallback_copies_in_and_mirror_ns_picks_the_upstream_local_content_winning() {
    let upstream = Registry::start().await;
    let image = upstream.push_image("team/app", "v1", &[1234, 5678]).await;
    let hub_image = upstream.push_image("library/alpine", "3", &[4321]).await;
    let (dir, path) = upstreams_file(serde_json::json!([
        {"name": "old", "url": upstream.url(""), "fallback": true, "repositories": ["team/*"]},
        {"name": "hub", "url": upstream.url(""), "prefix": "mirror/hub", "host": "hub.example"},
    ]));
    let cache = Registry::start_with(&[("UPSTREAMS_FILE", path.as_str())]).await;

    // Fallback: copied into the name asked for.
    assert_pulls(&cache, "team/app", "v1", &image).await;
    // Mirror with containerd's `ns`: cached under the upstream's prefix.
    let ns = "/v2/library/alpine/manifests/3?ns=hub.example";
    assert_eq!(get(&cache, ns).await.body, hub_image.manifest);
    for (digest, bytes) in hub_image.layers.iter().chain([&hub_image.config]) {
        let blob = get(
            &cache,
            &format!("/v2/library/alpine/blobs/{digest}?ns=hub.example"),
        )
        .await;
        assert!(blob.body == *bytes);
    }
    // Not covered by any way in: local only.
    let outside = get(&cache, "/v2/library/alpine/manifests/3").await;
    assert_error_in(&outside, &[404], &["NAME_UNKNOWN"]);
    let other = get(&cache, "/v2/other/app/manifests/v1").await;
    assert_error_in(&other, &[404], &["NAME_UNKNOWN"]);

    // Local content wins over the upstreams.
    let local = cache.push_image("team/app", "v2", &[99]).await;
    upstream.push_image("team/app", "v2", &[98]).await;
    assert_eq!(
        get(&cache, "/v2/team/app/manifests/v2").await.body,
        local.manifest
    );

    drop(upstream);
    assert_pulls(&cache, "team/app", "v1", &image).await;
    assert_pulls(&cache, "mirror/hub/library/alpine", "3", &hub_image).await;
    assert_eq!(get(&cache, ns).await.body, hub_image.manifest);
    drop(dir);
}

#[tokio::test]
async fn concurrent_first_pulls_through_two_instances_fetch_the_blob_once() {
    let upstream = Registry::start().await;
    let image = upstream.push_image("team/big", "v1", &[24 << 20]).await;
    let (first, _dir) = cache_of(&upstream, serde_json::json!({ "prefix": "cache/origin" })).await;
    let second = first.start_peer().await;
    let (layer, bytes) = &image.layers[0];
    let path = format!("/v2/cache/origin/team/big/blobs/{layer}");
    let mut pulls = Vec::new();
    for i in 0..12 {
        let reg = if i % 2 == 0 { &first } else { &second };
        let url = reg.url(&path);
        let client = reg.client.clone();
        pulls.push(tokio::spawn(async move {
            let reply = send(client.get(url)).await;
            (reply.status, sha256_digest(&reply.body), reply.body.len())
        }));
    }
    for pull in pulls {
        let (status, digest, len) = pull.await.expect("pull task");
        assert_eq!(status, 200);
        assert_eq!(len, bytes.len());
        assert_eq!(digest, *layer);
    }
    assert_eq!(
        requests(&upstream, "GET", &format!("/v2/team/big/blobs/{layer}")),
        1,
        "one upstream fetch for all the clients of both instances"
    );
}

#[tokio::test]
async fn upstream_answers_become_the_specs_errors() {
    let upstream = Registry::start().await;
    upstream.push_image("team/app", "v1", &[100]).await;
    let (cache, _dir) = cache_of(&upstream, serde_json::json!({ "prefix": "cache/origin" })).await;
    let unknown = get(&cache, "/v2/cache/origin/team/app/manifests/nope").await;
    assert_error(&unknown, 404, "MANIFEST_UNKNOWN");
    let digest = sha256_digest(&pseudo_random_bytes(10, 1));
    let blob = get(&cache, &format!("/v2/cache/origin/team/app/blobs/{digest}")).await;
    assert_error(&blob, 404, "BLOB_UNKNOWN");
    let head = send(
        cache
            .client
            .head(cache.url(&format!("/v2/cache/origin/team/app/blobs/{digest}"))),
    )
    .await;
    assert_eq!(head.status, 404);

    // An upstream that refuses the registry's credentials: DENIED naming it.
    let files = AuthFiles::new();
    let private = Registry::start_with(&[
        ("AUTH_MODE", "basic"),
        (
            "HTPASSWD_FILE",
            files.htpasswd.to_str().expect("UTF-8 path"),
        ),
        ("AUTH_RULES_FILE", files.rules.to_str().expect("UTF-8 path")),
    ])
    .await;
    let (dir, path) = upstreams_file(serde_json::json!([{
        "name": "private", "url": private.url(""), "prefix": "cache/private",
        "username": ALICE.0, "password_env": "PRIVATE_PASSWORD",
    }]));
    let cache = Registry::start_with(&[
        ("UPSTREAMS_FILE", path.as_str()),
        ("PRIVATE_PASSWORD", "not-alices-password"),
    ])
    .await;
    let denied = get(&cache, "/v2/cache/private/alpha/app/manifests/v1").await;
    assert_error(&denied, 403, "DENIED");
    assert!(denied.text().contains("private"), "{}", denied.text());
    assert!(!cache.log().contains("not-alices-password"));
    drop(dir);
}

#[tokio::test]
async fn cache_evict_keeps_a_prefix_under_its_cap_least_recently_pulled_first() {
    let upstream = Registry::start().await;
    let mut images = Vec::new();
    // Layers of distinct sizes: distinct bytes (the seed of their content is the same).
    for (i, repo) in ["team/a", "team/b", "team/c"].into_iter().enumerate() {
        images.push((repo, upstream.push_image(repo, "v1", &[100_000 + i]).await));
    }
    let (dir, path) = upstreams_file(serde_json::json!([{
        "name": "origin", "url": upstream.url(""), "prefix": "cache/origin",
        "max_bytes": 250_000,
    }]));
    let cache = Registry::start_with(&[("UPSTREAMS_FILE", path.as_str())]).await;
    for (repo, image) in &images {
        assert_pulls(&cache, &format!("cache/origin/{repo}"), "v1", image).await;
        // Distinct pull times: the cap's order is by them.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    run_job_with(&cache, "cache-evict", &[("UPSTREAMS_FILE", path.as_str())]).await;
    run_job_with(&cache, "blob-gc", &[("UPSTREAMS_FILE", path.as_str())]).await;
    let gets = requests(&upstream, "GET", "/manifests/");
    // The least recently pulled went; the others are still cached.
    for (repo, image) in &images[1..] {
        assert_pulls(&cache, &format!("cache/origin/{repo}"), "v1", image).await;
    }
    assert_eq!(requests(&upstream, "GET", "/manifests/"), gets);
    let (repo, image) = &images[0];
    assert_pulls(&cache, &format!("cache/origin/{repo}"), "v1", image).await;
    assert_eq!(
        requests(&upstream, "GET", "/manifests/"),
        gets + 1,
        "the evicted image is fetched again"
    );
    drop(dir);
}

#[tokio::test]
async fn referrers_of_a_cached_subject_come_from_the_upstream_and_stay_when_it_is_gone() {
    let upstream = Registry::start().await;
    let subject = upstream.push_image("team/signed", "v1", &[700]).await;
    let empty = upstream.push_blob("team/signed", EMPTY_JSON).await;
    let signature = upstream.push_blob("team/signed", b"a signature").await;
    let artifact = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": EMPTY_JSON.len()},
        "layers": [{"mediaType": "application/octet-stream", "digest": signature, "size": 11}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.digest, "size": subject.manifest.len()},
    })
    .to_string();
    let artifact_digest = sha256_digest(artifact.as_bytes());
    upstream
        .push_manifest(
            "team/signed",
            &artifact_digest,
            OCI_MANIFEST,
            artifact.as_bytes(),
        )
        .await;
    let (cache, _dir) = cache_of(&upstream, serde_json::json!({ "prefix": "cache/origin" })).await;
    let repo = "cache/origin/team/signed";
    assert_pulls(&cache, repo, "v1", &subject).await;

    let path = format!("/v2/{repo}/referrers/{}", subject.digest);
    let listed = get(&cache, &path).await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    let digests: Vec<String> = listed.json()["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|d| d["digest"].as_str().expect("digest").to_owned())
        .collect();
    assert_eq!(digests, std::slice::from_ref(&artifact_digest));
    assert_eq!(
        listed.json()["manifests"][0]["artifactType"],
        "application/vnd.example.signature"
    );
    drop(upstream);
    // Cached: listed, and the artifact (manifest) served, with the upstream gone.
    let again = get(&cache, &path).await;
    assert_eq!(
        again.json()["manifests"][0]["digest"],
        artifact_digest.as_str()
    );
    let manifest = get(&cache, &format!("/v2/{repo}/manifests/{artifact_digest}")).await;
    assert_eq!(manifest.body, artifact.as_bytes());
}

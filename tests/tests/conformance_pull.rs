//! Pull (spec "Pull" section, end-2 and end-3): GET/HEAD of manifests and blobs, Range
//! requests, 404s for unknown content, and state kept across a restart.

use registry_tests::*;

#[tokio::test]
async fn manifest_by_tag_and_by_digest_is_the_pushed_bytes() {
    let reg = Registry::start().await;
    let image = reg.push_image("pull/app", "v1", &[1000, 70_000]).await;
    for reference in ["v1", image.digest.as_str()] {
        let reply = send(
            reg.client
                .get(reg.url(&format!("/v2/pull/app/manifests/{reference}")))
                .header("Accept", OCI_MANIFEST),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.body, image.manifest);
        assert_eq!(reply.header("content-type"), Some(OCI_MANIFEST));
        assert_eq!(
            reply.header("docker-content-digest"),
            Some(image.digest.as_str())
        );
        assert_eq!(sha256_digest(&reply.body), image.digest);
        assert_eq!(
            reply.header("content-length"),
            Some(image.manifest.len().to_string().as_str())
        );
    }
}

#[tokio::test]
async fn manifest_bytes_do_not_depend_on_accept() {
    let reg = Registry::start().await;
    let image = reg.push_image("pull/accept", "latest", &[10]).await;
    let accepts = [
        None,
        Some("*/*"),
        Some("application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"),
    ];
    for accept in accepts {
        let mut request = reg.client.get(reg.url("/v2/pull/accept/manifests/latest"));
        if let Some(accept) = accept {
            request = request.header("Accept", accept);
        }
        let reply = send(request).await;
        assert_eq!(reply.status, 200, "Accept {accept:?}: {}", reply.text());
        assert_eq!(reply.body, image.manifest, "Accept {accept:?}");
        assert_eq!(reply.header("content-type"), Some(OCI_MANIFEST));
    }
}

#[tokio::test]
async fn head_manifest_gives_digest_type_and_length_without_body() {
    let reg = Registry::start().await;
    let image = reg.push_image("pull/head", "v1", &[42]).await;
    for reference in ["v1", image.digest.as_str()] {
        let reply = send(
            reg.client
                .head(reg.url(&format!("/v2/pull/head/manifests/{reference}")))
                .header("Accept", OCI_MANIFEST),
        )
        .await;
        assert_eq!(reply.status, 200);
        assert!(reply.body.is_empty(), "HEAD returned a body");
        assert_eq!(
            reply.header("docker-content-digest"),
            Some(image.digest.as_str())
        );
        assert_eq!(reply.header("content-type"), Some(OCI_MANIFEST));
        assert_eq!(
            reply.header("content-length"),
            Some(image.manifest.len().to_string().as_str())
        );
    }
}

#[tokio::test]
async fn get_blob_returns_its_bytes_and_headers() {
    let reg = Registry::start().await;
    let bytes = pseudo_random_bytes(300_000, 1);
    let digest = reg.push_blob("pull/blob", &bytes).await;
    let reply = send(
        reg.client
            .get(reg.url(&format!("/v2/pull/blob/blobs/{digest}"))),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.body, bytes);
    assert_eq!(sha256_digest(&reply.body), digest);
    assert_eq!(reply.header("content-length"), Some("300000"));
    if registry_tests::redirected_downloads() {
        // The bytes came from storage through a 307, which carries the registry's headers.
        let redirect = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
            .get(reg.url(&format!("/v2/pull/blob/blobs/{digest}")))
            .send()
            .await
            .expect("GET blob without following");
        assert_eq!(redirect.status(), 307);
        assert!(redirect.headers().contains_key("location"));
        assert_eq!(redirect.headers()["docker-content-digest"], digest.as_str());
        return;
    }
    assert_eq!(reply.header("docker-content-digest"), Some(digest.as_str()));
    assert_eq!(
        reply.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(reply.header("accept-ranges"), Some("bytes"));
}

#[tokio::test]
async fn head_blob_gives_size_and_digest_without_body() {
    let reg = Registry::start().await;
    let bytes = pseudo_random_bytes(12_345, 2);
    let digest = reg.push_blob("pull/headblob", &bytes).await;
    let reply = send(
        reg.client
            .head(reg.url(&format!("/v2/pull/headblob/blobs/{digest}"))),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.is_empty());
    assert_eq!(reply.header("content-length"), Some("12345"));
    assert_eq!(reply.header("docker-content-digest"), Some(digest.as_str()));
    assert_eq!(reply.header("accept-ranges"), Some("bytes"));
}

#[tokio::test]
async fn empty_blob_pulls_as_zero_bytes() {
    let reg = Registry::start().await;
    let digest = reg.push_blob("pull/empty", b"").await;
    assert_eq!(
        digest,
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let reply = send(
        reg.client
            .get(reg.url(&format!("/v2/pull/empty/blobs/{digest}"))),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.is_empty());
    assert_eq!(reply.header("content-length"), Some("0"));
}

#[tokio::test]
async fn blob_byte_ranges_return_206_and_the_slice() {
    let reg = Registry::start().await;
    let bytes = pseudo_random_bytes(10_000, 3);
    let digest = reg.push_blob("pull/range", &bytes).await;
    let url = reg.url(&format!("/v2/pull/range/blobs/{digest}"));
    let cases: [(&str, usize, usize); 5] = [
        ("bytes=0-99", 0, 99),
        ("bytes=100-199", 100, 199),
        ("bytes=9000-", 9000, 9999),
        ("bytes=-500", 9500, 9999),
        ("bytes=0-9999", 0, 9999),
    ];
    for (range, start, end) in cases {
        let reply = send(reg.client.get(&url).header("Range", range)).await;
        assert_eq!(reply.status, 206, "{range}: {}", reply.text());
        assert_eq!(reply.body, &bytes[start..=end], "{range}");
        assert_eq!(
            reply.header("content-range"),
            Some(format!("bytes {start}-{end}/10000").as_str()),
            "{range}"
        );
        assert_eq!(
            reply.header("content-length"),
            Some((end - start + 1).to_string().as_str()),
            "{range}"
        );
    }
}

#[tokio::test]
async fn range_past_the_end_clamps_to_the_blob() {
    let reg = Registry::start().await;
    let bytes = pseudo_random_bytes(1000, 4);
    let digest = reg.push_blob("pull/clamp", &bytes).await;
    let url = reg.url(&format!("/v2/pull/clamp/blobs/{digest}"));
    let reply = send(reg.client.get(&url).header("Range", "bytes=900-5000")).await;
    assert_eq!(reply.status, 206, "{}", reply.text());
    assert_eq!(reply.body, &bytes[900..]);
    assert_eq!(reply.header("content-range"), Some("bytes 900-999/1000"));
}

#[tokio::test]
async fn unsatisfiable_range_is_416_naming_the_size() {
    let reg = Registry::start().await;
    let bytes = pseudo_random_bytes(1000, 5);
    let digest = reg.push_blob("pull/r416", &bytes).await;
    let url = reg.url(&format!("/v2/pull/r416/blobs/{digest}"));
    for range in ["bytes=1000-", "bytes=5000-6000"] {
        let reply = send(reg.client.get(&url).header("Range", range)).await;
        assert_eq!(reply.status, 416, "{range}: {}", reply.text());
        assert_eq!(
            reply.header("content-range"),
            Some("bytes */1000"),
            "{range}"
        );
    }
}

#[tokio::test]
async fn unknown_blob_is_404_blob_unknown() {
    let reg = Registry::start().await;
    reg.push_image("pull/missing", "v1", &[10]).await;
    let digest = sha256_digest(b"never pushed");
    let url = reg.url(&format!("/v2/pull/missing/blobs/{digest}"));
    assert_error(&send(reg.client.get(&url)).await, 404, "BLOB_UNKNOWN");
    let head = send(reg.client.head(&url)).await;
    assert_eq!(head.status, 404);
    assert!(head.body.is_empty());
}

#[tokio::test]
async fn blob_pushed_to_another_repository_is_404_here() {
    let reg = Registry::start().await;
    reg.push_image("pull/mine", "v1", &[10]).await;
    let digest = reg
        .push_blob("pull/theirs", &pseudo_random_bytes(2000, 6))
        .await;
    let url = reg.url(&format!("/v2/pull/mine/blobs/{digest}"));
    assert_error(&send(reg.client.get(&url)).await, 404, "BLOB_UNKNOWN");
    assert_eq!(send(reg.client.head(&url)).await.status, 404);
    let theirs = reg.url(&format!("/v2/pull/theirs/blobs/{digest}"));
    assert_eq!(send(reg.client.get(&theirs)).await.status, 200);
}

#[tokio::test]
async fn unknown_manifest_is_404_manifest_unknown() {
    let reg = Registry::start().await;
    reg.push_image("pull/nomanifest", "v1", &[10]).await;
    let digest = sha256_digest(b"no such manifest");
    for reference in ["v2", digest.as_str()] {
        let url = reg.url(&format!("/v2/pull/nomanifest/manifests/{reference}"));
        assert_error(
            &send(reg.client.get(&url).header("Accept", OCI_MANIFEST)).await,
            404,
            "MANIFEST_UNKNOWN",
        );
        let head = send(reg.client.head(&url)).await;
        assert_eq!(head.status, 404, "HEAD {reference}");
        assert!(head.body.is_empty());
    }
}

#[tokio::test]
async fn manifest_of_unknown_repository_is_404() {
    let reg = Registry::start().await;
    let reply = send(reg.client.get(reg.url("/v2/no/such/repo/manifests/latest"))).await;
    assert_error_in(&reply, &[404], &["NAME_UNKNOWN", "MANIFEST_UNKNOWN"]);
    let head = send(
        reg.client
            .head(reg.url("/v2/no/such/repo/manifests/latest")),
    )
    .await;
    assert_eq!(head.status, 404);
}

#[tokio::test]
async fn deeply_nested_repository_names_pull() {
    let mut reg = Registry::start().await;
    let repo = "a/b/c/d/e.f/g_h/i--j";
    let image = reg.push_image(repo, "v1", &[100, 200]).await;
    assert_intact(&mut reg, repo, "v1", &image).await;
}

#[tokio::test]
async fn longest_valid_repository_name_pulls() {
    let mut reg = Registry::start().await;
    let mut repo = "x".repeat(100);
    repo.push('/');
    repo.push_str(&"y".repeat(154));
    assert_eq!(repo.len(), 255);
    let image = reg.push_image(&repo, "v1", &[10]).await;
    assert_intact(&mut reg, &repo, "v1", &image).await;
}

#[tokio::test]
async fn pushed_content_survives_a_restart() {
    let reg = Registry::start().await;
    let image = reg.push_image("pull/durable", "v1", &[5000, 80_000]).await;
    let other = reg.push_image("pull/durable", "v2", &[300]).await;
    let mut reg = reg.restart().await;
    assert_intact(&mut reg, "pull/durable", "v1", &image).await;
    assert_intact(&mut reg, "pull/durable", "v2", &other).await;
    let tags = send(reg.client.get(reg.url("/v2/pull/durable/tags/list"))).await;
    assert_eq!(tags.status, 200);
    assert_eq!(tags.json()["tags"], serde_json::json!(["v1", "v2"]));
}

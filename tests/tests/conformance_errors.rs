//! Error responses (spec "Error Codes" and the name, tag and digest grammars): the
//! `{"errors":[…]}` body, NAME_INVALID, TAG_INVALID, DIGEST_INVALID, unknown routes (404) and
//! wrong methods (405).

use registry_tests::*;

const INVALID_NAMES: &[&str] = &[
    "Upper",
    "a..b",
    "-lead",
    "trail-",
    "trail_",
    "a___b",
    "a_.b",
    "a/.hidden",
    "a//b",
    "a%2Fb",
    "a%2fb",
    "sp%20ace",
];

fn long_name() -> String {
    format!("{}/{}", "a".repeat(128), "b".repeat(127))
}

#[tokio::test]
async fn unknown_routes_are_404_with_an_error_body() {
    let reg = Registry::start().await;
    reg.push_image("err/routes", "v1", &[10]).await;
    for path in [
        "/v2/err/routes/nothing",
        "/v2/err/routes/blobs",
        "/v2/err/routes/manifests",
        "/v2/_nope",
        "/v2/err/routes/tags/nope",
    ] {
        let reply = send(reg.client.get(reg.url(path))).await;
        assert_eq!(reply.status, 404, "{path}: {}", reply.text());
        reply.error_codes();
    }
}

#[tokio::test]
async fn wrong_methods_are_405_with_an_error_body() {
    let reg = Registry::start().await;
    let image = reg.push_image("err/methods", "v1", &[10]).await;
    let blob = format!("/v2/err/methods/blobs/{}", image.layers[0].0);
    let cases = [
        (reqwest::Method::PUT, "/v2/".to_owned()),
        (
            reqwest::Method::DELETE,
            "/v2/err/methods/tags/list".to_owned(),
        ),
        (
            reqwest::Method::POST,
            "/v2/err/methods/manifests/v1".to_owned(),
        ),
        (reqwest::Method::PATCH, blob.clone()),
        (reqwest::Method::PUT, blob),
        (reqwest::Method::POST, "/v2/_catalog".to_owned()),
        (
            reqwest::Method::DELETE,
            format!("/v2/err/methods/referrers/{}", image.digest),
        ),
    ];
    for (method, path) in cases {
        let reply = send(reg.client.request(method.clone(), reg.url(&path))).await;
        assert_eq!(reply.status, 405, "{method} {path}: {}", reply.text());
        reply.error_codes();
    }
    let mut reg = reg;
    assert_intact(&mut reg, "err/methods", "v1", &image).await;
}

#[tokio::test]
async fn invalid_repository_names_are_400_name_invalid() {
    let reg = Registry::start().await;
    let digest = sha256_digest(b"x");
    let long = long_name();
    assert_eq!(long.len(), 256);
    let mut names: Vec<&str> = INVALID_NAMES.to_vec();
    names.push(&long);
    for name in names {
        let requests = [
            reg.client
                .get(reg.url(&format!("/v2/{name}/manifests/latest"))),
            reg.client.get(reg.url(&format!("/v2/{name}/tags/list"))),
            reg.client
                .get(reg.url(&format!("/v2/{name}/blobs/{digest}"))),
            reg.client
                .post(reg.url(&format!("/v2/{name}/blobs/uploads/"))),
            reg.client
                .put(reg.url(&format!("/v2/{name}/manifests/latest")))
                .header("Content-Type", OCI_MANIFEST)
                .body("{}"),
            reg.client
                .get(reg.url(&format!("/v2/{name}/referrers/{digest}"))),
        ];
        for request in requests {
            let reply = send(request).await;
            assert_error(&reply, 400, "NAME_INVALID");
        }
    }
}

#[tokio::test]
async fn leading_slash_in_the_name_is_400_name_invalid() {
    let reg = Registry::start().await;
    let reply = send(reg.client.get(reg.url("/v2//leading/manifests/latest"))).await;
    assert_error(&reply, 400, "NAME_INVALID");
    let reply = send(reg.client.post(reg.url("/v2//leading/blobs/uploads/"))).await;
    assert_error(&reply, 400, "NAME_INVALID");
}

#[tokio::test]
async fn names_at_the_edges_of_the_grammar_are_accepted() {
    let reg = Registry::start().await;
    for name in [
        "a",
        "0",
        "a.b",
        "a_b",
        "a__b",
        "a---b",
        "a/b-c/d.e/f__g",
        "9/8/7",
    ] {
        let reply = send(
            reg.client
                .post(reg.url(&format!("/v2/{name}/blobs/uploads/"))),
        )
        .await;
        assert_eq!(reply.status, 202, "{name}: {}", reply.text());
    }
}

#[tokio::test]
async fn invalid_tags_on_manifest_put_are_400_tag_invalid() {
    let reg = Registry::start().await;
    let image = reg.push_image("err/tags", "v1", &[10]).await;
    let too_long = "t".repeat(129);
    for tag in [
        ".lead",
        "-lead",
        too_long.as_str(),
        "bad+plus",
        "bang!",
        "sp%20ace",
        "t%C3%A9",
    ] {
        let reply = send(
            reg.client
                .put(reg.url(&format!("/v2/err/tags/manifests/{tag}")))
                .header("Content-Type", OCI_MANIFEST)
                .body(image.manifest.clone()),
        )
        .await;
        assert_error(&reply, 400, "TAG_INVALID");
    }
    let longest = "T".repeat(128);
    reg.push_manifest("err/tags", &longest, OCI_MANIFEST, &image.manifest)
        .await;
    reg.push_manifest("err/tags", "_x.Y-9", OCI_MANIFEST, &image.manifest)
        .await;
    let tags = send(reg.client.get(reg.url("/v2/err/tags/tags/list")))
        .await
        .json();
    assert_eq!(tags["tags"].as_array().expect("tags").len(), 3, "{tags}");
}

/// The conformance suite's `.INVALID_MANIFEST_NAME`: a reference that cannot name a manifest
/// names none, so reads answer `404 MANIFEST_UNKNOWN`; a `PUT` (pinned above) or a `DELETE`,
/// which would change the repository, is the client's mistake: `400 TAG_INVALID` or
/// `DIGEST_INVALID`, as a blob `DELETE` of a malformed digest is.
#[tokio::test]
async fn reads_of_an_invalid_reference_are_404_and_deletes_400() {
    let reg = Registry::start().await;
    reg.push_image("err/ref", "v1", &[10]).await;
    let too_long = "t".repeat(129);
    for reference in [
        ".INVALID_MANIFEST_NAME",
        ".lead",
        too_long.as_str(),
        "bang!",
        "sha256:abc",
        "sha256:",
    ] {
        let url = reg.url(&format!("/v2/err/ref/manifests/{reference}"));
        assert_error(&send(reg.client.get(&url)).await, 404, "MANIFEST_UNKNOWN");
        let head = send(reg.client.head(&url)).await;
        assert_eq!(head.status, 404, "HEAD {reference}");
        assert!(head.body.is_empty(), "HEAD {reference} has a body");
        let code = if reference.contains(':') {
            "DIGEST_INVALID"
        } else {
            "TAG_INVALID"
        };
        assert_error(&send(reg.client.delete(&url)).await, 400, code);
    }
}

fn malformed_digests() -> Vec<String> {
    vec![
        "sha256:abc".to_owned(),
        format!("sha256:{}", "g".repeat(64)),
        format!("sha256:{}", "A".repeat(64)),
        format!("sha256:{}", "a".repeat(63)),
        format!("sha256:{}", "a".repeat(65)),
        format!("sha512:{}", "a".repeat(64)),
        "sha256:".to_owned(),
        ":abc".to_owned(),
        "sha256".to_owned(),
        "nocolon".to_owned(),
    ]
}

#[tokio::test]
async fn malformed_digests_in_blob_urls_are_400_digest_invalid() {
    let reg = Registry::start().await;
    reg.push_image("err/digest", "v1", &[10]).await;
    for digest in malformed_digests() {
        let url = reg.url(&format!("/v2/err/digest/blobs/{digest}"));
        assert_error(&send(reg.client.get(&url)).await, 400, "DIGEST_INVALID");
        assert_error(&send(reg.client.delete(&url)).await, 400, "DIGEST_INVALID");
        assert_eq!(
            send(reg.client.head(&url)).await.status,
            400,
            "HEAD {digest}"
        );
    }
}

#[tokio::test]
async fn unsupported_algorithm_is_400_or_unknown() {
    let reg = Registry::start().await;
    reg.push_image("err/algo", "v1", &[10]).await;
    let url = reg.url("/v2/err/algo/blobs/md5:d41d8cd98f00b204e9800998ecf8427e");
    let reply = send(reg.client.get(&url)).await;
    assert_error_in(&reply, &[400, 404], &["DIGEST_INVALID", "BLOB_UNKNOWN"]);
    let reply = send(
        reg.client
            .post(
                reg.url("/v2/err/algo/blobs/uploads/?digest=md5:d41d8cd98f00b204e9800998ecf8427e"),
            )
            .body(Vec::new()),
    )
    .await;
    assert_error(&reply, 400, "DIGEST_INVALID");
}

#[tokio::test]
async fn malformed_digests_in_queries_are_400_digest_invalid() {
    let reg = Registry::start().await;
    reg.push_image("err/query", "v1", &[10]).await;
    for digest in malformed_digests() {
        let reply = send(
            reg.client
                .post(reg.url(&format!("/v2/err/query/blobs/uploads/?digest={digest}")))
                .body(b"abc".to_vec()),
        )
        .await;
        assert_error(&reply, 400, "DIGEST_INVALID");
        let location = start_upload(&reg, "err/query").await;
        let reply = finish_upload(&reg, &location, &digest, b"abc").await;
        assert_error(&reply, 400, "DIGEST_INVALID");
        let reply = send(reg.client.post(reg.url(&format!(
            "/v2/err/query/blobs/uploads/?mount={digest}&from=err/query"
        ))))
        .await;
        if reply.status != 202 {
            assert_error(&reply, 400, "DIGEST_INVALID");
        }
        let reply = send(
            reg.client
                .get(reg.url(&format!("/v2/err/query/referrers/{digest}"))),
        )
        .await;
        assert_error(&reply, 400, "DIGEST_INVALID");
    }
}

#[tokio::test]
async fn malformed_digest_as_manifest_reference() {
    let reg = Registry::start().await;
    let image = reg.push_image("err/mdigest", "v1", &[10]).await;
    for digest in ["sha256:abc", "sha256:", "sha512:0123"] {
        let url = reg.url(&format!("/v2/err/mdigest/manifests/{digest}"));
        let reply = send(
            reg.client
                .put(&url)
                .header("Content-Type", OCI_MANIFEST)
                .body(image.manifest.clone()),
        )
        .await;
        assert_error_in(&reply, &[400], &["DIGEST_INVALID", "TAG_INVALID"]);
        assert_error(&send(reg.client.get(&url)).await, 404, "MANIFEST_UNKNOWN");
        assert_error(&send(reg.client.delete(&url)).await, 400, "DIGEST_INVALID");
    }
}

#[tokio::test]
async fn unknown_upload_sessions_are_404_blob_upload_unknown() {
    let reg = Registry::start().await;
    reg.push_image("err/uploads", "v1", &[10]).await;
    let url = reg.url("/v2/err/uploads/blobs/uploads/6f1c1b1e-3b7a-4f51-9d2c-111111111111");
    let digest = sha256_digest(b"abc");
    assert_error(
        &send(reg.client.get(&url)).await,
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    assert_error(
        &send(reg.client.patch(&url).body("abc")).await,
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    assert_error(
        &send(
            reg.client
                .put(with_query(&url, &format!("digest={digest}")))
                .body("abc"),
        )
        .await,
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    assert_error(
        &send(reg.client.delete(&url)).await,
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    for id in ["not-a-uuid", "0", "x".repeat(300).as_str()] {
        let url = reg.url(&format!("/v2/err/uploads/blobs/uploads/{id}"));
        let reply = send(reg.client.get(&url)).await;
        assert_error_in(
            &reply,
            &[400, 404],
            &["BLOB_UPLOAD_UNKNOWN", "BLOB_UPLOAD_INVALID"],
        );
    }
}

#[tokio::test]
async fn blob_of_an_unknown_repository_is_404() {
    let reg = Registry::start().await;
    let reply = send(
        reg.client
            .get(reg.url(&format!("/v2/err/ghost/blobs/{}", sha256_digest(b"g")))),
    )
    .await;
    assert_error_in(&reply, &[404], &["BLOB_UNKNOWN", "NAME_UNKNOWN"]);
}

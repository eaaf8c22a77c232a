//! Bad and hostile content: malformed names, digests, descriptors, tags, pagination,
//! Content-Range values and JSON, oversized or mistyped manifests, and finished or contested
//! upload sessions. Every attack gets a clean 4xx with the spec error body, never a 500, and
//! never damages stored content: each test pushes a victim image first and checks afterwards
//! that it still pulls byte-identical and that the process still runs.

use registry_tests::*;
use serde_json::json;

const REPO: &str = "victim/app";
const TAG: &str = "stable";

async fn victim(env: &[(&str, &str)]) -> (Registry, PushedImage) {
    let reg = Registry::start_with(env).await;
    let image = reg.push_image(REPO, TAG, &[2000, 150_000]).await;
    (reg, image)
}

async fn put_victim_manifest(reg: &Registry, content_type: &str, body: Vec<u8>) -> Reply {
    send(
        reg.client
            .put(reg.url(&format!("/v2/{REPO}/manifests/{TAG}")))
            .header("Content-Type", content_type)
            .body(body),
    )
    .await
}

#[tokio::test]
async fn hostile_repository_names_are_rejected_without_touching_the_disk() {
    let (mut reg, image) = victim(&[]).await;
    let long = "a/".repeat(200);
    let digest = sha256_digest(b"x");
    let targets = [
        ("GET", "/v2/../../../etc/passwd/manifests/latest".to_owned()),
        ("GET", "/v2/victim/../../../etc/manifests/latest".to_owned()),
        ("POST", "/v2/victim/../../escape/blobs/uploads/".to_owned()),
        (
            "POST",
            "/v2/victim/%2e%2e/%2e%2e/escape/blobs/uploads/".to_owned(),
        ),
        ("GET", "/v2/victim%2Fapp/manifests/stable".to_owned()),
        ("GET", "/v2/victim%2fapp/tags/list".to_owned()),
        ("GET", "/v2/victim/app%00/manifests/stable".to_owned()),
        ("GET", "/v2/victim/./app/manifests/stable".to_owned()),
        ("GET", format!("/v2/{long}manifests/stable")),
        ("POST", format!("/v2/{long}blobs/uploads/")),
        ("GET", format!("/v2/victim/app/../app/blobs/{digest}")),
        ("GET", format!("/v2/VICTIM/APP/blobs/{digest}")),
    ];
    for (method, target) in targets {
        let reply = raw_exchange(&reg, &raw_request(&reg, method, &target, &[], Some(b""))).await;
        let what = format!("{method} {target}");
        assert_raw_client_error(&reply, &what);
        assert!(
            reply.status == 400 || reply.status == 404,
            "{what}: {}",
            reply.status
        );
    }
    let root = reg.data_dir().parent().expect("temp root").to_owned();
    let mut entries: Vec<String> = std::fs::read_dir(&root)
        .expect("read temp root")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    entries.retain(|e| !(e.starts_with("registry-") && e.ends_with(".log")));
    entries.sort();
    assert_eq!(
        entries,
        ["data"],
        "files appeared beside the data directory"
    );
    assert_intact(&mut reg, REPO, TAG, &image).await;
}

#[tokio::test]
async fn malformed_digests_in_urls_and_queries_are_400() {
    let (mut reg, image) = victim(&[]).await;
    let location = start_upload(&reg, REPO).await;
    let digests = [
        "sha256:..%2F..%2F..%2Fetc%2Fpasswd".to_owned(),
        "sha256:%00".to_owned(),
        format!("sha256:{}", "a".repeat(3000)),
        format!("sha256:{}", "a".repeat(63) + "%C3%A9"),
        format!("{}:{}", "x".repeat(300), "a".repeat(64)),
        "sha256:sha256:sha256".to_owned(),
    ];
    for d in &digests {
        let urls = [
            reg.client.get(reg.url(&format!("/v2/{REPO}/blobs/{d}"))),
            reg.client.delete(reg.url(&format!("/v2/{REPO}/blobs/{d}"))),
            reg.client
                .get(reg.url(&format!("/v2/{REPO}/referrers/{d}"))),
            reg.client
                .post(reg.url(&format!("/v2/{REPO}/blobs/uploads/?digest={d}")))
                .body("abc"),
            reg.client
                .put(with_query(&location, &format!("digest={d}")))
                .body("abc"),
            reg.client
                .delete(reg.url(&format!("/v2/{REPO}/manifests/{d}"))),
        ];
        for request in urls {
            let reply = send(request).await;
            assert_client_error(&reply);
            assert_eq!(reply.status, 400, "{d}: {}", reply.text());
        }
    }
    // A refused digest leaves the session open (at offset 0).
    assert_eq!(send(reg.client.get(&location)).await.status, 204);
    assert_intact(&mut reg, REPO, TAG, &image).await;
}

#[tokio::test]
async fn malformed_descriptors_and_impossible_sizes_are_rejected() {
    let (mut reg, image) = victim(&[]).await;
    let (config, config_bytes) = &image.config;
    let (layer, layer_bytes) = &image.layers[0];
    let descriptor = |digest: serde_json::Value, size: serde_json::Value| {
        json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config, "size": config_bytes.len()},
            "layers": [{"mediaType": OCI_LAYER, "digest": digest, "size": size}]})
    };
    let cases = [
        (
            "digest traversal",
            descriptor(json!("sha256:../../../etc/passwd"), json!(10)),
        ),
        ("short digest", descriptor(json!("sha256:abc"), json!(10))),
        ("digest not a string", descriptor(json!(12), json!(10))),
        (
            "no digest",
            json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "size": 5}, "layers": []}),
        ),
        ("negative size", descriptor(json!(layer), json!(-1))),
        ("fractional size", descriptor(json!(layer), json!(1.5))),
        ("size as string", descriptor(json!(layer), json!("2000"))),
        ("size beyond u64", descriptor(json!(layer), json!(1e30))),
        (
            "size mismatch",
            descriptor(json!(layer), json!(layer_bytes.len() + 1)),
        ),
        (
            "zero size for a real blob",
            descriptor(json!(layer), json!(0)),
        ),
    ];
    for (what, body) in cases {
        let reply = put_victim_manifest(&reg, OCI_MANIFEST, body.to_string().into_bytes()).await;
        assert_eq!(reply.status, 400, "{what}: {}", reply.text());
        let codes = reply.error_codes();
        assert!(
            [
                "MANIFEST_INVALID",
                "DIGEST_INVALID",
                "SIZE_INVALID",
                "MANIFEST_BLOB_UNKNOWN"
            ]
            .contains(&codes[0].as_str()),
            "{what}: {codes:?}"
        );
    }
    assert_intact(&mut reg, REPO, TAG, &image).await;
}

#[tokio::test]
async fn invalid_tags_and_pagination_parameters_are_400() {
    let (mut reg, image) = victim(&[]).await;
    let long_tag = "t".repeat(3000);
    for tag in [
        "..%2F..%2Fstable",
        "%00",
        long_tag.as_str(),
        "stable%0D%0AX-Injected:%201",
        "-stable",
    ] {
        let reply = send(
            reg.client
                .put(reg.url(&format!("/v2/{REPO}/manifests/{tag}")))
                .header("Content-Type", OCI_MANIFEST)
                .body(image.manifest.clone()),
        )
        .await;
        assert_error_in(&reply, &[400], &["TAG_INVALID", "DIGEST_INVALID"]);
        assert!(reply.header("x-injected").is_none());
    }
    for query in ["n=-1", "n=abc", "n=%00", "n=1e3", "n=-0x1", "n=1;2"] {
        for path in [
            format!("/v2/{REPO}/tags/list?{query}"),
            format!("/v2/_catalog?{query}"),
        ] {
            let reply = send(reg.client.get(reg.url(&path))).await;
            assert_error(&reply, 400, "PAGINATION_NUMBER_INVALID");
        }
    }
    let long_last = format!("last={}", "z".repeat(3000));
    let huge_n = "n=99999999999999999999999999";
    for query in [
        "last=../../x",
        "last=%00",
        long_last.as_str(),
        "n=1&n=2",
        "n=",
        "last=",
        huge_n,
    ] {
        let reply = send(
            reg.client
                .get(reg.url(&format!("/v2/{REPO}/tags/list?{query}"))),
        )
        .await;
        assert!(
            reply.status == 200 || reply.status == 400,
            "{query}: {} {}",
            reply.status,
            reply.text()
        );
        if reply.status == 400 {
            assert_client_error(&reply);
        }
    }
    let tags = send(reg.client.get(reg.url(&format!("/v2/{REPO}/tags/list"))))
        .await
        .json();
    assert_eq!(tags["tags"], json!([TAG]));
    assert_intact(&mut reg, REPO, TAG, &image).await;
}

#[tokio::test]
async fn garbage_and_overlapping_content_ranges_leave_the_session_alone() {
    let (mut reg, image) = victim(&[]).await;
    let bytes = pseudo_random_bytes(3000, 99);
    let location = start_upload(&reg, REPO).await;
    assert_eq!(
        patch_chunk(&reg, &location, 0, &bytes[..1000]).await.status,
        202
    );
    let chunk = &bytes[1000..2000];
    for range in [
        "garbage",
        "1000",
        "1000-",
        "-999",
        "1999-1000",
        "1000-99999999999999999999999",
        "0-999",
        "500-1499",
        "1000-1999, 2000-2999",
        "bytes 1000-1999/3000x",
        "1000-1999-2999",
        " - ",
        "0x3e8-0x7cf",
    ] {
        let reply = send(
            reg.client
                .patch(&location)
                .header("Content-Range", range)
                .body(chunk.to_vec()),
        )
        .await;
        assert!(
            reply.status == 400 || reply.status == 416,
            "Content-Range {range:?}: {} {}",
            reply.status,
            reply.text()
        );
        if reply.status == 400 {
            assert_client_error(&reply);
        }
        assert_eq!(
            upload_progress(&reg, &location).await,
            1000,
            "after {range:?}"
        );
    }
    resume_and_finish(&reg, REPO, &location, &bytes, (1000, 1000)).await;
    assert_intact(&mut reg, REPO, TAG, &image).await;
}

#[tokio::test]
async fn a_finished_session_cannot_be_written_again() {
    let (mut reg, image) = victim(&[]).await;
    let location = start_upload(&reg, REPO).await;
    let first = b"the real content".to_vec();
    let digest = sha256_digest(&first);
    assert_eq!(
        finish_upload(&reg, &location, &digest, &first).await.status,
        201
    );
    let evil = b"replacement content".to_vec();
    let evil_digest = sha256_digest(&evil);
    assert_error(
        &finish_upload(&reg, &location, &evil_digest, &evil).await,
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    assert_error(
        &finish_upload(&reg, &location, &digest, &evil).await,
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    assert_error(
        &patch_chunk(&reg, &location, 16, &evil).await,
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    let pulled = send(
        reg.client
            .get(reg.url(&format!("/v2/{REPO}/blobs/{digest}"))),
    )
    .await;
    assert_eq!(pulled.body, first);
    let evil_head = send(
        reg.client
            .head(reg.url(&format!("/v2/{REPO}/blobs/{evil_digest}"))),
    )
    .await;
    assert_eq!(evil_head.status, 404);
    assert_intact(&mut reg, REPO, TAG, &image).await;
}

#[tokio::test]
async fn invalid_and_deeply_nested_json_is_400_manifest_invalid() {
    let (mut reg, image) = victim(&[]).await;
    let depth = 100_000;
    let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
    let manifest = String::from_utf8(image.manifest.clone()).expect("utf-8 manifest");
    let nested_inside =
        manifest.replacen('{', &format!("{{\"annotations\":{{\"x\":{arrays}}},"), 1);
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(&image.manifest);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("nested arrays", arrays.clone().into_bytes()),
        ("nested objects", objects.into_bytes()),
        ("nested inside a manifest", nested_inside.into_bytes()),
        ("unclosed arrays", "[".repeat(depth).into_bytes()),
        (
            "invalid UTF-8",
            b"{\"schemaVersion\":2,\"mediaType\":\"\xff\xfe\"}".to_vec(),
        ),
        ("empty body", Vec::new()),
        ("null", b"null".to_vec()),
        (
            "huge number",
            format!("{{\"schemaVersion\":1{}}}", "0".repeat(100_000)).into_bytes(),
        ),
        ("byte order mark", bom),
        (
            "trailing garbage",
            [image.manifest.as_slice(), b"}}}".as_slice()].concat(),
        ),
        ("NUL bytes", vec![0; 4096]),
    ];
    for (what, body) in cases {
        let reply = put_victim_manifest(&reg, OCI_MANIFEST, body).await;
        assert_eq!(reply.status, 400, "{what}: {}", reply.text());
        assert_eq!(reply.error_codes()[0], "MANIFEST_INVALID", "{what}");
    }
    assert_intact(&mut reg, REPO, TAG, &image).await;
}

#[tokio::test]
async fn oversized_manifests_are_413_however_they_arrive() {
    let (mut reg, image) = victim(&[]).await;
    // Raw requests: the server may answer 413 before reading the body, which reqwest reports
    // as a broken pipe instead of the answer.
    let target = format!("/v2/{REPO}/manifests/{TAG}");
    let big = vec![b' '; 5 * 1024 * 1024];
    let with_length = raw_request(
        &reg,
        "PUT",
        &target,
        &[("Content-Type", OCI_MANIFEST)],
        Some(&big),
    );
    let chunked_headers = [
        ("Content-Type", OCI_MANIFEST),
        ("Transfer-Encoding", "chunked"),
    ];
    let mut chunked = raw_request(&reg, "PUT", &target, &chunked_headers, None);
    for part in big.chunks(65_536) {
        chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        chunked.extend_from_slice(part);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    // A claim of 10 GiB must be refused from the header alone.
    let claim_headers = [
        ("Content-Type", OCI_MANIFEST),
        ("Content-Length", "10737418240"),
    ];
    let claim = raw_request(&reg, "PUT", &target, &claim_headers, None);
    for (what, request) in [
        ("Content-Length", with_length),
        ("chunked", chunked),
        ("10 GiB claim", claim),
    ] {
        let reply = raw_exchange(&reg, &request).await;
        assert_eq!(reply.status, 413, "{what}: {}", reply.head);
        assert_eq!(reply.error_codes()[0], "SIZE_INVALID", "{what}");
    }
    assert_intact(&mut reg, REPO, TAG, &image).await;
}

#[tokio::test]
async fn media_types_that_contradict_the_body_are_400() {
    let (mut reg, image) = victim(&[]).await;
    for content_type in [
        OCI_INDEX,
        DOCKER_MANIFEST,
        DOCKER_LIST,
        "text/plain",
        "application/json",
        "x",
    ] {
        let reply = put_victim_manifest(&reg, content_type, image.manifest.clone()).await;
        assert_eq!(reply.status, 400, "Content-Type {content_type}");
        assert_error(&reply, 400, "MANIFEST_INVALID");
    }
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).to_string();
    assert_error(
        &put_victim_manifest(&reg, OCI_MANIFEST, index.into_bytes()).await,
        400,
        "MANIFEST_INVALID",
    );
    assert_intact(&mut reg, REPO, TAG, &image).await;
}

#[tokio::test]
async fn racing_patches_on_one_session_keep_exactly_one_chunk() {
    let (mut reg, image) = victim(&[]).await;
    let location = start_upload(&reg, REPO).await;
    let chunks: Vec<Vec<u8>> = (0..8)
        .map(|i| pseudo_random_bytes(50_000, 100 + i))
        .collect();
    let replies =
        futures_util::future::join_all(chunks.iter().map(|c| patch_chunk(&reg, &location, 0, c)))
            .await;
    let winners: Vec<usize> = (0..replies.len())
        .filter(|&i| replies[i].status == 202)
        .collect();
    for reply in &replies {
        assert!(
            reply.status == 202 || (400..500).contains(&reply.status),
            "{} {}",
            reply.status,
            reply.text()
        );
    }
    assert_eq!(
        winners.len(),
        1,
        "statuses {:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let winner = &chunks[winners[0]];
    assert_eq!(settled_progress(&reg, &location).await, 50_000);
    let digest = sha256_digest(winner);
    assert_eq!(
        finish_upload(&reg, &location, &digest, b"").await.status,
        201
    );
    let pulled = send(
        reg.client
            .get(reg.url(&format!("/v2/{REPO}/blobs/{digest}"))),
    )
    .await;
    assert_eq!(&pulled.body, winner);
    assert_intact(&mut reg, REPO, TAG, &image).await;
}

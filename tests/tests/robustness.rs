//! Bad and hostile input: every attack gets a clean 4xx with the spec error body (or a closed
//! connection where HTTP itself is broken), never a 500, and never damages stored content.
//! Each test pushes a victim image first and checks afterwards it still pulls byte-identical
//! and the process still runs.

use std::time::Duration;

use registry_tests::*;
use serde_json::json;
use tokio::io::AsyncWriteExt;

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

/// Raw `PATCH` head for a session, streaming (no Content-Range) with the given length.
fn patch_head(reg: &Registry, location: &str, content_length: &str) -> Vec<u8> {
    let headers = [
        ("Content-Type", "application/octet-stream"),
        ("Content-Length", content_length),
    ];
    raw_request(reg, "PATCH", &path_of(location), &headers, None)
}

/// Resumes a session at whatever offset the server kept, finishes it and checks the blob.
async fn resume_and_finish(
    reg: &Registry,
    repo: &str,
    location: &str,
    bytes: &[u8],
    low: u64,
    high: u64,
) {
    let offset = settled_progress(reg, location).await;
    assert!(
        (low..=high).contains(&offset),
        "session at {offset}, want {low}..={high}"
    );
    let reply = patch_chunk(reg, location, offset, &bytes[offset as usize..]).await;
    assert_eq!(reply.status, 202, "resume at {offset}: {}", reply.text());
    let digest = sha256_digest(bytes);
    let reply = finish_upload(reg, location, &digest, b"").await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let pulled = send(
        reg.client
            .get(reg.url(&format!("/v2/{repo}/blobs/{digest}"))),
    )
    .await;
    assert_eq!(pulled.body, bytes, "resumed blob differs");
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
    entries.sort();
    assert_eq!(
        entries,
        ["data", "registry.log"],
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
        format!("sha256:{}", "a".repeat(10_000)),
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
    let long_tag = "t".repeat(10_000);
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
        assert_error(&reply, 400, "TAG_INVALID");
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
    let long_last = format!("last={}", "z".repeat(10_000));
    let huge_n = "n=99999999999999999999999999";
    for query in [
        "last=../../x",
        "last=%00",
        long_last.as_str(),
        "n=1&n=2",
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
    resume_and_finish(&reg, REPO, &location, &bytes, 1000, 1000).await;
    assert_intact(&mut reg, REPO, TAG, &image).await;
}

#[tokio::test]
async fn a_content_length_that_lies_stores_nothing_false() {
    let (mut reg, image) = victim(&[]).await;
    // PATCH: promises 100 000 bytes, sends 5 000, hangs up. The session keeps a good offset.
    let bytes = pseudo_random_bytes(20_000, 7);
    let location = start_upload(&reg, REPO).await;
    assert_eq!(
        patch_chunk(&reg, &location, 0, &bytes[..1000]).await.status,
        202
    );
    let mut request = patch_head(&reg, &location, "100000");
    request.extend_from_slice(&bytes[1000..6000]);
    send_then_vanish(&reg, &request).await;
    // Monolithic POST and manifest PUT that lie the same way create nothing.
    let blob = pseudo_random_bytes(50_000, 8);
    let digest = sha256_digest(&blob);
    let target = format!("/v2/{REPO}/blobs/uploads/?digest={digest}");
    let mut request = raw_request(&reg, "POST", &target, &[("Content-Length", "50000")], None);
    request.extend_from_slice(&blob[..10_000]);
    send_then_vanish(&reg, &request).await;
    let target = format!("/v2/{REPO}/manifests/{TAG}");
    let headers = [("Content-Type", OCI_MANIFEST), ("Content-Length", "5000")];
    let mut request = raw_request(&reg, "PUT", &target, &headers, None);
    request.extend_from_slice(&image.manifest[..100]);
    send_then_vanish(&reg, &request).await;

    let head = send(
        reg.client
            .head(reg.url(&format!("/v2/{REPO}/blobs/{digest}"))),
    )
    .await;
    assert_eq!(
        head.status, 404,
        "a cut-off monolithic upload created the blob"
    );
    resume_and_finish(&reg, REPO, &location, &bytes, 1000, 6000).await;
    assert_intact(&mut reg, REPO, TAG, &image).await;
    let mut reg = reg.restart().await;
    assert_intact(&mut reg, REPO, TAG, &image).await;
}

#[tokio::test]
async fn a_patch_cut_off_mid_body_is_resumable_or_deletable() {
    let (mut reg, image) = victim(&[]).await;
    let bytes = pseudo_random_bytes(300_000, 11);
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let location = start_upload(&reg, REPO).await;
        assert_eq!(
            patch_chunk(&reg, &location, 0, &bytes[..100_000])
                .await
                .status,
            202
        );
        let headers = [
            ("Content-Type", "application/octet-stream"),
            ("Transfer-Encoding", "chunked"),
        ];
        let mut request = raw_request(&reg, "PATCH", &path_of(&location), &headers, None);
        for part in bytes[100_000..200_000].chunks(16_384) {
            request.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            request.extend_from_slice(part);
            request.extend_from_slice(b"\r\n");
        }
        // No terminating zero-length chunk: the socket closes mid-body.
        send_then_vanish(&reg, &request).await;
        sessions.push(location);
    }
    resume_and_finish(&reg, REPO, &sessions[0], &bytes, 100_000, 200_000).await;
    assert_eq!(send(reg.client.delete(&sessions[1])).await.status, 204);
    assert_error(
        &send(reg.client.get(&sessions[1])).await,
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
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
    let big = vec![b' '; 5 * 1024 * 1024];
    assert_error(
        &put_victim_manifest(&reg, OCI_MANIFEST, big.clone()).await,
        413,
        "SIZE_INVALID",
    );
    let parts: Vec<Result<Vec<u8>, std::io::Error>> =
        big.chunks(65_536).map(|c| Ok(c.to_vec())).collect();
    let streamed = reqwest::Body::wrap_stream(futures_util::stream::iter(parts));
    let reply = send(
        reg.client
            .put(reg.url(&format!("/v2/{REPO}/manifests/{TAG}")))
            .header("Content-Type", OCI_MANIFEST)
            .body(streamed),
    )
    .await;
    assert_error(&reply, 413, "SIZE_INVALID");
    // A claim of 10 GiB is refused from the header alone.
    let target = format!("/v2/{REPO}/manifests/{TAG}");
    let headers = [
        ("Content-Type", OCI_MANIFEST),
        ("Content-Length", "10737418240"),
    ];
    let reply = raw_exchange(&reg, &raw_request(&reg, "PUT", &target, &headers, None)).await;
    assert_eq!(reply.status, 413, "{}", reply.head);
    assert_eq!(reply.error_codes()[0], "SIZE_INVALID");
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

/// Trickles header bytes until the server hangs up (or 20 s pass). Returns whether it hung up
/// and what it answered.
async fn slowloris(port: u16) -> (bool, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let _ = stream
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: slow\r\n")
        .await;
    let pattern = b"X-Slow: trickle\r\n";
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for byte in pattern.iter().cycle() {
        if tokio::time::Instant::now() > deadline {
            return (false, got);
        }
        if stream.write_all(std::slice::from_ref(byte)).await.is_err() {
            return (true, got);
        }
        let (bytes, closed) = read_until_closed(&mut stream, Duration::from_millis(300)).await;
        got.extend(bytes);
        if closed {
            return (true, got);
        }
    }
    (false, got)
}

#[tokio::test]
async fn slowloris_headers_are_cut_off_while_pulls_proceed() {
    let (mut reg, image) = victim(&[("HEADER_READ_TIMEOUT_SECS", "2")]).await;
    let attackers: Vec<_> = (0..30)
        .map(|_| tokio::spawn(slowloris(reg.port())))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::time::timeout(
        Duration::from_secs(10),
        assert_intact(&mut reg, REPO, TAG, &image),
    )
    .await
    .expect("pull during slowloris answered within 10 s");
    for attacker in attackers {
        let (closed, got) = attacker.await.expect("attacker task");
        assert!(closed, "slow client still connected after 20 s");
        assert!(
            got.is_empty() || got.starts_with(b"HTTP/1.1 4"),
            "{}",
            String::from_utf8_lossy(&got)
        );
    }
    assert_intact(&mut reg, REPO, TAG, &image).await;
}

#[tokio::test]
async fn an_idle_upload_body_is_aborted_at_the_last_good_offset() {
    let (mut reg, image) = victim(&[("BODY_IDLE_TIMEOUT_SECS", "2")]).await;
    let bytes = pseudo_random_bytes(10_000, 13);
    let location = start_upload(&reg, REPO).await;
    assert_eq!(
        patch_chunk(&reg, &location, 0, &bytes[..1000]).await.status,
        202
    );
    let mut stream = raw_connect(&reg).await;
    let mut request = patch_head(&reg, &location, "9000");
    request.extend_from_slice(&bytes[1000..4000]);
    stream.write_all(&request).await.expect("write");
    let (got, closed) = read_until_closed(&mut stream, Duration::from_secs(20)).await;
    assert!(closed, "server waited more than 20 s on an idle body");
    let reply = RawReply::parse(&got);
    assert!(
        got.is_empty() || (400..500).contains(&reply.status),
        "{}",
        reply.head
    );
    resume_and_finish(&reg, REPO, &location, &bytes, 1000, 4000).await;
    assert_intact(&mut reg, REPO, TAG, &image).await;
}

#[tokio::test]
async fn hundreds_of_abandoned_uploads_do_not_starve_a_pull() {
    let (mut reg, image) = victim(&[]).await;
    let opened = futures_util::future::join_all((0..300).map(|_| start_upload(&reg, REPO))).await;
    let mut sockets = Vec::new();
    for location in &opened {
        let mut stream = raw_connect(&reg).await;
        let mut request = patch_head(&reg, location, "1048576");
        request.extend_from_slice(&[7; 100]);
        stream
            .write_all(&request)
            .await
            .expect("write half an upload");
        sockets.push(stream);
    }
    tokio::time::timeout(Duration::from_secs(10), async {
        assert_intact(&mut reg, REPO, TAG, &image).await;
        let fresh = reg.push_image("victim/fresh", "v1", &[4096]).await;
        assert_intact(&mut reg, "victim/fresh", "v1", &fresh).await;
    })
    .await
    .expect("pull and push with 300 half-open uploads answered within 10 s");
    drop(sockets);
    for location in opened.iter().step_by(50) {
        let reply = send(reg.client.get(location)).await;
        assert_eq!(
            reply.status,
            204,
            "abandoned session lost: {}",
            reply.text()
        );
    }
    assert_intact(&mut reg, REPO, TAG, &image).await;
}

#[tokio::test]
async fn overlong_urls_and_headers_are_refused() {
    let (mut reg, image) = victim(&[]).await;
    let query = format!("/v2/{REPO}/manifests/{TAG}?x={}", "a".repeat(9000));
    assert_eq!(send(reg.client.get(reg.url(&query))).await.status, 414);
    let path = format!("/v2/{}tags/list", "a/".repeat(4600));
    assert_eq!(send(reg.client.get(reg.url(&path))).await.status, 414);
    let big = "b".repeat(70 * 1024);
    let many: Vec<(String, String)> = (0..2000)
        .map(|i| (format!("X-H{i}"), "v".repeat(30)))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for headers in [vec![("X-Big", big.as_str())], many] {
        let target = format!("/v2/{REPO}/manifests/{TAG}");
        let reply = raw_exchange(&reg, &raw_request(&reg, "GET", &target, &headers, None)).await;
        assert!(reply.status == 431 || reply.status == 0, "{}", reply.head);
    }
    assert_intact(&mut reg, REPO, TAG, &image).await;
}

#[tokio::test]
async fn broken_http_is_answered_with_4xx_or_a_closed_connection() {
    let (mut reg, image) = victim(&[]).await;
    let location = start_upload(&reg, REPO).await;
    let upload = path_of(&location);
    let requests: Vec<Vec<u8>> = vec![
        b"\x00\x01\x02garbage\xff\xfe\r\n\r\n".to_vec(),
        b"GET /v2/ HTTP/9.9\r\n\r\n".to_vec(),
        format!("GET /v2/{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(20_000)).into_bytes(),
        raw_request(&reg, "PATCH", &upload, &[("Content-Length", "-5")], None),
        raw_request(
            &reg,
            "PATCH",
            &upload,
            &[("Content-Length", "5"), ("Content-Length", "9")],
            None,
        ),
        raw_request(&reg, "PATCH", &upload, &[("Content-Length", "abc")], None),
        [
            raw_request(
                &reg,
                "PATCH",
                &upload,
                &[("Content-Length", "3"), ("Transfer-Encoding", "chunked")],
                None,
            ),
            b"zz\r\n".to_vec(),
        ]
        .concat(),
        raw_request(&reg, "BREW", "/v2/", &[], None),
    ];
    for request in requests {
        let reply = raw_exchange(&reg, &request).await;
        assert!(
            reply.status == 0 || (400..500).contains(&reply.status),
            "{:?}",
            reply.head
        );
    }
    let progress = send(reg.client.get(&location)).await;
    assert_eq!(progress.status, 204);
    assert_eq!(
        progress.header("range"),
        Some("0-0"),
        "broken requests wrote into the session"
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

//! Push of blobs (spec "Pushing blobs", end-4a/4b/4c/5/6/11/13/14): monolithic and chunked
//! uploads, session status and cancel, digest checks, sha512, and cross-repository mount.

use futures_util::stream;
use registry_tests::*;

async fn blob_bytes(reg: &Registry, repo: &str, digest: &str) -> Vec<u8> {
    let reply = send(
        reg.client
            .get(reg.url(&format!("/v2/{repo}/blobs/{digest}"))),
    )
    .await;
    assert_eq!(reply.status, 200, "pull {repo}@{digest}: {}", reply.text());
    reply.body
}

#[track_caller]
fn assert_created_blob(reply: &Reply, repo: &str, digest: &str) {
    assert_eq!(reply.status, 201, "{}", reply.text());
    let location = reply.header("location").expect("Location on 201");
    assert!(
        location.ends_with(&format!("/v2/{repo}/blobs/{digest}")),
        "Location {location}"
    );
    assert_eq!(reply.header("docker-content-digest"), Some(digest));
}

#[tokio::test]
async fn post_opens_a_session_with_location_uuid_and_empty_range() {
    let reg = Registry::start().await;
    let reply = send(
        reg.client
            .post(reg.url("/v2/push/session/blobs/uploads/"))
            .header("Content-Length", "0"),
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    let location = reply.header("location").expect("Location");
    assert!(
        location.starts_with("/v2/push/session/blobs/uploads/"),
        "relative Location, got {location}"
    );
    let uuid = reply
        .header("docker-upload-uuid")
        .expect("Docker-Upload-UUID");
    assert!(!uuid.is_empty());
    assert!(
        location.contains(uuid),
        "{location} does not contain {uuid}"
    );
    assert_eq!(reply.header("range"), Some("0-0"));
    let second = start_upload(&reg, "push/session").await;
    assert_ne!(
        absolute(&reg, location),
        second,
        "session ids must be unique"
    );
}

#[tokio::test]
async fn single_post_with_digest_creates_the_blob() {
    let reg = Registry::start().await;
    let bytes = pseudo_random_bytes(50_000, 10);
    let digest = sha256_digest(&bytes);
    let reply = send(
        reg.client
            .post(reg.url(&format!("/v2/push/mono/blobs/uploads/?digest={digest}")))
            .header("Content-Type", "application/octet-stream")
            .body(bytes.clone()),
    )
    .await;
    assert_created_blob(&reply, "push/mono", &digest);
    let location = absolute(&reg, reply.header("location").expect("Location"));
    assert_eq!(send(reg.client.get(location)).await.body, bytes);
}

#[tokio::test]
async fn post_then_put_uploads_monolithically() {
    let reg = Registry::start().await;
    let bytes = pseudo_random_bytes(70_000, 11);
    let digest = sha256_digest(&bytes);
    let location = start_upload(&reg, "push/postput").await;
    let reply = finish_upload(&reg, &location, &digest, &bytes).await;
    assert_created_blob(&reply, "push/postput", &digest);
    assert_eq!(blob_bytes(&reg, "push/postput", &digest).await, bytes);
}

#[tokio::test]
async fn chunks_with_content_range_then_put_without_body() {
    let reg = Registry::start().await;
    let bytes = pseudo_random_bytes(30_000, 12);
    let digest = sha256_digest(&bytes);
    let mut location = start_upload(&reg, "push/chunks").await;
    for (start, chunk) in [(0, &bytes[..10_000]), (10_000, &bytes[10_000..25_000])] {
        let reply = patch_chunk(&reg, &location, start, chunk).await;
        assert_eq!(reply.status, 202, "{}", reply.text());
        let end = start + chunk.len() as u64 - 1;
        assert_eq!(reply.header("range"), Some(format!("0-{end}").as_str()));
        location = absolute(&reg, reply.header("location").expect("Location"));
    }
    let reply = patch_chunk(&reg, &location, 25_000, &bytes[25_000..]).await;
    assert_eq!(reply.status, 202);
    location = absolute(&reg, reply.header("location").expect("Location"));
    let reply = finish_upload(&reg, &location, &digest, b"").await;
    assert_created_blob(&reply, "push/chunks", &digest);
    assert_eq!(blob_bytes(&reg, "push/chunks", &digest).await, bytes);
}

#[tokio::test]
async fn content_range_with_bytes_prefix_is_accepted() {
    let reg = Registry::start().await;
    let bytes = pseudo_random_bytes(4000, 13);
    let digest = sha256_digest(&bytes);
    let location = start_upload(&reg, "push/bytesprefix").await;
    let reply = send(
        reg.client
            .patch(&location)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", "bytes=0-3999")
            .body(bytes.clone()),
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert_eq!(reply.header("range"), Some("0-3999"));
    let reply = finish_upload(&reg, &location, &digest, b"").await;
    assert_created_blob(&reply, "push/bytesprefix", &digest);
}

#[tokio::test]
async fn streamed_patches_without_content_range_append() {
    let reg = Registry::start().await;
    let bytes = pseudo_random_bytes(90_000, 14);
    let digest = sha256_digest(&bytes);
    let mut location = start_upload(&reg, "push/stream").await;
    for (i, chunk) in bytes.chunks(30_000).enumerate() {
        let reply = send(
            reg.client
                .patch(&location)
                .header("Content-Type", "application/octet-stream")
                .body(chunk.to_vec()),
        )
        .await;
        assert_eq!(reply.status, 202, "{}", reply.text());
        let end = (i + 1) * 30_000 - 1;
        assert_eq!(reply.header("range"), Some(format!("0-{end}").as_str()));
        assert!(reply.header("docker-upload-uuid").is_some());
        location = absolute(&reg, reply.header("location").expect("Location"));
    }
    let reply = finish_upload(&reg, &location, &digest, b"").await;
    assert_created_blob(&reply, "push/stream", &digest);
    assert_eq!(blob_bytes(&reg, "push/stream", &digest).await, bytes);
}

#[tokio::test]
async fn chunked_transfer_encoding_patch_is_stored() {
    let reg = Registry::start().await;
    let bytes = pseudo_random_bytes(200_000, 15);
    let digest = sha256_digest(&bytes);
    let location = start_upload(&reg, "push/te").await;
    let parts: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(7_777).map(|c| Ok(c.to_vec())).collect();
    let reply = send(
        reg.client
            .patch(&location)
            .header("Content-Type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(stream::iter(parts))),
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert_eq!(reply.header("range"), Some("0-199999"));
    let reply = finish_upload(&reg, &location, &digest, b"").await;
    assert_created_blob(&reply, "push/te", &digest);
    assert_eq!(blob_bytes(&reg, "push/te", &digest).await, bytes);
}

#[tokio::test]
async fn put_carries_the_last_chunk() {
    let reg = Registry::start().await;
    let bytes = pseudo_random_bytes(20_000, 16);
    let digest = sha256_digest(&bytes);
    let location = start_upload(&reg, "push/lastchunk").await;
    let reply = patch_chunk(&reg, &location, 0, &bytes[..12_000]).await;
    assert_eq!(reply.status, 202);
    let location = absolute(&reg, reply.header("location").expect("Location"));
    let reply = finish_upload(&reg, &location, &digest, &bytes[12_000..]).await;
    assert_created_blob(&reply, "push/lastchunk", &digest);
    assert_eq!(blob_bytes(&reg, "push/lastchunk", &digest).await, bytes);
}

#[tokio::test]
async fn out_of_order_chunk_is_416_with_current_range() {
    let reg = Registry::start().await;
    let bytes = pseudo_random_bytes(3000, 17);
    let digest = sha256_digest(&bytes);
    let location = start_upload(&reg, "push/order").await;
    assert_eq!(
        patch_chunk(&reg, &location, 0, &bytes[..1000]).await.status,
        202
    );
    for start in [0_u64, 500, 1500] {
        let reply = patch_chunk(&reg, &location, start, &bytes[1000..2000]).await;
        assert_eq!(reply.status, 416, "start {start}: {}", reply.text());
        assert_eq!(reply.header("range"), Some("0-999"), "start {start}");
    }
    assert_eq!(upload_progress(&reg, &location).await, 1000);
    assert_eq!(
        patch_chunk(&reg, &location, 1000, &bytes[1000..])
            .await
            .status,
        202
    );
    let reply = finish_upload(&reg, &location, &digest, b"").await;
    assert_created_blob(&reply, "push/order", &digest);
    assert_eq!(blob_bytes(&reg, "push/order", &digest).await, bytes);
}

#[tokio::test]
async fn content_range_disagreeing_with_length_is_400_and_changes_nothing() {
    let reg = Registry::start().await;
    let bytes = pseudo_random_bytes(3000, 18);
    let location = start_upload(&reg, "push/mismatch").await;
    assert_eq!(
        patch_chunk(&reg, &location, 0, &bytes[..1000]).await.status,
        202
    );
    let reply = send(
        reg.client
            .patch(&location)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", "1000-2999")
            .body(bytes[1000..1500].to_vec()),
    )
    .await;
    assert_error(&reply, 400, "BLOB_UPLOAD_INVALID");
    assert_eq!(upload_progress(&reg, &location).await, 1000);
    assert_eq!(
        patch_chunk(&reg, &location, 1000, &bytes[1000..])
            .await
            .status,
        202
    );
    let digest = sha256_digest(&bytes);
    assert_created_blob(
        &finish_upload(&reg, &location, &digest, b"").await,
        "push/mismatch",
        &digest,
    );
}

#[tokio::test]
async fn upload_status_is_204_with_range_location_and_uuid() {
    let reg = Registry::start().await;
    let location = start_upload(&reg, "push/status").await;
    let reply = patch_chunk(&reg, &location, 0, &pseudo_random_bytes(2500, 19)).await;
    assert_eq!(reply.status, 202);
    let reply = send(reg.client.get(&location)).await;
    assert_eq!(reply.status, 204, "{}", reply.text());
    assert!(reply.body.is_empty());
    assert_eq!(reply.header("range"), Some("0-2499"));
    let uuid = reply
        .header("docker-upload-uuid")
        .expect("Docker-Upload-UUID");
    let status_location = reply.header("location").expect("Location");
    assert!(status_location.contains(uuid));
    assert!(location.contains(uuid), "{location} vs {uuid}");
}

#[tokio::test]
async fn cancelled_upload_is_gone() {
    let reg = Registry::start().await;
    let location = start_upload(&reg, "push/cancel").await;
    assert_eq!(
        patch_chunk(&reg, &location, 0, b"some bytes").await.status,
        202
    );
    let reply = send(reg.client.delete(&location)).await;
    assert_eq!(reply.status, 204, "{}", reply.text());
    assert_error(
        &send(reg.client.get(&location)).await,
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    let reply = patch_chunk(&reg, &location, 10, b"more").await;
    assert_error(&reply, 404, "BLOB_UPLOAD_UNKNOWN");
    let reply = finish_upload(&reg, &location, &sha256_digest(b"some bytes"), b"").await;
    assert_error(&reply, 404, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn put_without_digest_is_400_digest_invalid() {
    let reg = Registry::start().await;
    let location = start_upload(&reg, "push/nodigest").await;
    let reply = send(reg.client.put(&location).body(b"abc".to_vec())).await;
    assert_error(&reply, 400, "DIGEST_INVALID");
}

#[tokio::test]
async fn digest_mismatch_keeps_the_session_for_a_correct_put() {
    let reg = Registry::start().await;
    let bytes = pseudo_random_bytes(5000, 20);
    let digest = sha256_digest(&bytes);
    let location = start_upload(&reg, "push/wrong").await;
    assert_eq!(
        patch_chunk(&reg, &location, 0, &bytes[..3000]).await.status,
        202
    );
    let wrong = sha256_digest(b"something else");
    let reply = finish_upload(&reg, &location, &wrong, &bytes[3000..]).await;
    assert_error(&reply, 400, "DIGEST_INVALID");
    let head = send(
        reg.client
            .head(reg.url(&format!("/v2/push/wrong/blobs/{wrong}"))),
    )
    .await;
    assert_eq!(head.status, 404);
    assert_eq!(upload_progress(&reg, &location).await, 3000);
    let reply = finish_upload(&reg, &location, &digest, &bytes[3000..]).await;
    assert_created_blob(&reply, "push/wrong", &digest);
    assert_eq!(blob_bytes(&reg, "push/wrong", &digest).await, bytes);
}

#[tokio::test]
async fn put_on_a_finished_session_is_404() {
    let reg = Registry::start().await;
    let bytes = b"finished once".to_vec();
    let digest = sha256_digest(&bytes);
    let location = start_upload(&reg, "push/finished").await;
    assert_eq!(
        finish_upload(&reg, &location, &digest, &bytes).await.status,
        201
    );
    let reply = finish_upload(&reg, &location, &digest, &bytes).await;
    assert_error(&reply, 404, "BLOB_UPLOAD_UNKNOWN");
    assert_error(
        &send(reg.client.get(&location)).await,
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    assert_eq!(blob_bytes(&reg, "push/finished", &digest).await, bytes);
}

#[tokio::test]
async fn session_is_unknown_through_another_repository() {
    let reg = Registry::start().await;
    let location = start_upload(&reg, "push/owner").await;
    assert_eq!(
        patch_chunk(&reg, &location, 0, b"0123456789").await.status,
        202
    );
    let stolen = location.replace("/v2/push/owner/", "/v2/push/thief/");
    assert_ne!(stolen, location);
    assert_error(
        &send(reg.client.get(&stolen)).await,
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    let reply = patch_chunk(&reg, &stolen, 10, b"abc").await;
    assert_error(&reply, 404, "BLOB_UPLOAD_UNKNOWN");
    let digest = sha256_digest(b"0123456789");
    assert_error(
        &finish_upload(&reg, &stolen, &digest, b"").await,
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    assert_eq!(upload_progress(&reg, &location).await, 10);
    assert_eq!(
        finish_upload(&reg, &location, &digest, b"").await.status,
        201
    );
}

#[tokio::test]
async fn sha512_digests_work_for_monolithic_and_session_uploads() {
    let reg = Registry::start().await;
    let bytes = pseudo_random_bytes(40_000, 21);
    let digest = sha512_digest(&bytes);
    assert_eq!(digest.len(), "sha512:".len() + 128);
    let reply = send(
        reg.client
            .post(reg.url(&format!("/v2/push/sha512/blobs/uploads/?digest={digest}")))
            .body(bytes.clone()),
    )
    .await;
    assert_created_blob(&reply, "push/sha512", &digest);
    assert_eq!(blob_bytes(&reg, "push/sha512", &digest).await, bytes);

    let other = pseudo_random_bytes(25_000, 22);
    let other_digest = sha512_digest(&other);
    let reply = send(
        reg.client
            .post(reg.url("/v2/push/sha512/blobs/uploads/?digest-algorithm=sha512"))
            .header("Content-Length", "0"),
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    let location = absolute(&reg, reply.header("location").expect("Location"));
    assert_eq!(
        patch_chunk(&reg, &location, 0, &other[..10_000])
            .await
            .status,
        202
    );
    let reply = finish_upload(&reg, &location, &other_digest, &other[10_000..]).await;
    assert_created_blob(&reply, "push/sha512", &other_digest);
    assert_eq!(blob_bytes(&reg, "push/sha512", &other_digest).await, other);
}

#[tokio::test]
async fn mount_from_a_repository_holding_the_blob_is_201() {
    let reg = Registry::start().await;
    let bytes = pseudo_random_bytes(8000, 23);
    let digest = reg.push_blob("mount/source", &bytes).await;
    let reply = send(reg.client.post(reg.url(&format!(
        "/v2/mount/target/blobs/uploads/?mount={digest}&from=mount/source"
    ))))
    .await;
    assert_created_blob(&reply, "mount/target", &digest);
    assert_eq!(blob_bytes(&reg, "mount/target", &digest).await, bytes);
    // The mounted link is independent of the source's.
    let source = reg.url(&format!("/v2/mount/source/blobs/{digest}"));
    assert_eq!(send(reg.client.delete(source)).await.status, 202);
    assert_eq!(blob_bytes(&reg, "mount/target", &digest).await, bytes);
}

#[tokio::test]
async fn mount_of_a_blob_the_source_lacks_opens_a_session() {
    let reg = Registry::start().await;
    reg.push_blob("mount/empty-source", b"unrelated").await;
    let bytes = pseudo_random_bytes(3000, 24);
    let digest = reg.push_blob("mount/elsewhere", &bytes).await;
    let reply = send(reg.client.post(reg.url(&format!(
        "/v2/mount/target/blobs/uploads/?mount={digest}&from=mount/empty-source"
    ))))
    .await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    let location = absolute(&reg, reply.header("location").expect("Location"));
    assert!(location.contains("/v2/mount/target/blobs/uploads/"));
    let head = send(
        reg.client
            .head(reg.url(&format!("/v2/mount/target/blobs/{digest}"))),
    )
    .await;
    assert_eq!(head.status, 404, "a refused mount must not link the blob");
    let reply = finish_upload(&reg, &location, &digest, &bytes).await;
    assert_created_blob(&reply, "mount/target", &digest);
}

#[tokio::test]
async fn mount_without_from_links_only_what_the_target_has() {
    let reg = Registry::start().await;
    let bytes = pseudo_random_bytes(2000, 25);
    let digest = reg.push_blob("mount/self", &bytes).await;
    let reply = send(
        reg.client
            .post(reg.url(&format!("/v2/mount/self/blobs/uploads/?mount={digest}"))),
    )
    .await;
    assert_created_blob(&reply, "mount/self", &digest);
    let reply = send(
        reg.client
            .post(reg.url(&format!("/v2/mount/other/blobs/uploads/?mount={digest}"))),
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert!(reply.header("location").is_some());
}

#[tokio::test]
async fn mount_from_an_invalid_name_is_never_a_server_error() {
    let reg = Registry::start().await;
    let digest = reg.push_blob("mount/valid", b"mountable").await;
    for from in ["UPPER", "a..b", "-x", "x-", "a%2Fb", ""] {
        let reply = send(reg.client.post(reg.url(&format!(
            "/v2/mount/dest/blobs/uploads/?mount={digest}&from={from}"
        ))))
        .await;
        assert!(
            reply.status == 202 || (400..500).contains(&reply.status),
            "from={from:?}: {} {}",
            reply.status,
            reply.text()
        );
        if reply.status != 202 {
            assert_client_error(&reply);
        }
    }
}

#[tokio::test]
async fn upload_session_survives_a_restart() {
    let reg = Registry::start().await;
    let bytes = pseudo_random_bytes(60_000, 26);
    let digest = sha256_digest(&bytes);
    let location = start_upload(&reg, "push/durable").await;
    assert_eq!(
        patch_chunk(&reg, &location, 0, &bytes[..40_000])
            .await
            .status,
        202
    );
    let path = location
        .split_once("/v2/")
        .map(|(_, rest)| format!("/v2/{rest}"))
        .expect("upload path");
    let reg = reg.restart().await;
    let location = reg.url(&path);
    assert_eq!(upload_progress(&reg, &location).await, 40_000);
    let reply = finish_upload(&reg, &location, &digest, &bytes[40_000..]).await;
    assert_created_blob(&reply, "push/durable", &digest);
    assert_eq!(blob_bytes(&reg, "push/durable", &digest).await, bytes);
}

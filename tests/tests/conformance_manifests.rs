//! Manifests and content management (spec "Pushing Manifests", "Content Management", end-7,
//! end-9, end-10): manifest kinds, validation on push, tags, and deletion of manifests, tags
//! and blobs.

use registry_tests::*;
use serde_json::json;

const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

async fn put_manifest(
    reg: &Registry,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> Reply {
    send(
        reg.client
            .put(reg.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header("Content-Type", media_type)
            .body(body.to_vec()),
    )
    .await
}

async fn get_manifest(reg: &Registry, repo: &str, reference: &str) -> Reply {
    send(
        reg.client
            .get(reg.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header(
                "Accept",
                format!("{OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST}, {DOCKER_LIST}"),
            ),
    )
    .await
}

/// Pushes a config and one layer; returns their descriptors as (digest, size).
async fn push_parts(reg: &Registry, repo: &str, seed: u64) -> ((String, usize), (String, usize)) {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#).into_bytes();
    let layer = pseudo_random_bytes(1000 + seed as usize, seed);
    let config_digest = reg.push_blob(repo, &config).await;
    let layer_digest = reg.push_blob(repo, &layer).await;
    ((config_digest, config.len()), (layer_digest, layer.len()))
}

#[track_caller]
fn assert_created_manifest(reply: &Reply, repo: &str, body: &[u8]) {
    assert_eq!(reply.status, 201, "{}", reply.text());
    let digest = sha256_digest(body);
    let location = reply.header("location").expect("Location on 201");
    assert!(
        location.ends_with(&format!("/v2/{repo}/manifests/{digest}")),
        "Location {location}"
    );
    assert_eq!(reply.header("docker-content-digest"), Some(digest.as_str()));
}

#[tokio::test]
async fn put_by_tag_answers_201_with_location_and_digest() {
    let reg = Registry::start().await;
    let (config, layer) = push_parts(&reg, "man/tag", 1).await;
    let body = image_manifest_json(&config, &[layer]);
    let reply = put_manifest(&reg, "man/tag", "v1.0", OCI_MANIFEST, body.as_bytes()).await;
    assert_created_manifest(&reply, "man/tag", body.as_bytes());
    let location = absolute(&reg, reply.header("location").expect("Location"));
    let pulled = send(reg.client.get(location).header("Accept", OCI_MANIFEST)).await;
    assert_eq!(pulled.body, body.as_bytes());
    assert_eq!(
        get_manifest(&reg, "man/tag", "v1.0").await.body,
        body.as_bytes()
    );
}

#[tokio::test]
async fn put_by_digest_stores_the_exact_bytes() {
    let reg = Registry::start().await;
    let (config, layer) = push_parts(&reg, "man/digest", 2).await;
    // Unusual but valid formatting must survive byte for byte.
    let body = format!(
        "{{\n  \"schemaVersion\" : 2,\n  \"mediaType\": \"{OCI_MANIFEST}\",\n  \"config\": {{\"mediaType\": \"{OCI_CONFIG}\", \"digest\": \"{}\", \"size\": {}}},\n  \"layers\": [ {{\"mediaType\": \"{OCI_LAYER}\", \"digest\": \"{}\", \"size\": {}}} ]\n}}\n",
        config.0, config.1, layer.0, layer.1
    );
    let digest = sha256_digest(body.as_bytes());
    let reply = put_manifest(&reg, "man/digest", &digest, OCI_MANIFEST, body.as_bytes()).await;
    assert_created_manifest(&reply, "man/digest", body.as_bytes());
    let pulled = get_manifest(&reg, "man/digest", &digest).await;
    assert_eq!(pulled.status, 200);
    assert_eq!(pulled.body, body.as_bytes());
    assert_eq!(pulled.header("content-type"), Some(OCI_MANIFEST));
}

#[tokio::test]
async fn put_by_a_digest_the_body_does_not_have_is_400() {
    let reg = Registry::start().await;
    let (config, layer) = push_parts(&reg, "man/baddigest", 3).await;
    let body = image_manifest_json(&config, &[layer]);
    let claimed = sha256_digest(b"another document");
    let reply = put_manifest(
        &reg,
        "man/baddigest",
        &claimed,
        OCI_MANIFEST,
        body.as_bytes(),
    )
    .await;
    assert_error(&reply, 400, "DIGEST_INVALID");
    for reference in [claimed, sha256_digest(body.as_bytes())] {
        assert_eq!(
            get_manifest(&reg, "man/baddigest", &reference).await.status,
            404
        );
    }
}

#[tokio::test]
async fn oci_index_is_stored_and_served_as_an_index() {
    let reg = Registry::start().await;
    let mut children = Vec::new();
    for (seed, arch) in [(4, "amd64"), (5, "arm64")] {
        let (config, layer) = push_parts(&reg, "man/index", seed).await;
        let body = image_manifest_json(&config, &[layer]);
        let digest = reg
            .push_manifest(
                "man/index",
                &sha256_digest(body.as_bytes()),
                OCI_MANIFEST,
                body.as_bytes(),
            )
            .await;
        children.push(
            json!({"mediaType": OCI_MANIFEST, "digest": digest, "size": body.len(),
            "platform": {"architecture": arch, "os": "linux"}}),
        );
    }
    let index =
        json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}).to_string();
    let reply = put_manifest(&reg, "man/index", "multi", OCI_INDEX, index.as_bytes()).await;
    assert_created_manifest(&reply, "man/index", index.as_bytes());
    let pulled = get_manifest(&reg, "man/index", "multi").await;
    assert_eq!(pulled.status, 200);
    assert_eq!(pulled.header("content-type"), Some(OCI_INDEX));
    assert_eq!(pulled.body, index.as_bytes());
    // A child cannot go while the index lists it: a conflict of state, not of rights
    // (`DENIED` would send the user to check their credentials).
    let child = children[0]["digest"]
        .as_str()
        .expect("child digest")
        .to_owned();
    let url = reg.url(&format!("/v2/man/index/manifests/{child}"));
    assert_error(&send(reg.client.delete(&url)).await, 409, "UNSUPPORTED");
    assert_eq!(send(reg.client.get(&url)).await.status, 200);
    let index_url = reg.url("/v2/man/index/manifests/multi");
    let index_digest = send(reg.client.get(&index_url)).await;
    let index_digest = index_digest
        .header("docker-content-digest")
        .expect("digest")
        .to_owned();
    let index_url = reg.url(&format!("/v2/man/index/manifests/{index_digest}"));
    assert_eq!(send(reg.client.delete(&index_url)).await.status, 202);
    assert_eq!(send(reg.client.delete(&url)).await.status, 202);
}

#[tokio::test]
async fn docker_schema2_and_manifest_list_keep_their_media_types() {
    let reg = Registry::start().await;
    let (config, layer) = push_parts(&reg, "man/docker", 6).await;
    let manifest = json!({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "digest": config.0, "size": config.1},
        "layers": [{"mediaType": DOCKER_LAYER, "digest": layer.0, "size": layer.1}]})
    .to_string();
    let reply = put_manifest(
        &reg,
        "man/docker",
        "single",
        DOCKER_MANIFEST,
        manifest.as_bytes(),
    )
    .await;
    assert_created_manifest(&reply, "man/docker", manifest.as_bytes());
    let list = json!({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
        {"mediaType": DOCKER_MANIFEST, "digest": sha256_digest(manifest.as_bytes()),
         "size": manifest.len(), "platform": {"architecture": "amd64", "os": "linux"}}]})
    .to_string();
    let reply = put_manifest(&reg, "man/docker", "list", DOCKER_LIST, list.as_bytes()).await;
    assert_created_manifest(&reply, "man/docker", list.as_bytes());
    for (tag, media_type, body) in [
        ("single", DOCKER_MANIFEST, &manifest),
        ("list", DOCKER_LIST, &list),
    ] {
        let pulled = get_manifest(&reg, "man/docker", tag).await;
        assert_eq!(pulled.status, 200, "{tag}");
        assert_eq!(pulled.header("content-type"), Some(media_type), "{tag}");
        assert_eq!(pulled.body, body.as_bytes(), "{tag}");
    }
}

#[tokio::test]
async fn artifact_with_empty_config_and_subject_answers_oci_subject() {
    let reg = Registry::start().await;
    let image = reg.push_image("man/artifact", "v1", &[100]).await;
    let empty = reg.push_blob("man/artifact", EMPTY_JSON).await;
    let sbom = reg.push_blob("man/artifact", br#"{"sbom":true}"#).await;
    let artifact = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom.v1",
        "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/vnd.example.sbom.v1+json", "digest": sbom, "size": 13}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": image.digest, "size": image.manifest.len()},
        "annotations": {"org.example.kind": "sbom"}})
    .to_string();
    let digest = sha256_digest(artifact.as_bytes());
    let reply = put_manifest(
        &reg,
        "man/artifact",
        &digest,
        OCI_MANIFEST,
        artifact.as_bytes(),
    )
    .await;
    assert_created_manifest(&reply, "man/artifact", artifact.as_bytes());
    assert_eq!(reply.header("oci-subject"), Some(image.digest.as_str()));
    assert_eq!(
        get_manifest(&reg, "man/artifact", &digest).await.body,
        artifact.as_bytes()
    );
}

#[tokio::test]
async fn subject_that_does_not_exist_yet_is_accepted() {
    let reg = Registry::start().await;
    let empty = reg.push_blob("man/early", EMPTY_JSON).await;
    let subject = sha256_digest(b"pushed later");
    let artifact = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sig.v1",
        "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2},
        "layers": [{"mediaType": OCI_EMPTY, "digest": empty, "size": 2}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1234}})
    .to_string();
    let reply = put_manifest(
        &reg,
        "man/early",
        &sha256_digest(artifact.as_bytes()),
        OCI_MANIFEST,
        artifact.as_bytes(),
    )
    .await;
    assert_created_manifest(&reply, "man/early", artifact.as_bytes());
    assert_eq!(reply.header("oci-subject"), Some(subject.as_str()));
}

#[tokio::test]
async fn manifest_naming_unknown_blobs_is_400_manifest_blob_unknown() {
    let reg = Registry::start().await;
    let (config, layer) = push_parts(&reg, "man/blobs", 7).await;
    let foreign = reg
        .push_blob("man/elsewhere", b"only in another repository")
        .await;
    let missing = (sha256_digest(b"never uploaded"), 14);
    let cases = [
        (
            "missing config",
            image_manifest_json(&missing, std::slice::from_ref(&layer)),
        ),
        (
            "missing layer",
            image_manifest_json(&config, std::slice::from_ref(&missing)),
        ),
        (
            "layer of another repository",
            image_manifest_json(&config, &[(foreign, 26)]),
        ),
    ];
    for (what, body) in cases {
        let reply = put_manifest(&reg, "man/blobs", "broken", OCI_MANIFEST, body.as_bytes()).await;
        assert_eq!(reply.status, 400, "{what}: {}", reply.text());
        assert!(
            reply
                .error_codes()
                .contains(&"MANIFEST_BLOB_UNKNOWN".to_owned()),
            "{what}: {}",
            reply.text()
        );
    }
    assert_eq!(get_manifest(&reg, "man/blobs", "broken").await.status, 404);
}

#[tokio::test]
async fn index_with_an_absent_child_is_400_manifest_blob_unknown() {
    let reg = Registry::start().await;
    reg.push_image("man/orphan", "v1", &[10]).await;
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha256_digest(b"no child"), "size": 8}]})
    .to_string();
    let reply = put_manifest(&reg, "man/orphan", "idx", OCI_INDEX, index.as_bytes()).await;
    assert_error(&reply, 400, "MANIFEST_BLOB_UNKNOWN");
}

#[tokio::test]
async fn malformed_manifests_are_400_manifest_invalid() {
    let reg = Registry::start().await;
    let (config, layer) = push_parts(&reg, "man/invalid", 8).await;
    let cfg = json!({"mediaType": OCI_CONFIG, "digest": config.0, "size": config.1});
    let layers = json!([{"mediaType": OCI_LAYER, "digest": layer.0, "size": layer.1}]);
    let cases = [
        ("not JSON", "this is not json".to_owned()),
        ("truncated", image_manifest_json(&config, std::slice::from_ref(&layer))[..40].to_owned()),
        ("JSON array", "[1,2,3]".to_owned()),
        ("schemaVersion 1", json!({"schemaVersion": 1, "mediaType": OCI_MANIFEST, "config": cfg, "layers": layers}).to_string()),
        ("schemaVersion as string", json!({"schemaVersion": "2", "mediaType": OCI_MANIFEST, "config": cfg, "layers": layers}).to_string()),
        ("no schemaVersion", json!({"mediaType": OCI_MANIFEST, "config": cfg, "layers": layers}).to_string()),
        ("no config", json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": layers}).to_string()),
        ("layers not an array", json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": "x"}).to_string()),
    ];
    for (what, body) in cases {
        let reply = put_manifest(&reg, "man/invalid", "bad", OCI_MANIFEST, body.as_bytes()).await;
        assert_eq!(reply.status, 400, "{what}: {}", reply.text());
        assert_eq!(
            reply.error_codes()[0],
            "MANIFEST_INVALID",
            "{what}: {}",
            reply.text()
        );
    }
    assert_eq!(get_manifest(&reg, "man/invalid", "bad").await.status, 404);
}

#[tokio::test]
async fn media_type_contradicting_content_type_is_400_manifest_invalid() {
    let reg = Registry::start().await;
    let (config, layer) = push_parts(&reg, "man/contra", 9).await;
    let body = image_manifest_json(&config, &[layer]);
    for content_type in [OCI_INDEX, DOCKER_MANIFEST] {
        let reply = put_manifest(&reg, "man/contra", "x", content_type, body.as_bytes()).await;
        assert_error(&reply, 400, "MANIFEST_INVALID");
    }
}

#[tokio::test]
async fn schema1_manifests_are_rejected() {
    let reg = Registry::start().await;
    let schema1 = "application/vnd.docker.distribution.manifest.v1+prettyjws";
    let body =
        json!({"schemaVersion": 1, "name": "man/schema1", "tag": "old", "architecture": "amd64",
        "fsLayers": [], "history": []})
        .to_string();
    let reply = put_manifest(&reg, "man/schema1", "old", schema1, body.as_bytes()).await;
    assert_error(&reply, 400, "MANIFEST_INVALID");
}

#[tokio::test]
async fn manifests_up_to_a_few_megabytes_are_accepted_and_over_4_mib_are_413() {
    let reg = Registry::start().await;
    let (config, layer) = push_parts(&reg, "man/size", 10).await;
    let with_padding = |pad: usize| {
        json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config.0, "size": config.1},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer.0, "size": layer.1}],
            "annotations": {"pad": "p".repeat(pad)}})
        .to_string()
    };
    let big = with_padding(3 * 1024 * 1024);
    let reply = put_manifest(&reg, "man/size", "big", OCI_MANIFEST, big.as_bytes()).await;
    assert_created_manifest(&reply, "man/size", big.as_bytes());
    assert_eq!(
        get_manifest(&reg, "man/size", "big").await.body,
        big.as_bytes()
    );
    let huge = with_padding(4 * 1024 * 1024 + 1);
    // Raw request: the server may answer before reading the whole body, which reqwest reports
    // as a broken pipe instead of the answer.
    let headers = [("Content-Type", OCI_MANIFEST)];
    let request = raw_request(
        &reg,
        "PUT",
        "/v2/man/size/manifests/huge",
        &headers,
        Some(huge.as_bytes()),
    );
    let reply = raw_exchange(&reg, &request).await;
    assert_eq!(reply.status, 413, "{}", reply.head);
    assert_eq!(reply.error_codes()[0], "SIZE_INVALID");
    assert_eq!(get_manifest(&reg, "man/size", "huge").await.status, 404);
}

#[tokio::test]
async fn retagging_moves_the_tag_and_keeps_the_old_manifest() {
    let reg = Registry::start().await;
    let first = reg.push_image("man/retag", "latest", &[10]).await;
    let second = reg.push_image("man/retag", "latest", &[20, 30]).await;
    assert_ne!(first.digest, second.digest);
    assert_eq!(
        get_manifest(&reg, "man/retag", "latest").await.body,
        second.manifest
    );
    assert_eq!(
        get_manifest(&reg, "man/retag", &first.digest).await.body,
        first.manifest
    );
    // The identical manifest pushed again is accepted.
    let again = put_manifest(&reg, "man/retag", "latest", OCI_MANIFEST, &second.manifest).await;
    assert_created_manifest(&again, "man/retag", &second.manifest);
}

#[tokio::test]
async fn delete_by_digest_removes_the_manifest_and_its_tags() {
    let reg = Registry::start().await;
    let image = reg.push_image("man/del", "v1", &[10]).await;
    reg.push_manifest("man/del", "alias", OCI_MANIFEST, &image.manifest)
        .await;
    let keep = reg.push_image("man/del", "keep", &[11]).await;
    let url = reg.url(&format!("/v2/man/del/manifests/{}", image.digest));
    assert_eq!(send(reg.client.delete(&url)).await.status, 202);
    for reference in ["v1", "alias", image.digest.as_str()] {
        assert_error(
            &get_manifest(&reg, "man/del", reference).await,
            404,
            "MANIFEST_UNKNOWN",
        );
    }
    assert_eq!(
        get_manifest(&reg, "man/del", "keep").await.body,
        keep.manifest
    );
    let tags = send(reg.client.get(reg.url("/v2/man/del/tags/list"))).await;
    assert_eq!(tags.json()["tags"], json!(["keep"]));
}

#[tokio::test]
async fn delete_by_tag_removes_only_the_tag() {
    let reg = Registry::start().await;
    let image = reg.push_image("man/deltag", "v1", &[10]).await;
    reg.push_manifest("man/deltag", "v2", OCI_MANIFEST, &image.manifest)
        .await;
    let reply = send(reg.client.delete(reg.url("/v2/man/deltag/manifests/v1"))).await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert_error(
        &get_manifest(&reg, "man/deltag", "v1").await,
        404,
        "MANIFEST_UNKNOWN",
    );
    assert_eq!(
        get_manifest(&reg, "man/deltag", "v2").await.body,
        image.manifest
    );
    assert_eq!(
        get_manifest(&reg, "man/deltag", &image.digest).await.body,
        image.manifest
    );
}

#[tokio::test]
async fn delete_of_an_unknown_manifest_is_404() {
    let reg = Registry::start().await;
    reg.push_image("man/delunknown", "v1", &[10]).await;
    for reference in [sha256_digest(b"nothing"), "nosuchtag".to_owned()] {
        let reply = send(
            reg.client
                .delete(reg.url(&format!("/v2/man/delunknown/manifests/{reference}"))),
        )
        .await;
        assert_error(&reply, 404, "MANIFEST_UNKNOWN");
    }
}

/// The conformance suite's teardown (default order) deletes blobs before their manifests:
/// `202`, and the image stays whole until its manifest goes, then the blob is gone.
#[tokio::test]
async fn blob_delete_while_a_manifest_uses_it_is_accepted_and_takes_effect_with_the_manifest() {
    let reg = Registry::start().await;
    let image = reg.push_image("man/blobdel", "v1", &[500, 700]).await;
    let config = reg.url(&format!("/v2/man/blobdel/blobs/{}", image.config.0));
    let layer = reg.url(&format!("/v2/man/blobdel/blobs/{}", image.layers[0].0));
    let other = reg.url(&format!("/v2/man/blobdel/blobs/{}", image.layers[1].0));
    for url in [&config, &layer] {
        let reply = send(reg.client.delete(url)).await;
        assert_eq!(reply.status, 202, "{}", reply.text());
    }
    // The manifest still pulls, every blob included.
    assert_eq!(send(reg.client.get(&layer)).await.body, image.layers[0].1);
    assert_eq!(send(reg.client.head(&config)).await.status, 200);
    let manifest = reg.url(&format!("/v2/man/blobdel/manifests/{}", image.digest));
    assert_eq!(send(reg.client.get(&manifest)).await.status, 200);
    assert_eq!(send(reg.client.delete(&manifest)).await.status, 202);
    for url in [&config, &layer] {
        assert_error(&send(reg.client.get(url)).await, 404, "BLOB_UNKNOWN");
        assert_eq!(send(reg.client.head(url)).await.status, 404);
        assert_error(&send(reg.client.delete(url)).await, 404, "BLOB_UNKNOWN");
    }
    // A blob nobody asked to delete stays for the collector, and deletes at once now.
    assert_eq!(send(reg.client.head(&other)).await.status, 200);
    assert_eq!(send(reg.client.delete(&other)).await.status, 202);
    assert_error(&send(reg.client.get(&other)).await, 404, "BLOB_UNKNOWN");
}

/// With `OCI_DELETE_MANIFEST_BEFORE_BLOBS`, the suite's order: manifest, then blobs, each
/// gone right after its `202`.
#[tokio::test]
async fn manifest_then_blob_deletes_take_effect_at_once() {
    let reg = Registry::start().await;
    let image = reg.push_image("man/mfirst", "v1", &[300]).await;
    let manifest = reg.url(&format!("/v2/man/mfirst/manifests/{}", image.digest));
    assert_eq!(send(reg.client.delete(&manifest)).await.status, 202);
    assert_error(
        &send(reg.client.get(&manifest)).await,
        404,
        "MANIFEST_UNKNOWN",
    );
    for digest in [&image.config.0, &image.layers[0].0] {
        let url = reg.url(&format!("/v2/man/mfirst/blobs/{digest}"));
        assert_eq!(send(reg.client.delete(&url)).await.status, 202);
        assert_error(&send(reg.client.get(&url)).await, 404, "BLOB_UNKNOWN");
    }
}

/// A blob re-uploaded after its `DELETE` was deferred is wanted again: it survives the
/// manifest.
#[tokio::test]
async fn a_blob_pushed_again_after_a_deferred_delete_stays() {
    let reg = Registry::start().await;
    let image = reg.push_image("man/again", "v1", &[400]).await;
    let (digest, bytes) = &image.layers[0];
    let url = reg.url(&format!("/v2/man/again/blobs/{digest}"));
    assert_eq!(send(reg.client.delete(&url)).await.status, 202);
    assert_eq!(&reg.push_blob("man/again", bytes).await, digest);
    let manifest = reg.url(&format!("/v2/man/again/manifests/{}", image.digest));
    assert_eq!(send(reg.client.delete(&manifest)).await.status, 202);
    assert_eq!(send(reg.client.get(&url)).await.body, *bytes);
}

#[tokio::test]
async fn unreferenced_blob_deletes_and_unknown_blob_is_404() {
    let reg = Registry::start().await;
    let digest = reg.push_blob("man/loose", b"loose blob").await;
    let url = reg.url(&format!("/v2/man/loose/blobs/{digest}"));
    assert_eq!(send(reg.client.delete(&url)).await.status, 202);
    assert_error(&send(reg.client.get(&url)).await, 404, "BLOB_UNKNOWN");
    assert_eq!(send(reg.client.head(&url)).await.status, 404);
    assert_error(&send(reg.client.delete(&url)).await, 404, "BLOB_UNKNOWN");
    // A manifest may no longer name the deleted blob.
    let config = reg.push_blob("man/loose", b"{}").await;
    let body = image_manifest_json(&(config, 2), &[(digest, 10)]);
    let reply = put_manifest(&reg, "man/loose", "v1", OCI_MANIFEST, body.as_bytes()).await;
    assert_error(&reply, 400, "MANIFEST_BLOB_UNKNOWN");
}

#[tokio::test]
async fn blob_delete_in_one_repository_leaves_the_other() {
    let reg = Registry::start().await;
    let bytes = b"shared between two".to_vec();
    let digest = reg.push_blob("man/share-a", &bytes).await;
    reg.push_blob("man/share-b", &bytes).await;
    let a = reg.url(&format!("/v2/man/share-a/blobs/{digest}"));
    assert_eq!(send(reg.client.delete(&a)).await.status, 202);
    assert_eq!(send(reg.client.get(&a)).await.status, 404);
    let b = send(
        reg.client
            .get(reg.url(&format!("/v2/man/share-b/blobs/{digest}"))),
    )
    .await;
    assert_eq!(b.status, 200);
    assert_eq!(b.body, bytes);
}

//! The management API's deletes on the real binary: deleteTag, deleteManifest (its tags go,
//! its blobs stay for garbage collection, 409 while an index lists it) and deleteRepository
//! (every row of the repository, safe to repeat, finished even when the client hangs up or
//! times out). Refused deletes change nothing. Every answer is checked against the OpenAPI
//! document.

use std::time::{Duration, Instant};

use registry_tests::api::{
    Api, repository_id, rows_of, seed_manifests, snapshot, wait_for_fewer_tags,
};
use registry_tests::*;
use serde_json::{Value, json};

fn repo(repository: &str) -> Value {
    json!({"project": "acme", "repository": repository})
}

fn with(mut params: Value, key: &str, value: &str) -> Value {
    params[key] = json!(value);
    params
}

async fn tags(api: &Api<'_>, repository: &str) -> Vec<String> {
    let result = api.call("listTags", repo(repository)).await.ok();
    result["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|t| t["tag"].as_str().expect("tag").to_owned())
        .collect()
}

async fn manifest_status(reg: &Registry, name: &str, reference: &str) -> u16 {
    let accept = format!("{OCI_MANIFEST}, {OCI_INDEX}");
    send(
        reg.client
            .get(reg.url(&format!("/v2/{name}/manifests/{reference}")))
            .header("Accept", accept),
    )
    .await
    .status
}

#[tokio::test]
async fn delete_tag_removes_the_tag_only() {
    let reg = Registry::start().await;
    let api = Api::anonymous(&reg);
    let image = reg.push_image("acme/app", "1.0", &[100]).await;
    reg.push_manifest("acme/app", "latest", OCI_MANIFEST, &image.manifest)
        .await;
    api.call("deleteTag", with(repo("app"), "tag", "latest"))
        .await
        .ok();
    assert_eq!(tags(&api, "app").await, ["1.0"]);
    assert_eq!(manifest_status(&reg, "acme/app", &image.digest).await, 200);

    let before = snapshot(&reg).await;
    let again = api
        .call("deleteTag", with(repo("app"), "tag", "latest"))
        .await;
    again.assert_error(404, "tag not found");
    let unknown = api.call(
        "deleteTag",
        json!({"project": "acme", "repository": "nope", "tag": "1.0"}),
    );
    unknown.await.assert_error(404, "repository not found");
    let bad = api
        .call("deleteTag", with(repo("app"), "tag", ".hidden"))
        .await;
    bad.assert_error(400, "tag");
    assert_eq!(
        snapshot(&reg).await,
        before,
        "refused deletes changed something"
    );
}

#[tokio::test]
async fn delete_manifest_takes_its_tags_and_leaves_its_blobs() {
    let reg = Registry::start().await;
    let api = Api::anonymous(&reg);
    let doomed = reg.push_image("acme/app", "a", &[100, 200]).await;
    reg.push_manifest("acme/app", "b", OCI_MANIFEST, &doomed.manifest)
        .await;
    let kept = reg.push_image("acme/app", "c", &[300]).await;
    api.call(
        "deleteManifest",
        with(repo("app"), "digest", &doomed.digest),
    )
    .await
    .ok();
    assert_eq!(tags(&api, "app").await, ["c"]);
    assert_eq!(manifest_status(&reg, "acme/app", &doomed.digest).await, 404);
    let mut reg = reg;
    assert_intact(&mut reg, "acme/app", "c", &kept).await;
    // The blobs are the collector's to free: still stored, still linked.
    let rows = snapshot(&reg).await;
    for (digest, _) in &doomed.layers {
        assert!(rows["blobs"].contains(digest), "{digest} already gone");
        assert!(rows["repository_blobs"].contains(&format!("acme/app {digest}")));
    }
    let api = Api::anonymous(&reg);
    let again = api.call(
        "deleteManifest",
        with(repo("app"), "digest", &doomed.digest),
    );
    again.await.assert_error(404, "manifest not found");
    let bad = api.call("deleteManifest", with(repo("app"), "digest", "sha256:abc"));
    bad.await.assert_error(400, "digest");
    assert_eq!(
        snapshot(&reg).await,
        rows,
        "refused deletes changed something"
    );
}

#[tokio::test]
async fn a_manifest_an_index_lists_is_kept_until_the_index_goes() {
    let reg = Registry::start().await;
    let api = Api::anonymous(&reg);
    let child = reg.push_image("acme/multi", "amd64", &[100]).await;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST, "digest": child.digest, "size": child.manifest.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
        }],
    })
    .to_string();
    let index_digest = reg
        .push_manifest("acme/multi", "latest", OCI_INDEX, index.as_bytes())
        .await;
    let before = snapshot(&reg).await;
    let refused = api.call(
        "deleteManifest",
        with(repo("multi"), "digest", &child.digest),
    );
    refused.await.assert_error(409, "index");
    assert_eq!(snapshot(&reg).await, before);

    api.call(
        "deleteManifest",
        with(repo("multi"), "digest", &index_digest),
    )
    .await
    .ok();
    api.call(
        "deleteManifest",
        with(repo("multi"), "digest", &child.digest),
    )
    .await
    .ok();
    assert!(tags(&api, "multi").await.is_empty());
}

#[tokio::test]
async fn delete_repository_removes_every_row_and_is_safe_to_repeat() {
    let mut reg = Registry::start().await;
    let api = Api::anonymous(&reg);
    let image = reg.push_image("acme/doomed", "1", &[100, 200]).await;
    let child = reg.push_image("acme/doomed", "amd64", &[300]).await;
    let index = json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": child.digest, "size": child.manifest.len()}],
    })
    .to_string();
    reg.push_manifest("acme/doomed", "multi", OCI_INDEX, index.as_bytes())
        .await;
    // An upload under way, with a part stored.
    let session = start_upload(&reg, "acme/doomed").await;
    assert_eq!(
        patch_chunk(&reg, &session, 0, b"half a layer").await.status,
        202
    );
    // A neighbour that shares a layer keeps it.
    let neighbour = reg.push_image("acme/kept", "1", &[100, 200]).await;
    assert_eq!(
        neighbour.layers[0].0, image.layers[0].0,
        "same bytes, same blob"
    );
    let id = repository_id(&reg, "acme/doomed").await.expect("id");

    api.call("deleteRepository", repo("doomed")).await.ok();
    let left = rows_of(&reg, id).await;
    assert!(left.values().all(|n| *n == 0), "rows left: {left:?}");
    api.call("getRepository", repo("doomed"))
        .await
        .assert_error(404, "repository not found");
    let listed = api
        .call("listRepositories", json!({"project": "acme"}))
        .await
        .ok();
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    assert_eq!(manifest_status(&reg, "acme/doomed", "1").await, 404);
    assert_eq!(
        send(reg.client.get(&session)).await.status,
        404,
        "upload gone"
    );
    assert_intact(&mut reg, "acme/kept", "1", &neighbour).await;

    let api = Api::anonymous(&reg);
    let before = snapshot(&reg).await;
    let again = api.call("deleteRepository", repo("doomed")).await;
    again.assert_error(404, "repository not found");
    assert_eq!(snapshot(&reg).await, before);

    // Two at once: each finishes or finds nothing left; the repository is gone either way.
    reg.push_image("acme/twice", "1", &[10]).await;
    let (a, b) = tokio::join!(
        api.call("deleteRepository", repo("twice")),
        api.call("deleteRepository", repo("twice"))
    );
    let statuses = [a.status, b.status];
    assert!(
        statuses.contains(&200),
        "{statuses:?}: {} {}",
        a.text(),
        b.text()
    );
    assert!(
        statuses.iter().all(|s| [200, 404].contains(s)),
        "{statuses:?}"
    );
    assert_eq!(repository_id(&reg, "acme/twice").await, None);

    // The name is free again: a new push makes a new, empty repository.
    reg.push_image("acme/doomed", "2", &[10]).await;
    assert_eq!(tags(&api, "doomed").await, ["2"]);
}

/// A raw HTTP/1.1 deleteRepository, sent on a new connection.
async fn send_delete(reg: &Registry, repository: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let body = repo(repository).to_string();
    let headers = [("Content-Type", "application/json")];
    let request = raw_request(
        reg,
        "POST",
        "/api/deleteRepository",
        &headers,
        Some(body.as_bytes()),
    );
    let mut stream = raw_connect(reg).await;
    stream.write_all(&request).await.expect("write request");
    stream.flush().await.expect("flush");
    stream
}

/// Polls getRepository until it answers 404 (at most two minutes).
async fn wait_until_gone(api: &Api<'_>, repository: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let reply = api.call("getRepository", repo(repository)).await;
        if reply.status == 404 {
            return;
        }
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert!(Instant::now() < deadline, "acme/{repository} still there");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn delete_repository_finishes_after_the_client_hangs_up() {
    const SEEDED: i64 = 10_000;
    let mut reg = Registry::start().await;
    let api = Api::anonymous(&reg);
    let names = ["at-once", "under-way", "reset"];
    let mut ids = Vec::new();
    for name in names {
        let full = format!("acme/{name}");
        let image = reg.push_image(&full, "1", &[100]).await;
        seed_manifests(&reg, &full, SEEDED, &image.layers[0].0).await;
        ids.push(repository_id(&reg, &full).await.expect("id"));
    }
    let neighbour = reg.push_image("acme/kept", "1", &[100]).await;
    let seeded = rows_of(&reg, ids[0]).await;
    assert_eq!(
        (seeded["tags"], seeded["manifests"]),
        (SEEDED + 1, SEEDED + 1),
        "{seeded:?}"
    );

    // HTTP/1.1: a client that closes the connection as soon as it has sent the request...
    drop(send_delete(&reg, "at-once").await);
    // ...and one that closes it while the delete is under way.
    let stream = send_delete(&reg, "under-way").await;
    wait_for_fewer_tags(&reg, ids[1], SEEDED + 1).await;
    drop(stream);
    // HTTP/2 (as Cloud Run speaks to the service): a client that gives up while the delete is
    // under way, which resets its stream.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let warm = h2.get(reg.url("/healthz")).send().await.expect("h2c");
    assert_eq!(warm.version(), reqwest::Version::HTTP_2);
    let request = h2
        .post(reg.url("/api/deleteRepository"))
        .json(&repo("reset"))
        .send();
    let request = tokio::spawn(request);
    wait_for_fewer_tags(&reg, ids[2], SEEDED + 1).await;
    request.abort();
    eprintln!("the HTTP/2 client's delete: {:?}", request.await);

    for (name, id) in names.into_iter().zip(ids) {
        wait_until_gone(&api, name).await;
        let left = rows_of(&reg, id).await;
        assert!(
            left.values().all(|n| *n == 0),
            "acme/{name}: rows left: {left:?}"
        );
        assert!(
            reg.log().contains(&format!("repository=acme/{name} ")),
            "the delete task's summary is not in the log:\n{}",
            reg.log()
        );
    }
    assert_intact(&mut reg, "acme/kept", "1", &neighbour).await;
}

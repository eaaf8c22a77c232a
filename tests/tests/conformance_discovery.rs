//! Content discovery (spec "Determining Support", "Listing Tags", "Listing Referrers", end-1,
//! end-8, end-12) plus the catalog: `/v2/`, tags list, `_catalog`, referrers and pagination.

use registry_tests::*;
use serde_json::{Value, json};

async fn get(reg: &Registry, path: &str) -> Reply {
    send(reg.client.get(reg.url(path))).await
}

async fn tag_image(reg: &Registry, repo: &str, tags: &[&str]) {
    let image = reg.push_image(repo, tags[0], &[10]).await;
    for tag in &tags[1..] {
        reg.push_manifest(repo, tag, OCI_MANIFEST, &image.manifest)
            .await;
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_str().expect("string").to_owned())
        .collect()
}

/// Target of a `Link: <target>; rel="next"` header.
fn next_link(reply: &Reply) -> Option<String> {
    let link = reply.header("link")?;
    assert!(
        link.contains("rel=\"next\""),
        "Link without rel=\"next\": {link}"
    );
    let start = link.find('<').expect("Link has <");
    let end = link.find('>').expect("Link has >");
    Some(link[start + 1..end].to_owned())
}

/// Follows `Link` headers from `first` and returns the pages.
async fn walk(reg: &Registry, first: &str, field: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut next = Some(first.to_owned());
    while let Some(path) = next {
        assert!(pages.len() < 20, "pagination does not end");
        let reply = get(reg, &path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        pages.push(strings(&reply.json()[field]));
        next = next_link(&reply).map(|link| {
            assert!(link.starts_with("/v2/"), "Link target {link}");
            link
        });
    }
    pages
}

#[tokio::test]
async fn base_endpoint_answers_200_with_an_empty_object() {
    let reg = Registry::start().await;
    let reply = get(&reg, "/v2/").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({}));
    assert_eq!(
        reply.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
    assert_eq!(get(&reg, "/healthz").await.status, 200);
}

#[tokio::test]
async fn every_response_names_the_api_version() {
    let reg = Registry::start().await;
    let image = reg.push_image("disc/version", "v1", &[10]).await;
    let requests = [
        reg.client.get(reg.url("/v2/")),
        reg.client.get(reg.url("/v2/disc/version/manifests/v1")),
        reg.client
            .head(reg.url(&format!("/v2/disc/version/blobs/{}", image.layers[0].0))),
        reg.client.get(reg.url("/v2/disc/version/tags/list")),
        reg.client.get(reg.url("/v2/disc/version/manifests/nope")),
        reg.client.get(reg.url("/v2/NOPE/tags/list")),
        reg.client.post(reg.url("/v2/disc/version/blobs/uploads/")),
        reg.client.get(reg.url("/v2/_catalog")),
    ];
    for request in requests {
        let reply = send(request).await;
        assert_eq!(
            reply.header("docker-distribution-api-version"),
            Some("registry/2.0"),
            "status {} {}",
            reply.status,
            reply.text()
        );
    }
}

#[tokio::test]
async fn tags_are_listed_in_order() {
    let reg = Registry::start().await;
    let tags = ["v2", "latest", "1.0", "10", "9", "a_b", "a-b", "a.b", "0"];
    tag_image(&reg, "disc/tags", &tags).await;
    let reply = get(&reg, "/v2/disc/tags/tags/list").await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json"))
    );
    let body = reply.json();
    assert_eq!(body["name"], "disc/tags");
    let mut expected: Vec<String> = tags.iter().map(|t| (*t).to_owned()).collect();
    expected.sort();
    assert_eq!(strings(&body["tags"]), expected);
}

#[tokio::test]
async fn mixed_case_tags_are_in_lexical_or_asciibetical_order() {
    let reg = Registry::start().await;
    tag_image(&reg, "disc/case", &["beta", "Alpha", "alpha", "Beta", "_x"]).await;
    let got = strings(&get(&reg, "/v2/disc/case/tags/list").await.json()["tags"]);
    let mut ascii = got.clone();
    ascii.sort();
    let mut folded = got.clone();
    folded.sort_by_key(|t| t.to_lowercase());
    assert!(got == ascii || got == folded, "unordered tags {got:?}");
    assert_eq!(got.len(), 5);
}

#[tokio::test]
async fn tags_paginate_with_n_last_and_link() {
    let reg = Registry::start().await;
    let tags = ["t1", "t2", "t3", "t4", "t5", "t6", "t7"];
    tag_image(&reg, "disc/pages", &tags).await;
    let first = get(&reg, "/v2/disc/pages/tags/list?n=3").await;
    assert_eq!(strings(&first.json()["tags"]), ["t1", "t2", "t3"]);
    assert_eq!(
        next_link(&first).as_deref(),
        Some("/v2/disc/pages/tags/list?n=3&last=t3")
    );
    let pages = walk(&reg, "/v2/disc/pages/tags/list?n=3", "tags").await;
    assert_eq!(
        pages,
        [vec!["t1", "t2", "t3"], vec!["t4", "t5", "t6"], vec!["t7"]]
    );
    let after = get(&reg, "/v2/disc/pages/tags/list?n=2&last=t4").await;
    assert_eq!(strings(&after.json()["tags"]), ["t5", "t6"]);
    let everything = get(&reg, "/v2/disc/pages/tags/list?n=100").await;
    assert_eq!(strings(&everything.json()["tags"]).len(), 7);
    assert!(everything.header("link").is_none());
}

#[tokio::test]
async fn last_without_n_and_past_the_end() {
    let reg = Registry::start().await;
    tag_image(&reg, "disc/last", &["a", "b", "c", "d"]).await;
    let reply = get(&reg, "/v2/disc/last/tags/list?last=b").await;
    assert_eq!(strings(&reply.json()["tags"]), ["c", "d"]);
    let reply = get(&reg, "/v2/disc/last/tags/list?last=bb").await;
    assert_eq!(strings(&reply.json()["tags"]), ["c", "d"]);
    let reply = get(&reg, "/v2/disc/last/tags/list?last=zzz&n=5").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["tags"], json!([]));
    assert!(reply.header("link").is_none());
}

#[tokio::test]
async fn n_zero_is_an_empty_list_without_link() {
    let reg = Registry::start().await;
    tag_image(&reg, "disc/zero", &["a", "b"]).await;
    let reply = get(&reg, "/v2/disc/zero/tags/list?n=0").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["tags"], json!([]));
    assert!(reply.header("link").is_none());
}

#[tokio::test]
async fn invalid_n_is_400_pagination_number_invalid() {
    let reg = Registry::start().await;
    tag_image(&reg, "disc/badn", &["a"]).await;
    for n in ["-1", "abc", "1.5", "0x10", "%2B1%2B"] {
        let reply = get(&reg, &format!("/v2/disc/badn/tags/list?n={n}")).await;
        assert_error(&reply, 400, "PAGINATION_NUMBER_INVALID");
        let reply = get(&reg, &format!("/v2/_catalog?n={n}")).await;
        assert_error(&reply, 400, "PAGINATION_NUMBER_INVALID");
    }
}

#[tokio::test]
async fn tags_of_an_unknown_repository_are_404_name_unknown() {
    let reg = Registry::start().await;
    reg.push_image("disc/known", "v1", &[10]).await;
    assert_error(
        &get(&reg, "/v2/disc/unknown/tags/list").await,
        404,
        "NAME_UNKNOWN",
    );
}

#[tokio::test]
async fn catalog_lists_repositories_with_manifests_in_order() {
    let reg = Registry::start().await;
    for repo in ["zeta", "alpha/two", "alpha/one", "mid-dle", "alpha"] {
        reg.push_image(repo, "v1", &[10]).await;
    }
    reg.push_blob("blobs-only", b"no manifest here").await;
    let reply = get(&reg, "/v2/_catalog").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        strings(&reply.json()["repositories"]),
        ["alpha", "alpha/one", "alpha/two", "mid-dle", "zeta"]
    );
}

#[tokio::test]
async fn catalog_paginates_with_link() {
    let reg = Registry::start().await;
    for repo in ["r1", "r2", "r3", "r4", "r5"] {
        reg.push_image(repo, "v1", &[10]).await;
    }
    let first = get(&reg, "/v2/_catalog?n=2").await;
    assert_eq!(
        next_link(&first).as_deref(),
        Some("/v2/_catalog?n=2&last=r2")
    );
    let pages = walk(&reg, "/v2/_catalog?n=2", "repositories").await;
    assert_eq!(pages, [vec!["r1", "r2"], vec!["r3", "r4"], vec!["r5"]]);
    let reply = get(&reg, "/v2/_catalog?n=0").await;
    assert_eq!(reply.json()["repositories"], json!([]));
    assert!(reply.header("link").is_none());
}

/// Pushes an artifact manifest with the given subject; returns (digest, size).
async fn push_referrer(
    reg: &Registry,
    repo: &str,
    subject: &PushedImage,
    artifact_type: Option<&str>,
    config_type: &str,
    annotations: Value,
) -> (String, usize) {
    let config = reg.push_blob(repo, EMPTY_JSON).await;
    let mut manifest = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": config_type, "digest": config, "size": 2},
        "layers": [{"mediaType": OCI_EMPTY, "digest": config, "size": 2}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.digest, "size": subject.manifest.len()}});
    if let Some(artifact_type) = artifact_type {
        manifest["artifactType"] = json!(artifact_type);
    }
    if !annotations.is_null() {
        manifest["annotations"] = annotations;
    }
    let body = manifest.to_string();
    let digest = sha256_digest(body.as_bytes());
    reg.push_manifest(repo, &digest, OCI_MANIFEST, body.as_bytes())
        .await;
    (digest, body.len())
}

fn find<'a>(index: &'a Value, digest: &str) -> &'a Value {
    index["manifests"]
        .as_array()
        .expect("manifests array")
        .iter()
        .find(|d| d["digest"] == digest)
        .unwrap_or_else(|| panic!("{digest} not among referrers {index}"))
}

#[tokio::test]
async fn referrers_list_describes_each_referrer() {
    let reg = Registry::start().await;
    let image = reg.push_image("disc/refs", "v1", &[10]).await;
    let other = reg.push_image("disc/refs", "v2", &[11]).await;
    let sbom_annotations = json!({"org.example.format": "spdx"});
    let sbom = push_referrer(
        &reg,
        "disc/refs",
        &image,
        Some("application/vnd.example.sbom.v1"),
        OCI_EMPTY,
        sbom_annotations.clone(),
    )
    .await;
    let sig = push_referrer(
        &reg,
        "disc/refs",
        &image,
        None,
        "application/vnd.example.sig.config.v1+json",
        Value::Null,
    )
    .await;
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": other.digest, "size": other.manifest.len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": image.digest, "size": image.manifest.len()},
        "annotations": {"org.example.kind": "bundle"}})
    .to_string();
    let index_digest = reg
        .push_manifest("disc/refs", "bundle", OCI_INDEX, index.as_bytes())
        .await;
    push_referrer(
        &reg,
        "disc/refs",
        &other,
        Some("application/vnd.example.unrelated"),
        OCI_EMPTY,
        Value::Null,
    )
    .await;

    let reply = get(&reg, &format!("/v2/disc/refs/referrers/{}", image.digest)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some(OCI_INDEX));
    let body = reply.json();
    assert_eq!(body["schemaVersion"], 2);
    assert_eq!(body["mediaType"], OCI_INDEX);
    assert_eq!(
        body["manifests"].as_array().expect("manifests").len(),
        3,
        "{body}"
    );
    let d = find(&body, &sbom.0);
    assert_eq!(d["mediaType"], OCI_MANIFEST);
    assert_eq!(d["size"], sbom.1);
    assert_eq!(d["artifactType"], "application/vnd.example.sbom.v1");
    assert_eq!(d["annotations"], sbom_annotations);
    let d = find(&body, &sig.0);
    assert_eq!(d["size"], sig.1);
    assert_eq!(
        d["artifactType"],
        "application/vnd.example.sig.config.v1+json"
    );
    let d = find(&body, &index_digest);
    assert_eq!(d["mediaType"], OCI_INDEX);
    assert_eq!(d["size"], index.len());
    assert!(
        d.get("artifactType").is_none_or(Value::is_null),
        "index without artifactType: {d}"
    );
    assert_eq!(d["annotations"], json!({"org.example.kind": "bundle"}));
}

#[tokio::test]
async fn referrers_filter_by_artifact_type() {
    let reg = Registry::start().await;
    let image = reg.push_image("disc/filter", "v1", &[10]).await;
    let sbom = push_referrer(
        &reg,
        "disc/filter",
        &image,
        Some("application/vnd.example.sbom.v1"),
        OCI_EMPTY,
        Value::Null,
    )
    .await;
    push_referrer(
        &reg,
        "disc/filter",
        &image,
        Some("application/vnd.example.sig.v1"),
        OCI_EMPTY,
        Value::Null,
    )
    .await;
    let url = format!(
        "/v2/disc/filter/referrers/{}?artifactType=application/vnd.example.sbom.v1",
        image.digest
    );
    let reply = get(&reg, &url).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("oci-filters-applied"), Some("artifactType"));
    let manifests = reply.json()["manifests"].clone();
    assert_eq!(manifests.as_array().expect("array").len(), 1, "{manifests}");
    assert_eq!(manifests[0]["digest"], sbom.0);
    let unfiltered = get(&reg, &format!("/v2/disc/filter/referrers/{}", image.digest)).await;
    assert!(unfiltered.header("oci-filters-applied").is_none());
    assert_eq!(
        unfiltered.json()["manifests"]
            .as_array()
            .expect("array")
            .len(),
        2
    );
}

#[tokio::test]
async fn referrers_of_unknown_digest_is_an_empty_index() {
    let reg = Registry::start().await;
    reg.push_image("disc/norefs", "v1", &[10]).await;
    let reply = get(
        &reg,
        &format!("/v2/disc/norefs/referrers/{}", sha256_digest(b"nobody")),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some(OCI_INDEX));
    let body = reply.json();
    assert_eq!(body["schemaVersion"], 2);
    assert_eq!(body["mediaType"], OCI_INDEX);
    assert_eq!(body["manifests"], json!([]));
}

#[tokio::test]
async fn referrers_with_an_invalid_digest_is_400() {
    let reg = Registry::start().await;
    reg.push_image("disc/badref", "v1", &[10]).await;
    for digest in [
        "sha256:abc",
        "latest",
        "sha256:XYZ0000000000000000000000000000000000000000000000000000000000000",
    ] {
        let reply = get(&reg, &format!("/v2/disc/badref/referrers/{digest}")).await;
        assert_error(&reply, 400, "DIGEST_INVALID");
    }
}

#[tokio::test]
async fn referrers_follow_deletes_and_stay_in_their_repository() {
    let reg = Registry::start().await;
    let image = reg.push_image("disc/own", "v1", &[10]).await;
    let keep = push_referrer(
        &reg,
        "disc/own",
        &image,
        Some("application/vnd.example.a"),
        OCI_EMPTY,
        Value::Null,
    )
    .await;
    let gone = push_referrer(
        &reg,
        "disc/own",
        &image,
        Some("application/vnd.example.b"),
        OCI_EMPTY,
        Value::Null,
    )
    .await;
    let url = reg.url(&format!("/v2/disc/own/manifests/{}", gone.0));
    assert_eq!(send(reg.client.delete(url)).await.status, 202);
    let body = get(&reg, &format!("/v2/disc/own/referrers/{}", image.digest))
        .await
        .json();
    assert_eq!(
        body["manifests"].as_array().expect("array").len(),
        1,
        "{body}"
    );
    assert_eq!(body["manifests"][0]["digest"], keep.0);
    let elsewhere = get(
        &reg,
        &format!("/v2/disc/stranger/referrers/{}", image.digest),
    )
    .await;
    assert!(
        elsewhere.status == 200 || elsewhere.status == 404,
        "{}",
        elsewhere.status
    );
    if elsewhere.status == 200 {
        assert_eq!(elsewhere.json()["manifests"], json!([]));
    }
}

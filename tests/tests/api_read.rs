//! The management API's reads on the real binary: listRepositories, getRepository, listTags,
//! listManifests and getProjectStorage answer what was pushed (names after their project,
//! sizes, RFC 3339 times, orders), pages walk every item once, and the OpenAPI document is
//! served. Every answer is checked against the document (`registry_tests::api`).

use registry_tests::api::{self, Api, millis, now_millis, push_tagged_manifests, run_job};
use registry_tests::{OCI_CONFIG, OCI_MANIFEST, Registry};
use serde_json::{Value, json};

/// The `name`s of a page's items.
fn names(result: &Value, field: &str) -> Vec<String> {
    result["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item[field].as_str().expect("name").to_owned())
        .collect()
}

#[track_caller]
fn within(value: &Value, from: i64, to: i64) {
    let at = millis(value);
    assert!(from <= at && at <= to, "{value} not within [{from}, {to}]");
}

#[tokio::test]
async fn reads_answer_what_was_pushed() {
    let reg = Registry::start().await;
    let api = Api::anonymous(&reg);
    let started = now_millis();
    let (web, web_size) = push_tagged_manifests(&reg, "acme/web/api", "v", 3).await;
    let tools = reg.push_image("acme/tools", "1.0", &[1000, 2000]).await;
    // Names that share the prefix or stand for the project alone belong to no listing of it.
    for other in ["acme", "acme-web/app", "acmeco/x", "other/acme"] {
        reg.push_image(other, "1", &[10]).await;
    }
    let pushed = now_millis();

    let repos = api
        .call("listRepositories", json!({"project": "acme"}))
        .await
        .ok();
    assert_eq!(names(&repos, "name"), ["tools", "web/api"]);
    assert!(repos.get("nextCursor").is_none(), "{repos}");
    for item in repos["items"].as_array().expect("items") {
        within(&item["createdAt"], started, pushed);
    }

    let info = api
        .call(
            "getRepository",
            json!({"project": "acme", "repository": "web/api"}),
        )
        .await
        .ok();
    assert_eq!(info["name"], "web/api");
    assert_eq!(
        info["size"], web_size,
        "three manifests share one config and layer"
    );
    within(&info["createdAt"], started, pushed);
    let tools_size: usize =
        tools.config.1.len() + tools.layers.iter().map(|(_, b)| b.len()).sum::<usize>();
    let info = api
        .call(
            "getRepository",
            json!({"project": "acme", "repository": "tools"}),
        )
        .await
        .ok();
    assert_eq!(info["size"], tools_size);

    let tags = api
        .call(
            "listTags",
            json!({"project": "acme", "repository": "web/api"}),
        )
        .await
        .ok();
    assert_eq!(tags["name"], "web/api");
    assert_eq!(names(&tags, "tag"), ["v0", "v1", "v2"]);
    for (item, digest) in tags["items"].as_array().expect("items").iter().zip(&web) {
        assert_eq!(&item["digest"], digest);
        within(&item["createdAt"], started, pushed);
        assert_eq!(item["createdAt"], item["updatedAt"], "never moved");
    }

    let manifests = api
        .call(
            "listManifests",
            json!({"project": "acme", "repository": "web/api"}),
        )
        .await
        .ok();
    assert_eq!(manifests["name"], "web/api");
    let items = manifests["items"].as_array().expect("items");
    let mut listed: Vec<String> = names(&manifests, "digest");
    let keys: Vec<(i64, String)> = items
        .iter()
        .map(|m| {
            (
                millis(&m["createdAt"]),
                m["digest"].as_str().expect("digest").to_owned(),
            )
        })
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] > w[1]),
        "newest first: {keys:?}"
    );
    for item in items {
        assert_eq!(item["mediaType"], OCI_MANIFEST);
        assert_eq!(
            item["artifactType"], OCI_CONFIG,
            "an image's, for the referrers API"
        );
        within(&item["createdAt"], started, pushed);
    }
    let newest = items[0]["size"].as_u64().expect("size");
    assert!(newest > 100, "size is the manifest's bytes: {newest}");
    listed.sort();
    let mut want = web.clone();
    want.sort();
    assert_eq!(listed, want);

    // A tag moved to another manifest keeps its creation time and says when it moved.
    let moved_at = now_millis();
    let body = reg
        .client
        .get(reg.url(&format!("/v2/acme/web/api/manifests/{}", web[2])))
        .header("Accept", OCI_MANIFEST)
        .send()
        .await
        .expect("pull")
        .bytes()
        .await
        .expect("body");
    reg.push_manifest("acme/web/api", "v0", OCI_MANIFEST, &body)
        .await;
    let tags = api
        .call(
            "listTags",
            json!({"project": "acme", "repository": "web/api"}),
        )
        .await
        .ok();
    let v0 = &tags["items"][0];
    assert_eq!(v0["digest"], web[2].as_str());
    within(&v0["createdAt"], started, pushed);
    within(&v0["updatedAt"], moved_at, now_millis());
}

#[tokio::test]
async fn pages_walk_every_item_once() {
    let reg = Registry::start().await;
    let api = Api::anonymous(&reg);
    let (digests, _) = push_tagged_manifests(&reg, "acme/app", "t", 25).await;
    for i in 0..9 {
        reg.push_blob(&format!("acme/r{i}"), b"x").await;
    }
    let repo = json!({"project": "acme", "repository": "app"});

    let (tags, pages) = api.all_items("listTags", repo.clone(), 4).await;
    assert_eq!(pages, 7);
    let tags: Vec<&str> = tags
        .iter()
        .map(|t| t["tag"].as_str().expect("tag"))
        .collect();
    let mut want: Vec<String> = (0..25).map(|i| format!("t{i}")).collect();
    want.sort();
    assert_eq!(tags, want, "byte order, each once");

    let (manifests, pages) = api.all_items("listManifests", repo.clone(), 10).await;
    assert_eq!(pages, 3);
    let mut listed: Vec<String> = manifests
        .iter()
        .map(|m| m["digest"].as_str().expect("digest").to_owned())
        .collect();
    listed.sort();
    let mut want = digests.clone();
    want.sort();
    assert_eq!(listed, want, "each manifest once");

    let (repos, pages) = api
        .all_items("listRepositories", json!({"project": "acme"}), 3)
        .await;
    assert_eq!((repos.len(), pages), (10, 4));

    // The default page holds all 25; the largest page is 1000.
    let all = api.call("listTags", repo.clone()).await.ok();
    assert_eq!(all["items"].as_array().map(Vec::len), Some(25));
    assert!(all.get("nextCursor").is_none());
    let mut max = repo.clone();
    max["limit"] = json!(1000);
    api.call("listTags", max).await.ok();
    let mut nulls = repo.clone();
    nulls["cursor"] = Value::Null;
    nulls["limit"] = Value::Null;
    let first = api.call("listTags", nulls).await.ok();
    assert_eq!(first["items"], all["items"], "null is the default");

    // Keyset pages: deleting what was seen and adding after the cursor skips nothing.
    let mut first = repo.clone();
    first["limit"] = json!(5);
    let page = api.call("listTags", first.clone()).await.ok();
    let seen = names(&page, "tag");
    let cursor = page["nextCursor"].as_str().expect("nextCursor").to_owned();
    let mut delete = repo.clone();
    delete["tag"] = json!(seen[0]);
    api.call("deleteTag", delete).await.ok();
    reg.push_manifest(
        "acme/app",
        "zz",
        OCI_MANIFEST,
        &reg.client
            .get(reg.url("/v2/acme/app/manifests/t1"))
            .header("Accept", OCI_MANIFEST)
            .send()
            .await
            .expect("pull")
            .bytes()
            .await
            .expect("body"),
    )
    .await;
    let mut rest = repo.clone();
    rest["cursor"] = json!(cursor);
    rest["limit"] = json!(1000);
    let rest = names(&api.call("listTags", rest).await.ok(), "tag");
    assert_eq!(rest.len(), 21, "20 after the first page, and zz: {rest:?}");
    assert!(rest.iter().all(|t| !seen.contains(t)), "no repeats");
    assert_eq!(rest.last().map(String::as_str), Some("zz"));

    // A cursor of another listing, or no cursor at all, is refused.
    let mut wrong = repo.clone();
    wrong["cursor"] = json!(cursor);
    api.call("listManifests", wrong.clone())
        .await
        .assert_error(400, "cursor");
    wrong["cursor"] = json!("not a cursor!");
    api.call("listTags", wrong)
        .await
        .assert_error(400, "cursor");
    for limit in [json!(0), json!(1001), json!(-1), json!("5"), json!(2.5)] {
        let mut bad = repo.clone();
        bad["limit"] = limit;
        api.call("listTags", bad).await.assert_error(400, "limit");
    }
}

#[tokio::test]
async fn project_storage_comes_from_the_job() {
    let reg = Registry::start().await;
    let api = Api::anonymous(&reg);
    let image = reg.push_image("acme/one", "1", &[4000, 5000]).await;
    // The same layer in a second repository of the project counts once.
    reg.push_blob("acme/two", &image.layers[0].1).await;
    reg.push_image("other/app", "1", &[7777]).await;
    let project = json!({"project": "acme"});
    let before = api.call("getProjectStorage", project.clone()).await.ok();
    assert_eq!(
        before,
        json!({"size": 0}),
        "no count before the job's first run"
    );

    let started = now_millis();
    run_job(&reg, "project-storage").await;
    let counted = api.call("getProjectStorage", project).await.ok();
    let size = image.config.1.len() + 4000 + 5000;
    assert_eq!(counted["size"], size);
    within(&counted["updatedAt"], started, now_millis());
    let empty = api
        .call("getProjectStorage", json!({"project": "nobody"}))
        .await
        .ok();
    assert_eq!(empty, json!({"size": 0}));
}

#[tokio::test]
async fn unknown_projects_and_repositories() {
    let reg = Registry::start().await;
    let api = Api::anonymous(&reg);
    reg.push_image("acme/app", "1", &[10]).await;
    let empty = api
        .call("listRepositories", json!({"project": "nobody"}))
        .await
        .ok();
    assert_eq!(
        empty,
        json!({"items": []}),
        "a project without repositories is empty"
    );
    for (project, repository) in [("acme", "nope"), ("nobody", "app"), ("acme", "app/deeper")] {
        let params = json!({"project": project, "repository": repository});
        for method in ["getRepository", "listTags", "listManifests"] {
            api.call(method, params.clone())
                .await
                .assert_error(404, "repository not found");
        }
    }
}

#[tokio::test]
async fn the_document_is_served_to_anyone() {
    let reg = Registry::start().await;
    let api = Api::anonymous(&reg);
    let reply = api.raw("GET", "/api/openapi.json", &[], Vec::new()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        api::openapi::openapi().doc,
        "the document in the repository"
    );
    let head = api.raw("HEAD", "/api/openapi.json", &[], Vec::new()).await;
    assert_eq!((head.status, head.body.len()), (200, 0));
    let post = api.raw("POST", "/api/openapi.json", &[], Vec::new()).await;
    post.assert_error(405, "GET, HEAD");
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
}

//! Requests the management API refuses, on the real binary: malformed JSON, wrong types,
//! missing and unknown fields, names outside the grammar, another HTTP method, another content
//! type, an oversized body, a path that names no method. Each is a clear error in the
//! envelope, documented in the OpenAPI document, and changes nothing.

use registry_tests::api::{Api, snapshot};
use registry_tests::*;
use serde_json::{Value, json};

const METHODS: [&str; 8] = [
    "listRepositories",
    "getRepository",
    "listTags",
    "listManifests",
    "getProjectStorage",
    "deleteTag",
    "deleteManifest",
    "deleteRepository",
];

/// Valid parameters of each method, naming what the registry holds.
fn valid(method: &str, digest: &str) -> Value {
    let mut params = json!({"project": "acme", "repository": "app"});
    match method {
        "listRepositories" | "getProjectStorage" => params = json!({"project": "acme"}),
        "deleteTag" => params["tag"] = json!("1"),
        "deleteManifest" => params["digest"] = json!(digest),
        _ => {}
    }
    params
}

/// `params` with `key` set to `value` (`None`: removed).
fn with(params: &Value, key: &str, value: Option<Value>) -> Value {
    let mut params = params.clone();
    let object = params.as_object_mut().expect("object");
    match value {
        Some(value) => object.insert(key.to_owned(), value),
        None => object.remove(key),
    };
    params
}

#[tokio::test]
async fn bad_parameters_are_clear_errors_that_change_nothing() {
    let reg = Registry::start().await;
    let image = reg.push_image("acme/app", "1", &[100]).await;
    let api = Api::anonymous(&reg);
    let before = snapshot(&reg).await;
    for method in METHODS {
        let good = valid(method, &image.digest);
        let mut cases: Vec<(Value, &str)> = vec![
            (json!([]), "the body must be a JSON object"),
            (json!(["acme", "app"]), "the body must be a JSON object"),
            (json!("acme"), "the body must be a JSON object"),
            (json!(null), "the body must be a JSON object"),
            (with(&good, "project", None), "missing field `project`"),
            (
                with(&good, "project", Some(json!(5))),
                "project: invalid type: integer",
            ),
            (
                with(&good, "project", Some(json!(["acme"]))),
                "project: invalid type: sequence",
            ),
            (
                with(&good, "project", Some(json!("Acme"))),
                "project: must match",
            ),
            (
                with(&good, "project", Some(json!(""))),
                "project: must match",
            ),
            (
                with(&good, "project", Some(json!("acme/app"))),
                "project: a project is one name component",
            ),
            (
                with(&good, "repo", Some(json!("app"))),
                "unknown field `repo`",
            ),
        ];
        if good.get("repository").is_some() {
            cases.extend([
                (
                    with(&good, "repository", None),
                    "missing field `repository`",
                ),
                (
                    with(&good, "repository", Some(json!(1.5))),
                    "repository: invalid type: floating point",
                ),
                (
                    with(&good, "repository", Some(json!(""))),
                    "repository: must not be empty",
                ),
                (
                    with(&good, "repository", Some(json!("App"))),
                    "repository: each path component",
                ),
                (
                    with(&good, "repository", Some(json!("app/"))),
                    "repository: each path component",
                ),
                (
                    with(&good, "repository", Some(json!("a".repeat(251)))),
                    "repository: longer than 255",
                ),
            ]);
        }
        if method.starts_with("list") {
            cases.extend([
                (
                    with(&good, "limit", Some(json!("10"))),
                    "limit: invalid type: string",
                ),
                (
                    with(&good, "limit", Some(json!(0))),
                    "limit: must be between 1 and 1000",
                ),
                (
                    with(&good, "cursor", Some(json!(7))),
                    "cursor: invalid type: integer",
                ),
                (
                    with(&good, "cursor", Some(json!("~~"))),
                    "cursor: not a cursor of this listing",
                ),
            ]);
        } else {
            cases.push((
                with(&good, "limit", Some(json!(10))),
                "unknown field `limit`",
            ));
        }
        match method {
            "deleteTag" => cases.extend([
                (with(&good, "tag", None), "missing field `tag`"),
                (
                    with(&good, "tag", Some(json!(true))),
                    "tag: invalid type: boolean",
                ),
                (with(&good, "tag", Some(json!("-x"))), "tag: must match"),
            ]),
            "deleteManifest" => cases.extend([
                (with(&good, "digest", None), "missing field `digest`"),
                (
                    with(&good, "digest", Some(json!({}))),
                    "digest: invalid type: map",
                ),
                (
                    with(&good, "digest", Some(json!("sha256:ABC"))),
                    "digest: must be sha256",
                ),
                (
                    with(&good, "digest", Some(json!("1"))),
                    "digest: must be sha256",
                ),
            ]),
            _ => {}
        }
        for (params, message) in cases {
            let reply = api.call(method, params.clone()).await;
            assert_eq!(reply.status, 400, "{method} {params}: {}", reply.text());
            reply.assert_error(400, message);
        }
        let trailing = format!("{good} {{}}").into_bytes();
        for (body, message) in [
            (&b""[..], "malformed JSON: EOF while parsing"),
            (b"{", "malformed JSON: EOF while parsing"),
            (
                b"{\"project\": \"acme\",}",
                "malformed JSON: trailing comma",
            ),
            (b"project=acme", "malformed JSON: expected value"),
            (&trailing, "malformed JSON: trailing characters"),
            (b"\xff\xfe", "malformed JSON"),
        ] {
            let headers = [("Content-Type", "application/json")];
            let path = format!("/api/{method}");
            let reply = api.raw("POST", &path, &headers, body.to_vec()).await;
            reply.assert_error(400, message);
        }
    }
    assert_eq!(
        snapshot(&reg).await,
        before,
        "a refused request changed something"
    );
}

#[tokio::test]
async fn requests_that_are_not_method_calls_are_refused() {
    let reg = Registry::start().await;
    let image = reg.push_image("acme/app", "1", &[100]).await;
    let api = Api::anonymous(&reg);
    let before = snapshot(&reg).await;
    for method in METHODS {
        let path = format!("/api/{method}");
        let body = valid(method, &image.digest).to_string().into_bytes();
        for http_method in ["GET", "PUT", "DELETE", "PATCH"] {
            let reply = api.raw(http_method, &path, &[], Vec::new()).await;
            reply.assert_error(405, "method not allowed; use POST");
            assert_eq!(reply.header("allow"), Some("POST"));
        }
        for content_type in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
        ] {
            let headers: Vec<(&str, &str)> = content_type
                .map(|t| ("Content-Type", t))
                .into_iter()
                .collect();
            let reply = api.raw("POST", &path, &headers, body.clone()).await;
            reply.assert_error(415, "Content-Type must be application/json");
        }
        if !method.starts_with("delete") {
            let charset = [("Content-Type", "Application/JSON; charset=utf-8")];
            let reply = api.raw("POST", &path, &charset, body.clone()).await;
            assert_eq!(
                reply.status, 200,
                "{method}: parameters of the type are fine"
            );
        }
        let mut huge = valid(method, &image.digest);
        huge["project"] = json!("a".repeat(70 * 1024));
        let json = [("Content-Type", "application/json")];
        let reply = api
            .raw("POST", &path, &json, huge.to_string().into_bytes())
            .await;
        reply.assert_error(413, "larger than 65536 bytes");
    }
    // Paths under /api/ (the load balancer sends `/api` itself to the registry API's service).
    for path in [
        "/api/",
        "/api/nope",
        "/api/listtags",
        "/api/listTags/x",
        "/api/v2/blobs",
    ] {
        let headers = [("Content-Type", "application/json")];
        let body = json!({"project": "acme"}).to_string().into_bytes();
        let reply = api.raw("POST", path, &headers, body).await;
        reply.assert_error(404, "unknown method");
        let reply = api.raw("GET", path, &[], Vec::new()).await;
        reply.assert_error(404, "unknown method");
    }
    assert_eq!(
        snapshot(&reg).await,
        before,
        "a refused request changed something"
    );
}

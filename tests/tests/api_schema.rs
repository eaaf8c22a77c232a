//! The checks the management API suites hold every answer to: the OpenAPI document loads
//! within the JSON Schema subset that `registry_tests::api::openapi` validates, and that
//! validator refuses what the document forbids (so a passing suite means something).

use registry_tests::api::openapi::{OpenApi, openapi};
use registry_tests::api::{check_response, is_rfc3339};
use serde_json::{Value, json};

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

#[track_caller]
fn accepts(api: &OpenApi, name: &str, value: Value) {
    if let Err(why) = api.validate(&schema(name), &value) {
        panic!("{name} refuses {value}: {why:?}");
    }
}

#[track_caller]
fn refuses(api: &OpenApi, name: &str, value: Value, needle: &str) {
    match api.validate(&schema(name), &value) {
        Ok(()) => panic!("{name} accepts {value}"),
        Err(why) => assert!(
            why.iter().any(|w| w.contains(needle)),
            "{name} refuses {value} for {why:?}, not {needle:?}"
        ),
    }
}

const DIGEST: &str = "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b";

#[test]
fn the_validator_refuses_what_the_document_forbids() {
    let api = openapi();
    let item = json!({"name": "web/api", "createdAt": "2026-01-15T03:00:00.123Z"});
    accepts(
        api,
        "ListRepositoriesOk",
        json!({"ok": true, "result": {"items": [item]}}),
    );
    accepts(
        api,
        "ListRepositoriesOk",
        json!({"ok": true, "result": {"items": [], "nextCursor": "cjp4"}}),
    );
    refuses(
        api,
        "ListRepositoriesOk",
        json!({"ok": false, "result": {"items": []}}),
        "is not true",
    );
    refuses(
        api,
        "ListRepositoriesOk",
        json!({"ok": true, "result": {}}),
        "\"items\"",
    );
    refuses(
        api,
        "ListRepositoriesOk",
        json!({"ok": true, "result": {"items": [], "next": "x"}}),
        "\"next\" is not in the schema",
    );
    refuses(
        api,
        "RepositoryItem",
        json!({"name": "Web", "createdAt": "2026-01-15T03:00:00Z"}),
        "does not match",
    );
    refuses(
        api,
        "RepositoryItem",
        json!({"name": "web", "createdAt": "yesterday"}),
        "RFC 3339",
    );
    refuses(
        api,
        "RepositoryItem",
        json!({"name": "web", "createdAt": "2026-13-40T03:00:00Z"}),
        "RFC 3339",
    );
    refuses(
        api,
        "RepositoryItem",
        json!({"name": 7, "createdAt": "2026-01-15T03:00:00Z"}),
        "not of type",
    );
    refuses(
        api,
        "RepositoryList",
        json!({"items": [], "nextCursor": ""}),
        "minLength",
    );
    let manifest = json!({
        "digest": DIGEST, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "size": 426, "createdAt": "2026-01-15T03:00:00Z",
    });
    accepts(api, "ManifestItem", manifest.clone());
    let mut negative = manifest.clone();
    negative["size"] = json!(-1);
    refuses(api, "ManifestItem", negative, "minimum");
    let mut fractional = manifest;
    fractional["size"] = json!(1.5);
    refuses(api, "ManifestItem", fractional, "not of type");
    accepts(
        api,
        "GetProjectStorageOk",
        json!({"ok": true, "result": {"size": 0}}),
    );
    accepts(api, "Done", json!({"ok": true}));
    refuses(
        api,
        "Done",
        json!({"ok": true, "result": null}),
        "\"result\" is not in the schema",
    );
    accepts(
        api,
        "Error",
        json!({"ok": false, "error": {"message": "tag not found"}}),
    );
    refuses(
        api,
        "Error",
        json!({"ok": false, "error": {"message": ""}}),
        "minLength",
    );
    refuses(
        api,
        "Error",
        json!({"ok": false, "error": "tag not found"}),
        "not of type",
    );
    // Request parameters: what the registry takes.
    accepts(
        api,
        "RepositoryPageParams",
        json!({"project": "acme", "repository": "web/api", "cursor": null, "limit": null}),
    );
    refuses(
        api,
        "RepositoryPageParams",
        json!({"project": "acme", "repository": "web/api", "limit": 1001}),
        "maximum",
    );
    refuses(
        api,
        "RepositoryPageParams",
        json!({"project": "acme", "repository": "web/api", "limit": "5"}),
        "not of type",
    );
    refuses(
        api,
        "ProjectParams",
        json!({"project": "acme/web"}),
        "does not match",
    );
    refuses(
        api,
        "TagParams",
        json!({"project": "acme", "repository": "app", "tag": ".x"}),
        "does not match",
    );
    refuses(
        api,
        "DigestParams",
        json!({"project": "acme", "repository": "app", "digest": "sha256:ABC"}),
        "does not match",
    );
    refuses(
        api,
        "DigestParams",
        json!({"project": "acme", "repository": "app"}),
        "\"digest\"",
    );
}

#[test]
fn answers_are_held_to_their_operation_and_status() {
    let json_headers = || {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("content-type", "application/json".parse().expect("header"));
        headers
    };
    let ok = br#"{"ok":true,"result":{"items":[]}}"#;
    check_response("POST", "/api/listRepositories", 200, &json_headers(), ok);
    let refusals: [(&str, &str, u16, &[u8]); 5] = [
        // A status the operation does not document.
        (
            "POST",
            "/api/listRepositories",
            404,
            br#"{"ok":false,"error":{"message":"x"}}"#,
        ),
        // A body of another shape.
        (
            "POST",
            "/api/listRepositories",
            200,
            br#"{"ok":true,"result":[]}"#,
        ),
        // 401 without its challenge header.
        (
            "POST",
            "/api/listRepositories",
            401,
            br#"{"ok":false,"error":{"message":"x"}}"#,
        ),
        // An unknown path must be a 404.
        ("POST", "/api/nothing", 200, ok),
        // Another HTTP method must be a 405.
        ("GET", "/api/listTags", 200, ok),
    ];
    for (method, path, status, body) in refusals {
        let checked = std::panic::catch_unwind(|| {
            check_response(method, path, status, &json_headers(), body);
        });
        assert!(
            checked.is_err(),
            "{method} {path} {status} passed the check"
        );
    }
}

#[test]
fn rfc3339_is_what_the_api_writes() {
    for ok in [
        "2026-01-15T03:00:00Z",
        "2026-01-15T03:00:00.123Z",
        "2026-01-15T03:00:00+07:00",
    ] {
        assert!(is_rfc3339(ok), "{ok}");
    }
    for bad in [
        "2026-01-15",
        "2026-01-15 03:00:00Z",
        "1768446000123",
        "2026-02-30T00:00:00Z",
    ] {
        assert!(!is_rfc3339(bad), "{bad}");
    }
}

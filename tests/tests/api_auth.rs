//! Who may call the management API, on the real binary: rights per project and action with
//! `AUTH_MODE=basic` (`list` for listRepositories, `get` for the other reads, `push` for
//! deletes), refusals that change nothing and do not reveal what exists, project scopes of
//! tokens, 503 when the permission service is down, and CORS for the configured dashboards.
//! Every answer is checked against the OpenAPI document.

use registry_tests::api::{Api, ApiReply, snapshot};
use registry_tests::auth::{ALICE, AuthFiles, BOB, Client, RULES, Scheme};
use registry_tests::{Registry, send};
use serde_json::{Value, json};

const CHALLENGE: &str = r#"Basic realm="registry""#;
const DASHBOARD: &str = "https://dash.example.com";

/// The tenants' rules, plus `list` and `get` (not `push`) for alice on bob's `beta`.
fn rules() -> String {
    let mut rules: Value = serde_json::from_str(RULES).expect("rules");
    rules["rules"].as_array_mut().expect("rules").push(
        json!({"subjects": ["user:alice"], "projects": ["beta"], "actions": ["list", "get"]}),
    );
    rules.to_string()
}

async fn start_basic(files: &AuthFiles, extra: &[(&str, &str)]) -> Registry {
    std::fs::write(&files.rules, rules()).expect("write rules");
    let mut env = vec![
        ("AUTH_MODE", "basic"),
        (
            "HTPASSWD_FILE",
            files.htpasswd.to_str().expect("UTF-8 path"),
        ),
        ("AUTH_RULES_FILE", files.rules.to_str().expect("UTF-8 path")),
    ];
    env.extend_from_slice(extra);
    Registry::start_with(&env).await
}

fn repo(project: &str, repository: &str) -> Value {
    json!({"project": project, "repository": repository})
}

/// Every method, with parameters naming `project/app` (tag `1`, the given digest).
fn every_method(project: &str, digest: &str) -> Vec<(&'static str, Value)> {
    let app = repo(project, "app");
    let mut tag = app.clone();
    tag["tag"] = json!("1");
    let mut manifest = app.clone();
    manifest["digest"] = json!(digest);
    vec![
        ("listRepositories", json!({"project": project})),
        ("getRepository", app.clone()),
        ("listTags", app.clone()),
        ("listManifests", app.clone()),
        ("getProjectStorage", json!({"project": project})),
        ("deleteTag", tag),
        ("deleteManifest", manifest),
        ("deleteRepository", app),
    ]
}

#[tokio::test]
async fn rights_are_per_project_and_action() {
    let files = AuthFiles::new();
    let reg = start_basic(&files, &[]).await;
    let bob = Client::new(&reg, Scheme::Basic, Some(BOB));
    let beta = bob.push_image("beta/app", "1", 1).await;
    let alpha = Client::new(&reg, Scheme::Basic, Some(ALICE))
        .push_image("alpha/app", "1", 2)
        .await;
    let before = snapshot(&reg).await;

    let alice = Api::basic(&reg, ALICE);
    // alice may read beta, not delete in it.
    for (method, params) in every_method("beta", &beta.digest) {
        let reply = alice.call(method, params).await;
        if method.starts_with("delete") {
            reply.assert_error(403, "permission denied");
        } else {
            reply.ok();
        }
    }
    // bob may do nothing in alpha; anonymous callers and a wrong password get the challenge.
    let anonymous = Api::anonymous(&reg);
    let wrong = Api::basic(&reg, (ALICE.0, "not-her-password"));
    for (method, params) in every_method("alpha", &alpha.digest) {
        Api::basic(&reg, BOB)
            .call(method, params.clone())
            .await
            .assert_error(403, "permission denied");
        for caller in [anonymous, wrong] {
            let reply = caller.call(method, params.clone()).await;
            reply.assert_error(401, "authentication required");
            assert_eq!(reply.header("www-authenticate"), Some(CHALLENGE));
        }
    }
    // `pull` alone (alice on `shared`, anonymous on `public`) opens nothing here.
    alice
        .call("listRepositories", json!({"project": "shared"}))
        .await
        .assert_error(403, "permission denied");
    anonymous
        .call("getRepository", repo("public", "app"))
        .await
        .assert_error(401, "authentication required");
    // A refusal says nothing of what exists: a missing repository is refused alike.
    Api::basic(&reg, BOB)
        .call("getRepository", repo("alpha", "no-such-thing"))
        .await
        .assert_error(403, "permission denied");
    assert_eq!(
        snapshot(&reg).await,
        before,
        "refused calls changed something"
    );

    // The owners may do everything.
    for (method, params) in every_method("alpha", &alpha.digest) {
        alice.call(method, params).await.ok();
    }
    assert!(
        snapshot(&reg).await["repositories"]
            .iter()
            .all(|name| !name.starts_with("alpha/")),
        "alice's deleteRepository went through"
    );
}

#[tokio::test]
async fn tokens_carry_project_scopes() {
    let files = AuthFiles::new();
    std::fs::write(&files.rules, rules()).expect("write rules");
    let reg = Registry::start_with(&[
        ("AUTH_MODE", "token"),
        (
            "JWT_SECRET",
            "a-test-secret-of-more-than-32-bytes-0123456789",
        ),
        (
            "HTPASSWD_FILE",
            files.htpasswd.to_str().expect("UTF-8 path"),
        ),
        ("AUTH_RULES_FILE", files.rules.to_str().expect("UTF-8 path")),
    ])
    .await;
    let alice = Client::new(&reg, Scheme::Token, Some(ALICE));
    alice.push_image("alpha/app", "1", 3).await;

    let read = alice.token(&["project:alpha:list,get".to_owned()]).await;
    let reader = Api::bearer(&reg, &read);
    let listed = reader
        .call("listRepositories", json!({"project": "alpha"}))
        .await
        .ok();
    assert_eq!(listed["items"][0]["name"], "app");
    let tag = json!({"project": "alpha", "repository": "app", "tag": "1"});
    let refused = reader.call("deleteTag", tag.clone()).await;
    refused.assert_error(401, "authentication required");
    let challenge = refused.header("www-authenticate").expect("challenge");
    assert!(
        challenge.contains(r#"scope="project:alpha:push""#)
            && challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    // A token for a project the rules never open grants nothing there.
    let other = alice.token(&["project:shared:list".to_owned()]).await;
    Api::bearer(&reg, &other)
        .call("listRepositories", json!({"project": "shared"}))
        .await
        .assert_error(403, "permission denied");

    let push = alice.token(&["project:alpha:push".to_owned()]).await;
    Api::bearer(&reg, &push).call("deleteTag", tag).await.ok();
    let tags = reader
        .call("listTags", json!({"project": "alpha", "repository": "app"}))
        .await
        .ok();
    assert_eq!(tags["items"], json!([]));
}

#[tokio::test]
async fn a_permission_service_that_is_down_is_a_503() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("http://127.0.0.1:{port}/permission");
    let reg = Registry::start_with(&[
        ("AUTH_MODE", "delegated"),
        ("DELEGATED_PERMISSION_URL", &url),
        ("DELEGATED_TIMEOUT_SECS", "2"),
    ])
    .await;
    for (method, params) in every_method("alpha", &format!("sha256:{}", "a".repeat(64))) {
        Api::basic(&reg, ALICE)
            .call(method, params.clone())
            .await
            .assert_error(503, "try again later");
        let anonymous = Api::anonymous(&reg).call(method, params).await;
        anonymous.assert_error(401, "authentication required");
    }
}

/// A browser's CORS preflight of a credentialed JSON `POST` from `origin`.
async fn preflight(reg: &Registry, origin: &str) -> ApiReply {
    let headers = [
        ("Origin", origin),
        ("Access-Control-Request-Method", "POST"),
        (
            "Access-Control-Request-Headers",
            "authorization,content-type",
        ),
    ];
    Api::anonymous(reg)
        .raw("OPTIONS", "/api/listRepositories", &headers, Vec::new())
        .await
}

#[tokio::test]
async fn dashboards_named_by_api_cors_origins_may_call_with_credentials() {
    let files = AuthFiles::new();
    let origins = format!("{DASHBOARD}, http://localhost:3000, https://*.cloud.example.org");
    let reg = start_basic(&files, &[("API_CORS_ORIGINS", &origins)]).await;
    let allowed = preflight(&reg, DASHBOARD).await;
    assert_eq!(allowed.status, 200);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some(DASHBOARD)
    );
    assert_eq!(
        allowed.header("access-control-allow-credentials"),
        Some("true")
    );
    let methods = allowed
        .header("access-control-allow-methods")
        .unwrap_or_default();
    assert!(methods.contains("POST"), "{methods}");
    let headers = allowed
        .header("access-control-allow-headers")
        .unwrap_or_default();
    assert!(
        headers.contains("authorization") && headers.contains("content-type"),
        "{headers}"
    );
    assert!(
        allowed
            .header("vary")
            .unwrap_or_default()
            .contains("origin")
    );
    let stranger = preflight(&reg, "https://evil.example.com").await;
    assert_eq!(stranger.header("access-control-allow-origin"), None);
    // One wildcard label (the eddisonso registry's `*.cloud.<domain>` dashboards): any one
    // label in its place, nothing deeper, nothing else.
    let labelled = preflight(&reg, "https://console.cloud.example.org").await;
    assert_eq!(
        labelled.header("access-control-allow-origin"),
        Some("https://console.cloud.example.org")
    );
    for origin in [
        "https://a.b.cloud.example.org",
        "https://evilcloud.example.org",
        "http://console.cloud.example.org",
    ] {
        let reply = preflight(&reg, origin).await;
        assert_eq!(
            reply.header("access-control-allow-origin"),
            None,
            "{origin}"
        );
    }

    // The answers themselves, successes and refusals alike, are readable by the dashboard.
    let origin = [("Origin", DASHBOARD), ("Content-Type", "application/json")];
    let body = json!({"project": "alpha"}).to_string().into_bytes();
    let alice = Api::basic(&reg, ALICE);
    let ok = alice
        .raw("POST", "/api/listRepositories", &origin, body.clone())
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.header("access-control-allow-origin"), Some(DASHBOARD));
    assert_eq!(ok.header("access-control-allow-credentials"), Some("true"));
    let refused = Api::anonymous(&reg)
        .raw("POST", "/api/listRepositories", &origin, body.clone())
        .await;
    assert_eq!(refused.status, 401);
    assert_eq!(
        refused.header("access-control-allow-origin"),
        Some(DASHBOARD)
    );
    let local = [
        ("Origin", "http://localhost:3000"),
        ("Content-Type", "application/json"),
    ];
    let reply = alice
        .raw("POST", "/api/listRepositories", &local, body)
        .await;
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );

    // Only /api/ speaks CORS.
    let registry_api = send(
        reg.client
            .get(reg.url("/v2/"))
            .basic_auth(ALICE.0, Some(ALICE.1))
            .header("Origin", DASHBOARD),
    )
    .await;
    assert_eq!(registry_api.status, 200);
    assert!(
        registry_api
            .headers
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn without_api_cors_origins_no_origin_is_allowed() {
    let files = AuthFiles::new();
    let reg = start_basic(&files, &[]).await;
    let headers = [
        ("Origin", DASHBOARD),
        ("Access-Control-Request-Method", "POST"),
    ];
    let preflight = Api::anonymous(&reg)
        .raw("OPTIONS", "/api/listTags", &headers, Vec::new())
        .await;
    assert_eq!(preflight.header("access-control-allow-origin"), None);
    let origin = [("Origin", DASHBOARD), ("Content-Type", "application/json")];
    let body = json!({"project": "alpha"}).to_string().into_bytes();
    let reply = Api::basic(&reg, ALICE)
        .raw("POST", "/api/listRepositories", &origin, body)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("access-control-allow-origin"), None);
}

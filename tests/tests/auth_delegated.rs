//! `AUTH_MODE=delegated` on the real binary, against a permission service started by the test
//! (a small HTTP server on a loopback port, applying the tenants' policy of
//! `registry_tests::auth`). The registry forwards the caller's Basic credentials with the
//! project and permission, honours the answers, remembers them for `AUTH_CACHE_TTL_SECS`, and
//! answers 503, never access, when the service fails.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use registry_tests::auth::{self, ALICE, BOB, Client, Scheme};
use registry_tests::{Registry, assert_error, send};
use serde_json::{Value, json};

/// How the permission service behaves.
const HEALTHY: u8 = 0;
const FAILING: u8 = 1;
const GARBLED: u8 = 2;

/// A question as the permission service got it: the `Authorization` header and the body.
type Question = (Option<String>, Value);

/// The permission service: every question it got, and how it behaves now.
#[derive(Debug, Clone, Default)]
struct Permissions {
    questions: Arc<Mutex<Vec<Question>>>,
    behaviour: Arc<AtomicU8>,
}

impl Permissions {
    fn questions(&self) -> Vec<Question> {
        self.questions.lock().expect("lock").clone()
    }

    fn set(&self, behaviour: u8) {
        self.behaviour.store(behaviour, Ordering::SeqCst);
    }
}

/// The policy of `registry_tests::auth`: alice owns alpha and reads shared; bob owns beta,
/// shared and public.
fn allowed(user: &str, project: &str, permission: &str) -> bool {
    match (user, project) {
        ("alice", "alpha") | ("bob", "beta" | "shared" | "public") => true,
        ("alice", "shared") => permission == "registry.pull",
        _ => false,
    }
}

/// `POST /permission`: `401` for unknown credentials; otherwise alice's answers in the
/// `{"ok":true,"result":{…}}` envelope, bob's as a bare `{"allowed":…}` or a `403`.
async fn permission(
    State(service): State<Permissions>,
    headers: HeaderMap,
    Json(question): Json<Value>,
) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    service
        .questions
        .lock()
        .expect("lock")
        .push((authorization.clone(), question.clone()));
    match service.behaviour.load(Ordering::SeqCst) {
        FAILING => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        GARBLED => return Json(json!({"ok": true})).into_response(),
        _ => {}
    }
    let user = [ALICE, BOB].into_iter().find_map(|(user, password)| {
        let expected = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
        (authorization.as_deref() == Some(expected.as_str())).then_some(user)
    });
    let Some(user) = user else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let permission = question["permission"].as_str().unwrap_or_default();
    let verdict = match question["project"].as_str() {
        None => permission == "registry.login",
        Some(project) => allowed(user, project, permission),
    };
    match (user, verdict) {
        ("alice", verdict) => {
            Json(json!({"ok": true, "result": {"allowed": verdict}})).into_response()
        }
        (_, true) => Json(json!({"allowed": true})).into_response(),
        (_, false) => StatusCode::FORBIDDEN.into_response(),
    }
}

/// Serves the permission service on a free loopback port; returns its URL.
async fn serve(service: Permissions) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/permission",
        listener.local_addr().expect("address")
    );
    let app = Router::new()
        .route("/permission", post(permission))
        .with_state(service);
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

async fn start(url: &str, cache_ttl: &str) -> Registry {
    Registry::start_with(&[
        ("AUTH_MODE", "delegated"),
        ("DELEGATED_PERMISSION_URL", url),
        ("AUTH_CACHE_TTL_SECS", cache_ttl),
    ])
    .await
}

#[tokio::test]
async fn tenants_are_kept_apart() {
    let service = Permissions::default();
    let reg = start(&serve(service.clone()).await, "30").await;
    auth::tenant_matrix(&reg, Scheme::Basic).await;
    assert!(
        service.questions().iter().all(|(_, q)| {
            q["permission"]
                .as_str()
                .is_some_and(|p| p.starts_with("registry."))
        }),
        "{:?}",
        service.questions()
    );
}

#[tokio::test]
async fn the_service_gets_the_callers_credentials_and_the_question() {
    let service = Permissions::default();
    let reg = start(&serve(service.clone()).await, "0").await;
    let alice = Client::new(&reg, Scheme::Basic, Some(ALICE));
    let header = format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", ALICE.0, ALICE.1))
    );
    let image = alice.push_image("alpha/app", "v1", 31).await;

    let cases = [
        (
            "GET",
            "/v2/",
            json!({"project": null, "permission": "registry.login"}),
        ),
        (
            "GET",
            "/v2/alpha/app/manifests/v1",
            json!({"project": "alpha", "permission": "registry.pull"}),
        ),
        (
            "POST",
            "/v2/alpha/app/blobs/uploads/",
            json!({"project": "alpha", "permission": "registry.push"}),
        ),
        (
            "DELETE",
            "/v2/alpha/app/manifests/nope",
            // Deletes are `registry.push`, as the Deploys.app API names them.
            json!({"project": "alpha", "permission": "registry.push"}),
        ),
    ];
    for (method, path, question) in cases {
        let before = service.questions().len();
        let reply = alice.send(method, path, None).await;
        assert!(
            reply.status < 400 || reply.status == 404,
            "{method} {path}: {}",
            reply.text()
        );
        let asked = service.questions();
        assert_eq!(asked.len(), before + 1, "{method} {path}: {asked:?}");
        assert_eq!(asked[before], (Some(header.clone()), question));
    }

    // Bad credentials: the service says 401, the client gets the Basic challenge. No
    // credentials at all: the service is not asked.
    let wrong = Client::new(&reg, Scheme::Basic, Some((ALICE.0, "wrong")));
    for path in ["/v2/", "/v2/alpha/app/manifests/v1"] {
        let reply = wrong.send("GET", path, None).await;
        assert_error(&reply, 401, "UNAUTHORIZED");
        assert_eq!(
            reply.header("www-authenticate"),
            Some(r#"Basic realm="registry""#)
        );
    }
    let before = service.questions().len();
    auth::assert_anonymous_refused(
        &reg,
        "alpha/app",
        &image.digest,
        r#"Basic realm="registry""#,
    )
    .await;
    assert_eq!(
        service.questions().len(),
        before,
        "anonymous requests were forwarded"
    );
    let log = reg.log();
    assert!(
        !log.contains(ALICE.1) && !log.contains(&header[6..]),
        "a secret in the log"
    );
}

/// How many questions five pulls by alice cost.
async fn questions_for_pulls(service: &Permissions, reg: &Registry) -> usize {
    let before = service.questions().len();
    let alice = Client::new(reg, Scheme::Basic, Some(ALICE));
    for _ in 0..5 {
        let reply = alice.send("GET", "/v2/alpha/app/manifests/v1", None).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    service.questions().len() - before
}

#[tokio::test]
async fn answers_are_remembered_for_the_configured_time() {
    let service = Permissions::default();
    let url = serve(service.clone()).await;
    let cached = start(&url, "300").await;
    let uncached = start(&url, "0").await;
    for reg in [&cached, &uncached] {
        Client::new(reg, Scheme::Basic, Some(ALICE))
            .push_image("alpha/app", "v1", 41)
            .await;
    }
    assert_eq!(
        questions_for_pulls(&service, &cached).await,
        1,
        "only the first of five pulls asks"
    );
    assert_eq!(
        questions_for_pulls(&service, &uncached).await,
        5,
        "AUTH_CACHE_TTL_SECS=0 remembers nothing"
    );
    // Another password is another question, even for the same user and project.
    let before = service.questions().len();
    let reply = Client::new(&cached, Scheme::Basic, Some((ALICE.0, "other")))
        .send("GET", "/v2/alpha/app/manifests/v1", None)
        .await;
    assert_error(&reply, 401, "UNAUTHORIZED");
    assert_eq!(service.questions().len(), before + 1);
}

#[tokio::test]
async fn a_failing_service_gives_503_never_access() {
    let service = Permissions::default();
    let reg = start(&serve(service.clone()).await, "0").await;
    let alice = Client::new(&reg, Scheme::Basic, Some(ALICE));
    alice.push_image("alpha/app", "v1", 51).await;
    for behaviour in [FAILING, GARBLED] {
        service.set(behaviour);
        for (method, path) in [
            ("GET", "/v2/"),
            ("GET", "/v2/_catalog"),
            ("GET", "/v2/alpha/app/manifests/v1"),
            ("POST", "/v2/alpha/app/blobs/uploads/"),
        ] {
            let reply = alice.send(method, path, None).await;
            assert_error(&reply, 503, "UNAVAILABLE");
        }
    }
    service.set(HEALTHY);
    let reply = alice.send("GET", "/v2/alpha/app/manifests/v1", None).await;
    assert_eq!(reply.status, 200, "{}", reply.text());

    // Nobody listening at all.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/permission",
        closed.local_addr().expect("address")
    );
    drop(closed);
    let reg = start(&url, "30").await;
    let reply = Client::new(&reg, Scheme::Basic, Some(ALICE))
        .send("GET", "/v2/alpha/app/manifests/v1", None)
        .await;
    assert_error(&reply, 503, "UNAVAILABLE");
    let reply = send(reg.client.get(reg.url("/healthz"))).await;
    assert_eq!(reply.status, 200);
}

//! The load balancer's route table against every endpoint of the distribution API: a corpus of
//! requests (every method and route of the spec, its paths written by the one route grammar,
//! `registry_common::http::Endpoint`; repository names of 1 to 8 components, names made of the
//! words the endpoints use, with and without query strings) goes through the URL map's
//! matching rules (`registry_tests::services::url_map`; the table stays data, as Terraform reads
//! it), and each request is then sent, in process, to the router of the service it landed on,
//! wrapped as that service's binary wraps it (`registry_app`), on a real state (SQLite and the
//! filesystem in a temporary directory). Whatever the answer (a missing blob is a fine answer),
//! it must not be the "no such endpoint" or "method not allowed" fallback: the service serves
//! the route.

use std::collections::{BTreeMap, BTreeSet};

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode};
use registry_common::auth::Authorizer;
use registry_common::bootstrap::open_state;
use registry_common::config::{ServiceConfig, Vars};
use registry_common::http::{Endpoint, registry_app};
use registry_common::state::AppState;
use registry_tests::services::url_map::RouteTable;
use tower::ServiceExt;

const DIGEST: &str = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";
const UPLOAD_ID: &str = "0f6b2a4e-1d3c-4b8a-9e2f-5a7c9d1e3b40";
/// The words of the API's paths, which are valid repository name components too.
const WORDS: &[&str] = &[
    "blobs",
    "manifests",
    "tags",
    "uploads",
    "referrers",
    "list",
    "v2",
    "api",
];

/// What kind of endpoint a corpus request exercises, to say where it should go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Blob,
    UploadStart,
    UploadChunk,
    UploadFinish,
    UploadSession,
    Manifest,
    Tags,
    Referrers,
    Base,
    Api,
}

#[derive(Debug)]
struct Case {
    kind: Kind,
    depth: usize,
    method: &'static str,
    target: String,
    body: &'static [u8],
}

fn names(depth: usize) -> Vec<String> {
    let mut names = vec![
        (0..depth)
            .map(|i| format!("c{i}"))
            .collect::<Vec<_>>()
            .join("/"),
    ];
    for word in WORDS {
        names.push(vec![*word; depth].join("/"));
    }
    names.push(
        (0..depth)
            .map(|i| WORDS[(i + depth) % WORDS.len()])
            .collect::<Vec<_>>()
            .join("/"),
    );
    names
}

fn corpus() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |kind, depth, method, target: String, body| {
        cases.push(Case {
            kind,
            depth,
            method,
            target,
            body,
        })
    };
    for depth in 1..=8 {
        for n in names(depth) {
            let blob = Endpoint::Blob.path(&n, DIGEST);
            for method in ["GET", "HEAD", "DELETE"] {
                add(Kind::Blob, depth, method, blob.clone(), b"");
            }
            add(
                Kind::Blob,
                depth,
                "GET",
                format!("{blob}?ns=docker.io"),
                b"",
            );
            let start = Endpoint::UploadStart.path(&n, "");
            add(Kind::UploadStart, depth, "POST", start.clone(), b"");
            add(
                Kind::UploadStart,
                depth,
                "POST",
                format!("/v2/{n}/blobs/uploads"),
                b"",
            );
            add(
                Kind::UploadStart,
                depth,
                "POST",
                format!("{start}?digest={DIGEST}"),
                b"foo",
            );
            let mount = format!("{start}?mount={DIGEST}&from=other/repo");
            add(Kind::UploadStart, depth, "POST", mount, b"");
            let session = Endpoint::UploadSession.path(&n, UPLOAD_ID);
            add(Kind::UploadChunk, depth, "PATCH", session.clone(), b"abc");
            let finish = format!("{session}?digest={DIGEST}");
            add(Kind::UploadFinish, depth, "PUT", finish, b"");
            add(Kind::UploadSession, depth, "GET", session.clone(), b"");
            add(Kind::UploadSession, depth, "DELETE", session, b"");
            for reference in ["latest", DIGEST] {
                let manifest = Endpoint::Manifest.path(&n, reference);
                for method in ["GET", "HEAD", "DELETE"] {
                    add(Kind::Manifest, depth, method, manifest.clone(), b"");
                }
                add(Kind::Manifest, depth, "PUT", manifest.clone(), b"{}");
                add(
                    Kind::Manifest,
                    depth,
                    "GET",
                    format!("{manifest}?ns=docker.io"),
                    b"",
                );
            }
            let tags = Endpoint::Tags.path(&n, "");
            add(Kind::Tags, depth, "GET", tags.clone(), b"");
            add(Kind::Tags, depth, "GET", format!("{tags}?n=10&last=a"), b"");
            let referrers = Endpoint::Referrers.path(&n, DIGEST);
            add(Kind::Referrers, depth, "GET", referrers.clone(), b"");
            let filtered = format!("{referrers}?artifactType=application/vnd.example");
            add(Kind::Referrers, depth, "GET", filtered, b"");
        }
    }
    let (base, catalog) = (Endpoint::Base.route(), Endpoint::Catalog.route());
    for target in [
        base.to_owned(),
        catalog.to_owned(),
        format!("{catalog}?n=5&last=a"),
    ] {
        add(Kind::Base, 0, "GET", target, b"");
    }
    add(Kind::Base, 0, "HEAD", base.to_owned(), b"");
    for (method, target) in [
        ("GET", "/api/"),
        ("GET", "/api/projects"),
        ("POST", "/api/projects/p/usage?from=1"),
        ("DELETE", "/api/v2/blobs"),
    ] {
        add(Kind::Api, 0, method, target.to_owned(), b"");
    }
    cases
}

/// Where the table is meant to send a kind of request: upload for what only uploads do,
/// blob for blob reads of names the templates reach (1 to 4 components), api for `/api/`,
/// and the default service for the rest.
fn intended_service(case: &Case) -> &'static str {
    match case.kind {
        Kind::UploadStart | Kind::UploadChunk => "upload",
        Kind::UploadFinish if case.depth <= 4 => "upload",
        Kind::Blob if case.depth <= 4 => "blob",
        Kind::Api => "api",
        _ => "manifest",
    }
}

/// Each service's app, built as its binary builds it, on one real state.
async fn service_apps(data: &std::path::Path) -> BTreeMap<&'static str, Router> {
    let vars = Vars::from_iter([("DATA_DIR", data.display().to_string())]);
    let config = ServiceConfig::from_vars(&vars).expect("config");
    // As `service_main` does: the authorizer every request is checked by, in the state.
    let auth = Authorizer::from_config(&config.auth).expect("authorizer");
    let state = open_state(&config, auth).await.expect("open state");
    let app = |routes: Router<AppState>| registry_app(routes, state.clone());
    BTreeMap::from([
        ("blob", app(registry_blob::service_routes())),
        ("manifest", app(registry_manifest::service_routes())),
        ("upload", app(registry_upload::service_routes())),
        ("api", app(registry_api::service_routes(&config))),
    ])
}

/// Sends one request to an app; its status and whole body.
async fn call(app: &Router, request: Request<Body>) -> (StatusCode, axum::body::Bytes) {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("read body");
    (status, body)
}

/// `Some(reason)` when the answer is a fallback: the service does not serve the request.
fn fallback_reason(status: StatusCode, body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let message = value["errors"][0]["message"].as_str()?;
    let fallback = matches!(
        (status.as_u16(), message),
        (404, "no such endpoint") | (405, "method not allowed on this endpoint")
    );
    fallback.then(|| format!("{status} {message}"))
}

#[tokio::test]
async fn every_request_lands_on_a_service_that_serves_it() {
    let table = RouteTable::load();
    let data = tempfile::tempdir().expect("temp dir");
    let apps = service_apps(data.path()).await;
    assert_eq!(
        table
            .services
            .iter()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        apps.keys().copied().collect::<BTreeSet<_>>(),
        "the table names exactly the four services"
    );
    let corpus = corpus();
    assert!(corpus.len() > 1500, "corpus of {} requests", corpus.len());
    let mut landed: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for case in &corpus {
        let service = table.route(case.method, &case.target);
        *landed.entry(service).or_default() += 1;
        let what = format!("{} {} -> {service}", case.method, case.target);
        if service != intended_service(case) {
            failures.push(format!("{what}: meant for {}", intended_service(case)));
        }
        let mut request = Request::builder().method(case.method).uri(&case.target);
        if !case.body.is_empty() {
            request = request
                .header("content-type", "application/octet-stream")
                .header("content-length", case.body.len())
                .header("content-range", format!("0-{}", case.body.len() - 1));
        }
        let request = request.body(Body::from(case.body)).expect("request");
        let (status, body) = call(&apps[service], request).await;
        if let Some(reason) = fallback_reason(status, &body) {
            failures.push(format!("{what}: {reason}"));
        }
        if status.is_server_error() {
            failures.push(format!(
                "{what}: {status} {}",
                String::from_utf8_lossy(&body)
            ));
        }
        if case.method == "HEAD" {
            // No body to tell a fallback by: a 405 is one, and the GET twin must be served.
            let twin = Request::get(&case.target)
                .body(Body::empty())
                .expect("request");
            let (twin_status, twin_body) = call(&apps[service], twin).await;
            if status == StatusCode::METHOD_NOT_ALLOWED {
                failures.push(format!("{what}: 405"));
            } else if let Some(reason) = fallback_reason(twin_status, &twin_body) {
                failures.push(format!("{what}: its GET twin got {reason}"));
            }
        }
        if case.kind == Kind::Api {
            let value: serde_json::Value = serde_json::from_slice(&body).expect("api JSON");
            assert_eq!(
                value,
                serde_json::json!({"ok": false, "error": {"message": "unknown method"}}),
                "{what}"
            );
            assert_eq!(status, StatusCode::NOT_FOUND, "{what}");
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} requests misrouted or not served:\n{}",
        failures.len(),
        corpus.len(),
        failures.join("\n")
    );
    for service in ["blob", "manifest", "upload", "api"] {
        assert!(
            landed.get(service).is_some_and(|n| *n > 0),
            "{service}: {landed:?}"
        );
    }
}

#[test]
fn routing_rules_follow_the_url_map_semantics() {
    let table = RouteTable::load();
    // Priority order decides: a PATCH on a blob path is an upload (rule 100), not a blob read.
    assert_eq!(
        table.route("PATCH", &format!("/v2/a/blobs/{DIGEST}")),
        "upload"
    );
    // A manifest PUT that carries a digest parameter is not mistaken for an upload.
    assert_eq!(
        table.route("PUT", &format!("/v2/a/manifests/latest?digest={DIGEST}")),
        "manifest"
    );
    // The query string is not part of the path a template sees.
    assert_eq!(
        table.route("GET", &format!("/v2/a/b/blobs/{DIGEST}?x=/y")),
        "blob"
    );
    // Five components: beyond the templates, so the default service.
    assert_eq!(
        table.route("GET", &format!("/v2/a/b/c/d/e/blobs/{DIGEST}")),
        "manifest"
    );
    assert_eq!(table.route("GET", "/healthz"), "manifest");
    assert_eq!(table.route("GET", "/api"), "manifest");
    assert_eq!(table.route("GET", "/api/x"), "api");
    // The job endpoints (INTERNAL_SECRET) are the api service's too.
    assert_eq!(table.route("POST", "/internal/runAll"), "api");
    assert_eq!(table.route("POST", "/internal/runBlobGC"), "api");
}

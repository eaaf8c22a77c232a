//! `AUTH_MODE=basic` on the real binary: htpasswd users and the access-rules file. Two tenants
//! cannot touch each other's projects through any endpoint; anonymous callers get the Basic
//! challenge; a failed login never says which half was wrong and no secret reaches the log;
//! a file the registry cannot use stops it at start-up; skopeo logs in and copies.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use registry_tests::auth::{self, ALICE, AuthFiles, BOB, Client, Scheme};
use registry_tests::{Registry, assert_error, registry_bin, send};

/// Runs the binary with `env` and returns its error output; it must exit within 30 s with
/// status 2: a configuration it cannot use stops it before it serves.
fn start_fails(env: &[(&str, &str)]) -> String {
    registry_tests::start_fails(&registry_bin(), &[], env, Duration::from_secs(30)).0
}

const CHALLENGE: &str = r#"Basic realm="registry""#;

async fn start(files: &AuthFiles) -> Registry {
    Registry::start_with(&[
        ("AUTH_MODE", "basic"),
        (
            "HTPASSWD_FILE",
            files.htpasswd.to_str().expect("UTF-8 path"),
        ),
        ("AUTH_RULES_FILE", files.rules.to_str().expect("UTF-8 path")),
    ])
    .await
}

#[tokio::test]
async fn tenants_are_kept_apart() {
    let files = AuthFiles::new();
    let reg = start(&files).await;
    auth::tenant_matrix(&reg, Scheme::Basic).await;
}

#[tokio::test]
async fn anonymous_callers_get_the_basic_challenge() {
    let files = AuthFiles::new();
    let reg = start(&files).await;
    let bob = Client::new(&reg, Scheme::Basic, Some(BOB));
    let private = bob.push_image("beta/app", "v1", 7).await;
    auth::assert_anonymous_refused(&reg, "beta/app", &private.digest, CHALLENGE).await;

    // The rules let anonymous callers pull from `public`, and nothing more.
    let public = bob.push_image("public/app", "v1", 8).await;
    let anonymous = Client::new(&reg, Scheme::Basic, None);
    let reply = anonymous
        .send("GET", "/v2/public/app/manifests/v1", None)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.body, public.manifest);
    let layer = &public.layers[0];
    let reply = anonymous
        .send("GET", &format!("/v2/public/app/blobs/{}", layer.0), None)
        .await;
    assert_eq!(reply.body, layer.1);
    let reply = anonymous
        .send("POST", "/v2/public/app/blobs/uploads/", None)
        .await;
    assert_error(&reply, 401, "UNAUTHORIZED");
    assert_eq!(reply.header("www-authenticate"), Some(CHALLENGE));
    let reply = anonymous.send("GET", "/v2/", None).await;
    assert_error(&reply, 401, "UNAUTHORIZED");
    let reply = Client::new(&reg, Scheme::Basic, Some(ALICE))
        .send("GET", "/v2/", None)
        .await;
    assert_eq!(reply.status, 200, "GET /v2/ with valid credentials");
}

#[tokio::test]
async fn failed_logins_do_not_say_which_half_was_wrong() {
    let files = AuthFiles::new();
    let reg = start(&files).await;
    let path = "/v2/alpha/app/tags/list";
    let wrong_password = Client::new(&reg, Scheme::Basic, Some((ALICE.0, "guess")));
    let unknown_user = Client::new(&reg, Scheme::Basic, Some(("mallory", ALICE.1)));
    let empty_password = Client::new(&reg, Scheme::Basic, Some((ALICE.0, "")));
    let mut answers = Vec::new();
    for client in [wrong_password, unknown_user, empty_password] {
        for path in [path, "/v2/", "/v2/_catalog", "/v2/public/app/manifests/v1"] {
            let reply = client.send("GET", path, None).await;
            assert_error(&reply, 401, "UNAUTHORIZED");
            assert_eq!(reply.header("www-authenticate"), Some(CHALLENGE));
            answers.push(reply.body);
        }
    }
    let malformed = send(
        reg.client
            .get(reg.url(path))
            .header("Authorization", "Basic not-base64!"),
    )
    .await;
    assert_error(&malformed, 401, "UNAUTHORIZED");
    answers.push(malformed.body);
    let bearer = send(reg.client.get(reg.url(path)).bearer_auth("x.y.z")).await;
    assert_error(&bearer, 401, "UNAUTHORIZED");
    answers.push(bearer.body);
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "the answers differ: {:?}",
        answers
            .iter()
            .map(|b| String::from_utf8_lossy(b))
            .collect::<Vec<_>>()
    );

    // The right credentials work, and no secret (password or header) reached the log.
    let alice = Client::new(&reg, Scheme::Basic, Some(ALICE));
    alice.push_image("alpha/app", "v1", 9).await;
    let log = reg.log();
    let header = STANDARD.encode(format!("{}:{}", ALICE.0, ALICE.1));
    for secret in [ALICE.1, "guess", header.as_str(), "not-base64!"] {
        assert!(!log.contains(secret), "{secret:?} in the log:\n{log}");
    }
    assert!(
        log.contains("login failed"),
        "failed logins are logged:\n{log}"
    );
}

#[tokio::test]
async fn files_it_cannot_use_stop_the_start() {
    let files = AuthFiles::new();
    let md5 = files.path("md5-htpasswd");
    std::fs::write(
        &md5,
        "# users\nalice:$apr1$Q3gHOd4F$Lr5dRZzN2Fg3C4Ul5c7yc/\n",
    )
    .expect("write");
    let rules = files.rules.to_str().expect("UTF-8 path");
    let stderr = start_fails(&[
        ("AUTH_MODE", "basic"),
        ("HTPASSWD_FILE", &md5),
        ("AUTH_RULES_FILE", rules),
    ]);
    for needle in ["HTPASSWD_FILE", "line 2", "MD5", "bcrypt", "htpasswd -B"] {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
    let htpasswd = files.htpasswd.to_str().expect("UTF-8 path");
    let bad_rules = files.path("bad-rules.json");
    std::fs::write(
        &bad_rules,
        r#"{"rules":[{"subjects":["alice"],"projects":["a"],"actions":["pull"]}]}"#,
    )
    .expect("write");
    let stderr = start_fails(&[
        ("AUTH_MODE", "basic"),
        ("HTPASSWD_FILE", htpasswd),
        ("AUTH_RULES_FILE", &bad_rules),
    ]);
    assert!(
        stderr.contains("AUTH_RULES_FILE") && stderr.contains("user:<name>"),
        "{stderr}"
    );
    let stderr = start_fails(&[("AUTH_MODE", "basic"), ("HTPASSWD_FILE", htpasswd)]);
    assert!(stderr.contains("AUTH_RULES_FILE"), "{stderr}");
    let stderr = start_fails(&[("HOST", "0.0.0.0")]);
    assert!(stderr.contains("ALLOW_ANONYMOUS_REMOTE"), "{stderr}");
}

#[tokio::test]
async fn skopeo_logs_in_and_copies() {
    let files = AuthFiles::new();
    let reg = start(&files).await;
    auth::skopeo::logs_in_and_copies(&reg).await;
}

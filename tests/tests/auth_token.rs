//! `AUTH_MODE=token` on the real binary: the Docker token flow. The registry's own
//! `/auth/token` grants what the rules allow and nothing more; every bearer token is checked
//! (expiry, not-before, audience, signature, `alg: none`, scope); tokens of another issuer
//! verify with its public key; the challenges are exact; skopeo follows them.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use registry_tests::auth::{self, ALICE, AuthFiles, BOB, Client, Scheme};
use registry_tests::{Registry, Reply, assert_error, send};
use serde_json::{Value, json};

const SECRET: &str = "a-test-secret-of-more-than-32-bytes-0123456789";

async fn start(files: &AuthFiles) -> Registry {
    Registry::start_with(&[
        ("AUTH_MODE", "token"),
        ("JWT_SECRET", SECRET),
        ("TOKEN_TTL_SECS", "120"),
        (
            "HTPASSWD_FILE",
            files.htpasswd.to_str().expect("UTF-8 path"),
        ),
        ("AUTH_RULES_FILE", files.rules.to_str().expect("UTF-8 path")),
    ])
    .await
}

fn fixture(name: &str) -> String {
    format!("{}/fixtures/auth/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Claims as the registry issues them, for `alpha/app` pull, with `changes` applied.
fn claims(changes: Value) -> Value {
    let now = now();
    let mut claims = json!({
        "iss": "registry", "sub": "alice", "aud": "registry",
        "exp": now + 300, "nbf": now, "iat": now, "jti": "test",
        "access": [{"type": "repository", "name": "alpha/app", "actions": ["pull"]}],
    });
    for (k, v) in changes.as_object().expect("object") {
        claims[k] = v.clone();
    }
    claims
}

fn sign(claims: &Value, alg: Algorithm, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).expect("sign")
}

fn hs256(claims: &Value) -> String {
    sign(
        claims,
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
}

async fn get_with(reg: &Registry, path: &str, token: &str) -> Reply {
    send(reg.client.get(reg.url(path)).bearer_auth(token)).await
}

fn challenge(reg: &Registry, scope: Option<&str>, error: Option<&str>) -> String {
    let mut want = format!(
        r#"Bearer realm="http://{}/auth/token",service="registry""#,
        reg.host()
    );
    if let Some(scope) = scope {
        want.push_str(&format!(r#",scope="{scope}""#));
    }
    if let Some(error) = error {
        want.push_str(&format!(r#",error="{error}""#));
    }
    want
}

#[track_caller]
fn assert_challenged(reply: &Reply, want: &str) {
    assert_error(reply, 401, "UNAUTHORIZED");
    assert_eq!(reply.header("www-authenticate"), Some(want));
}

#[tokio::test]
async fn tenants_are_kept_apart() {
    let files = AuthFiles::new();
    let reg = start(&files).await;
    auth::tenant_matrix(&reg, Scheme::Token).await;
}

#[tokio::test]
async fn anonymous_callers_get_the_bearer_challenge() {
    let files = AuthFiles::new();
    let reg = start(&files).await;
    let bob = Client::new(&reg, Scheme::Token, Some(BOB));
    let image = bob.push_image("beta/app", "v1", 5).await;
    let template = format!(
        r#"Bearer realm="http://{}/auth/token",service="registry",scope="{{scope}}""#,
        reg.host()
    );
    auth::assert_anonymous_refused(&reg, "beta/app", &image.digest, &template).await;

    // An anonymous token carries what anonymous callers may do: pull from `public`.
    let public = bob.push_image("public/app", "v1", 6).await;
    let anonymous = Client::new(&reg, Scheme::Token, None);
    let reply = anonymous
        .send("GET", "/v2/public/app/manifests/v1", None)
        .await;
    assert_eq!(reply.body, public.manifest, "{}", reply.text());
    let reply = anonymous
        .send("GET", "/v2/beta/app/manifests/v1", None)
        .await;
    let scope = "repository:beta/app:pull";
    assert_challenged(&reply, &challenge(&reg, Some(scope), None));
    // Behind a proxy, the realm follows the forwarded scheme and host.
    let reply = send(
        reg.client
            .get(reg.url("/v2/"))
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Host", "registry.example"),
    )
    .await;
    assert_eq!(
        reply.header("www-authenticate"),
        Some(r#"Bearer realm="https://registry.example/auth/token",service="registry""#)
    );
}

/// The claims of a token, read without checking it (the registry checks it).
fn payload(token: &str) -> Value {
    let body = token.split('.').nth(1).expect("JWT payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).expect("base64url")).expect("JSON")
}

#[tokio::test]
async fn the_token_endpoint_grants_what_the_rules_allow() {
    let files = AuthFiles::new();
    let reg = start(&files).await;
    let request = |query: &[(&str, &str)], creds: Option<(&str, &str)>| {
        let mut request = reg.client.get(reg.url("/auth/token")).query(query);
        if let Some((user, password)) = creds {
            request = request.basic_auth(user, Some(password));
        }
        send(request)
    };
    let query = [
        ("service", "registry"),
        ("account", "alice"),
        ("scope", "repository:alpha/app:pull,push,delete"),
        (
            "scope",
            "repository:beta/app:pull repository:shared/app:pull,push",
        ),
        ("scope", "registry:catalog:*"),
        ("offline_token", "true"),
        ("client_id", "docker"),
    ];
    let reply = request(&query, Some(ALICE)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let body = reply.json();
    let token = body["token"].as_str().expect("token");
    assert_eq!(body["access_token"], body["token"]);
    assert_eq!(body["expires_in"], 120);
    let issued_at = body["issued_at"].as_str().expect("issued_at");
    assert!(
        issued_at.len() == 20 && issued_at.ends_with('Z') && issued_at.as_bytes()[10] == b'T',
        "{issued_at}"
    );
    let claims = payload(token);
    assert_eq!(
        (&claims["iss"], &claims["sub"], &claims["aud"]),
        (&json!("registry"), &json!("alice"), &json!("registry"))
    );
    let iat = claims["iat"].as_u64().expect("iat");
    assert_eq!(claims["exp"].as_u64(), Some(iat + 120));
    assert!(claims["nbf"].as_u64().is_some_and(|nbf| nbf <= now()));
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert_eq!(
        claims["access"],
        json!([
            {"type": "repository", "name": "alpha/app", "actions": ["pull", "push", "delete"]},
            {"type": "repository", "name": "shared/app", "actions": ["pull"]},
            {"type": "registry", "name": "catalog", "actions": ["*"]},
        ])
    );
    let again = request(&query, Some(ALICE)).await.json();
    assert_ne!(
        payload(again["token"].as_str().expect("token"))["jti"],
        claims["jti"]
    );

    // Refusals: a wrong password and an unknown user alike, another service, another account.
    let basic = r#"Basic realm="registry""#;
    let wrong = request(&query, Some((ALICE.0, "nope"))).await;
    let unknown = request(&query, Some(("mallory", ALICE.1))).await;
    for reply in [&wrong, &unknown] {
        assert_error(reply, 401, "UNAUTHORIZED");
        assert_eq!(reply.header("www-authenticate"), Some(basic));
    }
    assert_eq!(wrong.body, unknown.body);
    let reply = request(&[("service", "elsewhere")], Some(ALICE)).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let reply = request(&[("service", "registry"), ("account", "bob")], Some(ALICE)).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let reply = request(&[("scope", "nonsense")], Some(ALICE)).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    // Anonymous: only what anonymous callers may do.
    let reply = request(
        &[
            ("scope", "repository:public/app:pull,push"),
            ("scope", "repository:alpha/app:pull"),
        ],
        None,
    )
    .await;
    let claims = payload(reply.json()["token"].as_str().expect("token"));
    assert_eq!(claims["sub"], "");
    assert_eq!(
        claims["access"],
        json!([{"type": "repository", "name": "public/app", "actions": ["pull"]}])
    );
}

#[tokio::test]
async fn every_bearer_token_is_checked() {
    let files = AuthFiles::new();
    let reg = start(&files).await;
    let alice = Client::new(&reg, Scheme::Token, Some(ALICE));
    alice.push_image("alpha/app", "v1", 11).await;
    alice.push_image("alpha/other", "v1", 12).await;
    Client::new(&reg, Scheme::Token, Some(BOB))
        .push_image("beta/app", "v1", 13)
        .await;
    let path = "/v2/alpha/app/manifests/v1";
    let reply = get_with(&reg, path, &hs256(&claims(json!({})))).await;
    assert_eq!(reply.status, 200, "a well-formed token: {}", reply.text());

    let pull = "repository:alpha/app:pull";
    let invalid = challenge(&reg, Some(pull), Some("invalid_token"));
    let now = now();
    let mut forged = hs256(&claims(json!({}))).into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let genuine = hs256(&claims(json!({})));
    let mut parts: Vec<String> = genuine.split('.').map(str::to_owned).collect();
    parts[1] = URL_SAFE_NO_PAD.encode(
        claims(json!({"access": [{"type": "repository", "name": "beta/app", "actions": ["*"]}]}))
            .to_string(),
    );
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let none_body = URL_SAFE_NO_PAD.encode(claims(json!({})).to_string());
    let other_key = EncodingKey::from_secret(b"another-secret-of-more-than-32-bytes-0123");
    let bad = [
        (
            "expired",
            hs256(&claims(json!({"exp": now - 600, "iat": now - 900}))),
        ),
        ("not yet valid", hs256(&claims(json!({"nbf": now + 600})))),
        (
            "another audience",
            hs256(&claims(json!({"aud": "other-registry"}))),
        ),
        ("no audience", hs256(&claims(json!({"aud": null})))),
        (
            "tampered signature",
            String::from_utf8(forged).expect("ASCII"),
        ),
        ("tampered claims", parts.join(".")),
        (
            "another key",
            sign(&claims(json!({})), Algorithm::HS256, &other_key),
        ),
        ("alg none", format!("{none_header}.{none_body}.")),
        ("garbage", "not-a-jwt".to_owned()),
    ];
    for (what, token) in &bad {
        let reply = get_with(&reg, path, token).await;
        assert_eq!(reply.status, 401, "{what}: {}", reply.text());
        assert_challenged(&reply, &invalid);
    }

    // Scope: a token for alpha/app does not open alpha/other (alice may ask for it: 401 with
    // insufficient_scope), nor beta/app (she may not: 403), nor a push to alpha/app.
    let token = alice.token(&[pull.to_owned()]).await;
    let reply = get_with(&reg, "/v2/alpha/other/manifests/v1", &token).await;
    let scope = "repository:alpha/other:pull";
    assert_challenged(
        &reply,
        &challenge(&reg, Some(scope), Some("insufficient_scope")),
    );
    let reply = get_with(&reg, "/v2/beta/app/manifests/v1", &token).await;
    assert_error(&reply, 403, "DENIED");
    let reply = send(
        reg.client
            .post(reg.url("/v2/alpha/app/blobs/uploads/"))
            .bearer_auth(&token),
    )
    .await;
    let scope = "repository:alpha/app:pull,push";
    assert_challenged(
        &reply,
        &challenge(&reg, Some(scope), Some("insufficient_scope")),
    );
    // The catalog needs `registry:catalog:*`.
    let reply = get_with(&reg, "/v2/_catalog", &token).await;
    let catalog = Some("registry:catalog:*");
    assert_challenged(
        &reply,
        &challenge(&reg, catalog, Some("insufficient_scope")),
    );
    // Basic credentials are not bearer tokens.
    let reply = send(
        reg.client
            .get(reg.url(path))
            .basic_auth(ALICE.0, Some(ALICE.1)),
    )
    .await;
    assert_challenged(&reply, &invalid);
}

#[tokio::test]
async fn tokens_of_another_issuer_verify_with_its_public_key() {
    let reg = Registry::start_with(&[
        ("AUTH_MODE", "token"),
        ("JWT_PUBLIC_KEYS_FILE", &fixture("rsa-public.pem")),
        ("JWT_ISSUER", "auth.example"),
        ("TOKEN_REALM", "https://auth.example/token"),
        ("TOKEN_SERVICE", "registry.example"),
    ])
    .await;
    let key = EncodingKey::from_rsa_pem(&std::fs::read(fixture("rsa-private.pem")).expect("key"))
        .expect("RSA key");
    let other = std::fs::read(fixture("other-rsa-private.pem")).expect("key");
    let other = EncodingKey::from_rsa_pem(&other).expect("RSA key");
    let token = |access: Value| {
        let claims =
            claims(json!({"iss": "auth.example", "aud": "registry.example", "access": access}));
        sign(&claims, Algorithm::RS256, &key)
    };
    let all = |name: &str| json!({"type": "repository", "name": name, "actions": ["*"]});
    let (alpha, beta) = (
        token(json!([all("alpha/app")])),
        token(json!([all("beta/app")])),
    );
    Client::with_token(&reg, &alpha)
        .push_image("alpha/app", "v1", 21)
        .await;
    Client::with_token(&reg, &beta)
        .push_image("beta/app", "v1", 22)
        .await;
    let reader = token(json!([
        {"type": "repository", "name": "alpha/app", "actions": ["pull"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]},
    ]));
    let reader = Client::with_token(&reg, &reader);
    assert_eq!(reader.catalog(10).await, vec![vec!["alpha/app".to_owned()]]);
    let reply = reader.send("GET", "/v2/alpha/app/manifests/v1", None).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = reader
        .send("POST", "/v2/alpha/app/blobs/uploads/", None)
        .await;
    let realm = r#"Bearer realm="https://auth.example/token",service="registry.example""#;
    assert_challenged(
        &reply,
        &format!(r#"{realm},scope="repository:alpha/app:pull,push",error="insufficient_scope""#),
    );
    let reply = reader.send("GET", "/v2/beta/app/manifests/v1", None).await;
    assert_challenged(
        &reply,
        &format!(r#"{realm},scope="repository:beta/app:pull",error="insufficient_scope""#),
    );
    let refused = [
        sign(
            &claims(json!({"iss": "someone-else", "aud": "registry.example"})),
            Algorithm::RS256,
            &key,
        ),
        sign(
            &claims(json!({"iss": "auth.example", "aud": "registry.example"})),
            Algorithm::RS256,
            &other,
        ),
        sign(
            &claims(json!({"iss": "auth.example", "aud": "registry.example"})),
            Algorithm::HS256,
            &EncodingKey::from_secret(&std::fs::read(fixture("rsa-public.pem")).expect("key")),
        ),
    ];
    for token in &refused {
        let reply = get_with(&reg, "/v2/", token).await;
        assert_error(&reply, 401, "UNAUTHORIZED");
    }
    // This registry issues no tokens here.
    let reply = send(reg.client.get(reg.url("/auth/token"))).await;
    assert_eq!(reply.status, 404, "{}", reply.text());
}

#[tokio::test]
async fn skopeo_logs_in_and_copies() {
    let files = AuthFiles::new();
    let reg = start(&files).await;
    auth::skopeo::logs_in_and_copies(&reg).await;
    let log = reg.log();
    assert!(
        log.contains("uri=/auth/token?") && log.contains("status=401"),
        "skopeo did not follow the challenge to the token endpoint:\n{log}"
    );
}

//! Unit tests of token signing and verification, with the test keys of `tests/fixtures/auth`.

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use super::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/auth")
        .join(name)
}

fn secret() -> Secret<String> {
    Secret::new(SECRET.to_owned())
}

fn keys(sources: KeySources<'_>, external_issuer: Option<&str>) -> TokenKeys {
    TokenKeys::load(
        sources,
        true,
        "registry-issuer",
        "registry.test",
        external_issuer,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn hmac_keys() -> TokenKeys {
    let secret = secret();
    keys(
        KeySources {
            signing_key_file: None,
            secret: Some(&secret),
            public_keys_file: None,
        },
        None,
    )
}

fn pull(name: &str) -> Vec<AccessEntry> {
    vec![AccessEntry::new("repository", name, ["pull".to_owned()])]
}

/// Signs arbitrary claims, as another issuer (or an attacker) would.
fn sign(claims: &serde_json::Value, alg: Algorithm, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap_or_else(|e| panic!("{e}"))
}

fn claims(extra: serde_json::Value) -> serde_json::Value {
    let now = unix_now();
    let mut claims = json!({
        "iss": "registry-issuer", "sub": "alice", "aud": "registry.test",
        "exp": now + 300, "nbf": now, "iat": now, "jti": "x",
        "access": [{"type": "repository", "name": "alpha/app", "actions": ["pull"]}],
    });
    if let (Some(base), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    claims
}

#[test]
fn own_hmac_tokens_round_trip() {
    let keys = hmac_keys();
    let issued = keys
        .issue("alice", pull("alpha/app"), Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(issued.expires_in, 300);
    let verified = keys
        .verify(issued.token.expose())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        verified,
        VerifiedToken {
            subject: "alice".to_owned(),
            access: pull("alpha/app"),
            own: true,
        }
    );
    let body = issued.token.expose().split('.').nth(1).unwrap_or_default();
    let body: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).unwrap_or_default())
            .unwrap_or_default();
    for claim in ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "access"] {
        assert!(body.get(claim).is_some(), "{claim} missing from {body}");
    }
    assert_eq!(body["exp"].as_u64(), Some(issued.issued_at + 300));
}

#[test]
fn time_audience_and_signature_are_checked() {
    let keys = hmac_keys();
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let now = unix_now();
    let cases = [
        (claims(json!({"exp": now - 3600})), TokenError::Expired),
        (claims(json!({"nbf": now + 3600})), TokenError::NotYetValid),
        (
            claims(json!({"aud": "another-registry"})),
            TokenError::WrongAudience,
        ),
        (
            claims(json!({"aud": ["x", "y"]})),
            TokenError::WrongAudience,
        ),
    ];
    for (claims, want) in cases {
        let token = sign(&claims, Algorithm::HS256, &key);
        assert_eq!(keys.verify(&token), Err(want), "{claims}");
    }
    let mut no_aud = claims(json!({}));
    no_aud.as_object_mut().map(|o| o.remove("aud"));
    assert_eq!(
        keys.verify(&sign(&no_aud, Algorithm::HS256, &key)),
        Err(TokenError::WrongAudience)
    );
    let mut no_exp = claims(json!({}));
    no_exp.as_object_mut().map(|o| o.remove("exp"));
    assert!(matches!(
        keys.verify(&sign(&no_exp, Algorithm::HS256, &key)),
        Err(TokenError::Claims(_))
    ));
    // A list of audiences naming this service is fine.
    let listed = sign(
        &claims(json!({"aud": ["x", "registry.test"]})),
        Algorithm::HS256,
        &key,
    );
    assert!(keys.verify(&listed).is_ok());
    // Another secret, and a tampered payload.
    let other = EncodingKey::from_secret(b"another secret, 32 bytes or more....");
    let forged = sign(&claims(json!({})), Algorithm::HS256, &other);
    assert_eq!(keys.verify(&forged), Err(TokenError::BadSignature));
    let genuine = sign(&claims(json!({})), Algorithm::HS256, &key);
    let mut parts: Vec<&str> = genuine.split('.').collect();
    let widened = URL_SAFE_NO_PAD.encode(
        claims(json!({"access": [{"type": "repository", "name": "beta/app", "actions": ["*"]}]}))
            .to_string(),
    );
    parts[1] = &widened;
    assert_eq!(keys.verify(&parts.join(".")), Err(TokenError::BadSignature));
}

#[test]
fn alg_none_is_never_accepted() {
    let keys = hmac_keys();
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims(json!({})).to_string());
    for token in [format!("{header}.{body}."), format!("{header}.{body}")] {
        assert!(
            matches!(keys.verify(&token), Err(TokenError::Malformed(_))),
            "{token}"
        );
    }
    assert!(matches!(
        keys.verify("garbage"),
        Err(TokenError::Malformed(_))
    ));
}

#[test]
fn own_rsa_and_ec_keys_sign_and_verify() {
    for file in ["rsa-private.pem", "ec-private.pem"] {
        let path = fixture(file);
        let keys = keys(
            KeySources {
                signing_key_file: Some(&path),
                secret: None,
                public_keys_file: None,
            },
            None,
        );
        let issued = keys
            .issue("", vec![], Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let header =
            jsonwebtoken::decode_header(issued.token.expose()).unwrap_or_else(|e| panic!("{e}"));
        assert!(header.kid.is_some(), "{file}: kid");
        let verified = keys
            .verify(issued.token.expose())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(verified.own && verified.subject.is_empty() && verified.access.is_empty());
        // The same claims under another issuer name are not this registry's own, and a key
        // that only signs this registry's tokens accepts no other issuer.
        let private = std::fs::read(&path).unwrap_or_default();
        let (alg, key) = if file.starts_with("rsa") {
            (Algorithm::RS256, EncodingKey::from_rsa_pem(&private))
        } else {
            (Algorithm::ES256, EncodingKey::from_ec_pem(&private))
        };
        let key = key.unwrap_or_else(|e| panic!("{e}"));
        let foreign = sign(&claims(json!({"iss": "someone-else"})), alg, &key);
        assert_eq!(
            keys.verify(&foreign),
            Err(TokenError::WrongIssuer("someone-else".to_owned()))
        );
    }
}

#[test]
fn external_public_keys_pem_and_jwks() {
    let rsa =
        EncodingKey::from_rsa_pem(&std::fs::read(fixture("rsa-private.pem")).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
    let other = EncodingKey::from_rsa_pem(
        &std::fs::read(fixture("other-rsa-private.pem")).unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let ec =
        EncodingKey::from_ec_pem(&std::fs::read(fixture("ec-private.pem")).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let pem = dir.path().join("keys.pem");
    let both = format!(
        "{}{}",
        std::fs::read_to_string(fixture("rsa-public.pem")).unwrap_or_default(),
        std::fs::read_to_string(fixture("ec-public.pem")).unwrap_or_default()
    );
    std::fs::write(&pem, both).unwrap_or_else(|e| panic!("{e}"));
    let jwks = dir.path().join("jwks.json");
    let mut rsa_jwk =
        Jwk::from_encoding_key(&rsa, Algorithm::RS256).unwrap_or_else(|e| panic!("{e}"));
    rsa_jwk.common.key_id = Some("rsa-1".to_owned());
    let ec_jwk = Jwk::from_encoding_key(&ec, Algorithm::ES256).unwrap_or_else(|e| panic!("{e}"));
    let set = JwkSet {
        keys: vec![rsa_jwk, ec_jwk],
    };
    std::fs::write(&jwks, serde_json::to_string(&set).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));

    for file in [&pem, &jwks] {
        let keys = keys(
            KeySources {
                signing_key_file: None,
                secret: None,
                public_keys_file: Some(file),
            },
            Some("auth.example"),
        );
        assert!(
            keys.issue("alice", vec![], Duration::from_secs(60))
                .is_err()
        );
        let external = claims(json!({"iss": "auth.example"}));
        for (alg, key) in [(Algorithm::RS256, &rsa), (Algorithm::ES256, &ec)] {
            let verified = keys
                .verify(&sign(&external, alg, key))
                .unwrap_or_else(|e| panic!("{alg:?} {}: {e}", file.display()));
            assert!(!verified.own);
            assert_eq!(verified.access, pull("alpha/app"));
        }
        assert_eq!(
            keys.verify(&sign(&external, Algorithm::RS256, &other)),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            keys.verify(&sign(
                &claims(json!({"iss": "elsewhere"})),
                Algorithm::RS256,
                &rsa
            )),
            Err(TokenError::WrongIssuer("elsewhere".to_owned()))
        );
        // Algorithm confusion: an HMAC token keyed with the public key's bytes.
        let public = std::fs::read(fixture("rsa-public.pem")).unwrap_or_default();
        let confused = sign(
            &external,
            Algorithm::HS256,
            &EncodingKey::from_secret(&public),
        );
        assert_eq!(keys.verify(&confused), Err(TokenError::BadSignature));
    }
}

#[test]
fn bad_key_files_are_named() {
    let missing = PathBuf::from("/nonexistent/key.pem");
    let err = TokenKeys::load(
        KeySources {
            signing_key_file: Some(&missing),
            secret: None,
            public_keys_file: None,
        },
        true,
        "i",
        "s",
        None,
    )
    .err()
    .unwrap_or_default();
    assert!(err.contains("/nonexistent/key.pem"), "{err}");
    let public_as_private = fixture("rsa-public.pem");
    let err = TokenKeys::load(
        KeySources {
            signing_key_file: Some(&public_as_private),
            secret: None,
            public_keys_file: None,
        },
        true,
        "i",
        "s",
        None,
    )
    .err()
    .unwrap_or_default();
    assert!(err.contains("rsa-public.pem"), "{err}");
}

#[test]
fn rfc3339_dates() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(1_767_225_599), "2025-12-31T23:59:59Z");
}

//! Bearer tokens through the verifier, with fixed keys (an HMAC secret and the test RSA public
//! key of `tests/fixtures/auth`). The first byte picks the mode:
//! - 0: the rest is a token as a client sends it: refused or verified, never a panic;
//! - 1: the rest is `<header JSON>\n<claims JSON>`, signed with the secret: whatever the
//!   claims, the signature is never what is refused;
//! - 2: the rest is `<subject>\n<repository>`: a token the registry issues verifies back to
//!   its subject and access, as its own.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use registry_common::auth::{AccessEntry, Secret, TokenError};
use registry_common::fuzzing::{KeySources, TokenKeys};

const SECRET: &str = "0123456789abcdef0123456789abcdef-fuzz-secret";

fn keys() -> &'static TokenKeys {
    static KEYS: OnceLock<TokenKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let secret = Secret::new(SECRET.to_owned());
        let public =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/auth/rsa-public.pem");
        TokenKeys::load(
            KeySources {
                signing_key_file: None,
                secret: Some(&secret),
                public_keys_file: Some(&public),
            },
            true,
            "registry-issuer",
            "registry.test",
            None,
        )
        .expect("the fixed keys load")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match mode % 3 {
        0 => {
            let _ = keys().verify(text);
        }
        1 => {
            let (header, claims) = text
                .split_once('\n')
                .unwrap_or((r#"{"alg":"HS256"}"#, text));
            let message = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(claims)
            );
            let alg = match header.len() % 3 {
                0 => Algorithm::HS256,
                1 => Algorithm::HS384,
                _ => Algorithm::HS512,
            };
            let key = EncodingKey::from_secret(SECRET.as_bytes());
            let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, alg)
                .expect("HMAC signs anything");
            let token = format!("{message}.{signature}");
            if let Err(TokenError::BadSignature) = keys().verify(&token) {
                // Only when the header names another algorithm than the one signed with.
                let named = jsonwebtoken::decode_header(&token).map(|h| h.alg);
                assert!(named.is_ok_and(|named| named != alg), "{token}");
            }
        }
        _ => {
            let (subject, repository) = text.split_once('\n').unwrap_or((text, "a/b"));
            let access = vec![AccessEntry::new(
                "repository",
                repository,
                ["pull".to_owned(), "push".to_owned()],
            )];
            let issued = keys()
                .issue(subject, access.clone(), Duration::from_secs(300))
                .expect("the secret signs");
            let verified = keys()
                .verify(issued.token.expose())
                .expect("an issued token verifies");
            assert_eq!(verified.subject, subject);
            assert_eq!(verified.access, access);
            assert!(verified.own);
        }
    }
});

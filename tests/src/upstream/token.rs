//! The token server of distribution's token flavour, run inside the test process: the Docker
//! token flow (`GET <realm>?service=&scope=` with Basic credentials) answered with RS256 JWTs.
//!
//! distribution 2.8 (`auth: token`) trusts the public keys of the certificates in its
//! `rootcertbundle` and finds the signing key by the JWT's `kid`, which must be the libtrust
//! key ID of that key: the SHA-256 of its DER SubjectPublicKeyInfo, cut to 240 bits, in base32,
//! as 12 groups of 4 characters joined by `:`. The key and the self-signed certificate are made
//! by the `openssl` CLI in the distribution's directory. Its claims: `iss` the configured
//! issuer, `aud` the service (a string: 2.8 reads no list), `access` the granted scopes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sha2::{Digest as _, Sha256};

/// The `service` of the challenge and the tokens' audience.
pub const SERVICE: &str = "upstream-registry";
/// The tokens' issuer.
pub const ISSUER: &str = "registry-tests-token-issuer";
/// How long a token is valid.
const LIFETIME_SECS: u64 = 300;

/// A token server on a loopback port of its own; stops when dropped.
#[derive(Debug)]
pub struct TokenServer {
    port: u16,
    certificate: PathBuf,
    state: Arc<Issuer>,
    task: tokio::task::JoinHandle<()>,
}

struct Issuer {
    key: EncodingKey,
    kid: String,
    users: Vec<(String, String)>,
    /// The `scope` of every token request, granted or not, in order.
    requests: Mutex<Vec<String>>,
    issued: AtomicUsize,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer").field("kid", &self.kid).finish()
    }
}

impl TokenServer {
    /// Makes a key and certificate in `dir` and serves tokens to `users` (user, password).
    pub async fn start(dir: &Path, users: &[(&str, &str)]) -> TokenServer {
        let key = dir.join("token-key.pem");
        let certificate = dir.join("token-cert.pem");
        let public_der = dir.join("token-public.der");
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=registry-tests-token-issuer",
            "-keyout",
            path(&key),
            "-out",
            path(&certificate),
        ]);
        openssl(&[
            "pkey",
            "-in",
            path(&key),
            "-pubout",
            "-outform",
            "DER",
            "-out",
            path(&public_der),
        ]);
        let der = std::fs::read(&public_der).expect("read the public key");
        let pem = std::fs::read(&key).expect("read the private key");
        let state = Arc::new(Issuer {
            key: EncodingKey::from_rsa_pem(&pem).expect("RSA private key"),
            kid: libtrust_key_id(&der),
            users: users
                .iter()
                .map(|(u, p)| ((*u).to_owned(), (*p).to_owned()))
                .collect(),
            requests: Mutex::new(Vec::new()),
            issued: AtomicUsize::new(0),
        });
        // Bound here and kept: no other process can take the port in between.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the token server");
        let port = listener.local_addr().expect("local addr").port();
        let router = axum::Router::new()
            .route("/token", axum::routing::get(token))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        TokenServer {
            port,
            certificate,
            state,
            task,
        }
    }

    /// The realm distribution sends clients to.
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// The certificate distribution trusts (`rootcertbundle`).
    pub fn certificate(&self) -> &Path {
        &self.certificate
    }

    /// The key ID every token names.
    pub fn key_id(&self) -> &str {
        &self.state.kid
    }

    /// How many tokens were issued.
    pub fn issued(&self) -> usize {
        self.state.issued.load(Ordering::SeqCst)
    }

    /// The scopes of every token request so far (space-joined when a request had several).
    pub fn requested_scopes(&self) -> Vec<String> {
        self.state.requests.lock().expect("requests").clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// libtrust's key ID of a DER SubjectPublicKeyInfo.
pub fn libtrust_key_id(der: &[u8]) -> String {
    let hash = Sha256::digest(der);
    let encoded = base32(&hash[..30]);
    let groups: Vec<&str> = (0..encoded.len())
        .step_by(4)
        .map(|i| &encoded[i..i + 4])
        .collect();
    groups.join(":")
}

/// RFC 4648 base32 (the standard alphabet) of a length that needs no padding (a multiple of
/// 5 bytes).
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    assert_eq!(bytes.len() % 5, 0, "base32 without padding");
    let mut out = String::new();
    for chunk in bytes.chunks(5) {
        let n = chunk.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b));
        for i in (0..8).rev() {
            out.push(char::from(ALPHABET[((n >> (i * 5)) & 31) as usize]));
        }
    }
    out
}

/// `GET /token?service=&scope=…`: a token for a known user (Basic), every scope requested
/// granted; 401 for anyone else.
async fn token(
    State(issuer): State<Arc<Issuer>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let pairs = parse_query(query.as_deref().unwrap_or_default());
    let scopes: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' '))
        .filter(|s| !s.is_empty())
        .collect();
    issuer
        .requests
        .lock()
        .expect("requests")
        .push(scopes.join(" "));
    let user = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(decode_basic)
        .filter(|(user, password)| issuer.users.iter().any(|(u, p)| u == user && p == password));
    let Some((user, _)) = user else {
        let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"credentials required"}]}"#;
        return (
            StatusCode::UNAUTHORIZED,
            [
                ("WWW-Authenticate", "Basic realm=\"token\""),
                ("Content-Type", "application/json"),
            ],
            body,
        )
            .into_response();
    };
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|scope| {
            // `repository:<name>:<actions>`; a name may hold no `:` but the port of a host.
            let (kind, rest) = scope.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            let actions: Vec<&str> = actions.split(',').collect();
            Some(serde_json::json!({"type": kind, "name": name, "actions": actions}))
        })
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let n = issuer.issued.fetch_add(1, Ordering::SeqCst);
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": user,
        "aud": SERVICE,
        "exp": now + LIFETIME_SECS,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("token-{n}"),
        "access": access,
    });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(issuer.kid.clone());
    let jwt = jsonwebtoken::encode(&header, &claims, &issuer.key).expect("sign the token");
    axum::Json(serde_json::json!({
        "token": jwt,
        "access_token": jwt,
        "expires_in": LIFETIME_SECS,
    }))
    .into_response()
}

fn decode_basic(value: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// `k=v&k=v` with `+` and `%XX` decoded; repeated keys kept.
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_id_is_twelve_groups_of_four() {
        let id = libtrust_key_id(b"any bytes");
        assert_eq!(id.len(), 12 * 4 + 11);
        assert!(id.split(':').all(|g| g.len() == 4), "{id}");
    }

    #[test]
    fn base32_matches_rfc_4648() {
        // RFC 4648 section 10: BASE32("fooba") = "MZXW6YTB".
        assert_eq!(base32(b"fooba"), "MZXW6YTB");
    }

    #[test]
    fn query_is_decoded() {
        let pairs = parse_query("service=s&scope=repository%3Aa%2Fb%3Apull%2Cpush&scope=x+y");
        assert_eq!(pairs[1].1, "repository:a/b:pull,push");
        assert_eq!(pairs[2].1, "x y");
    }
}

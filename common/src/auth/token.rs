//! JWTs of the Docker token flow: signing the tokens this registry issues, and verifying every
//! bearer token, its own or one issued elsewhere.
//!
//! A token is accepted when its signature verifies with one of the configured keys (the
//! algorithm in its header must belong to that key's family: `alg: none` and an HMAC token
//! checked against a public key never verify), `aud` names this registry's service, `exp` is
//! in the future and `nbf` (when present) in the past, both with [`LEEWAY_SECS`] of clock
//! skew. A token is this registry's own when it verifies with the key the registry signs with
//! and its `iss` is the registry's issuer; any other accepted token is external, and must name
//! the configured external issuer when there is one.

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

use super::scope::AccessEntry;
use super::secret::Secret;

/// Clock skew allowed on `exp` and `nbf`, between this registry and whoever issued the token.
pub const LEEWAY_SECS: u64 = 30;

/// The claims of a token this registry issues.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    pub access: Vec<AccessEntry>,
}

/// What is read from a token once its signature and times check out.
#[derive(Debug, Deserialize)]
struct TokenBody {
    iss: Option<String>,
    sub: Option<String>,
    #[serde(default)]
    access: Vec<AccessEntry>,
}

/// A verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// `sub`: the user the token was issued to; empty for an anonymous token.
    pub subject: String,
    pub access: Vec<AccessEntry>,
    /// Issued by this registry (see the module documentation).
    pub own: bool,
}

/// A freshly signed token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: Secret<String>,
    pub expires_in: u64,
    pub issued_at: u64,
}

/// Why a token was refused (logged, never sent: the client only learns it was invalid).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a JWT, or an unsupported algorithm: {0}")]
    Malformed(String),
    #[error("no configured key verifies its signature")]
    BadSignature,
    #[error("expired")]
    Expired,
    #[error("not valid yet")]
    NotYetValid,
    #[error("issued for another service")]
    WrongAudience,
    #[error("issuer {0:?} is not accepted")]
    WrongIssuer(String),
    #[error("claims rejected: {0}")]
    Claims(String),
    #[error("signing failed: {0}")]
    Signing(String),
}

/// The key this registry signs its tokens with.
struct SigningKey {
    key: EncodingKey,
    alg: Algorithm,
    kid: Option<String>,
}

/// A key tokens are verified with.
struct VerifyingKey {
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
    kid: Option<String>,
    /// The counterpart of the signing key: verifies this registry's own tokens.
    own: bool,
    /// Verifies tokens issued elsewhere.
    external: bool,
}

/// Signing and verification keys, and the names tokens must carry.
pub struct TokenKeys {
    signing: Option<SigningKey>,
    verifying: Vec<VerifyingKey>,
    /// `iss` of the tokens this registry issues.
    issuer: String,
    /// `aud` every token must name.
    service: String,
    /// `iss` tokens issued elsewhere must name, when set.
    external_issuer: Option<String>,
}

impl fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKeys")
            .field("signing", &self.signing.as_ref().map(|k| (k.alg, &k.kid)))
            .field("verifying", &self.verifying.len())
            .field("issuer", &self.issuer)
            .field("service", &self.service)
            .field("external_issuer", &self.external_issuer)
            .finish()
    }
}

/// Where the keys come from.
#[derive(Debug, Clone, Copy)]
pub struct KeySources<'a> {
    /// A PEM private key (RSA, or EC P-256/P-384 in PKCS#8): signs with RS256/ES256/ES384.
    pub signing_key_file: Option<&'a Path>,
    /// An HMAC secret: verifies HS256/384/512 tokens, and signs with HS256 when no signing key
    /// file is given.
    pub secret: Option<&'a Secret<String>>,
    /// PEM public keys or certificates, or a JWKS document: verify tokens issued elsewhere.
    pub public_keys_file: Option<&'a Path>,
}

impl TokenKeys {
    /// Loads the keys; the error names the file and what is wrong with it. Without `issuing`,
    /// nothing signs and every token is external.
    pub fn load(
        sources: KeySources<'_>,
        issuing: bool,
        issuer: &str,
        service: &str,
        external_issuer: Option<&str>,
    ) -> Result<TokenKeys, String> {
        let mut signing = None;
        let mut verifying = Vec::new();
        if let Some(path) = sources.signing_key_file.filter(|_| issuing) {
            let (key, verify) = load_signing_key(path)?;
            signing = Some(key);
            verifying.push(verify);
        }
        if let Some(secret) = sources.secret {
            let bytes = secret.expose().as_bytes();
            let own = issuing && signing.is_none();
            if own {
                signing = Some(SigningKey {
                    key: EncodingKey::from_secret(bytes),
                    alg: Algorithm::HS256,
                    kid: None,
                });
            }
            verifying.push(VerifyingKey {
                key: DecodingKey::from_secret(bytes),
                algorithms: vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
                kid: None,
                own,
                external: true,
            });
        }
        if let Some(path) = sources.public_keys_file {
            verifying.extend(load_public_keys(path)?);
        }
        Ok(TokenKeys {
            signing,
            verifying,
            issuer: issuer.to_owned(),
            service: service.to_owned(),
            external_issuer: external_issuer.map(str::to_owned),
        })
    }

    /// The service name tokens are issued for.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Signs a token for `subject` (empty: anonymous) granting `access`, valid for `ttl`.
    pub fn issue(
        &self,
        subject: &str,
        access: Vec<AccessEntry>,
        ttl: Duration,
    ) -> Result<IssuedToken, TokenError> {
        let signing = self
            .signing
            .as_ref()
            .ok_or_else(|| TokenError::Signing("no signing key configured".to_owned()))?;
        let now = unix_now();
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject.to_owned(),
            aud: self.service.clone(),
            exp: now + ttl.as_secs(),
            nbf: now,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            access,
        };
        let mut header = Header::new(signing.alg);
        header.typ = Some("JWT".to_owned());
        header.kid = signing.kid.clone();
        let token = jsonwebtoken::encode(&header, &claims, &signing.key)
            .map_err(|e| TokenError::Signing(e.to_string()))?;
        Ok(IssuedToken {
            token: Secret::new(token),
            expires_in: ttl.as_secs(),
            issued_at: now,
        })
    }

    /// Verifies a bearer token (see the module documentation for what is checked).
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        let candidates = self.verifying.iter().filter(|key| {
            key.algorithms.contains(&header.alg)
                && match (&key.kid, &header.kid) {
                    (Some(mine), Some(theirs)) => mine == theirs,
                    _ => true,
                }
        });
        for key in candidates {
            let mut validation = Validation::new(header.alg);
            validation.set_audience(&[&self.service]);
            validation.set_required_spec_claims(&["exp", "aud"]);
            validation.validate_nbf = true;
            validation.leeway = LEEWAY_SECS;
            match jsonwebtoken::decode::<TokenBody>(token, &key.key, &validation) {
                Ok(data) => return self.classify(key, data.claims),
                // Another key may have signed it.
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => continue,
                Err(e) => return Err(claims_error(e.kind())),
            }
        }
        Err(TokenError::BadSignature)
    }

    fn classify(&self, key: &VerifyingKey, body: TokenBody) -> Result<VerifiedToken, TokenError> {
        let iss = body.iss.unwrap_or_default();
        let own = key.own && iss == self.issuer;
        if !own {
            let accepted = key.external
                && self
                    .external_issuer
                    .as_ref()
                    .is_none_or(|wanted| *wanted == iss);
            if !accepted {
                return Err(TokenError::WrongIssuer(iss));
            }
        }
        Ok(VerifiedToken {
            subject: body.sub.unwrap_or_default(),
            access: body.access,
            own,
        })
    }
}

fn claims_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => TokenError::WrongAudience,
        other => TokenError::Claims(format!("{other:?}")),
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

/// A PEM private key and the public key that verifies what it signs.
fn load_signing_key(path: &Path) -> Result<(SigningKey, VerifyingKey), String> {
    let pem = read(path)?;
    let shown = path.display();
    let (key, candidates): (EncodingKey, &[Algorithm]) =
        if let Ok(key) = EncodingKey::from_rsa_pem(&pem) {
            (key, &[Algorithm::RS256])
        } else if let Ok(key) = EncodingKey::from_ec_pem(&pem) {
            (key, &[Algorithm::ES256, Algorithm::ES384])
        } else {
            return Err(format!(
                "{shown}: not a PEM RSA private key or PKCS#8 EC private key \
                 (convert an `EC PRIVATE KEY` with `openssl pkcs8 -topk8 -nocrypt`)"
            ));
        };
    for &alg in candidates {
        let Ok(jwk) = Jwk::from_encoding_key(&key, alg) else {
            continue;
        };
        let public = DecodingKey::from_jwk(&jwk).map_err(|e| format!("{shown}: {e}"))?;
        let kid = jwk.thumbprint(ThumbprintHash::SHA256).ok();
        let verify = VerifyingKey {
            key: public,
            algorithms: vec![alg],
            kid: kid.clone(),
            own: true,
            external: false,
        };
        return Ok((SigningKey { key, alg, kid }, verify));
    }
    Err(format!(
        "{shown}: unsupported key (RSA, or EC on P-256 or P-384)"
    ))
}

/// Public keys from a JWKS document or from PEM blocks (public keys or certificates).
fn load_public_keys(path: &Path) -> Result<Vec<VerifyingKey>, String> {
    let bytes = read(path)?;
    let shown = path.display();
    let text = String::from_utf8_lossy(&bytes);
    let keys = if text.trim_start().starts_with('{') {
        let set: JwkSet = serde_json::from_str(&text)
            .map_err(|e| format!("{shown}: not a JWKS document: {e}"))?;
        let mut keys = Vec::new();
        for (i, jwk) in set.keys.iter().enumerate() {
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("{shown}: keys[{i}]: {e}"))?;
            // `alg`, when the key names one, narrows the family to it.
            let named = jwk.common.key_algorithm.map(|a| a.to_string());
            let algorithms: Vec<Algorithm> = key
                .family()
                .algorithms()
                .iter()
                .copied()
                .filter(|alg| named.as_ref().is_none_or(|n| *n == format!("{alg:?}")))
                .collect();
            keys.push(VerifyingKey {
                key,
                algorithms,
                kid: jwk.common.key_id.clone(),
                own: false,
                external: true,
            });
        }
        keys
    } else {
        pem_blocks(&text)
            .enumerate()
            .map(|(i, block)| {
                let block = block.as_bytes();
                let key = DecodingKey::from_rsa_pem(block)
                    .or_else(|_| DecodingKey::from_ec_pem(block))
                    .or_else(|_| DecodingKey::from_ed_pem(block))
                    .map_err(|e| format!("{shown}: PEM block {}: {e}", i + 1))?;
                Ok(VerifyingKey {
                    algorithms: key.family().algorithms().to_vec(),
                    key,
                    kid: None,
                    own: false,
                    external: true,
                })
            })
            .collect::<Result<Vec<_>, String>>()?
    };
    if keys.is_empty() {
        return Err(format!("{shown}: no public key found"));
    }
    Ok(keys)
}

/// The `-----BEGIN …-----` … `-----END …-----` blocks of a PEM file.
fn pem_blocks(text: &str) -> impl Iterator<Item = String> + '_ {
    let mut lines = text.lines();
    std::iter::from_fn(move || {
        let mut block = String::new();
        for line in lines.by_ref() {
            let line = line.trim();
            if block.is_empty() && !line.starts_with("-----BEGIN ") {
                continue;
            }
            block.push_str(line);
            block.push('\n');
            if line.starts_with("-----END ") {
                return Some(block);
            }
        }
        None
    })
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time (the token response's `issued_at`).
pub fn rfc3339(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
#[path = "token_tests.rs"]
mod tests;

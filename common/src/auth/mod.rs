//! Authentication and authorization: who a request comes from, and whether they may do what
//! it asks.
//!
//! The contract:
//! - [`Authorizer`] is built once at start-up from [`AuthConfig`] (files read, keys parsed:
//!   a bad file stops the start with a message naming it). The HTTP layer
//!   (`http::auth_layer`) asks it about every request after the path is parsed, and hands a
//!   [`Caller`] to the handlers, which ask further questions through it only (a mount's
//!   source, catalog entries, the management API's projects). Nothing else decides access.
//! - Actions: `pull` (GET/HEAD), `push` (POST/PUT/PATCH), `delete` (DELETE) on the registry
//!   API; `list` and `get` on the management API. Rights are per project, the first
//!   component of a repository name; tokens carry them per repository.
//! - Every refusal is an [`AuthError`], turned into the client's answer in one place
//!   (`From<AuthError> for RegistryError`): `401 UNAUTHORIZED` with the mode's
//!   `WWW-Authenticate` challenge when credentials are missing or wrong (never saying which
//!   half), `403 DENIED` when they are right but not enough, `503 UNAVAILABLE` when the
//!   permission service cannot answer (never access).
//! - Secrets are held in [`Secret`], which never prints; passwords are checked with bcrypt,
//!   tokens by signature; caches hold salted digests, never credentials.

mod cache;
mod caller;
mod delegated;
pub(crate) mod htpasswd;
mod issue;
mod principal;
pub(crate) mod rules;
mod scope;
use crate::config::secret;
pub(crate) mod token;

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use http::header::WWW_AUTHENTICATE;

pub use caller::Caller;
pub use delegated::Unavailable;
pub use issue::TokenResponse;
pub use principal::{Credentials, Principal};
pub use rules::{Action, Actions};
pub use scope::{AccessEntry, CATALOG_SCOPE, Scope};
pub use secret::Secret;
pub use token::{TokenError, VerifiedToken};

use crate::config::{AuthConfig, AuthMode};
use crate::http::oci_error::{OciCode, RegistryError};
use delegated::Delegated;
use htpasswd::Htpasswd;
use rules::Rules;
use token::{KeySources, TokenKeys};

/// Why the authentication settings could not be used (a file missing or malformed).
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {reason}")]
pub struct AuthSetupError {
    pub variable: &'static str,
    pub reason: String,
}

/// A refusal, as the client will see it.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// 401 `UNAUTHORIZED`, with this `WWW-Authenticate` challenge.
    #[error("authentication required")]
    Unauthenticated { challenge: String },
    /// 403 `DENIED`.
    #[error("requested access to the resource is denied")]
    Denied,
    /// 503 `UNAVAILABLE`: the permission service did not answer.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    /// 400: a token request that cannot be answered.
    #[error("{0}")]
    BadTokenRequest(String),
    /// 404: this registry issues no tokens.
    #[error("this registry issues no tokens")]
    NoTokenEndpoint,
    /// 500: a token could not be signed (the cause is logged).
    #[error(transparent)]
    Signing(#[from] TokenError),
}

impl From<AuthError> for RegistryError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Unauthenticated { challenge } => {
                RegistryError::new(OciCode::Unauthorized, "authentication required")
                    .with_header(WWW_AUTHENTICATE, challenge)
            }
            AuthError::Denied => RegistryError::new(
                OciCode::Denied,
                "requested access to the resource is denied",
            ),
            AuthError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "authorization unavailable");
                RegistryError::new(
                    OciCode::Unavailable,
                    "authorization service unavailable; try again later",
                )
            }
            AuthError::BadTokenRequest(why) => {
                RegistryError::new(OciCode::Unsupported, "invalid token request")
                    .with_status(StatusCode::BAD_REQUEST)
                    .with_detail(serde_json::json!({ "reason": why }))
            }
            AuthError::NoTokenEndpoint => {
                RegistryError::unsupported(StatusCode::NOT_FOUND, "no such endpoint")
            }
            AuthError::Signing(cause) => RegistryError::internal(&cause),
        }
    }
}

/// Decides who may do what; cheap to clone.
#[derive(Debug, Clone)]
pub struct Authorizer(Arc<Mode>);

#[derive(Debug)]
enum Mode {
    None,
    Basic {
        users: Arc<Htpasswd>,
        rules: Rules,
        realm: String,
    },
    Token(TokenMode),
    Delegated {
        service: Delegated,
        realm: String,
    },
}

#[derive(Debug)]
struct TokenMode {
    keys: TokenKeys,
    /// `TOKEN_REALM`; `None`: this registry's `/auth/token` where the request came.
    realm: Option<String>,
    ttl: Duration,
    /// The token endpoint's users (none: anonymous tokens only) and rules (none: no endpoint).
    users: Option<Arc<Htpasswd>>,
    rules: Option<Rules>,
    basic_realm: String,
}

/// `basic`'s users: the htpasswd file's and `AUTH_USER`.
fn basic_users(config: &AuthConfig) -> Result<Arc<Htpasswd>, AuthSetupError> {
    let cache_ttl = Duration::from_secs(config.auth_cache_ttl_secs);
    let file = match &config.htpasswd_file {
        Some(path) => Htpasswd::load(path, cache_ttl).map_err(|e| setup("HTPASSWD_FILE", &e))?,
        None if config.auth_user.is_some() => Htpasswd::empty(cache_ttl),
        None => return Err(missing("HTPASSWD_FILE")),
    };
    let users = match (&config.auth_user, &config.auth_password) {
        (Some(user), Some(password)) => {
            file.with_user(user, password)
                .map_err(|reason| AuthSetupError {
                    variable: "AUTH_USER",
                    reason,
                })?
        }
        _ => file,
    };
    Ok(Arc::new(users))
}

impl Authorizer {
    /// Reads the files and keys the configured mode needs.
    pub fn from_config(config: &AuthConfig) -> Result<Authorizer, AuthSetupError> {
        let cache_ttl = Duration::from_secs(config.auth_cache_ttl_secs);
        let users = |required: bool| -> Result<Option<Arc<Htpasswd>>, AuthSetupError> {
            match &config.htpasswd_file {
                Some(path) => Htpasswd::load(path, cache_ttl)
                    .map(|u| Some(Arc::new(u)))
                    .map_err(|e| setup("HTPASSWD_FILE", &e)),
                None if required => Err(missing("HTPASSWD_FILE")),
                None => Ok(None),
            }
        };
        let rules = |required: bool| -> Result<Option<Rules>, AuthSetupError> {
            match &config.auth_rules_file {
                Some(path) => Rules::load(path)
                    .map(Some)
                    .map_err(|e| setup("AUTH_RULES_FILE", &e)),
                None if required => Err(missing("AUTH_RULES_FILE")),
                None => Ok(None),
            }
        };
        let mode = match config.auth_mode {
            AuthMode::None => Mode::None,
            AuthMode::Basic => Mode::Basic {
                users: basic_users(config)?,
                rules: if config.auth_users_all_rights {
                    Rules::every_user_everything()
                } else {
                    rules(true)?.ok_or_else(|| missing("AUTH_RULES_FILE"))?
                },
                realm: config.auth_realm.clone(),
            },
            AuthMode::Token => {
                let issuing = config.issues_tokens();
                let keys = TokenKeys::load(
                    KeySources {
                        signing_key_file: config.token_signing_key_file.as_deref(),
                        secret: config.jwt_secret.as_ref(),
                        public_keys_file: config.jwt_public_keys_file.as_deref(),
                    },
                    issuing,
                    &config.token_issuer,
                    &config.token_service,
                    config.jwt_issuer.as_deref(),
                )
                .map_err(|reason| AuthSetupError {
                    variable: "TOKEN_SIGNING_KEY_FILE / JWT_SECRET / JWT_PUBLIC_KEYS_FILE",
                    reason,
                })?;
                Mode::Token(TokenMode {
                    keys,
                    realm: config.token_realm.clone(),
                    ttl: Duration::from_secs(config.token_ttl_secs),
                    users: if issuing { users(false)? } else { None },
                    rules: if issuing { rules(true)? } else { None },
                    basic_realm: config.auth_realm.clone(),
                })
            }
            AuthMode::Delegated => {
                let url = config
                    .delegated_permission_url
                    .as_deref()
                    .ok_or_else(|| missing("DELEGATED_PERMISSION_URL"))?;
                let service = Delegated::new(
                    url,
                    Duration::from_secs(config.delegated_timeout_secs),
                    cache_ttl,
                )
                .map_err(|reason| AuthSetupError {
                    variable: "DELEGATED_PERMISSION_URL",
                    reason,
                })?;
                Mode::Delegated {
                    service,
                    realm: config.auth_realm.clone(),
                }
            }
        };
        Ok(Authorizer(Arc::new(mode)))
    }

    /// An authorizer that lets anyone do anything (`AUTH_MODE=none`).
    pub fn none() -> Authorizer {
        Authorizer(Arc::new(Mode::None))
    }

    /// Whether requests are checked at all.
    pub fn is_enabled(&self) -> bool {
        !matches!(*self.0, Mode::None)
    }

    /// Finds out who sent `credentials`. Credentials that do not check out give
    /// [`Principal::Rejected`]; whether that matters depends on what the request asks.
    pub async fn authenticate(&self, credentials: &Credentials) -> Principal {
        match (&*self.0, credentials) {
            (Mode::None, _) => Principal::Anyone,
            (_, Credentials::None) => Principal::Anonymous,
            (Mode::Basic { users, .. }, Credentials::Basic { user, password, .. }) => {
                if users.verify(user, password).await {
                    Principal::User(user.clone())
                } else {
                    tracing::info!(user = %user, "login failed");
                    Principal::Rejected
                }
            }
            (Mode::Token(mode), Credentials::Bearer(token)) => {
                match mode.keys.verify(token.expose()) {
                    Ok(verified) => Principal::Token(verified),
                    Err(why) => {
                        tracing::info!(reason = %why, "bearer token refused");
                        Principal::Rejected
                    }
                }
            }
            (Mode::Delegated { .. }, Credentials::Basic { user, header, .. }) => {
                Principal::Delegated {
                    user: user.clone(),
                    header: header.clone(),
                }
            }
            _ => Principal::Rejected,
        }
    }
}

fn setup(variable: &'static str, error: &(dyn std::error::Error + 'static)) -> AuthSetupError {
    AuthSetupError {
        variable,
        reason: crate::error::ErrorChain(error).to_string(),
    }
}

fn missing(variable: &'static str) -> AuthSetupError {
    AuthSetupError {
        variable,
        reason: "required by this AUTH_MODE".to_owned(),
    }
}

/// `"value"`, with `\` and `"` escaped, for a challenge parameter.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `Basic realm="…"`.
fn basic_challenge(realm: &str) -> String {
    format!("Basic realm={}", quoted(realm))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_quote_their_values() {
        assert_eq!(basic_challenge("registry"), r#"Basic realm="registry""#);
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn errors_map_to_spec_answers() {
        let unauthorized = RegistryError::from(AuthError::Unauthenticated {
            challenge: basic_challenge("r"),
        });
        assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);
        assert_eq!(unauthorized.code, OciCode::Unauthorized);
        assert_eq!(
            unauthorized.headers,
            vec![(
                WWW_AUTHENTICATE,
                http::HeaderValue::from_static(r#"Basic realm="r""#)
            )]
        );
        let denied = RegistryError::from(AuthError::Denied);
        assert_eq!(
            (denied.status, denied.code),
            (StatusCode::FORBIDDEN, OciCode::Denied)
        );
        let unavailable = RegistryError::from(AuthError::Unavailable(Unavailable("x".into())));
        assert_eq!(unavailable.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(unavailable.code, OciCode::Unavailable);
    }
}

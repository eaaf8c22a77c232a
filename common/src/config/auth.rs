//! Who may call the registry, and how that is checked: the settings the `auth` module builds
//! its `Authorizer` from.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, Secret, Vars};

/// How callers authenticate (see the README's "Authentication" section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Anyone may do anything; only on a loopback address unless `ALLOW_ANONYMOUS_REMOTE`.
    None,
    /// htpasswd (bcrypt) users and an access-rules file.
    Basic,
    /// Docker token flow: bearer JWTs, issued by this registry's `/auth/token` or elsewhere.
    Token,
    /// A permission service answers for the caller's Basic credentials.
    Delegated,
}

impl<'de> Deserialize<'de> for AuthMode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        match raw.as_str() {
            "none" => Ok(AuthMode::None),
            "basic" => Ok(AuthMode::Basic),
            "token" => Ok(AuthMode::Token),
            "delegated" => Ok(AuthMode::Delegated),
            _ => Err(serde::de::Error::custom(format!(
                "AUTH_MODE={raw:?}: expected none, basic, token or delegated"
            ))),
        }
    }
}

/// Who may call the registry, and how that is checked.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthConfig {
    /// `AUTH_MODE`: `none` (default), `basic`, `token` or `delegated`.
    #[serde(default = "default_auth_mode")]
    pub auth_mode: AuthMode,
    /// `ALLOW_ANONYMOUS_REMOTE`: serve anonymous clients on a non-loopback address anyway
    /// (a trusted private network); off by default.
    #[serde(default)]
    pub allow_anonymous_remote: bool,
    /// `AUTH_REALM`: the realm of `Basic` challenges (`basic`, `delegated`, token endpoint).
    #[serde(default = "default_auth_realm")]
    pub auth_realm: String,
    /// `HTPASSWD_FILE`: users and bcrypt hashes (`basic`; `token` for the token endpoint).
    #[serde(default)]
    pub htpasswd_file: Option<PathBuf>,
    /// `AUTH_RULES_FILE`: who may do what on which projects (`basic`; `token`: enables the
    /// token endpoint).
    #[serde(default)]
    pub auth_rules_file: Option<PathBuf>,
    /// `AUTH_USER` and `AUTH_PASSWORD`: one more user for `basic`, beside (or instead of)
    /// the htpasswd file's, its password given in plain text (a secret; the Cloudflare
    /// serverless-registry's `USERNAME` and `PASSWORD` become them).
    #[serde(default)]
    pub auth_user: Option<String>,
    #[serde(default)]
    pub auth_password: Option<Secret<String>>,
    /// `AUTH_USERS_ALL_RIGHTS`: with `basic` and no rules file, every user of the htpasswd
    /// file may do everything on every project (what an htpasswd file means to
    /// distribution). Off by default.
    #[serde(default)]
    pub auth_users_all_rights: bool,
    /// `AUTH_CACHE_TTL_SECS`: how long a verified password or a permission service's answer
    /// is remembered; 0 remembers nothing.
    #[serde(default = "default_auth_cache_ttl")]
    pub auth_cache_ttl_secs: u64,
    /// `TOKEN_REALM`: the token endpoint's URL as clients reach it; by default this
    /// registry's own `/auth/token`, at the scheme and host the request came to.
    #[serde(default)]
    pub token_realm: Option<String>,
    /// `TOKEN_SERVICE`: the `service` of challenges, and the `aud` every token must name.
    #[serde(default = "default_token_name")]
    pub token_service: String,
    /// `TOKEN_ISSUER`: the `iss` of the tokens this registry issues.
    #[serde(default = "default_token_name")]
    pub token_issuer: String,
    /// `TOKEN_TTL_SECS`: lifetime of an issued token.
    #[serde(default = "default_token_ttl")]
    pub token_ttl_secs: u64,
    /// `TOKEN_SIGNING_KEY_FILE`: PEM private key (RSA, or EC P-256/P-384 in PKCS#8) issued
    /// tokens are signed with; otherwise `JWT_SECRET` signs them (HS256).
    #[serde(default)]
    pub token_signing_key_file: Option<PathBuf>,
    /// `JWT_SECRET`: HMAC secret (HS256/384/512) of tokens issued elsewhere, and of this
    /// registry's own tokens when no signing key file is given. At least 32 bytes.
    #[serde(default)]
    pub jwt_secret: Option<Secret<String>>,
    /// `JWT_PUBLIC_KEYS_FILE`: PEM public keys or certificates, or a JWKS document, that
    /// verify tokens issued elsewhere (RS*, PS*, ES256/384, EdDSA).
    #[serde(default)]
    pub jwt_public_keys_file: Option<PathBuf>,
    /// `JWT_ISSUER`: when set, the `iss` tokens issued elsewhere must carry.
    #[serde(default)]
    pub jwt_issuer: Option<String>,
    /// `DELEGATED_PERMISSION_URL`: the permission service (`delegated`).
    #[serde(default)]
    pub delegated_permission_url: Option<String>,
    /// `DELEGATED_TIMEOUT_SECS`: how long to wait for the permission service.
    #[serde(default = "default_delegated_timeout")]
    pub delegated_timeout_secs: u64,
}

fn default_auth_mode() -> AuthMode {
    AuthMode::None
}
fn default_auth_realm() -> String {
    "registry".to_owned()
}
fn default_auth_cache_ttl() -> u64 {
    30
}
fn default_token_name() -> String {
    "registry".to_owned()
}
fn default_token_ttl() -> u64 {
    300
}
fn default_delegated_timeout() -> u64 {
    5
}

/// Shortest `JWT_SECRET` accepted: an HMAC key is as strong as it is long.
pub const MIN_JWT_SECRET_BYTES: usize = 32;

impl AuthConfig {
    /// Whether this registry's token endpoint issues tokens (`token` with a rules file).
    pub fn issues_tokens(&self) -> bool {
        self.auth_mode == AuthMode::Token && self.auth_rules_file.is_some()
    }

    /// The settings, checked against the address the server binds (`HOST`): anonymous access
    /// only on a loopback address unless `ALLOW_ANONYMOUS_REMOTE`.
    pub fn from_vars(vars: &Vars, host: IpAddr) -> Result<Self, ConfigError> {
        let config: AuthConfig = vars.parse()?;
        config.validate(host).map_err(ConfigError::Invalid)?;
        Ok(config)
    }

    /// Checks that the variables the mode needs are there, and nothing contradicts them.
    fn validate(&self, host: IpAddr) -> Result<(), String> {
        let needs = |present: bool, var: &str| {
            if present {
                Ok(())
            } else {
                Err(format!("AUTH_MODE={} needs {var}", self.mode_name()))
            }
        };
        if let Some(secret) = &self.jwt_secret
            && secret.expose().len() < MIN_JWT_SECRET_BYTES
        {
            return Err(format!(
                "JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes (e.g. `openssl rand -hex 32`)"
            ));
        }
        if self.token_ttl_secs == 0 || self.token_ttl_secs > 86_400 {
            return Err("TOKEN_TTL_SECS must be between 1 and 86400".to_owned());
        }
        match (&self.auth_user, &self.auth_password) {
            (Some(user), Some(password)) if !user.is_empty() && !password.expose().is_empty() => {
                if self.auth_mode != AuthMode::Basic {
                    return Err(
                        "AUTH_USER and AUTH_PASSWORD are users of AUTH_MODE=basic".to_owned()
                    );
                }
                if user.contains(':') {
                    return Err(format!("AUTH_USER={user:?}: a user name has no ':'"));
                }
            }
            (None, None) => {}
            _ => return Err("AUTH_USER and AUTH_PASSWORD go together: set both".to_owned()),
        }
        match self.auth_mode {
            AuthMode::None => {
                if !host.is_loopback() && !self.allow_anonymous_remote {
                    return Err(format!(
                        "refusing to serve anonymous clients on {host}: with AUTH_MODE=none the \
                         registry only binds a loopback address (HOST=127.0.0.1). Configure \
                         authentication (AUTH_MODE=basic, token or delegated), or set \
                         ALLOW_ANONYMOUS_REMOTE=true if this network is trusted"
                    ));
                }
            }
            AuthMode::Basic => {
                needs(
                    self.htpasswd_file.is_some() || self.auth_user.is_some(),
                    "HTPASSWD_FILE (or AUTH_USER and AUTH_PASSWORD)",
                )?;
                if self.auth_users_all_rights && self.auth_rules_file.is_some() {
                    return Err(
                        "AUTH_USERS_ALL_RIGHTS=true and AUTH_RULES_FILE are both set: \
                                the rules file says who may do what, keep one"
                            .to_owned(),
                    );
                }
                needs(
                    self.auth_rules_file.is_some() || self.auth_users_all_rights,
                    "AUTH_RULES_FILE (or AUTH_USERS_ALL_RIGHTS=true)",
                )?;
            }
            AuthMode::Token => {
                needs(
                    self.jwt_secret.is_some()
                        || self.jwt_public_keys_file.is_some()
                        || self.token_signing_key_file.is_some(),
                    "JWT_SECRET, JWT_PUBLIC_KEYS_FILE or TOKEN_SIGNING_KEY_FILE",
                )?;
                if self.issues_tokens() {
                    needs(
                        self.jwt_secret.is_some() || self.token_signing_key_file.is_some(),
                        "TOKEN_SIGNING_KEY_FILE or JWT_SECRET to sign the tokens it issues",
                    )?;
                } else {
                    if self.token_signing_key_file.is_some() || self.htpasswd_file.is_some() {
                        return Err("TOKEN_SIGNING_KEY_FILE and HTPASSWD_FILE serve the token \
                                    endpoint, which also needs AUTH_RULES_FILE"
                            .to_owned());
                    }
                    needs(
                        self.token_realm.is_some(),
                        "TOKEN_REALM (the external token service) when it issues no tokens itself \
                         (no AUTH_RULES_FILE)",
                    )?;
                }
            }
            AuthMode::Delegated => {
                let url = self.delegated_permission_url.as_deref().unwrap_or_default();
                needs(!url.is_empty(), "DELEGATED_PERMISSION_URL")?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(format!(
                        "DELEGATED_PERMISSION_URL={url:?}: expected an http:// or https:// URL"
                    ));
                }
                if self.delegated_timeout_secs == 0 {
                    return Err("DELEGATED_TIMEOUT_SECS must be at least 1".to_owned());
                }
            }
        }
        Ok(())
    }

    fn mode_name(&self) -> &'static str {
        match self.auth_mode {
            AuthMode::None => "none",
            AuthMode::Basic => "basic",
            AuthMode::Token => "token",
            AuthMode::Delegated => "delegated",
        }
    }
}

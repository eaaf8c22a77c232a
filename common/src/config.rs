//! Configuration, read once at start-up from environment variables (envy), one struct per
//! concern. Every variable is listed with its default in the README's configuration table.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::auth::Secret;

/// Where and how the HTTP server listens.
#[derive(Debug, Clone, Deserialize)]
pub struct ServerConfig {
    /// `HOST`: address to bind; `0.0.0.0` by default on Cloud Run (`K_SERVICE` set), where
    /// only a non-loopback address receives traffic, and `127.0.0.1` elsewhere.
    #[serde(default = "default_host")]
    pub host: IpAddr,
    /// `PORT`: port to bind (Cloud Run sets it). When unset, each binary's own default: see
    /// [`ServerConfig::port_or`].
    #[serde(default)]
    pub port: Option<u16>,
    /// `HEADER_READ_TIMEOUT_SECS`: a client must send its request headers within this time.
    #[serde(default = "default_header_timeout")]
    pub header_read_timeout_secs: u64,
    /// `BODY_IDLE_TIMEOUT_SECS`: a request body that sends nothing for this long is aborted.
    #[serde(default = "default_body_idle_timeout")]
    pub body_idle_timeout_secs: u64,
    /// `MAX_CONNECTIONS`: open connections served at once; further ones wait in the backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

impl ServerConfig {
    /// Default port of the single `registry` binary.
    pub const REGISTRY_PORT: u16 = 5000;
    /// Default port of the Cloud Run service binaries (Cloud Run's own default for `PORT`).
    pub const SERVICE_PORT: u16 = 8080;

    /// `PORT` when set, else the binary's default.
    pub fn port_or(&self, default: u16) -> u16 {
        self.port.unwrap_or(default)
    }
}

/// Whether the process runs on Cloud Run, which sets `K_SERVICE` for every service.
pub fn on_cloud_run() -> bool {
    std::env::var_os("K_SERVICE").is_some_and(|v| !v.is_empty())
}

fn default_host() -> IpAddr {
    if on_cloud_run() {
        IpAddr::from([0, 0, 0, 0])
    } else {
        IpAddr::from([127, 0, 0, 1])
    }
}
fn default_header_timeout() -> u64 {
    30
}
fn default_body_idle_timeout() -> u64 {
    60
}
fn default_max_connections() -> usize {
    4096
}

/// Where bytes and (by default) metadata live.
#[derive(Debug, Clone, Deserialize)]
pub struct StorageConfig {
    /// `DATA_DIR`: root of the embedded default: blobs under it, and the SQLite file.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}

/// The metadata database.
#[derive(Debug, Clone, Deserialize)]
pub struct DbConfig {
    /// `DATABASE_URL` (or `DB_URL`): `sqlite://…` or `postgres://…`; when unset, the SQLite
    /// file `DATA_DIR/registry.db`.
    #[serde(default, alias = "db_url")]
    pub database_url: Option<String>,
    /// `DB_MAX_CONNECTIONS`: most connections in the pool (SQLite: the read pool; its writes
    /// always use one connection).
    #[serde(default = "default_db_max_connections")]
    pub db_max_connections: u32,
    /// `DB_MIN_CONNECTIONS`: connections kept open when idle; 0 suits scale-to-zero.
    #[serde(default)]
    pub db_min_connections: u32,
    /// `DB_ACQUIRE_TIMEOUT_SECS`: how long a request waits for a connection before failing.
    #[serde(default = "default_db_acquire_timeout")]
    pub db_acquire_timeout_secs: u64,
    /// `DB_IDLE_TIMEOUT_SECS`: an idle connection above the minimum is closed after this long.
    #[serde(default = "default_db_idle_timeout")]
    pub db_idle_timeout_secs: u64,
    /// `DB_MIGRATE_ON_START`: apply pending migrations when the process starts.
    #[serde(default = "default_true")]
    pub db_migrate_on_start: bool,
}

fn default_db_max_connections() -> u32 {
    8
}
fn default_db_acquire_timeout() -> u64 {
    10
}
fn default_db_idle_timeout() -> u64 {
    60
}
fn default_true() -> bool {
    true
}

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
                needs(self.htpasswd_file.is_some(), "HTPASSWD_FILE")?;
                needs(self.auth_rules_file.is_some(), "AUTH_RULES_FILE")?;
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

/// Limits of the distribution API.
#[derive(Debug, Clone, Deserialize)]
pub struct LimitsConfig {
    /// `MANIFEST_MAX_BYTES`: largest manifest accepted.
    #[serde(default = "default_manifest_max")]
    pub manifest_max_bytes: usize,
    /// `PAGE_MAX`: most entries a tag list or catalog page returns, whatever `n` asks.
    #[serde(default = "default_page_max")]
    pub page_max: u32,
}

fn default_manifest_max() -> usize {
    4 * 1024 * 1024
}
fn default_page_max() -> u32 {
    10_000
}

/// The management API (`/api/`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApiConfig {
    /// `API_CORS_ORIGINS`: the dashboards allowed to call the management API from a browser,
    /// with the user's credentials: comma-separated origins (`https://dash.example.com`).
    #[serde(default)]
    pub api_cors_origins: CorsOrigins,
}

/// Origins (`scheme://host[:port]`) allowed to call the management API from a browser.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsOrigins(std::sync::Arc<[String]>);

impl CorsOrigins {
    /// Parses a comma-separated list. `*` is refused: the API takes credentials, and browsers
    /// send none to a wildcard.
    pub fn parse(raw: &str) -> Result<CorsOrigins, String> {
        let mut origins = Vec::new();
        for origin in raw.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let host = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            let valid = host.is_some_and(|h| {
                !h.is_empty()
                    && h.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                    })
            });
            if !valid {
                return Err(format!(
                    "API_CORS_ORIGINS: {origin:?} is not an origin; expected scheme://host[:port] \
                     without a path, e.g. https://dash.example.com (`*` is not allowed: the API \
                     takes credentials)"
                ));
            }
            origins.push(origin.to_ascii_lowercase());
        }
        Ok(CorsOrigins(origins.into()))
    }

    /// Whether a request's `Origin` is one of them.
    pub fn allows(&self, origin: &[u8]) -> bool {
        self.0
            .iter()
            .any(|o| o.as_bytes().eq_ignore_ascii_case(origin))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for CorsOrigins {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        CorsOrigins::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// Logging.
#[derive(Debug, Clone, Deserialize)]
pub struct LogConfig {
    /// `LOG_LEVEL`: `error`, `warn`, `info`, `debug`, `trace`, or a tracing filter.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// `LOG_FORMAT`: `text`, or `json` (Cloud Logging's structured format); `json` by default
    /// on Cloud Run (`K_SERVICE` set), `text` elsewhere.
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// `GOOGLE_CLOUD_PROJECT`: the project whose Cloud Trace the `traceparent` /
    /// `X-Cloud-Trace-Context` trace ids belong to; JSON lines name
    /// `projects/<id>/traces/<trace>` only when it is set.
    #[serde(default)]
    pub google_cloud_project: Option<String>,
}

fn default_log_level() -> String {
    "info".to_owned()
}
fn default_log_format() -> String {
    if on_cloud_run() { "json" } else { "text" }.to_owned()
}

/// A configuration error, naming the variable when envy can tell.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Env(#[from] envy::Error),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Everything the registry reads at start-up.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub db: DbConfig,
    pub auth: AuthConfig,
    pub limits: LimitsConfig,
    pub log: LogConfig,
    pub api: ApiConfig,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads the configuration from the given variables instead of the process environment
    /// (in-process tests build a state this way).
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let config = Config {
            server: envy::from_iter(vars.clone())?,
            storage: envy::from_iter(vars.clone())?,
            db: envy::from_iter(vars.clone())?,
            auth: envy::from_iter(vars.clone())?,
            limits: envy::from_iter(vars.clone())?,
            log: envy::from_iter(vars.clone())?,
            api: envy::from_iter(vars)?,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.auth
            .validate(self.server.host)
            .map_err(ConfigError::Invalid)?;
        if !matches!(self.log.log_format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid(format!(
                "LOG_FORMAT={:?}: expected text or json",
                self.log.log_format
            )));
        }
        if self.limits.page_max == 0 || self.server.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "PAGE_MAX and MAX_CONNECTIONS must be at least 1".to_owned(),
            ));
        }
        Ok(())
    }

    /// The database URL in force: the configured one, or the SQLite file under `DATA_DIR`.
    pub fn database_url(&self) -> String {
        match &self.db.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.storage.data_dir.join("registry.db").display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The authentication settings of `vars`, validated for their `HOST` (default loopback).
    fn config(vars: &[(&str, &str)]) -> Result<AuthConfig, String> {
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let auth: AuthConfig = envy::from_iter(vars.clone()).map_err(|e| e.to_string())?;
        let server: ServerConfig = envy::from_iter(vars).map_err(|e| e.to_string())?;
        auth.validate(server.host)?;
        Ok(auth)
    }

    #[track_caller]
    fn refused(vars: &[(&str, &str)], needle: &str) {
        match config(vars) {
            Err(e) => assert!(e.contains(needle), "{vars:?}: {e}"),
            Ok(_) => panic!("{vars:?} accepted"),
        }
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn each_mode_needs_its_settings() {
        assert!(config(&[]).is_ok());
        refused(&[("AUTH_MODE", "ldap")], "AUTH_MODE=\"ldap\"");
        refused(&[("HOST", "0.0.0.0")], "ALLOW_ANONYMOUS_REMOTE");
        assert!(config(&[("HOST", "0.0.0.0"), ("ALLOW_ANONYMOUS_REMOTE", "true")]).is_ok());
        refused(&[("AUTH_MODE", "basic")], "HTPASSWD_FILE");
        refused(
            &[("AUTH_MODE", "basic"), ("HTPASSWD_FILE", "/h")],
            "AUTH_RULES_FILE",
        );
        let basic = [
            ("AUTH_MODE", "basic"),
            ("HTPASSWD_FILE", "/h"),
            ("AUTH_RULES_FILE", "/r"),
            ("HOST", "0.0.0.0"),
        ];
        assert!(config(&basic).is_ok(), "authentication may listen anywhere");
        refused(&[("AUTH_MODE", "token")], "JWT_SECRET");
        refused(
            &[("AUTH_MODE", "token"), ("JWT_SECRET", "short")],
            "at least 32 bytes",
        );
        refused(
            &[("AUTH_MODE", "token"), ("JWT_SECRET", SECRET)],
            "TOKEN_REALM",
        );
        assert!(
            config(&[
                ("AUTH_MODE", "token"),
                ("JWT_SECRET", SECRET),
                ("TOKEN_REALM", "https://auth.example/token"),
            ])
            .is_ok()
        );
        refused(
            &[
                ("AUTH_MODE", "token"),
                ("JWT_PUBLIC_KEYS_FILE", "/k"),
                ("AUTH_RULES_FILE", "/r"),
            ],
            "TOKEN_SIGNING_KEY_FILE or JWT_SECRET",
        );
        refused(
            &[
                ("AUTH_MODE", "token"),
                ("JWT_SECRET", SECRET),
                ("HTPASSWD_FILE", "/h"),
                ("TOKEN_REALM", "https://auth.example/token"),
            ],
            "also needs AUTH_RULES_FILE",
        );
        let issuing = config(&[
            ("AUTH_MODE", "token"),
            ("JWT_SECRET", SECRET),
            ("AUTH_RULES_FILE", "/r"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(issuing.issues_tokens());
        refused(&[("AUTH_MODE", "delegated")], "DELEGATED_PERMISSION_URL");
        refused(
            &[
                ("AUTH_MODE", "delegated"),
                ("DELEGATED_PERMISSION_URL", "ftp://x"),
            ],
            "http:// or https://",
        );
        assert!(
            config(&[
                ("AUTH_MODE", "delegated"),
                ("DELEGATED_PERMISSION_URL", "https://api.example/permission"),
            ])
            .is_ok()
        );
    }

    #[test]
    fn cors_origins_are_origins() {
        let api = |raw: &str| {
            envy::from_iter::<_, ApiConfig>([("API_CORS_ORIGINS".to_owned(), raw.to_owned())])
                .map(|c| c.api_cors_origins)
                .map_err(|e| e.to_string())
        };
        let origins = api(" https://Dash.example.com, http://127.0.0.1:3000,,").unwrap();
        assert!(origins.allows(b"https://dash.example.com"));
        assert!(origins.allows(b"http://127.0.0.1:3000"));
        assert!(!origins.allows(b"https://dash.example.com.evil"));
        assert!(!origins.allows(b"http://dash.example.com"));
        assert!(api("").unwrap().is_empty());
        for bad in [
            "*",
            "dash.example.com",
            "https://dash.example.com/",
            "https://",
            "ftp://x",
        ] {
            let e = api(bad).unwrap_err();
            assert!(e.contains("API_CORS_ORIGINS"), "{bad}: {e}");
        }
        let unset: ApiConfig = envy::from_iter(Vec::<(String, String)>::new()).unwrap();
        assert!(unset.api_cors_origins.is_empty());
    }

    #[test]
    fn the_secret_never_prints() {
        let config = config(&[
            ("AUTH_MODE", "token"),
            ("JWT_SECRET", SECRET),
            ("TOKEN_REALM", "https://auth.example/token"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let shown = format!("{config:?}");
        assert!(!shown.contains(SECRET), "{shown}");
    }
}

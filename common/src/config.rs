//! Configuration, read once at start-up from environment variables (envy), one struct per
//! concern. Every variable is listed with its default in the README's configuration table.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::Deserialize;

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

/// Who may call the registry.
#[derive(Debug, Clone, Deserialize)]
pub struct AuthConfig {
    /// `AUTH_MODE`: `none` is the only mode of this build.
    #[serde(default = "default_auth_mode")]
    pub auth_mode: String,
    /// `ALLOW_ANONYMOUS_REMOTE`: serve anonymous clients on a non-loopback address anyway
    /// (a trusted private network); off by default.
    #[serde(default)]
    pub allow_anonymous_remote: bool,
}

fn default_auth_mode() -> String {
    "none".to_owned()
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
            log: envy::from_iter(vars)?,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.auth.auth_mode != "none" {
            return Err(ConfigError::Invalid(format!(
                "AUTH_MODE={:?} is not supported by this build; use AUTH_MODE=none",
                self.auth.auth_mode
            )));
        }
        if !self.server.host.is_loopback() && !self.auth.allow_anonymous_remote {
            return Err(ConfigError::Invalid(format!(
                "refusing to serve anonymous clients on {}: with AUTH_MODE=none the registry \
                 only binds a loopback address (HOST=127.0.0.1). Configure authentication, or \
                 set ALLOW_ANONYMOUS_REMOTE=true if this network is trusted",
                self.server.host
            )));
        }
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

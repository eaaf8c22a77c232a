//! The HTTP server, the distribution API's limits, and logging.

use std::net::IpAddr;

use serde::{Deserialize, Deserializer};

use super::{ConfigError, Vars};

/// Where and how the HTTP server listens.
#[derive(Debug, Clone, Deserialize)]
pub struct ServerConfig {
    /// `HOST`: address to bind; `0.0.0.0` by default on Cloud Run (`K_SERVICE` set), where
    /// only a non-loopback address receives traffic, and `127.0.0.1` elsewhere.
    #[serde(default = "loopback", deserialize_with = "ip_address")]
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

    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let mut config: ServerConfig = vars.parse()?;
        if vars.on_cloud_run() && vars.get("HOST").is_none() {
            config.host = IpAddr::from([0, 0, 0, 0]);
        }
        if config.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "MAX_CONNECTIONS must be at least 1".to_owned(),
            ));
        }
        Ok(config)
    }

    /// `PORT` when set, else the binary's default.
    pub fn port_or(&self, default: u16) -> u16 {
        self.port.unwrap_or(default)
    }
}

/// `HOST` as an IP address, the error naming the variable (`IpAddr`'s own does not).
fn ip_address<'de, D: Deserializer<'de>>(deserializer: D) -> Result<IpAddr, D::Error> {
    let raw = String::deserialize(deserializer)?;
    raw.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "HOST={raw:?}: expected an IP address, such as 127.0.0.1 or 0.0.0.0"
        ))
    })
}

fn loopback() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
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

/// Limits of the distribution API.
#[derive(Debug, Clone, Deserialize)]
pub struct LimitsConfig {
    /// `MANIFEST_MAX_BYTES`: largest manifest accepted.
    #[serde(default = "default_manifest_max")]
    pub manifest_max_bytes: usize,
    /// `PAGE_MAX`: most entries a tag list or catalog page returns, whatever `n` asks.
    #[serde(default = "default_page_max")]
    pub page_max: u32,
    /// `DELETE_ENABLED`: `false` refuses every delete (`/v2/` `DELETE`s answer `405
    /// UNSUPPORTED`, the management API's deletes `UNSUPPORTED` too). On by default.
    #[serde(default = "enabled")]
    pub delete_enabled: bool,
}

fn enabled() -> bool {
    true
}

impl LimitsConfig {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let config: LimitsConfig = vars.parse()?;
        if config.page_max == 0 {
            return Err(ConfigError::Invalid(
                "PAGE_MAX must be at least 1".to_owned(),
            ));
        }
        Ok(config)
    }
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
    /// `LOG_LEVEL`: `error`, `warn`, `info`, `debug`, `trace` (in any case), or a tracing
    /// filter.
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
    /// What start-up logs about other registries' settings it read (accepted, meaningless
    /// here; see `config::dropin`).
    #[serde(skip)]
    pub settings_notes: Vec<String>,
}

impl LogConfig {
    /// With the notes about other registries' settings that start-up logs.
    pub(crate) fn with_notes(mut self, notes: Vec<String>) -> Self {
        self.settings_notes = notes;
        self
    }

    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let mut config: LogConfig = vars.parse()?;
        // `LOG_LEVEL=INFO` (other registries' spelling) is the level, not a filter that
        // matches nothing.
        let level = config.log_level.to_ascii_lowercase();
        if matches!(
            level.as_str(),
            "error" | "warn" | "info" | "debug" | "trace" | "off"
        ) {
            config.log_level = level;
        }
        if vars.on_cloud_run() && vars.get("LOG_FORMAT").is_none() {
            config.log_format = "json".to_owned();
        }
        if !matches!(config.log_format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid(format!(
                "LOG_FORMAT={:?}: expected text or json",
                config.log_format
            )));
        }
        Ok(config)
    }
}

fn default_log_level() -> String {
    "info".to_owned()
}
fn default_log_format() -> String {
    "text".to_owned()
}

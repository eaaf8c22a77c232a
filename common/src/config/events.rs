//! Events (issue #18): their destinations (NATS from the `NATS_*` variables, webhooks from
//! `WEBHOOKS_FILE`, see [`super::webhooks`]) and the delivery settings (`EVENTS_*`). Events
//! are recorded only when some destination is configured ([`EventsConfig::enabled`]).
//! Secrets (NATS password, token, credentials file, webhook secrets) are held as [`Secret`]s.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::webhooks::{WebhookEndpoint, read_webhooks};
use super::{ConfigError, Secret, Vars};

/// Where events go and how their delivery is retried and kept.
#[derive(Debug, Clone, Default)]
pub struct EventsConfig {
    /// Some when `NATS_URL` is set and non-empty.
    pub nats: Option<NatsConfig>,
    /// The endpoints of `WEBHOOKS_FILE`, in file order (unset or empty: none).
    pub webhooks: Vec<Arc<WebhookEndpoint>>,
    /// `EVENTS_MAX_ATTEMPTS`: sends to one destination before the delivery is dead-lettered.
    pub max_attempts: u32,
    /// `EVENTS_RETRY_BASE_SECS`: the first retry's delay, doubled at each further attempt.
    pub retry_base: Duration,
    /// `EVENTS_RETRY_MAX_SECS`: the cap on a retry's delay.
    pub retry_max: Duration,
    /// `EVENTS_RETENTION_SECS`: how long delivered events are kept.
    pub retention: Duration,
    /// `EVENTS_DEAD_RETENTION_SECS`: how long dead-lettered deliveries are kept (for replay).
    pub dead_retention: Duration,
    /// `EVENTS_PULLS`: whether pulls are recorded as events.
    pub pulls: bool,
    /// This process's identity in events' `source.instanceID`: a fresh UUID v4 per process.
    pub source_instance: String,
    /// Events' `source.addr`: the Cloud Run revision (`K_REVISION`) or the host name
    /// (`HOSTNAME`), and the port (`PORT`) when set.
    pub source_addr: String,
}

/// The NATS destination.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// `NATS_URL`: one server URL or a comma-separated list (`nats://a:4222,nats://b:4222`).
    pub url: String,
    /// `NATS_SUBJECT_PREFIX`: events go to `<prefix>.<action>`.
    pub subject_prefix: String,
    pub credentials: NatsCredentials,
    pub jetstream: JetStreamMode,
}

/// How the registry authenticates to NATS (at most one of them).
#[derive(Debug, Clone)]
pub enum NatsCredentials {
    None,
    /// `NATS_CREDS_FILE`: a `.creds` file (user JWT and NKey seed), read at start-up.
    CredsFile {
        path: PathBuf,
        contents: Secret<String>,
    },
    /// `NATS_USER` and `NATS_PASSWORD`.
    UserPassword {
        user: String,
        password: Secret<String>,
    },
    /// `NATS_TOKEN`.
    Token(Secret<String>),
}

/// `NATS_JETSTREAM`: whether events are published through JetStream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JetStreamMode {
    /// `auto`: through JetStream, waiting for the ack, where a stream covers the subject;
    /// a core publish where none does.
    Auto,
    /// `true`: through JetStream; no stream for the subject is a failed send.
    Required,
    /// `false`: core NATS publish (and a flush), no ack.
    Off,
}

#[derive(Debug, Deserialize)]
struct RawVars {
    #[serde(default)]
    nats_url: Option<String>,
    #[serde(default = "default_prefix")]
    nats_subject_prefix: String,
    #[serde(default)]
    nats_creds_file: Option<PathBuf>,
    #[serde(default)]
    nats_user: Option<String>,
    #[serde(default)]
    nats_password: Option<String>,
    #[serde(default)]
    nats_token: Option<String>,
    #[serde(default)]
    nats_jetstream: Option<String>,
    #[serde(default = "default_max_attempts")]
    events_max_attempts: u32,
    #[serde(default = "default_retry_base")]
    events_retry_base_secs: u64,
    #[serde(default = "default_retry_max")]
    events_retry_max_secs: u64,
    #[serde(default = "default_retention")]
    events_retention_secs: u64,
    #[serde(default = "default_dead_retention")]
    events_dead_retention_secs: u64,
    #[serde(default)]
    events_pulls: bool,
}

fn default_prefix() -> String {
    "registry".to_owned()
}
fn default_max_attempts() -> u32 {
    12
}
fn default_retry_base() -> u64 {
    2
}
fn default_retry_max() -> u64 {
    900
}
fn default_retention() -> u64 {
    86_400
}
fn default_dead_retention() -> u64 {
    30 * 86_400
}

impl EventsConfig {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let raw: RawVars = vars.parse()?;
        if raw.events_max_attempts == 0 {
            return Err(ConfigError::Invalid(
                "EVENTS_MAX_ATTEMPTS must be at least 1".to_owned(),
            ));
        }
        if raw.events_retry_base_secs == 0 {
            return Err(ConfigError::Invalid(
                "EVENTS_RETRY_BASE_SECS must be at least 1".to_owned(),
            ));
        }
        if raw.events_retry_max_secs < raw.events_retry_base_secs {
            return Err(ConfigError::Invalid(format!(
                "EVENTS_RETRY_MAX_SECS ({}) must be at least EVENTS_RETRY_BASE_SECS ({})",
                raw.events_retry_max_secs, raw.events_retry_base_secs
            )));
        }
        let pulls = raw.events_pulls;
        Ok(EventsConfig {
            nats: nats_config(&raw)?,
            webhooks: read_webhooks(vars, pulls)?,
            max_attempts: raw.events_max_attempts,
            retry_base: Duration::from_secs(raw.events_retry_base_secs),
            retry_max: Duration::from_secs(raw.events_retry_max_secs),
            retention: Duration::from_secs(raw.events_retention_secs),
            dead_retention: Duration::from_secs(raw.events_dead_retention_secs),
            pulls,
            source_instance: uuid::Uuid::new_v4().to_string(),
            source_addr: source_addr(vars),
        })
    }

    /// Whether any destination is configured (events are recorded only then).
    pub fn enabled(&self) -> bool {
        self.nats.is_some() || !self.webhooks.is_empty()
    }
}

/// Where this process runs, as events' `source.addr` names it.
fn source_addr(vars: &Vars) -> String {
    let host = ["K_REVISION", "HOSTNAME"]
        .into_iter()
        .find_map(|name| vars.get(name).filter(|v| !v.is_empty()))
        .unwrap_or("localhost");
    match vars.get("PORT").filter(|v| !v.is_empty()) {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// A variable's value unless unset or empty (Terraform passes optional ones as empty).
fn set(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

fn nats_config(raw: &RawVars) -> Result<Option<NatsConfig>, ConfigError> {
    let creds_file = raw
        .nats_creds_file
        .as_ref()
        .filter(|p| !p.as_os_str().is_empty());
    let (user, password, token) = (
        set(&raw.nats_user),
        set(&raw.nats_password),
        set(&raw.nats_token),
    );
    let Some(url) = set(&raw.nats_url) else {
        let stray = [
            ("NATS_CREDS_FILE", creds_file.is_some()),
            ("NATS_USER", user.is_some()),
            ("NATS_PASSWORD", password.is_some()),
            ("NATS_TOKEN", token.is_some()),
            ("NATS_JETSTREAM", set(&raw.nats_jetstream).is_some()),
        ];
        if let Some((name, _)) = stray.iter().find(|(_, is_set)| *is_set) {
            return Err(ConfigError::Invalid(format!(
                "{name} is set but NATS_URL is not (set NATS_URL to publish events to NATS)"
            )));
        }
        return Ok(None);
    };
    for server in url.split(',') {
        check_server(server.trim()).map_err(|why| {
            ConfigError::Invalid(format!("NATS_URL: {:?} {why}", redact(server.trim())))
        })?;
    }
    check_subject_prefix(&raw.nats_subject_prefix).map_err(|why| {
        ConfigError::Invalid(format!(
            "NATS_SUBJECT_PREFIX={:?}: {why}",
            raw.nats_subject_prefix
        ))
    })?;
    let credentials = match (creds_file, user, password, token) {
        (None, None, None, None) => NatsCredentials::None,
        (Some(path), None, None, None) => NatsCredentials::CredsFile {
            path: path.clone(),
            contents: Secret::new(read_creds(path)?),
        },
        (None, Some(user), Some(password), None) => NatsCredentials::UserPassword {
            user: user.to_owned(),
            password: Secret::new(password.to_owned()),
        },
        (None, None, None, Some(token)) => NatsCredentials::Token(Secret::new(token.to_owned())),
        (None, Some(_), None, None) => {
            return Err(ConfigError::Invalid(
                "NATS_USER needs NATS_PASSWORD".to_owned(),
            ));
        }
        (None, None, Some(_), None) => {
            return Err(ConfigError::Invalid(
                "NATS_PASSWORD needs NATS_USER".to_owned(),
            ));
        }
        _ => {
            return Err(ConfigError::Invalid(
                "give only one of NATS_CREDS_FILE, NATS_USER with NATS_PASSWORD, and NATS_TOKEN"
                    .to_owned(),
            ));
        }
    };
    let jetstream = match set(&raw.nats_jetstream).unwrap_or("auto") {
        "auto" => JetStreamMode::Auto,
        "true" => JetStreamMode::Required,
        "false" => JetStreamMode::Off,
        other => {
            return Err(ConfigError::Malformed(format!(
                "NATS_JETSTREAM={other:?}: expected auto, true or false"
            )));
        }
    };
    Ok(Some(NatsConfig {
        url: url.to_owned(),
        subject_prefix: raw.nats_subject_prefix.clone(),
        credentials,
        jetstream,
    }))
}

/// One server of `NATS_URL`: `[scheme://]host[:port]`, the scheme one the client speaks.
fn check_server(server: &str) -> Result<(), &'static str> {
    if server.is_empty() {
        return Err("is empty (a list is comma-separated, with no empty entry)");
    }
    let rest = match server.split_once("://") {
        Some((scheme, rest)) => {
            // WebSocket (ws://) is left out: the client is built without it.
            if !matches!(scheme, "nats" | "tls") {
                return Err("must be nats:// or tls://");
            }
            rest
        }
        None => server,
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    // Credentials in the URL would be printed wherever the URL is.
    if authority.contains('@') {
        return Err("must not hold credentials (use NATS_USER and NATS_PASSWORD, or NATS_TOKEN)");
    }
    if authority.is_empty() || authority.starts_with(':') {
        return Err("has no host");
    }
    Ok(())
}

/// A server URL as it may be printed: whatever precedes an `@` is replaced by `***`.
fn redact(server: &str) -> String {
    match server.rsplit_once('@') {
        Some((before, after)) => match before.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://***@{after}"),
            None => format!("***@{after}"),
        },
        None => server.to_owned(),
    }
}

/// Dot-separated tokens, none empty, without whitespace or the wildcards `*` and `>`.
fn check_subject_prefix(prefix: &str) -> Result<(), &'static str> {
    let valid = prefix.split('.').all(|token| {
        !token.is_empty()
            && token
                .chars()
                .all(|c| !c.is_whitespace() && !c.is_control() && c != '*' && c != '>')
    });
    if valid {
        Ok(())
    } else {
        Err("expected a NATS subject: dot-separated tokens, none empty, without spaces, * or >")
    }
}

/// The `.creds` file's text, checked to hold a user JWT and an NKey seed.
fn read_creds(path: &std::path::Path) -> Result<String, ConfigError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::Invalid(format!("NATS_CREDS_FILE {shown}: cannot read it: {e}"))
    })?;
    if !text.contains("BEGIN NATS USER JWT") || !text.contains("BEGIN USER NKEY SEED") {
        return Err(ConfigError::Invalid(format!(
            "NATS_CREDS_FILE {shown}: not a NATS credentials file (expected a user JWT and \
             an NKey seed, as `nsc generate creds` writes)"
        )));
    }
    Ok(text)
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;

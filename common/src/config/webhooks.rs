//! The webhook endpoints of events: a JSON file named by `WEBHOOKS_FILE`, read at start-up
//! (the README's "Events" section documents the format). Every error names the file, the
//! endpoint (by name, or by index when it has none) and the field. A signing secret comes from
//! the variable named by `secret_env`, never from the file itself.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::json_file::{any_pattern_matches, check_repository_patterns, label, parse_json};
use super::{ConfigError, Secret, Vars};
use crate::events::Action;

/// The variable naming the file.
pub const WEBHOOKS_FILE: &str = "WEBHOOKS_FILE";

/// A webhook's timeout by default (`timeout_secs`).
pub const DEFAULT_WEBHOOK_TIMEOUT_SECS: u64 = 5;

/// The most events of one repository a webhook request carries by default
/// (`max_events_per_request`), and the most it may be set to (a claim's rows per stream).
pub const DEFAULT_MAX_EVENTS_PER_REQUEST: u32 = 32;

/// Headers the delivery sets itself (or HTTP owns): an endpoint's `headers` may not name them.
const RESERVED_HEADERS: [&str; 7] = [
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
    "x-registry-event-id",
    "x-registry-signature-256",
];

/// One webhook endpoint. `Debug` prints header names, not their values (an `Authorization`
/// header is a secret).
#[derive(Clone)]
pub struct WebhookEndpoint {
    /// Unique among the endpoints; its destination is `webhook:<name>`. Letters, digits,
    /// `.`, `_` and `-`.
    pub name: String,
    /// The `http(s)` URL events are `POST`ed to.
    pub url: String,
    /// Extra request headers, names and values validated.
    pub headers: Vec<(String, String)>,
    /// The HMAC-SHA256 key of the signature header (the value of the variable `secret_env`).
    pub secret: Option<Secret<String>>,
    /// The actions sent to this endpoint; empty: every action.
    pub actions: Vec<Action>,
    /// Repository patterns (`*` matches any run of characters, `/` included); empty: all.
    pub repositories: Vec<String>,
    /// How long a send may take, answer included.
    pub timeout: Duration,
    /// The most events (of one repository, in order) one request carries.
    pub max_events_per_request: u32,
}

impl WebhookEndpoint {
    /// Whether this endpoint takes events of `action` on `repository`.
    pub fn wants(&self, action: Action, repository: &str) -> bool {
        (self.actions.is_empty() || self.actions.contains(&action))
            && any_pattern_matches(&self.repositories, repository)
    }
}

impl fmt::Debug for WebhookEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("WebhookEndpoint")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("headers", &header_names)
            .field("secret", &self.secret)
            .field("actions", &self.actions)
            .field("repositories", &self.repositories)
            .field("timeout", &self.timeout)
            .field("max_events_per_request", &self.max_events_per_request)
            .finish()
    }
}

/// The endpoints of the file named by `WEBHOOKS_FILE` (unset or empty: none). `pulls` is
/// `EVENTS_PULLS`: an endpoint asking for pulls while they are not recorded is refused.
pub(super) fn read_webhooks(
    vars: &Vars,
    pulls: bool,
) -> Result<Vec<Arc<WebhookEndpoint>>, ConfigError> {
    let Some(path) = vars.get(WEBHOOKS_FILE).filter(|p| !p.is_empty()) else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::Invalid(format!("{WEBHOOKS_FILE} {path}: cannot read it: {e}"))
    })?;
    parse_webhooks(Path::new(path), &text, vars, pulls)
}

/// The endpoints described by `text`, the content of the file at `path` (named in errors).
pub fn parse_webhooks(
    path: &Path,
    text: &str,
    vars: &Vars,
    pulls: bool,
) -> Result<Vec<Arc<WebhookEndpoint>>, ConfigError> {
    let file = path.display();
    let raw: RawFile = parse_json(text).map_err(|(at, message)| {
        let endpoint = at.map(|index| format!("{}: ", label(text, "endpoints", "endpoint", index)));
        ConfigError::Invalid(format!(
            "{WEBHOOKS_FILE} {file}: {}{message}",
            endpoint.unwrap_or_default()
        ))
    })?;
    let mut names = HashSet::new();
    let mut endpoints = Vec::with_capacity(raw.endpoints.len());
    for (index, endpoint) in raw.endpoints.into_iter().enumerate() {
        let who = if endpoint.name.is_empty() {
            format!("endpoints[{index}]")
        } else {
            format!("endpoint {:?}", endpoint.name)
        };
        let fail = |message: String| {
            ConfigError::Invalid(format!("{WEBHOOKS_FILE} {file}: {who}: {message}"))
        };
        let config = endpoint.check(vars, pulls).map_err(fail)?;
        if !names.insert(config.name.clone()) {
            return Err(fail("name: another endpoint has this name".to_owned()));
        }
        endpoints.push(Arc::new(config));
    }
    Ok(endpoints)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    endpoints: Vec<RawEndpoint>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    name: String,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    secret_env: Option<String>,
    #[serde(default)]
    actions: Vec<Action>,
    #[serde(default)]
    repositories: Vec<String>,
    #[serde(default = "default_timeout")]
    timeout_secs: u64,
    #[serde(default = "default_max_events")]
    max_events_per_request: u32,
}

fn default_timeout() -> u64 {
    DEFAULT_WEBHOOK_TIMEOUT_SECS
}

fn default_max_events() -> u32 {
    DEFAULT_MAX_EVENTS_PER_REQUEST
}

impl RawEndpoint {
    /// The checks of one endpoint on its own; the message names the field.
    fn check(self, vars: &Vars, pulls: bool) -> Result<WebhookEndpoint, String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !name_ok {
            return Err(format!(
                "name {:?}: expected 1 to 64 letters, digits, . _ or - (it names the \
                 destination webhook:<name> in the database)",
                self.name
            ));
        }
        let url = check_url(&self.url).map_err(|why| format!("url {:?} {why}", self.url))?;
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, value) in self.headers {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(format!("headers: {name:?} is not a header name"));
            }
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(format!(
                    "headers: {name:?} is set by the delivery itself and cannot be given"
                ));
            }
            // The value is not printed: it may be a credential.
            if http::HeaderValue::from_str(&value).is_err() {
                return Err(format!(
                    "headers: the value of {name:?} is not a valid header value"
                ));
            }
            headers.push((name, value));
        }
        let secret = match &self.secret_env {
            None => None,
            Some(var) => match vars.get(var) {
                Some(value) if !value.is_empty() => Some(Secret::new(value.to_owned())),
                _ => {
                    return Err(format!(
                        "secret_env: the variable {var} is not set (or empty)"
                    ));
                }
            },
        };
        if !pulls && self.actions.contains(&Action::Pull) {
            return Err(
                "actions: \"pull\" needs EVENTS_PULLS=true (pulls are not recorded otherwise)"
                    .to_owned(),
            );
        }
        check_repository_patterns(&self.repositories)?;
        if !(1..=300).contains(&self.timeout_secs) {
            return Err(format!(
                "timeout_secs {}: expected 1 to 300",
                self.timeout_secs
            ));
        }
        if !(1..=DEFAULT_MAX_EVENTS_PER_REQUEST).contains(&self.max_events_per_request) {
            return Err(format!(
                "max_events_per_request {}: expected 1 to {DEFAULT_MAX_EVENTS_PER_REQUEST}",
                self.max_events_per_request
            ));
        }
        let mut actions = self.actions;
        actions.dedup();
        Ok(WebhookEndpoint {
            name: self.name,
            url,
            headers,
            secret,
            actions,
            repositories: self.repositories,
            timeout: Duration::from_secs(self.timeout_secs),
            max_events_per_request: self.max_events_per_request,
        })
    }
}

/// The URL `raw` names, normalized (`http:/a` is `http://a/`, as the HTTP client reads it), or
/// why it is not a usable webhook URL.
fn check_url(raw: &str) -> Result<String, &'static str> {
    let parsed = reqwest_tls::Url::parse(raw).map_err(|_| "is not a URL")?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be http:// or https://");
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("has no host");
    }
    if parsed.fragment().is_some() {
        return Err("must have no fragment");
    }
    // Credentials in the URL would be printed wherever the URL is.
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not hold credentials (use headers, or secret_env for a signature)");
    }
    Ok(parsed.into())
}

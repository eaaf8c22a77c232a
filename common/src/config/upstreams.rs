//! The upstream registries of the pull-through cache: a JSON file named by `UPSTREAMS_FILE`,
//! read at start-up (the README's "Pull-through cache" section documents the format). Every
//! error names the file, the upstream (by name, or by index when it has none) and the field.
//! Secrets come from a variable of the same [`Vars`] (`password_env`) or from a file
//! (`password_file`), never from the JSON itself.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::json_file::{any_pattern_matches, check_repository_patterns, label, parse_json};
use super::{ConfigError, Secret, Vars};
use crate::oci::RepositoryName;

/// The variable naming the file.
pub const UPSTREAMS_FILE: &str = "UPSTREAMS_FILE";
/// The variable holding the same JSON inline (for deployments configured by variables
/// alone; the Cloudflare serverless-registry's `REGISTRIES_JSON` becomes it).
pub const UPSTREAMS_JSON: &str = "UPSTREAMS_JSON";

/// How long a manifest fetched by tag is served before a `HEAD` revalidates it, by default.
pub const DEFAULT_TAG_TTL_SECS: u64 = 300;

/// Every upstream, in file order (the order fallbacks are tried in). Empty when
/// `UPSTREAMS_FILE` is unset.
#[derive(Debug, Clone, Default)]
pub struct UpstreamsConfig {
    pub upstreams: Vec<Arc<UpstreamConfig>>,
}

/// One upstream registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// Unique among the upstreams; names it in logs, errors and metadata.
    pub name: String,
    /// Base URL (`https://registry-1.docker.io`), without a trailing slash.
    pub url: String,
    /// Local path under which this upstream is served (`cache/hub`).
    pub prefix: Option<String>,
    /// The registry host clients name it by (`docker.io`: containerd's `?ns=`).
    pub host: Option<String>,
    /// Also looked up, in file order, for pulls of repositories missing locally.
    pub fallback: bool,
    pub credentials: Option<UpstreamCredentials>,
    /// How long a manifest fetched by tag is served before it is revalidated.
    pub tag_ttl: Duration,
    /// Upstream-side repository patterns (`*` matches any run of characters, `/` included);
    /// empty admits every repository.
    pub repositories: Vec<String>,
    /// Cap on the bytes cached from this upstream (least recently pulled images evicted).
    pub max_bytes: Option<u64>,
}

/// Basic credentials for an upstream (sent as Basic, or to its token endpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamCredentials {
    pub username: String,
    pub password: Secret<String>,
}

impl UpstreamsConfig {
    /// Reads the file named by `UPSTREAMS_FILE` (unset or empty: no upstreams).
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let inline = vars.get(UPSTREAMS_JSON).filter(|j| !j.is_empty());
        let path = vars.get(UPSTREAMS_FILE).filter(|p| !p.is_empty());
        let path = match (path, inline) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid(format!(
                    "{UPSTREAMS_FILE} and {UPSTREAMS_JSON} are both set: keep one"
                )));
            }
            (None, Some(json)) => return UpstreamsConfig::parse_from(UPSTREAMS_JSON, json, vars),
            (None, None) => return Ok(UpstreamsConfig::default()),
            (Some(path), None) => path,
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::Invalid(format!("{UPSTREAMS_FILE} {path}: cannot read it: {e}"))
        })?;
        UpstreamsConfig::parse(Path::new(path), &text, vars)
    }

    /// The upstreams described by `text`, the content of the file at `path` (named in errors;
    /// relative `password_file`s are read relative to the working directory, as the variable's
    /// own path is).
    pub fn parse(path: &Path, text: &str, vars: &Vars) -> Result<Self, ConfigError> {
        let source = format!("{UPSTREAMS_FILE} {}", path.display());
        UpstreamsConfig::parse_from(&source, text, vars)
    }

    /// The upstreams described by `text`; `source` (the file, or `UPSTREAMS_JSON`) starts
    /// every error message.
    fn parse_from(source: &str, text: &str, vars: &Vars) -> Result<Self, ConfigError> {
        let raw: RawFile = parse_json(text).map_err(|(at, message)| {
            let upstream =
                at.map(|index| format!("{}: ", label(text, "upstreams", "upstream", index)));
            ConfigError::Invalid(format!(
                "{source}: {}{message}",
                upstream.unwrap_or_default()
            ))
        })?;
        let mut upstreams = Vec::with_capacity(raw.upstreams.len());
        for (index, upstream) in raw.upstreams.into_iter().enumerate() {
            let who = if upstream.name.is_empty() {
                format!("upstreams[{index}]")
            } else {
                format!("upstream {:?}", upstream.name)
            };
            let config = upstream
                .check(vars)
                .map_err(|message| ConfigError::Invalid(format!("{source}: {who}: {message}")))?;
            upstreams.push(config);
        }
        check_together(&upstreams)
            .map_err(|message| ConfigError::Invalid(format!("{source}: {message}")))?;
        Ok(UpstreamsConfig {
            upstreams: upstreams.into_iter().map(Arc::new).collect(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.upstreams.is_empty()
    }

    /// The upstream called `name`.
    pub fn by_name(&self, name: &str) -> Option<&Arc<UpstreamConfig>> {
        self.upstreams.iter().find(|u| u.name == name)
    }

    /// The upstream clients name by `host` (`?ns=`), compared case-insensitively.
    pub fn by_host(&self, host: &str) -> Option<&Arc<UpstreamConfig>> {
        self.upstreams.iter().find(|u| {
            u.host
                .as_deref()
                .is_some_and(|h| h.eq_ignore_ascii_case(host))
        })
    }
}

impl UpstreamConfig {
    /// Whether the allow-list admits this upstream-side repository name.
    pub fn allows(&self, upstream_repository: &str) -> bool {
        any_pattern_matches(&self.repositories, upstream_repository)
    }

    /// The upstream-side name of a local remainder: Docker Hub (url host
    /// registry-1.docker.io / index.docker.io, or host "docker.io") puts one-component names
    /// under `library/`.
    pub fn upstream_name(&self, remainder: &str) -> String {
        if self.is_docker_hub() && !remainder.contains('/') {
            format!("library/{remainder}")
        } else {
            remainder.to_owned()
        }
    }

    /// Whether this upstream is Docker Hub, whose official images live under `library/`.
    pub fn is_docker_hub(&self) -> bool {
        let url_host = url_host(&self.url);
        matches!(url_host, "registry-1.docker.io" | "index.docker.io")
            || self
                .host
                .as_deref()
                .is_some_and(|h| h.eq_ignore_ascii_case("docker.io"))
    }
}

/// The host of a checked `url` (`scheme://host[:port][/path]`), without the port.
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    upstreams: Vec<RawUpstream>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    name: String,
    url: String,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    fallback: bool,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password_env: Option<String>,
    #[serde(default)]
    password_file: Option<PathBuf>,
    #[serde(default = "default_tag_ttl")]
    tag_ttl_secs: u64,
    #[serde(default)]
    repositories: Vec<String>,
    #[serde(default)]
    max_bytes: Option<u64>,
}

fn default_tag_ttl() -> u64 {
    DEFAULT_TAG_TTL_SECS
}

impl RawUpstream {
    /// The checks of one upstream on its own; the message names the field.
    fn check(self, vars: &Vars) -> Result<UpstreamConfig, String> {
        if self.name.trim().is_empty() {
            return Err("name must not be empty".to_owned());
        }
        let url = check_url(&self.url).map_err(|why| format!("url {:?} {why}", self.url))?;
        if let Some(prefix) = &self.prefix {
            RepositoryName::parse(prefix)
                .map_err(|e| format!("prefix {prefix:?} is not a repository name: {}", e.reason))?;
        }
        if let Some(host) = &self.host
            && !is_host_port(host)
        {
            return Err(format!(
                "host {host:?} is not a host[:port] (such as docker.io or registry.example.com:5000)"
            ));
        }
        if self.prefix.is_none() && self.host.is_none() && !self.fallback {
            return Err(
                "needs at least one of prefix, host or fallback: true (otherwise no request reaches it)"
                    .to_owned(),
            );
        }
        let credentials = self.credentials(vars)?;
        check_repository_patterns(&self.repositories)?;
        if self.max_bytes == Some(0) {
            return Err("max_bytes must be greater than 0 (leave it out for no cap)".to_owned());
        }
        Ok(UpstreamConfig {
            name: self.name,
            url,
            prefix: self.prefix,
            host: self.host.map(|h| h.to_ascii_lowercase()),
            fallback: self.fallback,
            credentials,
            tag_ttl: Duration::from_secs(self.tag_ttl_secs),
            repositories: self.repositories,
            max_bytes: self.max_bytes,
        })
    }

    /// `username` with exactly one of `password_env` and `password_file`, or none of the three.
    fn credentials(&self, vars: &Vars) -> Result<Option<UpstreamCredentials>, String> {
        let password = match (&self.password_env, &self.password_file) {
            (Some(_), Some(_)) => {
                return Err("password_env and password_file: give only one of them".to_owned());
            }
            (None, None) => None,
            (Some(var), None) => match vars.get(var) {
                Some(value) if !value.is_empty() => Some(value.to_owned()),
                _ => {
                    return Err(format!(
                        "password_env: the variable {var} is not set (or empty)"
                    ));
                }
            },
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    format!("password_file {}: cannot read it: {e}", path.display())
                })?;
                // Editors and `echo` end the file with a newline that is not part of it.
                let secret = text.trim_end_matches(['\n', '\r']);
                if secret.is_empty() {
                    return Err(format!("password_file {}: is empty", path.display()));
                }
                Some(secret.to_owned())
            }
        };
        match (&self.username, password) {
            (None, None) => Ok(None),
            (Some(username), Some(password)) if !username.is_empty() => {
                Ok(Some(UpstreamCredentials {
                    username: username.clone(),
                    password: Secret::new(password),
                }))
            }
            (Some(username), _) if username.is_empty() => {
                Err("username must not be empty".to_owned())
            }
            (Some(_), _) => Err("username needs password_env or password_file".to_owned()),
            (None, Some(_)) => {
                let field = if self.password_env.is_some() {
                    "password_env"
                } else {
                    "password_file"
                };
                Err(format!("{field} needs username"))
            }
        }
    }
}

/// The URL without its trailing slash, or why it is not a usable base URL.
fn check_url(raw: &str) -> Result<String, &'static str> {
    let parsed = reqwest_tls::Url::parse(raw).map_err(|_| "is not a URL")?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be http:// or https://");
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("has no host");
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err("must have no query or fragment");
    }
    // Credentials in the URL would be printed wherever the URL is.
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not hold credentials (use username and password_env or password_file)");
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

/// `host` or `host:port`: DNS labels of letters, digits and `-`, or a bracketed IPv6 address.
fn is_host_port(raw: &str) -> bool {
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let Some((address, after)) = rest.split_once(']') else {
            return false;
        };
        if address.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("x", Some(port)),
                None => return false,
            },
        }
    } else {
        match raw.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (raw, None),
        }
    };
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    host.len() <= 253
        && host.split('.').all(label_ok)
        && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0))
}

/// Checks across upstreams: names unique, hosts unique, no prefix equal to or inside another.
fn check_together(upstreams: &[UpstreamConfig]) -> Result<(), String> {
    let mut names = HashSet::new();
    let mut hosts = HashSet::new();
    for upstream in upstreams {
        if !names.insert(upstream.name.as_str()) {
            return Err(format!(
                "upstream {:?}: name: another upstream has this name",
                upstream.name
            ));
        }
        if let Some(host) = &upstream.host
            && !hosts.insert(host.as_str())
        {
            return Err(format!(
                "upstream {:?}: host {host:?}: another upstream has this host",
                upstream.name
            ));
        }
    }
    for (i, a) in upstreams.iter().enumerate() {
        for b in &upstreams[..i] {
            let (Some(pa), Some(pb)) = (&a.prefix, &b.prefix) else {
                continue;
            };
            if contains_path(pa, pb) || contains_path(pb, pa) {
                return Err(format!(
                    "upstream {:?}: prefix {pa:?} overlaps the prefix {pb:?} of upstream {:?} \
                     (equal, or one inside the other)",
                    a.name, b.name
                ));
            }
        }
    }
    Ok(())
}

/// Whether `inner` is `outer` or a path below it, component-wise (`a/b` holds `a/b/c`, not
/// `a/bc`).
fn contains_path(outer: &str, inner: &str) -> bool {
    inner == outer
        || inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
#[path = "upstreams_tests.rs"]
mod tests;

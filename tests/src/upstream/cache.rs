//! The registry under test as a pull-through cache: an `UPSTREAMS_FILE` written from
//! [`Distribution`]s (or other registries), secrets passed by `password_env`, and a few checks
//! the cache suites share.

use std::path::PathBuf;

use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256};

use super::Distribution;
use crate::clients::ACCEPT_MANIFESTS;
use crate::{Registry, Reply, send};

/// The upstreams of one registry under test: the file and the environment naming it. Keep it
/// alive as long as the registry (and its peers) run.
#[derive(Debug)]
pub struct Upstreams {
    dir: tempfile::TempDir,
    entries: Vec<serde_json::Value>,
    secrets: Vec<(String, String)>,
}

impl Default for Upstreams {
    fn default() -> Self {
        Upstreams::new()
    }
}

impl Upstreams {
    pub fn new() -> Upstreams {
        Upstreams {
            dir: tempfile::tempdir().expect("temp dir"),
            entries: Vec::new(),
            secrets: Vec::new(),
        }
    }

    /// Adds an upstream `name` at `dist`, with its credentials (by `password_env`) when it
    /// wants some, and `fields` (`prefix`, `host`, `fallback`, `tag_ttl_secs`, …).
    pub fn add(&mut self, name: &str, dist: &Distribution, fields: serde_json::Value) -> &mut Self {
        let creds = dist.credentials();
        self.add_url(name, &dist.base_url(), creds, fields)
    }

    /// Adds an upstream `name` at `url` (another registry), with `creds` when given.
    pub fn add_url(
        &mut self,
        name: &str,
        url: &str,
        creds: Option<(&str, &str)>,
        fields: serde_json::Value,
    ) -> &mut Self {
        let mut entry = serde_json::json!({"name": name, "url": url});
        if let Some((user, password)) = creds {
            let var = format!(
                "UPSTREAM_PASSWORD_{}",
                name.to_uppercase().replace(['-', '.'], "_")
            );
            entry["username"] = user.into();
            entry["password_env"] = var.clone().into();
            self.secrets.push((var, password.to_owned()));
        }
        if let serde_json::Value::Object(fields) = fields {
            for (k, v) in fields {
                entry[k] = v;
            }
        }
        self.entries.push(entry);
        self
    }

    /// The file, written with the upstreams added so far.
    pub fn file(&self) -> PathBuf {
        let path = self.dir.path().join("upstreams.json");
        let body = serde_json::json!({"upstreams": self.entries});
        std::fs::write(&path, serde_json::to_vec_pretty(&body).expect("JSON"))
            .expect("write the upstreams file");
        path
    }

    /// The registry's environment: `UPSTREAMS_FILE` and the secrets it names.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![(
            "UPSTREAMS_FILE".to_owned(),
            self.file().display().to_string(),
        )];
        env.extend(self.secrets.iter().cloned());
        env
    }

    /// Starts a registry with these upstreams and `extra` settings.
    pub async fn start_registry_with(&self, extra: &[(&str, &str)]) -> Registry {
        let env = self.env();
        let mut all: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        all.extend_from_slice(extra);
        Registry::start_with(&all).await
    }

    /// Starts a registry with these upstreams.
    pub async fn start_registry(&self) -> Registry {
        self.start_registry_with(&[]).await
    }

    /// Asserts that no secret of these upstreams is in `text` (a log, a response).
    #[track_caller]
    pub fn assert_no_secret_in(&self, what: &str, text: &str) {
        for (var, secret) in &self.secrets {
            assert!(
                !text.contains(secret.as_str()),
                "the secret of {var} is in {what}"
            );
        }
    }
}

/// A blob read as it streams: its size and digest, never whole in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Streamed {
    pub status: u16,
    pub size: u64,
    pub digest: String,
}

/// GETs `url` and hashes the body as it arrives.
pub async fn stream_digest(client: &reqwest::Client, url: &str) -> Streamed {
    let resp = client.get(url).send().await.expect("send GET");
    let status = resp.status().as_u16();
    let mut body = resp.bytes_stream();
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap_or_else(|e| panic!("body of {url} broke after {size} bytes: {e}"));
        size += chunk.len() as u64;
        hasher.update(&chunk);
    }
    Streamed {
        status,
        size,
        digest: format!("sha256:{}", crate::hex(&hasher.finalize())),
    }
}

/// Asserts a 200 whose body is `want`; shows the body as text when it is not.
#[track_caller]
pub fn assert_body(reply: &crate::Reply, want: &[u8], what: &str) {
    assert!(
        reply.status == 200 && reply.body == want,
        "{what}: want 200 with the {} bytes expected, got {} with {} bytes: {}",
        want.len(),
        reply.status,
        reply.body.len(),
        String::from_utf8_lossy(&reply.body[..reply.body.len().min(2000)])
    );
}

/// A registry caching `dist` (as upstream `dist`) under the prefix `cache/dist`, with `fields`
/// added to the upstream's entry (`{}` for none).
pub async fn prefix_cache_of(
    dist: &Distribution,
    fields: serde_json::Value,
) -> (Registry, Upstreams) {
    let mut upstreams = Upstreams::new();
    let mut all = serde_json::json!({"prefix": "cache/dist"});
    if let serde_json::Value::Object(fields) = fields {
        for (k, v) in fields {
            all[k] = v;
        }
    }
    upstreams.add("dist", dist, all);
    let reg = upstreams.start_registry().await;
    (reg, upstreams)
}

/// A `GET` of `path` accepting every manifest type, read whole.
pub async fn get_accepting_manifests(reg: &Registry, path: &str) -> Reply {
    send(
        reg.client
            .get(reg.url(path))
            .header("Accept", ACCEPT_MANIFESTS),
    )
    .await
}

/// How a `GET` ended: its status, and the size and digest of a body read to its end, or why
/// the body broke (after how many bytes).
pub async fn try_stream(reg: &Registry, path: &str) -> (u16, Result<(u64, String), String>) {
    let mut resp = reg
        .client
        .get(reg.url(path))
        .send()
        .await
        .expect("send GET");
    let status = resp.status().as_u16();
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                size += chunk.len() as u64;
                hasher.update(&chunk);
            }
            Ok(None) => break,
            Err(e) => return (status, Err(format!("broke after {size} bytes: {e}"))),
        }
    }
    let digest = format!("sha256:{}", crate::hex(&hasher.finalize()));
    (status, Ok((size, digest)))
}

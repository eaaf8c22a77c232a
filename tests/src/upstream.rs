//! A real upstream registry for the cache suites: distribution (Debian's `docker-registry`,
//! version 2.8) started by a test on a free loopback port, with its configuration, filesystem
//! storage and log in a temporary directory of its own, in three flavours: open, htpasswd
//! (bcrypt) and token auth (a token server in the test process issuing RS256 JWTs that
//! distribution verifies against a self-signed certificate, see [`token`]).
//!
//! Its access log (one combined-format line per request, on its standard output) is parsed so
//! that a test can count what reached the upstream, e.g. the blob GETs of a pull through the
//! cache. [`Distribution::stop`] and [`Distribution::start_again`] simulate an outage: the same
//! port, the same data directory, the same log (counts run on across the outage).
//!
//! [`fixtures`] pushes content into it over HTTP with the flavour's credentials; [`cache`]
//! writes the `UPSTREAMS_FILE` of a registry under test that caches it.

pub mod cache;
pub mod fixtures;
pub mod token;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::{Reply, send};

pub use cache::{
    Streamed, Upstreams, assert_body, get_accepting_manifests, prefix_cache_of, stream_digest,
    try_stream,
};
pub use fixtures::{BigImage, Referrer};
pub use token::TokenServer;

/// The user every authenticating flavour knows.
pub const UPSTREAM_USER: (&str, &str) = ("puller", "puller-password-3");

/// How distribution wants its clients to authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// Anyone may pull and push.
    Open,
    /// Basic credentials checked against an htpasswd file (bcrypt).
    Htpasswd,
    /// Bearer tokens from a token server ([`TokenServer`]) that wants Basic credentials.
    Token,
}

/// How long distribution may take to answer its first request.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One line of distribution's access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    pub method: String,
    /// The request target: path and query.
    pub target: String,
    pub status: u16,
}

impl AccessEntry {
    /// The path of the target, without its query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or(&self.target)
    }

    /// Parses `host - user [time] "METHOD target HTTP/x" status size "referer" "agent"`;
    /// `None` for the other lines (distribution's own log on standard error).
    fn parse(line: &str) -> Option<AccessEntry> {
        let (_, rest) = line.split_once("] \"")?;
        let (request, rest) = rest.split_once("\" ")?;
        let mut words = request.split(' ');
        let (method, target, protocol) = (words.next()?, words.next()?, words.next()?);
        if !protocol.starts_with("HTTP/") {
            return None;
        }
        let status = rest.split(' ').next()?.parse().ok()?;
        Some(AccessEntry {
            method: method.to_owned(),
            target: target.to_owned(),
            status,
        })
    }
}

/// A running distribution; killed when dropped.
#[derive(Debug)]
pub struct Distribution {
    flavour: Flavour,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    token: Option<TokenServer>,
    /// Authorization header values of the fixture pushers, per repository (token flavour).
    tokens: Mutex<HashMap<String, String>>,
    pub client: reqwest::Client,
}

impl Distribution {
    /// Starts distribution in `flavour` on a free port with empty storage.
    pub async fn start(flavour: Flavour) -> Distribution {
        let program = crate::clients::require("docker-registry", "apt-get install docker-registry");
        let dir = tempfile::tempdir().expect("temp dir");
        let port = crate::free_port();
        let token = match flavour {
            Flavour::Token => Some(TokenServer::start(dir.path(), &[UPSTREAM_USER]).await),
            _ => None,
        };
        if flavour == Flavour::Htpasswd {
            let (user, password) = UPSTREAM_USER;
            let hash = bcrypt::hash(password, 4).expect("bcrypt");
            std::fs::write(dir.path().join("htpasswd"), format!("{user}:{hash}\n"))
                .expect("write htpasswd");
        }
        let config = config_yml(dir.path(), port, flavour, token.as_ref());
        std::fs::write(dir.path().join("config.yml"), config).expect("write config.yml");
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("http client");
        let mut distribution = Distribution {
            flavour,
            port,
            dir,
            child: None,
            token,
            tokens: Mutex::new(HashMap::new()),
            client,
        };
        assert!(program.is_file());
        distribution.start_again().await;
        distribution
    }

    /// Starts the stopped process again on the same port, data directory and log.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "distribution is running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open distribution log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn docker-registry");
        self.child = Some(child);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let exited = self
                .child
                .as_mut()
                .map(|child| matches!(child.try_wait(), Ok(Some(_))));
            assert_ne!(exited, Some(true), "distribution exited:\n{}", self.log());
            // Any answer (200, or 401 when it wants credentials) means it serves.
            if self.client.get(self.url("/v2/")).send().await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "distribution not ready after {START_TIMEOUT:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Kills the process (an outage); its port and data stay for [`Self::start_again`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    /// `host:port`, as clients name it.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Absolute URL of a path starting with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The base URL, as an `UPSTREAMS_FILE` entry names it.
    pub fn base_url(&self) -> String {
        self.url("")
    }

    /// The credentials a client needs (`None` for the open flavour).
    pub fn credentials(&self) -> Option<(&'static str, &'static str)> {
        match self.flavour {
            Flavour::Open => None,
            Flavour::Htpasswd | Flavour::Token => Some(UPSTREAM_USER),
        }
    }

    /// The token server of the token flavour.
    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token.as_ref()
    }

    /// The file where distribution keeps the bytes of `digest` (blobs and manifests alike),
    /// for a test that corrupts what the upstream serves.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// distribution's storage root (its `rootdirectory`), for `jobs import --from-layout`.
    pub fn root_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("distribution.log")
    }

    /// Everything distribution logged so far (its own log and the access log).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Every request in the access log so far, in order, across restarts.
    pub fn access_log(&self) -> Vec<AccessEntry> {
        self.log().lines().filter_map(AccessEntry::parse).collect()
    }

    /// The requests of `method` whose path starts with `prefix` (e.g. `GET`,
    /// `/v2/library/alpine/blobs/`), whatever their status.
    pub fn requests(&self, method: &str, prefix: &str) -> Vec<AccessEntry> {
        self.access_log()
            .into_iter()
            .filter(|e| e.method == method && e.path().starts_with(prefix))
            .collect()
    }

    /// How many requests of `method` under `prefix` were answered with success (2xx or a
    /// redirect): the ones that served content, not the 401s of a client's first try.
    pub fn count_ok(&self, method: &str, prefix: &str) -> usize {
        self.requests(method, prefix)
            .iter()
            .filter(|e| (200..400).contains(&e.status))
            .count()
    }

    /// Like [`Self::count_ok`], once the count has not changed for a quarter of a second:
    /// distribution writes a line when the response is complete, a moment after a client
    /// may have read its last byte.
    pub async fn settled_count_ok(&self, method: &str, prefix: &str) -> usize {
        let mut last = self.count_ok(method, prefix);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = self.count_ok(method, prefix);
            if now == last || Instant::now() > deadline {
                return now;
            }
            last = now;
        }
    }

    /// The `Authorization` value for pulling and pushing `repository`: Basic for htpasswd, a
    /// bearer token fetched from the token server (over HTTP, as a client does) for token.
    pub async fn authorization(&self, repository: &str) -> Option<String> {
        let (user, password) = self.credentials()?;
        let basic = format!("Basic {}", basic_value(user, password));
        let Some(token) = &self.token else {
            return Some(basic);
        };
        if let Some(value) = self.tokens.lock().expect("tokens").get(repository) {
            return Some(value.clone());
        }
        let scope = format!("repository:{repository}:pull,push");
        let reply = send(
            self.client
                .get(token.realm())
                .query(&[("service", token::SERVICE), ("scope", &scope)])
                .header("Authorization", basic),
        )
        .await;
        assert_eq!(reply.status, 200, "token for {scope}: {}", reply.text());
        let value = format!(
            "Bearer {}",
            reply.json()["token"].as_str().expect("token in the answer")
        );
        self.tokens
            .lock()
            .expect("tokens")
            .insert(repository.to_owned(), value.clone());
        Some(value)
    }

    /// A request to `path` (under `/v2/<repository>/`) with the flavour's credentials.
    pub async fn request(
        &self,
        method: reqwest::Method,
        repository: &str,
        url: &str,
    ) -> reqwest::RequestBuilder {
        let url = if url.starts_with("http") {
            url.to_owned()
        } else {
            self.url(url)
        };
        let request = self.client.request(method, url);
        match self.authorization(repository).await {
            Some(value) => request.header("Authorization", value),
            None => request,
        }
    }

    /// GET of a manifest with the flavour's credentials, every manifest type accepted.
    pub async fn get_manifest(&self, repository: &str, reference: &str) -> Reply {
        let path = format!("/v2/{repository}/manifests/{reference}");
        let request = self.request(reqwest::Method::GET, repository, &path).await;
        send(request.header("Accept", crate::clients::ACCEPT_MANIFESTS)).await
    }

    /// GET of a blob with the flavour's credentials.
    pub async fn get_blob(&self, repository: &str, digest: &str) -> Reply {
        let path = format!("/v2/{repository}/blobs/{digest}");
        send(self.request(reqwest::Method::GET, repository, &path).await).await
    }

    /// DELETE of a manifest by digest (distribution deletes only by digest; the tags naming
    /// it go with it).
    pub async fn delete_manifest(&self, repository: &str, digest: &str) {
        let path = format!("/v2/{repository}/manifests/{digest}");
        let reply = send(
            self.request(reqwest::Method::DELETE, repository, &path)
                .await,
        )
        .await;
        assert_eq!(
            reply.status,
            202,
            "delete {repository}@{digest}: {}",
            reply.text()
        );
    }
}

/// skopeo's arguments to copy `src` (`docker://…`, plain HTTP) into the OCI layout `dest` as
/// `name`: every platform of an index, digests kept, with `creds` when given.
pub fn skopeo_pull_args(
    src: &str,
    dest: &Path,
    name: &str,
    creds: Option<(&str, &str)>,
) -> Vec<String> {
    let mut args = vec![
        "copy".to_owned(),
        "--all".to_owned(),
        "--preserve-digests".to_owned(),
        "--src-tls-verify=false".to_owned(),
    ];
    if let Some((user, password)) = creds {
        args.push(format!("--src-creds={user}:{password}"));
    }
    args.push(src.to_owned());
    args.push(format!("oci:{}:{name}", dest.display()));
    args
}

/// The base64 of `user:password`, for a Basic `Authorization`.
pub fn basic_value(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

impl Drop for Distribution {
    fn drop(&mut self) {
        self.stop();
    }
}

/// distribution's configuration: filesystem storage under `dir`, deletes allowed (a test
/// moves and removes tags), upload purging off (no background work during a test), a fixed
/// HTTP secret (upload state survives a restart), the access log on.
fn config_yml(dir: &Path, port: u16, flavour: Flavour, token: Option<&TokenServer>) -> String {
    let auth = match (flavour, token) {
        (Flavour::Open, _) => String::new(),
        (Flavour::Htpasswd, _) => format!(
            "auth:\n  htpasswd:\n    realm: upstream\n    path: {}\n",
            dir.join("htpasswd").display()
        ),
        (Flavour::Token, Some(token)) => format!(
            "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    \
             rootcertbundle: {}\n",
            token.realm(),
            token::SERVICE,
            token::ISSUER,
            token.certificate().display()
        ),
        (Flavour::Token, None) => unreachable!("the token flavour has a token server"),
    };
    format!(
        "version: 0.1\n\
         log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n\
         storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n  \
         maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: 127.0.0.1:{port}\n  secret: registry-tests-upstream-secret\n\
         {auth}",
        data = dir.join("data").display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_lines_parse_and_others_do_not() {
        let line = r#"127.0.0.1 - - [03/Dec/2026:06:48:30 +0000] "GET /v2/foo/blobs/sha256:aa?x=1 HTTP/1.1" 400 110 "" "curl/7.88.1""#;
        let entry = AccessEntry::parse(line).expect("an access line");
        assert_eq!(entry.method, "GET");
        assert_eq!(entry.path(), "/v2/foo/blobs/sha256:aa");
        assert_eq!(entry.status, 400);
        let other = r#"time="2026-12-03T06:48:30Z" level=info msg="response completed" http.request.method=GET"#;
        assert_eq!(AccessEntry::parse(other), None);
    }
}

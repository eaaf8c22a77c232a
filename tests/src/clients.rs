//! Shared parts of the client suites (`clients_*`): real clients run as processes with an
//! environment of their own (nothing of the user's or the machine's configuration leaks in),
//! and the registry's own answers over HTTP to compare what they did with.
//!
//! A client that is missing makes its test fail with the way to install it; the test command
//! (`scripts/test.sh`, `ensure_clients`) installs them all and makes the Python venv.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::auth::{Client, Scheme};
use crate::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, Registry, send, sha256_digest};

/// Every manifest media type the clients push, for `Accept`.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// The path of `program` on `PATH`; panics with how to install it when it is not there.
pub fn require(program: &str, install: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("`{program}` is not installed: {install} (./scripts/test.sh installs it)")
        })
}

/// A client program with fixed leading arguments and an environment of its own: only `PATH`
/// is kept from the test process.
#[derive(Debug, Clone)]
pub struct Tool {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

impl Tool {
    pub fn new(program: impl Into<PathBuf>) -> Tool {
        Tool {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Adds an argument given before every command's own.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Tool {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Tool {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// The command for `args`, not started.
    pub fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.program);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(&self.args)
            .args(args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        command
    }

    pub async fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.command(args)
            .output()
            .await
            .unwrap_or_else(|e| panic!("run {}: {e}", self.program.display()))
    }

    /// Runs the command, asserts it succeeded and returns its standard output; a failure
    /// shows the client's output and the registry's log.
    pub async fn ok<S: AsRef<OsStr>>(&self, reg: &Registry, args: &[S]) -> String {
        let out = self.run(args).await;
        assert!(
            out.status.success(),
            "{} failed ({}):\nstdout:\n{}\nstderr:\n{}\nregistry log:\n{}",
            self.describe(args),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            reg.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs the command, asserts it failed and returns its standard output and error.
    pub async fn fails<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let out = self.run(args).await;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success(),
            "{} succeeded but should have failed:\n{text}",
            self.describe(args)
        );
        text
    }

    fn describe<S: AsRef<OsStr>>(&self, args: &[S]) -> String {
        let mut words = vec![self.program.display().to_string()];
        words.extend(self.args.iter().map(|a| a.to_string_lossy().into_owned()));
        words.extend(
            args.iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned()),
        );
        format!("`{}`", words.join(" "))
    }
}

/// The Python of the clients' venv (oras, helm-python-sdk): `CLIENTS_PYTHON`, or else the
/// venv the test command makes under the target directory.
pub fn python() -> Tool {
    let python = std::env::var_os("CLIENTS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // The registry binary sits in `<target>/debug/`.
            let bin = crate::registry_bin();
            let target = bin
                .parent()
                .and_then(Path::parent)
                .unwrap_or(Path::new("."));
            target.join("clients-venv/bin/python")
        });
    assert!(
        python.is_file(),
        "no Python venv with the client SDKs at {} (set CLIENTS_PYTHON, or run \
         ./scripts/test.sh, whose ensure_clients makes it with oras and helm-python-sdk)",
        python.display()
    );
    Tool::new(python).env("PYTHONDONTWRITEBYTECODE", "1")
}

/// A script of `tests/clients/`.
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("clients")
        .join(name)
}

/// A manifest as the registry serves it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub digest: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub json: Value,
}

impl Stored {
    /// The child manifests of an index: `(architecture, digest)` in the index's order.
    pub fn platforms(&self) -> Vec<(String, String)> {
        self.json["manifests"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|m| {
                        let arch = m["platform"]["architecture"].as_str().unwrap_or("");
                        let digest = m["digest"].as_str().expect("child digest");
                        (arch.to_owned(), digest.to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_LIST
    }

    /// The config digest of an image manifest.
    pub fn config_digest(&self) -> String {
        self.json["config"]["digest"]
            .as_str()
            .expect("config digest")
            .to_owned()
    }

    /// The layers of an image manifest: `(media type, digest)`.
    pub fn layers(&self) -> Vec<(String, String)> {
        self.json["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| {
                (
                    l["mediaType"].as_str().expect("layer type").to_owned(),
                    l["digest"].as_str().expect("layer digest").to_owned(),
                )
            })
            .collect()
    }
}

/// The anonymous client of a registry without authentication.
pub fn anonymous(reg: &Registry) -> Client<'_> {
    Client::new(reg, Scheme::Basic, None)
}

/// GETs a manifest; asserts 200, that `Docker-Content-Digest` is the digest of the bytes
/// served and that `Content-Type` is the manifest's own `mediaType` (when it names one).
pub async fn manifest(client: &Client<'_>, repo: &str, reference: &str) -> Stored {
    let path = format!("/v2/{repo}/manifests/{reference}");
    let request = client.request("GET", &path, &[]).await;
    let reply = send(request.header("Accept", ACCEPT_MANIFESTS)).await;
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.text());
    let digest = sha256_digest(&reply.body);
    assert_eq!(
        reply.header("docker-content-digest"),
        Some(digest.as_str()),
        "GET {path}: Docker-Content-Digest is not the digest of the body"
    );
    let json: Value = serde_json::from_slice(&reply.body).expect("manifest JSON");
    let media_type = reply
        .header("content-type")
        .expect("Content-Type")
        .to_owned();
    if let Some(declared) = json["mediaType"].as_str() {
        assert_eq!(declared, media_type, "GET {path}: Content-Type");
    }
    Stored {
        digest,
        media_type,
        bytes: reply.body,
        json,
    }
}

/// GETs a blob; asserts 200 and that its bytes have `digest`.
pub async fn blob(client: &Client<'_>, repo: &str, digest: &str) -> Vec<u8> {
    let path = format!("/v2/{repo}/blobs/{digest}");
    let reply = client.send("GET", &path, None).await;
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.text());
    assert_eq!(sha256_digest(&reply.body), digest, "GET {path}: bytes");
    reply.body
}

/// Fetches `reference` and everything it is made of (child manifests, configs, layers),
/// checking each digest and size against its descriptor; returns the top manifest.
pub async fn assert_complete(client: &Client<'_>, repo: &str, reference: &str) -> Stored {
    let top = manifest(client, repo, reference).await;
    let mut pending = vec![top.clone()];
    while let Some(stored) = pending.pop() {
        if stored.is_index() {
            for child in stored.json["manifests"].as_array().expect("manifests") {
                let digest = child["digest"].as_str().expect("child digest");
                let fetched = manifest(client, repo, digest).await;
                assert_eq!(fetched.digest, digest, "child of {}", stored.digest);
                assert_eq!(child["size"], fetched.bytes.len(), "size of {digest}");
                assert_eq!(child["mediaType"], fetched.media_type.as_str());
                pending.push(fetched);
            }
            continue;
        }
        assert!(
            [OCI_MANIFEST, DOCKER_MANIFEST].contains(&stored.media_type.as_str()),
            "{} is a {}",
            stored.digest,
            stored.media_type
        );
        let config = std::iter::once(&stored.json["config"]);
        let layers = stored.json["layers"].as_array().expect("layers").iter();
        for descriptor in config.chain(layers) {
            let digest = descriptor["digest"].as_str().expect("blob digest");
            let bytes = blob(client, repo, digest).await;
            assert_eq!(descriptor["size"], bytes.len(), "size of blob {digest}");
        }
    }
    top
}

/// The `digest: sha256:… size: N` a push reports (docker, ctr, podman print it).
pub fn reported_digest(output: &str) -> String {
    output
        .split_whitespace()
        .skip_while(|word| *word != "digest:")
        .nth(1)
        .unwrap_or_else(|| panic!("no `digest: …` in the client's output:\n{output}"))
        .to_owned()
}

//! Shared parts of the authentication suites (`auth_basic`, `auth_token`, `auth_delegated`):
//! two tenants and their files, a client that authenticates as a real one does (Basic
//! credentials, or a token fetched from `/auth/token` for the scope of each request), and the
//! cross-tenant matrix every mode must pass.
//!
//! The tenants: alice owns the project `alpha`; bob owns `beta` and `shared`, and lets alice
//! (through the group `shared-readers`) pull from `shared`. Anonymous callers may pull from
//! `public`, which bob also owns. The delegated suite's permission service applies the same
//! policy.

mod matrix;
pub mod skopeo;

use std::path::PathBuf;

use crate::{
    OCI_MANIFEST, PushedImage, Registry, Reply, image_manifest_json, pseudo_random_bytes, send,
    sha256_digest,
};

pub use matrix::{assert_access, assert_anonymous_refused, tenant_matrix};
pub use skopeo::Skopeo;

pub const ALICE: (&str, &str) = ("alice", "alice-password-1");
pub const BOB: (&str, &str) = ("bob", "bob-password-2");

/// The access rules of the two tenants (the README's format).
pub const RULES: &str = r#"{
  "groups": { "shared-readers": ["alice"] },
  "rules": [
    { "subjects": ["user:alice"], "projects": ["alpha"], "actions": ["*"] },
    { "subjects": ["user:bob"], "projects": ["beta", "shared", "public"], "actions": ["*"] },
    { "subjects": ["group:shared-readers"], "projects": ["shared"], "actions": ["pull"] },
    { "subjects": ["anonymous"], "projects": ["public"], "actions": ["pull"] }
  ]
}"#;

/// An htpasswd file (bcrypt at the lowest cost, to keep tests fast) and the rules file.
#[derive(Debug)]
pub struct AuthFiles {
    pub dir: tempfile::TempDir,
    pub htpasswd: PathBuf,
    pub rules: PathBuf,
}

impl AuthFiles {
    pub fn new() -> AuthFiles {
        let dir = tempfile::tempdir().expect("temp dir");
        let htpasswd = dir.path().join("htpasswd");
        let mut users = String::from("# test users\n");
        for (user, password) in [ALICE, BOB] {
            let hash = bcrypt::hash(password, 4).expect("bcrypt");
            users.push_str(&format!("{user}:{hash}\n"));
        }
        std::fs::write(&htpasswd, users).expect("write htpasswd");
        let rules = dir.path().join("rules.json");
        std::fs::write(&rules, RULES).expect("write rules");
        AuthFiles {
            dir,
            htpasswd,
            rules,
        }
    }

    /// A path in the files' directory, as text for an environment variable.
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

impl Default for AuthFiles {
    fn default() -> Self {
        AuthFiles::new()
    }
}

/// How a client proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Basic credentials on every request (`basic`, `delegated`).
    Basic,
    /// A bearer token from `/auth/token` for the scope of each request (`token`).
    Token,
}

/// A client of one registry, as one user (or anonymous).
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    pub reg: &'a Registry,
    pub scheme: Scheme,
    pub creds: Option<(&'a str, &'a str)>,
    /// A bearer token from elsewhere, sent as it is.
    pub bearer: Option<&'a str>,
}

/// The scope a client asks a token for before sending `method path`.
pub fn scope_of(method: &str, path: &str) -> Option<String> {
    let path = path.split('?').next().unwrap_or(path);
    if path == "/v2/_catalog" {
        return Some("registry:catalog:*".to_owned());
    }
    let rest = path.strip_prefix("/v2/")?;
    let end = ["/blobs/", "/manifests/", "/tags/", "/referrers/"]
        .iter()
        .filter_map(|k| rest.find(k))
        .min()?;
    let actions = match method {
        "GET" | "HEAD" => "pull",
        "DELETE" => "delete",
        _ => "pull,push",
    };
    Some(format!("repository:{}:{actions}", &rest[..end]))
}

impl<'a> Client<'a> {
    pub fn new(reg: &'a Registry, scheme: Scheme, creds: Option<(&'a str, &'a str)>) -> Self {
        Client {
            reg,
            scheme,
            creds,
            bearer: None,
        }
    }

    /// A client sending `token` (issued elsewhere) with every request.
    pub fn with_token(reg: &'a Registry, token: &'a str) -> Self {
        Client {
            reg,
            scheme: Scheme::Token,
            creds: None,
            bearer: Some(token),
        }
    }

    /// Fetches a token for `scopes` from the registry's token endpoint.
    pub async fn token(&self, scopes: &[String]) -> String {
        let mut query = vec![("service", "registry".to_owned())];
        query.extend(scopes.iter().map(|s| ("scope", s.clone())));
        let mut request = self
            .reg
            .client
            .get(self.reg.url("/auth/token"))
            .query(&query);
        if let Some((user, password)) = self.creds {
            request = request.basic_auth(user, Some(password));
        }
        let reply = send(request).await;
        assert_eq!(reply.status, 200, "token for {scopes:?}: {}", reply.text());
        reply.json()["token"].as_str().expect("token").to_owned()
    }

    /// `method path` with this client's credentials; `extra` scopes are asked for too.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        extra: &[String],
    ) -> reqwest::RequestBuilder {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let url = self.reg.url(path);
        let mut request = self.reg.client.request(method.clone(), url);
        if let Some(token) = self.bearer {
            return request.bearer_auth(token);
        }
        match self.scheme {
            Scheme::Basic => {
                if let Some((user, password)) = self.creds {
                    request = request.basic_auth(user, Some(password));
                }
            }
            Scheme::Token => {
                let mut scopes: Vec<String> = scope_of(method.as_str(), path).into_iter().collect();
                scopes.extend(extra.iter().cloned());
                let token = self.token(&scopes).await;
                request = request.bearer_auth(token);
            }
        }
        request
    }

    /// Sends `method path` with an optional body and reads the answer.
    pub async fn send(&self, method: &str, path: &str, body: Option<(&[u8], &str)>) -> Reply {
        let mut request = self.request(method, path, &[]).await;
        if let Some((bytes, content_type)) = body {
            request = request
                .header("Content-Type", content_type)
                .body(bytes.to_vec());
        }
        send(request).await
    }

    /// Pushes a blob monolithically; asserts 201.
    pub async fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = sha256_digest(bytes);
        let path = format!("/v2/{repo}/blobs/uploads/?digest={digest}");
        let reply = self
            .send("POST", &path, Some((bytes, "application/octet-stream")))
            .await;
        assert_eq!(reply.status, 201, "push blob to {repo}: {}", reply.text());
        digest
    }

    /// Pushes a small image (config and two layers) tagged `tag`; asserts every step.
    pub async fn push_image(&self, repo: &str, tag: &str, seed: u64) -> PushedImage {
        let config =
            format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#).into_bytes();
        let config_digest = self.push_blob(repo, &config).await;
        let mut layers = Vec::new();
        for i in 0..2 {
            let bytes = pseudo_random_bytes(2048 + i, seed * 31 + i as u64);
            layers.push((self.push_blob(repo, &bytes).await, bytes));
        }
        let sizes: Vec<(String, usize)> =
            layers.iter().map(|(d, b)| (d.clone(), b.len())).collect();
        let manifest = image_manifest_json(&(config_digest.clone(), config.len()), &sizes);
        let path = format!("/v2/{repo}/manifests/{tag}");
        let reply = self
            .send("PUT", &path, Some((manifest.as_bytes(), OCI_MANIFEST)))
            .await;
        assert_eq!(reply.status, 201, "push {repo}:{tag}: {}", reply.text());
        PushedImage {
            digest: sha256_digest(manifest.as_bytes()),
            manifest: manifest.into_bytes(),
            config: (config_digest, config),
            layers,
        }
    }

    /// Opens an upload session; asserts 202 and returns its path.
    pub async fn open_session(&self, repo: &str) -> String {
        let reply = self
            .send("POST", &format!("/v2/{repo}/blobs/uploads/"), None)
            .await;
        assert_eq!(
            reply.status,
            202,
            "open session in {repo}: {}",
            reply.text()
        );
        reply.header("location").expect("Location").to_owned()
    }

    /// The catalog pages this client sees, following `Link` with `n` per page.
    pub async fn catalog(&self, n: u32) -> Vec<Vec<String>> {
        let mut pages = Vec::new();
        let mut path = format!("/v2/_catalog?n={n}");
        loop {
            let reply = self.send("GET", &path, None).await;
            assert_eq!(reply.status, 200, "catalog: {}", reply.text());
            let names = reply.json()["repositories"]
                .as_array()
                .expect("repositories")
                .iter()
                .map(|v| v.as_str().expect("name").to_owned())
                .collect();
            pages.push(names);
            let Some(link) = reply.header("link") else {
                return pages;
            };
            path = link
                .trim_start_matches('<')
                .split('>')
                .next()
                .expect("Link target")
                .to_owned();
        }
    }
}

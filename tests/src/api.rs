//! Helpers of the management API suites (`tests/api_*.rs`): a client that calls
//! `/api/<method>` and checks every answer against the OpenAPI document (see [`openapi`]),
//! images with many manifests and tags, the jobs binary, and the metadata database (see
//! [`db`]).

pub mod db;
pub mod openapi;

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::{OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, Registry, Reply, registry_bin, send};

pub use db::{database_url, repository_id, rows_of, seed_manifests, snapshot, wait_for_fewer_tags};
pub use openapi::{OpenApi, is_rfc3339};

/// How a client proves who it is.
#[derive(Debug, Clone, Copy)]
pub enum Creds<'a> {
    Anonymous,
    Basic(&'a str, &'a str),
    Bearer(&'a str),
}

/// A client of one registry's management API.
#[derive(Debug, Clone, Copy)]
pub struct Api<'a> {
    pub reg: &'a Registry,
    pub creds: Creds<'a>,
}

/// An answer of the management API, already checked against the OpenAPI document.
#[derive(Debug)]
pub struct ApiReply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl<'a> Api<'a> {
    pub fn anonymous(reg: &'a Registry) -> Self {
        Api {
            reg,
            creds: Creds::Anonymous,
        }
    }

    pub fn basic(reg: &'a Registry, (user, password): (&'a str, &'a str)) -> Self {
        Api {
            reg,
            creds: Creds::Basic(user, password),
        }
    }

    pub fn bearer(reg: &'a Registry, token: &'a str) -> Self {
        Api {
            reg,
            creds: Creds::Bearer(token),
        }
    }

    /// `POST /api/<method>` with `params` as JSON. Besides the response, the document's
    /// request schema is held to the answer: parameters it refuses must get a 400.
    pub async fn call(&self, method: &str, params: Value) -> ApiReply {
        let path = format!("/api/{method}");
        let body = serde_json::to_vec(&params).expect("params to JSON");
        let reply = self
            .raw("POST", &path, &[("Content-Type", "application/json")], body)
            .await;
        if let Some(schema) = openapi::openapi().request_schema(&path)
            && let Err(why) = openapi::openapi().validate(schema, &params)
        {
            assert_eq!(
                reply.status,
                400,
                "{method} {params}: the document refuses it ({why:?}) but the registry answered {} {}",
                reply.status,
                reply.text()
            );
        }
        reply
    }

    /// Any request under `/api/`, checked against the document.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> ApiReply {
        let http_method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = client().request(http_method, self.reg.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request = match self.creds {
            Creds::Anonymous => request,
            Creds::Basic(user, password) => request.basic_auth(user, Some(password)),
            Creds::Bearer(token) => request.bearer_auth(token),
        };
        let Reply {
            status,
            headers,
            body,
        } = send(request.body(body)).await;
        check_response(method, path, status, &headers, &body);
        ApiReply {
            status,
            headers,
            body,
        }
    }

    /// Every item of a listing, page by page with `limit` items at most, following
    /// `nextCursor`; also returns the number of pages.
    pub async fn all_items(&self, method: &str, params: Value, limit: u32) -> (Vec<Value>, usize) {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut params = params.clone();
            params["limit"] = json!(limit);
            if let Some(cursor) = &cursor {
                params["cursor"] = json!(cursor);
            }
            let result = self.call(method, params).await.ok();
            pages += 1;
            let page = result["items"].as_array().expect("items").clone();
            assert!(
                page.len() <= limit as usize,
                "{method}: page over its limit"
            );
            match result.get("nextCursor") {
                Some(next) => {
                    assert_eq!(
                        page.len(),
                        limit as usize,
                        "{method}: short page before the end"
                    );
                    cursor = Some(next.as_str().expect("nextCursor").to_owned());
                }
                None => cursor = None,
            }
            items.extend(page);
            if cursor.is_none() {
                return (items, pages);
            }
        }
    }
}

/// The HTTP client of the API suites. It opens a connection per request: many requests here
/// are refused before their body is read, after which the server closes the connection, and
/// a pooled connection could be reused just as it closes.
fn client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("http client")
    })
}

/// Checks an answer against the document: the status is documented for the operation (or,
/// for a path without the operation, is the document's 405 or 404), required headers are
/// there, and the body is what the response describes.
pub fn check_response(
    method: &str,
    path: &str,
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &[u8],
) {
    let api = openapi::openapi();
    let text = String::from_utf8_lossy(body);
    let what = format!("{method} {path} -> {status} {text}");
    let response = match api.doc["paths"].get(path) {
        None => {
            assert_eq!(status, 404, "{what}: a path the document does not name");
            api.component_response("UnknownMethod")
        }
        Some(item) => {
            let key = if method == "HEAD" {
                "get"
            } else {
                &method.to_ascii_lowercase()
            };
            match item.get(key) {
                None => {
                    assert_eq!(status, 405, "{what}: an HTTP method the path does not take");
                    api.component_response("MethodNotAllowed")
                }
                Some(operation) => api.response(
                    operation["responses"]
                        .get(status.to_string())
                        .unwrap_or_else(|| panic!("{what}: status not documented")),
                ),
            }
        }
    };
    for (name, header) in response
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if header["required"] == true {
            let value = headers
                .get(name.as_str())
                .unwrap_or_else(|| panic!("{what}: no {name} header"));
            let value = json!(value.to_str().expect("ASCII header"));
            if let Err(why) = api.validate(&header["schema"], &value) {
                panic!("{what}: header {name}: {why:?}");
            }
        }
    }
    match response.get("content") {
        Some(content) => {
            let content_type = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            assert!(
                content_type.starts_with("application/json"),
                "{what}: {content_type}"
            );
            if method == "HEAD" {
                assert!(body.is_empty(), "{what}: a HEAD answer with a body");
                return;
            }
            let value: Value = serde_json::from_slice(body)
                .unwrap_or_else(|e| panic!("{what}: body is not JSON: {e}"));
            let schema = &content["application/json"]["schema"];
            if let Err(why) = api.validate(schema, &value) {
                panic!("{what}: does not match the document: {why:?}");
            }
        }
        None => assert!(
            body.is_empty(),
            "{what}: a body where the document has none"
        ),
    }
}

impl ApiReply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
    }

    /// Asserts a 200 envelope and returns its `result` (`null` for deletes).
    #[track_caller]
    pub fn ok(&self) -> Value {
        assert_eq!(self.status, 200, "{}", self.text());
        let body = self.json();
        assert_eq!(body["ok"], true, "{}", self.text());
        body.get("result").cloned().unwrap_or(Value::Null)
    }

    /// Asserts an error envelope with this status whose message contains `needle`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, needle: &str) {
        assert_eq!(
            self.status,
            status,
            "want {status} {needle:?}: {}",
            self.text()
        );
        let body = self.json();
        assert_eq!(body["ok"], false, "{}", self.text());
        let message = body["error"]["message"].as_str().expect("message");
        assert!(message.contains(needle), "want {needle:?} in {message:?}");
    }
}

/// Pushes `count` manifests into `repo`, all of one config and one shared layer, the i-th
/// tagged `<tag_prefix><i>`. Returns their digests in push order and the blob bytes' total.
pub async fn push_tagged_manifests(
    reg: &Registry,
    repo: &str,
    tag_prefix: &str,
    count: usize,
) -> (Vec<String>, u64) {
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let layer = crate::pseudo_random_bytes(3000, repo.len() as u64);
    let config_digest = reg.push_blob(repo, &config).await;
    let layer_digest = reg.push_blob(repo, &layer).await;
    let mut digests = Vec::with_capacity(count);
    for i in 0..count {
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": layer.len()}],
            "annotations": {"n": format!("{tag_prefix}{i}")},
        })
        .to_string();
        let tag = format!("{tag_prefix}{i}");
        digests.push(
            reg.push_manifest(repo, &tag, OCI_MANIFEST, manifest.as_bytes())
                .await,
        );
    }
    (digests, (config.len() + layer.len()) as u64)
}

/// Path of the jobs binary beside the registry binary (or `JOBS_BIN`).
pub fn jobs_bin() -> PathBuf {
    std::env::var("JOBS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| registry_bin().with_file_name("jobs"))
}

/// Runs one job of the jobs binary on the registry's data; asserts it succeeded.
pub async fn run_job(reg: &Registry, job: &str) {
    run_job_with(reg, job, &[]).await;
}

/// The jobs binary with `args`, on the registry's database and storage (and `env`), logging
/// at `log_level`.
pub fn jobs_command(
    reg: &Registry,
    args: &[&str],
    env: &[(&str, &str)],
    log_level: &str,
) -> tokio::process::Command {
    let bin = jobs_bin();
    assert!(bin.exists(), "jobs binary not found at {}", bin.display());
    let mut command = tokio::process::Command::new(bin);
    command
        .args(args)
        .env_clear()
        .env("DATA_DIR", reg.data_dir())
        .env("DATABASE_URL", database_url(reg))
        .env("LOG_LEVEL", log_level)
        .envs(reg.storage_env())
        .envs(env.iter().copied());
    command
}

/// [`run_job`] with more environment variables (e.g. `UPSTREAMS_FILE`).
pub async fn run_job_with(reg: &Registry, job: &str, env: &[(&str, &str)]) {
    let out = jobs_command(reg, &[job], env, "warn")
        .output()
        .await
        .expect("run the jobs binary");
    assert!(
        out.status.success(),
        "jobs {job}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Unix milliseconds of an RFC 3339 timestamp of the API.
#[track_caller]
pub fn millis(value: &Value) -> i64 {
    let text = value.as_str().expect("a timestamp string");
    assert!(is_rfc3339(text), "{text} is not RFC 3339");
    text.parse::<jiff::Timestamp>()
        .expect("timestamp")
        .as_millisecond()
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

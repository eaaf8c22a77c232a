//! The four Cloud Run services as separate processes, and a small test router in front of
//! them that sends each request where the load balancer's URL map would
//! (`terraform/routes.json`, matched by [`url_map`]), so that the services can be tested as
//! the one registry they make together.
//!
//! The service binaries are looked up beside the registry binary ([`crate::registry_bin`]):
//! `blob`, `manifest`, `upload`, `api` (the test command builds them all). All processes of a
//! [`Fleet`] share one `DATA_DIR` (one blob store) and one metadata database (the SQLite file
//! there, or PostgreSQL with `TEST_METADATA=postgres`), as Cloud Run instances share the
//! bucket and Cloud SQL. The router talks to the services over h2c (HTTP/2
//! with prior knowledge), as the load balancer does with HTTP/2 end-to-end, and spreads
//! requests over the instances of a service in turn, so consecutive requests of one upload
//! land on different `upload` instances.

pub mod url_map;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use url_map::RouteTable;

/// Path of a service binary: beside the registry binary.
pub fn service_bin(name: &str) -> PathBuf {
    crate::registry_bin().with_file_name(name)
}

/// One running service process; killed when dropped.
#[derive(Debug)]
pub struct ServiceProcess {
    pub name: &'static str,
    child: Child,
    port: u16,
    log_path: PathBuf,
}

impl ServiceProcess {
    /// Starts `name` on a free port with `DATA_DIR=data_dir`, logging to `log_dir/<name>-<port>.log`,
    /// and waits until `/healthz` answers.
    pub async fn start(
        name: &'static str,
        data_dir: &Path,
        log_dir: &Path,
        env: &[(&str, &str)],
    ) -> ServiceProcess {
        let bin = service_bin(name);
        assert!(
            bin.exists(),
            "service binary not found at {} (run `cargo build --workspace --bins`)",
            bin.display()
        );
        let port = crate::free_port();
        let log_path = log_dir.join(format!("{name}-{port}.log"));
        let log = std::fs::File::create(&log_path).expect("create log file");
        let mut command = Command::new(&bin);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("DATA_DIR", data_dir)
            .env("LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().expect("spawn service");
        let mut service = ServiceProcess {
            name,
            child,
            port,
            log_path,
        };
        service.wait_ready().await;
        service
    }

    async fn wait_ready(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited early with {status}:\n{}", self.name, self.log());
            }
            if let Ok(resp) = client.get(self.url("/healthz")).send().await
                && resp.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready after 30s:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Absolute URL of a path on this process.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.log_path) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    /// Sends SIGTERM, as Cloud Run does before it stops an instance.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.child.id());
    }

    /// Waits up to `limit` for the process to exit; `None` if it is still running.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request as the test router forwarded it.
#[derive(Debug, Clone)]
pub struct Hop {
    pub method: String,
    pub target: String,
    pub service: String,
    /// Index of the instance among the service's instances.
    pub instance: usize,
    pub status: u16,
}

/// The four services (two `upload` instances) behind a test router.
#[derive(Debug)]
pub struct Fleet {
    /// Owns the data directory when the fleet made it ([`Fleet::start`]).
    pub data: Option<tempfile::TempDir>,
    pub services: BTreeMap<&'static str, Vec<ServiceProcess>>,
    pub router: TestRouter,
    /// The shared PostgreSQL database with `TEST_METADATA=postgres`; SQLite otherwise.
    pub database: Option<crate::TestDatabase>,
}

impl Fleet {
    /// Starts `manifest` (first: it migrates the database), `blob`, two `upload`, `api`, and
    /// the router. With `TEST_METADATA=postgres` they share a fresh PostgreSQL database, as
    /// Cloud Run services share Cloud SQL; otherwise the SQLite file under the shared
    /// `DATA_DIR`.
    pub async fn start() -> Fleet {
        let data = tempfile::tempdir().expect("temp dir");
        let database = match crate::metadata_engine() {
            crate::database::Engine::Postgres => Some(crate::TestDatabase::create().await),
            crate::database::Engine::Sqlite => None,
        };
        let env: Vec<(String, String)> = database
            .iter()
            .map(|db| ("DATABASE_URL".to_owned(), db.url().to_owned()))
            .collect();
        let mut fleet = Fleet::start_in(data.path(), &env).await;
        fleet.data = Some(data);
        fleet.database = database;
        fleet
    }

    /// Starts the fleet on `root/data` (logs in `root`) with extra environment variables;
    /// the caller owns the directory and any database named in `env`.
    pub async fn start_in(root: &Path, env: &[(String, String)]) -> Fleet {
        let data_dir = root.join("data");
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut services: BTreeMap<&'static str, Vec<ServiceProcess>> = BTreeMap::new();
        for name in ["manifest", "blob", "upload", "upload", "api"] {
            let process = ServiceProcess::start(name, &data_dir, root, &env).await;
            services.entry(name).or_default().push(process);
        }
        let backends = services
            .iter()
            .map(|(name, list)| {
                let urls = list.iter().map(|p| p.url("")).collect();
                ((*name).to_owned(), urls)
            })
            .collect();
        let router = TestRouter::start(RouteTable::load(), backends).await;
        Fleet {
            data: None,
            services,
            router,
            database: None,
        }
    }

    /// Whether every process still runs.
    pub fn all_running(&mut self) -> bool {
        self.services
            .values_mut()
            .flatten()
            .all(|p| matches!(p.child.try_wait(), Ok(None)))
    }

    /// The first instance of a service.
    pub fn service(&self, name: &str) -> &ServiceProcess {
        &self.services[name][0]
    }

    /// The logs of every process, for assertion messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for list in self.services.values() {
            for process in list {
                text.push_str(&format!(
                    "--- {} :{}\n{}",
                    process.name,
                    process.port,
                    process.log()
                ));
            }
        }
        text
    }
}

/// Shared by the router's handler.
#[derive(Debug)]
struct Routing {
    table: RouteTable,
    backends: BTreeMap<String, Vec<String>>,
    next: AtomicUsize,
    client: reqwest::Client,
    hops: Mutex<Vec<Hop>>,
}

/// An HTTP reverse proxy on a loopback port that applies the route table.
#[derive(Debug)]
pub struct TestRouter {
    port: u16,
    routing: Arc<Routing>,
    task: tokio::task::JoinHandle<()>,
}

impl TestRouter {
    /// Serves on a free port until dropped.
    pub async fn start(table: RouteTable, backends: BTreeMap<String, Vec<String>>) -> TestRouter {
        let client = reqwest::Client::builder()
            .http2_prior_knowledge()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("h2c client");
        let routing = Arc::new(Routing {
            table,
            backends,
            next: AtomicUsize::new(0),
            client,
            hops: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(routing.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind router");
        let port = listener.local_addr().expect("router address").port();
        let task = tokio::spawn(serve_half_close(listener, app));
        TestRouter {
            port,
            routing,
            task,
        }
    }

    /// `host:port`, as clients name the registry.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Absolute URL of a path on the router.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request forwarded so far.
    pub fn hops(&self) -> Vec<Hop> {
        self.routing.hops.lock().expect("hops lock").clone()
    }
}

/// Serves the router as the load balancer does: HTTP/1.1 and h2c, and a request received
/// whole is forwarded even when the client closes its side right after sending it (HTTP/1
/// half-close, as the registry's own server).
async fn serve_half_close(listener: tokio::net::TcpListener, app: axum::Router) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().half_close(true);
    let builder = Arc::new(builder);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let builder = builder.clone();
        tokio::spawn(async move {
            let _ = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
    }
}

impl Drop for TestRouter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Headers that belong to one connection and are not forwarded.
fn hop_by_hop(name: &http::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "upgrade"
            | "host"
            | "proxy-connection"
            | "proxy-authorization"
            | "trailer"
    )
}

/// Whether an HTTP/1.1 request has a body.
fn has_body(headers: &http::HeaderMap) -> bool {
    let length = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    length.is_some_and(|n| n > 0) || headers.contains_key(http::header::TRANSFER_ENCODING)
}

async fn forward(State(routing): State<Arc<Routing>>, request: Request) -> Response {
    let method = request.method().clone();
    let target = request
        .uri()
        .path_and_query()
        .map_or("/".to_owned(), |pq| pq.as_str().to_owned());
    let service = routing.table.route(method.as_str(), &target).to_owned();
    let instances = &routing.backends[&service];
    let instance = routing.next.fetch_add(1, Ordering::Relaxed) % instances.len();
    let (parts, body) = request.into_parts();
    let mut outgoing = routing
        .client
        .request(method.clone(), format!("{}{target}", instances[instance]));
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            outgoing = outgoing.header(name, value);
        }
    }
    if has_body(&parts.headers) {
        outgoing = outgoing.body(reqwest::Body::wrap_stream(body.into_data_stream()));
    }
    let answer = outgoing.send().await;
    let status = answer.as_ref().map_or(502, |r| r.status().as_u16());
    routing.hops.lock().expect("hops lock").push(Hop {
        method: method.to_string(),
        target,
        service,
        instance,
        status,
    });
    match answer {
        Ok(upstream) => {
            let mut response = Response::builder().status(upstream.status());
            for (name, value) in upstream.headers() {
                if !hop_by_hop(name) {
                    response = response.header(name, value);
                }
            }
            response
                .body(Body::from_stream(upstream.bytes_stream()))
                .unwrap_or_else(|e| (http::StatusCode::BAD_GATEWAY, e.to_string()).into_response())
        }
        Err(e) => (http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

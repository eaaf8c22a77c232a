//! A real HTTP server standing in for a webhook consumer: it listens on a free loopback port,
//! records every request (method, path, headers, body, arrival time) as it arrives, and
//! answers according to a [`Mode`] that the test can change at any time.
//!
//! ```ignore
//! let receiver = WebhookReceiver::start().await;
//! // point an endpoint at receiver.url(), push ...
//! let requests = receiver.wait_for(1, Duration::from_secs(10)).await;
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::sync::Notify;

/// How the receiver answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `200 OK`, at once.
    Ok,
    /// This status, always (a 2xx here answers success with another code).
    Status(u16),
    /// This status for every request.
    Fail(u16),
    /// This status for the next `n` requests, then [`Mode::Ok`].
    FailNext(u16, u32),
    /// Never answers (the request is recorded; the connection stays open).
    Hang,
    /// `200 OK` after this delay.
    Slow(Duration),
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Names lowercase, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub arrived: Instant,
}

impl ReceivedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON (panics when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "webhook body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

#[derive(Debug)]
struct Shared {
    mode: Mutex<Mode>,
    requests: Mutex<Vec<ReceivedRequest>>,
    arrived: Notify,
}

/// The running receiver; stopped when dropped.
#[derive(Debug)]
pub struct WebhookReceiver {
    port: u16,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl WebhookReceiver {
    /// Starts a receiver answering [`Mode::Ok`].
    pub async fn start() -> WebhookReceiver {
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode::Ok),
            requests: Mutex::new(Vec::new()),
            arrived: Notify::new(),
        });
        // Bound here and kept: no other process can take the port in between.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the webhook receiver");
        let port = listener.local_addr().expect("local addr").port();
        let router = axum::Router::new()
            .fallback(receive)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        WebhookReceiver { port, shared, task }
    }

    /// The URL to configure as the endpoint's `url` (`http://127.0.0.1:<port>/hook`).
    pub fn url(&self) -> String {
        self.url_for("/hook")
    }

    /// A URL of this receiver with another path (to tell endpoints apart).
    pub fn url_for(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// How the following requests are answered.
    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().expect("mode lock") = mode;
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.shared.requests.lock().expect("requests lock").clone()
    }

    /// Waits until at least `n` requests arrived and returns them all; panics after `timeout`
    /// with what did arrive.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<ReceivedRequest> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before the check, so an arrival in between is not missed.
            let arrived = self.shared.arrived.notified();
            let requests = self.requests();
            if requests.len() >= n {
                return requests;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
                panic!(
                    "webhook receiver: {} of {n} requests within {timeout:?}: {paths:?}",
                    requests.len()
                );
            }
        }
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let arrived = Instant::now();
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let headers = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    let mode = {
        let mut mode = shared.mode.lock().expect("mode lock");
        let now = mode.clone();
        if let Mode::FailNext(status, n) = now {
            *mode = if n <= 1 {
                Mode::Ok
            } else {
                Mode::FailNext(status, n - 1)
            };
        }
        now
    };
    shared
        .requests
        .lock()
        .expect("requests lock")
        .push(ReceivedRequest {
            method: parts.method.as_str().to_owned(),
            path,
            headers,
            body,
            arrived,
        });
    shared.arrived.notify_waiters();
    let status =
        |code: u16| StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match mode {
        Mode::Ok => StatusCode::OK.into_response(),
        Mode::Status(code) | Mode::Fail(code) | Mode::FailNext(code, _) => {
            (status(code), format!("receiver answering {code}")).into_response()
        }
        Mode::Hang => std::future::pending().await,
        Mode::Slow(delay) => {
            tokio::time::sleep(delay).await;
            StatusCode::OK.into_response()
        }
    }
}

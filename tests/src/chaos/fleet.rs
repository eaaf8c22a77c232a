//! The clients' side of the chaos test (`tests/chaos.rs`): instances that die and come back
//! on new ports, and requests that know whether a kill cut them off.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;

/// splitmix64: small, seedable, good enough to pick.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Debug, Default)]
pub struct Figures {
    pub pushes_acked: AtomicU64,
    pub deletes_acked: AtomicU64,
    pub instances_killed: AtomicU64,
    pub gc_runs: AtomicU64,
    pub gc_killed: AtomicU64,
    pub gc_failed: AtomicU64,
    /// Requests cut off because their instance was killed under them.
    pub connection_errors: AtomicU64,
    /// `5xx` answers from an instance killed while answering (none expected, counted apart).
    pub killed_5xx: AtomicU64,
    pub manifest_retries: AtomicU64,
    pub mounts: AtomicU64,
    pub sessions_resumed: AtomicU64,
    pub lost: AtomicU64,
    pub corrupt: AtomicU64,
    /// `5xx` from instances not killed under the request, and connection errors from them.
    pub stray: Mutex<Vec<String>>,
}

impl Figures {
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn problem(&self, counter: &AtomicU64, what: String) {
        eprintln!("chaos: {what}");
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What clients see of one instance: where it listens now, and a generation that moves on
/// every kill (a request that started in an older generation was cut off by a kill).
#[derive(Debug, Clone)]
pub struct Slot {
    pub alive: bool,
    pub port: u16,
    pub generation: u64,
    /// A client per generation: no pooled connection outlives the process it was made to.
    pub client: reqwest::Client,
}

pub fn client_for_instance() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .expect("http client")
}

#[derive(Debug)]
pub struct Fleet {
    pub slots: Vec<Mutex<Slot>>,
    pub figures: Figures,
}

/// An answer that came back whole (status below 500).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub location: Option<String>,
    pub range: Option<String>,
    pub body: Bytes,
}

/// The request did not get an answer: its instance was killed (or a stray failure, recorded).
#[derive(Debug)]
pub struct Interrupted;

#[derive(Debug, Clone, Copy)]
pub enum Method {
    Get,
    Head,
    Post,
    Patch,
    Put,
    Delete,
}

#[derive(Debug)]
pub struct Request<'a> {
    pub method: Method,
    /// Path and query, from `/v2/`.
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<&'a [u8]>,
}

impl<'a> Request<'a> {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Request {
            method,
            path: path.into(),
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: &'a [u8]) -> Self {
        self.body = Some(body);
        self
    }
}

impl Fleet {
    pub fn live(&self, rng: &mut Rng) -> Option<Slot> {
        let alive: Vec<Slot> = self
            .slots
            .iter()
            .map(|s| s.lock().expect("slot").clone())
            .filter(|s| s.alive)
            .collect();
        (!alive.is_empty()).then(|| alive[rng.below(alive.len() as u64) as usize].clone())
    }

    pub fn generation_moved(&self, port: u16, generation: u64) -> bool {
        self.slots.iter().any(|s| {
            let s = s.lock().expect("slot");
            s.port == port && s.generation != generation
        }) || !self.slots.iter().any(|s| {
            let s = s.lock().expect("slot");
            s.port == port && s.generation == generation && s.alive
        })
    }

    /// Sends the request to a live instance picked at random (waiting for one).
    pub async fn send(&self, rng: &mut Rng, request: &Request<'_>) -> Result<Answer, Interrupted> {
        let slot = loop {
            if let Some(slot) = self.live(rng) {
                break slot;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let url = format!("http://127.0.0.1:{}{}", slot.port, request.path);
        let c = &slot.client;
        let mut builder = match request.method {
            Method::Get => c.get(&url),
            Method::Head => c.head(&url),
            Method::Post => c.post(&url),
            Method::Patch => c.patch(&url),
            Method::Put => c.put(&url),
            Method::Delete => c.delete(&url),
        };
        for (name, value) in &request.headers {
            builder = builder.header(*name, value);
        }
        if let Some(body) = request.body {
            builder = builder.body(body.to_vec());
        } else if matches!(request.method, Method::Post | Method::Put | Method::Patch) {
            builder = builder.header("Content-Length", "0");
        }
        let outcome = async {
            let resp = builder.send().await?;
            let status = resp.status().as_u16();
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let (location, range) = (header("location"), header("range"));
            let body = resp.bytes().await?;
            Ok::<Answer, reqwest::Error>(Answer {
                status,
                location,
                range,
                body,
            })
        }
        .await;
        let killed = || self.generation_moved(slot.port, slot.generation);
        match outcome {
            Ok(answer) if answer.status < 500 => Ok(answer),
            Ok(answer) => {
                if killed() {
                    Figures::add(&self.figures.killed_5xx);
                } else {
                    let what = format!(
                        "{} {} answered {}: {}",
                        method_name(&request.method),
                        request.path,
                        answer.status,
                        String::from_utf8_lossy(&answer.body)
                    );
                    eprintln!("chaos: stray {what}");
                    self.figures.stray.lock().expect("stray").push(what);
                }
                Err(Interrupted)
            }
            Err(e) => {
                if killed() {
                    Figures::add(&self.figures.connection_errors);
                } else {
                    let what = format!(
                        "{} {} failed on a live instance: {e:?}",
                        method_name(&request.method),
                        request.path
                    );
                    eprintln!("chaos: stray {what}");
                    self.figures.stray.lock().expect("stray").push(what);
                }
                Err(Interrupted)
            }
        }
    }

    /// Sends until an answer comes back.
    pub async fn send_until_answered(&self, rng: &mut Rng, request: &Request<'_>) -> Answer {
        loop {
            if let Ok(answer) = self.send(rng, request).await {
                return answer;
            }
        }
    }
}

pub fn method_name(method: &Method) -> &'static str {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Patch => "PATCH",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
    }
}

/// The path and query of a `Location`, whichever instance wrote it.
pub fn location_path(location: &str) -> String {
    match location.strip_prefix("http://") {
        Some(rest) => rest[rest.find('/').unwrap_or(rest.len())..].to_owned(),
        None => location.to_owned(),
    }
}

pub fn with_query(path: &str, query: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{query}")
}

/// Bytes stored in a session from its `Range: 0-<last>` (chunks here are never one byte, so
/// `0-0` means none).
pub fn stored(answer: &Answer) -> u64 {
    let range = answer.range.as_deref().expect("Range on an upload status");
    let end: u64 = range
        .strip_prefix("0-")
        .and_then(|e| e.parse().ok())
        .unwrap_or_else(|| panic!("Range {range:?}"));
    if end == 0 { 0 } else { end + 1 }
}

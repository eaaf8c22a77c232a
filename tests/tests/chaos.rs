//! Chaos: registry instances and the garbage collector killed with `SIGKILL` at random while
//! clients push, delete and push again. Afterwards nothing acknowledged is lost or corrupt.
//!
//! With `TEST_METADATA=postgres`, three instances share one database and one store (the
//! data directory, or the GCS emulator's bucket with `TEST_STORAGE=gcs`): the production
//! shape. On the embedded default (SQLite) one instance is killed and restarted instead: a
//! SQLite file shared by several registry processes is not a supported shape (README,
//! "PostgreSQL"), while one registry beside the `jobs` binary on the same file is.
//!
//! Four clients push images made of two layers from a shared pool, a layer of their own and a
//! config: each blob is first `HEAD`ed and then, when missing, uploaded monolithically
//! (`POST ?digest=`), as one streamed `PATCH`, or in chunks whose `PATCH`es go to instances
//! picked at random, or for a shared layer sometimes mounted from another client's
//! repository; a refused manifest (`MANIFEST_BLOB_UNKNOWN`: the collector took a link first)
//! makes the client upload again. They move a `latest` tag, delete manifests and push
//! deleted ones again, and abandon some chunked sessions half-way. `jobs blob-gc` loops with a
//! 1 s grace period. Every few seconds (seeded RNG: the seed is printed, `CHAOS_SEED` replays
//! its choices) an instance or the running collector is killed; an instance comes back on a
//! new port after a moment. A request in flight to a killed instance fails with a connection
//! error (counted, then retried elsewhere, as a client would); any `5xx` from an instance that
//! was not killed under it fails the test.
//!
//! At the end, after a final collection: every acknowledged manifest pulls byte-identical by
//! tag and by digest with every blob digest-correct, `latest` names the last image pushed
//! (or nothing when that one was deleted), deleted manifests stay deleted, every abandoned
//! session either continues at the offset it was acknowledged at (or that plus the chunk in
//! flight when it was cut off) and finishes into a correct blob, or answers `404`; and the
//! blob objects left that no manifest references are counted. One line of figures is printed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use registry_tests::api::jobs_bin;
use registry_tests::{
    OCI_MANIFEST, Registry, image_manifest_json, metadata_engine, pseudo_random_bytes,
    sha256_digest,
};

/// How long instances and the collector are killed at random.
const CHAOS: Duration = Duration::from_secs(60);
const CLIENTS: u64 = 4;
const SHARED_LAYERS: u64 = 6;
const GRACE_SECS: u64 = 1;

/// splitmix64: small, seedable, good enough to pick.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Debug, Default)]
struct Figures {
    pushes_acked: AtomicU64,
    deletes_acked: AtomicU64,
    instances_killed: AtomicU64,
    gc_runs: AtomicU64,
    gc_killed: AtomicU64,
    gc_failed: AtomicU64,
    /// Requests cut off because their instance was killed under them.
    connection_errors: AtomicU64,
    /// `5xx` answers from an instance killed while answering (none expected, counted apart).
    killed_5xx: AtomicU64,
    manifest_retries: AtomicU64,
    mounts: AtomicU64,
    sessions_resumed: AtomicU64,
    lost: AtomicU64,
    corrupt: AtomicU64,
    /// `5xx` from instances not killed under the request, and connection errors from them.
    stray: Mutex<Vec<String>>,
}

impl Figures {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn problem(&self, counter: &AtomicU64, what: String) {
        eprintln!("chaos: {what}");
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What clients see of one instance: where it listens now, and a generation that moves on
/// every kill (a request that started in an older generation was cut off by a kill).
#[derive(Debug, Clone)]
struct Slot {
    alive: bool,
    port: u16,
    generation: u64,
    /// A client per generation: no pooled connection outlives the process it was made to.
    client: reqwest::Client,
}

fn client_for_instance() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .expect("http client")
}

#[derive(Debug)]
struct Fleet {
    slots: Vec<Mutex<Slot>>,
    figures: Figures,
}

/// An answer that came back whole (status below 500).
#[derive(Debug)]
struct Answer {
    status: u16,
    location: Option<String>,
    range: Option<String>,
    body: Bytes,
}

/// The request did not get an answer: its instance was killed (or a stray failure, recorded).
#[derive(Debug)]
struct Interrupted;

enum Method {
    Get,
    Head,
    Post,
    Patch,
    Put,
    Delete,
}

struct Request<'a> {
    method: Method,
    /// Path and query, from `/v2/`.
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Option<&'a [u8]>,
}

impl<'a> Request<'a> {
    fn new(method: Method, path: impl Into<String>) -> Self {
        Request {
            method,
            path: path.into(),
            headers: Vec::new(),
            body: None,
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn body(mut self, body: &'a [u8]) -> Self {
        self.body = Some(body);
        self
    }
}

impl Fleet {
    fn live(&self, rng: &mut Rng) -> Option<Slot> {
        let alive: Vec<Slot> = self
            .slots
            .iter()
            .map(|s| s.lock().expect("slot").clone())
            .filter(|s| s.alive)
            .collect();
        (!alive.is_empty()).then(|| alive[rng.below(alive.len() as u64) as usize].clone())
    }

    fn generation_moved(&self, port: u16, generation: u64) -> bool {
        self.slots.iter().any(|s| {
            let s = s.lock().expect("slot");
            s.port == port && s.generation != generation
        }) || !self.slots.iter().any(|s| {
            let s = s.lock().expect("slot");
            s.port == port && s.generation == generation && s.alive
        })
    }

    /// Sends the request to a live instance picked at random (waiting for one).
    async fn send(&self, rng: &mut Rng, request: &Request<'_>) -> Result<Answer, Interrupted> {
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
    async fn send_until_answered(&self, rng: &mut Rng, request: &Request<'_>) -> Answer {
        loop {
            if let Ok(answer) = self.send(rng, request).await {
                return answer;
            }
        }
    }
}

fn method_name(method: &Method) -> &'static str {
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
fn location_path(location: &str) -> String {
    match location.strip_prefix("http://") {
        Some(rest) => rest[rest.find('/').unwrap_or(rest.len())..].to_owned(),
        None => location.to_owned(),
    }
}

fn with_query(path: &str, query: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{query}")
}

/// Bytes stored in a session from its `Range: 0-<last>` (chunks here are never one byte, so
/// `0-0` means none).
fn stored(answer: &Answer) -> u64 {
    let range = answer.range.as_deref().expect("Range on an upload status");
    let end: u64 = range
        .strip_prefix("0-")
        .and_then(|e| e.parse().ok())
        .unwrap_or_else(|| panic!("Range {range:?}"));
    if end == 0 { 0 } else { end + 1 }
}

/// A session a client left half-way: its bytes, what was acknowledged, and what was in
/// flight when it was cut off (when it was).
#[derive(Debug, Clone)]
struct Abandoned {
    repo: String,
    location: String,
    bytes: Arc<Vec<u8>>,
    acked: u64,
    in_flight: u64,
}

#[derive(Debug, Clone)]
struct Image {
    repo: String,
    tag: String,
    manifest: Vec<u8>,
    digest: String,
    blobs: Vec<Arc<Vec<u8>>>,
}

#[derive(Debug, Default)]
struct ClientEnd {
    live: BTreeMap<String, Image>,
    deleted: BTreeMap<String, Image>,
    latest: Option<String>,
    repo: String,
    abandoned: Vec<Abandoned>,
}

async fn blob_linked(fleet: &Fleet, rng: &mut Rng, repo: &str, digest: &str) -> bool {
    let answer = fleet
        .send_until_answered(
            rng,
            &Request::new(Method::Head, format!("/v2/{repo}/blobs/{digest}")),
        )
        .await;
    match answer.status {
        200 => true,
        404 => false,
        other => panic!("HEAD blob {repo}@{digest} answered {other}"),
    }
}

/// Uploads the blob into `repo` by a method picked at random, until it is acknowledged.
async fn upload(
    fleet: &Fleet,
    rng: &mut Rng,
    repo: &str,
    bytes: &Arc<Vec<u8>>,
    end: &mut ClientEnd,
) {
    let digest = sha256_digest(bytes);
    loop {
        let done = match rng.below(3) {
            0 => {
                let post = Request::new(
                    Method::Post,
                    format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
                )
                .header("Content-Type", "application/octet-stream")
                .body(bytes);
                match fleet.send(rng, &post).await {
                    Ok(a) => {
                        assert_eq!(a.status, 201, "monolithic upload: {:?}", a.body);
                        true
                    }
                    Err(Interrupted) => false,
                }
            }
            1 => streamed(fleet, rng, repo, bytes, &digest, end).await,
            _ => chunked(fleet, rng, repo, bytes, &digest, end).await,
        };
        if done {
            return;
        }
    }
}

async fn open_session(fleet: &Fleet, rng: &mut Rng, repo: &str) -> String {
    let answer = fleet
        .send_until_answered(
            rng,
            &Request::new(Method::Post, format!("/v2/{repo}/blobs/uploads/")),
        )
        .await;
    assert_eq!(answer.status, 202, "open session: {:?}", answer.body);
    location_path(&answer.location.expect("Location"))
}

/// `PUT ?digest=` closing a session; true once the blob is known stored.
async fn close_session(
    fleet: &Fleet,
    rng: &mut Rng,
    repo: &str,
    location: &str,
    digest: &str,
) -> bool {
    let put = Request::new(
        Method::Put,
        with_query(location, &format!("digest={digest}")),
    );
    let mut first = true;
    loop {
        match fleet.send(rng, &put).await {
            Ok(a) if a.status == 201 => return true,
            Ok(a) if a.status == 404 && first => {
                fleet
                    .figures
                    .problem(&fleet.figures.lost, format!("session {location} vanished"));
                return false;
            }
            // An earlier attempt committed before its instance died: the session is closed
            // (and the blob linked, unless the collector took the link since).
            Ok(a) if a.status == 404 => return blob_linked(fleet, rng, repo, digest).await,
            Ok(a) => panic!("closing a session answered {}: {:?}", a.status, a.body),
            Err(Interrupted) => first = false,
        }
    }
}

/// Where a session stands after a request was cut off: the acknowledged offset, or that plus
/// the chunk in flight. Anything else is a corrupt session.
async fn offset_after_cut(
    fleet: &Fleet,
    rng: &mut Rng,
    location: &str,
    acked: u64,
    in_flight: u64,
) -> Option<u64> {
    let answer = fleet
        .send_until_answered(rng, &Request::new(Method::Get, location.to_owned()))
        .await;
    match answer.status {
        204 => {
            let at = stored(&answer);
            if at != acked && at != acked + in_flight {
                fleet.figures.problem(
                    &fleet.figures.corrupt,
                    format!(
                        "session {location} at {at}, acknowledged {acked} (+{in_flight} in flight)"
                    ),
                );
                return None;
            }
            Some(at)
        }
        404 => {
            fleet
                .figures
                .problem(&fleet.figures.lost, format!("session {location} vanished"));
            None
        }
        other => panic!("upload status answered {other}"),
    }
}

/// One `PATCH` of the whole body, no `Content-Range`; a cut-off one leaves the session
/// abandoned (offset 0 or all of it).
async fn streamed(
    fleet: &Fleet,
    rng: &mut Rng,
    repo: &str,
    bytes: &Arc<Vec<u8>>,
    digest: &str,
    end: &mut ClientEnd,
) -> bool {
    let location = open_session(fleet, rng, repo).await;
    let patch = Request::new(Method::Patch, location.clone())
        .header("Content-Type", "application/octet-stream")
        .body(bytes);
    match fleet.send(rng, &patch).await {
        Ok(a) => assert_eq!(a.status, 202, "streamed PATCH: {:?}", a.body),
        Err(Interrupted) => {
            end.abandoned.push(Abandoned {
                repo: repo.to_owned(),
                location,
                bytes: bytes.clone(),
                acked: 0,
                in_flight: bytes.len() as u64,
            });
            return false;
        }
    }
    close_session(fleet, rng, repo, &location, digest).await
}

/// `PATCH`es with `Content-Range`, each to an instance picked at random; a cut-off chunk is
/// resumed from where the session says it is. Some sessions are abandoned half-way.
async fn chunked(
    fleet: &Fleet,
    rng: &mut Rng,
    repo: &str,
    bytes: &Arc<Vec<u8>>,
    digest: &str,
    end: &mut ClientEnd,
) -> bool {
    let location = open_session(fleet, rng, repo).await;
    let chunk = rng.between(64 * 1024, 512 * 1024);
    let abandon_at = rng.chance(15).then(|| rng.below(bytes.len() as u64));
    let mut offset = 0u64;
    while offset < bytes.len() as u64 {
        if let Some(at) = abandon_at
            && offset >= at
            && offset > 0
        {
            end.abandoned.push(Abandoned {
                repo: repo.to_owned(),
                location,
                bytes: bytes.clone(),
                acked: offset,
                in_flight: 0,
            });
            return false;
        }
        let stop = (offset + chunk).min(bytes.len() as u64);
        let patch = Request::new(Method::Patch, location.clone())
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", format!("{offset}-{}", stop - 1))
            .body(&bytes[offset as usize..stop as usize]);
        match fleet.send(rng, &patch).await {
            Ok(a) => {
                assert_eq!(a.status, 202, "chunk PATCH: {:?}", a.body);
                offset = stop;
            }
            Err(Interrupted) => {
                match offset_after_cut(fleet, rng, &location, offset, stop - offset).await {
                    Some(at) => {
                        Figures::add(&fleet.figures.sessions_resumed);
                        offset = at;
                    }
                    None => return false,
                }
            }
        }
    }
    close_session(fleet, rng, repo, &location, digest).await
}

/// Puts a manifest under `reference` until it is acknowledged, uploading its blobs again when
/// the collector took one first.
async fn put_manifest(
    fleet: &Fleet,
    rng: &mut Rng,
    image: &Image,
    reference: &str,
    end: &mut ClientEnd,
) {
    let put = Request::new(
        Method::Put,
        format!("/v2/{}/manifests/{reference}", image.repo),
    )
    .header("Content-Type", OCI_MANIFEST)
    .body(&image.manifest);
    loop {
        match fleet.send(rng, &put).await {
            Ok(a) if a.status == 201 => return,
            Ok(a)
                if a.status == 400
                    && String::from_utf8_lossy(&a.body).contains("MANIFEST_BLOB_UNKNOWN") =>
            {
                Figures::add(&fleet.figures.manifest_retries);
                ensure_blobs(fleet, rng, image, end).await;
            }
            Ok(a) => panic!("manifest PUT answered {}: {:?}", a.status, a.body),
            Err(Interrupted) => {}
        }
    }
}

async fn ensure_blobs(fleet: &Fleet, rng: &mut Rng, image: &Image, end: &mut ClientEnd) {
    for (i, blob) in image.blobs.iter().enumerate() {
        let digest = sha256_digest(blob);
        if blob_linked(fleet, rng, &image.repo, &digest).await {
            continue;
        }
        // Shared layers: sometimes a cross-repository mount from another client's repository.
        if (1..=2).contains(&i) && rng.chance(40) && mount(fleet, rng, image, blob, end).await {
            continue;
        }
        upload(fleet, rng, &image.repo, blob, end).await;
    }
}

/// `POST ?mount=&from=`: `201` when the other repository has the blob linked; otherwise the
/// `202` session it opens is left for the end checks to finish (an abandoned empty session).
async fn mount(
    fleet: &Fleet,
    rng: &mut Rng,
    image: &Image,
    blob: &Arc<Vec<u8>>,
    end: &mut ClientEnd,
) -> bool {
    let from = format!("chaos/c{}", rng.below(CLIENTS));
    let request = Request::new(
        Method::Post,
        format!(
            "/v2/{}/blobs/uploads/?mount={}&from={from}",
            image.repo,
            sha256_digest(blob)
        ),
    );
    match fleet.send(rng, &request).await {
        Ok(a) if a.status == 201 => {
            Figures::add(&fleet.figures.mounts);
            true
        }
        Ok(a) if a.status == 202 => {
            end.abandoned.push(Abandoned {
                repo: image.repo.clone(),
                location: location_path(&a.location.expect("Location")),
                bytes: blob.clone(),
                acked: 0,
                in_flight: 0,
            });
            false
        }
        Ok(a) => panic!("mount answered {}: {:?}", a.status, a.body),
        Err(Interrupted) => false,
    }
}

async fn push(fleet: &Fleet, rng: &mut Rng, image: &Image, end: &mut ClientEnd) {
    ensure_blobs(fleet, rng, image, end).await;
    put_manifest(fleet, rng, image, &image.tag, end).await;
    Figures::add(&fleet.figures.pushes_acked);
}

/// Deletes a manifest by digest until the deletion is acknowledged. A `404` counts as done
/// only after an attempt that may have committed; on a first attempt it is a lost manifest.
async fn delete(fleet: &Fleet, rng: &mut Rng, image: &Image) {
    let request = Request::new(
        Method::Delete,
        format!("/v2/{}/manifests/{}", image.repo, image.digest),
    );
    let mut first = true;
    loop {
        match fleet.send(rng, &request).await {
            Ok(a) if a.status == 202 => break,
            Ok(a) if a.status == 404 && !first => break,
            Ok(a) if a.status == 404 => {
                fleet.figures.problem(
                    &fleet.figures.lost,
                    format!("{}@{} was gone before its delete", image.repo, image.digest),
                );
                break;
            }
            Ok(a) => panic!("manifest DELETE answered {}: {:?}", a.status, a.body),
            Err(Interrupted) => first = false,
        }
    }
    Figures::add(&fleet.figures.deletes_acked);
}

async fn client(
    fleet: Arc<Fleet>,
    id: u64,
    seed: u64,
    shared: Arc<Vec<Arc<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
) -> ClientEnd {
    let mut rng = Rng(seed ^ (id + 1).wrapping_mul(0xA24B_AED4_963E_E407));
    let repo = format!("chaos/c{id}");
    let mut end = ClientEnd {
        repo: repo.clone(),
        ..ClientEnd::default()
    };
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let config = format!(r#"{{"client":{id},"round":{round},"seed":{seed}}}"#).into_bytes();
        let own_len = if rng.chance(25) {
            rng.between(1024 * 1024, 2 * 1024 * 1024)
        } else {
            rng.between(1024, 300 * 1024)
        } as usize;
        let own = pseudo_random_bytes(own_len, seed ^ (id << 32) ^ round);
        let a = rng.below(SHARED_LAYERS) as usize;
        let b = (a + 1 + rng.below(SHARED_LAYERS - 1) as usize) % SHARED_LAYERS as usize;
        let blobs = vec![
            Arc::new(config),
            shared[a].clone(),
            shared[b].clone(),
            Arc::new(own),
        ];
        let layers: Vec<(String, usize)> = blobs[1..]
            .iter()
            .map(|l| (sha256_digest(l), l.len()))
            .collect();
        let manifest =
            image_manifest_json(&(sha256_digest(&blobs[0]), blobs[0].len()), &layers).into_bytes();
        let image = Image {
            repo: repo.clone(),
            tag: format!("r{round}"),
            digest: sha256_digest(&manifest),
            manifest,
            blobs,
        };
        push(&fleet, &mut rng, &image, &mut end).await;
        // The tag move.
        put_manifest(&fleet, &mut rng, &image, "latest", &mut end).await;
        end.latest = Some(image.digest.clone());
        end.live.insert(image.digest.clone(), image);

        if end.live.len() > 2 && rng.chance(35) {
            let victim = end
                .live
                .keys()
                .nth(rng.below(end.live.len() as u64) as usize)
                .cloned()
                .expect("a live image");
            let image = end.live.remove(&victim).expect("live");
            delete(&fleet, &mut rng, &image).await;
            if end.latest.as_deref() == Some(victim.as_str()) {
                end.latest = None;
            }
            end.deleted.insert(victim, image);
        }
        if !end.deleted.is_empty() && rng.chance(20) {
            let again = end
                .deleted
                .keys()
                .nth(rng.below(end.deleted.len() as u64) as usize)
                .cloned()
                .expect("a deleted image");
            let image = end.deleted.remove(&again).expect("deleted");
            push(&fleet, &mut rng, &image, &mut end).await;
            end.live.insert(again, image);
        }
        round += 1;
    }
    end
}

/// What the collector runs on: the registries' database and store.
#[derive(Debug, Clone)]
struct GcSettings {
    data_dir: std::path::PathBuf,
    database_url: String,
    storage: Vec<(String, String)>,
}

impl GcSettings {
    fn of(reg: &Registry) -> Self {
        let database_url = match reg.database() {
            Some(db) => db.url().to_owned(),
            None => format!(
                "sqlite://{}?mode=rwc",
                reg.data_dir().join("registry.db").display()
            ),
        };
        GcSettings {
            data_dir: reg.data_dir(),
            database_url,
            storage: reg.storage_env(),
        }
    }

    fn command(&self, stderr: &Path) -> tokio::process::Command {
        let bin = jobs_bin();
        assert!(bin.exists(), "jobs binary not found at {}", bin.display());
        let mut command = tokio::process::Command::new(bin);
        command
            .arg("blob-gc")
            .env_clear()
            .env("DATA_DIR", &self.data_dir)
            .env("DATABASE_URL", &self.database_url)
            .env("GC_GRACE_SECS", GRACE_SECS.to_string())
            .env("JOB_BATCH_SIZE", "16")
            .env("LOG_LEVEL", "warn")
            .envs(self.storage.iter().cloned())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(stderr).expect("gc log"));
        command
    }
}

/// `blob-gc` in a loop until `stop`; killed when `kill` is notified while it runs.
async fn gc_loop(
    settings: GcSettings,
    fleet: Arc<Fleet>,
    kill: Arc<tokio::sync::Notify>,
    running: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) {
    let dir = tempfile::tempdir().expect("gc logs");
    let log = dir.path().join("gc.log");
    while !stop.load(Ordering::Relaxed) {
        let mut child = settings.command(&log).spawn().expect("spawn blob-gc");
        Figures::add(&fleet.figures.gc_runs);
        running.store(true, Ordering::Relaxed);
        tokio::select! {
            status = child.wait() => {
                let status = status.expect("wait blob-gc");
                if !status.success() {
                    Figures::add(&fleet.figures.gc_failed);
                    eprintln!("chaos: blob-gc failed ({status}): {}", std::fs::read_to_string(&log).unwrap_or_default());
                }
            }
            () = kill.notified() => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                Figures::add(&fleet.figures.gc_killed);
            }
        }
        running.store(false, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Kills instances and the collector at random for [`CHAOS`], then brings every instance
/// back; returns them.
async fn chaos(
    mut instances: Vec<Registry>,
    fleet: Arc<Fleet>,
    seed: u64,
    kill_gc: Arc<tokio::sync::Notify>,
    gc_running: Arc<AtomicBool>,
) -> Vec<Registry> {
    let mut rng = Rng(seed);
    let started = Instant::now();
    let single = instances.len() == 1;
    while started.elapsed() < CHAOS {
        tokio::time::sleep(Duration::from_millis(rng.between(1500, 4000))).await;
        if rng.chance(30) {
            if gc_running.load(Ordering::Relaxed) {
                kill_gc.notify_one();
            }
            continue;
        }
        let victim = rng.below(instances.len() as u64) as usize;
        {
            let mut slot = fleet.slots[victim].lock().expect("slot");
            slot.alive = false;
            slot.generation += 1;
        }
        instances[victim].kill();
        Figures::add(&fleet.figures.instances_killed);
        // Several instances: the others serve while one is down, so it may stay down longer.
        let down = if single { 1500 } else { 4000 };
        let pause = Duration::from_millis(rng.between(100, down));
        let reg = instances.remove(victim);
        tokio::time::sleep(pause).await;
        let reg = reg.restart().await;
        {
            let mut slot = fleet.slots[victim].lock().expect("slot");
            slot.port = reg.port();
            slot.client = client_for_instance();
            slot.alive = true;
        }
        instances.insert(victim, reg);
    }
    instances
}

/// Blob objects in the store: digests, from the data directory or the GCS bucket.
async fn stored_blobs(reg: &Registry) -> BTreeSet<String> {
    let env: BTreeMap<String, String> = reg.storage_env().into_iter().collect();
    let mut found = BTreeSet::new();
    match env.get("STORAGE_BACKEND").map(String::as_str) {
        Some("gcs") => {
            let endpoint = &env["GCS_ENDPOINT"];
            let bucket = &env["BUCKET_NAME"];
            let prefix = format!("{}blobs/", env.get("GCS_PREFIX").map_or("", String::as_str));
            let mut page: Option<String> = None;
            loop {
                let mut url = format!("{endpoint}/storage/v1/b/{bucket}/o?prefix={prefix}");
                if let Some(token) = &page {
                    url.push_str(&format!("&pageToken={token}"));
                }
                let listing: serde_json::Value = reqwest::get(&url)
                    .await
                    .expect("list the bucket")
                    .json()
                    .await
                    .expect("listing json");
                for item in listing["items"].as_array().into_iter().flatten() {
                    let name = item["name"].as_str().expect("object name");
                    if let Some(hex) = name.rsplit('/').next()
                        && hex.len() == 64
                    {
                        found.insert(format!("sha256:{hex}"));
                    }
                }
                match listing["nextPageToken"].as_str() {
                    Some(token) => page = Some(token.to_owned()),
                    None => break,
                }
            }
        }
        Some(other) => panic!("chaos counts garbage on fs and gcs, not {other}"),
        None => {
            let root = reg.data_dir().join("blobs/sha256");
            for dir in std::fs::read_dir(&root).into_iter().flatten().flatten() {
                for file in std::fs::read_dir(dir.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let name = file.file_name().to_string_lossy().into_owned();
                    if name.len() == 64 {
                        found.insert(format!("sha256:{name}"));
                    }
                }
            }
        }
    }
    found
}

async fn get(reg: &Registry, path: &str) -> (u16, Bytes) {
    let resp = reg
        .client
        .get(reg.url(path))
        .header(
            "Accept",
            format!("{OCI_MANIFEST}, application/vnd.oci.image.index.v1+json"),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.bytes().await.expect("body"))
}

/// Checks one client's end state against what it was told; counts lost and corrupt.
async fn check_client(reg: &Registry, end: &ClientEnd, figures: &Figures) {
    for image in end.live.values() {
        for reference in [image.tag.as_str(), image.digest.as_str()] {
            let (status, body) =
                get(reg, &format!("/v2/{}/manifests/{reference}", image.repo)).await;
            match status {
                200 if body[..] == image.manifest[..] => {}
                200 => figures.problem(
                    &figures.corrupt,
                    format!("{}:{reference} pulls other bytes", image.repo),
                ),
                other => figures.problem(
                    &figures.lost,
                    format!("{}:{reference} answers {other}", image.repo),
                ),
            }
        }
        for blob in &image.blobs {
            let digest = sha256_digest(blob);
            let (status, body) = get(reg, &format!("/v2/{}/blobs/{digest}", image.repo)).await;
            match status {
                200 if sha256_digest(&body) == digest => {}
                200 => figures.problem(
                    &figures.corrupt,
                    format!("{}@{digest} is not digest-correct", image.repo),
                ),
                other => figures.problem(
                    &figures.lost,
                    format!("blob {}@{digest} answers {other}", image.repo),
                ),
            }
        }
    }
    for image in end.deleted.values() {
        for reference in [image.tag.as_str(), image.digest.as_str()] {
            let (status, _) = get(reg, &format!("/v2/{}/manifests/{reference}", image.repo)).await;
            if status != 404 {
                figures.problem(
                    &figures.corrupt,
                    format!("deleted {}:{reference} answers {status}", image.repo),
                );
            }
        }
    }
    let (status, body) = get(reg, &format!("/v2/{}/manifests/latest", end.repo)).await;
    match &end.latest {
        Some(digest) if status == 200 && body[..] == end.live[digest].manifest[..] => {}
        None if status == 404 => {}
        expected => figures.problem(
            &figures.corrupt,
            format!(
                "{}:latest answers {status}, expected {expected:?}",
                end.repo
            ),
        ),
    }
}

/// An abandoned session continues where it says it is (which must be what was acknowledged,
/// or that plus the chunk in flight) and finishes into the right blob, or it is gone (`404`).
async fn resume(reg: &Registry, abandoned: &Abandoned, figures: &Figures) -> bool {
    let status = reg
        .client
        .get(reg.url(&abandoned.location))
        .send()
        .await
        .expect("status");
    if status.status() == 404 {
        return false;
    }
    assert_eq!(status.status(), 204, "abandoned session status");
    let range = status.headers()["range"]
        .to_str()
        .expect("range")
        .to_owned();
    let end: u64 = range
        .strip_prefix("0-")
        .and_then(|e| e.parse().ok())
        .expect("Range");
    let at = if end == 0 { 0 } else { end + 1 };
    if at != abandoned.acked && at != abandoned.acked + abandoned.in_flight {
        figures.problem(
            &figures.corrupt,
            format!(
                "abandoned session at {at}, acknowledged {} (+{})",
                abandoned.acked, abandoned.in_flight
            ),
        );
        return true;
    }
    let rest = &abandoned.bytes[at as usize..];
    if !rest.is_empty() {
        let resp = reg
            .client
            .patch(reg.url(&abandoned.location))
            .header("Content-Type", "application/octet-stream")
            .header(
                "Content-Range",
                format!("{at}-{}", abandoned.bytes.len() - 1),
            )
            .body(rest.to_vec())
            .send()
            .await
            .expect("PATCH the rest");
        assert_eq!(resp.status(), 202, "resuming an abandoned session");
    }
    let digest = sha256_digest(&abandoned.bytes);
    let resp = reg
        .client
        .put(reg.url(&with_query(
            &abandoned.location,
            &format!("digest={digest}"),
        )))
        .header("Content-Length", "0")
        .send()
        .await
        .expect("PUT");
    assert_eq!(
        resp.status(),
        201,
        "finishing an abandoned session: {:?}",
        resp.text().await
    );
    let (status, body) = get(reg, &format!("/v2/{}/blobs/{digest}", abandoned.repo)).await;
    if status != 200 || sha256_digest(&body) != digest {
        figures.problem(
            &figures.corrupt,
            format!("resumed blob {digest} answers {status}"),
        );
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_acknowledged_is_lost_when_instances_and_the_collector_are_killed() {
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos() as u64
        });
    let shape = match metadata_engine() {
        registry_tests::database::Engine::Postgres => 3,
        registry_tests::database::Engine::Sqlite => 1,
    };
    println!("chaos: seed {seed} (CHAOS_SEED={seed} replays the choices), {shape} instance(s)");

    let env = [("JOBS_INTERVAL_SECS", "0"), ("LOG_LEVEL", "warn")];
    let first = Registry::start_with(&env).await;
    let mut instances = Vec::new();
    for _ in 1..shape {
        instances.push(first.start_peer().await);
    }
    instances.insert(0, first);
    let fleet = Arc::new(Fleet {
        slots: instances
            .iter()
            .map(|r| {
                Mutex::new(Slot {
                    alive: true,
                    port: r.port(),
                    generation: 0,
                    client: client_for_instance(),
                })
            })
            .collect(),
        figures: Figures::default(),
    });
    let gc_settings = GcSettings::of(&instances[0]);

    let shared: Arc<Vec<Arc<Vec<u8>>>> = Arc::new(
        (0..SHARED_LAYERS)
            .map(|i| {
                Arc::new(pseudo_random_bytes(
                    50_000 + (i as usize) * 90_000,
                    seed ^ (i + 77),
                ))
            })
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let kill_gc = Arc::new(tokio::sync::Notify::new());
    let gc_running = Arc::new(AtomicBool::new(false));
    let gc = tokio::spawn(gc_loop(
        gc_settings.clone(),
        fleet.clone(),
        kill_gc.clone(),
        gc_running.clone(),
        stop.clone(),
    ));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            tokio::spawn(client(
                fleet.clone(),
                id,
                seed,
                shared.clone(),
                stop.clone(),
            ))
        })
        .collect();

    let instances = chaos(instances, fleet.clone(), seed, kill_gc, gc_running).await;
    stop.store(true, Ordering::Relaxed);
    let mut ends = Vec::new();
    for c in clients {
        ends.push(c.await.expect("client task"));
    }
    gc.await.expect("gc loop");

    // The final collection, once every unreferenced link is past its grace period.
    tokio::time::sleep(Duration::from_secs(2 * GRACE_SECS + 2)).await;
    let log = tempfile::NamedTempFile::new().expect("log");
    let status = gc_settings
        .command(log.path())
        .status()
        .await
        .expect("final blob-gc");
    assert!(
        status.success(),
        "final blob-gc: {}",
        std::fs::read_to_string(log.path()).unwrap_or_default()
    );

    let reg = &instances[0];
    let figures = &fleet.figures;
    let referenced: BTreeSet<String> = ends
        .iter()
        .flat_map(|e| e.live.values())
        .flat_map(|i| i.blobs.iter().map(|b| sha256_digest(b)))
        .collect();
    let garbage = stored_blobs(reg).await.difference(&referenced).count();
    // Clients side by side, as they pushed: the check stays short whatever was pushed.
    futures_util::future::join_all(ends.iter().map(|end| check_client(reg, end, figures))).await;
    let resumed: Vec<bool> = futures_util::future::join_all(
        ends.iter()
            .flat_map(|end| &end.abandoned)
            .map(|abandoned| resume(reg, abandoned, figures)),
    )
    .await;
    let (resumed, gone) = (
        resumed.iter().filter(|r| **r).count(),
        resumed.iter().filter(|r| !**r).count(),
    );
    let stray = figures.stray.lock().expect("stray").clone();
    println!(
        "chaos figures: pushes acknowledged {}, deletes acknowledged {}, instances killed {}, \
         GC runs {} (killed {}, failed {}), connection errors in kill windows {}, 5xx in kill \
         windows {}, stray errors {}, manifest retries {}, mounts {}, sessions resumed after a cut {}, \
         abandoned sessions resumed {resumed} / gone {gone}, lost {}, corrupt {}, garbage left \
         {garbage} blob objects",
        Figures::get(&figures.pushes_acked),
        Figures::get(&figures.deletes_acked),
        Figures::get(&figures.instances_killed),
        Figures::get(&figures.gc_runs),
        Figures::get(&figures.gc_killed),
        Figures::get(&figures.gc_failed),
        Figures::get(&figures.connection_errors),
        Figures::get(&figures.killed_5xx),
        stray.len(),
        Figures::get(&figures.manifest_retries),
        Figures::get(&figures.mounts),
        Figures::get(&figures.sessions_resumed),
        Figures::get(&figures.lost),
        Figures::get(&figures.corrupt),
    );
    assert_eq!(Figures::get(&figures.lost), 0, "lost (seed {seed})");
    assert_eq!(Figures::get(&figures.corrupt), 0, "corrupt (seed {seed})");
    assert!(
        stray.is_empty(),
        "errors outside kill windows (seed {seed}): {stray:#?}"
    );
    assert!(
        Figures::get(&figures.pushes_acked) > 0,
        "no push went through"
    );
    assert!(
        Figures::get(&figures.instances_killed) > 0,
        "no instance was killed"
    );
}

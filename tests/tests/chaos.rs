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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use registry_tests::api::jobs_bin;
use registry_tests::chaos::client::{Abandoned, CLIENTS, ClientEnd, SHARED_LAYERS, client};
use registry_tests::chaos::fleet::{Figures, Fleet, Rng, Slot, client_for_instance, with_query};
use registry_tests::{OCI_MANIFEST, Registry, metadata_engine, pseudo_random_bytes, sha256_digest};

/// How long instances and the collector are killed at random.
const CHAOS: Duration = Duration::from_secs(60);
const GRACE_SECS: u64 = 1;

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

/// `blob-gc` in a loop until `stop`; killed when `kill` is notified while it runs (a kill of
/// the chaos), or `finish` (the end of the chaos: the run in progress is abandoned).
async fn gc_loop(
    settings: GcSettings,
    fleet: Arc<Fleet>,
    kill: Arc<tokio::sync::Notify>,
    running: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    finish: Arc<tokio::sync::Notify>,
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
            // The chaos is over: the final collection follows, no need to wait for this one.
            () = finish.notified() => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                break;
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
            for name in registry_tests::gcs_object_names(endpoint, bucket, &prefix).await {
                if let Some(hex) = name.rsplit('/').next()
                    && hex.len() == 64
                {
                    found.insert(format!("sha256:{hex}"));
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
    let gc_finish = Arc::new(tokio::sync::Notify::new());
    let gc = tokio::spawn(gc_loop(
        gc_settings.clone(),
        fleet.clone(),
        kill_gc.clone(),
        gc_running.clone(),
        stop.clone(),
        gc_finish.clone(),
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
    gc_finish.notify_one();
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

//! Online garbage collection under load: clients push images that share layers, re-tag them
//! and delete manifests while `jobs blob-gc` runs in a loop with no grace period. Afterwards
//! every remaining manifest pulls with digest-correct blobs, and one more collection leaves
//! no unreferenced blob in metadata or in storage.
//!
//! And with a 10 s grace period, the way clients really push: six clients over a shared pool
//! of layers `HEAD` each blob, upload only what is missing, then push the manifest; they
//! delete images and push them again later, onto layers that have just become unreferenced
//! and whose links are older than the grace period. No push may break
//! (`MANIFEST_BLOB_UNKNOWN` for a blob the client was just told exists) and no blob of a
//! stored manifest may be lost.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use registry_tests::{
    OCI_MANIFEST, Registry, image_manifest_json, pseudo_random_bytes, registry_bin, sha256_digest,
};
use sqlx::Row;

const CLIENTS: u64 = 4;
const ROUNDS: u64 = 12;

fn jobs_bin() -> PathBuf {
    std::env::var("JOBS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| registry_bin().with_file_name("jobs"))
}

/// The database URL a registry uses: its test PostgreSQL database, or its SQLite file.
fn database_url(reg: &Registry) -> String {
    match reg.database() {
        Some(db) => db.url().to_owned(),
        None => format!(
            "sqlite://{}?mode=rwc",
            reg.data_dir().join("registry.db").display()
        ),
    }
}

async fn run_gc(reg: &Registry) -> std::process::Output {
    run_gc_with_grace(reg, 0).await
}

async fn run_gc_with_grace(reg: &Registry, grace_secs: u64) -> std::process::Output {
    let bin = jobs_bin();
    assert!(
        bin.exists(),
        "jobs binary not found at {} (cargo build -p registry-jobs)",
        bin.display()
    );
    tokio::process::Command::new(bin)
        .arg("blob-gc")
        .env_clear()
        .env("DATA_DIR", reg.data_dir())
        .env("DATABASE_URL", database_url(reg))
        .env("GC_GRACE_SECS", grace_secs.to_string())
        .env("JOB_BATCH_SIZE", "7")
        .env("LOG_LEVEL", "warn")
        .output()
        .await
        .expect("run jobs blob-gc")
}

async fn push_blob(reg: &Registry, repo: &str, bytes: &[u8]) {
    let digest = sha256_digest(bytes);
    let resp = reg
        .client
        .post(reg.url(&format!("/v2/{repo}/blobs/uploads/?digest={digest}")))
        .body(bytes.to_vec())
        .send()
        .await
        .expect("push blob");
    assert_eq!(resp.status(), 201, "push blob: {:?}", resp.text().await);
}

/// Pushes an image the way a client does: blobs, then the manifest; a manifest refused
/// because the collector took a blob in between makes the client push the blobs again.
async fn push_image(
    reg: &Registry,
    repo: &str,
    tag: &str,
    blobs: &[Vec<u8>],
    retries: &AtomicU64,
) -> String {
    let config = &blobs[0];
    let layers: Vec<(String, usize)> = blobs[1..]
        .iter()
        .map(|b| (sha256_digest(b), b.len()))
        .collect();
    let manifest = image_manifest_json(&(sha256_digest(config), config.len()), &layers);
    for _attempt in 0..20 {
        for blob in blobs {
            push_blob(reg, repo, blob).await;
        }
        let resp = reg
            .client
            .put(reg.url(&format!("/v2/{repo}/manifests/{tag}")))
            .header("Content-Type", OCI_MANIFEST)
            .body(manifest.clone())
            .send()
            .await
            .expect("push manifest");
        match resp.status().as_u16() {
            201 => return sha256_digest(manifest.as_bytes()),
            400 => {
                let body = resp.text().await.unwrap_or_default();
                assert!(
                    body.contains("MANIFEST_BLOB_UNKNOWN"),
                    "unexpected refusal: {body}"
                );
                retries.fetch_add(1, Ordering::Relaxed);
            }
            other => panic!("manifest push answered {other}: {:?}", resp.text().await),
        }
    }
    panic!("manifest never stored after 20 attempts");
}

async fn client(reg: Arc<Registry>, id: u64, shared: Arc<Vec<Vec<u8>>>, retries: Arc<AtomicU64>) {
    let repo = format!("stress/c{id}");
    let mut pushed: Vec<String> = Vec::new();
    for round in 0..ROUNDS {
        let config = format!(r#"{{"client":{id},"round":{round}}}"#).into_bytes();
        let own = pseudo_random_bytes(20_000 + (round as usize) * 100, id * 1000 + round);
        let blobs = vec![
            config,
            shared[(round % 4) as usize].clone(),
            shared[((round + id) % 4) as usize].clone(),
            own,
        ];
        let tag = format!("t{}", round % 3); // re-tags: t0, t1, t2 move every three rounds
        pushed.push(push_image(&reg, &repo, &tag, &blobs, &retries).await);
        if round % 4 == 3 {
            // Delete an older manifest (its tag goes with it; its blobs become garbage).
            let victim = pushed.remove(0);
            let resp = reg
                .client
                .delete(reg.url(&format!("/v2/{repo}/manifests/{victim}")))
                .send()
                .await
                .expect("delete manifest");
            assert!(
                matches!(resp.status().as_u16(), 202 | 404),
                "delete: {}",
                resp.status()
            );
        }
    }
}

/// Pulls every tagged manifest of every repository and checks each blob's digest; returns
/// how many blobs were checked and how many of those were missing or corrupt.
async fn check_every_image(reg: &Registry) -> (usize, usize) {
    let catalog: serde_json::Value = reg
        .client
        .get(reg.url("/v2/_catalog"))
        .send()
        .await
        .expect("catalog")
        .json()
        .await
        .expect("json");
    let (mut checked, mut lost) = (0, 0);
    for repo in catalog["repositories"].as_array().expect("repositories") {
        let repo = repo.as_str().expect("name");
        let tags: serde_json::Value = reg
            .client
            .get(reg.url(&format!("/v2/{repo}/tags/list")))
            .send()
            .await
            .expect("tags")
            .json()
            .await
            .expect("json");
        for tag in tags["tags"].as_array().expect("tags") {
            let tag = tag.as_str().expect("tag");
            let manifest = reg
                .client
                .get(reg.url(&format!("/v2/{repo}/manifests/{tag}")))
                .send()
                .await
                .expect("manifest");
            assert_eq!(manifest.status(), 200, "{repo}:{tag}");
            let manifest: serde_json::Value = manifest.json().await.expect("json");
            let mut descriptors = vec![manifest["config"].clone()];
            descriptors.extend(
                manifest["layers"]
                    .as_array()
                    .expect("layers")
                    .iter()
                    .cloned(),
            );
            for d in descriptors {
                let digest = d["digest"].as_str().expect("digest");
                let blob = reg
                    .client
                    .get(reg.url(&format!("/v2/{repo}/blobs/{digest}")))
                    .send()
                    .await
                    .expect("blob");
                checked += 1;
                let ok = blob.status() == 200
                    && sha256_digest(&blob.bytes().await.expect("bytes")) == digest;
                if !ok {
                    eprintln!("{repo}:{tag}: lost or corrupt {digest}");
                    lost += 1;
                }
            }
        }
    }
    (checked, lost)
}

fn files_under(dir: &Path, out: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.insert(entry.file_name().to_string_lossy().into_owned());
        }
    }
}

#[tokio::test]
async fn online_gc_never_loses_a_referenced_layer() {
    let reg = Arc::new(Registry::start_with(&[("DB_MAX_CONNECTIONS", "8")]).await);
    let shared: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..4)
            .map(|i| pseudo_random_bytes(50_000, 77 + i))
            .collect(),
    );
    let retries = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    let collector = {
        let (reg, stop) = (reg.clone(), stop.clone());
        tokio::spawn(async move {
            let mut runs = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let out = run_gc(&reg).await;
                assert!(
                    out.status.success(),
                    "blob-gc failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                runs += 1;
            }
            runs
        })
    };
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| tokio::spawn(client(reg.clone(), id, shared.clone(), retries.clone())))
        .collect();
    for c in clients {
        c.await.expect("client");
    }
    stop.store(true, Ordering::Relaxed);
    let runs = collector.await.expect("collector");
    assert!(
        runs >= 2,
        "the collector ran only {runs} time(s) during the pushes"
    );

    let (checked, lost) = check_every_image(&reg).await;
    assert_eq!(lost, 0, "blobs of stored manifests lost");
    assert!(
        checked >= (CLIENTS * 3 * 4) as usize,
        "only {checked} blobs checked"
    );

    // One more collection with nothing running: no unreferenced blob may remain anywhere.
    let out = run_gc(&reg).await;
    assert!(
        out.status.success(),
        "final blob-gc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        check_every_image(&reg).await,
        (checked, 0),
        "the final collection broke an image"
    );

    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&database_url(&reg))
        .await
        .expect("connect metadata");
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query(sql)
                .fetch_one(&pool)
                .await
                .expect(sql)
                .get::<i64, _>(0)
        }
    };
    let unreferenced_links = count(
        "SELECT count(*) FROM repository_blobs l WHERE NOT EXISTS (SELECT 1 FROM manifest_blobs mb \
         WHERE mb.repository_id = l.repository_id AND mb.blob_digest = l.digest)",
    )
    .await;
    let unlinked_blobs = count(
        "SELECT count(*) FROM blobs b WHERE NOT EXISTS (SELECT 1 FROM repository_blobs l WHERE l.digest = b.digest)",
    )
    .await;
    assert_eq!(
        (unreferenced_links, unlinked_blobs),
        (0, 0),
        "garbage left in metadata"
    );

    let rows: BTreeSet<String> = sqlx::query("SELECT digest FROM blobs")
        .fetch_all(&pool)
        .await
        .expect("blob rows")
        .iter()
        .map(|r| {
            r.get::<String, _>(0)
                .trim_start_matches("sha256:")
                .to_owned()
        })
        .collect();
    let mut on_disk = BTreeSet::new();
    files_under(&reg.data_dir().join("blobs"), &mut on_disk);
    assert_eq!(on_disk, rows, "storage objects and blob rows differ");
    pool.close().await;
    eprintln!(
        "gc stress: {runs} collections during the pushes, {} manifest pushes refused and retried, {checked} blobs verified",
        retries.load(Ordering::Relaxed)
    );
}

const GRACE_SECS: u64 = 10;
const GRACE_CLIENTS: u64 = 6;
/// How long the clients push; the whole test takes about a minute.
const GRACE_PUSHING: std::time::Duration = std::time::Duration::from_secs(45);

/// What the clients of the grace scenario did.
#[derive(Default)]
struct GraceFigures {
    pushes: AtomicU64,
    /// Pushes of a deleted image again, onto layers that `HEAD` found (upload skipped).
    repushes_onto_orphans: AtomicU64,
    /// Manifest pushes refused although every blob had just been found or uploaded.
    broken: AtomicU64,
    deletes: AtomicU64,
}

/// One image as a client pushes it: `HEAD` each blob, upload what is missing, then the
/// manifest. Returns whether the manifest was stored and how many blobs `HEAD` found.
async fn push_like_a_client(
    reg: &Registry,
    repo: &str,
    tag: &str,
    blobs: &[Vec<u8>],
    manifest: &str,
    figures: &GraceFigures,
) -> (bool, usize) {
    let mut found = 0;
    for blob in blobs {
        let digest = sha256_digest(blob);
        let head = reg
            .client
            .head(reg.url(&format!("/v2/{repo}/blobs/{digest}")))
            .send()
            .await
            .expect("head blob");
        match head.status().as_u16() {
            200 => found += 1,
            404 => push_blob(reg, repo, blob).await,
            other => panic!("HEAD blob answered {other}"),
        }
    }
    // A client uploads its other layers meanwhile: the collector gets its chance.
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let resp = reg
        .client
        .put(reg.url(&format!("/v2/{repo}/manifests/{tag}")))
        .header("Content-Type", OCI_MANIFEST)
        .body(manifest.to_owned())
        .send()
        .await
        .expect("push manifest");
    match resp.status().as_u16() {
        201 => {
            figures.pushes.fetch_add(1, Ordering::Relaxed);
            (true, found)
        }
        400 => {
            let body = resp.text().await.unwrap_or_default();
            assert!(body.contains("MANIFEST_BLOB_UNKNOWN"), "refused: {body}");
            eprintln!("broken push to {repo}:{tag}: {body}");
            figures.broken.fetch_add(1, Ordering::Relaxed);
            (false, found)
        }
        other => panic!("manifest push answered {other}: {:?}", resp.text().await),
    }
}

/// Pushes new images; once an image is older than the grace period (its links too), deletes
/// it and at once pushes it again, the way a client re-pushes an image it deleted: `HEAD`
/// finds its blobs (links that have just become unreferenced and were created long ago), so
/// it uploads nothing and names them in the manifest. Two clients share each repository, so
/// one's delete may also orphan pool layers the other reuses.
async fn grace_client(
    reg: Arc<Registry>,
    id: u64,
    pool: Arc<Vec<Vec<u8>>>,
    figures: Arc<GraceFigures>,
    until: tokio::time::Instant,
) {
    let repo = format!("grace/r{}", id % 3);
    let old_enough = std::time::Duration::from_secs(GRACE_SECS + 2);
    let mut live: std::collections::VecDeque<(tokio::time::Instant, String, Vec<Vec<u8>>, String)> =
        std::collections::VecDeque::new();
    let mut round = 0u64;
    while tokio::time::Instant::now() < until {
        round += 1;
        let config = format!(r#"{{"client":{id},"round":{round}}}"#).into_bytes();
        let n = pool.len() as u64;
        let blobs = vec![
            config,
            pool[((round + id) % n) as usize].clone(),
            pool[((round * 3 + id * 5) % n) as usize].clone(),
        ];
        let layers: Vec<(String, usize)> = blobs[1..]
            .iter()
            .map(|b| (sha256_digest(b), b.len()))
            .collect();
        let manifest = image_manifest_json(&(sha256_digest(&blobs[0]), blobs[0].len()), &layers);
        let tag = format!("c{id}-r{round}");
        if push_like_a_client(&reg, &repo, &tag, &blobs, &manifest, &figures)
            .await
            .0
        {
            live.push_back((tokio::time::Instant::now(), tag, blobs, manifest));
        }
        let due = live
            .front()
            .is_some_and(|(at, ..)| at.elapsed() >= old_enough);
        if !due {
            // Pace the pushes: enough images to age, not a flood of rows.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        }
        let Some((_, tag, blobs, manifest)) = live.pop_front() else {
            continue;
        };
        let digest = sha256_digest(manifest.as_bytes());
        let resp = reg
            .client
            .delete(reg.url(&format!("/v2/{repo}/manifests/{digest}")))
            .send()
            .await
            .expect("delete manifest");
        assert_eq!(resp.status(), 202, "delete {repo}@{digest}");
        figures.deletes.fetch_add(1, Ordering::Relaxed);
        let (stored, found) =
            push_like_a_client(&reg, &repo, &tag, &blobs, &manifest, &figures).await;
        if stored {
            if found > 0 {
                figures
                    .repushes_onto_orphans
                    .fetch_add(1, Ordering::Relaxed);
            }
            live.push_back((tokio::time::Instant::now(), tag, blobs, manifest));
        }
    }
}

#[tokio::test]
async fn a_10s_grace_breaks_no_push_that_reuses_a_just_orphaned_layer() {
    let reg = Arc::new(Registry::start_with(&[("DB_MAX_CONNECTIONS", "8")]).await);
    let pool: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..8)
            .map(|i| pseudo_random_bytes(20_000, 500 + i))
            .collect(),
    );
    let figures = Arc::new(GraceFigures::default());
    let stop = Arc::new(AtomicBool::new(false));
    let collector = {
        let (reg, stop) = (reg.clone(), stop.clone());
        tokio::spawn(async move {
            let mut runs = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let out = run_gc_with_grace(&reg, GRACE_SECS).await;
                assert!(
                    out.status.success(),
                    "blob-gc failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                runs += 1;
            }
            runs
        })
    };
    let until = tokio::time::Instant::now() + GRACE_PUSHING;
    let clients: Vec<_> = (0..GRACE_CLIENTS)
        .map(|id| {
            tokio::spawn(grace_client(
                reg.clone(),
                id,
                pool.clone(),
                figures.clone(),
                until,
            ))
        })
        .collect();
    for c in clients {
        c.await.expect("client");
    }
    stop.store(true, Ordering::Relaxed);
    let runs = collector.await.expect("collector");
    let (checked, lost) = check_every_image(&reg).await;
    let (pushes, repushes, broken, deletes) = (
        figures.pushes.load(Ordering::Relaxed),
        figures.repushes_onto_orphans.load(Ordering::Relaxed),
        figures.broken.load(Ordering::Relaxed),
        figures.deletes.load(Ordering::Relaxed),
    );
    eprintln!(
        "gc stress at a {GRACE_SECS} s grace: {pushes} pushes, {repushes} re-pushes onto just-orphaned layers, \
         {deletes} deletes, {runs} collections, {broken} broken, {lost} lost (of {checked} blobs verified)"
    );
    assert!(runs >= 2, "the collector ran only {runs} time(s)");
    assert!(repushes > 0, "no push reused an orphaned layer");
    assert_eq!(broken, 0, "pushes broken by the collector");
    assert_eq!(lost, 0, "blobs of stored manifests lost");
}

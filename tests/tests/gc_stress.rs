//! Online garbage collection under load: clients push images that share layers, re-tag them
//! and delete manifests while `jobs blob-gc` runs in a loop with no grace period. Afterwards
//! every remaining manifest pulls with digest-correct blobs, and one more collection leaves
//! no unreferenced blob in metadata or in storage.

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
        .env("GC_GRACE_SECS", "0")
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

/// Pulls every tagged manifest of every repository and checks each blob's digest.
async fn check_every_image(reg: &Registry) -> usize {
    let catalog: serde_json::Value = reg
        .client
        .get(reg.url("/v2/_catalog"))
        .send()
        .await
        .expect("catalog")
        .json()
        .await
        .expect("json");
    let mut checked = 0;
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
                assert_eq!(blob.status(), 200, "{repo}:{tag} lost {digest}");
                let bytes = blob.bytes().await.expect("bytes");
                assert_eq!(
                    sha256_digest(&bytes),
                    digest,
                    "{repo}:{tag}: {digest} corrupt"
                );
                checked += 1;
            }
        }
    }
    checked
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

    let checked = check_every_image(&reg).await;
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
        checked,
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

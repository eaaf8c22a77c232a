//! Each job's edge cases, in-process, on both engines (SQLite and a real PostgreSQL) with the
//! real filesystem storage: an empty database, what is kept and what goes, a partial failure
//! midway, and a rerun after a crash left debris behind.

use std::sync::Arc;

use registry_common::config::DbConfig;
use registry_common::metadata::{ManifestPut, Metadata, NewManifest};
use registry_common::oci::{Digest, ParsedManifest, RepositoryName, Tag, UploadId};
use registry_common::storage::{BlobKey, FsStorage, Storage, UploadPartKey};
use registry_jobs::{Job, JobContext, JobError, JobReport, JobsConfig};
use registry_tests::TestDatabase;
use sqlx::Executor;

/// One engine's database and a storage directory, alive for the test.
struct Setup {
    engine: &'static str,
    url: String,
    ctx: JobContext,
    _dir: tempfile::TempDir,
    _db: Option<TestDatabase>,
}

fn db_config() -> DbConfig {
    DbConfig {
        database_url: None,
        db_max_connections: 4,
        db_min_connections: 0,
        db_acquire_timeout_secs: 30,
        db_idle_timeout_secs: 60,
        db_migrate_on_start: true,
    }
}

fn zero_grace() -> JobsConfig {
    JobsConfig {
        gc_grace_secs: 0,
        upload_max_age_secs: 0,
        job_batch_size: 2, // small batches, so that paging is exercised
        jobs_interval_secs: 0,
    }
}

async fn setups(config: JobsConfig) -> Vec<Setup> {
    let mut out = Vec::new();
    for engine in ["sqlite", "postgres"] {
        let dir = tempfile::tempdir().expect("temp dir");
        let (url, db) = match engine {
            "sqlite" => (
                format!("sqlite://{}?mode=rwc", dir.path().join("meta.db").display()),
                None,
            ),
            _ => {
                let db = TestDatabase::create().await;
                (db.url().to_owned(), Some(db))
            }
        };
        let metadata = Metadata::connect(&url, &db_config())
            .await
            .expect("open metadata");
        let storage: Arc<dyn Storage> = Arc::new(FsStorage::new(dir.path()));
        out.push(Setup {
            engine,
            url,
            ctx: JobContext {
                metadata,
                storage,
                config: config.clone(),
                upstreams: Vec::new(),
                deliverer: None,
            },
            _dir: dir,
            _db: db,
        });
    }
    out
}

fn repo(name: &str) -> RepositoryName {
    RepositoryName::parse(name).expect("name")
}

async fn run(setup: &Setup, job: Job) -> Result<Vec<JobReport>, JobError> {
    registry_jobs::run(job, &setup.ctx).await
}

async fn changed(setup: &Setup, job: Job) -> u64 {
    let reports = run(setup, job)
        .await
        .unwrap_or_else(|e| panic!("{}: {job:?}: {e}", setup.engine));
    reports.iter().map(|r| r.changed).sum()
}

/// Stores a blob's bytes and records it in the repository, as a finished upload does.
async fn push_blob(setup: &Setup, name: &RepositoryName, bytes: &[u8]) -> Digest {
    let digest = Digest::sha256_of(bytes);
    let part = UploadPartKey {
        upload: UploadId::new(),
        part: "0".into(),
    };
    let mut body = futures_util::stream::iter(vec![Ok(bytes::Bytes::copy_from_slice(bytes))]);
    setup
        .ctx
        .storage
        .put_part(&part, &mut body)
        .await
        .expect("put part");
    setup
        .ctx
        .storage
        .assemble(std::slice::from_ref(&part), &BlobKey(digest.clone()))
        .await
        .expect("assemble");
    setup
        .ctx
        .storage
        .delete_parts(&[part])
        .await
        .expect("delete part");
    let mut lock = setup.ctx.metadata.lock_blob(&digest).await.expect("lock");
    lock.record(name, bytes.len() as u64).await.expect("record");
    lock.commit().await.expect("commit");
    digest
}

fn manifest_json(config: &Digest, config_size: usize) -> Vec<u8> {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": config_size},
        "layers": [],
    })
    .to_string()
    .into_bytes()
}

async fn push_manifest(setup: &Setup, name: &RepositoryName, payload: &[u8], tag: &str) {
    let parsed = ParsedManifest::parse(None, payload).expect("manifest");
    let digest = Digest::sha256_of(payload);
    let new = NewManifest {
        digest: &digest,
        media_type: parsed.kind.media_type(),
        payload,
        parsed: &parsed,
    };
    let tag = Tag::parse(tag).expect("tag");
    let put = setup
        .ctx
        .metadata
        .put_manifest(name, new, Some(&tag), &[])
        .await
        .expect("put");
    assert_eq!(put, ManifestPut::Stored);
}

async fn blob_on_disk(setup: &Setup, digest: &Digest) -> bool {
    setup
        .ctx
        .storage
        .stat(&BlobKey(digest.clone()))
        .await
        .expect("stat")
        .is_some()
}

async fn execute(setup: &Setup, sql: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&setup.url)
        .await
        .expect("raw connect");
    pool.execute(sqlx::AssertSqlSafe(sql.to_owned()))
        .await
        .expect("raw sql");
    pool.close().await;
}

#[tokio::test]
async fn every_job_succeeds_on_an_empty_database() {
    for setup in setups(zero_grace()).await {
        let reports = run(&setup, Job::RunAll).await.expect("run-all");
        let names: Vec<_> = reports.iter().map(|r| r.job).collect();
        assert_eq!(
            names,
            [
                "migrate",
                "index-manifests",
                "cache-evict",
                "blob-gc",
                "upload-cleanup",
                "project-storage",
                "deliver-events"
            ]
        );
        assert!(
            reports.iter().all(|r| r.changed == 0 && r.failures == 0),
            "{}",
            setup.engine
        );
    }
}

#[tokio::test]
async fn blob_gc_removes_only_what_no_manifest_references() {
    for setup in setups(zero_grace()).await {
        let name = repo("p/app");
        let config = push_blob(&setup, &name, b"{\"config\":1}").await;
        push_manifest(&setup, &name, &manifest_json(&config, 12), "v1").await;
        let mut loose = Vec::new();
        for bytes in [&b"loose one"[..], b"loose two", b"loose three"] {
            loose.push(push_blob(&setup, &name, bytes).await);
        }
        // A blob linked in a second repository only: still unreferenced there.
        let shared = push_blob(&setup, &repo("q/other"), b"loose one").await;
        assert_eq!(shared, loose[0]);

        let reports = run(&setup, Job::BlobGc).await.expect("gc");
        // 3 links in p/app + 1 in q/other, then 3 blob rows and objects.
        assert_eq!(reports[0].changed, 4 + 3, "{}", setup.engine);
        assert_eq!(reports[0].bytes, (9 + 9 + 11) as u64, "{}", setup.engine);
        for digest in &loose {
            assert!(
                !blob_on_disk(&setup, digest).await,
                "{}: {digest} still on disk",
                setup.engine
            );
            assert!(
                setup
                    .ctx
                    .metadata
                    .linked_blob_size(&name, digest)
                    .await
                    .expect("q")
                    .is_none()
            );
        }
        assert!(
            blob_on_disk(&setup, &config).await,
            "{}: referenced blob deleted",
            setup.engine
        );
        assert_eq!(
            setup
                .ctx
                .metadata
                .linked_blob_size(&name, &config)
                .await
                .expect("q"),
            Some(12)
        );
        // Idempotent: a second run finds nothing.
        assert_eq!(changed(&setup, Job::BlobGc).await, 0, "{}", setup.engine);
    }
}

#[tokio::test]
async fn the_grace_period_keeps_young_blobs() {
    let config = JobsConfig {
        gc_grace_secs: 3600,
        upload_max_age_secs: 3600,
        ..zero_grace()
    };
    for setup in setups(config).await {
        let digest = push_blob(&setup, &repo("p/young"), b"just pushed").await;
        assert_eq!(changed(&setup, Job::BlobGc).await, 0, "{}", setup.engine);
        assert!(blob_on_disk(&setup, &digest).await);
        let id = UploadId::new();
        setup
            .ctx
            .metadata
            .create_upload(&repo("p/young"), &id, b"s")
            .await
            .expect("session");
        assert_eq!(
            changed(&setup, Job::UploadCleanup).await,
            0,
            "{}",
            setup.engine
        );
        assert!(setup.ctx.metadata.upload_exists(&id).await.expect("q"));
    }
}

#[tokio::test]
async fn a_rerun_after_a_crash_removes_the_debris() {
    for setup in setups(zero_grace()).await {
        // An upload that wrote its object but crashed before recording the row.
        let orphan = Digest::sha256_of(b"crashed finalisation");
        let part = UploadPartKey {
            upload: UploadId::new(),
            part: "0".into(),
        };
        let mut body = futures_util::stream::iter(vec![Ok(bytes::Bytes::from_static(
            b"crashed finalisation",
        ))]);
        setup
            .ctx
            .storage
            .put_part(&part, &mut body)
            .await
            .expect("part");
        setup
            .ctx
            .storage
            .assemble(std::slice::from_ref(&part), &BlobKey(orphan.clone()))
            .await
            .expect("assemble");
        // ... and left its part behind with no session row.
        assert!(
            !setup
                .ctx
                .metadata
                .upload_exists(&part.upload)
                .await
                .expect("q")
        );

        let reports = run(&setup, Job::RunAll).await.expect("run-all");
        let by_job = |job: &str| {
            reports
                .iter()
                .find(|r| r.job == job)
                .expect("report")
                .changed
        };
        assert_eq!(by_job("blob-gc"), 1, "{}", setup.engine);
        assert_eq!(by_job("upload-cleanup"), 1, "{}", setup.engine);
        assert!(!blob_on_disk(&setup, &orphan).await, "{}", setup.engine);
        assert!(
            setup
                .ctx
                .storage
                .list_uploads()
                .await
                .expect("list")
                .iter()
                .all(|u| u.parts.is_empty())
        );
        let again = run(&setup, Job::RunAll).await.expect("rerun");
        assert!(
            again.iter().all(|r| r.changed == 0 && r.failures == 0),
            "{}: {again:?}",
            setup.engine
        );
    }
}

#[tokio::test]
async fn upload_cleanup_removes_abandoned_sessions_and_their_parts() {
    for setup in setups(zero_grace()).await {
        let name = repo("p/up");
        let id = UploadId::new();
        setup
            .ctx
            .metadata
            .create_upload(&name, &id, b"s")
            .await
            .expect("session");
        let part = UploadPartKey {
            upload: id.clone(),
            part: "00000000000000000000-x".into(),
        };
        let mut body =
            futures_util::stream::iter(vec![Ok(bytes::Bytes::from_static(b"half an upload"))]);
        setup
            .ctx
            .storage
            .put_part(&part, &mut body)
            .await
            .expect("part");
        let record = registry_common::metadata::PartRecord {
            name: part.part.to_string(),
            size: 14,
        };
        assert!(
            setup
                .ctx
                .metadata
                .advance_upload(&id, 0, 14, b"h", &[record])
                .await
                .expect("advance")
        );

        let reports = run(&setup, Job::UploadCleanup).await.expect("cleanup");
        assert_eq!(reports[0].changed, 1, "{}", setup.engine);
        assert_eq!(reports[0].bytes, 14, "{}", setup.engine);
        assert!(!setup.ctx.metadata.upload_exists(&id).await.expect("q"));
        assert!(
            setup
                .ctx
                .storage
                .list_uploads()
                .await
                .expect("list")
                .is_empty(),
            "{}",
            setup.engine
        );
    }
}

#[tokio::test]
async fn index_manifests_fills_missing_references_and_reports_the_bad_ones() {
    for setup in setups(zero_grace()).await {
        let name = repo("p/imported");
        let good_config = push_blob(&setup, &name, b"good config").await;
        push_manifest(&setup, &name, &manifest_json(&good_config, 11), "good").await;
        let bad_config = Digest::sha256_of(b"never pushed");
        let bad = manifest_json(&bad_config, 12);
        push_blob(&setup, &name, b"never pushed").await;
        push_manifest(&setup, &name, &bad, "bad").await;
        // An import wrote manifests without their reference rows; one names a blob that the
        // repository no longer has.
        execute(&setup, "DELETE FROM manifest_blobs").await;
        execute(
            &setup,
            &format!("DELETE FROM repository_blobs WHERE digest = '{bad_config}'"),
        )
        .await;

        match run(&setup, Job::IndexManifests).await {
            Err(JobError::ItemsFailed { reports }) => {
                assert_eq!(
                    (reports[0].changed, reports[0].failures),
                    (1, 1),
                    "{}",
                    setup.engine
                );
            }
            other => panic!(
                "{}: expected a partial failure, got {other:?}",
                setup.engine
            ),
        }
        // The good manifest's config is protected again: GC keeps it.
        let _ = run(&setup, Job::BlobGc).await.expect("gc");
        assert!(blob_on_disk(&setup, &good_config).await, "{}", setup.engine);
        // run-all stops at the failing job.
        match run(&setup, Job::RunAll).await {
            Err(JobError::ItemsFailed { reports }) => {
                let names: Vec<_> = reports.iter().map(|r| r.job).collect();
                assert_eq!(names, ["migrate", "index-manifests"], "{}", setup.engine);
            }
            other => panic!(
                "{}: run-all should stop at index-manifests, got {other:?}",
                setup.engine
            ),
        }
    }
}

#[tokio::test]
async fn project_storage_counts_distinct_blobs_per_project() {
    for setup in setups(zero_grace()).await {
        push_blob(&setup, &repo("acme/web"), &[1u8; 100]).await;
        push_blob(&setup, &repo("acme/api"), &[1u8; 100]).await; // same blob, counted once
        push_blob(&setup, &repo("acme/api"), &[2u8; 50]).await;
        push_blob(&setup, &repo("acme"), &[3u8; 7]).await;
        push_blob(&setup, &repo("acmecorp/x"), &[4u8; 1000]).await; // another project
        assert_eq!(
            changed(&setup, Job::ProjectStorage).await,
            2,
            "{}",
            setup.engine
        );
        let (size, at) = setup
            .ctx
            .metadata
            .project_storage("acme")
            .await
            .expect("q")
            .expect("row");
        assert_eq!(size, 157, "{}", setup.engine);
        assert!(at > 0);
        let (other, _) = setup
            .ctx
            .metadata
            .project_storage("acmecorp")
            .await
            .expect("q")
            .expect("row");
        assert_eq!(other, 1000, "{}", setup.engine);
        assert!(
            setup
                .ctx
                .metadata
                .project_storage("nobody")
                .await
                .expect("q")
                .is_none()
        );
    }
}

fn hour_grace() -> JobsConfig {
    JobsConfig {
        gc_grace_secs: 3600,
        upload_max_age_secs: 3600,
        ..zero_grace()
    }
}

async fn linked(setup: &Setup, name: &RepositoryName, digest: &Digest) -> bool {
    setup
        .ctx
        .metadata
        .linked_blob_size(name, digest)
        .await
        .expect("linked blob")
        .is_some()
}

/// The grace period counts from the last time a client could have relied on a link, not from
/// its creation: a link created long ago that a client just read (while unreferenced), or
/// whose last manifest just went, is kept; one nobody used for the grace period goes.
#[tokio::test]
async fn the_grace_period_counts_from_a_links_last_use() {
    for setup in setups(hour_grace()).await {
        let e = setup.engine;
        let name = repo("p/old");
        let idle = push_blob(&setup, &name, b"idle layer").await;
        let read = push_blob(&setup, &name, b"read layer").await;
        let orphaned = push_blob(&setup, &name, b"orphaned config").await;
        let manifest = manifest_json(&orphaned, b"orphaned config".len());
        push_manifest(&setup, &name, &manifest, "v1").await;
        // Everything was pushed two hours ago.
        let old = registry_common::metadata::cutoff(std::time::Duration::from_secs(7200));
        execute(
            &setup,
            &format!("UPDATE repository_blobs SET created_at = {old}, used_at = {old}"),
        )
        .await;
        execute(&setup, &format!("UPDATE blobs SET created_at = {old}")).await;

        // A client HEADs the old unreferenced layer (about to name it in a manifest), and
        // another deletes the manifest that referenced the config.
        assert!(linked(&setup, &name, &read).await, "{e}");
        let deleted = setup
            .ctx
            .metadata
            .delete_manifest(&name, &Digest::sha256_of(&manifest), &[])
            .await
            .expect("delete manifest");
        assert_eq!(deleted, registry_common::metadata::Deletion::Removed, "{e}");

        assert_eq!(
            changed(&setup, Job::BlobGc).await,
            2,
            "{e}: the idle link and its blob"
        );
        assert!(!linked(&setup, &name, &idle).await, "{e}");
        assert!(!blob_on_disk(&setup, &idle).await, "{e}");
        assert!(linked(&setup, &name, &read).await, "{e}: just read");
        assert!(linked(&setup, &name, &orphaned).await, "{e}: just orphaned");
    }
}

/// A blob `DELETE` of a referenced link marks it: the manifest stays whole; the link goes
/// with the manifest, or at the next collection whatever the grace period.
#[tokio::test]
async fn a_marked_link_goes_with_its_manifest_or_at_the_next_collection() {
    for setup in setups(hour_grace()).await {
        let e = setup.engine;
        let name = repo("p/marked");
        let config = push_blob(&setup, &name, b"marked config").await;
        let manifest = manifest_json(&config, b"marked config".len());
        push_manifest(&setup, &name, &manifest, "v1").await;
        let meta = &setup.ctx.metadata;
        assert_eq!(
            meta.unlink_blob(&name, &config, &[]).await.expect("unlink"),
            registry_common::metadata::Deletion::Marked,
            "{e}"
        );
        assert_eq!(changed(&setup, Job::BlobGc).await, 0, "{e}: referenced");
        assert!(
            linked(&setup, &name, &config).await,
            "{e}: the manifest still pulls"
        );
        // The manifest's references vanish behind the registry's back (as if a manifest
        // delete's clean-up had failed): the collector removes the marked link at once.
        execute(&setup, "DELETE FROM manifest_blobs").await;
        assert_eq!(
            changed(&setup, Job::BlobGc).await,
            1,
            "{e}: the marked link"
        );
        assert!(!linked(&setup, &name, &config).await, "{e}");
    }
}

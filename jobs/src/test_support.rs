//! Fixtures of the unit tests: a job context per engine on a real filesystem storage in a
//! temporary directory, with SQLite always and PostgreSQL (a fresh database,
//! `registry_tests::TestDatabase`) when `TEST_DATABASE_URL` is set; and the writes a client
//! makes, through the metadata layer and the storage trait only.

use std::sync::Arc;

use registry_common::config::DbConfig;
use registry_common::metadata::{ManifestPut, Metadata, NewManifest};
use registry_common::oci::{Digest, ParsedManifest, RepositoryName, Tag, UploadId};
use registry_common::storage::{BlobKey, FsStorage, Storage, UploadPartKey};

use crate::{Job, JobContext, JobReport, JobsConfig};

/// One engine's context, with what keeps its database and directory alive.
pub(crate) struct Engine {
    pub name: &'static str,
    pub ctx: JobContext,
    _dir: tempfile::TempDir,
    _db: Option<registry_tests::TestDatabase>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
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

/// Grace periods and maximum ages of `secs`, in batches of `batch`.
pub(crate) fn config(secs: u64, batch: u32) -> JobsConfig {
    JobsConfig {
        gc_grace_secs: secs,
        upload_max_age_secs: secs,
        job_batch_size: batch,
        jobs_interval_secs: 0,
    }
}

/// Long enough that nothing a test writes is past it.
pub(crate) const HOUR: u64 = 3600;

/// A migrated, empty database and storage per engine available.
pub(crate) async fn engines(config: JobsConfig) -> Vec<Engine> {
    let mut out = Vec::new();
    let postgres = std::env::var_os("TEST_DATABASE_URL").is_some();
    for name in ["sqlite", "postgres"] {
        let dir = tempfile::tempdir().expect("temp dir");
        let (url, db) = match name {
            "sqlite" => (
                format!("sqlite://{}?mode=rwc", dir.path().join("meta.db").display()),
                None,
            ),
            _ if postgres => {
                let db = registry_tests::TestDatabase::create().await;
                (db.url().to_owned(), Some(db))
            }
            _ => continue,
        };
        let metadata = Metadata::connect(&url, &db_config())
            .await
            .expect("open metadata");
        let storage: Arc<dyn Storage> = Arc::new(FsStorage::new(dir.path()));
        out.push(Engine {
            name,
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

impl Engine {
    /// The same database and storage under other settings (a later run with another grace).
    pub fn with(&self, config: JobsConfig) -> JobContext {
        JobContext {
            config,
            ..self.ctx.clone()
        }
    }

    /// Stores bytes as a finished upload does: the object, then the row and the link.
    pub async fn push_blob(&self, name: &RepositoryName, bytes: &[u8]) -> Digest {
        let digest = self.put_object(bytes).await;
        let mut lock = self.ctx.metadata.lock_blob(&digest).await.expect("lock");
        lock.record(name, bytes.len() as u64).await.expect("record");
        lock.commit().await.expect("commit");
        digest
    }

    /// Writes a blob's object only (an upload that crashed before recording it).
    pub async fn put_object(&self, bytes: &[u8]) -> Digest {
        let digest = Digest::sha256_of(bytes);
        let part = self.put_part(UploadId::new(), "0", bytes).await;
        let storage = &self.ctx.storage;
        storage
            .assemble(std::slice::from_ref(&part), &BlobKey(digest.clone()))
            .await
            .expect("assemble");
        storage.delete_parts(&[part]).await.expect("delete part");
        digest
    }

    /// Writes one part of an upload to storage.
    pub async fn put_part(&self, upload: UploadId, part: &str, bytes: &[u8]) -> UploadPartKey {
        let key = UploadPartKey {
            upload,
            part: part.into(),
        };
        let mut body = futures_util::stream::iter(vec![Ok(bytes::Bytes::copy_from_slice(bytes))]);
        self.ctx
            .storage
            .put_part(&key, &mut body)
            .await
            .expect("put part");
        key
    }

    pub async fn on_disk(&self, digest: &Digest) -> bool {
        self.ctx
            .storage
            .stat(&BlobKey(digest.clone()))
            .await
            .expect("stat")
            .is_some()
    }

    pub async fn linked(&self, name: &RepositoryName, digest: &Digest) -> bool {
        self.ctx
            .metadata
            .linked_blob_size(name, digest)
            .await
            .expect("linked blob")
            .is_some()
    }

    /// Stores a manifest (tagged `tag`) with the reference rows of `references` rather than
    /// its own: `empty_index` ones make a manifest as an import leaves it, unindexed.
    pub async fn put_manifest_as(
        &self,
        name: &RepositoryName,
        payload: &[u8],
        references: &ParsedManifest,
        tag: &str,
    ) -> Digest {
        let digest = Digest::sha256_of(payload);
        let own = ParsedManifest::parse(None, payload).expect("manifest");
        let new = NewManifest {
            digest: &digest,
            media_type: own.kind.media_type(),
            payload,
            parsed: references,
        };
        let tag = Tag::parse(tag).expect("tag");
        let put = self
            .ctx
            .metadata
            .put_manifest(name, new, Some(&tag), &[])
            .await
            .expect("put manifest");
        assert_eq!(put, ManifestPut::Stored, "{}", self.name);
        digest
    }

    /// Stores a manifest and its references, as a push does.
    pub async fn put_manifest(&self, name: &RepositoryName, payload: &[u8], tag: &str) -> Digest {
        let parsed = ParsedManifest::parse(None, payload).expect("manifest");
        self.put_manifest_as(name, payload, &parsed, tag).await
    }
}

pub(crate) fn repo(name: &str) -> RepositoryName {
    RepositoryName::parse(name).expect("repository name")
}

/// An image manifest with `config` as its config and `layers` as its layers.
pub(crate) fn image(config: &Digest, config_size: usize, layers: &[(&Digest, usize)]) -> Vec<u8> {
    let layers: Vec<_> = layers
        .iter()
        .map(|(digest, size)| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": digest.to_string(),
                "size": size,
            })
        })
        .collect();
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": config_size},
        "layers": layers,
    })
    .to_string()
    .into_bytes()
}

/// An index that lists no manifest: it references nothing.
pub(crate) fn empty_index(note: &str) -> Vec<u8> {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [],
        "annotations": {"note": note},
    })
    .to_string()
    .into_bytes()
}

/// Runs one job and returns its report, per-item failures included (`crate::run` turns
/// those into an error).
pub(crate) async fn report(job: Job, ctx: &JobContext) -> JobReport {
    crate::run_one(job, ctx)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", job.name()))
}

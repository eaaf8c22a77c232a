//! Rows of the pull-through cache (migration `0006_cache.sql`).
//!
//! Cached content is ordinary content: a manifest fetched from an upstream is a row of
//! `manifests` with its tag, and a fetched blob a `blobs` row with a link, so every read path,
//! garbage collection and storage usage treat it like pushed content. Three things differ:
//! - a cached manifest may reference content not fetched yet (only what clients ask for is
//!   fetched): those references wait in `cache_pending_refs` and become `manifest_blobs` /
//!   `manifest_children` rows in the transaction that stores the content (the reference tables'
//!   foreign keys demand the content first);
//! - a tag fetched from an upstream records when it was last checked against it and the digest
//!   it named then (`cache_tag_checks`); a push that moves the tag makes it local;
//! - one instance at a time fetches a blob, holding a lease row (`cache_fetch_leases`).

use sqlx::{Any, Transaction};

use super::blob_lock::BlobLock;
use super::manifests::{LINKED_BLOB_SIZES, MANIFEST_SIZES, NewManifest, StoredManifest};
use super::{Metadata, MetadataError, from_db_size, now_millis, repositories};
use crate::oci::{Descriptor, Digest, RepositoryName, Tag};

/// A manifest by tag, with the tag's last check against its upstream (joined, one query).
const CACHED_MANIFEST_BY_TAG: &str = "SELECT m.digest, m.media_type, m.payload, \
             CAST(CASE WHEN c.digest = t.manifest_digest THEN c.checked_at ELSE -1 END AS BIGINT) \
             FROM tags t \
             JOIN repositories r ON r.id = t.repository_id \
             JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.manifest_digest \
             LEFT JOIN cache_tag_checks c ON c.repository_id = t.repository_id AND c.tag = t.name \
             WHERE r.name = $1 AND t.name = $2";

/// A manifest fetched from an upstream, to store.
#[derive(Debug)]
pub struct CachedManifest<'a> {
    pub manifest: NewManifest<'a>,
    /// The tag it was fetched by (pointed at it, and checked now).
    pub tag: Option<&'a Tag>,
    /// The upstream's name (`UPSTREAMS_FILE`).
    pub upstream: &'a str,
}

/// A manifest by tag and, when the tag came from an upstream and still names what it fetched,
/// when it was last checked there (unix milliseconds).
#[derive(Debug, Clone)]
pub struct TaggedManifest {
    pub manifest: StoredManifest,
    pub checked_at: Option<i64>,
}

/// A manifest a size cap may evict.
#[derive(Debug, Clone)]
pub struct EvictionCandidate {
    pub repository: String,
    pub digest: String,
    pub pulled_at: i64,
}

impl Metadata {
    /// A manifest by tag, with its upstream check (see [`TaggedManifest`]).
    pub async fn manifest_by_tag_checked(
        &self,
        name: &RepositoryName,
        tag: &Tag,
    ) -> Result<Option<TaggedManifest>, MetadataError> {
        let row: Option<(String, String, Vec<u8>, i64)> = sqlx::query_as(CACHED_MANIFEST_BY_TAG)
            .bind(name.as_str())
            .bind(tag.as_str())
            .fetch_optional(&self.read)
            .await
            .map_err(MetadataError::query("select cached manifest by tag"))?;
        row.map(|(digest, media_type, payload, checked_at)| {
            Ok(TaggedManifest {
                manifest: super::manifests::stored((digest, media_type, payload))?,
                checked_at: (checked_at >= 0).then_some(checked_at),
            })
        })
        .transpose()
    }

    /// Stores a manifest fetched from an upstream: the manifest row (kept when it is there),
    /// reference rows for the content already present and pending ones for the rest, the tag
    /// and its check, and the references of cached indexes that were waiting for it.
    pub async fn put_cached_manifest(
        &self,
        name: &RepositoryName,
        cached: CachedManifest<'_>,
    ) -> Result<(), MetadataError> {
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(MetadataError::query("begin cached manifest"))?;
        let repository_id = repositories::ensure_in(&mut tx, name).await?;
        store_cached(&mut tx, repository_id, &cached)
            .await
            .map_err(MetadataError::query("insert cached manifest"))?;
        tx.commit()
            .await
            .map_err(MetadataError::query("commit cached manifest"))
    }

    /// Records that the tag still names `digest` upstream.
    pub async fn tag_checked(
        &self,
        name: &RepositoryName,
        tag: &Tag,
        digest: &Digest,
    ) -> Result<(), MetadataError> {
        sqlx::query(
            "UPDATE cache_tag_checks SET checked_at = $1 WHERE tag = $2 AND digest = $3 \
             AND repository_id = (SELECT id FROM repositories WHERE name = $4)",
        )
        .bind(now_millis())
        .bind(tag.as_str())
        .bind(digest.to_string())
        .bind(name.as_str())
        .execute(&self.write)
        .await
        .map_err(MetadataError::query("update tag check"))?;
        Ok(())
    }

    /// Sets `pulled_at` of a cached manifest (callers refresh it coarsely).
    pub async fn cached_manifest_pulled(
        &self,
        name: &RepositoryName,
        digest: &Digest,
    ) -> Result<(), MetadataError> {
        sqlx::query(
            "UPDATE cached_manifests SET pulled_at = $1 WHERE digest = $2 \
             AND repository_id = (SELECT id FROM repositories WHERE name = $3)",
        )
        .bind(now_millis())
        .bind(digest.to_string())
        .bind(name.as_str())
        .execute(&self.write)
        .await
        .map_err(MetadataError::query("update cached manifest pull"))?;
        Ok(())
    }

    /// The size of a blob the registry holds, in any repository (`None`: not held).
    pub async fn held_blob_size(&self, digest: &Digest) -> Result<Option<u64>, MetadataError> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT size FROM blobs WHERE digest = $1")
            .bind(digest.to_string())
            .fetch_optional(&self.read)
            .await
            .map_err(MetadataError::query("select held blob"))?;
        Ok(row.map(|(size,)| from_db_size(size)))
    }

    /// Takes the fetch lease of a digest for `ttl_ms` when nobody holds a live one.
    pub async fn take_fetch_lease(
        &self,
        digest: &Digest,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<bool, MetadataError> {
        let now = now_millis();
        let done = sqlx::query(
            "INSERT INTO cache_fetch_leases (digest, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (digest) DO UPDATE SET holder = excluded.holder, \
             expires_at = excluded.expires_at WHERE cache_fetch_leases.expires_at < $4",
        )
        .bind(digest.to_string())
        .bind(holder)
        .bind(now + ttl_ms)
        .bind(now)
        .execute(&self.write)
        .await
        .map_err(MetadataError::query("take fetch lease"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Extends a lease its holder still holds; `false` when it was lost (expired and taken).
    pub async fn renew_fetch_lease(
        &self,
        digest: &Digest,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<bool, MetadataError> {
        let done = sqlx::query(
            "UPDATE cache_fetch_leases SET expires_at = $1 WHERE digest = $2 AND holder = $3",
        )
        .bind(now_millis() + ttl_ms)
        .bind(digest.to_string())
        .bind(holder)
        .execute(&self.write)
        .await
        .map_err(MetadataError::query("renew fetch lease"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives a lease up (the fetch ended, well or not).
    pub async fn release_fetch_lease(
        &self,
        digest: &Digest,
        holder: &str,
    ) -> Result<(), MetadataError> {
        sqlx::query("DELETE FROM cache_fetch_leases WHERE digest = $1 AND holder = $2")
            .bind(digest.to_string())
            .bind(holder)
            .execute(&self.write)
            .await
            .map_err(MetadataError::query("release fetch lease"))?;
        Ok(())
    }

    /// Whether a live lease on the digest is held by anyone.
    pub async fn fetch_lease_held(&self, digest: &Digest) -> Result<bool, MetadataError> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT expires_at FROM cache_fetch_leases WHERE digest = $1 AND expires_at >= $2",
        )
        .bind(digest.to_string())
        .bind(now_millis())
        .fetch_optional(&self.read)
        .await
        .map_err(MetadataError::query("select fetch lease"))?;
        Ok(row.is_some())
    }

    /// Bytes that manifests under a repository-name prefix hold: the distinct blobs they
    /// reference, and the manifests. (Links nothing references any more go with the next
    /// garbage collection, so they are not counted.)
    pub async fn bytes_under(&self, prefix: &str) -> Result<u64, MetadataError> {
        let pattern = format!("{}/%", like_escaped(prefix));
        let (blobs,): (i64,) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM blobs b WHERE EXISTS \
             (SELECT 1 FROM manifest_blobs mb JOIN repositories r ON r.id = mb.repository_id \
              WHERE mb.blob_digest = b.digest AND r.name LIKE $1 ESCAPE '\\')",
        )
        .bind(&pattern)
        .fetch_one(&self.read)
        .await
        .map_err(MetadataError::query("sum cached blobs"))?;
        let (manifests,): (i64,) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(m.size), 0) AS BIGINT) FROM manifests m \
             JOIN repositories r ON r.id = m.repository_id WHERE r.name LIKE $1 ESCAPE '\\'",
        )
        .bind(&pattern)
        .fetch_one(&self.read)
        .await
        .map_err(MetadataError::query("sum cached manifests"))?;
        Ok(from_db_size(blobs) + from_db_size(manifests))
    }

    /// The least recently pulled manifests of an upstream, oldest first; indexes before the
    /// manifests they list when pulled at the same time (children cannot go first).
    pub async fn least_recently_pulled(
        &self,
        upstream: &str,
        limit: u32,
    ) -> Result<Vec<EvictionCandidate>, MetadataError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT r.name, c.digest, c.pulled_at FROM cached_manifests c \
             JOIN repositories r ON r.id = c.repository_id WHERE c.upstream = $1 \
             ORDER BY c.pulled_at, (SELECT COUNT(*) FROM manifest_children mc \
                 WHERE mc.repository_id = c.repository_id AND mc.child_digest = c.digest), \
             r.name, c.digest LIMIT $2",
        )
        .bind(upstream)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(MetadataError::query("select eviction candidates"))?;
        Ok(rows
            .into_iter()
            .map(|(repository, digest, pulled_at)| EvictionCandidate {
                repository,
                digest,
                pulled_at,
            })
            .collect())
    }
}

impl BlobLock {
    /// Links a fetched (or already held) blob to the repository and turns the references of
    /// its cached manifests that waited for it into reference rows.
    pub async fn record_cached(
        &mut self,
        repository: &RepositoryName,
        size: u64,
    ) -> Result<(), MetadataError> {
        let repository_id = repositories::ensure_in(&mut self.tx, repository).await?;
        self.record_in(repository_id, size).await?;
        resolve_pending(&mut self.tx, repository_id, &self.digest, "blob")
            .await
            .map_err(MetadataError::query("resolve pending blob references"))
    }

    /// The size of the blob's row, when it has one.
    pub async fn held_size(&mut self) -> Result<Option<u64>, MetadataError> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT size FROM blobs WHERE digest = $1")
            .bind(&self.digest)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(MetadataError::query("select blob"))?;
        Ok(row.map(|(size,)| from_db_size(size)))
    }
}

async fn store_cached(
    tx: &mut Transaction<'static, Any>,
    repository_id: i64,
    cached: &CachedManifest<'_>,
) -> Result<(), sqlx::Error> {
    let manifest = &cached.manifest;
    let now = now_millis();
    let digest = manifest.digest.to_string();
    super::manifests::insert_manifest_row(tx, repository_id, manifest).await?;
    let linked =
        super::manifests::sizes_of(tx, LINKED_BLOB_SIZES, repository_id, &manifest.parsed.blobs)
            .await?;
    let (present, pending) = split(&manifest.parsed.blobs, |d| linked.contains_key(d));
    super::manifests::insert_pairs(
        tx,
        "manifest_blobs",
        "blob_digest",
        repository_id,
        &digest,
        &present,
    )
    .await?;
    insert_pending(tx, repository_id, &digest, &pending, "blob").await?;
    let children =
        super::manifests::sizes_of(tx, MANIFEST_SIZES, repository_id, &manifest.parsed.children)
            .await?;
    let (present, pending) = split(&manifest.parsed.children, |d| children.contains_key(d));
    super::manifests::insert_pairs(
        tx,
        "manifest_children",
        "child_digest",
        repository_id,
        &digest,
        &present,
    )
    .await?;
    insert_pending(tx, repository_id, &digest, &pending, "child").await?;
    resolve_pending(tx, repository_id, &digest, "child").await?;
    sqlx::query(
        "INSERT INTO cached_manifests (repository_id, digest, upstream, fetched_at, pulled_at) \
         VALUES ($1, $2, $3, $4, $4) ON CONFLICT (repository_id, digest) DO NOTHING",
    )
    .bind(repository_id)
    .bind(&digest)
    .bind(cached.upstream)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if let Some(tag) = cached.tag {
        super::manifests::set_tag(tx, repository_id, tag, &digest, now).await?;
        sqlx::query(
            "INSERT INTO cache_tag_checks (repository_id, tag, digest, checked_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (repository_id, tag) \
             DO UPDATE SET digest = excluded.digest, checked_at = excluded.checked_at",
        )
        .bind(repository_id)
        .bind(tag.as_str())
        .bind(&digest)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// The descriptors whose digest `present` admits, and the others.
fn split(
    descriptors: &[Descriptor],
    present: impl Fn(&str) -> bool,
) -> (Vec<Descriptor>, Vec<Descriptor>) {
    descriptors
        .iter()
        .cloned()
        .partition(|d| present(&d.digest.to_string()))
}

async fn insert_pending(
    tx: &mut Transaction<'static, Any>,
    repository_id: i64,
    manifest_digest: &str,
    descriptors: &[Descriptor],
    kind: &str,
) -> Result<(), sqlx::Error> {
    for descriptor in descriptors {
        sqlx::query(
            "INSERT INTO cache_pending_refs (repository_id, manifest_digest, digest, kind) \
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(repository_id)
        .bind(manifest_digest)
        .bind(descriptor.digest.to_string())
        .bind(kind)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Turns pending references to `digest` (now present) into reference rows.
async fn resolve_pending(
    tx: &mut Transaction<'static, Any>,
    repository_id: i64,
    digest: &str,
    kind: &str,
) -> Result<(), sqlx::Error> {
    let insert = match kind {
        "blob" => {
            "INSERT INTO manifest_blobs (repository_id, manifest_digest, blob_digest) \
             SELECT repository_id, manifest_digest, digest FROM cache_pending_refs \
             WHERE repository_id = $1 AND digest = $2 AND kind = 'blob' ON CONFLICT DO NOTHING"
        }
        _ => {
            "INSERT INTO manifest_children (repository_id, manifest_digest, child_digest) \
             SELECT repository_id, manifest_digest, digest FROM cache_pending_refs \
             WHERE repository_id = $1 AND digest = $2 AND kind = 'child' ON CONFLICT DO NOTHING"
        }
    };
    sqlx::query(insert)
        .bind(repository_id)
        .bind(digest)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "DELETE FROM cache_pending_refs WHERE repository_id = $1 AND digest = $2 AND kind = $3",
    )
    .bind(repository_id)
    .bind(digest)
    .bind(kind)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// `LIKE` pattern text matching `text` literally (`\` escapes).
fn like_escaped(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

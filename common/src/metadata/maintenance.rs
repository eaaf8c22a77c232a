//! Queries of the scheduled jobs: garbage collection candidates, stale uploads, storage per
//! project, manifests whose reference rows are missing. Every listing is keyset-paginated so
//! that a job works in bounded batches and always moves forward, even past items it fails on.

use sqlx::{Any, Transaction};

use super::uploads::PartRecord;
use super::{
    Metadata, MetadataError, from_db_size, is_foreign_key_violation, now_millis, to_db_size,
};
use crate::oci::{Digest, ParsedManifest, UploadId};

/// A repository's link to a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRef {
    pub repository_id: i64,
    pub digest: String,
}

/// An upload session not touched since `updated_at`.
#[derive(Debug, Clone)]
pub struct StaleUpload {
    pub id: String,
    pub updated_at: i64,
    pub parts: Vec<PartRecord>,
}

/// A stored manifest as the indexer reads it.
#[derive(Debug, Clone)]
pub struct ManifestRow {
    pub repository_id: i64,
    pub digest: String,
    pub media_type: String,
    pub payload: Vec<u8>,
}

/// What indexing one manifest did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Indexed {
    Written,
    /// A reference names a blob or manifest the repository does not have.
    MissingReference,
}

impl Metadata {
    /// Links that no manifest references, last used at or before `cutoff` or marked for
    /// removal by a blob `DELETE` (whatever their age: the client was answered `202`), after
    /// `after`.
    pub async fn unreferenced_links(
        &self,
        cutoff: i64,
        after: Option<&LinkRef>,
        limit: u32,
    ) -> Result<Vec<LinkRef>, MetadataError> {
        let (after_id, after_digest) =
            after.map_or((-1, ""), |l| (l.repository_id, l.digest.as_str()));
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT l.repository_id, l.digest FROM repository_blobs l \
             WHERE (l.used_at <= $1 OR l.unlink_requested_at IS NOT NULL) \
             AND (l.repository_id > $2 OR (l.repository_id = $2 AND l.digest > $3)) \
             AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb \
                 WHERE mb.repository_id = l.repository_id AND mb.blob_digest = l.digest) \
             ORDER BY l.repository_id, l.digest LIMIT $4",
        )
        .bind(cutoff)
        .bind(after_id)
        .bind(after_digest)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(MetadataError::query("list unreferenced links"))?;
        Ok(rows
            .into_iter()
            .map(|(repository_id, digest)| LinkRef {
                repository_id,
                digest,
            })
            .collect())
    }

    /// Deletes a link if it is still unreferenced and unused since `cutoff` (or marked); a
    /// manifest that references it meanwhile makes the foreign key refuse, which counts as
    /// "kept". A read or a manifest delete that refreshed `used_at` meanwhile keeps it too.
    pub async fn delete_link_if_unreferenced(
        &self,
        link: &LinkRef,
        cutoff: i64,
    ) -> Result<bool, MetadataError> {
        let result = sqlx::query(
            "DELETE FROM repository_blobs WHERE repository_id = $1 AND digest = $2 \
             AND (used_at <= $3 OR unlink_requested_at IS NOT NULL) \
             AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb \
                 WHERE mb.repository_id = $1 AND mb.blob_digest = $2)",
        )
        .bind(link.repository_id)
        .bind(&link.digest)
        .bind(cutoff)
        .execute(&self.write)
        .await;
        match result {
            Ok(done) => Ok(done.rows_affected() == 1),
            Err(e) if is_foreign_key_violation(&e) => Ok(false),
            Err(e) => Err(MetadataError::query("delete unreferenced link")(e)),
        }
    }

    /// Blobs created at or before `cutoff` that no repository links, after `after`, with sizes.
    pub async fn unlinked_blobs(
        &self,
        cutoff: i64,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(Digest, u64)>, MetadataError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT b.digest, b.size FROM blobs b WHERE b.created_at <= $1 AND b.digest > $2 \
             AND NOT EXISTS (SELECT 1 FROM repository_blobs l WHERE l.digest = b.digest) \
             ORDER BY b.digest LIMIT $3",
        )
        .bind(cutoff)
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(MetadataError::query("list unlinked blobs"))?;
        rows.into_iter()
            .map(|(digest, size)| {
                Digest::parse(&digest)
                    .map(|d| (d, from_db_size(size)))
                    .map_err(|_| MetadataError::Corrupt(format!("blob digest {digest}")))
            })
            .collect()
    }

    /// Upload sessions last touched at or before `cutoff`.
    pub async fn stale_uploads(
        &self,
        cutoff: i64,
        limit: u32,
    ) -> Result<Vec<StaleUpload>, MetadataError> {
        let rows: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT id, updated_at, parts FROM upload_sessions WHERE updated_at <= $1 \
             ORDER BY updated_at, id LIMIT $2",
        )
        .bind(cutoff)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(MetadataError::query("list stale uploads"))?;
        rows.into_iter()
            .map(|(id, updated_at, parts)| {
                let parts = serde_json::from_str(&parts)
                    .map_err(|e| MetadataError::Corrupt(format!("upload {id} parts: {e}")))?;
                Ok(StaleUpload {
                    id,
                    updated_at,
                    parts,
                })
            })
            .collect()
    }

    /// Deletes a stale session unless a request touched it since it was listed.
    pub async fn delete_stale_upload(&self, upload: &StaleUpload) -> Result<bool, MetadataError> {
        let done = sqlx::query("DELETE FROM upload_sessions WHERE id = $1 AND updated_at = $2")
            .bind(&upload.id)
            .bind(upload.updated_at)
            .execute(&self.write)
            .await
            .map_err(MetadataError::query("delete stale upload"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether an upload session exists (in any repository).
    pub async fn upload_exists(&self, id: &UploadId) -> Result<bool, MetadataError> {
        let row: Option<(String,)> = sqlx::query_as("SELECT id FROM upload_sessions WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await
            .map_err(MetadataError::query("select upload"))?;
        Ok(row.is_some())
    }

    /// Repository names after `after`, all of them (with or without manifests).
    pub async fn repository_names(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, MetadataError> {
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2")
                .bind(after.unwrap_or(""))
                .bind(i64::from(limit))
                .fetch_all(&self.read)
                .await
                .map_err(MetadataError::query("list repositories"))?;
        Ok(rows.into_iter().map(|(name,)| name).collect())
    }

    /// Bytes of the distinct blobs linked in a project's repositories.
    pub async fn project_size(&self, project: &str) -> Result<u64, MetadataError> {
        let prefix = format!("{project}/");
        let (size,): (i64,) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM blobs b WHERE EXISTS ( \
                 SELECT 1 FROM repository_blobs l JOIN repositories r ON r.id = l.repository_id \
                 WHERE l.digest = b.digest AND (r.name = $1 OR substr(r.name, 1, CAST($2 AS INTEGER)) = $3))",
        )
        .bind(project)
        .bind(i64::try_from(prefix.len()).unwrap_or(i64::MAX))
        .bind(&prefix)
        .fetch_one(&self.read)
        .await
        .map_err(MetadataError::query("sum project storage"))?;
        Ok(from_db_size(size))
    }

    /// Stores a project's size as of `at` (unix milliseconds).
    pub async fn store_project_storage(
        &self,
        project: &str,
        size: u64,
        at: i64,
    ) -> Result<(), MetadataError> {
        sqlx::query(
            "INSERT INTO project_storage (project, size, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (project) DO UPDATE SET size = excluded.size, updated_at = excluded.updated_at",
        )
        .bind(project)
        .bind(to_db_size(size))
        .bind(at)
        .execute(&self.write)
        .await
        .map_err(MetadataError::query("store project storage"))?;
        Ok(())
    }

    /// Forgets projects a storage run started at `run_started` did not see (no repository left).
    pub async fn forget_projects_before(&self, run_started: i64) -> Result<u64, MetadataError> {
        let done = sqlx::query("DELETE FROM project_storage WHERE updated_at < $1")
            .bind(run_started)
            .execute(&self.write)
            .await
            .map_err(MetadataError::query("delete old project storage"))?;
        Ok(done.rows_affected())
    }

    /// A project's stored size and when it was computed.
    pub async fn project_storage(
        &self,
        project: &str,
    ) -> Result<Option<(u64, i64)>, MetadataError> {
        let row: Option<(i64, i64)> =
            sqlx::query_as("SELECT size, updated_at FROM project_storage WHERE project = $1")
                .bind(project)
                .fetch_optional(&self.read)
                .await
                .map_err(MetadataError::query("select project storage"))?;
        Ok(row.map(|(size, at)| (from_db_size(size), at)))
    }

    /// Manifests without any reference row (a cached one whose content is all still upstream
    /// has pending ones instead), after `after` in (repository, digest) order.
    pub async fn manifests_without_references(
        &self,
        after: Option<(i64, &str)>,
        limit: u32,
    ) -> Result<Vec<ManifestRow>, MetadataError> {
        let (after_id, after_digest) = after.unwrap_or((-1, ""));
        let rows: Vec<(i64, String, String, Vec<u8>)> = sqlx::query_as(
            "SELECT m.repository_id, m.digest, m.media_type, m.payload FROM manifests m \
             WHERE (m.repository_id > $1 OR (m.repository_id = $1 AND m.digest > $2)) \
             AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb \
                 WHERE mb.repository_id = m.repository_id AND mb.manifest_digest = m.digest) \
             AND NOT EXISTS (SELECT 1 FROM manifest_children mc \
                 WHERE mc.repository_id = m.repository_id AND mc.manifest_digest = m.digest) \
             AND NOT EXISTS (SELECT 1 FROM cache_pending_refs p \
                 WHERE p.repository_id = m.repository_id AND p.manifest_digest = m.digest) \
             ORDER BY m.repository_id, m.digest LIMIT $3",
        )
        .bind(after_id)
        .bind(after_digest)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(MetadataError::query("list unindexed manifests"))?;
        Ok(rows
            .into_iter()
            .map(|(repository_id, digest, media_type, payload)| ManifestRow {
                repository_id,
                digest,
                media_type,
                payload,
            })
            .collect())
    }

    /// Writes a manifest's reference rows (and its referrers columns when empty).
    pub async fn index_manifest(
        &self,
        row: &ManifestRow,
        parsed: &ParsedManifest,
    ) -> Result<Indexed, MetadataError> {
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(MetadataError::query("begin index"))?;
        match write_references(&mut tx, row, parsed).await {
            Ok(()) => {}
            Err(e) if is_foreign_key_violation(&e) => return Ok(Indexed::MissingReference),
            Err(e) => return Err(MetadataError::query("write manifest references")(e)),
        }
        tx.commit()
            .await
            .map_err(MetadataError::query("commit index"))?;
        Ok(Indexed::Written)
    }
}

async fn write_references(
    tx: &mut Transaction<'static, Any>,
    row: &ManifestRow,
    parsed: &ParsedManifest,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE manifests SET artifact_type = COALESCE(artifact_type, $1), \
         subject_digest = COALESCE(subject_digest, $2), annotations = COALESCE(annotations, $3) \
         WHERE repository_id = $4 AND digest = $5",
    )
    .bind(parsed.artifact_type.clone())
    .bind(parsed.subject.as_ref().map(ToString::to_string))
    .bind(parsed.annotations.clone())
    .bind(row.repository_id)
    .bind(&row.digest)
    .execute(&mut **tx)
    .await?;
    super::manifests::insert_references(tx, row.repository_id, &row.digest, parsed).await?;
    Ok(())
}

/// The cutoff for "older than `grace`": now minus the grace period, in unix milliseconds.
pub fn cutoff(grace: std::time::Duration) -> i64 {
    now_millis() - i64::try_from(grace.as_millis()).unwrap_or(i64::MAX)
}

//! Queries of the management API: a project's repositories, a repository's tags and manifests
//! (keyset pages, so that page 1000 of a repository with 100k tags is one index range read),
//! a repository's size, and deleting a whole repository in bounded batches.

use super::uploads::PartRecord;
use super::{Metadata, MetadataError, NewEvent, events, from_db_size, is_foreign_key_violation};
use crate::oci::RepositoryName;

/// Repositories whose names sort between `$1` (exclusive) and `$2` (exclusive): a project's
/// are those between `<project>/` and `<project>0` (`0` is the byte after `/`).
pub(crate) const REPOSITORIES_PAGE: &str = "SELECT name, created_at FROM repositories \
             WHERE name > $1 AND name < $2 ORDER BY name LIMIT $3";

/// A page of a repository's tags with their manifests.
pub(crate) const TAG_ROWS_PAGE: &str = "SELECT name, manifest_digest, created_at, updated_at \
             FROM tags WHERE repository_id = $1 AND name > $2 ORDER BY name LIMIT $3";

/// A page of a repository's manifests, newest first, after the keyset ($2, $3). The
/// `created_at <= $2` bound is implied by the next one; it is there so that the index range
/// starts at the cursor instead of the newest row.
pub(crate) const MANIFESTS_PAGE: &str = "SELECT digest, media_type, size, artifact_type, created_at \
             FROM manifests WHERE repository_id = $1 AND created_at <= $2 \
             AND (created_at < $2 OR digest < $3) \
             ORDER BY created_at DESC, digest DESC LIMIT $4";

/// Bytes of the distinct blobs a repository's manifests reference.
pub(crate) const REPOSITORY_SIZE: &str = "SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM blobs b \
             WHERE b.digest IN (SELECT mb.blob_digest FROM manifest_blobs mb WHERE mb.repository_id = $1)";

/// A repository row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryRow {
    pub id: i64,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// A tag and the manifest it points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRow {
    pub name: String,
    pub digest: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A manifest as listed (without its payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestSummaryRow {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub created_at: i64,
}

/// An upload session of a repository being deleted, with the parts to remove from storage.
#[derive(Debug, Clone)]
pub struct UploadParts {
    pub id: String,
    pub parts: Vec<PartRecord>,
}

type ManifestTuple = (String, String, i64, Option<String>, i64);

impl Metadata {
    /// A repository's id and creation time.
    pub async fn repository_row(
        &self,
        name: &RepositoryName,
    ) -> Result<Option<RepositoryRow>, MetadataError> {
        let row: Option<(i64, i64)> =
            sqlx::query_as("SELECT id, created_at FROM repositories WHERE name = $1")
                .bind(name.as_str())
                .fetch_optional(&self.read)
                .await
                .map_err(MetadataError::query("select repository"))?;
        Ok(row.map(|(id, created_at)| RepositoryRow { id, created_at }))
    }

    /// Full names and creation times of repositories sorting after `after` and before
    /// `before`, at most `limit`.
    pub async fn repositories_between(
        &self,
        after: &str,
        before: &str,
        limit: u32,
    ) -> Result<Vec<(String, i64)>, MetadataError> {
        sqlx::query_as(REPOSITORIES_PAGE)
            .bind(after)
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(MetadataError::query("list project repositories"))
    }

    /// Tags of a repository after `after`, in byte order, with their manifests.
    pub async fn tag_rows(
        &self,
        repository_id: i64,
        after: &str,
        limit: u32,
    ) -> Result<Vec<TagRow>, MetadataError> {
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(TAG_ROWS_PAGE)
            .bind(repository_id)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(MetadataError::query("list tag rows"))?;
        Ok(rows
            .into_iter()
            .map(|(name, digest, created_at, updated_at)| TagRow {
                name,
                digest,
                created_at,
                updated_at,
            })
            .collect())
    }

    /// Manifests of a repository, newest first, after the keyset `(created_at, digest)`
    /// (`None`: from the newest).
    pub async fn manifest_rows(
        &self,
        repository_id: i64,
        after: Option<(i64, &str)>,
        limit: u32,
    ) -> Result<Vec<ManifestSummaryRow>, MetadataError> {
        let (created_at, digest) = after.unwrap_or((i64::MAX, ""));
        let rows: Vec<ManifestTuple> = sqlx::query_as(MANIFESTS_PAGE)
            .bind(repository_id)
            .bind(created_at)
            .bind(digest)
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(MetadataError::query("list manifests"))?;
        Ok(rows
            .into_iter()
            .map(
                |(digest, media_type, size, artifact_type, created_at)| ManifestSummaryRow {
                    digest,
                    media_type,
                    size: from_db_size(size),
                    artifact_type,
                    created_at,
                },
            )
            .collect())
    }

    /// Bytes of the distinct blobs the repository's manifests reference.
    pub async fn repository_size(&self, repository_id: i64) -> Result<u64, MetadataError> {
        let (size,): (i64,) = sqlx::query_as(REPOSITORY_SIZE)
            .bind(repository_id)
            .fetch_one(&self.read)
            .await
            .map_err(MetadataError::query("sum repository size"))?;
        Ok(from_db_size(size))
    }

    /// Deletes up to `limit` tags of a repository; returns how many went.
    pub async fn delete_tags_batch(
        &self,
        repository_id: i64,
        limit: u32,
    ) -> Result<u64, MetadataError> {
        let done = sqlx::query(
            "DELETE FROM tags WHERE repository_id = $1 AND name IN \
             (SELECT name FROM tags WHERE repository_id = $1 ORDER BY name LIMIT $2)",
        )
        .bind(repository_id)
        .bind(i64::from(limit))
        .execute(&self.write)
        .await
        .map_err(MetadataError::query("delete tags batch"))?;
        Ok(done.rows_affected())
    }

    /// Deletes up to `limit` manifests of a repository that no index of it lists (their
    /// reference rows and tags go with them); the children of the deleted indexes are
    /// deleted by later batches. Returns how many went.
    pub async fn delete_manifests_batch(
        &self,
        repository_id: i64,
        limit: u32,
    ) -> Result<u64, MetadataError> {
        let done = sqlx::query(
            "DELETE FROM manifests WHERE repository_id = $1 AND digest IN \
             (SELECT m.digest FROM manifests m WHERE m.repository_id = $1 AND NOT EXISTS \
                 (SELECT 1 FROM manifest_children mc \
                  WHERE mc.repository_id = $1 AND mc.child_digest = m.digest) \
              LIMIT $2)",
        )
        .bind(repository_id)
        .bind(i64::from(limit))
        .execute(&self.write)
        .await
        .map_err(MetadataError::query("delete manifests batch"))?;
        Ok(done.rows_affected())
    }

    /// Deletes up to `limit` blob links of a repository; returns how many went. `None` when
    /// a manifest (pushed meanwhile) still references one of them: the repository row's
    /// delete removes both.
    pub async fn delete_links_batch(
        &self,
        repository_id: i64,
        limit: u32,
    ) -> Result<Option<u64>, MetadataError> {
        let result = sqlx::query(
            "DELETE FROM repository_blobs WHERE repository_id = $1 AND digest IN \
             (SELECT digest FROM repository_blobs WHERE repository_id = $1 ORDER BY digest LIMIT $2)",
        )
        .bind(repository_id)
        .bind(i64::from(limit))
        .execute(&self.write)
        .await;
        match result {
            Ok(done) => Ok(Some(done.rows_affected())),
            Err(e) if is_foreign_key_violation(&e) => Ok(None),
            Err(e) => Err(MetadataError::query("delete links batch")(e)),
        }
    }

    /// Up to `limit` upload sessions of a repository, with their parts.
    pub async fn repository_uploads(
        &self,
        repository_id: i64,
        limit: u32,
    ) -> Result<Vec<UploadParts>, MetadataError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, parts FROM upload_sessions WHERE repository_id = $1 ORDER BY id LIMIT $2",
        )
        .bind(repository_id)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(MetadataError::query("list repository uploads"))?;
        rows.into_iter()
            .map(|(id, parts)| {
                let parts = serde_json::from_str(&parts)
                    .map_err(|e| MetadataError::Corrupt(format!("upload {id} parts: {e}")))?;
                Ok(UploadParts { id, parts })
            })
            .collect()
    }

    /// Deletes an upload session, wherever it stands.
    pub async fn delete_upload_row(&self, id: &str) -> Result<bool, MetadataError> {
        let done = sqlx::query("DELETE FROM upload_sessions WHERE id = $1")
            .bind(id)
            .execute(&self.write)
            .await
            .map_err(MetadataError::query("delete upload session"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes the repository row and, by cascade, whatever is still in it (with `events`,
    /// when it was there).
    pub async fn delete_repository_row(
        &self,
        repository_id: i64,
        events: &[NewEvent],
    ) -> Result<bool, MetadataError> {
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(MetadataError::query("begin repository delete"))?;
        // The events first: on PostgreSQL they lock the repository's row, which must still
        // be there.
        events::insert_in(&mut tx, self.engine, events).await?;
        let done = sqlx::query("DELETE FROM repositories WHERE id = $1")
            .bind(repository_id)
            .execute(&mut *tx)
            .await
            .map_err(MetadataError::query("delete repository"))?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        tx.commit()
            .await
            .map_err(MetadataError::query("commit repository delete"))?;
        Ok(true)
    }
}

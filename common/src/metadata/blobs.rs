//! Blob rows and repository links.

use super::{
    Metadata, MetadataError, from_db_size, is_foreign_key_violation, now_millis, repositories,
};
use crate::oci::{Digest, RepositoryName};

/// The size of a blob linked to a repository (every blob HEAD/GET).
pub(crate) const LINKED_BLOB: &str = "SELECT b.size FROM repository_blobs l \
             JOIN repositories r ON r.id = l.repository_id \
             JOIN blobs b ON b.digest = l.digest \
             WHERE r.name = $1 AND l.digest = $2";

/// What a delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    Removed,
    NotFound,
    /// Something else in the repository still references the row (a manifest references
    /// the blob; an index lists the manifest).
    InUse,
}

impl Metadata {
    /// The blob's size when it is linked to the repository; `None` otherwise.
    pub async fn linked_blob_size(
        &self,
        name: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>, MetadataError> {
        let row: Option<(i64,)> = sqlx::query_as(LINKED_BLOB)
            .bind(name.as_str())
            .bind(digest.to_string())
            .fetch_optional(&self.read)
            .await
            .map_err(MetadataError::query("select linked blob"))?;
        Ok(row.map(|(size,)| from_db_size(size)))
    }

    /// Links a blob linked in `from` to `target` too (cross-repository mount). Returns the
    /// blob's size when the target has the link afterwards.
    pub async fn mount_blob(
        &self,
        target: &RepositoryName,
        from: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>, MetadataError> {
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(MetadataError::query("begin mount"))?;
        let target_id = repositories::ensure_in(&mut tx, target).await?;
        sqlx::query(
            "INSERT INTO repository_blobs (repository_id, digest, created_at) \
             SELECT $1, l.digest, $2 FROM repository_blobs l \
             JOIN repositories r ON r.id = l.repository_id \
             WHERE r.name = $3 AND l.digest = $4 \
             ON CONFLICT (repository_id, digest) DO NOTHING",
        )
        .bind(target_id)
        .bind(now_millis())
        .bind(from.as_str())
        .bind(digest.to_string())
        .execute(&mut *tx)
        .await
        .map_err(MetadataError::query("insert mounted link"))?;
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT b.size FROM repository_blobs l JOIN blobs b ON b.digest = l.digest \
             WHERE l.repository_id = $1 AND l.digest = $2",
        )
        .bind(target_id)
        .bind(digest.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(MetadataError::query("select mounted link"))?;
        tx.commit()
            .await
            .map_err(MetadataError::query("commit mount"))?;
        Ok(row.map(|(size,)| from_db_size(size)))
    }

    /// Removes the repository's link to a blob. The bytes stay for garbage collection.
    pub async fn unlink_blob(
        &self,
        name: &RepositoryName,
        digest: &Digest,
    ) -> Result<Deletion, MetadataError> {
        let result = sqlx::query(
            "DELETE FROM repository_blobs WHERE digest = $1 \
             AND repository_id = (SELECT id FROM repositories WHERE name = $2)",
        )
        .bind(digest.to_string())
        .bind(name.as_str())
        .execute(&self.write)
        .await;
        match result {
            Ok(done) if done.rows_affected() > 0 => Ok(Deletion::Removed),
            Ok(_) => Ok(Deletion::NotFound),
            Err(e) if is_foreign_key_violation(&e) => Ok(Deletion::InUse),
            Err(e) => Err(MetadataError::query("delete blob link")(e)),
        }
    }
}

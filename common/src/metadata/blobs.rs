//! Blob rows and repository links.
//!
//! A link records when a client last could have relied on it (`used_at`: upload, mount, a
//! read while no manifest references it, the moment its last manifest went), which is where
//! the collector's grace period counts from. Reads refresh it only for links that no manifest
//! references, at most once per [`LINK_USE_REFRESH`]: a pull of an image writes nothing.
//!
//! `DELETE` of a blob that manifests of the repository still reference cannot remove the
//! link (their pulls need it), so it marks it (`unlink_requested_at`); the link goes with its
//! last manifest ([`Metadata::delete_manifest`]) or at the collector's next run.

use std::time::Duration;

use super::{
    Metadata, MetadataError, NewEvent, events, from_db_size, is_foreign_key_violation, now_millis,
    repositories,
};
use crate::oci::{Digest, RepositoryName};

/// How stale a link's `used_at` may get before a read refreshes it. The collector adds this
/// to its grace period, so a link is kept at least the grace period after its last use.
pub const LINK_USE_REFRESH: Duration = Duration::from_secs(10);

/// The size of a blob linked to the repository (every blob HEAD/GET), the link's repository
/// id, and whether the read must refresh the link's `used_at` (`$3`: the refresh cutoff). The
/// reference check runs only for links whose `used_at` is older than that (`CASE` evaluates
/// lazily), so reads of the layers of live images cost the same one index lookup as before.
pub(crate) const LINKED_BLOB: &str = "SELECT b.size, l.repository_id, \
             CAST(CASE WHEN l.used_at < $3 AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb \
                 WHERE mb.repository_id = l.repository_id AND mb.blob_digest = l.digest) \
             THEN 1 ELSE 0 END AS BIGINT) \
             FROM repository_blobs l \
             JOIN repositories r ON r.id = l.repository_id \
             JOIN blobs b ON b.digest = l.digest \
             WHERE r.name = $1 AND l.digest = $2";

const MARK_LINK: &str = "UPDATE repository_blobs SET unlink_requested_at = $1 WHERE digest = $2 \
     AND repository_id = (SELECT id FROM repositories WHERE name = $3)";

/// What a delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    Removed,
    NotFound,
    /// The row stays while something references it and goes with the last of those (a blob
    /// link that manifests of the repository still reference).
    Marked,
    /// Something else in the repository still references the row (a manifest references
    /// the blob; an index lists the manifest).
    InUse,
}

impl Metadata {
    /// The blob's size when it is linked to the repository; `None` otherwise.
    ///
    /// A link that no manifest references and that was not used for a while gets its
    /// `used_at` refreshed before the answer, by a statement that also tells whether the
    /// collector removed it meanwhile (then the answer is `None`, and the client uploads):
    /// a client never sees a link that the collector may remove within the grace period.
    pub async fn linked_blob_size(
        &self,
        name: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>, MetadataError> {
        let now = now_millis();
        let refresh_before = now - millis(LINK_USE_REFRESH);
        let row: Option<(i64, i64, i64)> = sqlx::query_as(LINKED_BLOB)
            .bind(name.as_str())
            .bind(digest.to_string())
            .bind(refresh_before)
            .fetch_optional(&self.read)
            .await
            .map_err(MetadataError::query("select linked blob"))?;
        let Some((size, repository_id, stale)) = row else {
            return Ok(None);
        };
        if stale == 1 {
            let done = sqlx::query(
                "UPDATE repository_blobs SET used_at = $1 \
                 WHERE repository_id = $2 AND digest = $3 AND used_at < $1",
            )
            .bind(now)
            .bind(repository_id)
            .bind(digest.to_string())
            .execute(&self.write)
            .await
            .map_err(MetadataError::query("refresh blob link use"))?;
            if done.rows_affected() == 0 && !self.link_exists(repository_id, digest).await? {
                return Ok(None);
            }
        }
        Ok(Some(from_db_size(size)))
    }

    async fn link_exists(
        &self,
        repository_id: i64,
        digest: &Digest,
    ) -> Result<bool, MetadataError> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT repository_id FROM repository_blobs WHERE repository_id = $1 AND digest = $2",
        )
        .bind(repository_id)
        .bind(digest.to_string())
        .fetch_optional(&self.write)
        .await
        .map_err(MetadataError::query("select blob link"))?;
        Ok(row.is_some())
    }

    /// Links a blob linked in `from` to `target` too (cross-repository mount). Returns the
    /// blob's size when the target has the link afterwards; `event` makes the events written
    /// with the mount, from that size.
    pub async fn mount_blob(
        &self,
        target: &RepositoryName,
        from: &RepositoryName,
        digest: &Digest,
        event: &(dyn Fn(u64) -> Vec<NewEvent> + Sync),
    ) -> Result<Option<u64>, MetadataError> {
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(MetadataError::query("begin mount"))?;
        let target_id = repositories::ensure_in(&mut tx, target).await?;
        // A mount is a use of the link (the client names the blob in a manifest next), and
        // asks for it anew: a pending unlink request no longer holds.
        sqlx::query(
            "INSERT INTO repository_blobs (repository_id, digest, created_at, used_at) \
             SELECT $1, l.digest, $2, $2 FROM repository_blobs l \
             JOIN repositories r ON r.id = l.repository_id \
             WHERE r.name = $3 AND l.digest = $4 \
             ON CONFLICT (repository_id, digest) DO UPDATE \
             SET used_at = excluded.used_at, unlink_requested_at = NULL",
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
        let size = row.map(|(size,)| from_db_size(size));
        if let Some(size) = size {
            events::insert_in(&mut tx, self.engine, &event(size)).await?;
        }
        tx.commit()
            .await
            .map_err(MetadataError::query("commit mount"))?;
        Ok(size)
    }

    /// Removes the repository's link to a blob (its bytes go with garbage collection) when no
    /// manifest of the repository references it; otherwise marks it, and it goes with its
    /// last manifest ([`Deletion::Marked`]).
    ///
    /// One transaction, which takes the link's row lock first (the mark), then deletes the
    /// link if unreferenced. A manifest delete locks the links of its manifest the same way
    /// before its own clean-up, so whichever runs second sees what the first did: a marked
    /// link is never left behind with no manifest referencing it.
    pub async fn unlink_blob(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        events: &[NewEvent],
    ) -> Result<Deletion, MetadataError> {
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(MetadataError::query("begin blob unlink"))?;
        let marked = sqlx::query(MARK_LINK)
            .bind(now_millis())
            .bind(digest.to_string())
            .bind(name.as_str())
            .execute(&mut *tx)
            .await
            .map_err(MetadataError::query("mark blob link"))?;
        if marked.rows_affected() == 0 {
            return Ok(Deletion::NotFound);
        }
        let result = sqlx::query(
            "DELETE FROM repository_blobs WHERE digest = $1 \
             AND repository_id = (SELECT id FROM repositories WHERE name = $2) \
             AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb \
                 WHERE mb.repository_id = repository_blobs.repository_id \
                 AND mb.blob_digest = repository_blobs.digest)",
        )
        .bind(digest.to_string())
        .bind(name.as_str())
        .execute(&mut *tx)
        .await;
        let deletion = match result {
            Ok(done) if done.rows_affected() > 0 => Deletion::Removed,
            Ok(_) => Deletion::Marked,
            // A manifest that references the link committed meanwhile (PostgreSQL rechecks
            // referencing rows at delete time). The error ended the transaction, mark
            // included: mark again on its own (if that manifest goes before the mark
            // commits, the collector removes the marked link).
            Err(e) if is_foreign_key_violation(&e) => {
                drop(tx);
                return self.mark_link(name, digest, events).await;
            }
            Err(e) => return Err(MetadataError::query("delete blob link")(e)),
        };
        events::insert_in(&mut tx, self.engine, events).await?;
        tx.commit()
            .await
            .map_err(MetadataError::query("commit blob unlink"))?;
        Ok(deletion)
    }

    async fn mark_link(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        events: &[NewEvent],
    ) -> Result<Deletion, MetadataError> {
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(MetadataError::query("begin blob mark"))?;
        let marked = sqlx::query(MARK_LINK)
            .bind(now_millis())
            .bind(digest.to_string())
            .bind(name.as_str())
            .execute(&mut *tx)
            .await
            .map_err(MetadataError::query("mark blob link"))?;
        if marked.rows_affected() == 0 {
            return Ok(Deletion::NotFound);
        }
        events::insert_in(&mut tx, self.engine, events).await?;
        tx.commit()
            .await
            .map_err(MetadataError::query("commit blob mark"))?;
        Ok(Deletion::Marked)
    }
}

pub(crate) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

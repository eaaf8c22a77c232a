//! The per-digest lock that makes a blob's row and its storage object change together.
//!
//! Recording a blob (end of an upload) and deleting one (garbage collection) both run inside
//! a transaction that first takes the digest's lock: a PostgreSQL transaction-scoped advisory
//! lock, or on SQLite the database's write lock (a write statement as the transaction's
//! first). Whoever holds it checks the storage object and the row together, so a collector
//! never deletes bytes that a finishing upload is about to record, and an upload never
//! records a row for bytes a collector just deleted (it sees them missing and writes them
//! again from its parts).

use sqlx::{Any, Transaction};

use super::{
    Engine, Metadata, MetadataError, NewEvent, events, from_db_size, is_foreign_key_violation,
    now_millis, repositories, to_db_size,
};
use crate::oci::{Digest, RepositoryName, UploadId};

/// A transaction holding one digest's lock until it commits or is dropped.
#[derive(Debug)]
pub struct BlobLock {
    pub(super) tx: Transaction<'static, Any>,
    pub(super) digest: String,
    pub(super) engine: Engine,
}

impl Metadata {
    /// Begins a transaction holding the digest's lock (waiting for any other holder).
    pub async fn lock_blob(&self, digest: &Digest) -> Result<BlobLock, MetadataError> {
        let digest = digest.to_string();
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(MetadataError::query("begin blob lock"))?;
        let lock = match self.engine {
            Engine::Postgres => {
                "SELECT count(*) FROM (SELECT pg_advisory_xact_lock(hashtextextended($1, 0))) AS locked"
            }
            // Any write takes SQLite's database-wide write lock, even one that changes nothing.
            Engine::Sqlite => "UPDATE blobs SET size = size WHERE digest = $1",
        };
        sqlx::query(lock)
            .bind(&digest)
            .execute(&mut *tx)
            .await
            .map_err(MetadataError::query("take blob lock"))?;
        Ok(BlobLock {
            tx,
            digest,
            engine: self.engine,
        })
    }
}

impl BlobLock {
    /// Closes an upload session if it is still at `at_offset`.
    pub async fn close_session(
        &mut self,
        id: &UploadId,
        at_offset: u64,
    ) -> Result<bool, MetadataError> {
        let done = sqlx::query("DELETE FROM upload_sessions WHERE id = $1 AND byte_offset = $2")
            .bind(id.to_string())
            .bind(to_db_size(at_offset))
            .execute(&mut *self.tx)
            .await
            .map_err(MetadataError::query("close upload session"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Records the blob (once) and links it to the repository.
    pub async fn record(
        &mut self,
        repository: &RepositoryName,
        size: u64,
    ) -> Result<(), MetadataError> {
        let repository_id = repositories::ensure_in(&mut self.tx, repository).await?;
        self.record_in(repository_id, size).await
    }

    /// Records the blob (once) and links it to the repository with this id.
    pub async fn record_in(&mut self, repository_id: i64, size: u64) -> Result<(), MetadataError> {
        let now = now_millis();
        sqlx::query(
            "INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(&self.digest)
        .bind(to_db_size(size))
        .bind(now)
        .execute(&mut *self.tx)
        .await
        .map_err(MetadataError::query("insert blob"))?;
        // An upload is a use of the link, and asks for it anew: a pending unlink request
        // (see `Metadata::unlink_blob`) no longer holds.
        sqlx::query(
            "INSERT INTO repository_blobs (repository_id, digest, created_at, used_at) \
             VALUES ($1, $2, $3, $3) \
             ON CONFLICT (repository_id, digest) DO UPDATE \
             SET used_at = excluded.used_at, unlink_requested_at = NULL",
        )
        .bind(repository_id)
        .bind(&self.digest)
        .bind(now)
        .execute(&mut *self.tx)
        .await
        .map_err(MetadataError::query("insert blob link"))?;
        Ok(())
    }

    /// Whether the blob has a row.
    pub async fn exists(&mut self) -> Result<bool, MetadataError> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT size FROM blobs WHERE digest = $1")
            .bind(&self.digest)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(MetadataError::query("select blob"))?;
        Ok(row.is_some())
    }

    /// The blob's size when it has a row.
    pub async fn size(&mut self) -> Result<Option<u64>, MetadataError> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT size FROM blobs WHERE digest = $1")
            .bind(&self.digest)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(MetadataError::query("select blob size"))?;
        Ok(row.map(|(size,)| from_db_size(size)))
    }

    /// Deletes the blob's row when no repository links it and it was created at or before
    /// `cutoff` (unix milliseconds). The link table's foreign key refuses the delete if a
    /// link appears meanwhile; that counts as "in use".
    pub async fn delete_if_unlinked(&mut self, cutoff: i64) -> Result<bool, MetadataError> {
        let result = sqlx::query(
            "DELETE FROM blobs WHERE digest = $1 AND created_at <= $2 \
             AND NOT EXISTS (SELECT 1 FROM repository_blobs l WHERE l.digest = $1)",
        )
        .bind(&self.digest)
        .bind(cutoff)
        .execute(&mut *self.tx)
        .await;
        match result {
            Ok(done) => Ok(done.rows_affected() == 1),
            Err(e) if is_foreign_key_violation(&e) => Ok(false),
            Err(e) => Err(MetadataError::query("delete blob")(e)),
        }
    }

    /// Writes events in the lock's transaction (they commit with it).
    pub async fn record_events(&mut self, events: &[NewEvent]) -> Result<(), MetadataError> {
        events::insert_in(&mut self.tx, self.engine, events).await
    }

    pub async fn commit(self) -> Result<(), MetadataError> {
        self.tx
            .commit()
            .await
            .map_err(MetadataError::query("commit blob lock"))
    }
}

//! Upload session rows. Every change is conditional on the offset the caller started from,
//! so of two racing requests on one session exactly one is applied.

use serde::{Deserialize, Serialize};

use super::{Metadata, MetadataError, from_db_size, now_millis, repositories, to_db_size};
use crate::oci::{RepositoryName, UploadId};

/// An upload session by id in its repository.
pub(crate) const UPLOAD_BY_ID: &str = "SELECT u.repository_id, u.byte_offset, u.hash_state, u.parts FROM upload_sessions u \
             JOIN repositories r ON r.id = u.repository_id WHERE u.id = $1 AND r.name = $2";

/// One stored part of an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub name: String,
    pub size: u64,
}

/// An upload session as stored.
#[derive(Debug, Clone)]
pub struct UploadRow {
    pub repository_id: i64,
    pub offset: u64,
    pub hash_state: Vec<u8>,
    pub parts: Vec<PartRecord>,
}

fn parts_json(parts: &[PartRecord]) -> String {
    serde_json::to_string(parts).unwrap_or_else(|_| "[]".to_owned())
}

impl Metadata {
    /// Opens a session in the repository (created when new). When the repository exists,
    /// as it does for every blob of a push but the first, this is one statement.
    pub async fn create_upload(
        &self,
        name: &RepositoryName,
        id: &UploadId,
        hash_state: &[u8],
    ) -> Result<(), MetadataError> {
        let now = now_millis();
        let insert = || {
            sqlx::query(
                "INSERT INTO upload_sessions \
                 (id, repository_id, byte_offset, hash_state, parts, created_at, updated_at) \
                 SELECT $1, id, 0, $3, '[]', $4, $4 FROM repositories WHERE name = $2",
            )
            .bind(id.to_string())
            .bind(name.as_str())
            .bind(hash_state.to_vec())
            .bind(now)
        };
        let inserted = insert()
            .execute(&self.write)
            .await
            .map_err(MetadataError::query("insert upload session"))?;
        if inserted.rows_affected() == 1 {
            return Ok(());
        }
        // A new repository: created first, in the same transaction.
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(MetadataError::query("begin upload"))?;
        repositories::ensure_in(&mut tx, name).await?;
        let inserted = insert()
            .execute(&mut *tx)
            .await
            .map_err(MetadataError::query("insert upload session"))?;
        if inserted.rows_affected() != 1 {
            // The repository was deleted in between (PostgreSQL, another instance).
            return Err(MetadataError::query("insert upload session")(
                sqlx::Error::RowNotFound,
            ));
        }
        tx.commit()
            .await
            .map_err(MetadataError::query("commit upload"))
    }

    /// The session, when it exists in this repository.
    pub async fn upload(
        &self,
        name: &RepositoryName,
        id: &UploadId,
    ) -> Result<Option<UploadRow>, MetadataError> {
        let row: Option<(i64, i64, Vec<u8>, String)> = sqlx::query_as(UPLOAD_BY_ID)
            .bind(id.to_string())
            .bind(name.as_str())
            .fetch_optional(&self.read)
            .await
            .map_err(MetadataError::query("select upload session"))?;
        row.map(|(repository_id, offset, hash_state, parts)| {
            let parts = serde_json::from_str(&parts)
                .map_err(|e| MetadataError::Corrupt(format!("upload {id} parts: {e}")))?;
            Ok(UploadRow {
                repository_id,
                offset: from_db_size(offset),
                hash_state,
                parts,
            })
        })
        .transpose()
    }

    /// Records a new part if the session is still at `from_offset`. Returns false when
    /// another request moved the session first (or it is gone).
    pub async fn advance_upload(
        &self,
        id: &UploadId,
        from_offset: u64,
        to_offset: u64,
        hash_state: &[u8],
        parts: &[PartRecord],
    ) -> Result<bool, MetadataError> {
        let done = sqlx::query(
            "UPDATE upload_sessions SET byte_offset = $1, hash_state = $2, parts = $3, updated_at = $4 \
             WHERE id = $5 AND byte_offset = $6",
        )
        .bind(to_db_size(to_offset))
        .bind(hash_state.to_vec())
        .bind(parts_json(parts))
        .bind(now_millis())
        .bind(id.to_string())
        .bind(to_db_size(from_offset))
        .execute(&self.write)
        .await
        .map_err(MetadataError::query("advance upload session"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes the session; returns its parts when it existed in this repository.
    pub async fn delete_upload(
        &self,
        name: &RepositoryName,
        id: &UploadId,
    ) -> Result<Option<Vec<PartRecord>>, MetadataError> {
        let row: Option<(String,)> = sqlx::query_as(
            "DELETE FROM upload_sessions WHERE id = $1 \
             AND repository_id = (SELECT id FROM repositories WHERE name = $2) RETURNING parts",
        )
        .bind(id.to_string())
        .bind(name.as_str())
        .fetch_optional(&self.write)
        .await
        .map_err(MetadataError::query("delete upload session"))?;
        row.map(|(parts,)| {
            serde_json::from_str(&parts)
                .map_err(|e| MetadataError::Corrupt(format!("upload {id} parts: {e}")))
        })
        .transpose()
    }
}

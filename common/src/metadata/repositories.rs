//! Repository rows and the catalog.

use sqlx::{Any, Transaction};

use super::{Metadata, MetadataError, now_millis};
use crate::oci::RepositoryName;

/// A page of tags.
pub(crate) const TAGS_PAGE: &str =
    "SELECT name FROM tags WHERE repository_id = $1 AND name > $2 ORDER BY name LIMIT $3";

/// A catalog page.
pub(crate) const CATALOG_PAGE: &str = "SELECT r.name FROM repositories r \
             WHERE r.name > $1 AND EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id) \
             ORDER BY r.name LIMIT $2";

/// Returns the repository's id, creating its row when it is new. The insert comes first so
/// that a transaction calling this holds the write lock from its first statement.
pub(crate) async fn ensure_in(
    tx: &mut Transaction<'static, Any>,
    name: &RepositoryName,
) -> Result<i64, MetadataError> {
    sqlx::query(
        "INSERT INTO repositories (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name.as_str())
    .bind(now_millis())
    .execute(&mut **tx)
    .await
    .map_err(MetadataError::query("insert repository"))?;
    let (id,): (i64,) = sqlx::query_as("SELECT id FROM repositories WHERE name = $1")
        .bind(name.as_str())
        .fetch_one(&mut **tx)
        .await
        .map_err(MetadataError::query("select repository id"))?;
    Ok(id)
}

impl Metadata {
    /// The id of an existing repository.
    pub async fn repository_id(&self, name: &RepositoryName) -> Result<Option<i64>, MetadataError> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT id FROM repositories WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&self.read)
            .await
            .map_err(MetadataError::query("select repository id"))?;
        Ok(row.map(|(id,)| id))
    }

    /// Names of repositories holding at least one manifest, in byte order, after `last`.
    pub async fn catalog(
        &self,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, MetadataError> {
        let rows: Vec<(String,)> = sqlx::query_as(CATALOG_PAGE)
            .bind(last.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(MetadataError::query("list catalog"))?;
        Ok(rows.into_iter().map(|(name,)| name).collect())
    }

    /// Tags of a repository, in byte order, after `last`.
    pub async fn list_tags(
        &self,
        repository_id: i64,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, MetadataError> {
        let rows: Vec<(String,)> = sqlx::query_as(TAGS_PAGE)
            .bind(repository_id)
            .bind(last.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(MetadataError::query("list tags"))?;
        Ok(rows.into_iter().map(|(name,)| name).collect())
    }
}

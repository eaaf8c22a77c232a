//! Repository rows and the catalog.

use sqlx::{Any, Transaction};

use super::{Metadata, MetadataError, now_millis};
use crate::oci::RepositoryName;

// Pages come back as one row: the names joined by commas (which neither a tag nor a
// repository name may hold). Row by row, a page of 1000 tags cost about 2 ms of CPU on SQLite
// (sqlx hands every row from its worker thread to the runtime through a channel); as one
// value it is a single hand-over. The subquery picks the page in order; the aggregate may
// join it in any order, so the page is sorted again here (byte order, as the "C" collation
// and SQLite's BINARY sort), which costs less than asking the database for an ordered
// aggregate (a second sort in a temporary b-tree).

/// A page of tags, comma-joined.
pub(crate) const TAGS_PAGE: &str = "SELECT string_agg(name, ',') FROM \
             (SELECT name FROM tags WHERE repository_id = $1 AND name > $2 ORDER BY name LIMIT $3) AS page";

/// A catalog page, comma-joined.
pub(crate) const CATALOG_PAGE: &str = "SELECT string_agg(name, ',') FROM \
             (SELECT r.name FROM repositories r \
             WHERE r.name > $1 AND EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id) \
             ORDER BY r.name LIMIT $2) AS page";

/// The names of a comma-joined page, in byte order (none when the page is empty).
fn split_page(joined: Option<String>) -> Vec<String> {
    let mut names: Vec<String> = joined
        .filter(|j| !j.is_empty())
        .map(|j| j.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    names.sort_unstable();
    names
}

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
        let (joined,): (Option<String>,) = sqlx::query_as(CATALOG_PAGE)
            .bind(last.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_one(&self.read)
            .await
            .map_err(MetadataError::query("list catalog"))?;
        Ok(split_page(joined))
    }

    /// Tags of a repository, in byte order, after `last`.
    pub async fn list_tags(
        &self,
        repository_id: i64,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, MetadataError> {
        let (joined,): (Option<String>,) = sqlx::query_as(TAGS_PAGE)
            .bind(repository_id)
            .bind(last.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_one(&self.read)
            .await
            .map_err(MetadataError::query("list tags"))?;
        Ok(split_page(joined))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_split_on_commas() {
        assert_eq!(
            split_page(Some("d-e,B,a,b.c".to_owned())),
            ["B", "a", "b.c", "d-e"]
        );
        assert!(split_page(None).is_empty());
        assert!(split_page(Some(String::new())).is_empty());
    }
}

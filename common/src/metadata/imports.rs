//! `jobs import`'s progress (`import_items`, migration 0008): one row per blob, manifest and
//! tag of a source once it is durable here, so a resumed run skips it.

use super::{Metadata, MetadataError, from_db_size, now_millis, to_db_size};
use crate::oci::{Digest, RepositoryName};

/// What an import row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportKind {
    Blob,
    Manifest,
    Tag,
}

impl ImportKind {
    fn as_str(self) -> &'static str {
        match self {
            ImportKind::Blob => "blob",
            ImportKind::Manifest => "manifest",
            ImportKind::Tag => "tag",
        }
    }
}

/// An item a run finished: the digest it was (a tag's target) and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedItem {
    pub digest: Digest,
    pub size: u64,
}

impl Metadata {
    /// The row of an item finished by an earlier run (or this one), if any.
    pub async fn imported_item(
        &self,
        source: &str,
        repository: &RepositoryName,
        kind: ImportKind,
        item: &str,
    ) -> Result<Option<ImportedItem>, MetadataError> {
        let row: Option<(String, i64)> = sqlx::query_as(
            "SELECT digest, size FROM import_items \
             WHERE source = $1 AND repository = $2 AND kind = $3 AND item = $4",
        )
        .bind(source)
        .bind(repository.as_str())
        .bind(kind.as_str())
        .bind(item)
        .fetch_optional(&self.read)
        .await
        .map_err(MetadataError::query("select import item"))?;
        row.map(|(digest, size)| {
            let digest = Digest::parse(&digest)
                .map_err(|e| MetadataError::Corrupt(format!("import item digest: {e}")))?;
            Ok(ImportedItem {
                digest,
                size: from_db_size(size),
            })
        })
        .transpose()
    }

    /// Records an item as finished (a tag moved at the source since is recorded anew).
    pub async fn record_imported_item(
        &self,
        source: &str,
        repository: &RepositoryName,
        kind: ImportKind,
        item: &str,
        done: &ImportedItem,
    ) -> Result<(), MetadataError> {
        sqlx::query(
            "INSERT INTO import_items (source, repository, kind, item, digest, size, done_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (source, repository, kind, item) DO UPDATE \
             SET digest = excluded.digest, size = excluded.size, done_at = excluded.done_at",
        )
        .bind(source)
        .bind(repository.as_str())
        .bind(kind.as_str())
        .bind(item)
        .bind(done.digest.to_string())
        .bind(to_db_size(done.size))
        .bind(now_millis())
        .execute(&self.write)
        .await
        .map_err(MetadataError::query("record import item"))?;
        Ok(())
    }
}

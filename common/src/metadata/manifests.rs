//! Manifest rows, their reference rows (written in the push's transaction), tags and
//! referrers.

use std::collections::HashMap;

use sqlx::{Any, AssertSqlSafe, Transaction};

use super::{
    Deletion, Engine, Metadata, MetadataError, from_db_size, is_foreign_key_violation, now_millis,
};
use super::{NewEvent, events, repositories, to_db_size};
use crate::oci::{Descriptor, Digest, MediaType, ParsedManifest, RepositoryName, Tag};

/// Manifests of a repository whose subject is a digest (optionally one artifact type).
pub(crate) const REFERRERS: &str = "SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations FROM manifests m \
             JOIN repositories r ON r.id = m.repository_id \
             WHERE r.name = $1 AND m.subject_digest = $2 AND ($3 = '' OR m.artifact_type = $3) \
             ORDER BY m.created_at, m.digest";

/// A manifest by repository name and digest.
pub(crate) const MANIFEST_BY_DIGEST: &str = "SELECT m.digest, m.media_type, m.payload FROM manifests m \
             JOIN repositories r ON r.id = m.repository_id WHERE r.name = $1 AND m.digest = $2";

/// A manifest by repository name and tag.
pub(crate) const MANIFEST_BY_TAG: &str = "SELECT m.digest, m.media_type, m.payload FROM tags t \
             JOIN repositories r ON r.id = t.repository_id \
             JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.manifest_digest \
             WHERE r.name = $1 AND t.name = $2";

/// A manifest to store.
#[derive(Debug)]
pub struct NewManifest<'a> {
    pub digest: &'a Digest,
    pub media_type: &'a str,
    pub payload: &'a [u8],
    pub parsed: &'a ParsedManifest,
}

/// The outcome of storing a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestPut {
    Stored,
    /// A config or layer is not linked to the repository.
    MissingBlob(Digest),
    /// An index lists a manifest the repository does not have.
    MissingChild(Digest),
    /// A descriptor's size differs from what is stored under its digest.
    SizeMismatch {
        digest: Digest,
        declared: u64,
        stored: u64,
    },
}

/// A stored manifest.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: MediaType,
    pub payload: Vec<u8>,
}

/// A manifest whose subject is the asked digest.
#[derive(Debug, Clone)]
pub struct ReferrerRow {
    pub digest: Digest,
    pub media_type: MediaType,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
}

type StoredRow = (String, String, Vec<u8>);
/// digest, media type, size, artifact type, annotations.
type ReferrerTuple = (String, String, i64, Option<String>, Option<String>);

impl Metadata {
    /// Stores a manifest with its references and, when given, points the tag at it, all in
    /// one transaction with its `events`. Nothing is written unless every reference is present.
    pub async fn put_manifest(
        &self,
        name: &RepositoryName,
        manifest: NewManifest<'_>,
        tag: Option<&Tag>,
        events: &[NewEvent],
    ) -> Result<ManifestPut, MetadataError> {
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(MetadataError::query("begin manifest"))?;
        let repository_id = repositories::ensure_in(&mut tx, name).await?;
        let blobs = sizes_of(
            &mut tx,
            LINKED_BLOB_SIZES,
            repository_id,
            &manifest.parsed.blobs,
        )
        .await
        .map_err(MetadataError::query("check manifest blobs"))?;
        for blob in &manifest.parsed.blobs {
            let stored = blobs.get(&blob.digest.to_string()).copied();
            if let Some(outcome) = check(blob, stored, ManifestPut::MissingBlob) {
                return Ok(outcome);
            }
        }
        let children = sizes_of(
            &mut tx,
            MANIFEST_SIZES,
            repository_id,
            &manifest.parsed.children,
        )
        .await
        .map_err(MetadataError::query("check index children"))?;
        for child in &manifest.parsed.children {
            let stored = children.get(&child.digest.to_string()).copied();
            if let Some(outcome) = check(child, stored, ManifestPut::MissingChild) {
                return Ok(outcome);
            }
        }
        match insert_manifest(&mut tx, repository_id, &manifest, tag).await {
            Ok(()) => {}
            // A reference vanished between the check and the insert (another instance).
            Err(e) if is_foreign_key_violation(&e) => {
                let first = manifest.parsed.blobs.first().map(|b| b.digest.clone());
                return Ok(ManifestPut::MissingBlob(
                    first.unwrap_or_else(|| manifest.digest.clone()),
                ));
            }
            Err(e) => return Err(MetadataError::query("insert manifest")(e)),
        }
        events::insert_in(&mut tx, self.engine, events).await?;
        tx.commit()
            .await
            .map_err(MetadataError::query("commit manifest"))?;
        Ok(ManifestPut::Stored)
    }

    /// A manifest by tag.
    pub async fn manifest_by_tag(
        &self,
        name: &RepositoryName,
        tag: &Tag,
    ) -> Result<Option<StoredManifest>, MetadataError> {
        let row: Option<StoredRow> = sqlx::query_as(MANIFEST_BY_TAG)
            .bind(name.as_str())
            .bind(tag.as_str())
            .fetch_optional(&self.read)
            .await
            .map_err(MetadataError::query("select manifest by tag"))?;
        row.map(stored).transpose()
    }

    /// A manifest by digest.
    pub async fn manifest_by_digest(
        &self,
        name: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<StoredManifest>, MetadataError> {
        let row: Option<StoredRow> = sqlx::query_as(MANIFEST_BY_DIGEST)
            .bind(name.as_str())
            .bind(digest.to_string())
            .fetch_optional(&self.read)
            .await
            .map_err(MetadataError::query("select manifest by digest"))?;
        row.map(stored).transpose()
    }

    /// Deletes a manifest, its tags and its reference rows (with `events`, when it was there).
    ///
    /// The links of its blobs are locked first and their `used_at` set (a link that no
    /// manifest references any more is kept a grace period from now: a client may have
    /// just seen it). After the commit, links of the repository that a blob `DELETE` marked
    /// and that nothing references any more go; the lock makes a concurrent blob `DELETE`
    /// either see this manifest gone or be seen by this clean-up (see
    /// `Metadata::unlink_blob`).
    pub async fn delete_manifest(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        events: &[NewEvent],
    ) -> Result<Deletion, MetadataError> {
        let Some(repository_id) = self.repository_id(name).await? else {
            return Ok(Deletion::NotFound);
        };
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(MetadataError::query("begin manifest delete"))?;
        if self.engine == Engine::Postgres {
            // In digest order, so that two deletes of manifests sharing layers cannot
            // deadlock. (SQLite's write lock, taken by the next statement, serializes them.)
            sqlx::query(
                "SELECT l.digest FROM repository_blobs l WHERE l.repository_id = $1 \
                 AND l.digest IN (SELECT mb.blob_digest FROM manifest_blobs mb \
                     WHERE mb.repository_id = $1 AND mb.manifest_digest = $2) \
                 ORDER BY l.digest FOR NO KEY UPDATE",
            )
            .bind(repository_id)
            .bind(digest.to_string())
            .fetch_all(&mut *tx)
            .await
            .map_err(MetadataError::query("lock manifest blob links"))?;
        }
        sqlx::query(
            "UPDATE repository_blobs SET used_at = $1 WHERE repository_id = $2 \
             AND digest IN (SELECT mb.blob_digest FROM manifest_blobs mb \
                 WHERE mb.repository_id = $2 AND mb.manifest_digest = $3)",
        )
        .bind(now_millis())
        .bind(repository_id)
        .bind(digest.to_string())
        .execute(&mut *tx)
        .await
        .map_err(MetadataError::query("touch manifest blob links"))?;
        let result = sqlx::query("DELETE FROM manifests WHERE repository_id = $1 AND digest = $2")
            .bind(repository_id)
            .bind(digest.to_string())
            .execute(&mut *tx)
            .await;
        let deletion = match result {
            Ok(done) if done.rows_affected() > 0 => Deletion::Removed,
            Ok(_) => Deletion::NotFound,
            Err(e) if is_foreign_key_violation(&e) => Deletion::InUse,
            Err(e) => return Err(MetadataError::query("delete manifest")(e)),
        };
        if deletion != Deletion::Removed {
            return Ok(deletion);
        }
        events::insert_in(&mut tx, self.engine, events).await?;
        tx.commit()
            .await
            .map_err(MetadataError::query("commit manifest delete"))?;
        self.delete_marked_links(repository_id).await?;
        Ok(Deletion::Removed)
    }

    /// Deletes the repository's links that a blob `DELETE` marked and that no manifest
    /// references any more. A manifest that references one meanwhile keeps it (the foreign
    /// key refuses the delete; the collector tries again).
    pub(crate) async fn delete_marked_links(
        &self,
        repository_id: i64,
    ) -> Result<u64, MetadataError> {
        let result = sqlx::query(
            "DELETE FROM repository_blobs WHERE repository_id = $1 \
             AND unlink_requested_at IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb \
                 WHERE mb.repository_id = $1 AND mb.blob_digest = repository_blobs.digest)",
        )
        .bind(repository_id)
        .execute(&self.write)
        .await;
        match result {
            Ok(done) => Ok(done.rows_affected()),
            Err(e) if is_foreign_key_violation(&e) => Ok(0),
            Err(e) => Err(MetadataError::query("delete marked blob links")(e)),
        }
    }

    /// Deletes a tag (with `events`, when it was there); the manifest stays.
    pub async fn delete_tag(
        &self,
        name: &RepositoryName,
        tag: &Tag,
        events: &[NewEvent],
    ) -> Result<bool, MetadataError> {
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(MetadataError::query("begin tag delete"))?;
        let done = sqlx::query(
            "DELETE FROM tags WHERE name = $1 \
             AND repository_id = (SELECT id FROM repositories WHERE name = $2)",
        )
        .bind(tag.as_str())
        .bind(name.as_str())
        .execute(&mut *tx)
        .await
        .map_err(MetadataError::query("delete tag"))?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        events::insert_in(&mut tx, self.engine, events).await?;
        tx.commit()
            .await
            .map_err(MetadataError::query("commit tag delete"))?;
        Ok(true)
    }

    /// Manifests of the repository whose subject is `subject`, optionally of one artifact type.
    pub async fn referrers(
        &self,
        name: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<ReferrerRow>, MetadataError> {
        let rows: Vec<ReferrerTuple> = sqlx::query_as(REFERRERS)
            .bind(name.as_str())
            .bind(subject.to_string())
            .bind(artifact_type.unwrap_or(""))
            .fetch_all(&self.read)
            .await
            .map_err(MetadataError::query("select referrers"))?;
        rows.into_iter()
            .map(|(digest, media_type, size, artifact_type, annotations)| {
                Ok(ReferrerRow {
                    digest: stored_digest(&digest)?,
                    media_type: stored_media_type(&media_type)?,
                    size: from_db_size(size),
                    artifact_type,
                    annotations,
                })
            })
            .collect()
    }
}

pub(super) fn stored(
    (digest, media_type, payload): StoredRow,
) -> Result<StoredManifest, MetadataError> {
    Ok(StoredManifest {
        digest: stored_digest(&digest)?,
        media_type: stored_media_type(&media_type)?,
        payload,
    })
}

fn stored_digest(raw: &str) -> Result<Digest, MetadataError> {
    Digest::parse(raw).map_err(|e| MetadataError::Corrupt(e.to_string()))
}

fn stored_media_type(raw: &str) -> Result<MediaType, MetadataError> {
    MediaType::parse(raw).ok_or_else(|| MetadataError::Corrupt(format!("media type {raw:?}")))
}

fn check(
    declared: &Descriptor,
    stored: Option<u64>,
    missing: fn(Digest) -> ManifestPut,
) -> Option<ManifestPut> {
    match stored {
        None => Some(missing(declared.digest.clone())),
        Some(size) if size != declared.size => Some(ManifestPut::SizeMismatch {
            digest: declared.digest.clone(),
            declared: declared.size,
            stored: size,
        }),
        Some(_) => None,
    }
}

/// Sizes of the blobs linked to a repository among a list of digests: `$1` the repository,
/// then the digests.
pub(super) const LINKED_BLOB_SIZES: &str = "SELECT l.digest, b.size FROM repository_blobs l \
     JOIN blobs b ON b.digest = l.digest WHERE l.repository_id = $1 AND l.digest IN ";

/// Sizes of a repository's manifests among a list of digests.
pub(super) const MANIFEST_SIZES: &str =
    "SELECT digest, size FROM manifests WHERE repository_id = $1 AND digest IN ";

/// Descriptors per statement: one statement per manifest in practice, and far below the
/// engines' parameter limits (SQLite 32766, PostgreSQL 65535) for the rare huge one.
const DIGESTS_PER_STATEMENT: usize = 500;

/// `($first, $first+1, …)` for `count` parameters.
fn placeholders(first: usize, count: usize) -> String {
    let list: Vec<String> = (first..first + count).map(|i| format!("${i}")).collect();
    format!("({})", list.join(", "))
}

/// The descriptors' digests, each once, in order.
fn distinct_digests(descriptors: &[Descriptor]) -> Vec<String> {
    let mut digests: Vec<String> = descriptors.iter().map(|d| d.digest.to_string()).collect();
    digests.sort_unstable();
    digests.dedup();
    digests
}

/// The stored sizes of the described digests present in the repository, by digest, in as
/// few statements as the list takes (`query` ends with `IN `, the list follows).
pub(super) async fn sizes_of(
    tx: &mut Transaction<'static, Any>,
    query: &str,
    repository_id: i64,
    descriptors: &[Descriptor],
) -> Result<HashMap<String, u64>, sqlx::Error> {
    let digests = distinct_digests(descriptors);
    let mut sizes = HashMap::with_capacity(digests.len());
    for batch in digests.chunks(DIGESTS_PER_STATEMENT) {
        let sql = format!("{query}{}", placeholders(2, batch.len()));
        // Only numbered placeholders are added to the constant text.
        let mut statement =
            sqlx::query_as::<_, (String, i64)>(AssertSqlSafe(sql)).bind(repository_id);
        for digest in batch {
            statement = statement.bind(digest.as_str());
        }
        for (digest, size) in statement.fetch_all(&mut **tx).await? {
            sizes.insert(digest, from_db_size(size));
        }
    }
    Ok(sizes)
}

async fn insert_manifest(
    tx: &mut Transaction<'static, Any>,
    repository_id: i64,
    manifest: &NewManifest<'_>,
    tag: Option<&Tag>,
) -> Result<(), sqlx::Error> {
    insert_manifest_row(tx, repository_id, manifest).await?;
    let digest = manifest.digest.to_string();
    insert_references(tx, repository_id, &digest, manifest.parsed).await?;
    if let Some(tag) = tag {
        set_tag(tx, repository_id, tag, &digest, now_millis()).await?;
    }
    Ok(())
}

/// The manifest's row (an existing one stays as it is).
pub(super) async fn insert_manifest_row(
    tx: &mut Transaction<'static, Any>,
    repository_id: i64,
    manifest: &NewManifest<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO manifests (repository_id, digest, media_type, artifact_type, subject_digest, \
         annotations, size, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (repository_id, digest) DO NOTHING",
    )
    .bind(repository_id)
    .bind(manifest.digest.to_string())
    .bind(manifest.media_type)
    .bind(manifest.parsed.artifact_type.clone())
    .bind(manifest.parsed.subject.as_ref().map(ToString::to_string))
    .bind(manifest.parsed.annotations.clone())
    .bind(to_db_size(manifest.payload.len() as u64))
    .bind(manifest.payload.to_vec())
    .bind(now_millis())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Points the tag at the manifest (creating or moving it).
pub(super) async fn set_tag(
    tx: &mut Transaction<'static, Any>,
    repository_id: i64,
    tag: &Tag,
    digest: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO tags (repository_id, name, manifest_digest, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $4) ON CONFLICT (repository_id, name) \
         DO UPDATE SET manifest_digest = excluded.manifest_digest, updated_at = excluded.updated_at",
    )
    .bind(repository_id)
    .bind(tag.as_str())
    .bind(digest)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes a manifest's reference rows (config and layers, index children); existing rows stay.
pub(crate) async fn insert_references(
    tx: &mut Transaction<'static, Any>,
    repository_id: i64,
    digest: &str,
    parsed: &ParsedManifest,
) -> Result<(), sqlx::Error> {
    insert_pairs(
        tx,
        "manifest_blobs",
        "blob_digest",
        repository_id,
        digest,
        &parsed.blobs,
    )
    .await?;
    insert_pairs(
        tx,
        "manifest_children",
        "child_digest",
        repository_id,
        digest,
        &parsed.children,
    )
    .await
}

/// Rows `(repository_id, manifest_digest, <column>)` of `table` for each distinct described
/// digest, in multi-row statements; existing rows stay.
pub(super) async fn insert_pairs(
    tx: &mut Transaction<'static, Any>,
    table: &str,
    column: &str,
    repository_id: i64,
    manifest_digest: &str,
    descriptors: &[Descriptor],
) -> Result<(), sqlx::Error> {
    let digests = distinct_digests(descriptors);
    for batch in digests.chunks(DIGESTS_PER_STATEMENT) {
        let rows: Vec<String> = (0..batch.len())
            .map(|i| format!("($1, $2, ${})", i + 3))
            .collect();
        let sql = format!(
            "INSERT INTO {table} (repository_id, manifest_digest, {column}) VALUES {} \
             ON CONFLICT DO NOTHING",
            rows.join(", ")
        );
        // Only numbered placeholders and constant names are added to the text.
        let mut statement = sqlx::query(AssertSqlSafe(sql))
            .bind(repository_id)
            .bind(manifest_digest);
        for digest in batch {
            statement = statement.bind(digest.as_str());
        }
        statement.execute(&mut **tx).await?;
    }
    Ok(())
}

//! Manifest rows, their reference rows (written in the push's transaction), tags and
//! referrers.

use sqlx::{Any, Transaction};

use super::{
    Deletion, Metadata, MetadataError, from_db_size, is_foreign_key_violation, now_millis,
};
use super::{repositories, to_db_size};
use crate::oci::{Descriptor, Digest, ParsedManifest, RepositoryName, Tag};

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
    pub digest: String,
    pub media_type: String,
    pub payload: Vec<u8>,
}

/// A manifest whose subject is the asked digest.
#[derive(Debug, Clone)]
pub struct ReferrerRow {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
}

type StoredRow = (String, String, Vec<u8>);
/// digest, media type, size, artifact type, annotations.
type ReferrerTuple = (String, String, i64, Option<String>, Option<String>);

impl Metadata {
    /// Stores a manifest with its references and, when given, points the tag at it, all in
    /// one transaction. Nothing is written unless every reference is present.
    pub async fn put_manifest(
        &self,
        name: &RepositoryName,
        manifest: NewManifest<'_>,
        tag: Option<&Tag>,
    ) -> Result<ManifestPut, MetadataError> {
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(MetadataError::query("begin manifest"))?;
        let repository_id = repositories::ensure_in(&mut tx, name).await?;
        for blob in &manifest.parsed.blobs {
            let stored = linked_blob_size(&mut tx, repository_id, &blob.digest).await?;
            if let Some(outcome) = check(blob, stored, ManifestPut::MissingBlob) {
                return Ok(outcome);
            }
        }
        for child in &manifest.parsed.children {
            let stored = manifest_size(&mut tx, repository_id, &child.digest).await?;
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
        Ok(row.map(stored))
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
        Ok(row.map(stored))
    }

    /// Deletes a manifest, its tags and its reference rows.
    pub async fn delete_manifest(
        &self,
        name: &RepositoryName,
        digest: &Digest,
    ) -> Result<Deletion, MetadataError> {
        let result = sqlx::query(
            "DELETE FROM manifests WHERE digest = $1 \
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
            Err(e) => Err(MetadataError::query("delete manifest")(e)),
        }
    }

    /// Deletes a tag; the manifest stays.
    pub async fn delete_tag(
        &self,
        name: &RepositoryName,
        tag: &Tag,
    ) -> Result<bool, MetadataError> {
        let done = sqlx::query(
            "DELETE FROM tags WHERE name = $1 \
             AND repository_id = (SELECT id FROM repositories WHERE name = $2)",
        )
        .bind(tag.as_str())
        .bind(name.as_str())
        .execute(&self.write)
        .await
        .map_err(MetadataError::query("delete tag"))?;
        Ok(done.rows_affected() > 0)
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
        Ok(rows
            .into_iter()
            .map(
                |(digest, media_type, size, artifact_type, annotations)| ReferrerRow {
                    digest,
                    media_type,
                    size: from_db_size(size),
                    artifact_type,
                    annotations,
                },
            )
            .collect())
    }
}

fn stored((digest, media_type, payload): StoredRow) -> StoredManifest {
    StoredManifest {
        digest,
        media_type,
        payload,
    }
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

async fn linked_blob_size(
    tx: &mut Transaction<'static, Any>,
    repository_id: i64,
    digest: &Digest,
) -> Result<Option<u64>, MetadataError> {
    let row: Option<(i64,)> = sqlx::query_as(
        "SELECT b.size FROM repository_blobs l JOIN blobs b ON b.digest = l.digest \
         WHERE l.repository_id = $1 AND l.digest = $2",
    )
    .bind(repository_id)
    .bind(digest.to_string())
    .fetch_optional(&mut **tx)
    .await
    .map_err(MetadataError::query("check manifest blob"))?;
    Ok(row.map(|(size,)| from_db_size(size)))
}

async fn manifest_size(
    tx: &mut Transaction<'static, Any>,
    repository_id: i64,
    digest: &Digest,
) -> Result<Option<u64>, MetadataError> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT size FROM manifests WHERE repository_id = $1 AND digest = $2")
            .bind(repository_id)
            .bind(digest.to_string())
            .fetch_optional(&mut **tx)
            .await
            .map_err(MetadataError::query("check index child"))?;
    Ok(row.map(|(size,)| from_db_size(size)))
}

async fn insert_manifest(
    tx: &mut Transaction<'static, Any>,
    repository_id: i64,
    manifest: &NewManifest<'_>,
    tag: Option<&Tag>,
) -> Result<(), sqlx::Error> {
    let now = now_millis();
    let digest = manifest.digest.to_string();
    sqlx::query(
        "INSERT INTO manifests (repository_id, digest, media_type, artifact_type, subject_digest, \
         annotations, size, payload, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (repository_id, digest) DO NOTHING",
    )
    .bind(repository_id)
    .bind(&digest)
    .bind(manifest.media_type)
    .bind(manifest.parsed.artifact_type.clone())
    .bind(manifest.parsed.subject.as_ref().map(ToString::to_string))
    .bind(manifest.parsed.annotations.clone())
    .bind(to_db_size(manifest.payload.len() as u64))
    .bind(manifest.payload.to_vec())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    insert_references(tx, repository_id, &digest, manifest.parsed).await?;
    if let Some(tag) = tag {
        sqlx::query(
            "INSERT INTO tags (repository_id, name, manifest_digest, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT (repository_id, name) \
             DO UPDATE SET manifest_digest = excluded.manifest_digest, updated_at = excluded.updated_at",
        )
        .bind(repository_id)
        .bind(tag.as_str())
        .bind(&digest)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Writes a manifest's reference rows (config and layers, index children); existing rows stay.
pub(crate) async fn insert_references(
    tx: &mut Transaction<'static, Any>,
    repository_id: i64,
    digest: &str,
    parsed: &ParsedManifest,
) -> Result<(), sqlx::Error> {
    for blob in &parsed.blobs {
        sqlx::query(
            "INSERT INTO manifest_blobs (repository_id, manifest_digest, blob_digest) \
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(repository_id)
        .bind(digest)
        .bind(blob.digest.to_string())
        .execute(&mut **tx)
        .await?;
    }
    for child in &parsed.children {
        sqlx::query(
            "INSERT INTO manifest_children (repository_id, manifest_digest, child_digest) \
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(repository_id)
        .bind(digest)
        .bind(child.digest.to_string())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

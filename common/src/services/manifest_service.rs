//! Manifests, tags, the catalog and referrers.

use crate::metadata::{
    Deletion, ManifestPut, Metadata, MetadataError, NewManifest, StoredManifest,
};
use crate::oci::manifest::{OCI_INDEX, is_valid_media_type};
use crate::oci::{Digest, InvalidManifest, ParsedManifest, Reference, RepositoryName};

use super::Page;
use super::events::{EventRecorder, ManifestTarget};
use crate::events::EventOrigin;

/// Fewest and most catalog rows read per query while filtering a page.
const CATALOG_BATCH_MIN: u32 = 100;
const CATALOG_BATCH_MAX: u32 = 1000;

/// Manifest, tag, catalog and referrers operations.
#[derive(Debug, Clone)]
pub struct ManifestService {
    metadata: Metadata,
    events: EventRecorder,
}

/// Why a manifest, tag or listing operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest pushed by digest hashes to another digest.
    #[error("manifest digest {computed} does not match the reference {reference}")]
    DigestMismatch { reference: Digest, computed: Digest },
    #[error(transparent)]
    Invalid(#[from] InvalidManifest),
    /// A blob or child manifest it references is not in the repository.
    #[error("manifest references {digest}, unknown to the repository")]
    BlobUnknown { digest: Digest },
    /// A descriptor's size is not the stored content's.
    #[error("descriptor of {digest} declares {declared} bytes; the stored content has {stored}")]
    SizeMismatch {
        digest: Digest,
        declared: u64,
        stored: u64,
    },
    /// No manifest (or tag) by that reference in the repository.
    #[error("manifest {reference} unknown")]
    Unknown { reference: Reference },
    /// No such repository.
    #[error("repository {name} unknown")]
    NameUnknown { name: RepositoryName },
    /// An index of the repository lists the manifest.
    #[error("manifest is listed by an index of the repository")]
    InUse,
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}

/// A stored manifest push.
#[derive(Debug, Clone)]
pub struct PushedManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
}

impl ManifestService {
    pub fn new(metadata: Metadata, events: EventRecorder) -> Self {
        ManifestService { metadata, events }
    }

    /// Validates and stores a manifest under a tag or its digest (with its push event).
    pub async fn put(
        &self,
        name: &RepositoryName,
        reference: &Reference,
        content_type: Option<&str>,
        body: &[u8],
        origin: &EventOrigin,
    ) -> Result<PushedManifest, ManifestError> {
        let digest = match reference {
            Reference::Digest(claimed) => {
                let computed = Digest::of(claimed.algorithm(), body);
                if computed != *claimed {
                    return Err(ManifestError::DigestMismatch {
                        reference: claimed.clone(),
                        computed,
                    });
                }
                computed
            }
            Reference::Tag(_) => Digest::sha256_of(body),
        };
        let parsed = ParsedManifest::parse(content_type, body)?;
        let tag = match reference {
            Reference::Tag(tag) => Some(tag),
            Reference::Digest(_) => None,
        };
        let new = NewManifest {
            digest: &digest,
            media_type: parsed.kind.media_type(),
            payload: body,
            parsed: &parsed,
        };
        let target = ManifestTarget {
            digest: &digest,
            media_type: parsed.kind.media_type(),
            size: body.len() as u64,
            parsed: Some(&parsed),
        };
        let events = self.events.manifest_pushed(origin, name, target, tag);
        match self.metadata.put_manifest(name, new, tag, &events).await? {
            ManifestPut::Stored => {
                self.events.committed();
                Ok(PushedManifest {
                    digest,
                    subject: parsed.subject.clone(),
                })
            }
            ManifestPut::MissingBlob(digest) | ManifestPut::MissingChild(digest) => {
                Err(ManifestError::BlobUnknown { digest })
            }
            ManifestPut::SizeMismatch {
                digest,
                declared,
                stored,
            } => Err(ManifestError::SizeMismatch {
                digest,
                declared,
                stored,
            }),
        }
    }

    /// A manifest by tag or digest.
    pub async fn get(
        &self,
        name: &RepositoryName,
        reference: &Reference,
    ) -> Result<StoredManifest, ManifestError> {
        let found = match reference {
            Reference::Tag(tag) => self.metadata.manifest_by_tag(name, tag).await?,
            Reference::Digest(digest) => self.metadata.manifest_by_digest(name, digest).await?,
        };
        match found {
            Some(manifest) => Ok(manifest),
            None => Err(self.unknown(name, reference).await?),
        }
    }

    /// Deletes a tag (the manifest stays) or a manifest by digest (its tags go too), with
    /// its delete event.
    pub async fn delete(
        &self,
        name: &RepositoryName,
        reference: &Reference,
        origin: &EventOrigin,
    ) -> Result<(), ManifestError> {
        match reference {
            Reference::Tag(tag) => {
                let events = self.events.tag_deleted(origin, name, tag);
                match self.metadata.delete_tag(name, tag, &events).await? {
                    true => {
                        self.events.committed();
                        Ok(())
                    }
                    false => Err(unknown(reference)),
                }
            }
            Reference::Digest(digest) => {
                let events = self.events.manifest_deleted(origin, name, digest);
                match self.metadata.delete_manifest(name, digest, &events).await? {
                    Deletion::Removed | Deletion::Marked => {
                        self.events.committed();
                        Ok(())
                    }
                    Deletion::NotFound => Err(unknown(reference)),
                    Deletion::InUse => Err(ManifestError::InUse),
                }
            }
        }
    }

    /// A page of the repository's tags.
    pub async fn tags(
        &self,
        name: &RepositoryName,
        n: u32,
        last: Option<&str>,
    ) -> Result<Page<String>, ManifestError> {
        let repository_id = self
            .metadata
            .repository_id(name)
            .await?
            .ok_or_else(|| ManifestError::NameUnknown { name: name.clone() })?;
        if n == 0 {
            return Ok(Page::empty());
        }
        let items = self.metadata.list_tags(repository_id, last, n + 1).await?;
        Ok(page(items, n))
    }

    /// A page of the repository names `visible` accepts (the caller may pull them). Rows are
    /// read in batches until the page and one more visible name are found, so `next_cursor`
    /// is the last name of the page exactly when a visible name follows it.
    pub async fn catalog<F, V, E>(
        &self,
        n: u32,
        last: Option<&str>,
        visible: V,
    ) -> Result<Page<String>, E>
    where
        V: Fn(String) -> F,
        F: Future<Output = Result<bool, E>>,
        E: From<ManifestError>,
    {
        if n == 0 {
            return Ok(Page::empty());
        }
        let wanted = n as usize + 1;
        let batch = (n + 1).clamp(CATALOG_BATCH_MIN, CATALOG_BATCH_MAX);
        let mut items = Vec::with_capacity(wanted.min(CATALOG_BATCH_MAX as usize));
        let mut cursor = last.map(str::to_owned);
        loop {
            let rows = self
                .metadata
                .catalog(cursor.as_deref(), batch)
                .await
                .map_err(ManifestError::from)?;
            let exhausted = rows.len() < batch as usize;
            for name in rows {
                if visible(name.clone()).await? {
                    items.push(name.clone());
                    if items.len() == wanted {
                        return Ok(page(items, n));
                    }
                }
                cursor = Some(name);
            }
            if exhausted {
                return Ok(page(items, n));
            }
        }
    }

    /// The referrers index of a subject digest, optionally filtered by artifact type.
    pub async fn referrers(
        &self,
        name: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<serde_json::Value, ManifestError> {
        // No manifest can have an artifact type that is not a media type: answer the filter
        // without asking the database to compare arbitrary bytes.
        let rows = match artifact_type {
            Some(t) if !is_valid_media_type(t) => Vec::new(),
            _ => {
                self.metadata
                    .referrers(name, subject, artifact_type)
                    .await?
            }
        };
        let manifests: Vec<serde_json::Value> = rows
            .into_iter()
            .map(|row| {
                let mut descriptor = serde_json::json!({
                    "mediaType": row.media_type.as_str(),
                    "digest": row.digest.to_string(),
                    "size": row.size,
                });
                if let Some(artifact_type) = row.artifact_type {
                    descriptor["artifactType"] = artifact_type.into();
                }
                if let Some(annotations) =
                    row.annotations.and_then(|a| serde_json::from_str(&a).ok())
                {
                    descriptor["annotations"] = annotations;
                }
                descriptor
            })
            .collect();
        Ok(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests,
        }))
    }

    /// `NameUnknown` when the repository does not exist, else `Unknown`.
    async fn unknown(
        &self,
        name: &RepositoryName,
        reference: &Reference,
    ) -> Result<ManifestError, ManifestError> {
        Ok(match self.metadata.repository_id(name).await? {
            None => ManifestError::NameUnknown { name: name.clone() },
            Some(_) => unknown(reference),
        })
    }
}

fn unknown(reference: &Reference) -> ManifestError {
    ManifestError::Unknown {
        reference: reference.clone(),
    }
}

/// The first `n` names, and the last of them as the cursor when more follow.
fn page(items: Vec<String>, n: u32) -> Page<String> {
    Page::of_rows(items, n, String::clone, |item| item)
}

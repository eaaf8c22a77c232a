//! Manifests, tags, the catalog and referrers.

use http::StatusCode;

use crate::error::{OciCode, RegistryError};
use crate::metadata::{Deletion, ManifestPut, Metadata, NewManifest, StoredManifest};
use crate::oci::manifest::{OCI_INDEX, is_valid_media_type};
use crate::oci::{Digest, ParsedManifest, Reference, RepositoryName};

/// Fewest and most catalog rows read per query while filtering a page.
const CATALOG_BATCH_MIN: u32 = 100;
const CATALOG_BATCH_MAX: u32 = 1000;

/// Manifest, tag, catalog and referrers operations.
#[derive(Debug, Clone)]
pub struct ManifestService {
    metadata: Metadata,
}

/// A stored manifest push.
#[derive(Debug, Clone)]
pub struct PushedManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
}

/// One page of a sorted listing.
#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<String>,
    /// The last item, when more follow it.
    pub next_after: Option<String>,
}

impl ManifestService {
    pub fn new(metadata: Metadata) -> Self {
        ManifestService { metadata }
    }

    /// Validates and stores a manifest under a tag or its digest.
    pub async fn put(
        &self,
        name: &RepositoryName,
        reference: &Reference,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<PushedManifest, RegistryError> {
        let digest = match reference {
            Reference::Digest(claimed) => {
                let computed = Digest::of(claimed.algorithm(), body);
                if computed != *claimed {
                    return Err(RegistryError::new(
                        OciCode::DigestInvalid,
                        "manifest digest does not match the reference",
                    )
                    .with_detail(serde_json::json!({
                        "reference": claimed.to_string(), "computed": computed.to_string()
                    })));
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
        match self.metadata.put_manifest(name, new, tag).await? {
            ManifestPut::Stored => Ok(PushedManifest {
                digest,
                subject: parsed.subject.clone(),
            }),
            ManifestPut::MissingBlob(d) | ManifestPut::MissingChild(d) => Err(RegistryError::new(
                OciCode::ManifestBlobUnknown,
                "manifest references a manifest or blob unknown to this repository",
            )
            .with_detail(serde_json::json!({ "digest": d.to_string() }))),
            ManifestPut::SizeMismatch {
                digest,
                declared,
                stored,
            } => Err(RegistryError::manifest_invalid(format!(
                "descriptor of {digest} declares {declared} bytes; the stored content has {stored}"
            ))),
        }
    }

    /// A manifest by tag or digest.
    pub async fn get(
        &self,
        name: &RepositoryName,
        reference: &Reference,
    ) -> Result<StoredManifest, RegistryError> {
        let found = match reference {
            Reference::Tag(tag) => self.metadata.manifest_by_tag(name, tag).await?,
            Reference::Digest(digest) => self.metadata.manifest_by_digest(name, digest).await?,
        };
        match found {
            Some(manifest) => Ok(manifest),
            None => Err(self
                .unknown(name, RegistryError::manifest_unknown(reference))
                .await?),
        }
    }

    /// Deletes a tag (the manifest stays) or a manifest by digest (its tags go too).
    pub async fn delete(
        &self,
        name: &RepositoryName,
        reference: &Reference,
    ) -> Result<(), RegistryError> {
        match reference {
            Reference::Tag(tag) => match self.metadata.delete_tag(name, tag).await? {
                true => Ok(()),
                false => Err(RegistryError::manifest_unknown(reference)),
            },
            Reference::Digest(digest) => match self.metadata.delete_manifest(name, digest).await? {
                Deletion::Removed | Deletion::Marked => Ok(()),
                Deletion::NotFound => Err(RegistryError::manifest_unknown(reference)),
                // A state conflict, not an access error: `DENIED` would send the user to
                // check their rights.
                Deletion::InUse => Err(RegistryError::new(
                    OciCode::Unsupported,
                    "manifest is listed by an index of this repository; delete the index first",
                )
                .with_status(StatusCode::CONFLICT)),
            },
        }
    }

    /// A page of the repository's tags.
    pub async fn tags(
        &self,
        name: &RepositoryName,
        n: u32,
        last: Option<&str>,
    ) -> Result<Page, RegistryError> {
        let repository_id = self
            .metadata
            .repository_id(name)
            .await?
            .ok_or_else(|| RegistryError::name_unknown(name))?;
        if n == 0 {
            return Ok(Page {
                items: Vec::new(),
                next_after: None,
            });
        }
        let items = self.metadata.list_tags(repository_id, last, n + 1).await?;
        Ok(page(items, n))
    }

    /// A page of the repository names `visible` accepts (the caller may pull them). Rows are
    /// read in batches until the page and one more visible name are found, so `next_after`
    /// is the last name of the page exactly when a visible name follows it.
    pub async fn catalog<F, V>(
        &self,
        n: u32,
        last: Option<&str>,
        visible: V,
    ) -> Result<Page, RegistryError>
    where
        V: Fn(String) -> F,
        F: Future<Output = Result<bool, RegistryError>>,
    {
        if n == 0 {
            return Ok(Page {
                items: Vec::new(),
                next_after: None,
            });
        }
        let wanted = n as usize + 1;
        let batch = (n + 1).clamp(CATALOG_BATCH_MIN, CATALOG_BATCH_MAX);
        let mut items = Vec::with_capacity(wanted.min(CATALOG_BATCH_MAX as usize));
        let mut cursor = last.map(str::to_owned);
        loop {
            let rows = self.metadata.catalog(cursor.as_deref(), batch).await?;
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
    ) -> Result<serde_json::Value, RegistryError> {
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
                    "mediaType": row.media_type,
                    "digest": row.digest,
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

    /// NAME_UNKNOWN when the repository does not exist, else the given error.
    async fn unknown(
        &self,
        name: &RepositoryName,
        otherwise: RegistryError,
    ) -> Result<RegistryError, RegistryError> {
        Ok(match self.metadata.repository_id(name).await? {
            None => RegistryError::name_unknown(name),
            Some(_) => otherwise,
        })
    }
}

fn page(mut items: Vec<String>, n: u32) -> Page {
    let more = items.len() > n as usize;
    items.truncate(n as usize);
    let next_after = if more { items.last().cloned() } else { None };
    Page { items, next_after }
}

//! [`LayoutSource`]: distribution's storage layout read straight from its filesystem root
//! (`REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY`), with no distribution running. Under
//! `<root>/docker/registry/v2/`:
//!
//! - `repositories/<name>/` is a repository when it holds `_manifests` (names nest:
//!   `team/app` is `repositories/team/app/`, and `team` may be one too);
//! - `<repo>/_manifests/tags/<tag>/current/link` holds the digest a tag names;
//! - `<repo>/_manifests/revisions/sha256/<hex>/link` is every manifest of the repository,
//!   tagged or not (referrers among them: the layout keeps no referrers index);
//! - `<repo>/_layers/sha256/<hex>/link` says the repository may read a blob;
//! - `blobs/sha256/<2 hex>/<hex>/data` holds the bytes of blobs and manifests alike.
//!
//! A blob is read for a repository only when it is linked there (`_layers`) or is one of its
//! manifest revisions, as distribution answers: another repository's blob is not found.

use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use registry_common::oci::manifest::{DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use registry_common::oci::{Digest, RepositoryName, Tag};
use tokio_util::io::ReaderStream;

use super::source::{ImportSource, SourceBlob, SourceError, SourceManifest, SourceTag};

/// Largest manifest read (the registry's default `MANIFEST_MAX_BYTES`).
const MANIFEST_LIMIT: u64 = 4 * 1024 * 1024;
/// Bytes read from a blob file at a time.
const READ_CHUNK: usize = 256 * 1024;
/// The config media type of a Docker image (a manifest without `mediaType` naming it is a
/// Docker manifest).
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// The one digest algorithm distribution's layout keeps blobs under.
const ALGORITHM: &str = "sha256";

/// distribution's storage layout in a directory.
#[derive(Debug, Clone)]
pub struct LayoutSource {
    root: PathBuf,
    /// `<root>/docker/registry/v2`.
    v2: PathBuf,
}

impl LayoutSource {
    /// The layout under `root` (what distribution's `rootdirectory` names); it must hold
    /// `docker/registry/v2`. The root is made absolute, so that the resume records (keyed by
    /// [`ImportSource::describe`]) are the same whatever directory a run starts in.
    pub fn new(root: &Path) -> Result<LayoutSource, SourceError> {
        let root = std::fs::canonicalize(root).map_err(|e| io_error(root, e))?;
        let v2 = root.join("docker/registry/v2");
        if !v2.is_dir() {
            return Err(SourceError::NotFound(format!(
                "{}: no docker/registry/v2 directory (is it distribution's rootdirectory?)",
                root.display()
            )));
        }
        Ok(LayoutSource { root, v2 })
    }

    fn repository_dir(&self, repository: &RepositoryName) -> PathBuf {
        self.v2.join("repositories").join(repository.as_str())
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.v2
            .join("blobs")
            .join(ALGORITHM)
            .join(&hex[..2.min(hex.len())])
            .join(hex)
            .join("data")
    }

    /// A `sha256` digest, or NotFound: the layout holds no other algorithm.
    fn check_algorithm(digest: &Digest) -> Result<(), SourceError> {
        if digest.algorithm().as_str() == ALGORITHM {
            Ok(())
        } else {
            Err(SourceError::NotFound(format!(
                "{digest}: the layout keeps {ALGORITHM} digests only"
            )))
        }
    }

    /// Whether the repository may read `digest`: a layer link or a manifest revision.
    async fn readable(&self, repository: &RepositoryName, digest: &Digest) -> bool {
        let dir = self.repository_dir(repository);
        let hex = digest.hex();
        for kind in ["_layers", "_manifests/revisions"] {
            let link = dir.join(kind).join(ALGORITHM).join(hex).join("link");
            if tokio::fs::try_exists(&link).await.unwrap_or(false) {
                return true;
            }
        }
        false
    }
}

/// An I/O error in the source's terms: a missing file is NotFound, the rest Invalid.
fn io_error(path: &Path, error: io::Error) -> SourceError {
    let what = format!("{}: {error}", path.display());
    match error.kind() {
        io::ErrorKind::NotFound => SourceError::NotFound(what),
        _ => SourceError::Invalid(what),
    }
}

/// The digest a `link` file holds.
async fn read_link(path: &Path) -> Result<Digest, SourceError> {
    let raw = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| io_error(path, e))?;
    Digest::parse(raw.trim())
        .map_err(|e| SourceError::Invalid(format!("{}: {raw:?}: {e}", path.display())))
}

/// The names of the entries of a directory that are directories, sorted; an absent
/// directory has none.
async fn subdirectories(dir: &Path) -> Result<Vec<String>, SourceError> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(dir, e)),
    };
    let mut names = Vec::new();
    while let Some(entry) = entries.next_entry().await.map_err(|e| io_error(dir, e))? {
        let is_dir = entry
            .file_type()
            .await
            .map_err(|e| io_error(&entry.path(), e))?
            .is_dir();
        if !is_dir {
            continue;
        }
        let name = entry.file_name().into_string().map_err(|name| {
            SourceError::Invalid(format!("{}: {name:?} is not UTF-8", dir.display()))
        })?;
        names.push(name);
    }
    names.sort();
    Ok(names)
}

/// The media type of a manifest: its `mediaType`, or what its shape implies (a `manifests`
/// array: an index; a config: an image manifest, Docker's when the config is Docker's).
fn media_type_of(bytes: &[u8]) -> Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    if let Some(media_type) = value.get("mediaType").and_then(|m| m.as_str()) {
        return Ok(media_type.to_owned());
    }
    if value.get("manifests").is_some_and(|m| m.is_array()) {
        return Ok(OCI_INDEX.to_owned());
    }
    let config = value.get("config").and_then(|c| c.get("mediaType"));
    if value.get("layers").is_some_and(|l| l.is_array()) && config.is_some() {
        return Ok(if config.and_then(|c| c.as_str()) == Some(DOCKER_CONFIG) {
            DOCKER_MANIFEST.to_owned()
        } else {
            OCI_MANIFEST.to_owned()
        });
    }
    Err("neither mediaType, nor a manifests array, nor config and layers".to_owned())
}

#[async_trait]
impl ImportSource for LayoutSource {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    async fn repositories(&self) -> Result<Vec<RepositoryName>, SourceError> {
        let top = self.v2.join("repositories");
        let mut names = Vec::new();
        // Depth first over the path components; `_`-directories are the repository's own
        // (`_manifests`, `_layers`, `_uploads`), never a component of a name.
        let mut pending = vec![String::new()];
        while let Some(prefix) = pending.pop() {
            let dir = top.join(&prefix);
            let children = subdirectories(&dir).await?;
            if !prefix.is_empty() && children.iter().any(|c| c == "_manifests") {
                names.push(RepositoryName::parse(&prefix).map_err(|e| {
                    SourceError::Invalid(format!("{}: repository {prefix:?}: {e}", dir.display()))
                })?);
            }
            for child in children.into_iter().filter(|c| !c.starts_with('_')) {
                pending.push(if prefix.is_empty() {
                    child
                } else {
                    format!("{prefix}/{child}")
                });
            }
        }
        names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Ok(names)
    }

    async fn tags(&self, repository: &RepositoryName) -> Result<Vec<SourceTag>, SourceError> {
        let dir = self.repository_dir(repository);
        let manifests = dir.join("_manifests");
        if !manifests.is_dir() {
            return Err(SourceError::NotFound(format!(
                "{}: no such repository",
                dir.display()
            )));
        }
        let tags_dir = manifests.join("tags");
        let mut tags = Vec::new();
        for name in subdirectories(&tags_dir).await? {
            let tag = Tag::parse(&name)
                .map_err(|e| SourceError::Invalid(format!("{repository}: tag {name:?}: {e}")))?;
            let link = tags_dir.join(&name).join("current/link");
            match read_link(&link).await {
                Ok(digest) => tags.push(SourceTag { tag, digest }),
                // A tag directory left without its current link (a deleted tag): no tag.
                Err(SourceError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(tags)
    }

    async fn all_manifests(
        &self,
        repository: &RepositoryName,
    ) -> Result<Option<Vec<Digest>>, SourceError> {
        let revisions = self
            .repository_dir(repository)
            .join("_manifests/revisions")
            .join(ALGORITHM);
        let mut digests = Vec::new();
        for hex in subdirectories(&revisions).await? {
            let link = revisions.join(&hex).join("link");
            match read_link(&link).await {
                Ok(digest) => digests.push(digest),
                // distribution deletes a revision by removing its link.
                Err(SourceError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(Some(digests))
    }

    async fn referrers(
        &self,
        _repository: &RepositoryName,
        _subject: &Digest,
    ) -> Result<Option<Vec<Digest>>, SourceError> {
        Ok(None)
    }

    async fn manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<SourceManifest, SourceError> {
        Self::check_algorithm(digest)?;
        let link = self
            .repository_dir(repository)
            .join("_manifests/revisions")
            .join(ALGORITHM)
            .join(digest.hex())
            .join("link");
        if !tokio::fs::try_exists(&link).await.unwrap_or(false) {
            return Err(SourceError::NotFound(format!(
                "{repository}@{digest}: no manifest revision"
            )));
        }
        let path = self.blob_path(digest);
        let size = tokio::fs::metadata(&path)
            .await
            .map_err(|e| io_error(&path, e))?
            .len();
        if size > MANIFEST_LIMIT {
            return Err(SourceError::Invalid(format!(
                "{repository}@{digest}: {size} bytes, more than a manifest may have ({MANIFEST_LIMIT})"
            )));
        }
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| io_error(&path, e))?;
        let media_type = media_type_of(&bytes)
            .map_err(|why| SourceError::Invalid(format!("{repository}@{digest}: {why}")))?;
        Ok(SourceManifest {
            digest: digest.clone(),
            media_type,
            bytes: Bytes::from(bytes),
        })
    }

    async fn blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<SourceBlob, SourceError> {
        Self::check_algorithm(digest)?;
        if !self.readable(repository, digest).await {
            return Err(SourceError::NotFound(format!(
                "{repository}@{digest}: not linked to the repository"
            )));
        }
        let path = self.blob_path(digest);
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| io_error(&path, e))?;
        let size = file.metadata().await.map_err(|e| io_error(&path, e))?.len();
        Ok(SourceBlob {
            size: Some(size),
            bytes: Box::pin(ReaderStream::with_capacity(file, READ_CHUNK)),
        })
    }
}

#[cfg(test)]
mod tests;

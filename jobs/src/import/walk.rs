//! The copy: a source's repositories, tags, manifests and blobs written into this registry
//! through the push services, in the order the module docs of `super` give, each item
//! recorded once it is durable so that a later run skips it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use registry_common::error::ErrorChain;
use registry_common::events::EventOrigin;
use registry_common::metadata::{ImportKind, ImportedItem, Metadata};
use registry_common::oci::{Descriptor, Digest, ParsedManifest, Reference, RepositoryName};
use registry_common::services::{EventRecorder, ManifestService, UploadError, UploadService};
use registry_common::storage::Storage;

use super::ImportOptions;
use super::progress::Progress;
use super::source::{ImportSource, SourceError, SourceTag};

/// Attempts of a source call that fails transiently (and of a blob copy), and the first wait.
const ATTEMPTS: u32 = 4;
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// Deepest chain of indexes and referrers followed from a tag.
const MAX_DEPTH: usize = 16;

/// Calls `call` until it succeeds, fails for good, or fails transiently `ATTEMPTS` times.
pub async fn retry<T, F, Fut>(mut call: F) -> Result<T, SourceError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SourceError>>,
{
    let mut delay = FIRST_RETRY;
    let mut attempt = 1;
    loop {
        match call().await {
            Err(SourceError::Transient(why)) if attempt < ATTEMPTS => {
                tracing::warn!(attempt, error = %why, "source call failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    ErrorChain(error).to_string()
}

/// One run's walk of a source.
pub struct Walker {
    source: Arc<dyn ImportSource>,
    /// The source as `import_items` names it.
    key: String,
    metadata: Metadata,
    uploads: UploadService,
    manifests: ManifestService,
    concurrency: usize,
    /// Blob copies in flight, over every repository walked at once.
    copies: tokio::sync::Semaphore,
    origin: EventOrigin,
    progress: Arc<Progress>,
    failures: Mutex<Vec<String>>,
    /// Manifests this run walked already, and how that went.
    walked: Mutex<HashMap<(String, Digest), Result<(), String>>>,
}

impl Walker {
    pub fn new(
        source: Arc<dyn ImportSource>,
        metadata: Metadata,
        storage: Arc<dyn Storage>,
        options: &ImportOptions,
    ) -> Walker {
        let events = EventRecorder::off();
        Walker {
            key: source.describe(),
            source,
            uploads: UploadService::new(metadata.clone(), storage, events.clone()),
            manifests: ManifestService::new(metadata.clone(), events),
            metadata,
            concurrency: options.concurrency.max(1),
            copies: tokio::sync::Semaphore::new(options.concurrency.max(1)),
            origin: EventOrigin::internal("PUT"),
            progress: Arc::new(Progress::default()),
            failures: Mutex::new(Vec::new()),
            walked: Mutex::new(HashMap::new()),
        }
    }

    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    pub fn failures(&self) -> Vec<String> {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn fail(&self, what: String) {
        tracing::warn!(failure = %what, "import item failed");
        Progress::add(&self.progress.failures, 1);
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(what);
    }

    /// Copies one repository; returns the tags and the manifests the source listed (for the
    /// verification).
    pub async fn repository(&self, repository: &RepositoryName) -> (Vec<SourceTag>, Vec<Digest>) {
        let tags = match retry(|| self.source.tags(repository)).await {
            Ok(tags) => tags,
            Err(e) => {
                self.fail(format!("{repository}: listing the tags: {e}"));
                return (Vec::new(), Vec::new());
            }
        };
        for tag in &tags {
            if let Err(why) = self.tag(repository, tag).await {
                self.fail(format!("{repository}:{}: {why}", tag.tag));
            }
        }
        let manifests = match retry(|| self.source.all_manifests(repository)).await {
            Ok(Some(digests)) => {
                for digest in &digests {
                    if let Err(why) = self.manifest(repository, digest, 0).await {
                        self.fail(format!("{repository}@{digest}: {why}"));
                    }
                }
                digests
            }
            Ok(None) => Vec::new(),
            Err(e) => {
                self.fail(format!("{repository}: listing the manifests: {e}"));
                Vec::new()
            }
        };
        Progress::add(&self.progress.repositories, 1);
        (tags, manifests)
    }

    async fn tag(&self, repository: &RepositoryName, tag: &SourceTag) -> Result<(), String> {
        let name = tag.tag.as_str();
        let done = self
            .metadata
            .imported_item(&self.key, repository, ImportKind::Tag, name)
            .await
            .map_err(|e| chain(&e))?;
        if done.is_some_and(|d| d.digest == tag.digest) {
            let here = self
                .metadata
                .manifest_by_tag(repository, &tag.tag)
                .await
                .map_err(|e| chain(&e))?;
            if here.is_some_and(|m| m.digest == tag.digest) {
                Progress::add(&self.progress.tags_skipped, 1);
                return Ok(());
            }
        }
        self.manifest(repository, &tag.digest, 0).await?;
        let stored = self
            .manifests
            .get(repository, &Reference::Digest(tag.digest.clone()))
            .await
            .map_err(|e| chain(&e))?;
        self.manifests
            .put(
                repository,
                &Reference::Tag(tag.tag.clone()),
                Some(stored.media_type.as_str()),
                &stored.payload,
                &self.origin,
            )
            .await
            .map_err(|e| format!("setting the tag: {}", chain(&e)))?;
        let item = ImportedItem {
            digest: tag.digest.clone(),
            size: 0,
        };
        self.metadata
            .record_imported_item(&self.key, repository, ImportKind::Tag, name, &item)
            .await
            .map_err(|e| chain(&e))?;
        Progress::add(&self.progress.tags_set, 1);
        Ok(())
    }

    /// Copies a manifest with all it references, then its referrers (once per run).
    async fn manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        depth: usize,
    ) -> Result<(), String> {
        let key = (repository.as_str().to_owned(), digest.clone());
        if let Some(outcome) = self
            .walked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return outcome.clone();
        }
        let outcome = Box::pin(self.manifest_once(repository, digest, depth)).await;
        self.walked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, outcome.clone());
        outcome
    }

    async fn manifest_once(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        depth: usize,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("{digest}: indexes and referrers nested too deep"));
        }
        let done = self
            .metadata
            .imported_item(
                &self.key,
                repository,
                ImportKind::Manifest,
                &digest.to_string(),
            )
            .await
            .map_err(|e| chain(&e))?;
        if done.is_some()
            && self
                .metadata
                .manifest_by_digest(repository, digest)
                .await
                .map_err(|e| chain(&e))?
                .is_some()
        {
            Progress::add(&self.progress.manifests_skipped, 1);
            return Ok(());
        }
        let fetched = retry(|| self.source.manifest(repository, digest))
            .await
            .map_err(|e| format!("manifest {digest}: {e}"))?;
        let computed = Digest::of(digest.algorithm(), &fetched.bytes);
        if computed != *digest {
            return Err(format!(
                "manifest {digest}: the source's bytes hash to {computed}"
            ));
        }
        let parsed = ParsedManifest::parse(Some(&fetched.media_type), &fetched.bytes)
            .map_err(|e| format!("manifest {digest}: {}", chain(&e)))?;
        let mut errors = Vec::new();
        for child in &parsed.children {
            if let Err(why) = self.manifest(repository, &child.digest, depth + 1).await {
                errors.push(why);
            }
        }
        let copies = futures_util::stream::iter(parsed.blobs.iter())
            .map(|blob| self.blob(repository, blob))
            .buffer_unordered(self.concurrency)
            .collect::<Vec<_>>()
            .await;
        errors.extend(copies.into_iter().filter_map(Result::err));
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        self.manifests
            .put(
                repository,
                &Reference::Digest(digest.clone()),
                Some(&fetched.media_type),
                &fetched.bytes,
                &self.origin,
            )
            .await
            .map_err(|e| format!("storing manifest {digest}: {}", chain(&e)))?;
        Progress::add(&self.progress.manifests_stored, 1);
        match retry(|| self.source.referrers(repository, digest)).await {
            Ok(Some(referrers)) => {
                for referrer in referrers {
                    if let Err(why) = self.manifest(repository, &referrer, depth + 1).await {
                        errors.push(format!("referrer {referrer}: {why}"));
                    }
                }
            }
            Ok(None) => {}
            Err(e) => errors.push(format!("referrers of {digest}: {e}")),
        }
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }
        let item = ImportedItem {
            digest: digest.clone(),
            size: fetched.bytes.len() as u64,
        };
        self.metadata
            .record_imported_item(
                &self.key,
                repository,
                ImportKind::Manifest,
                &digest.to_string(),
                &item,
            )
            .await
            .map_err(|e| chain(&e))
    }

    /// Copies a blob unless this registry has it: linked to the repository already, or
    /// stored under another repository (then linked without its bytes).
    async fn blob(&self, repository: &RepositoryName, blob: &Descriptor) -> Result<(), String> {
        let digest = &blob.digest;
        let fail = |why: String| format!("blob {digest}: {why}");
        if self
            .metadata
            .linked_blob_size(repository, digest)
            .await
            .map_err(|e| fail(chain(&e)))?
            .is_some()
        {
            Progress::add(&self.progress.blobs_present, 1);
            return Ok(());
        }
        let linked = self
            .uploads
            .link_stored(repository, digest, &self.origin)
            .await
            .map_err(|e| fail(chain(&e)))?;
        let size = match linked {
            Some(size) => {
                Progress::add(&self.progress.blobs_linked, 1);
                size
            }
            None => {
                let permit = self.copies.acquire().await;
                self.copy_blob(repository, blob).await.map_err(fail)?;
                drop(permit);
                Progress::add(&self.progress.blobs_copied, 1);
                Progress::add(&self.progress.bytes_copied, blob.size);
                blob.size
            }
        };
        let item = ImportedItem {
            digest: digest.clone(),
            size,
        };
        self.metadata
            .record_imported_item(
                &self.key,
                repository,
                ImportKind::Blob,
                &digest.to_string(),
                &item,
            )
            .await
            .map_err(|e| fail(chain(&e)))
    }

    /// Streams the blob from the source into storage, hashed and checked as a push is.
    async fn copy_blob(
        &self,
        repository: &RepositoryName,
        blob: &Descriptor,
    ) -> Result<(), String> {
        let mut delay = FIRST_RETRY;
        let mut attempt = 1;
        loop {
            let result = match retry(|| self.source.blob(repository, &blob.digest)).await {
                Ok(fetched) => {
                    if fetched.size.is_some_and(|s| s != blob.size) {
                        return Err(format!(
                            "the source has {} bytes, the manifest says {}",
                            fetched.size.unwrap_or(0),
                            blob.size
                        ));
                    }
                    match self
                        .uploads
                        .put_monolithic(
                            repository,
                            &blob.digest,
                            Some(blob.size),
                            fetched.bytes,
                            &self.origin,
                        )
                        .await
                    {
                        Ok(()) => Ok(()),
                        // The whole body arrived and hashes to something else: the source's
                        // bytes are wrong, and reading them again gives the same.
                        Err(e @ UploadError::DigestMismatch { .. }) => return Err(chain(&e)),
                        Err(e) => Err(chain(&e)),
                    }
                }
                Err(e @ SourceError::Transient(_)) => Err(e.to_string()),
                Err(e) => return Err(e.to_string()),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(why) if attempt < ATTEMPTS => {
                    tracing::warn!(digest = %blob.digest, attempt, error = %why, "blob copy failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                Err(why) => return Err(why),
            }
        }
    }
}

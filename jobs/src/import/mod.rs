//! `jobs import`: copies another registry's content into this one (see the README's
//! "Moving in"). [`source`] is what it reads from ([`registry::RegistrySource`]: a
//! registry's HTTP API; [`layout::LayoutSource`]: distribution's storage layout in a
//! directory); `walk` copies, `verify` checks the result.
//!
//! The walk, per repository, per tag: the manifest the tag names; for an index, each child
//! manifest first; each manifest's config and layers (copied unless this registry has the
//! blob already: linked to the repository, or stored under another one and linked without
//! its bytes); the manifest stored; its referrers (the referrers API; the tag-schema
//! fallback's `sha256-<hex>` tags come with the tags); then the tag set. A source that lists
//! every manifest (a layout) has them walked after the tags, so untagged manifests and
//! referrers (whose subject is only recorded, so their order does not matter) come too.
//! Everything is written through the services a push uses (`UploadService`,
//! `ManifestService`), so what an import stores is checked as a push is, and blobs stream
//! from the source into storage hashed, never whole in memory.
//!
//! Resuming: each blob, manifest and tag done is recorded (`import_items`, keyed by the
//! source); a run skips a tag recorded with the digest it names now, and a manifest recorded
//! done, so a run killed midway goes on where it stopped and a run over a source already
//! copied copies nothing. A per-item failure is logged and counted; the run goes on.

pub mod layout;
mod progress;
pub mod registry;
pub mod source;
mod verify;
mod walk;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use registry_common::metadata::Metadata;
use registry_common::oci::RepositoryName;
use registry_common::storage::Storage;

pub use progress::Counts;
pub use verify::Verification;

use source::ImportSource;

/// What to import and how.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// These repositories only (not read from the catalog); empty: the catalog's.
    pub repositories: Vec<RepositoryName>,
    /// Only the catalog's repositories whose name starts with this.
    pub prefix: Option<String>,
    /// Blobs copied at once, over up to as many repositories walked at once.
    pub concurrency: usize,
    /// How often a progress line is logged.
    pub progress_every: Duration,
}

/// The end of a run: what was done, and what the check of the result found.
#[derive(Debug)]
pub struct ImportReport {
    pub source: String,
    pub counts: Counts,
    pub elapsed: Duration,
    /// Items that could not be copied (each also logged).
    pub failures: Vec<String>,
    pub verification: Verification,
}

impl ImportReport {
    /// Whether everything was copied and checks out.
    pub fn ok(&self) -> bool {
        self.failures.is_empty() && self.verification.mismatches.is_empty()
    }

    /// The report as printed: a few summary lines, then each mismatch and failure.
    pub fn render(&self) -> String {
        let c = &self.counts;
        let v = &self.verification;
        let mut out = format!(
            "import from {}: {} repositories, {:.1} s\n\
             tags: {} set, {} already done\n\
             manifests: {} stored, {} already done\n\
             blobs: {} copied ({} bytes, {}/s), {} linked from this registry, {} already here\n\
             verification: {} tags resolve to the source's digest, {} blobs ({} bytes) present, \
             {} mismatches\n\
             failures: {}\n",
            self.source,
            c.repositories,
            self.elapsed.as_secs_f64(),
            c.tags_set,
            c.tags_skipped,
            c.manifests_stored,
            c.manifests_skipped,
            c.blobs_copied,
            c.bytes_copied,
            progress::human_rate(c.bytes_copied, self.elapsed),
            c.blobs_linked,
            c.blobs_present,
            v.tags_ok,
            v.blobs,
            v.blob_bytes,
            v.mismatches.len(),
            self.failures.len(),
        );
        for mismatch in &v.mismatches {
            out.push_str(&format!("mismatch: {mismatch}\n"));
        }
        for failure in &self.failures {
            out.push_str(&format!("failed: {failure}\n"));
        }
        out
    }
}

/// Why a run could not start (the source's catalog unreadable): per-item failures are in
/// the report instead.
#[derive(Debug, thiserror::Error)]
#[error("listing the repositories of {source_name}: {reason}")]
pub struct ImportError {
    source_name: String,
    reason: String,
}

/// Imports `source` into this registry's metadata and storage.
pub async fn run(
    source: Arc<dyn ImportSource>,
    metadata: Metadata,
    storage: Arc<dyn Storage>,
    options: ImportOptions,
) -> Result<ImportReport, ImportError> {
    let started = std::time::Instant::now();
    let repositories = if options.repositories.is_empty() {
        let all = walk::retry(|| source.repositories())
            .await
            .map_err(|e| ImportError {
                source_name: source.describe(),
                reason: e.to_string(),
            })?;
        all.into_iter()
            .filter(|name| {
                options
                    .prefix
                    .as_deref()
                    .is_none_or(|p| name.as_str().starts_with(p))
            })
            .collect()
    } else {
        options.repositories.clone()
    };
    let walker = walk::Walker::new(source.clone(), metadata.clone(), storage.clone(), &options);
    let total = u64::try_from(repositories.len()).unwrap_or(u64::MAX);
    let reporter = progress::start(walker.progress(), options.progress_every, started, total);
    // Up to `concurrency` repositories at once (in order for the report); the blobs they
    // copy share the walker's `concurrency` permits.
    let listed: Vec<verify::Listed> = futures_util::stream::iter(&repositories)
        .map(|repository| {
            let walker = &walker;
            async move {
                let (tags, manifests) = walker.repository(repository).await;
                verify::Listed {
                    repository: repository.clone(),
                    tags,
                    manifests,
                }
            }
        })
        .buffered(options.concurrency.max(1))
        .collect()
        .await;
    reporter.abort();
    progress::finish_line();
    let verification = verify::check(&metadata, &storage, &listed).await;
    Ok(ImportReport {
        source: source.describe(),
        counts: walker.progress().snapshot(),
        elapsed: started.elapsed(),
        failures: walker.failures(),
        verification,
    })
}

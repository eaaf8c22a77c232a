//! The scheduled jobs, run by the `jobs` binary (a Cloud Run Job per subcommand, triggered by
//! Cloud Scheduler) and on a timer by the single `registry` binary. Each job is idempotent,
//! works in bounded batches, logs a summary, and reports per-item failures so that the run
//! ends non-zero while the rest of the work still gets done.
//!
//! # Garbage collection protocol
//!
//! Blobs are stored once (`blobs` row + storage object) and reach repositories through links
//! (`repository_blobs`); manifests reference links (`manifest_blobs`, with a foreign key).
//! `blob-gc` removes, oldest first and only past the grace period:
//!
//! 1. **Links no manifest references**, unused for the grace period (`used_at`, below) or
//!    marked by a blob `DELETE` (those whatever their age: the client was answered `202`).
//!    Each is deleted by one conditional statement (`… AND NOT EXISTS (manifest reference)
//!    AND (used_at <= cutoff OR marked)`). A manifest push that references the link at
//!    the same moment either commits first — then the delete finds the reference, or the
//!    foreign key refuses it (PostgreSQL rechecks referencing rows at delete time) — or
//!    commits after, and then its own foreign-key check fails and the push answers
//!    `MANIFEST_BLOB_UNKNOWN`, so the client uploads the blob again. A manifest can never
//!    reference a link that is gone. A cross-repository mount copies a link in one statement
//!    and is refused by the same key when the source link is gone (the client then uploads).
//! 2. **Blobs no repository links.** Each goes under the digest's lock (see
//!    `registry_common::metadata::BlobLock`): the row is deleted only if still unlinked (the
//!    link table's foreign key refuses otherwise), then the storage object is deleted, then
//!    the transaction commits. An upload that finishes the same blob takes the same lock
//!    before recording its row and checks the object is there (writing it again from its
//!    parts if the collector just deleted it). So a linked row never exists without its
//!    bytes. A collector killed between deleting the object and committing leaves the row
//!    (rolled back) without its object; it is unlinked, so no client reads it, every path
//!    that links a blob again checks the object under this lock, and the next run deletes it.
//! 3. **Storage objects without a row** (an upload that crashed between writing the object and
//!    recording it): under the same lock, deleted only if there is still no row.
//!
//! # The grace period of a link
//!
//! The locks and keys keep data safe; the grace period keeps pushes from failing. A client
//! that finds a layer (`HEAD` → `200`, or a mount → `201`) then names it in a manifest: if the
//! collector removed the link in between, the push fails with `MANIFEST_BLOB_UNKNOWN`. So the
//! grace period counts from the last time a client could have relied on the link, its
//! `used_at`, never from its creation:
//!
//! - an upload or a mount sets it (and clears a pending unlink mark);
//! - deleting a manifest sets it on the links of its blobs (the moment a link may become
//!   unreferenced: a client may have seen it a second ago, while it was still referenced);
//! - a `HEAD`/`GET` of the blob in the repository sets it when no manifest references the
//!   link and it is older than `LINK_USE_REFRESH` (`registry_common::metadata`). The refresh
//!   is one conditional `UPDATE` run before the answer; if the collector removed the link
//!   first, the read answers `404` and the client uploads. Reads of referenced links (every
//!   pull of a live image) write nothing, and an unreferenced link is written at most once
//!   per `LINK_USE_REFRESH`.
//!
//! Because reads refresh coarsely, the collector removes a link only once it has been unused
//! for `GC_GRACE_SECS` plus `LINK_USE_REFRESH` (plus the grace period itself when that is
//! shorter): a client that saw a link has at least the grace period to push the manifest
//! naming it (for grace periods under `LINK_USE_REFRESH`, at least twice the grace period
//! after the link's last refresh). Blob rows keep their creation time: an unlinked
//! blob is reached again only by an upload, which takes the blob lock (step 2).

mod cache_evict;
pub mod deliver_events;
mod gc;
pub mod import;
pub mod import_cli;
mod index;
mod project_storage;
mod report;
pub mod timer;
mod upload_cleanup;

#[cfg(test)]
mod test_support;

use std::sync::Arc;
use std::time::Duration;

pub use registry_common::config::JobsConfig;
use registry_common::config::{EventsConfig, UpstreamConfig};
use registry_common::events::delivery::Destinations;
use registry_common::metadata::Metadata;
use registry_common::services::events::{Deliverer, DeliveryPolicy};
use registry_common::state::AppState;
use registry_common::storage::Storage;
pub use report::{JobError, JobReport};

/// What a job works on.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub metadata: Metadata,
    pub storage: Arc<dyn Storage>,
    pub config: JobsConfig,
    /// The pull-through cache's upstreams (`UPSTREAMS_FILE`), for `cache-evict`.
    pub upstreams: Vec<Arc<UpstreamConfig>>,
    /// Sends the event outbox (`deliver-events`); `None` without a destination.
    pub deliverer: Option<Deliverer>,
}

/// The deliverer of the event outbox for these settings, when a destination is configured.
pub fn deliverer(metadata: &Metadata, events: &EventsConfig) -> Option<Deliverer> {
    events.enabled().then(|| {
        Deliverer::new(
            metadata.clone(),
            Destinations::new(events),
            DeliveryPolicy::of(events),
        )
    })
}

impl JobContext {
    /// The context of jobs run inside a serving process (the single binary's timer, the
    /// `/internal/` endpoints): its state's database, storage and upstreams.
    pub fn of_state(state: &AppState, config: JobsConfig, events: &EventsConfig) -> JobContext {
        JobContext {
            metadata: state.metadata.clone(),
            storage: state.storage.clone(),
            config,
            upstreams: state.cache.upstreams(),
            deliverer: deliverer(&state.metadata, events),
        }
    }

    fn grace(&self) -> Duration {
        Duration::from_secs(self.config.gc_grace_secs)
    }
}

/// A job by its subcommand name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Migrate,
    IndexManifests,
    CacheEvict,
    BlobGc,
    UploadCleanup,
    ProjectStorage,
    DeliverEvents,
    RunAll,
}

impl Job {
    pub const ALL: [Job; 8] = [
        Job::Migrate,
        Job::IndexManifests,
        Job::CacheEvict,
        Job::BlobGc,
        Job::UploadCleanup,
        Job::ProjectStorage,
        Job::DeliverEvents,
        Job::RunAll,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Job::Migrate => "migrate",
            Job::IndexManifests => "index-manifests",
            Job::CacheEvict => "cache-evict",
            Job::BlobGc => "blob-gc",
            Job::UploadCleanup => "upload-cleanup",
            Job::ProjectStorage => "project-storage",
            Job::DeliverEvents => "deliver-events",
            Job::RunAll => "run-all",
        }
    }

    pub fn from_name(name: &str) -> Option<Job> {
        Job::ALL.into_iter().find(|job| job.name() == name)
    }
}

/// Runs a job (for `run-all`, each in order, stopping at the first that fails) and returns
/// the reports of the jobs that ran. A job "fails" on an error or on any per-item failure.
pub async fn run(job: Job, ctx: &JobContext) -> Result<Vec<JobReport>, JobError> {
    let order: &[Job] = match job {
        Job::RunAll => &[
            Job::Migrate,
            Job::IndexManifests,
            Job::CacheEvict,
            Job::BlobGc,
            Job::UploadCleanup,
            Job::ProjectStorage,
            Job::DeliverEvents,
        ],
        _ => std::slice::from_ref(&job),
    };
    let mut reports = Vec::new();
    for &job in order {
        let report = run_one(job, ctx).await?;
        report.log();
        let failed = report.failures > 0;
        reports.push(report);
        if failed {
            return Err(JobError::ItemsFailed { reports });
        }
    }
    Ok(reports)
}

async fn run_one(job: Job, ctx: &JobContext) -> Result<JobReport, JobError> {
    let mut report = JobReport::start(job.name());
    match job {
        Job::Migrate => ctx
            .metadata
            .migrate()
            .await
            .map_err(|source| JobError::Metadata {
                job: job.name(),
                source,
            })?,
        Job::IndexManifests => index::run(ctx, &mut report).await?,
        Job::CacheEvict => cache_evict::run(ctx, &mut report).await?,
        Job::BlobGc => gc::run(ctx, &mut report).await?,
        Job::UploadCleanup => upload_cleanup::run(ctx, &mut report).await?,
        Job::ProjectStorage => project_storage::run(ctx, &mut report).await?,
        Job::DeliverEvents => deliver_events::run(ctx, &mut report).await?,
        // `run` expands run-all into its jobs; the name itself does nothing.
        Job::RunAll => {}
    }
    report.finish();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{config, empty_index, engines, image, repo};

    #[test]
    fn every_job_is_found_by_its_name() {
        for job in Job::ALL {
            assert_eq!(Job::from_name(job.name()), Some(job));
        }
        assert_eq!(Job::from_name("gc"), None);
    }

    /// `run-all` on a registry with a little of everything: each job's summary counts.
    #[tokio::test]
    async fn run_all_reports_each_jobs_counts_in_order() {
        for e in engines(config(0, 2)).await {
            let name = repo("acme/app");
            let config_blob = e.push_blob(&name, b"app config").await;
            e.put_manifest(&name, &image(&config_blob, 10, &[]), "v1")
                .await;
            e.push_blob(&name, b"loose").await;
            e.put_object(b"orphan").await;

            let reports = run(Job::RunAll, &e.ctx).await.expect("run-all");
            let counts: Vec<_> = reports
                .iter()
                .map(|r| (r.job, r.changed, r.bytes, r.failures))
                .collect();
            assert_eq!(
                counts,
                [
                    ("migrate", 0, 0, 0),
                    ("index-manifests", 0, 0, 0),
                    // No upstreams: nothing to evict.
                    ("cache-evict", 0, 0, 0),
                    // The loose link and blob, then the orphan object.
                    ("blob-gc", 3, 5 + 6, 0),
                    ("upload-cleanup", 0, 0, 0),
                    ("project-storage", 1, 10, 0),
                    // No event destination: the outbox is left alone.
                    ("deliver-events", 0, 0, 0),
                ],
                "{e:?}"
            );
        }
    }

    /// A job with a failed item ends `run-all` there, with the reports of the jobs that ran.
    #[tokio::test]
    async fn run_all_stops_at_the_first_job_with_a_failed_item() {
        for e in engines(config(0, 100)).await {
            let name = repo("p/broken");
            let missing = registry_common::oci::Digest::sha256_of(b"never pushed");
            let references =
                registry_common::oci::ParsedManifest::parse(None, &empty_index("none"))
                    .expect("index");
            e.put_manifest_as(&name, &image(&missing, 12, &[]), &references, "v1")
                .await;

            match run(Job::RunAll, &e.ctx).await {
                Err(JobError::ItemsFailed { reports }) => {
                    let jobs: Vec<_> = reports.iter().map(|r| (r.job, r.failures)).collect();
                    assert_eq!(jobs, [("migrate", 0), ("index-manifests", 1)], "{e:?}");
                }
                other => panic!("{e:?}: expected a failed item, got {other:?}"),
            }
        }
    }
}

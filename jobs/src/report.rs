//! A job's summary (counts, bytes, duration) and its errors.

use std::time::{Duration, Instant};

use registry_common::metadata::MetadataError;
use registry_common::storage::StorageError;

/// What one job did.
#[derive(Debug, Clone)]
pub struct JobReport {
    pub job: &'static str,
    /// Items looked at.
    pub examined: u64,
    /// Items removed or written.
    pub changed: u64,
    /// Bytes freed (garbage collection) or measured (storage per project).
    pub bytes: u64,
    /// Items that failed; the job went on past them.
    pub failures: u64,
    pub duration: Duration,
    started: Instant,
}

impl JobReport {
    pub fn start(job: &'static str) -> Self {
        JobReport {
            job,
            examined: 0,
            changed: 0,
            bytes: 0,
            failures: 0,
            duration: Duration::ZERO,
            started: Instant::now(),
        }
    }

    pub fn finish(&mut self) {
        self.duration = self.started.elapsed();
    }

    /// Counts a failed item and logs why.
    pub fn failed(&mut self, item: &str, error: &(dyn std::error::Error + 'static)) {
        self.failures += 1;
        tracing::error!(job = self.job, item, error = %registry_common::error::ErrorChain(error), "item failed");
    }

    /// The summary line.
    pub fn log(&self) {
        tracing::info!(
            job = self.job,
            examined = self.examined,
            changed = self.changed,
            bytes = self.bytes,
            failures = self.failures,
            duration_ms = self.duration.as_millis() as u64,
            "job finished"
        );
    }
}

/// Why a job stopped.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{job}: metadata database")]
    Metadata {
        job: &'static str,
        #[source]
        source: MetadataError,
    },
    #[error("{job}: storage")]
    Storage {
        job: &'static str,
        #[source]
        source: StorageError,
    },
    #[error("{} item(s) failed", reports.iter().map(|r| r.failures).sum::<u64>())]
    ItemsFailed { reports: Vec<JobReport> },
    /// The job cannot run as asked with these settings.
    #[error("{job}: {why}")]
    NothingToDo {
        job: &'static str,
        why: &'static str,
    },
}

impl JobError {
    /// The reports of the jobs that ran, when items failed (empty for the other errors).
    pub fn reports(&self) -> &[JobReport] {
        match self {
            JobError::ItemsFailed { reports } => reports,
            _ => &[],
        }
    }

    pub(crate) fn metadata(job: &'static str) -> impl FnOnce(MetadataError) -> JobError {
        move |source| JobError::Metadata { job, source }
    }

    pub(crate) fn storage(job: &'static str) -> impl FnOnce(StorageError) -> JobError {
        move |source| JobError::Storage { job, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("broken item")]
    struct Broken;

    #[test]
    fn failed_items_are_counted_and_the_error_sums_them_over_the_jobs() {
        let mut first = JobReport::start("first");
        first.examined = 3;
        first.failed("a", &Broken);
        first.failed("b", &Broken);
        let mut second = JobReport::start("second");
        second.failed("c", &Broken);
        assert_eq!((first.examined, first.failures), (3, 2));
        let error = JobError::ItemsFailed {
            reports: vec![first, second],
        };
        assert_eq!(error.to_string(), "3 item(s) failed");
    }

    #[test]
    fn a_new_report_counts_nothing() {
        let report = JobReport::start("blob-gc");
        assert_eq!(report.job, "blob-gc");
        assert_eq!(
            (
                report.examined,
                report.changed,
                report.bytes,
                report.failures
            ),
            (0, 0, 0, 0)
        );
    }
}

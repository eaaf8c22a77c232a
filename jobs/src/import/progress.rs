//! What a run has done so far: counters the walk moves, a log line every few seconds, and on
//! a terminal a line on standard error rewritten in place.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The counters of a run.
#[derive(Debug, Default)]
pub struct Progress {
    pub repositories: AtomicU64,
    pub tags_set: AtomicU64,
    pub tags_skipped: AtomicU64,
    pub manifests_stored: AtomicU64,
    pub manifests_skipped: AtomicU64,
    pub blobs_copied: AtomicU64,
    pub bytes_copied: AtomicU64,
    pub blobs_linked: AtomicU64,
    pub blobs_present: AtomicU64,
    pub failures: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Repositories walked to their end.
    pub repositories: u64,
    pub tags_set: u64,
    /// Tags an earlier run set to the digest they name now.
    pub tags_skipped: u64,
    pub manifests_stored: u64,
    pub manifests_skipped: u64,
    /// Blobs whose bytes came from the source.
    pub blobs_copied: u64,
    pub bytes_copied: u64,
    /// Blobs this registry stored already under another repository, linked without bytes.
    pub blobs_linked: u64,
    /// Blobs already linked to the repository.
    pub blobs_present: u64,
    pub failures: u64,
}

impl Progress {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Counts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            repositories: get(&self.repositories),
            tags_set: get(&self.tags_set),
            tags_skipped: get(&self.tags_skipped),
            manifests_stored: get(&self.manifests_stored),
            manifests_skipped: get(&self.manifests_skipped),
            blobs_copied: get(&self.blobs_copied),
            bytes_copied: get(&self.bytes_copied),
            blobs_linked: get(&self.blobs_linked),
            blobs_present: get(&self.blobs_present),
            failures: get(&self.failures),
        }
    }
}

/// Logs the counters every `every` until aborted (and rewrites a line on a terminal).
pub fn start(
    progress: Arc<Progress>,
    every: Duration,
    started: Instant,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(50)));
        tick.tick().await;
        let tty = std::io::stderr().is_terminal();
        loop {
            tick.tick().await;
            let c = progress.snapshot();
            let elapsed = started.elapsed();
            let rate = human_rate(c.bytes_copied, elapsed);
            tracing::info!(
                repositories = c.repositories,
                tags = c.tags_set + c.tags_skipped,
                manifests = c.manifests_stored + c.manifests_skipped,
                blobs_copied = c.blobs_copied,
                blobs_here = c.blobs_linked + c.blobs_present,
                bytes_copied = c.bytes_copied,
                rate = %rate,
                failures = c.failures,
                "import progress"
            );
            if tty {
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "\r{} repositories, {} tags, {} manifests, {} blobs copied ({} bytes, {rate}/s), {} failures ",
                    c.repositories,
                    c.tags_set + c.tags_skipped,
                    c.manifests_stored + c.manifests_skipped,
                    c.blobs_copied,
                    c.bytes_copied,
                    c.failures
                );
                let _ = err.flush();
            }
        }
    })
}

/// Ends the terminal's progress line.
pub fn finish_line() {
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
}

/// `bytes` over `elapsed` as `12.3 MiB`.
pub fn human_rate(bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    let per_sec = bytes as f64 / secs;
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = per_sec;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", units[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_in_binary_units() {
        assert_eq!(human_rate(0, Duration::from_secs(1)), "0.0 B");
        assert_eq!(human_rate(3 << 20, Duration::from_secs(2)), "1.5 MiB");
    }
}

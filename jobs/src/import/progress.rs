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

/// Logs the counters every `every` until aborted (and rewrites a line on a terminal), with
/// the time left estimated from the share of the `total` repositories walked so far.
pub fn start(
    progress: Arc<Progress>,
    every: Duration,
    started: Instant,
    total: u64,
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
            let eta = eta(c.repositories, total, elapsed)
                .map_or_else(|| "unknown".to_owned(), human_duration);
            tracing::info!(
                repositories = c.repositories,
                of = total,
                eta = %eta,
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
                    "\r{}/{total} repositories, {} tags, {} manifests, {} blobs copied ({} bytes, {rate}/s), {} failures, ETA {eta} ",
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

/// The time left if the repositories left take as long as those done did (none done: unknown).
fn eta(done: u64, total: u64, elapsed: Duration) -> Option<Duration> {
    if done == 0 {
        return None;
    }
    let left = total.saturating_sub(done);
    Some(elapsed.mul_f64(left as f64 / done as f64))
}

/// `1h02m`, `3m20s`, `42s`.
fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match (secs / 3600, secs / 60 % 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
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
    fn the_eta_scales_the_time_taken_by_the_share_left() {
        assert_eq!(eta(0, 10, Duration::from_secs(5)), None);
        assert_eq!(
            eta(2, 10, Duration::from_secs(5)),
            Some(Duration::from_secs(20))
        );
        assert_eq!(eta(10, 10, Duration::from_secs(5)), Some(Duration::ZERO));
        assert_eq!(human_duration(Duration::from_secs(200)), "3m20s");
        assert_eq!(human_duration(Duration::from_secs(3720)), "1h02m");
        assert_eq!(human_duration(Duration::from_secs(7)), "7s");
    }

    #[test]
    fn rates_are_in_binary_units() {
        assert_eq!(human_rate(0, Duration::from_secs(1)), "0.0 B");
        assert_eq!(human_rate(3 << 20, Duration::from_secs(2)), "1.5 MiB");
    }
}

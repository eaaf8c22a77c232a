//! One module per benchmark scenario, and what they share: running operations with a given
//! concurrency while timing each one.

pub mod blob_pull;
pub mod blob_push;
pub mod cache_pull;
pub mod cold_start;
pub mod images;
pub mod limits;
pub mod listing;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context;

/// Timings of a batch of operations.
#[derive(Debug)]
pub struct Timed {
    /// Wall-clock seconds from the first start to the last end.
    pub seconds: f64,
    /// Seconds of each operation, in completion order.
    pub each: Vec<f64>,
}

impl Timed {
    /// Operations per second over the wall-clock time.
    pub fn rate(&self) -> f64 {
        self.each.len() as f64 / self.seconds.max(1e-9)
    }

    /// Each operation's latency in milliseconds.
    pub fn millis(&self) -> Vec<f64> {
        self.each.iter().map(|s| s * 1000.0).collect()
    }
}

/// Runs `op(0..count)` with `concurrency` operations in flight, timing each; the first failure
/// fails the batch (with the operation's index in the message).
pub async fn concurrently<F, Fut>(count: usize, concurrency: usize, op: F) -> anyhow::Result<Timed>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.clamp(1, count.max(1)) {
        let (op, next) = (op.clone(), next.clone());
        workers.spawn(async move {
            let mut each = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return Ok::<Vec<f64>, anyhow::Error>(each);
                }
                let t = Instant::now();
                op(i).await.with_context(|| format!("operation {i}"))?;
                each.push(t.elapsed().as_secs_f64());
            }
        });
    }
    let mut each = Vec::with_capacity(count);
    while let Some(done) = workers.join_next().await {
        each.extend(done.context("a worker panicked")??);
    }
    Ok(Timed {
        seconds: started.elapsed().as_secs_f64(),
        each,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_operation_runs_once_and_a_failure_fails_the_batch() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let timed = concurrently(10, 3, move |i| {
            let log = log.clone();
            async move {
                log.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push(i);
                Ok(())
            }
        })
        .await
        .unwrap();
        assert_eq!(timed.each.len(), 10);
        let mut seen = seen.lock().unwrap().clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        let failed = concurrently(5, 2, |i| async move {
            anyhow::ensure!(i != 3, "boom");
            Ok(())
        })
        .await;
        assert!(failed.is_err());
    }
}

//! `blob-push`: pushes `--count` distinct blobs of `--size` bytes in one `--mode`
//! (`monolithic`, `chunked` with `--chunk` bytes per `PATCH`, or `streamed`: one `PATCH`
//! without `Content-Length`), `--concurrency` at a time, into `--repo`.
//!
//! Figure: MB/s over the whole batch (spread: each blob's own MB/s), and the server's peak RSS
//! and CPU seconds while it ran. The contents and digests are made before the clock starts;
//! every answer is checked as it comes (statuses, `Range` after each `PATCH`, the digest the
//! registry names), and after the clock stops every blob must answer `HEAD` with its size.
//!
//! ```text
//! bench blob-push --url URL [--pid PID] [--size 16MiB] [--count 64]
//!     [--mode monolithic|chunked|streamed] [--chunk 8MiB] [--concurrency 1] [--repo bench/push]
//! ```

use std::sync::Arc;

use anyhow::{bail, ensure};

use super::concurrently;
use crate::cli::{Flags, size_name};
use crate::client::{PushMode, Registry};
use crate::data::{Corpus, seed_of};
use crate::report::{Better, Line, Spread, mb_per_s};

const FLAGS: [&str; 6] = ["size", "count", "mode", "chunk", "concurrency", "repo"];

pub async fn run(args: &[String]) -> anyhow::Result<Vec<String>> {
    let flags = Flags::parse(args, &FLAGS)?;
    let size = flags.size("size", 16 << 20)?;
    let count = usize::try_from(flags.number("count", 64)?)?;
    let concurrency = usize::try_from(flags.number("concurrency", 1)?)?;
    let mode_name = flags.string("mode", "monolithic");
    let mode = parse_mode(&mode_name, flags.size("chunk", 8 << 20)?)?;
    let repo = flags.string("repo", "bench/push");
    ensure!(count > 0 && size > 0, "--count and --size must be positive");
    let registry = Registry::new(&flags.url()?)?;
    registry.ping().await?;

    let corpus = Arc::new(Corpus::new(
        seed_of(&format!("push {mode_name} {size} {repo}")),
        size,
        count,
    )?);
    let (timed, usage) = crate::server::watched(flags.pid()?, {
        let (registry, corpus, repo) = (registry.clone(), corpus.clone(), repo.clone());
        concurrently(count, concurrency, move |i| {
            let (registry, corpus, repo) = (registry.clone(), corpus.clone(), repo.clone());
            async move {
                registry
                    .push_blob(&repo, corpus.digest(i), corpus.blob(i), mode)
                    .await
            }
        })
    })
    .await?;
    for i in 0..count {
        let stored = registry.blob_size(&repo, corpus.digest(i)).await?;
        ensure!(
            stored == Some(size),
            "blob {i} answers HEAD with size {stored:?} after its push, expected {size}"
        );
    }

    let per_blob: Vec<f64> = timed.each.iter().map(|s| mb_per_s(size, *s)).collect();
    let total = size * count as u64;
    let mut line = Line::new(
        "blob-push",
        format!("{}×{count} {mode_name} c{concurrency}", size_name(size)),
    );
    line.figure(
        "throughput",
        mb_per_s(total, timed.seconds),
        "MB/s",
        Better::Higher,
        Spread::of(&per_blob),
    )
    .usage(usage)
    .detail("bytes", total)
    .detail("seconds", timed.seconds);
    if let PushMode::Chunked(chunk) = mode {
        line.detail("chunk", chunk);
    }
    Ok(vec![line.render(&flags)])
}

fn parse_mode(name: &str, chunk: u64) -> anyhow::Result<PushMode> {
    Ok(match name {
        "monolithic" => PushMode::Monolithic,
        "chunked" => PushMode::Chunked(chunk),
        "streamed" => PushMode::Streamed,
        other => bail!("--mode: monolithic, chunked or streamed, not {other:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!(parse_mode("chunked", 5).unwrap(), PushMode::Chunked(5));
        assert_eq!(parse_mode("streamed", 5).unwrap(), PushMode::Streamed);
        assert!(parse_mode("sideways", 5).is_err());
    }
}

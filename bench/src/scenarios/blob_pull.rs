//! `blob-pull`: pushes `--count` blobs of `--size` bytes (untimed, skipped when present),
//! then pulls them whole once per `--verify` method, and makes `--ranges` ranged reads of
//! `--range-size` bytes at pseudo-random offsets, `--range-concurrency` at a time.
//!
//! Lines: `blob-pull` per verify method (MB/s; spread: each blob's MB/s) — `digest` hashes
//! every body with SHA-256 and compares with the digest, as a verifying client does;
//! `compare` checks the bytes against what was pushed at memory speed (no digest work, still
//! no wrong byte accepted) — and `blob-range` (requests/s; spread: latency in ms). Every
//! answer's status, length, `Docker-Content-Digest` and `Content-Range` are checked.
//!
//! ```text
//! bench blob-pull --url URL [--pid PID] [--size 16MiB] [--count 64] [--verify digest,compare]
//!     [--concurrency 1] [--ranges 400] [--range-size 1MiB] [--range-concurrency 8] [--repo bench/pull]
//! ```

use std::sync::Arc;

use anyhow::{bail, ensure};

use super::concurrently;
use crate::cli::{Flags, size_name};
use crate::client::{PushMode, Registry, Verify};
use crate::data::{Corpus, seed_of};
use crate::report::{Better, Line, Spread, mb_per_s};

const FLAGS: [&str; 8] = [
    "size",
    "count",
    "verify",
    "concurrency",
    "ranges",
    "range-size",
    "range-concurrency",
    "repo",
];

pub async fn run(args: &[String]) -> anyhow::Result<Vec<String>> {
    let flags = Flags::parse(args, &FLAGS)?;
    let size = flags.size("size", 16 << 20)?;
    let count = usize::try_from(flags.number("count", 64)?)?;
    let concurrency = usize::try_from(flags.number("concurrency", 1)?)?;
    let ranges = usize::try_from(flags.number("ranges", 400)?)?;
    let range_size = flags.size("range-size", 1 << 20)?.min(size);
    let range_concurrency = usize::try_from(flags.number("range-concurrency", 8)?)?;
    let repo = flags.string("repo", "bench/pull");
    let methods = parse_methods(&flags.string("verify", "digest,compare"))?;
    ensure!(count > 0 && size > 0, "--count and --size must be positive");
    let registry = Registry::new(&flags.url()?)?;
    registry.ping().await?;

    let corpus = Arc::new(Corpus::new(
        seed_of(&format!("pull {size} {repo}")),
        size,
        count,
    )?);
    for i in 0..count {
        if registry.blob_size(&repo, corpus.digest(i)).await? != Some(size) {
            registry
                .push_blob(
                    &repo,
                    corpus.digest(i),
                    corpus.blob(i),
                    PushMode::Monolithic,
                )
                .await?;
        }
    }

    let mut lines = Vec::new();
    for (name, verify) in methods {
        let (timed, usage) = crate::server::watched(flags.pid()?, {
            let (registry, corpus, repo) = (registry.clone(), corpus.clone(), repo.clone());
            concurrently(count, concurrency, move |i| {
                let (registry, corpus, repo) = (registry.clone(), corpus.clone(), repo.clone());
                async move {
                    let blob = corpus.blob(i);
                    registry
                        .pull_blob(&repo, corpus.digest(i), &blob, verify)
                        .await
                        .map(drop)
                }
            })
        })
        .await?;
        let per_blob: Vec<f64> = timed.each.iter().map(|s| mb_per_s(size, *s)).collect();
        let total = size * count as u64;
        let mut line = Line::new(
            "blob-pull",
            format!("{}×{count} {name} c{concurrency}", size_name(size)),
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
        lines.push(line.render(&flags));
    }

    if ranges > 0 {
        let (timed, usage) = crate::server::watched(flags.pid()?, {
            let (registry, corpus, repo) = (registry.clone(), corpus.clone(), repo.clone());
            concurrently(ranges, range_concurrency, move |k| {
                let (registry, corpus, repo) = (registry.clone(), corpus.clone(), repo.clone());
                async move {
                    let (i, start) = range_at(k, corpus.len(), size, range_size);
                    let blob = corpus.blob(i);
                    registry
                        .pull_range(
                            &repo,
                            corpus.digest(i),
                            &blob,
                            start,
                            start + range_size - 1,
                        )
                        .await
                }
            })
        })
        .await?;
        let mut line = Line::new(
            "blob-range",
            format!(
                "{} of {} c{range_concurrency}",
                size_name(range_size),
                size_name(size)
            ),
        );
        line.figure(
            "requests",
            timed.rate(),
            "req/s",
            Better::Higher,
            Spread::of(&timed.millis()),
        )
        .figure(
            "throughput",
            mb_per_s(range_size * ranges as u64, timed.seconds),
            "MB/s",
            Better::Higher,
            None,
        )
        .usage(usage)
        .detail("latency_unit", "ms");
        lines.push(line.render(&flags));
    }
    Ok(lines)
}

/// The blob and start offset of the `k`th ranged read (a fixed pseudo-random walk).
fn range_at(k: usize, blobs: usize, size: u64, range: u64) -> (usize, u64) {
    let x = (k as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let blob = usize::try_from(x % blobs as u64).unwrap_or(0);
    let start = (x >> 17) % (size - range + 1);
    (blob, start)
}

fn parse_methods(list: &str) -> anyhow::Result<Vec<(&'static str, Verify)>> {
    list.split(',')
        .filter(|m| !m.is_empty())
        .map(|m| match m.trim() {
            "digest" => Ok(("digest", Verify::Digest)),
            "compare" => Ok(("compare", Verify::Compare)),
            other => bail!("--verify: digest and/or compare, not {other:?}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_stay_inside_the_blobs() {
        for k in 0..1000 {
            let (blob, start) = range_at(k, 7, 10_000, 1_000);
            assert!(blob < 7 && start + 1_000 <= 10_000);
        }
        assert_eq!(range_at(3, 1, 100, 100), (0, 0));
    }

    #[test]
    fn verify_methods_parse() {
        assert_eq!(parse_methods("digest,compare").unwrap().len(), 2);
        assert!(parse_methods("trust").is_err());
    }
}

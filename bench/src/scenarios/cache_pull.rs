//! `cache-pull`: the pull-through cache under a crowd. Pushes one blob of `--size` bytes (new
//! bytes each run, so nothing is cached) to the upstream at `--upstream` under `--repo`, pulls
//! it once straight from the upstream, then `--clients` concurrent first pulls of it through the
//! cache's prefix, alternating between `--url` and `--peer` (two instances sharing metadata and
//! storage), then the same crowd again from the filled cache. Every body is digest-verified.
//!
//! Lines: `cache-pull` cases `direct` (MB/s, time to first byte), `first pulls` (aggregate MB/s,
//! time to first byte and per-client seconds as spreads, peak RSS of each instance) and `cached
//! pulls`. How many times the upstream was asked for the blob is in its request log
//! (`scripts/bench.sh` counts it).
//!
//! ```text
//! bench cache-pull --upstream URL --url CACHE [--peer CACHE2] [--pid PID] [--peer-pid PID2]
//!     [--size 200MiB] [--clients 20] [--prefix cache/origin] [--repo bench/cache]
//! ```

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};
use sha2::{Digest as _, Sha256};

use crate::cli::{Flags, size_name};
use crate::client::{PushMode, Registry};
use crate::data::{Corpus, hex, seed_of};
use crate::report::{Better, Line, Spread, mb_per_s};
use crate::server::Watch;

const FLAGS: [&str; 7] = [
    "upstream", "peer", "peer-pid", "size", "clients", "prefix", "repo",
];

/// One pull: seconds to the first byte and to the last.
struct Pulled {
    first_byte: f64,
    total: f64,
}

pub async fn run(args: &[String]) -> anyhow::Result<Vec<String>> {
    let flags = Flags::parse(args, &FLAGS)?;
    let size = flags.size("size", 200 << 20)?;
    let clients = usize::try_from(flags.number("clients", 20)?)?;
    let prefix = flags.string("prefix", "cache/origin");
    let repo = flags.string("repo", "bench/cache");
    let upstream_url = flags
        .get("upstream")
        .context("--upstream URL is required")?;
    let first = flags.url()?;
    let peer = flags.get("peer").unwrap_or(&first).to_owned();
    ensure!(
        clients > 0 && size > 0,
        "--clients and --size must be positive"
    );
    let pids: Vec<u32> = [flags.get("pid"), flags.get("peer-pid")]
        .into_iter()
        .flatten()
        .map(|p| p.parse().context("--pid/--peer-pid: a process id"))
        .collect::<anyhow::Result<_>>()?;
    let watches: Vec<Watch> = pids
        .iter()
        .map(|&p| Watch::start(p))
        .collect::<anyhow::Result<_>>()?;

    let upstream = Registry::new(upstream_url)?;
    upstream.ping().await?;
    let nonce = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    let corpus = Corpus::new(seed_of(&format!("cache {size} {nonce}")), size, 1)?;
    let digest = corpus.digest(0).to_owned();
    upstream
        .push_blob(&repo, &digest, corpus.blob(0), PushMode::Streamed)
        .await?;
    let http = reqwest::Client::builder().build()?;
    let direct_url = format!("{upstream_url}/v2/{repo}/blobs/{digest}");
    let direct = pull(&http, &direct_url, &digest, size).await?;

    let cached_path = format!("/v2/{prefix}/{repo}/blobs/{digest}");
    let urls: Vec<String> = (0..clients)
        .map(|i| format!("{}{cached_path}", if i % 2 == 0 { &first } else { &peer }))
        .collect();
    let (first_pulls, first_seconds) = crowd(&http, &urls, &digest, size).await?;
    let (cached_pulls, cached_seconds) = crowd(&http, &urls, &digest, size).await?;
    let usages = watches
        .into_iter()
        .map(Watch::finish)
        .collect::<anyhow::Result<Vec<_>>>()?;

    let name = size_name(size);
    let mut lines = Vec::new();
    let mut line = Line::new("cache-pull", format!("direct from the upstream {name}"));
    line.figure(
        "throughput",
        mb_per_s(size, direct.total),
        "MB/s",
        Better::Higher,
        None,
    )
    .figure(
        "time to first byte",
        direct.first_byte * 1000.0,
        "ms",
        Better::Lower,
        None,
    );
    lines.push(line.render(&flags));
    for (case, pulls, seconds) in [
        ("first pulls", &first_pulls, first_seconds),
        ("cached pulls", &cached_pulls, cached_seconds),
    ] {
        let ttfb: Vec<f64> = pulls.iter().map(|p| p.first_byte * 1000.0).collect();
        let each: Vec<f64> = pulls.iter().map(|p| p.total).collect();
        let mut line = Line::new(
            "cache-pull",
            format!(
                "{case} {name} c{clients} through {} instances",
                if peer == first { 1 } else { 2 }
            ),
        );
        line.figure(
            "aggregate throughput",
            mb_per_s(size * clients as u64, seconds),
            "MB/s",
            Better::Higher,
            None,
        )
        .figure(
            "time to first byte (median)",
            Spread::of(&ttfb).map_or(0.0, |s| s.p50),
            "ms",
            Better::Lower,
            Spread::of(&ttfb),
        )
        .figure("wall time", seconds, "s", Better::Lower, Spread::of(&each));
        if case == "first pulls" {
            for (i, usage) in usages.iter().enumerate() {
                line.figure(
                    &format!("instance {} peak RSS", i + 1),
                    usage.peak_rss_mib,
                    "MiB",
                    Better::Lower,
                    None,
                );
            }
        }
        line.detail("digest", digest.clone());
        lines.push(line.render(&flags));
    }
    Ok(lines)
}

/// All `urls` pulled at once; each pull and the wall time.
async fn crowd(
    http: &reqwest::Client,
    urls: &[String],
    digest: &str,
    size: u64,
) -> anyhow::Result<(Vec<Pulled>, f64)> {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for url in urls {
        let (http, url, digest) = (http.clone(), url.clone(), digest.to_owned());
        tasks.spawn(async move { pull(&http, &url, &digest, size).await });
    }
    let mut pulls = Vec::new();
    while let Some(done) = tasks.join_next().await {
        pulls.push(done??);
    }
    Ok((pulls, started.elapsed().as_secs_f64()))
}

/// One `GET`, following redirects, the body hashed and checked against the digest.
async fn pull(
    http: &reqwest::Client,
    url: &str,
    digest: &str,
    size: u64,
) -> anyhow::Result<Pulled> {
    let started = Instant::now();
    let mut response = http
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    ensure!(response.status() == 200, "GET {url}: {}", response.status());
    let mut hasher = Sha256::new();
    let mut received = 0u64;
    let mut first_byte = None;
    while let Some(chunk) = response
        .chunk()
        .await
        .with_context(|| format!("GET {url}: body"))?
    {
        first_byte.get_or_insert_with(|| started.elapsed().as_secs_f64());
        hasher.update(&chunk);
        received += chunk.len() as u64;
    }
    ensure!(
        received == size,
        "GET {url}: {received} bytes, expected {size}"
    );
    let computed = format!("sha256:{}", hex(&hasher.finalize()));
    ensure!(computed == digest, "GET {url}: body hashes to {computed}");
    Ok(Pulled {
        first_byte: first_byte.unwrap_or_default(),
        total: started.elapsed().as_secs_f64(),
    })
}

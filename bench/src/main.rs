//! Benchmarks of registries over HTTP, one scenario per subcommand, each printing one JSON
//! line per measurement on stdout (progress and errors on stderr). Every answer is checked
//! (statuses, digests, lengths, bytes): a fast but wrong server fails instead of scoring.
//!
//! ```text
//! bench blob-push    --url URL [--pid PID] [--size 16MiB] [--count 64] [--mode monolithic|chunked|streamed] ...
//! bench blob-pull    --url URL [--pid PID] [--size 16MiB] [--count 64] [--verify digest,compare] [--ranges 400] ...
//! bench small-images --url URL [--pid PID] [--images 200] [--levels 1,8,32]
//! bench tags-list    --url URL [--pid PID] [--tags 1000] [--requests 200]
//! bench catalog      --url URL [--pid PID] [--repos 500] [--requests 100]
//! bench cache-pull   --upstream URL --url URL [--peer URL] [--pid PID] [--peer-pid PID] [--size 200MiB] [--clients 20]
//! bench cold-start   --binary PATH [--runs 20] [--path /v2/] [--env K=V]... [--arg A]...
//! bench limits       [--size 1GiB] [--dir DIR]      (sha256 one core, loopback TCP, write+fsync)
//! bench table        [--a project] [--b distribution] results.jsonl...
//! bench size         16MiB                          (prints the bytes, for scripts)
//! ```
//!
//! Registry scenarios also take `--label` and `--storage` (what the line is about, for
//! `bench table`); `--pid` adds the server's peak RSS and CPU seconds (from `/proc`). Each
//! scenario's flags and defaults (the issue's sizes) are documented in its module.
//! `scripts/bench.sh` runs them all against this project and distribution.

mod cli;
mod client;
mod data;
mod report;
mod scenarios;
mod server;
mod table;

use std::process::ExitCode;

use scenarios::{blob_pull, blob_push, cache_pull, cold_start, images, limits, listing};

const USAGE: &str = "usage: bench <blob-push|blob-pull|small-images|tags-list|catalog|cache-pull|cold-start|limits|table> [--flag value]... (see bench/src/main.rs)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    let result = match args.first().map(String::as_str) {
        Some("cold-start") => {
            cold_start::Options::parse(rest).and_then(|options| cold_start::run(&options))
        }
        Some("limits") => limits::run(rest),
        Some("table") => table::run(rest),
        Some("size") => rest
            .first()
            .ok_or_else(|| anyhow::anyhow!("usage: bench size 16MiB"))
            .and_then(|raw| cli::parse_size(raw))
            .map(|bytes| vec![bytes.to_string()]),
        Some("blob-push") => block_on(blob_push::run(rest)),
        Some("blob-pull") => block_on(blob_pull::run(rest)),
        Some("small-images") => block_on(images::run(rest)),
        Some("tags-list") => block_on(listing::tags(rest)),
        Some("catalog") => block_on(listing::catalog(rest)),
        Some("cache-pull") => block_on(cache_pull::run(rest)),
        _ => Err(anyhow::anyhow!(USAGE)),
    };
    match result {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn block_on<F: std::future::Future<Output = anyhow::Result<Vec<String>>>>(
    work: F,
) -> anyhow::Result<Vec<String>> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(work)
}

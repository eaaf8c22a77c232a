//! Benchmarks of the real binaries, one scenario per subcommand, each printing one JSON line
//! per measurement on stdout (progress and errors on stderr).
//!
//! ```text
//! bench cold-start --binary target/release/manifest [--runs 20] [--path /v2/] [--path /healthz] [--env K=V]
//! ```
//!
//! Scenarios live in `scenarios/`, one module each, so later ones (push and pull throughput,
//! issue 10) sit beside `cold_start` and reuse its process helpers.

mod scenarios;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("cold-start") => scenarios::cold_start::Options::parse(&args[1..])
            .and_then(|options| scenarios::cold_start::run(&options)),
        _ => Err(anyhow::anyhow!(
            "usage: bench cold-start --binary PATH [--runs N] [--path P]... [--env K=V]..."
        )),
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

//! `cold-start`: how long a binary takes from `exec` to its first `200` on a path.
//!
//! Each run starts the binary afresh, on a new empty `DATA_DIR` (so the embedded SQLite file
//! is created and migrated, as on a first start) and a free loopback port, then polls the path
//! with a plain HTTP/1.1 `GET` over a new connection every millisecond until it answers `200`.
//! The time is taken from just before `spawn` to the end of the first `200` status line. The
//! process is killed after each run. A path that answers anything but `200` fails the run (the
//! binary does not serve it), so `--path /v2/` suits `manifest` and `registry`, and `/healthz`
//! suits every binary.
//!
//! Another registry (distribution) is measured the same way: `--arg` adds command-line
//! arguments, and `{port}` and `{data}` in `--arg` and `--env` values stand for the run's port
//! and data directory, e.g. `--binary docker-registry --arg serve --arg config.yml --env
//! REGISTRY_HTTP_ADDR=127.0.0.1:{port} --env REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY={data}`.
//! `--label` and `--storage` name the line for `bench table`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long one run may take before it counts as a failure.
const RUN_DEADLINE: Duration = Duration::from_secs(30);
/// Pause between two polls while the port is not yet open.
const POLL_INTERVAL: Duration = Duration::from_millis(1);

/// What to measure.
#[derive(Debug)]
pub struct Options {
    pub binary: PathBuf,
    pub runs: usize,
    pub paths: Vec<String>,
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
    pub label: String,
    pub storage: String,
}

impl Options {
    /// Parses `--binary PATH [--runs N] [--path P]... [--env K=V]... [--arg A]... [--label L]
    /// [--storage S]`.
    pub fn parse(args: &[String]) -> anyhow::Result<Options> {
        let mut options = Options {
            binary: PathBuf::new(),
            runs: 20,
            paths: Vec::new(),
            env: Vec::new(),
            args: Vec::new(),
            label: "registry".to_owned(),
            storage: "disk".to_owned(),
        };
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let value = args
                .next()
                .with_context(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--binary" => options.binary = PathBuf::from(value),
                "--runs" => options.runs = value.parse().context("--runs: a positive integer")?,
                "--path" => options.paths.push(value.clone()),
                "--env" => {
                    let (k, v) = value.split_once('=').context("--env wants K=V")?;
                    options.env.push((k.to_owned(), v.to_owned()));
                }
                "--arg" => options.args.push(value.clone()),
                "--label" => options.label.clone_from(value),
                "--storage" => options.storage.clone_from(value),
                other => bail!("unknown option {other}"),
            }
        }
        if options.binary.as_os_str().is_empty() {
            bail!("--binary is required");
        }
        if options.runs == 0 {
            bail!("--runs must be at least 1");
        }
        if options.paths.is_empty() {
            options.paths = vec!["/v2/".to_owned(), "/healthz".to_owned()];
        }
        Ok(options)
    }
}

/// Runs the scenario for every path; one JSON line per path.
pub fn run(options: &Options) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    for path in &options.paths {
        let mut samples = Vec::with_capacity(options.runs);
        for i in 0..options.runs {
            let elapsed = one_run(options, path)
                .with_context(|| format!("run {} of {} on {path}", i + 1, options.runs))?;
            samples.push(elapsed);
        }
        lines.push(summary(options, path, &mut samples).to_string());
    }
    Ok(lines)
}

/// The JSON line for one path's samples (in milliseconds), in `bench table`'s form.
fn summary(options: &Options, path: &str, samples: &mut [f64]) -> serde_json::Value {
    samples.sort_by(f64::total_cmp);
    let round = |ms: f64| (ms * 100.0).round() / 100.0;
    let (p50, p90) = (percentile(samples, 50), percentile(samples, 90));
    let (min, max) = (
        samples.first().copied().unwrap_or_default(),
        samples.last().copied().unwrap_or_default(),
    );
    serde_json::json!({
        "scenario": "cold-start",
        "case": format!("exec to 200 on {path}"),
        "label": options.label,
        "storage": options.storage,
        "binary": options.binary.display().to_string(),
        "path": path,
        "runs": samples.len(),
        "p50_ms": round(p50),
        "p90_ms": round(p90),
        "max_ms": round(max),
        "figures": [{
            "name": "exec to first 200 (p50)",
            "value": round(p50),
            "unit": "ms",
            "better": "lower",
            "spread": {"n": samples.len(), "min": round(min), "p50": round(p50), "p90": round(p90), "max": round(max)},
        }],
        "load": crate::server::load(),
    })
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], p: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// Kills the child when the run ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One start of the binary: milliseconds from spawn to the first 200 on `path`.
fn one_run(options: &Options, path: &str) -> anyhow::Result<f64> {
    let data = tempfile::tempdir().context("temp dir")?;
    let port = free_port()?;
    let mut command = Command::new(&options.binary);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("DATA_DIR", data.path())
        .env("LOG_LEVEL", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let fill = |v: &str| {
        v.replace("{port}", &port.to_string())
            .replace("{data}", &data.path().display().to_string())
    };
    for (k, v) in &options.env {
        command.env(k, fill(v));
    }
    for arg in &options.args {
        command.arg(fill(arg));
    }
    let started = Instant::now();
    let mut child = Running(
        command
            .spawn()
            .with_context(|| format!("starting {}", options.binary.display()))?,
    );
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    loop {
        if let Some(status) = child.0.try_wait()? {
            bail!("the binary exited with {status} before answering");
        }
        if let Some(status) = get_status(addr, path) {
            if status == 200 {
                return Ok(started.elapsed().as_secs_f64() * 1000.0);
            }
            bail!("GET {path} answered {status}: this binary does not serve it");
        }
        if started.elapsed() > RUN_DEADLINE {
            bail!("no answer within {RUN_DEADLINE:?}");
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// The status of `GET path` on a new connection, or `None` while nothing listens.
fn get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(100)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0_u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind a free port")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let sorted: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 50), 5.0);
        assert_eq!(percentile(&sorted, 90), 9.0);
        assert_eq!(percentile(&sorted, 100), 10.0);
        assert_eq!(percentile(&[7.0], 90), 7.0);
    }

    #[test]
    fn options_default_paths_and_reject_unknown_flags() {
        let args: Vec<String> = ["--binary", "x", "--runs", "3", "--arg", "serve"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let options = Options::parse(&args).unwrap();
        assert_eq!(options.runs, 3);
        assert_eq!(options.paths, ["/v2/", "/healthz"]);
        assert_eq!(options.args, ["serve"]);
        assert_eq!(options.label, "registry");
        assert!(Options::parse(&["--bogus".to_owned(), "1".to_owned()]).is_err());
        assert!(Options::parse(&[]).is_err());
    }
}

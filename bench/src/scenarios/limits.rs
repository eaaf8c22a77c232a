//! `limits`: the physical limits that bound the registry figures, measured on this machine in
//! the same run, one `limit` line each:
//!
//! - `sha256`: SHA-256 of `--size` bytes on one core (every pushed byte is hashed once);
//! - `tcp`: `--size` bytes over one loopback TCP connection (every pushed or pulled byte
//!   crosses one);
//! - `write+fsync`: `--size` bytes written sequentially in 1 MiB writes into a new file under
//!   `--dir`, then `fsync` (a pushed blob must be durable before the registry answers).
//!
//! ```text
//! bench limits [--size 1GiB] [--dir /tmp] [--storage disk] [--only sha256,tcp,write]
//! ```

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::Instant;

use anyhow::Context;
use sha2::{Digest as _, Sha256};

use crate::cli::{Flags, size_name};
use crate::data::random_bytes;
use crate::report::{Better, Line, mb_per_s};

const BLOCK: usize = 1 << 20;

pub fn run(args: &[String]) -> anyhow::Result<Vec<String>> {
    let flags = Flags::parse(args, &["size", "dir", "only"])?;
    let size = flags.size("size", 1 << 30)?.max(BLOCK as u64);
    let dir = flags.string("dir", &std::env::temp_dir().display().to_string());
    let only = flags.string("only", "sha256,tcp,write");
    let block = random_bytes(1, BLOCK);
    let mut lines = Vec::new();
    for which in only.split(',') {
        let (name, seconds) = match which.trim() {
            "sha256" => ("sha256 one core", sha256(&block, size)),
            "tcp" => ("loopback TCP one stream", tcp(&block, size)?),
            "write" => ("write+fsync", write_fsync(&block, size, &dir)?),
            other => anyhow::bail!("--only: sha256, tcp, write; not {other:?}"),
        };
        let mut line = Line::new("limit", format!("{name} {}", size_name(size)));
        line.figure(
            "throughput",
            mb_per_s(size, seconds),
            "MB/s",
            Better::Higher,
            None,
        );
        if which.trim() == "write" {
            line.detail("dir", dir.clone());
        }
        lines.push(line.render(&flags));
    }
    Ok(lines)
}

fn sha256(block: &[u8], size: u64) -> f64 {
    let started = Instant::now();
    let mut hasher = Sha256::new();
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        hasher.update(&block[..n]);
        left -= n as u64;
    }
    std::hint::black_box(hasher.finalize());
    started.elapsed().as_secs_f64()
}

/// Seconds until the receiver has read every byte.
fn tcp(block: &[u8], size: u64) -> anyhow::Result<f64> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind loopback")?;
    let addr = listener.local_addr()?;
    let receiver = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut stream, _) = listener.accept()?;
        let mut buffer = vec![0u8; BLOCK];
        let mut total = 0u64;
        loop {
            let n = stream.read(&mut buffer)?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
        }
    });
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).context("connect loopback")?;
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        stream.write_all(&block[..n])?;
        left -= n as u64;
    }
    drop(stream);
    let received = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("receiver panicked"))??;
    anyhow::ensure!(received == size, "received {received} of {size} bytes");
    Ok(started.elapsed().as_secs_f64())
}

fn write_fsync(block: &[u8], size: u64, dir: &str) -> anyhow::Result<f64> {
    let file = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("a file in {dir}"))?;
    let started = Instant::now();
    let mut out = file.as_file();
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        out.write_all(&block[..n])?;
        left -= n as u64;
    }
    out.sync_all()?;
    Ok(started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limit_measures_something() {
        let args: Vec<String> = [
            "--size",
            "2MiB",
            "--dir",
            &std::env::temp_dir().display().to_string(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let lines = run(&args).unwrap();
        assert_eq!(lines.len(), 3);
        for line in lines {
            let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert!(parsed["figures"][0]["value"].as_f64().unwrap() > 0.0);
        }
    }
}

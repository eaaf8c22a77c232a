//! The server's resources during a scenario, from `/proc/<pid>`: peak resident memory and
//! CPU seconds (user + system, all threads), and the machine's load average.
//!
//! The peak is the kernel's high-water mark (`VmHWM`), reset at the start of the scenario by
//! writing `5` to `/proc/<pid>/clear_refs` (root or the process's owner may), so that an
//! earlier scenario's peak does not count; a sampler thread also records the largest `VmRSS`
//! it sees every 10 ms, which is the figure when the reset is refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`; 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// Watches one process from `start` to `finish`.
#[derive(Debug)]
pub struct Watch {
    pid: u32,
    hwm_reset: bool,
    cpu_ticks_at_start: u64,
    stop: Arc<AtomicBool>,
    sampled_peak_kib: Arc<AtomicU64>,
    sampler: Option<JoinHandle<()>>,
}

/// What the process used between `start` and `finish`.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub peak_rss_mib: f64,
    pub cpu_seconds: f64,
}

impl Watch {
    pub fn start(pid: u32) -> anyhow::Result<Watch> {
        let cpu_ticks_at_start = cpu_ticks(pid)?;
        let hwm_reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
        let stop = Arc::new(AtomicBool::new(false));
        let sampled_peak_kib = Arc::new(AtomicU64::new(0));
        let sampler = {
            let (stop, peak) = (stop.clone(), sampled_peak_kib.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(rss) = status_kib(pid, "VmRSS:") {
                        peak.fetch_max(rss, Ordering::Relaxed);
                    }
                    std::thread::sleep(SAMPLE_EVERY);
                }
            })
        };
        Ok(Watch {
            pid,
            hwm_reset,
            cpu_ticks_at_start,
            stop,
            sampled_peak_kib,
            sampler: Some(sampler),
        })
    }

    pub fn finish(mut self) -> anyhow::Result<Usage> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(sampler) = self.sampler.take() {
            let _ = sampler.join();
        }
        let mut peak_kib = self.sampled_peak_kib.load(Ordering::Relaxed);
        if self.hwm_reset {
            peak_kib = peak_kib.max(status_kib(self.pid, "VmHWM:")?);
        }
        let ticks = cpu_ticks(self.pid)?.saturating_sub(self.cpu_ticks_at_start);
        Ok(Usage {
            peak_rss_mib: round2(peak_kib as f64 / 1024.0),
            cpu_seconds: round2(ticks as f64 / TICKS_PER_SECOND),
        })
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Runs `work` while watching `pid` (when given).
pub async fn watched<T, F>(pid: Option<u32>, work: F) -> anyhow::Result<(T, Option<Usage>)>
where
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    let watch = pid.map(Watch::start).transpose()?;
    let out = work.await?;
    let usage = watch.map(Watch::finish).transpose()?;
    Ok((out, usage))
}

/// utime + stime of the whole process, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat (is the server running?)"))?;
    parse_cpu_ticks(&stat).with_context(|| format!("parsing /proc/{pid}/stat"))
}

/// Fields 14 and 15 of `stat`, counted after the parenthesised command name (which may hold
/// spaces).
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state); utime is field 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` line of `/proc/<pid>/status`.
fn status_kib(pid: u32, key: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .with_context(|| format!("no {key} in /proc/{pid}/status"))
}

/// The 1-minute load average and the number of CPUs, to read every figure against.
pub fn load() -> serde_json::Value {
    let load1: Option<f64> = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().and_then(|v| v.parse().ok()));
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    serde_json::json!({ "load1": load1, "cpus": cpus })
}

pub fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_skip_a_command_name_with_spaces() {
        let stat = "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 4 0";
        assert_eq!(parse_cpu_ticks(stat), Some(280));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn watching_this_process_reads_its_own_figures() {
        let watch = Watch::start(std::process::id()).unwrap();
        let usage = watch.finish().unwrap();
        assert!(usage.peak_rss_mib > 0.0);
        assert!(usage.cpu_seconds >= 0.0);
    }
}

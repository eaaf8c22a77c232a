//! Command-line flags of the scenarios: `--name value` pairs, each scenario naming the flags
//! it knows (an unknown or repeated-by-mistake flag is an error, never silently ignored), and
//! the common ones every registry scenario takes (`--url`, `--pid`, `--label`, `--storage`).

use std::collections::BTreeMap;

use anyhow::{Context, bail};

/// Flags of one scenario, parsed from `--name value` pairs.
#[derive(Debug)]
pub struct Flags {
    values: BTreeMap<String, Vec<String>>,
}

/// Flags every scenario that drives a registry takes.
pub const COMMON: [&str; 4] = ["url", "pid", "label", "storage"];

impl Flags {
    /// Parses `args`, refusing flags not in `known` or in [`COMMON`].
    pub fn parse(args: &[String], known: &[&str]) -> anyhow::Result<Flags> {
        let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let Some(name) = flag.strip_prefix("--") else {
                bail!("expected a --flag, found {flag:?}");
            };
            if !known.contains(&name) && !COMMON.contains(&name) {
                bail!("unknown option --{name} (this scenario takes: {})", {
                    let mut all: Vec<&str> = known.to_vec();
                    all.extend(COMMON);
                    all.join(", ")
                });
            }
            let value = args
                .next()
                .with_context(|| format!("--{name} needs a value"))?;
            values
                .entry(name.to_owned())
                .or_default()
                .push(value.clone());
        }
        Ok(Flags { values })
    }

    /// The last value of a flag, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    pub fn string(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_owned()
    }

    pub fn number(&self, name: &str, default: u64) -> anyhow::Result<u64> {
        self.get(name).map_or(Ok(default), |v| {
            v.parse()
                .with_context(|| format!("--{name}: a non-negative integer"))
        })
    }

    /// A byte size such as `16MiB`, `1GiB`, `4096`.
    pub fn size(&self, name: &str, default: u64) -> anyhow::Result<u64> {
        self.get(name).map_or(Ok(default), |v| {
            parse_size(v).with_context(|| format!("--{name}: a size such as 16MiB"))
        })
    }

    /// A comma-separated list of numbers, e.g. `1,8,32`.
    pub fn numbers(&self, name: &str, default: &[u64]) -> anyhow::Result<Vec<u64>> {
        let Some(raw) = self.get(name) else {
            return Ok(default.to_vec());
        };
        raw.split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .with_context(|| format!("--{name}: numbers separated by commas"))
            })
            .collect()
    }

    /// The registry's base URL (`--url`), without a trailing slash.
    pub fn url(&self) -> anyhow::Result<String> {
        let url = self.get("url").context("--url is required")?;
        if !url.starts_with("http://") {
            bail!("--url must be an http:// URL");
        }
        Ok(url.trim_end_matches('/').to_owned())
    }

    /// The server's process id (`--pid`), for its memory and CPU figures.
    pub fn pid(&self) -> anyhow::Result<Option<u32>> {
        self.get("pid")
            .map(|p| p.parse().context("--pid: a process id"))
            .transpose()
    }
}

/// Parses `16MiB`, `512KiB`, `1GiB`, `10MB`, or a plain number of bytes.
pub fn parse_size(raw: &str) -> anyhow::Result<u64> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let number: u64 = number.parse().context("a number first")?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => bail!("unknown unit {other:?}"),
    };
    number.checked_mul(factor).context("size overflows")
}

/// `16MiB` for 16777216, `1000B` otherwise: sizes as people read them.
pub fn size_name(bytes: u64) -> String {
    for (unit, factor) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= factor && bytes.is_multiple_of(factor) {
            return format!("{}{unit}", bytes / factor);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_size("16MiB").unwrap(), 16 << 20);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("10MB").unwrap(), 10_000_000);
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("3 parsecs").is_err());
        assert_eq!(size_name(16 << 20), "16MiB");
        assert_eq!(size_name(1 << 30), "1GiB");
        assert_eq!(size_name(1000), "1000B");
    }

    #[test]
    fn flags_refuse_unknown_names_and_parse_lists() {
        let flags = Flags::parse(
            &args(&["--count", "3", "--levels", "1,8"]),
            &["count", "levels"],
        )
        .unwrap();
        assert_eq!(flags.number("count", 1).unwrap(), 3);
        assert_eq!(flags.numbers("levels", &[1]).unwrap(), [1, 8]);
        assert_eq!(flags.number("absent", 7).unwrap(), 7);
        assert!(Flags::parse(&args(&["--bogus", "1"]), &["count"]).is_err());
        assert!(Flags::parse(&args(&["--count"]), &["count"]).is_err());
        assert!(Flags::parse(&args(&["count", "1"]), &["count"]).is_err());
        let flags = Flags::parse(&args(&["--url", "http://127.0.0.1:5000/"]), &[]).unwrap();
        assert_eq!(flags.url().unwrap(), "http://127.0.0.1:5000");
    }
}

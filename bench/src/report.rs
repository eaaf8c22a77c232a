//! The JSON line a scenario prints: what was measured (`scenario`, `case`), against what
//! (`label`, `storage`, from the common flags), its `figures` (each with a unit, which way is
//! better, and the spread over the repetitions inside the scenario), the server's resources,
//! and the machine's load. `bench table` reads these lines back.

use serde_json::{Value, json};

use crate::cli::Flags;
use crate::server::{Usage, round2};

/// One scenario's result.
#[derive(Debug)]
pub struct Line {
    scenario: String,
    case: String,
    figures: Vec<Value>,
    details: serde_json::Map<String, Value>,
}

/// Which way a figure improves.
#[derive(Debug, Clone, Copy)]
pub enum Better {
    Higher,
    Lower,
}

impl Line {
    pub fn new(scenario: &str, case: impl Into<String>) -> Line {
        Line {
            scenario: scenario.to_owned(),
            case: case.into(),
            figures: Vec::new(),
            details: serde_json::Map::new(),
        }
    }

    /// Adds a figure; `spread` is the distribution of its per-operation samples, if any.
    pub fn figure(
        &mut self,
        name: &str,
        value: f64,
        unit: &str,
        better: Better,
        spread: Option<Spread>,
    ) -> &mut Line {
        let mut figure = json!({
            "name": name,
            "value": round2(value),
            "unit": unit,
            "better": match better { Better::Higher => "higher", Better::Lower => "lower" },
        });
        if let Some(spread) = spread {
            figure["spread"] = spread.to_json();
        }
        self.figures.push(figure);
        self
    }

    /// Adds the server's peak RSS and CPU seconds.
    pub fn usage(&mut self, usage: Option<Usage>) -> &mut Line {
        if let Some(usage) = usage {
            self.figure(
                "server peak RSS",
                usage.peak_rss_mib,
                "MiB",
                Better::Lower,
                None,
            );
            self.figure("server CPU", usage.cpu_seconds, "s", Better::Lower, None);
        }
        self
    }

    pub fn detail(&mut self, key: &str, value: impl Into<Value>) -> &mut Line {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// The line, with `label` and `storage` from the flags and the load now.
    pub fn render(&self, flags: &Flags) -> String {
        let mut line = json!({
            "scenario": self.scenario,
            "case": self.case,
            "label": flags.string("label", "registry"),
            "storage": flags.string("storage", "unknown"),
            "figures": self.figures,
            "load": crate::server::load(),
        });
        for (k, v) in &self.details {
            line[k] = v.clone();
        }
        line.to_string()
    }
}

/// Percentiles of per-operation samples (nearest rank), and how many there were.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub n: usize,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(samples: &[f64]) -> Option<Spread> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        Some(Spread {
            n: sorted.len(),
            min: sorted[0],
            p50: percentile(&sorted, 50),
            p90: percentile(&sorted, 90),
            max: sorted[sorted.len() - 1],
        })
    }

    fn to_json(self) -> Value {
        json!({
            "n": self.n,
            "min": round2(self.min),
            "p50": round2(self.p50),
            "p90": round2(self.p90),
            "max": round2(self.max),
        })
    }
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[f64], p: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// Megabytes (10^6 bytes) per second.
pub fn mb_per_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / 1e6 / seconds.max(1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_uses_nearest_rank() {
        let samples: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        let spread = Spread::of(&samples).unwrap();
        assert_eq!(
            (spread.n, spread.min, spread.p50, spread.p90, spread.max),
            (10, 1.0, 5.0, 9.0, 10.0)
        );
        assert!(Spread::of(&[]).is_none());
    }

    #[test]
    fn a_line_carries_its_labels_and_figures() {
        let flags = Flags::parse(&["--label".to_owned(), "project".to_owned()], &[]).unwrap();
        let mut line = Line::new("blob-push", "16MiB×2 monolithic");
        line.figure(
            "throughput",
            123.456,
            "MB/s",
            Better::Higher,
            Spread::of(&[1.0, 2.0]),
        );
        let parsed: Value = serde_json::from_str(&line.render(&flags)).unwrap();
        assert_eq!(parsed["label"], "project");
        assert_eq!(parsed["figures"][0]["value"], 123.46);
        assert_eq!(parsed["figures"][0]["spread"]["max"], 2.0);
    }
}

//! The scheduled jobs' settings (the `jobs` binary, and the single binary's timer).

use serde::Deserialize;

use super::{ConfigError, Vars};

/// Settings of the jobs.
#[derive(Debug, Clone, Deserialize)]
pub struct JobsConfig {
    /// `GC_GRACE_SECS`: blobs younger than this, and links used more recently than this (see
    /// the GC protocol in `registry_jobs`), are never collected.
    #[serde(default = "default_day")]
    pub gc_grace_secs: u64,
    /// `UPLOAD_MAX_AGE_SECS`: upload sessions untouched for this long are abandoned.
    #[serde(default = "default_day")]
    pub upload_max_age_secs: u64,
    /// `JOB_BATCH_SIZE`: rows read per query (0 reads as 1).
    #[serde(default = "default_batch")]
    pub job_batch_size: u32,
    /// `JOBS_INTERVAL_SECS`: how often the single binary runs `run-all` (0: never).
    #[serde(default = "default_interval")]
    pub jobs_interval_secs: u64,
}

impl JobsConfig {
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let config: JobsConfig = vars.parse()?;
        Ok(JobsConfig {
            job_batch_size: config.job_batch_size.max(1),
            ..config
        })
    }
}

fn default_day() -> u64 {
    86_400
}
fn default_batch() -> u32 {
    500
}
fn default_interval() -> u64 {
    3_600
}

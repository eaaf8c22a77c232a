//! The single binary's job timer: `run-all` every `JOBS_INTERVAL_SECS` (first run one
//! interval after start), in the background, never overlapping itself. Failures are logged
//! and the next run tries again, as a scheduler would.

use std::time::Duration;

use registry_common::http::service_main::PluginError;
use registry_common::state::AppState;

use crate::{Job, JobContext, JobsConfig};

/// Starts the timer (a no-op when `JOBS_INTERVAL_SECS=0`); for `service_main::Plugins`.
pub fn start(state: &AppState) -> Result<(), PluginError> {
    let config = JobsConfig::from_env().map_err(|e| Box::new(e) as PluginError)?;
    if config.jobs_interval_secs == 0 {
        tracing::info!("in-process jobs disabled (JOBS_INTERVAL_SECS=0)");
        return Ok(());
    }
    let interval = Duration::from_secs(config.jobs_interval_secs);
    let ctx = JobContext {
        metadata: state.metadata.clone(),
        storage: state.storage.clone(),
        config,
    };
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(e) = crate::run(Job::RunAll, &ctx).await {
                tracing::error!(error = %registry_common::error::ErrorChain(&e), "scheduled run-all failed");
            }
        }
    });
    tracing::info!(
        interval_secs = interval.as_secs(),
        "in-process jobs scheduled"
    );
    Ok(())
}

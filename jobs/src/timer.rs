//! The single binary's job timer: `run-all` every `JOBS_INTERVAL_SECS` (first run one
//! interval after start), in the background, never overlapping itself. Failures are logged
//! and the next run tries again, as a scheduler would.

use std::time::Duration;

use registry_common::config::EventsConfig;
use registry_common::http::service_main::StartHook;
use registry_common::state::AppState;

use crate::{Job, JobContext, JobsConfig};

/// The timer as `service_main::Plugins::on_start`, with the jobs' and the events' settings
/// the binary read.
pub fn hook(config: JobsConfig, events: EventsConfig) -> StartHook {
    Box::new(move |state| {
        start(state, config, &events);
        Ok(())
    })
}

/// Starts the timer on the runtime this is called from (a no-op when
/// `JOBS_INTERVAL_SECS=0`).
pub fn start(state: &AppState, config: JobsConfig, events: &EventsConfig) {
    if config.jobs_interval_secs == 0 {
        tracing::info!("in-process jobs disabled (JOBS_INTERVAL_SECS=0)");
        return;
    }
    let interval = Duration::from_secs(config.jobs_interval_secs);
    let ctx = JobContext::of_state(state, config, events);
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
}

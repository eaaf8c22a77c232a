//! `deliver-events`: sends what is still pending in the event outbox (events a committing
//! instance could not deliver: it died, a destination was down, a retry came due), then
//! removes delivered events and dead letters past their retention (`EVENTS_RETENTION_SECS`,
//! `EVENTS_DEAD_RETENTION_SECS`). A destination that fails is not a failure of the job: its
//! deliveries wait for their backoff and, after `EVENTS_MAX_ATTEMPTS`, become dead letters
//! (listed and replayed through the management API). With no destination configured the job
//! leaves the outbox alone.
//!
//! Counts: `examined` deliveries attempted, `changed` delivered, `failures` stays 0 for
//! delivery failures (they are retried); the summary line adds retried, dead-lettered and
//! purged counts.

use std::time::Duration;

use crate::{JobContext, JobError, JobReport};

const JOB: &str = "deliver-events";

/// How often `deliver-events --loop` looks for due deliveries.
pub const LOOP_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) async fn run(ctx: &JobContext, report: &mut JobReport) -> Result<(), JobError> {
    let Some(deliverer) = &ctx.deliverer else {
        tracing::info!(
            job = JOB,
            "no event destination configured (NATS_URL, WEBHOOKS_FILE); nothing to deliver"
        );
        return Ok(());
    };
    let delivered = deliverer
        .deliver_due()
        .await
        .map_err(JobError::metadata(JOB))?;
    let purged = deliverer.purge().await.map_err(JobError::metadata(JOB))?;
    report.examined += delivered.delivered + delivered.retried + delivered.dead;
    report.changed += delivered.delivered;
    tracing::info!(
        job = JOB,
        fanned_out = delivered.fanned_out,
        delivered = delivered.delivered,
        retried = delivered.retried,
        dead_lettered = delivered.dead,
        purged_delivered = purged.delivered,
        purged_dead = purged.dead,
        purged_events = purged.events,
        "events delivered"
    );
    Ok(())
}

/// `deliver-events --loop`: a small always-on worker. Delivers whatever comes due, once a
/// [`LOOP_INTERVAL`], and purges once a minute, until the process is stopped. Database errors
/// are logged and retried.
pub async fn run_loop(ctx: &JobContext) -> Result<(), JobError> {
    let Some(deliverer) = &ctx.deliverer else {
        return Err(JobError::NothingToDo {
            job: JOB,
            why: "no event destination configured (NATS_URL, WEBHOOKS_FILE)",
        });
    };
    let mut last_purge = tokio::time::Instant::now();
    loop {
        match deliverer.deliver_due().await {
            Ok(report) if report != Default::default() => tracing::info!(
                job = JOB,
                delivered = report.delivered,
                retried = report.retried,
                dead_lettered = report.dead,
                "events delivered"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(job = JOB, error = %registry_common::error::ErrorChain(&e), "delivery pass failed")
            }
        }
        if last_purge.elapsed() >= Duration::from_secs(60) {
            last_purge = tokio::time::Instant::now();
            if let Err(e) = deliverer.purge().await {
                tracing::warn!(job = JOB, error = %registry_common::error::ErrorChain(&e), "purge failed");
            }
        }
        tokio::time::sleep(LOOP_INTERVAL).await;
    }
}

//! Sends the outbox to its destinations: fans new events out into delivery rows, claims the
//! rows that head their stream (one per destination and repository at a time, so each
//! stream goes in order), sends them concurrently, and records each outcome: delivered,
//! retried later with exponential backoff, or dead-lettered after the last attempt. Delivery
//! is at least once: a deliverer that dies after sending and before recording leaves its
//! claim to expire, and the row is sent again (consumers deduplicate by the event id).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::Notify;

use crate::config::EventsConfig;
use crate::error::ErrorChain;
use crate::events::delivery::{Destinations, OutgoingEvent, nats};
use crate::metadata::{
    ClaimedDelivery, DeliveryOutcome, EventsPurged, Metadata, MetadataError, UnfannedEvent,
};

/// Events fanned out per statement batch.
const FAN_OUT_BATCH: u32 = 500;
/// Deliveries claimed per round (the streams are sent concurrently)…
const CLAIM_BATCH: u32 = 256;
/// …and at most this many of one stream (sent in order).
pub const PER_STREAM: u32 = 32;
/// After a commit wakes the deliverer, it waits this long, so that the events of changes
/// committing at about the same time go in one pass (fewer claims and writes per event).
const PASS_DELAY: Duration = Duration::from_millis(20);
/// Rows removed per retention statement.
const PURGE_BATCH: u32 = 1000;

/// Retries, dead letters and retention.
#[derive(Debug, Clone)]
pub struct DeliveryPolicy {
    /// Attempts before a delivery is dead-lettered.
    pub max_attempts: u32,
    /// The wait after the first failure; it doubles with each further one…
    pub retry_base: Duration,
    /// …up to this.
    pub retry_max: Duration,
    /// Delivered rows (and their events) are kept this long.
    pub retention: Duration,
    /// Dead letters are kept this long (to be listed and replayed).
    pub dead_retention: Duration,
    /// How long a claim keeps other deliverers off a row: twice the longest send; a stream
    /// stops sending (and gives its rows back) half-way through it.
    pub lease: Duration,
    /// The longest a send may take (the longest webhook timeout, NATS's send limit).
    pub longest_send: Duration,
}

/// The shortest claim.
const MIN_LEASE: Duration = Duration::from_secs(2);

impl DeliveryPolicy {
    /// The policy the `EVENTS_*` settings describe.
    pub fn of(config: &EventsConfig) -> Self {
        // A claim outlives the longest send twice over, so a live deliverer never loses its
        // row to another; a dead one's rows come back that soon.
        let nats = config.nats.as_ref().map(|_| nats::SEND_TIMEOUT);
        let longest_send = config
            .webhooks
            .iter()
            .map(|w| w.timeout)
            .chain(nats)
            .max()
            .unwrap_or_default();
        DeliveryPolicy {
            max_attempts: config.max_attempts.max(1),
            retry_base: config.retry_base,
            retry_max: config.retry_max,
            retention: config.retention,
            dead_retention: config.dead_retention,
            lease: MIN_LEASE.max(longest_send.saturating_mul(2)),
            longest_send,
        }
    }

    /// When to try again after `attempts` failed attempts (this one included).
    pub fn retry_delay(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(30));
        self.retry_base.saturating_mul(factor).min(self.retry_max)
    }
}

/// What one delivery pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    pub fanned_out: u64,
    pub delivered: u64,
    pub retried: u64,
    pub dead: u64,
    pub purged: EventsPurged,
}

/// Delivers the outbox.
#[derive(Debug, Clone)]
pub struct Deliverer {
    metadata: Metadata,
    destinations: Destinations,
    policy: DeliveryPolicy,
}

impl Deliverer {
    pub fn new(metadata: Metadata, destinations: Destinations, policy: DeliveryPolicy) -> Self {
        Deliverer {
            metadata,
            destinations,
            policy,
        }
    }

    /// Sends everything due now: until no stream has a due, unclaimed head (a failing
    /// destination's stream waits for its backoff; the rest go on). Each destination is
    /// delivered on its own, side by side, so a slow or hanging one holds up nobody else; each
    /// claim takes up to [`PER_STREAM`] rows of each of its streams, sent in order, the streams
    /// side by side.
    pub async fn deliver_due(&self) -> Result<DeliveryReport, MetadataError> {
        let mut report = DeliveryReport::default();
        let names = self.destinations.names();
        if names.is_empty() {
            // Nobody to deliver to: leave the events for a deliverer that has destinations.
            return Ok(report);
        }
        report.fanned_out += self.fan_out().await?;
        for pass in join_all(names.iter().map(|d| self.deliver_to(d))).await {
            let pass = pass?;
            report.fanned_out += pass.fanned_out;
            report.delivered += pass.delivered;
            report.retried += pass.retried;
            report.dead += pass.dead;
        }
        Ok(report)
    }

    /// Sends what is due to one destination, fanning out events that arrive meanwhile, until
    /// nothing of it is due.
    async fn deliver_to(&self, destination: &str) -> Result<DeliveryReport, MetadataError> {
        let mut report = DeliveryReport::default();
        loop {
            let now = crate::metadata::now_millis();
            let lease = i64::try_from(self.policy.lease.as_millis()).unwrap_or(i64::MAX);
            let claimed = self
                .metadata
                .claim_deliveries(destination, now, lease, CLAIM_BATCH, PER_STREAM)
                .await?;
            if claimed.is_empty() {
                match self.fan_out().await? {
                    0 => return Ok(report),
                    n => {
                        report.fanned_out += n;
                        continue;
                    }
                }
            }
            // Past this, a stream gives its unsent rows back: the claim must outlive the sends.
            let send_by = tokio::time::Instant::now() + self.policy.lease / 2;
            let streams = join_all(
                streams(claimed)
                    .into_iter()
                    .map(|stream| self.send_stream(stream, send_by)),
            )
            .await;
            let outcomes: Vec<_> = streams.into_iter().flatten().collect();
            for (_, _, outcome) in &outcomes {
                match outcome {
                    DeliveryOutcome::Delivered => report.delivered += 1,
                    DeliveryOutcome::RetryAt { .. } => report.retried += 1,
                    DeliveryOutcome::Dead { .. } => report.dead += 1,
                    DeliveryOutcome::Released => {}
                }
            }
            self.metadata.record_deliveries(&outcomes).await?;
        }
    }

    /// Sends one stream's claimed rows in order; after a failure (or once `send_by` leaves no
    /// time for another send) the rest are given back unsent.
    async fn send_stream(
        &self,
        stream: Vec<ClaimedDelivery>,
        send_by: tokio::time::Instant,
    ) -> Vec<(String, i64, DeliveryOutcome)> {
        let mut outcomes = Vec::with_capacity(stream.len());
        let mut stopped = false;
        for claimed in stream {
            let late = tokio::time::Instant::now() + self.policy.longest_send > send_by;
            if stopped || (late && !outcomes.is_empty()) {
                outcomes.push((claimed.destination, claimed.seq, DeliveryOutcome::Released));
                continue;
            }
            let outcome = self.send(claimed).await;
            stopped = !matches!(outcome.2, DeliveryOutcome::Delivered);
            outcomes.push(outcome);
        }
        outcomes
    }

    /// Fans out every unfanned event.
    async fn fan_out(&self) -> Result<u64, MetadataError> {
        let mut total = 0;
        loop {
            let wants = |event: &UnfannedEvent| -> Vec<String> {
                self.destinations
                    .names()
                    .into_iter()
                    .filter(|d| self.destinations.wants(d, event.action, &event.repository))
                    .collect()
            };
            match self.metadata.fan_out_events(FAN_OUT_BATCH, wants).await? {
                0 => return Ok(total),
                n => total += n,
            }
        }
    }

    async fn send(&self, claimed: ClaimedDelivery) -> (String, i64, DeliveryOutcome) {
        let event = OutgoingEvent {
            id: claimed.event_id,
            action: claimed.action,
            repository: claimed.repository,
            body: claimed.body,
        };
        let outcome = match self.destinations.send(&claimed.destination, &event).await {
            Ok(()) => DeliveryOutcome::Delivered,
            Err(e) => {
                let attempts = claimed.attempts.saturating_add(1);
                let error = ErrorChain(&e).to_string();
                if attempts >= self.policy.max_attempts {
                    tracing::warn!(destination = %claimed.destination, event = %event.id,
                        attempts, error, "event dead-lettered");
                    DeliveryOutcome::Dead { error }
                } else {
                    let delay = self.policy.retry_delay(attempts);
                    tracing::info!(destination = %claimed.destination, event = %event.id,
                        attempts, retry_in_ms = delay.as_millis() as u64, error,
                        "event delivery failed; retrying");
                    let at = crate::metadata::now_millis()
                        .saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
                    DeliveryOutcome::RetryAt { at, error }
                }
            }
        };
        (claimed.destination, claimed.seq, outcome)
    }

    /// Removes delivered rows and events past their retention, and dead letters past theirs.
    pub async fn purge(&self) -> Result<EventsPurged, MetadataError> {
        let cutoff = |keep: Duration| crate::metadata::cutoff(keep);
        let mut total = EventsPurged::default();
        loop {
            let purged = self
                .metadata
                .purge_events(
                    cutoff(self.policy.retention),
                    cutoff(self.policy.dead_retention),
                    PURGE_BATCH,
                )
                .await?;
            total.delivered += purged.delivered;
            total.dead += purged.dead;
            total.events += purged.events;
            if purged == EventsPurged::default() {
                return Ok(total);
            }
        }
    }

    /// This process's deliverer: a pass whenever a change commits events here (`wake`), and
    /// every `tick` for retries that came due. Runs until the process ends.
    pub async fn run(self, wake: Arc<Notify>, tick: Duration) {
        loop {
            if tokio::time::timeout(tick, wake.notified()).await.is_ok() {
                tokio::time::sleep(PASS_DELAY).await;
            }
            if let Err(e) = self.deliver_due().await {
                tracing::warn!(error = %ErrorChain(&e), "event delivery pass failed; the next one retries");
            }
        }
    }
}

/// The claimed rows by stream (destination and repository), each in order.
fn streams(claimed: Vec<ClaimedDelivery>) -> Vec<Vec<ClaimedDelivery>> {
    let mut streams: Vec<Vec<ClaimedDelivery>> = Vec::new();
    let mut index: std::collections::HashMap<(String, String), usize> =
        std::collections::HashMap::new();
    for row in claimed {
        let key = (row.destination.clone(), row.repository.clone());
        match index.get(&key) {
            Some(&i) => streams[i].push(row),
            None => {
                index.insert(key, streams.len());
                streams.push(vec![row]);
            }
        }
    }
    for stream in &mut streams {
        stream.sort_by_key(|row| row.seq);
    }
    streams
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_up_to_the_cap() {
        let policy = DeliveryPolicy {
            max_attempts: 12,
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(60),
            retention: Duration::from_secs(3600),
            dead_retention: Duration::from_secs(3600),
            lease: Duration::from_secs(120),
            longest_send: Duration::from_secs(60),
        };
        let delays: Vec<u64> = (1..=7).map(|a| policy.retry_delay(a).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(policy.retry_delay(u32::MAX), Duration::from_secs(60));
    }
}

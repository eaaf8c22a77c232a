//! Sends the outbox to its destinations: fans new events out into delivery rows, claims the
//! rows that head their stream (a prefix of each destination and repository's pending rows,
//! so each stream goes in order), sends the streams concurrently (a webhook request carries
//! several events of its stream), and records each outcome: delivered, retried later with
//! exponential backoff, or dead-lettered after the last attempt. Each round of a destination
//! is one transaction: the last claim's outcomes, the fan-out, the next claim; a registry's
//! own deliverer runs one loop per destination and hands a pass's last outcomes to its next
//! pass (or records them within [`CARRY_MAX`]). Delivery
//! is at least once: a deliverer that dies after sending and before recording leaves its
//! claim to expire, and the row is sent again (consumers deduplicate by the event id).

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::Notify;

use crate::config::EventsConfig;
use crate::error::ErrorChain;
use crate::events::delivery::{Destinations, OutgoingEvent, PartialSend, SendError, nats};
use crate::metadata::{
    Claim, ClaimedDelivery, DeliveryOutcome, EventsPurged, Metadata, MetadataError, UnfannedEvent,
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
/// The longest a pass keeps the outcomes of its last claim before a pass records them.
const CARRY_MAX: Duration = Duration::from_millis(200);
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
        let passes = join_all(names.iter().map(|d| self.deliver_to(d, Vec::new(), false))).await;
        for pass in passes {
            let (pass, _) = pass?;
            report.fanned_out += pass.fanned_out;
            report.delivered += pass.delivered;
            report.retried += pass.retried;
            report.dead += pass.dead;
        }
        Ok(report)
    }

    /// Sends what is due to one destination until nothing of it is due, starting with the
    /// `carried` outcomes of an earlier pass to record. Each round is one transaction: the
    /// outcomes of the last claim, the fan-out of events that arrived meanwhile, and the next
    /// claim. With `keep`, a claim that was not full ends the pass once sent, and its outcomes
    /// are returned to be recorded by the next pass's first round (so a busy registry makes
    /// one transaction per destination and pass, not two); without, they are recorded here.
    async fn deliver_to(
        &self,
        destination: &str,
        carried: Vec<Outcome>,
        keep: bool,
    ) -> Result<(DeliveryReport, Vec<Outcome>), MetadataError> {
        let mut report = DeliveryReport::default();
        let lease_ms = i64::try_from(self.policy.lease.as_millis()).unwrap_or(i64::MAX);
        let names = self.destinations.names();
        let wants = |event: &UnfannedEvent| -> Vec<String> {
            names
                .iter()
                .filter(|d| self.destinations.wants(d, event.action, &event.repository))
                .cloned()
                .collect()
        };
        let mut outcomes = carried;
        loop {
            let claim = Claim {
                destination,
                now: crate::metadata::now_millis(),
                lease_ms,
                limit: CLAIM_BATCH,
                per_stream: PER_STREAM,
            };
            let (fanned, claimed) = self
                .metadata
                .delivery_round(&outcomes, FAN_OUT_BATCH, &wants, &claim)
                .await?;
            outcomes.clear();
            report.fanned_out += fanned;
            if claimed.is_empty() {
                if fanned == 0 {
                    return Ok((report, Vec::new()));
                }
                continue;
            }
            // A full claim may have left due rows behind: claim again before ending the pass.
            let full = claimed.len() >= CLAIM_BATCH as usize
                || longest_stream(&claimed) >= PER_STREAM as usize;
            // Past this, a stream gives its unsent rows back: the claim must outlive the sends.
            let send_by = tokio::time::Instant::now() + self.policy.lease / 2;
            let streams = join_all(
                streams(claimed)
                    .into_iter()
                    .map(|stream| self.send_stream(stream, send_by)),
            )
            .await;
            outcomes = streams.into_iter().flatten().collect();
            for (_, _, outcome) in &outcomes {
                match outcome {
                    DeliveryOutcome::Delivered => report.delivered += 1,
                    DeliveryOutcome::RetryAt { .. } => report.retried += 1,
                    DeliveryOutcome::Dead { .. } => report.dead += 1,
                    DeliveryOutcome::Released => {}
                }
            }
            if keep && !full {
                return Ok((report, outcomes));
            }
        }
    }

    /// Sends one stream's claimed rows in order, as many per send as the destination takes
    /// (a webhook request carries several); after a failure (or once `send_by` leaves no time
    /// for another send) the rest are given back unsent. A row that failed before goes alone,
    /// so an event a receiver refuses costs no other event an attempt.
    async fn send_stream(
        &self,
        stream: Vec<ClaimedDelivery>,
        send_by: tokio::time::Instant,
    ) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(stream.len());
        let Some(destination) = stream.first().map(|c| c.destination.clone()) else {
            return outcomes;
        };
        let per_send = self.destinations.events_per_send(&destination).max(1);
        let mut rows = stream.into_iter().peekable();
        while let Some(head) = rows.next() {
            let late = tokio::time::Instant::now() + self.policy.longest_send > send_by;
            if late && !outcomes.is_empty() {
                outcomes.push((head.destination, head.seq, DeliveryOutcome::Released));
                outcomes.extend(
                    rows.by_ref()
                        .map(|c| (c.destination, c.seq, DeliveryOutcome::Released)),
                );
                break;
            }
            let mut batch = vec![head];
            if batch[0].attempts == 0 {
                while batch.len() < per_send
                    && let Some(next) = rows.next_if(|c| c.attempts == 0)
                {
                    batch.push(next);
                }
            }
            let events: Vec<OutgoingEvent> = batch
                .iter()
                .map(|c| OutgoingEvent {
                    id: c.event_id.clone(),
                    action: c.action,
                    repository: c.repository.clone(),
                    body: c.body.clone(),
                })
                .collect();
            match self.destinations.send_all(&destination, &events).await {
                Ok(()) => outcomes.extend(
                    batch
                        .into_iter()
                        .map(|c| (c.destination, c.seq, DeliveryOutcome::Delivered)),
                ),
                Err(PartialSend { accepted, error }) => {
                    let mut batch = batch.into_iter();
                    outcomes.extend(
                        batch
                            .by_ref()
                            .take(accepted)
                            .map(|c| (c.destination, c.seq, DeliveryOutcome::Delivered)),
                    );
                    if let Some(failed) = batch.next() {
                        outcomes.push(self.failure(failed, &error));
                    }
                    let released = batch.chain(rows.by_ref());
                    outcomes.extend(
                        released.map(|c| (c.destination, c.seq, DeliveryOutcome::Released)),
                    );
                    break;
                }
            }
        }
        outcomes
    }

    /// The outcome of a failed attempt: a retry after the backoff, or a dead letter after the
    /// last attempt.
    fn failure(&self, claimed: ClaimedDelivery, error: &SendError) -> Outcome {
        let event_id = claimed.event_id.as_str();
        let attempts = claimed.attempts.saturating_add(1);
        let error = ErrorChain(error).to_string();
        let outcome = if attempts >= self.policy.max_attempts {
            tracing::warn!(destination = %claimed.destination, event = %event_id,
                attempts, error, "event dead-lettered");
            DeliveryOutcome::Dead { error }
        } else {
            let delay = self.policy.retry_delay(attempts);
            tracing::info!(destination = %claimed.destination, event = %event_id,
                attempts, retry_in_ms = delay.as_millis() as u64, error,
                "event delivery failed; retrying");
            let at = crate::metadata::now_millis()
                .saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
            DeliveryOutcome::RetryAt { at, error }
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
    /// every `tick` for retries that came due. Each destination has a loop of its own, so a
    /// slow or hanging one never delays another's next pass. Runs until the process ends.
    pub async fn run(self, wake: Arc<Notify>, tick: Duration) {
        let names = self.destinations.names();
        let wakes: Vec<Arc<Notify>> = names.iter().map(|_| Arc::new(Notify::new())).collect();
        for (name, own) in names.into_iter().zip(wakes.clone()) {
            tokio::spawn(self.clone().run_destination(name, own, tick));
        }
        loop {
            wake.notified().await;
            for own in &wakes {
                own.notify_one();
            }
        }
    }

    /// One destination's loop of [`Deliverer::run`]: a pass [`PASS_DELAY`] after a wake-up,
    /// keeping the outcomes of its last claim for the next pass to record; with outcomes kept,
    /// a pass that records them comes at the latest [`CARRY_MAX`] later (far within the
    /// claim's lease); without, every `tick`.
    async fn run_destination(self, destination: String, wake: Arc<Notify>, tick: Duration) {
        let mut carried = Vec::new();
        loop {
            let wait = if carried.is_empty() { tick } else { CARRY_MAX };
            let woken = tokio::time::timeout(wait, wake.notified()).await.is_ok();
            if woken {
                tokio::time::sleep(PASS_DELAY).await;
            }
            let pass = self
                .deliver_to(&destination, std::mem::take(&mut carried), woken)
                .await;
            match pass {
                Ok((_, kept)) => carried = kept,
                // The outcomes not recorded are lost with the pass: their claims run out and
                // those events are sent again (at least once).
                Err(e) => tracing::warn!(destination = %destination, error = %ErrorChain(&e),
                    "event delivery pass failed; the next one retries"),
            }
        }
    }
}

/// One delivery's outcome, as [`Metadata::delivery_round`] records it.
type Outcome = (String, i64, DeliveryOutcome);

/// The most rows of one stream in `claimed` (rows of one destination).
fn longest_stream(claimed: &[ClaimedDelivery]) -> usize {
    let mut counts: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for row in claimed {
        *counts.entry(row.repository.as_str()).or_default() += 1;
    }
    counts.into_values().max().unwrap_or(0)
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

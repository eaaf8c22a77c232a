//! The event outbox (migration `0007_events`): event rows written in the transaction of the
//! change they describe, their fan-out into one delivery row per destination, and the claims,
//! outcomes, dead letters and retention of those deliveries.
//!
//! Order: within one repository, events are numbered (`seq`) in commit order, because every
//! transaction that writes one first serializes on the repository (SQLite's write lock; on
//! PostgreSQL a lock of the repository's row, taken before the insert numbers the event).
//! Fan-out runs one at a time (SQLite's write lock; a transaction-scoped advisory lock on
//! PostgreSQL) and takes the oldest unfanned events first, so a repository's delivery rows
//! appear in `seq` order. A claim takes, per stream (destination and repository), a prefix of
//! its pending rows: each one due, and neither it nor any row before it claimed by anyone
//! (a stream whose head waits for a retry, or is being sent, gives nothing). So one deliverer
//! at a time works on a stream, in order. Claims run one at a time (SQLite's write lock; a
//! transaction-scoped advisory lock on PostgreSQL, whose rows are also selected
//! `FOR UPDATE SKIP LOCKED`, so a row being recorded is never taken), and record a lease
//! (`claimed_until`) so that the sending happens outside any transaction; the deliverer sends
//! a stream's rows in order and gives back those after a failure (`Released`). A deliverer's
//! round ([`Metadata::delivery_round`]) is one transaction: the outcomes of its last claim,
//! the fan-out and the next claim, under the claims' lock and then the fan-out's (a fan-out
//! or a claim on its own takes only its own, so no two transactions wait for each other's).

use std::fmt::Write as _;

use sqlx::{Any, AssertSqlSafe, Transaction};

use super::{Engine, Metadata, MetadataError, now_millis};
use crate::events::Action;

/// An event to write with a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// A UUID: the consumers' idempotency key.
    pub id: String,
    pub repository: String,
    pub action: Action,
    /// One event object of distribution's notification envelope, as JSON.
    pub body: String,
}

/// An outbox event not fanned out yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnfannedEvent {
    pub seq: i64,
    pub repository: String,
    pub action: Action,
}

/// A delivery row a deliverer has claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedDelivery {
    pub destination: String,
    pub seq: i64,
    /// Attempts made before this one.
    pub attempts: u32,
    pub event_id: String,
    pub repository: String,
    pub action: Action,
    pub body: String,
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered,
    /// Failed; try again at this time (unix milliseconds).
    RetryAt {
        at: i64,
        error: String,
    },
    /// Failed for the last time: a dead letter.
    Dead {
        error: String,
    },
    /// Not attempted (an earlier row of its stream failed, or the claim ran short): the claim
    /// is given back, the attempts unchanged.
    Released,
}

/// A dead-lettered delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub destination: String,
    pub seq: i64,
    pub event_id: String,
    pub repository: String,
    pub action: Action,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// When it died (unix milliseconds).
    pub failed_at: i64,
    pub body: String,
}

/// Rows removed by a retention pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventsPurged {
    pub delivered: u64,
    pub dead: u64,
    pub events: u64,
}

/// How many deliveries stand in each state, and events not fanned out yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventBacklog {
    pub unfanned: u64,
    pub pending: u64,
    pub dead: u64,
}

/// The advisory lock key that serializes fan-outs on PostgreSQL ("outbox" in ASCII).
const FAN_OUT_LOCK: i64 = 0x6f75_7462_6f78;
/// The advisory lock key that serializes claims on PostgreSQL ("claims" in ASCII).
const CLAIM_LOCK: i64 = 0x636c_6169_6d73;

/// The deliveries to destination `$4` a claim may take: per stream, the first `$3` pending
/// rows that are due and unclaimed with every row before them, oldest first, at most `$2`;
/// `$1` is now.
const CLAIMABLE: &str = "SELECT destination, seq FROM (\
     SELECT destination, seq, row_number() OVER stream AS position, \
     min(CASE WHEN next_attempt_at <= $1 AND (claimed_until IS NULL OR claimed_until < $1) \
         THEN 1 ELSE 0 END) OVER stream AS ready \
     FROM event_deliveries WHERE state = 'pending' AND destination = $4 \
     WINDOW stream AS (PARTITION BY destination, repository ORDER BY seq \
         ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)\
     ) AS candidates WHERE ready = 1 AND position <= $3 ORDER BY seq LIMIT $2";

/// Writes events in the caller's transaction (see the module's notes on order).
pub(crate) async fn insert_in(
    tx: &mut Transaction<'static, Any>,
    engine: Engine,
    events: &[NewEvent],
) -> Result<(), MetadataError> {
    if events.is_empty() {
        return Ok(());
    }
    if engine == Engine::Postgres {
        let mut repositories: Vec<&str> = events.iter().map(|e| e.repository.as_str()).collect();
        repositories.sort_unstable();
        repositories.dedup();
        sqlx::query(
            "SELECT id FROM repositories WHERE name = ANY(string_to_array($1, ',')) \
             ORDER BY id FOR NO KEY UPDATE",
        )
        .bind(repositories.join(","))
        .fetch_all(&mut **tx)
        .await
        .map_err(MetadataError::query("lock event repositories"))?;
    }
    let mut sql =
        String::from("INSERT INTO event_outbox (id, repository, action, body, created_at) VALUES ");
    for i in 0..events.len() {
        let p = i * 5;
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(
            sql,
            "{sep}(${}, ${}, ${}, ${}, ${})",
            p + 1,
            p + 2,
            p + 3,
            p + 4,
            p + 5
        );
    }
    let now = now_millis();
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for event in events {
        query = query
            .bind(event.id.clone())
            .bind(event.repository.clone())
            .bind(event.action.as_str())
            .bind(event.body.clone())
            .bind(now);
    }
    query
        .execute(&mut **tx)
        .await
        .map_err(MetadataError::query("insert events"))?;
    Ok(())
}

/// What a claim asks for (see [`Metadata::claim_deliveries`]).
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub destination: &'a str,
    /// Unix milliseconds.
    pub now: i64,
    pub lease_ms: i64,
    /// Rows at most…
    pub limit: u32,
    /// …and at most this many of one stream.
    pub per_stream: u32,
}

/// What a transaction serializes on.
#[derive(Debug, Clone, Copy)]
enum Lock {
    FanOut,
    Claims,
}

/// Serializes the transaction with the others taking `lock` (see the module's notes).
async fn serialize(
    tx: &mut Transaction<'static, Any>,
    engine: Engine,
    lock: Lock,
) -> Result<(), MetadataError> {
    let (sql, key) = match (engine, lock) {
        (Engine::Postgres, Lock::FanOut) => (PG_LOCK, FAN_OUT_LOCK),
        (Engine::Postgres, Lock::Claims) => (PG_LOCK, CLAIM_LOCK),
        // Any write takes SQLite's write lock, even one that changes nothing; taken first, so
        // that the reads after it see what the others committed.
        (Engine::Sqlite, Lock::FanOut) => (
            "UPDATE event_outbox SET seq = seq WHERE seq = $1",
            FAN_OUT_LOCK,
        ),
        (Engine::Sqlite, Lock::Claims) => (
            "UPDATE event_deliveries SET seq = seq WHERE seq = $1",
            CLAIM_LOCK,
        ),
    };
    sqlx::query(sql)
        .bind(key)
        .execute(&mut **tx)
        .await
        .map_err(MetadataError::query("serialize the outbox"))?;
    Ok(())
}

const PG_LOCK: &str = "SELECT count(*) FROM (SELECT pg_advisory_xact_lock($1)) AS locked";

/// `$first, $first+1, …` for `n` values.
fn placeholders(first: usize, n: usize) -> String {
    let mut sql = String::new();
    for i in 0..n {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(sql, "{sep}${}", first + i);
    }
    sql
}

/// Values per `IN (…)` list.
const IN_CHUNK: usize = 500;

/// The fan-out, in a transaction serialized with the other fan-outs; the rows are due at `now`.
async fn fan_out_in<F>(
    tx: &mut Transaction<'static, Any>,
    limit: u32,
    wants: &F,
    now: i64,
) -> Result<u64, MetadataError>
where
    F: Fn(&UnfannedEvent) -> Vec<String>,
{
    let rows: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT seq, repository, action FROM event_outbox WHERE fanned_out_at IS NULL \
         ORDER BY seq LIMIT $1",
    )
    .bind(i64::from(limit))
    .fetch_all(&mut **tx)
    .await
    .map_err(MetadataError::query("select unfanned events"))?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut deliveries: Vec<(String, i64, String)> = Vec::new();
    for (seq, repository, action) in &rows {
        let action = Action::parse(action)
            .ok_or_else(|| MetadataError::Corrupt(format!("event {seq} action {action}")))?;
        let event = UnfannedEvent {
            seq: *seq,
            repository: repository.clone(),
            action,
        };
        for destination in wants(&event) {
            deliveries.push((destination, *seq, repository.clone()));
        }
    }
    for chunk in deliveries.chunks(200) {
        let mut sql = String::from(
            "INSERT INTO event_deliveries \
             (destination, seq, repository, state, attempts, next_attempt_at, updated_at) VALUES ",
        );
        for i in 0..chunk.len() {
            let p = i * 4;
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(
                sql,
                "{sep}(${}, ${}, ${}, 'pending', 0, ${}, ${})",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 4
            );
        }
        sql.push_str(" ON CONFLICT (destination, seq) DO NOTHING");
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (destination, seq, repository) in chunk {
            query = query
                .bind(destination.clone())
                .bind(*seq)
                .bind(repository.clone())
                .bind(now);
        }
        query
            .execute(&mut **tx)
            .await
            .map_err(MetadataError::query("insert deliveries"))?;
    }
    // Exactly the rows read above: on PostgreSQL an event of another repository may have
    // committed meanwhile with a lower number, and it has no delivery rows yet.
    for chunk in rows.chunks(IN_CHUNK) {
        let sql = format!(
            "UPDATE event_outbox SET fanned_out_at = $1 WHERE seq IN ({})",
            placeholders(2, chunk.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(now);
        for (seq, ..) in chunk {
            query = query.bind(*seq);
        }
        query
            .execute(&mut **tx)
            .await
            .map_err(MetadataError::query("mark events fanned out"))?;
    }
    Ok(rows.len() as u64)
}

/// A claim, in a transaction serialized with the other claims: one statement reads the
/// claimable rows, one sets their lease.
async fn claim_in(
    tx: &mut Transaction<'static, Any>,
    engine: Engine,
    claim: &Claim<'_>,
) -> Result<Vec<ClaimedDelivery>, MetadataError> {
    let lock = match engine {
        Engine::Postgres => " FOR UPDATE OF d SKIP LOCKED",
        Engine::Sqlite => "",
    };
    let select = format!(
        "SELECT d.destination, d.seq, d.attempts, o.id, o.repository, o.action, o.body \
         FROM event_deliveries d JOIN event_outbox o ON o.seq = d.seq \
         WHERE (d.destination, d.seq) IN ({CLAIMABLE}) ORDER BY d.seq{lock}"
    );
    let rows: Vec<ClaimRow> = sqlx::query_as(AssertSqlSafe(select))
        .bind(claim.now)
        .bind(i64::from(claim.limit))
        .bind(i64::from(claim.per_stream.max(1)))
        .bind(claim.destination)
        .fetch_all(&mut **tx)
        .await
        .map_err(MetadataError::query("select claimable deliveries"))?;
    let until = claim.now.saturating_add(claim.lease_ms);
    for chunk in rows.chunks(IN_CHUNK) {
        let sql = format!(
            "UPDATE event_deliveries SET claimed_until = $1 WHERE destination = $2 AND seq IN ({})",
            placeholders(3, chunk.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .bind(until)
            .bind(claim.destination);
        for (_, seq, ..) in chunk {
            query = query.bind(*seq);
        }
        query
            .execute(&mut **tx)
            .await
            .map_err(MetadataError::query("claim deliveries"))?;
    }
    rows.into_iter()
        .map(
            |(destination, seq, attempts, id, repository, action, body)| {
                Ok(ClaimedDelivery {
                    action: Action::parse(&action).ok_or_else(|| {
                        MetadataError::Corrupt(format!("event {seq} action {action}"))
                    })?,
                    destination,
                    seq,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    event_id: id,
                    repository,
                    body,
                })
            },
        )
        .collect()
}

/// Records outcomes in the caller's transaction: the deliveries and the releases of one
/// destination in one statement each, a retry or a dead letter in one statement per row.
async fn record_in(
    tx: &mut Transaction<'static, Any>,
    outcomes: &[(String, i64, DeliveryOutcome)],
) -> Result<(), MetadataError> {
    let now = now_millis();
    // (destination, delivered?) -> seqs
    let mut grouped: Vec<(&str, bool, Vec<i64>)> = Vec::new();
    for (destination, seq, outcome) in outcomes {
        let (state, next, error) = match outcome {
            DeliveryOutcome::Delivered | DeliveryOutcome::Released => {
                let delivered = matches!(outcome, DeliveryOutcome::Delivered);
                match grouped
                    .iter_mut()
                    .find(|(d, kind, _)| *d == destination.as_str() && *kind == delivered)
                {
                    Some((.., seqs)) => seqs.push(*seq),
                    None => grouped.push((destination.as_str(), delivered, vec![*seq])),
                }
                continue;
            }
            DeliveryOutcome::RetryAt { at, error } => ("pending", *at, error),
            DeliveryOutcome::Dead { error } => ("dead", now, error),
        };
        sqlx::query(
            "UPDATE event_deliveries SET state = $1, attempts = attempts + 1, \
             next_attempt_at = $2, claimed_until = NULL, last_error = $3, updated_at = $4 \
             WHERE destination = $5 AND seq = $6",
        )
        .bind(state)
        .bind(next)
        .bind(error.clone())
        .bind(now)
        .bind(destination.clone())
        .bind(*seq)
        .execute(&mut **tx)
        .await
        .map_err(MetadataError::query("record delivery outcome"))?;
    }
    for (destination, delivered, seqs) in grouped {
        for chunk in seqs.chunks(IN_CHUNK) {
            let query = if delivered {
                let sql = format!(
                    "UPDATE event_deliveries SET state = 'delivered', attempts = attempts + 1, \
                     next_attempt_at = $1, claimed_until = NULL, last_error = NULL, \
                     updated_at = $1 WHERE destination = $2 AND seq IN ({})",
                    placeholders(3, chunk.len())
                );
                sqlx::query(AssertSqlSafe(sql)).bind(now).bind(destination)
            } else {
                // A release gives the claim back; the attempts stay.
                let sql = format!(
                    "UPDATE event_deliveries SET claimed_until = NULL \
                     WHERE destination = $1 AND state = 'pending' AND seq IN ({})",
                    placeholders(2, chunk.len())
                );
                sqlx::query(AssertSqlSafe(sql)).bind(destination)
            };
            let mut query = query;
            for seq in chunk {
                query = query.bind(*seq);
            }
            query
                .execute(&mut **tx)
                .await
                .map_err(MetadataError::query("record delivery outcomes"))?;
        }
    }
    Ok(())
}

type ClaimRow = (String, i64, i64, String, String, String, String);
type DeadRow = (
    String,
    i64,
    String,
    String,
    String,
    i64,
    Option<String>,
    i64,
    String,
);

impl Metadata {
    /// Writes events in a transaction of their own (batched pull events).
    pub async fn insert_events(&self, events: &[NewEvent]) -> Result<(), MetadataError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(MetadataError::query("begin events"))?;
        insert_in(&mut tx, self.engine, events).await?;
        tx.commit()
            .await
            .map_err(MetadataError::query("commit events"))
    }

    /// Fans out up to `limit` of the oldest unfanned events: one pending delivery row for each
    /// destination `wants` names for it (none is fine: the event is only kept for retention).
    /// Returns how many events it fanned out. (A deliverer fans out inside its claims, see
    /// [`Metadata::delivery_round`].)
    pub async fn fan_out_events<F>(&self, limit: u32, wants: F) -> Result<u64, MetadataError>
    where
        F: Fn(&UnfannedEvent) -> Vec<String>,
    {
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(MetadataError::query("begin fan-out"))?;
        serialize(&mut tx, self.engine, Lock::FanOut).await?;
        let fanned = fan_out_in(&mut tx, limit, &wants, now_millis()).await?;
        tx.commit()
            .await
            .map_err(MetadataError::query("commit fan-out"))?;
        Ok(fanned)
    }

    /// Claims, until `now + lease_ms`, up to `limit` deliveries to `destination` due at `now`:
    /// per stream, at most `per_stream` of its first pending rows, in order (see the module's
    /// notes). Each destination is claimed on its own, so a slow one never holds up another.
    pub async fn claim_deliveries(
        &self,
        destination: &str,
        now: i64,
        lease_ms: i64,
        limit: u32,
        per_stream: u32,
    ) -> Result<Vec<ClaimedDelivery>, MetadataError> {
        let claim = Claim {
            destination,
            now,
            lease_ms,
            limit,
            per_stream,
        };
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(MetadataError::query("begin claim"))?;
        serialize(&mut tx, self.engine, Lock::Claims).await?;
        let claimed = claim_in(&mut tx, self.engine, &claim).await?;
        tx.commit()
            .await
            .map_err(MetadataError::query("commit claim"))?;
        Ok(claimed)
    }

    /// One round of a deliverer, in one transaction: records the outcomes of its last claim,
    /// fans out up to `fan_out_limit` new events (`wants` as in [`Metadata::fan_out_events`]),
    /// and makes the next claim (as [`Metadata::claim_deliveries`]). Returns how many events
    /// it fanned out and what it claimed. One transaction instead of three keeps the single
    /// SQLite writer (and PostgreSQL's round trips) to one commit per round.
    pub async fn delivery_round<F>(
        &self,
        outcomes: &[(String, i64, DeliveryOutcome)],
        fan_out_limit: u32,
        wants: F,
        claim: &Claim<'_>,
    ) -> Result<(u64, Vec<ClaimedDelivery>), MetadataError>
    where
        F: Fn(&UnfannedEvent) -> Vec<String>,
    {
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(MetadataError::query("begin delivery round"))?;
        // Claims first, then fan-out: a standalone fan-out takes only its own lock, so the
        // two locks are never waited for in the other order.
        serialize(&mut tx, self.engine, Lock::Claims).await?;
        if self.engine == Engine::Postgres {
            serialize(&mut tx, self.engine, Lock::FanOut).await?;
        }
        record_in(&mut tx, outcomes).await?;
        // Due at the claim's `now`, so that the claim below takes them in this round.
        let fanned = fan_out_in(&mut tx, fan_out_limit, &wants, claim.now).await?;
        let claimed = claim_in(&mut tx, self.engine, claim).await?;
        tx.commit()
            .await
            .map_err(MetadataError::query("commit delivery round"))?;
        Ok((fanned, claimed))
    }

    /// Records the outcomes of claimed deliveries, in one transaction.
    pub async fn record_deliveries(
        &self,
        outcomes: &[(String, i64, DeliveryOutcome)],
    ) -> Result<(), MetadataError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(MetadataError::query("begin delivery outcomes"))?;
        record_in(&mut tx, outcomes).await?;
        tx.commit()
            .await
            .map_err(MetadataError::query("commit delivery outcomes"))
    }

    /// Dead letters whose repository starts with `prefix` (`""`: all), oldest first, after the
    /// `(destination, seq)` cursor.
    pub async fn dead_letters(
        &self,
        prefix: &str,
        after: Option<(&str, i64)>,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, MetadataError> {
        let (after_seq, after_destination) = after.map_or((-1, ""), |(d, s)| (s, d));
        let rows: Vec<DeadRow> = sqlx::query_as(
            "SELECT d.destination, d.seq, o.id, o.repository, o.action, d.attempts, \
             d.last_error, d.updated_at, o.body \
             FROM event_deliveries d JOIN event_outbox o ON o.seq = d.seq \
             WHERE d.state = 'dead' AND substr(d.repository, 1, length($1)) = $1 \
             AND (d.seq > $2 OR (d.seq = $2 AND d.destination > $3)) \
             ORDER BY d.seq, d.destination LIMIT $4",
        )
        .bind(prefix)
        .bind(after_seq)
        .bind(after_destination)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(MetadataError::query("select dead letters"))?;
        rows.into_iter()
            .map(
                |(destination, seq, id, repository, action, attempts, error, at, body)| {
                    Ok(DeadLetter {
                        action: Action::parse(&action).ok_or_else(|| {
                            MetadataError::Corrupt(format!("event {seq} action {action}"))
                        })?,
                        destination,
                        seq,
                        event_id: id,
                        repository,
                        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                        last_error: error,
                        failed_at: at,
                        body,
                    })
                },
            )
            .collect()
    }

    /// Turns the dead letters of `event_id` whose repository starts with `prefix` back into
    /// pending deliveries (all destinations, or the one named); returns how many.
    pub async fn replay_dead_letters(
        &self,
        prefix: &str,
        event_id: &str,
        destination: Option<&str>,
    ) -> Result<u64, MetadataError> {
        let done = sqlx::query(
            "UPDATE event_deliveries SET state = 'pending', attempts = 0, next_attempt_at = $1, \
             claimed_until = NULL, updated_at = $1 \
             WHERE state = 'dead' AND substr(repository, 1, length($2)) = $2 \
             AND ($3 = '' OR destination = $3) \
             AND seq IN (SELECT seq FROM event_outbox WHERE id = $4)",
        )
        .bind(now_millis())
        .bind(prefix)
        .bind(destination.unwrap_or(""))
        .bind(event_id)
        .execute(&self.write)
        .await
        .map_err(MetadataError::query("replay dead letters"))?;
        Ok(done.rows_affected())
    }

    /// Deletes up to `limit` rows of each kind: deliveries delivered before `delivered_before`,
    /// dead letters that died before `dead_before`, and events fanned out before
    /// `delivered_before` that no delivery row needs any more.
    pub async fn purge_events(
        &self,
        delivered_before: i64,
        dead_before: i64,
        limit: u32,
    ) -> Result<EventsPurged, MetadataError> {
        let mut purged = EventsPurged::default();
        for (state, before, count) in [
            ("delivered", delivered_before, &mut purged.delivered),
            ("dead", dead_before, &mut purged.dead),
        ] {
            let done = sqlx::query(
                "DELETE FROM event_deliveries WHERE (destination, seq) IN \
                 (SELECT destination, seq FROM event_deliveries \
                  WHERE state = $1 AND updated_at < $2 LIMIT $3)",
            )
            .bind(state)
            .bind(before)
            .bind(i64::from(limit))
            .execute(&self.write)
            .await
            .map_err(MetadataError::query("purge deliveries"))?;
            *count = done.rows_affected();
        }
        let done = sqlx::query(
            "DELETE FROM event_outbox WHERE seq IN (SELECT o.seq FROM event_outbox o \
             WHERE o.fanned_out_at IS NOT NULL AND o.fanned_out_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM event_deliveries d WHERE d.seq = o.seq) \
             ORDER BY o.seq LIMIT $2)",
        )
        .bind(delivered_before)
        .bind(i64::from(limit))
        .execute(&self.write)
        .await
        .map_err(MetadataError::query("purge events"))?;
        purged.events = done.rows_affected();
        Ok(purged)
    }

    /// The outbox's backlog.
    pub async fn event_backlog(&self) -> Result<EventBacklog, MetadataError> {
        let (unfanned, pending, dead): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM event_outbox WHERE fanned_out_at IS NULL), \
             (SELECT count(*) FROM event_deliveries WHERE state = 'pending'), \
             (SELECT count(*) FROM event_deliveries WHERE state = 'dead')",
        )
        .fetch_one(&self.read)
        .await
        .map_err(MetadataError::query("count event backlog"))?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(EventBacklog {
            unfanned: count(unfanned),
            pending: count(pending),
            dead: count(dead),
        })
    }
}

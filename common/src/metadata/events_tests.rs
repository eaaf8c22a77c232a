//! The outbox's statements on both engines: events commit with their change or not at all,
//! fan-out, claims that keep each (destination, repository) stream in order, retries, dead
//! letters, replay and retention.

use super::engine_tests::{blob, engines, image, repo, tag};
use super::*;
use crate::events::Action;
use crate::oci::Digest;

fn event(repository: &str, action: Action, n: u32) -> NewEvent {
    NewEvent {
        id: format!("{repository}-{n}"),
        repository: repository.to_owned(),
        action,
        body: format!("{{\"n\":{n}}}"),
    }
}

const BOTH: [&str; 2] = ["nats", "webhook:ci"];

fn everywhere(_: &UnfannedEvent) -> Vec<String> {
    BOTH.iter().map(|d| (*d).to_owned()).collect()
}

fn ids(claimed: &[ClaimedDelivery]) -> Vec<(String, String)> {
    let mut ids: Vec<(String, String)> = claimed
        .iter()
        .map(|c| (c.destination.clone(), c.event_id.clone()))
        .collect();
    ids.sort();
    ids
}

fn pair(destination: &str, id: &str) -> (String, String) {
    (destination.to_owned(), id.to_owned())
}

const LEASE: i64 = 60_000;

/// Claims for each destination in turn (a deliverer claims them side by side).
async fn claim(
    meta: &Metadata,
    now: i64,
    lease: i64,
    limit: u32,
    per_stream: u32,
) -> Result<Vec<ClaimedDelivery>, MetadataError> {
    let mut all = Vec::new();
    for destination in BOTH {
        all.extend(
            meta.claim_deliveries(destination, now, lease, limit, per_stream)
                .await?,
        );
    }
    Ok(all)
}

#[tokio::test]
async fn events_commit_with_their_change_and_never_without_it() {
    for (engine, meta, _guard) in engines().await {
        let name = repo("team/app");
        let config = blob(&meta, &name, b"config").await;
        let layer = blob(&meta, &name, b"layer").await;
        let payload = image(&config, &layer, "one");
        let parsed = crate::oci::ParsedManifest::parse(None, &payload).expect("manifest");
        let digest = Digest::sha256_of(&payload);
        let new = NewManifest {
            digest: &digest,
            media_type: parsed.kind.media_type(),
            payload: &payload,
            parsed: &parsed,
        };
        let pushed = [event("team/app", Action::Push, 1)];
        let put = meta
            .put_manifest(&name, new, Some(&tag("v1")), &pushed)
            .await
            .expect("put");
        assert_eq!(put, ManifestPut::Stored, "{engine}");
        // A push refused for a missing blob writes no event.
        let missing = (Digest::sha256_of(b"nowhere"), 7);
        let refused = image(&config, &missing, "two");
        let parsed = crate::oci::ParsedManifest::parse(None, &refused).expect("manifest");
        let new = NewManifest {
            digest: &Digest::sha256_of(&refused),
            media_type: parsed.kind.media_type(),
            payload: &refused,
            parsed: &parsed,
        };
        let put = meta
            .put_manifest(&name, new, None, &[event("team/app", Action::Push, 2)])
            .await
            .expect("put");
        assert!(matches!(put, ManifestPut::MissingBlob(_)), "{engine}");
        // Deletes of what is not there write none either.
        assert!(
            !meta
                .delete_tag(&name, &tag("nope"), &[event("team/app", Action::Delete, 3)])
                .await
                .expect("delete"),
            "{engine}"
        );
        assert!(
            meta.delete_tag(&name, &tag("v1"), &[event("team/app", Action::Delete, 4)])
                .await
                .expect("delete"),
            "{engine}"
        );
        assert_eq!(
            meta.event_backlog().await.expect("backlog").unfanned,
            2,
            "{engine}"
        );
        assert_eq!(meta.fan_out_events(100, everywhere).await.expect("fan"), 2);
        assert_eq!(meta.fan_out_events(100, everywhere).await.expect("fan"), 0);
        let claimed = claim(&meta, now_millis(), LEASE, 10, 1)
            .await
            .expect("claim");
        // Only the head of each stream: the push, not the delete after it.
        assert_eq!(
            ids(&claimed),
            [pair("nats", "team/app-1"), pair("webhook:ci", "team/app-1")],
            "{engine}"
        );
    }
}

#[tokio::test]
async fn each_destination_and_repository_is_delivered_in_order() {
    for (engine, meta, _guard) in engines().await {
        meta.insert_events(&[
            event("a/x", Action::Push, 1),
            event("b/y", Action::Push, 2),
            event("a/x", Action::Delete, 3),
        ])
        .await
        .expect("insert");
        // Webhooks want only pushes.
        let wants = |e: &UnfannedEvent| -> Vec<String> {
            let mut to = vec!["nats".to_owned()];
            if e.action == Action::Push {
                to.push("webhook:ci".to_owned());
            }
            to
        };
        assert_eq!(meta.fan_out_events(100, wants).await.expect("fan"), 3);
        let now = now_millis();
        let claimed = claim(&meta, now, LEASE, 10, 1).await.expect("claim");
        assert_eq!(
            ids(&claimed),
            [
                pair("nats", "a/x-1"),
                pair("nats", "b/y-2"),
                pair("webhook:ci", "a/x-1"),
                pair("webhook:ci", "b/y-2"),
            ],
            "{engine}"
        );
        // Claimed rows, and the rows behind them, are nobody else's.
        assert!(
            claim(&meta, now, LEASE, 10, 1)
                .await
                .expect("claim")
                .is_empty(),
            "{engine}"
        );
        let seq_of = |id: &str| {
            claimed
                .iter()
                .find(|c| c.event_id == id)
                .expect("claimed")
                .seq
        };
        meta.record_deliveries(&[
            (
                "nats".to_owned(),
                seq_of("a/x-1"),
                DeliveryOutcome::Delivered,
            ),
            (
                "webhook:ci".to_owned(),
                seq_of("b/y-2"),
                DeliveryOutcome::RetryAt {
                    at: now + 5_000,
                    error: "503".to_owned(),
                },
            ),
        ])
        .await
        .expect("record");
        // The delivered head lets the next of its stream through; the retried one waits.
        let next = claim(&meta, now, LEASE, 10, 1).await.expect("claim");
        assert_eq!(ids(&next), [pair("nats", "a/x-3")], "{engine}");
        let due = claim(&meta, now + 5_001, LEASE, 10, 1)
            .await
            .expect("claim");
        assert_eq!(ids(&due), [pair("webhook:ci", "b/y-2")], "{engine}");
        assert_eq!(due[0].attempts, 1, "{engine}");
        // A claim that ran out (its deliverer died) is taken again.
        let expired = claim(&meta, now + LEASE + 10_000, LEASE, 10, 1)
            .await
            .expect("claim");
        assert_eq!(
            ids(&expired),
            [
                pair("nats", "a/x-3"),
                pair("nats", "b/y-2"),
                pair("webhook:ci", "a/x-1"),
                pair("webhook:ci", "b/y-2"),
            ],
            "{engine}"
        );
    }
}

#[tokio::test]
async fn dead_letters_unblock_their_stream_are_listed_and_replay() {
    for (engine, meta, _guard) in engines().await {
        meta.insert_events(&[event("t/a", Action::Push, 1), event("t/a", Action::Push, 2)])
            .await
            .expect("insert");
        let only_hook = |_: &UnfannedEvent| vec!["webhook:ci".to_owned()];
        meta.fan_out_events(100, only_hook).await.expect("fan");
        let now = now_millis();
        let first = claim(&meta, now, LEASE, 10, 1).await.expect("claim");
        assert_eq!(ids(&first), [pair("webhook:ci", "t/a-1")], "{engine}");
        let dead = DeliveryOutcome::Dead {
            error: "webhook:ci: 500 Internal Server Error".to_owned(),
        };
        meta.record_deliveries(&[("webhook:ci".to_owned(), first[0].seq, dead)])
            .await
            .expect("record");
        let second = claim(&meta, now, LEASE, 10, 1).await.expect("claim");
        assert_eq!(ids(&second), [pair("webhook:ci", "t/a-2")], "{engine}");
        let letters = meta.dead_letters("t/", None, 10).await.expect("dead");
        assert_eq!(letters.len(), 1, "{engine}");
        assert_eq!(letters[0].event_id, "t/a-1");
        assert_eq!(letters[0].attempts, 1);
        assert_eq!(
            letters[0].last_error.as_deref(),
            Some("webhook:ci: 500 Internal Server Error")
        );
        assert!(
            meta.dead_letters("other/", None, 10)
                .await
                .expect("dead")
                .is_empty()
        );
        assert_eq!(meta.event_backlog().await.expect("backlog").dead, 1);
        // Another project's prefix replays nothing; the right one makes it pending again.
        assert_eq!(
            meta.replay_dead_letters("other/", "t/a-1", None)
                .await
                .expect("replay"),
            0
        );
        assert_eq!(
            meta.replay_dead_letters("t/", "t/a-1", None)
                .await
                .expect("replay"),
            1,
            "{engine}"
        );
        assert!(
            meta.dead_letters("", None, 10)
                .await
                .expect("dead")
                .is_empty()
        );
    }
}

#[tokio::test]
async fn retention_removes_delivered_rows_then_their_events() {
    for (engine, meta, _guard) in engines().await {
        meta.insert_events(&[event("r/a", Action::Push, 1), event("r/a", Action::Push, 2)])
            .await
            .expect("insert");
        meta.fan_out_events(100, everywhere).await.expect("fan");
        let claimed = claim(&meta, now_millis(), LEASE, 10, 1)
            .await
            .expect("claim");
        let outcomes: Vec<_> = claimed
            .iter()
            .map(|c| (c.destination.clone(), c.seq, DeliveryOutcome::Delivered))
            .collect();
        meta.record_deliveries(&outcomes).await.expect("record");
        // Nothing is old enough yet.
        let kept = meta.purge_events(0, 0, 100).await.expect("purge");
        assert_eq!(kept, EventsPurged::default(), "{engine}");
        let later = now_millis() + 1;
        let purged = meta.purge_events(later, later, 100).await.expect("purge");
        // The second event still waits on its deliveries; only the first goes.
        assert_eq!(
            purged,
            EventsPurged {
                delivered: 2,
                dead: 0,
                events: 1
            },
            "{engine}"
        );
        assert_eq!(meta.event_backlog().await.expect("backlog").pending, 2);
    }
}

#[tokio::test]
async fn concurrent_claims_never_take_one_row_twice() {
    for (engine, meta, _guard) in engines().await {
        let events: Vec<NewEvent> = (0..60)
            .map(|n| event(&format!("c/r{n}"), Action::Push, n))
            .collect();
        meta.insert_events(&events).await.expect("insert");
        meta.fan_out_events(100, everywhere).await.expect("fan");
        let now = now_millis();
        let claims = (0..4).map(|_| {
            let meta = meta.clone();
            tokio::spawn(async move { claim(&meta, now, LEASE, 20, 1).await })
        });
        let mut all = Vec::new();
        for claim in claims {
            all.extend(ids(&claim.await.expect("task").expect("claim")));
        }
        let total = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), total, "{engine}: a row claimed twice");
        // 60 streams per destination, one row each: every row, once.
        assert_eq!(total, 120, "{engine}");
    }
}

#[tokio::test]
async fn a_claim_takes_a_prefix_of_each_stream_and_released_rows_come_back() {
    for (engine, meta, _guard) in engines().await {
        meta.insert_events(&[
            event("p/a", Action::Push, 1),
            event("p/a", Action::Push, 2),
            event("p/b", Action::Push, 3),
            event("p/a", Action::Delete, 4),
        ])
        .await
        .expect("insert");
        let only_nats = |_: &UnfannedEvent| vec!["nats".to_owned()];
        meta.fan_out_events(100, only_nats).await.expect("fan");
        let now = now_millis();
        let claimed = claim(&meta, now, LEASE, 10, 2).await.expect("claim");
        assert_eq!(
            ids(&claimed),
            [
                pair("nats", "p/a-1"),
                pair("nats", "p/a-2"),
                pair("nats", "p/b-3")
            ],
            "{engine}"
        );
        let seq_of = |id: &str| {
            claimed
                .iter()
                .find(|c| c.event_id == id)
                .expect("claimed")
                .seq
        };
        // The first of p/a went; its second was given back unsent.
        meta.record_deliveries(&[
            (
                "nats".to_owned(),
                seq_of("p/a-1"),
                DeliveryOutcome::Delivered,
            ),
            (
                "nats".to_owned(),
                seq_of("p/a-2"),
                DeliveryOutcome::Released,
            ),
        ])
        .await
        .expect("record");
        let again = claim(&meta, now, LEASE, 10, 2).await.expect("claim");
        assert_eq!(
            ids(&again),
            [pair("nats", "p/a-2"), pair("nats", "p/a-4")],
            "{engine}"
        );
        assert_eq!(again[0].attempts, 0, "{engine}: a release is no attempt");
        // A head waiting for its retry holds its whole stream back.
        meta.record_deliveries(&[
            (
                "nats".to_owned(),
                again[0].seq,
                DeliveryOutcome::RetryAt {
                    at: now + 60_000,
                    error: "down".to_owned(),
                },
            ),
            ("nats".to_owned(), again[1].seq, DeliveryOutcome::Released),
        ])
        .await
        .expect("record");
        assert!(
            claim(&meta, now + 1, LEASE, 10, 2)
                .await
                .expect("claim")
                .is_empty(),
            "{engine}"
        );
    }
}

#[tokio::test]
async fn concurrent_prefix_claims_take_disjoint_prefixes() {
    for (engine, meta, _guard) in engines().await {
        let events: Vec<NewEvent> = (0..90)
            .map(|n| event(&format!("q/r{}", n % 6), Action::Push, n))
            .collect();
        meta.insert_events(&events).await.expect("insert");
        meta.fan_out_events(100, everywhere).await.expect("fan");
        let now = now_millis();
        let claims = (0..4).map(|_| {
            let meta = meta.clone();
            tokio::spawn(async move { claim(&meta, now, LEASE, 40, 5).await })
        });
        let mut all: Vec<ClaimedDelivery> = Vec::new();
        for claim in claims {
            all.extend(claim.await.expect("task").expect("claim"));
        }
        let mut keys: Vec<(String, i64)> =
            all.iter().map(|c| (c.destination.clone(), c.seq)).collect();
        let total = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), total, "{engine}: a row claimed twice");
        // 12 streams of 15 rows: whoever claims a stream takes a prefix of it (at most 5),
        // and nobody else takes any of it.
        assert!((40..=60).contains(&total), "{engine}: {total}");
        let mut by_stream: std::collections::BTreeMap<(String, String), Vec<u32>> =
            std::collections::BTreeMap::new();
        for c in &all {
            let n: u32 = c
                .event_id
                .rsplit('-')
                .next()
                .expect("n")
                .parse()
                .expect("n");
            by_stream
                .entry((c.destination.clone(), c.repository.clone()))
                .or_default()
                .push(n);
        }
        for ((destination, repository), mut ns) in by_stream {
            ns.sort_unstable();
            let r: u32 = repository.trim_start_matches("q/r").parse().expect("r");
            let prefix: Vec<u32> = (0..ns.len() as u32).map(|i| r + 6 * i).collect();
            assert!(
                ns.len() <= 5,
                "{engine}: {destination} {repository}: {ns:?}"
            );
            assert_eq!(
                ns, prefix,
                "{engine}: {destination} {repository} not its first rows"
            );
        }
    }
}

#[tokio::test]
async fn a_delivery_round_records_fans_out_and_claims_in_one_transaction() {
    for (engine, meta, _guard) in engines().await {
        meta.insert_events(&[
            event("d/a", Action::Push, 1),
            event("d/a", Action::Push, 2),
            event("d/b", Action::Push, 3),
        ])
        .await
        .expect("insert");
        let now = now_millis();
        let claim = Claim {
            destination: "nats",
            now,
            lease_ms: LEASE,
            limit: 10,
            per_stream: 1,
        };
        // Fanned out and claimed at once: the head of each stream.
        let (fanned, first) = meta
            .delivery_round(&[], 100, everywhere, &claim)
            .await
            .expect("round");
        assert_eq!(fanned, 3, "{engine}");
        assert_eq!(
            ids(&first),
            [pair("nats", "d/a-1"), pair("nats", "d/b-3")],
            "{engine}"
        );
        // The other destination's rows were made by that fan-out too.
        let hook = meta
            .claim_deliveries("webhook:ci", now, LEASE, 10, 1)
            .await
            .expect("claim");
        assert_eq!(hook.len(), 2, "{engine}");
        // The outcomes of the first claim are recorded before the next claim reads.
        let outcomes: Vec<_> = first
            .iter()
            .map(|c| (c.destination.clone(), c.seq, DeliveryOutcome::Delivered))
            .collect();
        let (fanned, second) = meta
            .delivery_round(&outcomes, 100, everywhere, &claim)
            .await
            .expect("round");
        assert_eq!(fanned, 0, "{engine}");
        assert_eq!(ids(&second), [pair("nats", "d/a-2")], "{engine}");
        let released = [("nats".to_owned(), second[0].seq, DeliveryOutcome::Released)];
        let (_, third) = meta
            .delivery_round(&released, 100, everywhere, &claim)
            .await
            .expect("round");
        assert_eq!(
            ids(&third),
            [pair("nats", "d/a-2")],
            "{engine}: released, claimed again"
        );
        assert_eq!(third[0].attempts, 0, "{engine}");
        let (_, last) = meta
            .delivery_round(
                &[("nats".to_owned(), third[0].seq, DeliveryOutcome::Delivered)],
                100,
                everywhere,
                &claim,
            )
            .await
            .expect("round");
        assert!(last.is_empty(), "{engine}: {last:?}");
        assert_eq!(
            meta.event_backlog().await.expect("backlog").pending,
            3,
            "{engine}: only the webhook's rows wait"
        );
    }
}

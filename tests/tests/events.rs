//! Events end to end: the real `registry` binary (SQLite, or PostgreSQL with
//! `TEST_METADATA=postgres`), the real NATS server (a JetStream stream per test) and a real
//! webhook receiver. A scripted session produces exactly its events, in order per repository,
//! on both; events committed before a SIGKILL are delivered by the restarted process or by the
//! `deliver-events` job; a failing webhook is retried with backoff, dead-lettered, listed and
//! replayed while NATS goes on; a hanging webhook blocks neither pushes nor NATS; pulls are
//! events only with `EVENTS_PULLS=true`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use registry_tests::api::{Api, run_job_with};
use registry_tests::events::{
    BLOB, HOOK, NatsSink, borrowed, distinct_by_id, per_repository, summary,
    wait_for_webhook_events, want, webhook_event, webhook_events, webhook_file,
};
use registry_tests::webhook_receiver::{Mode, WebhookReceiver};
use registry_tests::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
/// How long to keep listening after the last expected event for any that should not come.
const QUIET: Duration = Duration::from_secs(3);

const ALPHA: &str = "acme/alpha";
const BETA: &str = "acme/beta";
const SBOM: &str = "application/vnd.example.sbom.v1+json";

async fn status_of(request: reqwest::RequestBuilder) -> Reply {
    send(request).await
}

/// `DELETE` of a path, answered 202.
async fn delete(reg: &Registry, path: &str) {
    let reply = status_of(reg.client.delete(reg.url(path))).await;
    assert_eq!(reply.status, 202, "DELETE {path}: {}", reply.text());
}

fn index_json(children: &[(&str, usize, &str)]) -> String {
    let manifests: Vec<Value> = children
        .iter()
        .map(|(digest, size, arch)| {
            json!({"mediaType": OCI_MANIFEST, "digest": digest, "size": size,
                   "platform": {"architecture": arch, "os": "linux"}})
        })
        .collect();
    json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).to_string()
}

fn artifact_json(empty: &str, subject: (&str, usize)) -> String {
    let descriptor = json!({"mediaType": OCI_EMPTY, "digest": empty, "size": EMPTY_JSON.len()});
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SBOM,
        "config": descriptor,
        "layers": [descriptor],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.0, "size": subject.1},
    })
    .to_string()
}

/// The three events of [`Registry::push_image`]: its config, its layer, its manifest (no
/// `artifactType`: an image is no artifact, though the referrers API reports its config's
/// media type as one).
fn image_events(repository: &str, tag: &str, image: &PushedImage) -> Vec<Value> {
    vec![
        want(
            "push",
            repository,
            &[("digest", &image.config.0), ("mediaType", BLOB)],
        ),
        want(
            "push",
            repository,
            &[("digest", &image.layers[0].0), ("mediaType", BLOB)],
        ),
        want(
            "push",
            repository,
            &[
                ("digest", &image.digest),
                ("mediaType", OCI_MANIFEST),
                ("tag", tag),
            ],
        ),
    ]
}

#[tokio::test]
async fn a_scripted_session_produces_exactly_its_events_on_nats_and_the_webhook() {
    let sink = NatsSink::start().await;
    let receiver = WebhookReceiver::start().await;
    let (_dir, mut env) = webhook_file(&receiver, None);
    env.extend(sink.env());
    let reg = Registry::start_with(&borrowed(&env)).await;
    let mut alpha = Vec::new();
    let mut beta = Vec::new();

    // Two images.
    let one = reg.push_image(ALPHA, "v1", &[100]).await;
    alpha.extend(image_events(ALPHA, "v1", &one));
    let two = reg.push_image(ALPHA, "v222", &[120]).await;
    alpha.extend(image_events(ALPHA, "v222", &two));

    // A multi-platform index and its two children, the children by digest.
    let (config1, layer1) = (&one.config, &one.layers[0]);
    let (config2, layer2) = (&two.config, &two.layers[0]);
    let child_amd = image_manifest_json(
        &(config1.0.clone(), config1.1.len()),
        &[(layer2.0.clone(), layer2.1.len())],
    );
    let child_arm = image_manifest_json(
        &(config2.0.clone(), config2.1.len()),
        &[(layer1.0.clone(), layer1.1.len())],
    );
    let mut children = Vec::new();
    for (child, arch) in [(&child_amd, "amd64"), (&child_arm, "arm64")] {
        let digest = sha256_digest(child.as_bytes());
        reg.push_manifest(ALPHA, &digest, OCI_MANIFEST, child.as_bytes())
            .await;
        alpha.push(want(
            "push",
            ALPHA,
            &[("digest", &digest), ("mediaType", OCI_MANIFEST)],
        ));
        children.push((digest, child.len(), arch));
    }
    let index = index_json(
        &children
            .iter()
            .map(|(d, s, a)| (d.as_str(), *s, *a))
            .collect::<Vec<_>>(),
    );
    let index_digest = reg
        .push_manifest(ALPHA, "multi", OCI_INDEX, index.as_bytes())
        .await;
    alpha.push(want(
        "push",
        ALPHA,
        &[
            ("digest", &index_digest),
            ("mediaType", OCI_INDEX),
            ("tag", "multi"),
        ],
    ));

    // A tag moved to another manifest.
    reg.push_manifest(ALPHA, "v1", OCI_MANIFEST, &two.manifest)
        .await;
    alpha.push(want(
        "push",
        ALPHA,
        &[
            ("digest", &two.digest),
            ("mediaType", OCI_MANIFEST),
            ("tag", "v1"),
        ],
    ));

    // A referrer of the first image.
    let empty = reg.push_blob(ALPHA, EMPTY_JSON).await;
    alpha.push(want(
        "push",
        ALPHA,
        &[("digest", &empty), ("mediaType", BLOB)],
    ));
    let artifact = artifact_json(&empty, (&one.digest, one.manifest.len()));
    let artifact_digest = sha256_digest(artifact.as_bytes());
    reg.push_manifest(ALPHA, &artifact_digest, OCI_MANIFEST, artifact.as_bytes())
        .await;
    alpha.push(want(
        "push",
        ALPHA,
        &[
            ("digest", &artifact_digest),
            ("mediaType", OCI_MANIFEST),
            ("artifactType", SBOM),
            ("subject", &one.digest),
        ],
    ));

    // A push that fails (a manifest naming a blob nobody pushed) records nothing.
    let missing = sha256_digest(b"never pushed");
    let broken = image_manifest_json(&(missing, 12), &[(layer1.0.clone(), layer1.1.len())]);
    let reply = status_of(
        reg.client
            .put(reg.url(&format!("/v2/{ALPHA}/manifests/broken")))
            .header("Content-Type", OCI_MANIFEST)
            .body(broken),
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.text());

    // Another repository: an image, and a blob mounted from the first.
    let bee = reg.push_image(BETA, "bee", &[50]).await;
    beta.extend(image_events(BETA, "bee", &bee));
    let reply = status_of(
        reg.client
            .post(reg.url(&format!(
                "/v2/{BETA}/blobs/uploads/?mount={}&from={ALPHA}",
                layer1.0
            )))
            .header("Content-Length", "0"),
    )
    .await;
    assert_eq!(reply.status, 201, "mount: {}", reply.text());
    beta.push(want(
        "mount",
        BETA,
        &[
            ("digest", &layer1.0),
            ("mediaType", BLOB),
            ("fromRepository", ALPHA),
        ],
    ));

    // Deletes: a tag, a manifest by digest, a blob, a whole repository.
    delete(&reg, &format!("/v2/{ALPHA}/manifests/v222")).await;
    alpha.push(want("delete", ALPHA, &[("tag", "v222")]));
    delete(&reg, &format!("/v2/{ALPHA}/manifests/{artifact_digest}")).await;
    alpha.push(want("delete", ALPHA, &[("digest", &artifact_digest)]));
    delete(&reg, &format!("/v2/{BETA}/blobs/{}", layer1.0)).await;
    beta.push(want(
        "delete",
        BETA,
        &[("digest", &layer1.0), ("mediaType", BLOB)],
    ));
    Api::anonymous(&reg)
        .call(
            "deleteRepository",
            json!({"project": "acme", "repository": "beta"}),
        )
        .await
        .ok();
    beta.push(want("delete", BETA, &[]));

    let expected: BTreeMap<String, Vec<Value>> =
        [(ALPHA.to_owned(), alpha), (BETA.to_owned(), beta)].into();
    let total: usize = expected.values().map(Vec::len).sum();

    let stored = sink.wait_for(total, WAIT).await;
    wait_for_webhook_events(&receiver, total, WAIT).await;
    tokio::time::sleep(QUIET).await;

    let on_nats: Vec<Value> = stored.iter().map(|m| sink.event(m)).collect();
    assert_eq!(sink.events().await.len(), total, "nothing more on NATS");
    assert_eq!(per_repository(&on_nats), expected, "NATS");
    let ids: BTreeSet<&str> = on_nats.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), total, "one stream message per event id");

    let on_hook = webhook_events(&receiver);
    assert_eq!(on_hook.len(), total, "nothing more on the webhook");
    assert_eq!(per_repository(&on_hook), expected, "webhook");
    // The same events went both ways: the same ids, the same bodies.
    let mut by_id: Vec<&Value> = on_nats.iter().collect();
    by_id.sort_by_key(|e| e["id"].as_str());
    let mut hook_by_id: Vec<&Value> = on_hook.iter().collect();
    hook_by_id.sort_by_key(|e| e["id"].as_str());
    assert_eq!(by_id, hook_by_id);
    sink.stop().await;
}

/// Pushes an image with a hanging webhook (the in-process delivery is stuck on it), kills the
/// registry as soon as the push is answered, and lets the receiver answer again. Returns the
/// registry (dead), the receiver and the expected events.
async fn push_then_sigkill(
    receiver: &WebhookReceiver,
    env: &[(String, String)],
) -> (Registry, Vec<Value>) {
    receiver.set_mode(Mode::Hang);
    let mut reg = Registry::start_with(&borrowed(env)).await;
    let image = reg.push_image(ALPHA, "v1", &[64]).await;
    reg.kill();
    receiver.set_mode(Mode::Ok);
    (reg, image_events(ALPHA, "v1", &image))
}

/// Every expected event arrived at least once, and an id always names the same event.
#[track_caller]
fn assert_delivered_at_least_once(receiver: &WebhookReceiver, expected: &[Value]) {
    let events = distinct_by_id(&webhook_events(receiver));
    let got: Vec<Value> = events.iter().map(summary).collect();
    assert_eq!(got, expected);
}

async fn wait_for_distinct(receiver: &WebhookReceiver, n: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while distinct_by_id(&webhook_events(receiver)).len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {n} events delivered: {:#?}",
            distinct_by_id(&webhook_events(receiver)).len(),
            webhook_events(receiver)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn events_committed_before_a_sigkill_are_delivered_by_the_restarted_registry() {
    let receiver = WebhookReceiver::start().await;
    let (_dir, env) = webhook_file(&receiver, Some(1));
    let (reg, expected) = push_then_sigkill(&receiver, &env).await;
    let _reg = reg.restart().await;
    wait_for_distinct(&receiver, expected.len()).await;
    assert_delivered_at_least_once(&receiver, &expected);
}

#[tokio::test]
async fn events_committed_before_a_sigkill_are_delivered_by_the_job() {
    let receiver = WebhookReceiver::start().await;
    let (_dir, env) = webhook_file(&receiver, Some(1));
    let (reg, expected) = push_then_sigkill(&receiver, &env).await;
    // As a scheduler would: the job every second, until everything arrived. The dead
    // process's claims (a lease of 2 s with a 1 s timeout) and retries run out within seconds;
    // no event is lost meanwhile.
    let deadline = tokio::time::Instant::now() + WAIT;
    while distinct_by_id(&webhook_events(&receiver)).len() < expected.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job did not deliver every event: {:#?}",
            webhook_events(&receiver)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        run_job_with(&reg, "deliver-events", &borrowed(&env)).await;
    }
    assert_delivered_at_least_once(&receiver, &expected);
}

#[tokio::test]
async fn a_failing_webhook_is_retried_with_backoff_then_dead_lettered_and_replayed() {
    let sink = NatsSink::start().await;
    let receiver = WebhookReceiver::start().await;
    receiver.set_mode(Mode::Fail(500));
    let (_dir, mut env) = webhook_file(&receiver, Some(1));
    env.extend(sink.env());
    env.push(("EVENTS_MAX_ATTEMPTS".into(), "3".into()));
    env.push(("EVENTS_RETRY_BASE_SECS".into(), "1".into()));
    let reg = Registry::start_with(&borrowed(&env)).await;
    let digest = reg.push_blob(ALPHA, b"one blob, one event").await;

    let attempts = receiver.wait_for(3, WAIT).await;
    let event = webhook_event(&attempts[0]);
    let id = event["id"].as_str().expect("id").to_owned();
    assert_eq!(
        summary(&event),
        want("push", ALPHA, &[("digest", &digest), ("mediaType", BLOB)])
    );
    for attempt in &attempts {
        assert_eq!(
            webhook_event(attempt),
            event,
            "every attempt sends the same event"
        );
    }
    // Lower bounds only, with slack for clocks: 1 s before the second attempt, 2 s before
    // the third.
    let slack = Duration::from_millis(100);
    let first_gap = attempts[1].arrived - attempts[0].arrived;
    let second_gap = attempts[2].arrived - attempts[1].arrived;
    assert!(first_gap + slack >= Duration::from_secs(1), "{first_gap:?}");
    assert!(
        second_gap + slack >= Duration::from_secs(2),
        "{second_gap:?}"
    );

    // Dead now: listed, and never tried again on its own.
    let api = Api::anonymous(&reg);
    let deadline = tokio::time::Instant::now() + WAIT;
    let letter = loop {
        let listed = api
            .call("listDeadLetters", json!({"project": "acme"}))
            .await
            .ok();
        let items = listed["items"].as_array().expect("items").clone();
        if let Some(item) = items.into_iter().find(|i| i["eventId"] == id.as_str()) {
            break item;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no dead letter: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(letter["destination"], format!("webhook:{HOOK}"));
    // Named within the project, as everywhere in the management API.
    assert_eq!(letter["repository"], "alpha");
    assert_eq!(letter["action"], "push");
    assert_eq!(letter["attempts"], 3);
    let last_error = letter["lastError"].as_str().unwrap_or_default();
    assert!(last_error.contains("500"), "{letter}");
    assert_eq!(letter["event"]["id"], id.as_str(), "{letter}");
    // Longer than the next backoff (4 s) plus the 5 s retry tick: no fourth attempt.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(receiver.requests().len(), 3, "a dead letter is not retried");

    // NATS, the other destination, got it once, unaffected.
    let on_nats = sink.events().await;
    assert_eq!(on_nats.len(), 1, "{on_nats:?}");
    assert_eq!(on_nats[0]["id"], id.as_str());

    receiver.set_mode(Mode::Ok);
    let replayed = api
        .call(
            "replayDeadLetter",
            json!({"project": "acme", "eventId": id}),
        )
        .await
        .ok();
    assert_eq!(replayed["replayed"], 1, "{replayed}");
    let requests = receiver.wait_for(4, WAIT).await;
    assert_eq!(
        webhook_event(&requests[3]),
        event,
        "the replay is the same event"
    );
    let listed = api
        .call("listDeadLetters", json!({"project": "acme"}))
        .await
        .ok();
    assert_eq!(listed["items"], json!([]), "replayed, no longer dead");
    tokio::time::sleep(QUIET).await;
    assert_eq!(receiver.requests().len(), 4, "delivered once by the replay");
    assert_eq!(sink.events().await.len(), 1, "NATS was not sent it again");
    sink.stop().await;
}

#[tokio::test]
async fn a_hanging_webhook_blocks_neither_pushes_nor_nats() {
    let sink = NatsSink::start().await;
    let receiver = WebhookReceiver::start().await;
    receiver.set_mode(Mode::Hang);
    let (_dir, mut env) = webhook_file(&receiver, None);
    env.extend(sink.env());
    let reg = Registry::start_with(&borrowed(&env)).await;
    let mut expected = Vec::new();
    for i in 0..20 {
        let tag = format!("t{i}");
        let image = reg.push_image(ALPHA, &tag, &[10 + i]).await;
        expected.extend(image_events(ALPHA, &tag, &image));
    }
    let stored = sink
        .wait_for(expected.len(), Duration::from_secs(120))
        .await;
    let on_nats: Vec<Value> = stored.iter().map(|m| sink.event(m)).collect();
    assert_eq!(per_repository(&on_nats)[ALPHA], expected);
    assert!(!receiver.requests().is_empty(), "the webhook was tried");
    sink.stop().await;
}

/// Pushes an image and pulls its manifest (by tag) and its layer; returns the image.
async fn push_and_pull(reg: &Registry) -> PushedImage {
    let image = reg.push_image(ALPHA, "v1", &[32]).await;
    let reply = status_of(
        reg.client
            .get(reg.url(&format!("/v2/{ALPHA}/manifests/v1")))
            .header("Accept", OCI_MANIFEST),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let layer = &image.layers[0].0;
    let reply = status_of(
        reg.client
            .get(reg.url(&format!("/v2/{ALPHA}/blobs/{layer}"))),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    image
}

#[tokio::test]
async fn pulls_are_events_with_events_pulls_only() {
    let sink = NatsSink::start().await;
    let mut env = sink.env();
    env.push(("EVENTS_PULLS".into(), "true".into()));
    let reg = Registry::start_with(&borrowed(&env)).await;
    let image = push_and_pull(&reg).await;
    let mut expected = image_events(ALPHA, "v1", &image);
    expected.push(want(
        "pull",
        ALPHA,
        &[
            ("digest", &image.digest),
            ("mediaType", OCI_MANIFEST),
            ("tag", "v1"),
        ],
    ));
    expected.push(want(
        "pull",
        ALPHA,
        &[("digest", &image.layers[0].0), ("mediaType", BLOB)],
    ));
    // Pulls are written in batches: within a few seconds.
    let stored = sink.wait_for(expected.len(), Duration::from_secs(15)).await;
    let on_nats: Vec<Value> = stored.iter().map(|m| sink.event(m)).collect();
    assert_eq!(per_repository(&on_nats)[ALPHA], expected);
    drop(reg);
    sink.stop().await;

    let sink = NatsSink::start().await;
    let reg = Registry::start_with(&borrowed(&sink.env())).await;
    let image = push_and_pull(&reg).await;
    let expected = image_events(ALPHA, "v1", &image);
    sink.wait_for(expected.len(), WAIT).await;
    tokio::time::sleep(QUIET).await;
    let on_nats = sink.events().await;
    assert_eq!(per_repository(&on_nats)[ALPHA], expected, "no pull events");
    sink.stop().await;
}

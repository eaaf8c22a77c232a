//! The event destinations (`registry_common::events::delivery`) against the real parts: the
//! NATS server of the test command (JetStream acks, `Nats-Msg-Id` dedup, the core fall-back)
//! and a real HTTP receiver (body, headers, HMAC signature, failures, timeouts, filters).

use std::time::Duration;

use registry_common::config::{EventsConfig, Vars};
use registry_common::events::Action;
use registry_common::events::delivery::{Destinations, OutgoingEvent};
use registry_tests::nats::{TestNats, next_messages, unique_prefix};
use registry_tests::webhook_receiver::{Mode, WebhookReceiver};
use sha2::{Digest as _, Sha256};

const WAIT: Duration = Duration::from_secs(15);

fn event(id: &str, action: Action, repository: &str) -> OutgoingEvent {
    OutgoingEvent {
        id: id.to_owned(),
        action,
        repository: repository.to_owned(),
        body: format!(
            r#"{{"id":"{id}","action":"{action}","target":{{"repository":"{repository}"}}}}"#
        ),
    }
}

fn config(pairs: &[(&str, &str)]) -> EventsConfig {
    let vars: Vars = pairs.iter().copied().collect();
    EventsConfig::from_vars(&vars).expect("events configuration")
}

/// Destinations for NATS under `prefix` with `NATS_JETSTREAM=<mode>`.
fn nats_destinations(prefix: &str, mode: &str) -> Destinations {
    let url = TestNats::url();
    Destinations::new(&config(&[
        ("NATS_URL", url.as_str()),
        ("NATS_SUBJECT_PREFIX", prefix),
        ("NATS_JETSTREAM", mode),
    ]))
}

/// Destinations for the endpoints of `file` (a `WEBHOOKS_FILE`), with the extra variables.
fn webhook_destinations(file: &str, pairs: &[(&str, &str)]) -> (Destinations, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("webhooks.json");
    std::fs::write(&path, file).expect("write the webhooks file");
    let mut all = vec![("WEBHOOKS_FILE", path.to_str().expect("utf-8 path"))];
    all.extend_from_slice(pairs);
    (Destinations::new(&config(&all)), dir)
}

/// HMAC-SHA256 (RFC 2104) written out here over sha2, so the check does not reuse the code
/// it checks.
fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    let mut block = [0_u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    outer.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn jetstream_acks_and_drops_a_resent_event_by_its_id() {
    let nats = TestNats::connect().await;
    let prefix = unique_prefix();
    nats.create_stream(&prefix).await;
    let destinations = nats_destinations(&prefix, "true");
    assert_eq!(destinations.names(), vec!["nats".to_owned()]);
    let first = event(
        "0f8e4b57-1111-4c1e-9f00-000000000001",
        Action::Push,
        "team/app",
    );
    destinations.send("nats", &first).await.expect("first send");
    // A re-send (the ack was lost, say) carries the same id: the stream keeps one copy.
    destinations.send("nats", &first).await.expect("re-send");
    let second = event(
        "0f8e4b57-1111-4c1e-9f00-000000000002",
        Action::Delete,
        "team/app",
    );
    destinations
        .send("nats", &second)
        .await
        .expect("second event");

    let messages = nats.stream_messages(&prefix).await;
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(messages[0].subject.as_str(), format!("{prefix}.push"));
    assert_eq!(messages[1].subject.as_str(), format!("{prefix}.delete"));
    assert_eq!(
        messages[0]
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.as_str().to_owned()),
        Some(first.id.clone())
    );
    let envelope: serde_json::Value =
        serde_json::from_slice(&messages[0].payload).expect("JSON payload");
    assert_eq!(envelope["events"].as_array().map(Vec::len), Some(1));
    assert_eq!(envelope["events"][0]["id"], first.id.as_str());
    assert_eq!(envelope["events"][0]["target"]["repository"], "team/app");
    nats.delete_stream(&prefix).await;
}

#[tokio::test]
async fn auto_mode_publishes_on_core_nats_where_no_stream_covers_the_subject() {
    let nats = TestNats::connect().await;
    let prefix = unique_prefix();
    let mut subscriber = nats.subscribe(&prefix).await;
    let destinations = nats_destinations(&prefix, "auto");
    let sent = event("5b0c6a52-2222-4d6e-8a00-000000000001", Action::Mount, "a/b");
    destinations
        .send("nats", &sent)
        .await
        .expect("core fall-back");
    destinations
        .send("nats", &sent)
        .await
        .expect("fall-back again");
    let messages = next_messages(&mut subscriber, 2, WAIT).await;
    for message in &messages {
        assert_eq!(message.subject.as_str(), format!("{prefix}.mount"));
        let id = message.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id"));
        assert_eq!(id.map(|v| v.as_str()), Some(sent.id.as_str()));
        let envelope: serde_json::Value =
            serde_json::from_slice(&message.payload).expect("JSON payload");
        assert_eq!(envelope["events"][0]["action"], "mount");
    }

    // With a stream over the subjects, auto mode goes through JetStream (a process started
    // now; a running one notices within the lookup's TTL), the core subscriber still there.
    nats.create_stream(&prefix).await;
    let destinations = nats_destinations(&prefix, "auto");
    let later = event("5b0c6a52-2222-4d6e-8a00-000000000002", Action::Push, "a/b");
    destinations
        .send("nats", &later)
        .await
        .expect("JetStream send");
    destinations
        .send("nats", &later)
        .await
        .expect("JetStream re-send");
    let stored = nats.stream_messages(&prefix).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0].subject.as_str(), format!("{prefix}.push"));
    nats.delete_stream(&prefix).await;
}

#[tokio::test]
async fn required_jetstream_without_a_stream_is_a_failed_send() {
    let prefix = unique_prefix();
    let destinations = nats_destinations(&prefix, "true");
    let error = destinations
        .send("nats", &event("9d7e-1", Action::Push, "a"))
        .await
        .expect_err("no stream, JetStream required");
    assert_eq!(error.destination, "nats");
    assert!(error.message.contains("no JetStream stream"), "{error}");
}

#[tokio::test]
async fn core_mode_publishes_without_jetstream() {
    let nats = TestNats::connect().await;
    let prefix = unique_prefix();
    let mut subscriber = nats.subscribe(&prefix).await;
    let destinations = nats_destinations(&prefix, "false");
    let sent = event("c0de-1", Action::Delete, "x/y");
    destinations.send("nats", &sent).await.expect("core send");
    let messages = next_messages(&mut subscriber, 1, WAIT).await;
    assert_eq!(messages[0].subject.as_str(), format!("{prefix}.delete"));
}

#[tokio::test]
async fn nats_down_fails_sends_not_start_up() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("nats://127.0.0.1:{port}");
    let destinations = Destinations::new(&config(&[("NATS_URL", url.as_str())]));
    assert_eq!(destinations.names(), vec!["nats".to_owned()]);
    let error = destinations
        .send("nats", &event("dead-1", Action::Push, "a"))
        .await
        .expect_err("nothing listens");
    assert!(error.message.contains("connect"), "{error}");
}

#[tokio::test]
async fn a_webhook_gets_the_envelope_headers_and_a_verifiable_signature() {
    let receiver = WebhookReceiver::start().await;
    let file = format!(
        r#"{{"endpoints": [{{"name": "ci", "url": "{}?via=test",
            "headers": {{"Authorization": "Bearer t0ken", "X-Team": "a"}},
            "secret_env": "CI_HOOK_SECRET"}}]}}"#,
        receiver.url()
    );
    let (destinations, _dir) = webhook_destinations(&file, &[("CI_HOOK_SECRET", "s3cr3t key")]);
    assert_eq!(destinations.names(), vec!["webhook:ci".to_owned()]);
    let sent = event(
        "7a1d2c3b-3333-4f00-b000-000000000001",
        Action::Push,
        "team-a/app",
    );
    destinations.send("webhook:ci", &sent).await.expect("send");

    let requests = receiver.wait_for(1, WAIT).await;
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hook?via=test");
    assert_eq!(
        request.header("content-type"),
        Some("application/vnd.docker.distribution.events.v1+json")
    );
    assert_eq!(
        request.header("x-registry-event-id"),
        Some(sent.id.as_str())
    );
    assert_eq!(request.header("authorization"), Some("Bearer t0ken"));
    assert_eq!(request.header("x-team"), Some("a"));
    assert_eq!(
        request.body.as_ref(),
        format!("{{\"events\":[{}]}}", sent.body).as_bytes()
    );
    assert_eq!(request.json()["events"][0]["id"], sent.id.as_str());
    let expected = format!("sha256={}", hmac_sha256_hex(b"s3cr3t key", &request.body));
    assert_eq!(
        request.header("x-registry-signature-256"),
        Some(expected.as_str())
    );
}

#[tokio::test]
async fn an_unsigned_webhook_has_no_signature_header() {
    let receiver = WebhookReceiver::start().await;
    let file = format!(
        r#"{{"endpoints": [{{"name": "plain", "url": "{}"}}]}}"#,
        receiver.url()
    );
    let (destinations, _dir) = webhook_destinations(&file, &[]);
    destinations
        .send("webhook:plain", &event("u-1", Action::Delete, "r"))
        .await
        .expect("send");
    let requests = receiver.wait_for(1, WAIT).await;
    assert_eq!(requests[0].header("x-registry-signature-256"), None);
    assert_eq!(requests[0].header("x-registry-event-id"), Some("u-1"));
}

#[tokio::test]
async fn non_2xx_answers_redirects_and_timeouts_are_failed_sends() {
    let receiver = WebhookReceiver::start().await;
    let file = format!(
        r#"{{"endpoints": [{{"name": "flaky", "url": "{}", "timeout_secs": 1}}]}}"#,
        receiver.url()
    );
    let (destinations, _dir) = webhook_destinations(&file, &[]);
    let sent = event("f-1", Action::Push, "r");

    receiver.set_mode(Mode::FailNext(503, 2));
    for _ in 0..2 {
        let error = destinations
            .send("webhook:flaky", &sent)
            .await
            .expect_err("503");
        assert_eq!(error.destination, "webhook:flaky");
        assert!(error.message.contains("503"), "{error}");
        assert!(error.message.contains("receiver answering 503"), "{error}");
    }
    destinations
        .send("webhook:flaky", &sent)
        .await
        .expect("the third try is answered 200");

    receiver.set_mode(Mode::Status(202));
    destinations
        .send("webhook:flaky", &sent)
        .await
        .expect("any 2xx is success");

    // Not followed: a 3xx is a failure, whatever its Location.
    receiver.set_mode(Mode::Status(307));
    let error = destinations
        .send("webhook:flaky", &sent)
        .await
        .expect_err("307");
    assert!(error.message.contains("307"), "{error}");

    receiver.set_mode(Mode::Fail(400));
    let error = destinations
        .send("webhook:flaky", &sent)
        .await
        .expect_err("400");
    assert!(error.message.contains("400"), "{error}");

    receiver.set_mode(Mode::Hang);
    let error = destinations
        .send("webhook:flaky", &sent)
        .await
        .expect_err("hanging receiver");
    assert!(error.message.contains("no answer within 1 s"), "{error}");

    receiver.set_mode(Mode::Slow(Duration::from_secs(3)));
    let error = destinations
        .send("webhook:flaky", &sent)
        .await
        .expect_err("slower than the timeout");
    assert!(error.message.contains("no answer within 1 s"), "{error}");

    // Every attempt reached the receiver, each with the same event id.
    let requests = receiver.requests();
    assert_eq!(requests.len(), 8);
    assert!(
        requests
            .iter()
            .all(|r| r.header("x-registry-event-id") == Some("f-1"))
    );
}

#[tokio::test]
async fn a_closed_port_is_a_failed_send() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let file =
        format!(r#"{{"endpoints": [{{"name": "gone", "url": "http://127.0.0.1:{port}/"}}]}}"#);
    let (destinations, _dir) = webhook_destinations(&file, &[]);
    let error = destinations
        .send("webhook:gone", &event("g-1", Action::Push, "r"))
        .await
        .expect_err("nothing listens");
    assert!(error.message.contains("POST failed"), "{error}");
}

#[tokio::test]
async fn filters_choose_the_destinations_of_an_event() {
    let receiver = WebhookReceiver::start().await;
    let url = TestNats::url();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("webhooks.json");
    std::fs::write(
        &path,
        format!(
            r#"{{"endpoints": [
                {{"name": "pushes-a", "url": "{0}", "actions": ["push"], "repositories": ["team-a/*"]}},
                {{"name": "deletes", "url": "{0}", "actions": ["delete", "mount"]}},
                {{"name": "all", "url": "{0}"}}
            ]}}"#,
            receiver.url()
        ),
    )
    .expect("write");
    let destinations = Destinations::new(&config(&[
        ("NATS_URL", url.as_str()),
        ("WEBHOOKS_FILE", path.to_str().expect("utf-8")),
    ]));
    assert_eq!(
        destinations.names(),
        ["nats", "webhook:pushes-a", "webhook:deletes", "webhook:all"]
    );
    let wanting = |action, repository| -> Vec<String> {
        destinations
            .names()
            .into_iter()
            .filter(|d| destinations.wants(d, action, repository))
            .collect()
    };
    assert_eq!(
        wanting(Action::Push, "team-a/app/web"),
        ["nats", "webhook:pushes-a", "webhook:all"]
    );
    assert_eq!(wanting(Action::Push, "team-b/app"), ["nats", "webhook:all"]);
    assert_eq!(wanting(Action::Push, "team-a"), ["nats", "webhook:all"]);
    assert_eq!(
        wanting(Action::Delete, "team-a/app"),
        ["nats", "webhook:deletes", "webhook:all"]
    );
    assert!(!destinations.wants("webhook:nope", Action::Push, "team-a/app"));
    let error = destinations
        .send("webhook:nope", &event("n-1", Action::Push, "r"))
        .await
        .expect_err("unknown destination");
    assert_eq!(error.destination, "webhook:nope");
    assert!(receiver.requests().is_empty());
}

#[tokio::test]
async fn no_destination_configured_is_disabled() {
    let config = config(&[]);
    assert!(!config.enabled());
    let destinations = Destinations::new(&config);
    assert!(destinations.names().is_empty());
    assert!(!destinations.wants("nats", Action::Push, "a"));
    assert!(
        destinations
            .send("nats", &event("x", Action::Push, "a"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_webhook_takes_several_events_of_a_stream_in_one_signed_request() {
    let receiver = WebhookReceiver::start().await;
    let file = format!(
        r#"{{"endpoints": [{{"name": "ci", "url": "{}", "secret_env": "CI_HOOK_SECRET"}},
            {{"name": "one", "url": "{}", "max_events_per_request": 1}}]}}"#,
        receiver.url(),
        receiver.url()
    );
    let (destinations, _dir) = webhook_destinations(&file, &[("CI_HOOK_SECRET", "k")]);
    assert_eq!(
        destinations.events_per_send("webhook:ci"),
        32,
        "the default"
    );
    assert_eq!(destinations.events_per_send("webhook:one"), 1);
    assert_eq!(destinations.events_per_send("nats"), 1);
    let sent = [
        event("b-1", Action::Push, "team/app"),
        event("b-2", Action::Push, "team/app"),
        event("b-3", Action::Delete, "team/app"),
    ];
    destinations
        .send_all("webhook:ci", &sent)
        .await
        .expect("send");
    let requests = receiver.wait_for(1, WAIT).await;
    assert_eq!(requests.len(), 1, "one request for the three");
    let request = &requests[0];
    // distribution's envelope of the three, in order, the ids listed in that order.
    let bodies: Vec<&str> = sent.iter().map(|e| e.body.as_str()).collect();
    assert_eq!(
        request.body.as_ref(),
        format!("{{\"events\":[{}]}}", bodies.join(",")).as_bytes()
    );
    assert_eq!(request.header("x-registry-event-id"), Some("b-1, b-2, b-3"));
    let expected = format!("sha256={}", hmac_sha256_hex(b"k", &request.body));
    assert_eq!(
        request.header("x-registry-signature-256"),
        Some(expected.as_str())
    );

    // A refused request accepts none of its events.
    receiver.set_mode(Mode::Fail(503));
    let failed = destinations
        .send_all("webhook:ci", &sent)
        .await
        .expect_err("refused");
    assert_eq!(failed.accepted, 0);
    assert!(failed.error.message.contains("503"), "{}", failed.error);
}

#[test]
fn max_events_per_request_is_checked() {
    for (value, ok) in [("0", false), ("1", true), ("32", true), ("33", false)] {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("webhooks.json");
        let file = format!(
            r#"{{"endpoints": [{{"name": "ci", "url": "http://127.0.0.1:9/", "max_events_per_request": {value}}}]}}"#
        );
        std::fs::write(&path, file).expect("write the webhooks file");
        let vars: Vars = [("WEBHOOKS_FILE", path.to_str().expect("utf-8 path"))]
            .into_iter()
            .collect();
        match EventsConfig::from_vars(&vars) {
            Ok(_) => assert!(ok, "{value} accepted"),
            Err(e) => {
                assert!(!ok, "{value} refused: {e}");
                assert!(e.to_string().contains("max_events_per_request"), "{e}");
            }
        }
    }
}

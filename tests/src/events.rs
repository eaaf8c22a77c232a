//! Helpers of the end-to-end event suite (`tests/events.rs`): the destinations a registry is
//! started with (a JetStream stream under a subject prefix of the test's own, a webhook
//! endpoint file with a signing secret), and the events read back from both, each checked on
//! the way (a NATS message holds one event, its `Nats-Msg-Id` the event's id; a webhook
//! request one repository's events, `X-Registry-Event-Id` their ids in order, the HMAC
//! signature over the exact body) and reduced to the fields a test
//! compares ([`summary`], [`want`]).

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::message::StreamMessage;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::nats::{TestNats, unique_prefix};
use crate::webhook_receiver::{ReceivedRequest, WebhookReceiver};

/// The variable holding the webhook's signing secret, and the secret.
pub const SECRET_ENV: &str = "E2E_HOOK_SECRET";
pub const SECRET: &str = "e2e s3cret, not in the file";
/// The webhook endpoint's name, and so its destination's (`webhook:hook`).
pub const HOOK: &str = "hook";
/// The media type of blob targets.
pub const BLOB: &str = "application/octet-stream";

/// The target fields a test compares, besides `action` and `repository`.
const KEYS: [&str; 6] = [
    "tag",
    "digest",
    "mediaType",
    "fromRepository",
    "artifactType",
    "subject",
];

/// An expected event: `fields` among [`KEYS`] (`subject` is the subject's digest); every other
/// key must be absent from the event.
pub fn want(action: &str, repository: &str, fields: &[(&str, &str)]) -> Value {
    let mut value = json!({"action": action, "repository": repository});
    for key in KEYS {
        value[key] = Value::Null;
    }
    for (key, field) in fields {
        assert!(KEYS.contains(key), "no such compared field {key}");
        value[*key] = json!(field);
    }
    value
}

/// The compared fields of a received event (see [`want`]).
pub fn summary(event: &Value) -> Value {
    let target = &event["target"];
    let mut value = json!({"action": event["action"], "repository": target["repository"]});
    for key in KEYS {
        value[key] = match key {
            "subject" => target["subject"]["digest"].clone(),
            _ => target[key].clone(),
        };
    }
    value
}

/// Summaries grouped by repository, each group in arrival order.
pub fn per_repository(events: &[Value]) -> BTreeMap<String, Vec<Value>> {
    let mut groups: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for event in events {
        let summary = summary(event);
        let repository = summary["repository"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        groups.entry(repository).or_default().push(summary);
    }
    groups
}

/// A NATS destination: a memory stream over `<prefix>.>`, and the registry's settings for it
/// (`NATS_JETSTREAM=true`: every event must be acked by the stream).
#[derive(Debug)]
pub struct NatsSink {
    pub nats: TestNats,
    pub prefix: String,
}

impl NatsSink {
    pub async fn start() -> NatsSink {
        let nats = TestNats::connect().await;
        let prefix = unique_prefix();
        nats.create_stream(&prefix).await;
        NatsSink { nats, prefix }
    }

    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("NATS_URL".into(), TestNats::url()),
            ("NATS_SUBJECT_PREFIX".into(), self.prefix.clone()),
            ("NATS_JETSTREAM".into(), "true".into()),
        ]
    }

    /// The stream's messages once it holds at least `n`; panics after `timeout` with what it
    /// holds.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<StreamMessage> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let messages = self.nats.stream_messages(&self.prefix).await;
            if messages.len() >= n {
                return messages;
            }
            if tokio::time::Instant::now() > deadline {
                let events: Vec<Value> = messages.iter().map(|m| self.event(m)).collect();
                panic!(
                    "{} of {n} events on NATS within {timeout:?}: {:#?}",
                    messages.len(),
                    per_repository(&events)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The event of a stream message, after checking its subject, envelope and message id.
    #[track_caller]
    pub fn event(&self, message: &StreamMessage) -> Value {
        let envelope: Value =
            serde_json::from_slice(&message.payload).expect("a NATS payload is JSON");
        let events = envelope["events"].as_array().expect("an events array");
        assert_eq!(events.len(), 1, "one event per message: {envelope}");
        let event = events[0].clone();
        let action = event["action"].as_str().expect("an action");
        assert_eq!(
            message.subject.as_str(),
            format!("{}.{action}", self.prefix)
        );
        let id = message.headers.get("Nats-Msg-Id").map(|v| v.as_str());
        assert_eq!(id, event["id"].as_str(), "Nats-Msg-Id is the event id");
        event
    }

    /// Every event the stream holds, in stream order.
    pub async fn events(&self) -> Vec<Value> {
        let messages = self.nats.stream_messages(&self.prefix).await;
        messages.iter().map(|m| self.event(m)).collect()
    }

    pub async fn stop(self) {
        self.nats.delete_stream(&self.prefix).await;
    }
}

/// A `WEBHOOKS_FILE` with one signed endpoint `hook` pointing at `receiver`, `timeout_secs`
/// when given; the directory holding it must outlive the registry's start.
pub fn webhook_file(
    receiver: &WebhookReceiver,
    timeout_secs: Option<u64>,
) -> (tempfile::TempDir, Vec<(String, String)>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("webhooks.json");
    let mut endpoint = json!({"name": HOOK, "url": receiver.url(), "secret_env": SECRET_ENV});
    if let Some(secs) = timeout_secs {
        endpoint["timeout_secs"] = json!(secs);
    }
    std::fs::write(&path, json!({"endpoints": [endpoint]}).to_string())
        .expect("write the webhooks file");
    let env = vec![
        (
            "WEBHOOKS_FILE".into(),
            path.to_str().expect("utf-8 path").to_owned(),
        ),
        (SECRET_ENV.into(), SECRET.into()),
    ];
    (dir, env)
}

/// The events of a webhook request, in body order, after checking the method, content type,
/// envelope, event id header (the events' ids, comma-separated, in body order) and signature.
#[track_caller]
pub fn webhook_request_events(request: &ReceivedRequest) -> Vec<Value> {
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.header("content-type"),
        Some("application/vnd.docker.distribution.events.v1+json")
    );
    let signature = format!(
        "sha256={}",
        hmac_sha256_hex(SECRET.as_bytes(), &request.body)
    );
    assert_eq!(
        request.header("x-registry-signature-256"),
        Some(signature.as_str()),
        "signature over the body with the secret"
    );
    let envelope = request.json();
    let events = envelope["events"]
        .as_array()
        .expect("an events array")
        .clone();
    assert!(!events.is_empty(), "a request with no event: {envelope}");
    let ids: Vec<&str> = events
        .iter()
        .map(|e| e["id"].as_str().expect("an event id"))
        .collect();
    assert_eq!(
        request.header("x-registry-event-id"),
        Some(ids.join(", ").as_str()),
        "X-Registry-Event-Id lists the events' ids in body order"
    );
    let repository = &events[0]["target"]["repository"];
    assert!(
        events
            .iter()
            .all(|e| &e["target"]["repository"] == repository),
        "one request carries one repository's events: {envelope}"
    );
    events
}

/// The event of a webhook request that carries exactly one.
#[track_caller]
pub fn webhook_event(request: &ReceivedRequest) -> Value {
    let mut events = webhook_request_events(request);
    assert_eq!(events.len(), 1, "one event in this request: {events:?}");
    events.remove(0)
}

/// Every event the receiver got, in arrival order (a request's events in body order).
pub fn webhook_events(receiver: &WebhookReceiver) -> Vec<Value> {
    receiver
        .requests()
        .iter()
        .flat_map(webhook_request_events)
        .collect()
}

/// Waits until the receiver got at least `n` events (in however many requests); panics after
/// `timeout` with what it got.
pub async fn wait_for_webhook_events(receiver: &WebhookReceiver, n: usize, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let got = webhook_events(receiver);
        if got.len() >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {n} events at the webhook within {timeout:?}: {:#?}",
            got.len(),
            per_repository(&got)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `(name, value)` pairs borrowed, as `Registry::start_with` takes them.
pub fn borrowed(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// HMAC-SHA256 (RFC 2104) written out here over sha2, so the check does not reuse the code
/// it checks.
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
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
    crate::hex(&outer)
}

/// The event ids, each once, in first-seen order; panics when one id names two different
/// events (a duplicate delivery must be the same event).
#[track_caller]
pub fn distinct_by_id(events: &[Value]) -> Vec<Value> {
    let mut seen: BTreeMap<String, Value> = BTreeMap::new();
    let mut out = Vec::new();
    for event in events {
        let id = event["id"].as_str().expect("an event id").to_owned();
        match seen.get(&id) {
            Some(first) => assert_eq!(first, event, "two different events with id {id}"),
            None => {
                seen.insert(id, event.clone());
                out.push(event.clone());
            }
        }
    }
    out
}

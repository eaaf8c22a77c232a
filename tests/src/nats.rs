//! The real NATS server of the event tests: `TEST_NATS_URL` (the test command sets it, starting
//! a `nats-server -js` when none runs), else `nats://127.0.0.1:4222`. Each test takes a subject
//! prefix of its own ([`unique_prefix`]), so tests sharing the server never see each other's
//! events, and may put a JetStream stream over `<prefix>.>` ([`TestNats::create_stream`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, message::StreamMessage, stream};
use futures_util::StreamExt;

/// The server's URL.
pub fn url() -> String {
    std::env::var("TEST_NATS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned())
}

/// A subject prefix no other test (or run) uses: `t<pid>x<time>x<n>` (also a valid stream
/// name).
pub fn unique_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() % 1_000_000_000_000);
    format!(
        "t{}x{nanos}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A connection to the test server, with its JetStream context.
#[derive(Debug, Clone)]
pub struct TestNats {
    pub client: async_nats::Client,
    pub jetstream: jetstream::Context,
}

impl TestNats {
    /// The server's URL (see [`url`]).
    pub fn url() -> String {
        url()
    }

    pub async fn connect() -> TestNats {
        let url = url();
        let client = async_nats::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("connect to NATS at {url} (TEST_NATS_URL): {e}"));
        let jetstream = jetstream::new(client.clone());
        TestNats { client, jetstream }
    }

    /// A memory stream named `prefix` over `<prefix>.>`, with JetStream's default dedup
    /// window (two minutes); it expires on its own after ten minutes of no use by a test
    /// that panicked before [`TestNats::delete_stream`].
    pub async fn create_stream(&self, prefix: &str) -> stream::Stream {
        self.jetstream
            .create_stream(stream::Config {
                name: prefix.to_owned(),
                subjects: vec![format!("{prefix}.>")],
                storage: stream::StorageType::Memory,
                max_age: Duration::from_secs(600),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("create the stream {prefix} (is JetStream on?): {e}"))
    }

    pub async fn delete_stream(&self, prefix: &str) {
        self.jetstream
            .delete_stream(prefix)
            .await
            .unwrap_or_else(|e| panic!("delete the stream {prefix}: {e}"));
    }

    /// Every message the stream `prefix` holds, in sequence order.
    pub async fn stream_messages(&self, prefix: &str) -> Vec<StreamMessage> {
        let stream = self
            .jetstream
            .get_stream(prefix)
            .await
            .unwrap_or_else(|e| panic!("stream {prefix}: {e}"));
        let state = stream
            .get_info()
            .await
            .unwrap_or_else(|e| panic!("stream {prefix} info: {e}"))
            .state;
        let mut messages = Vec::new();
        if state.messages == 0 {
            return messages;
        }
        for sequence in state.first_sequence..=state.last_sequence {
            if let Ok(message) = stream.get_raw_message(sequence).await {
                messages.push(message);
            }
        }
        messages
    }

    /// A core subscription to `<prefix>.>`, flushed so that it is in place on the server
    /// before anything is published.
    pub async fn subscribe(&self, prefix: &str) -> async_nats::Subscriber {
        let subscriber = self
            .client
            .subscribe(format!("{prefix}.>"))
            .await
            .unwrap_or_else(|e| panic!("subscribe to {prefix}.>: {e}"));
        self.client.flush().await.expect("flush the subscription");
        subscriber
    }
}

/// The next `n` messages of `subscriber`; panics after `timeout` with how many came.
pub async fn next_messages(
    subscriber: &mut async_nats::Subscriber,
    n: usize,
    timeout: Duration,
) -> Vec<async_nats::Message> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut messages = Vec::with_capacity(n);
    while messages.len() < n {
        match tokio::time::timeout_at(deadline, subscriber.next()).await {
            Ok(Some(message)) => messages.push(message),
            Ok(None) => panic!(
                "subscription closed after {} of {n} messages",
                messages.len()
            ),
            Err(_) => panic!("{} of {n} NATS messages within {timeout:?}", messages.len()),
        }
    }
    messages
}

//! The destinations of events: NATS ([`nats`]) and webhooks ([`webhook`]). A destination is
//! named by a stable string (`"nats"`, `"webhook:<name>"`) that the outbox stores with each
//! delivery; [`Destinations::send`] sends one event to one of them and returns only once the
//! destination accepted it, so a delivery marked done is a delivery received (at least once:
//! a send that failed after the destination took it is sent again, with the same event id
//! for the receiver's dedup).
//!
//! Every destination gets the same payload, distribution's notification envelope holding one
//! event: `{"events":[<body>]}`.

pub mod nats;
pub mod webhook;

use std::sync::Arc;

use crate::config::EventsConfig;
use crate::events::Action;

use nats::NatsDestination;
use webhook::WebhookDestination;

/// The name of the NATS destination.
pub const NATS_DESTINATION: &str = "nats";
/// The prefix of a webhook destination's name (`webhook:<endpoint name>`).
pub const WEBHOOK_PREFIX: &str = "webhook:";

/// What a destination sends: one outbox event.
#[derive(Debug, Clone)]
pub struct OutgoingEvent {
    /// The event's UUID: NATS `Nats-Msg-Id` header, webhook `X-Registry-Event-Id` header.
    pub id: String,
    pub action: Action,
    pub repository: String,
    /// JSON of ONE event object; destinations wrap it: `{"events":[<body>]}`.
    pub body: String,
}

impl OutgoingEvent {
    /// The envelope every destination sends.
    pub fn envelope(&self) -> String {
        format!("{{\"events\":[{}]}}", self.body)
    }
}

/// A send that did not succeed; the message never holds a secret.
#[derive(Debug, thiserror::Error)]
#[error("{destination}: {message}")]
pub struct SendError {
    pub destination: String,
    pub message: String,
}

impl SendError {
    pub(crate) fn new(destination: &str, message: impl Into<String>) -> Self {
        SendError {
            destination: destination.to_owned(),
            message: message.into(),
        }
    }
}

/// Every configured destination; cheap to clone.
#[derive(Debug, Clone)]
pub struct Destinations {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    nats: Option<NatsDestination>,
    /// With their destination names, in file order.
    webhooks: Vec<(String, WebhookDestination)>,
}

impl Destinations {
    /// Builds the destinations; connects to NATS lazily (the first send), never failing
    /// start-up because NATS is down.
    pub fn new(config: &EventsConfig) -> Self {
        let nats = config
            .nats
            .as_ref()
            .map(|nats| NatsDestination::new(nats, &config.source_instance));
        let webhooks = config
            .webhooks
            .iter()
            .map(|endpoint| {
                (
                    format!("{WEBHOOK_PREFIX}{}", endpoint.name),
                    WebhookDestination::new(endpoint.clone()),
                )
            })
            .collect();
        Destinations {
            inner: Arc::new(Inner { nats, webhooks }),
        }
    }

    /// Names of every destination: "nats" and "webhook:<name>", stable across restarts.
    pub fn names(&self) -> Vec<String> {
        let nats = self
            .inner
            .nats
            .as_ref()
            .map(|_| NATS_DESTINATION.to_owned());
        nats.into_iter()
            .chain(self.inner.webhooks.iter().map(|(name, _)| name.clone()))
            .collect()
    }

    /// Whether `destination` wants this event (the webhook's `actions`/`repositories`
    /// filters; NATS takes every event). An unknown destination wants none.
    pub fn wants(&self, destination: &str, action: Action, repository: &str) -> bool {
        if destination == NATS_DESTINATION {
            return self.inner.nats.is_some();
        }
        self.webhook(destination)
            .is_some_and(|hook| hook.endpoint().wants(action, repository))
    }

    /// Sends one event to one destination, returning only once it is accepted
    /// (webhook: any 2xx within the endpoint's timeout; NATS with JetStream: the PubAck;
    /// core NATS: after a flush). Unknown destination name -> SendError.
    pub async fn send(&self, destination: &str, event: &OutgoingEvent) -> Result<(), SendError> {
        if destination == NATS_DESTINATION
            && let Some(nats) = &self.inner.nats
        {
            return nats.send(event).await;
        }
        match self.webhook(destination) {
            Some(hook) => hook.send(destination, event).await,
            None => Err(SendError::new(
                destination,
                "no such destination is configured (removed from the configuration?)",
            )),
        }
    }

    fn webhook(&self, destination: &str) -> Option<&WebhookDestination> {
        self.inner
            .webhooks
            .iter()
            .find(|(name, _)| name == destination)
            .map(|(_, hook)| hook)
    }
}

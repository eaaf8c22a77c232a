//! The destinations of events: NATS ([`nats`]) and webhooks ([`webhook`]). A destination is
//! named by a stable string (`"nats"`, `"webhook:<name>"`) that the outbox stores with each
//! delivery; [`Destinations::send`] sends one event to one of them and returns only once the
//! destination accepted it, so a delivery marked done is a delivery received (at least once:
//! a send that failed after the destination took it is sent again, with the same event id
//! for the receiver's dedup).
//!
//! Every destination gets distribution's notification envelope: NATS one message per event,
//! `{"events":[<body>]}`; a webhook request carries up to its `max_events_per_request` events
//! of one repository, in order, `{"events":[<body>,<body>,…]}` ([`Destinations::send_all`]).

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
    /// The envelope of this event alone.
    pub fn envelope(&self) -> String {
        envelope(std::slice::from_ref(self))
    }
}

/// distribution's envelope of `events`, in order: `{"events":[<body>,…]}`.
pub fn envelope(events: &[OutgoingEvent]) -> String {
    let mut out =
        String::with_capacity(events.iter().map(|e| e.body.len() + 1).sum::<usize>() + 12);
    out.push_str("{\"events\":[");
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&event.body);
    }
    out.push_str("]}");
    out
}

/// A send of several events that stopped at a failure: the first `accepted` were taken by the
/// destination, the next one failed, and none after it counts as taken.
#[derive(Debug)]
pub struct PartialSend {
    pub accepted: usize,
    pub error: SendError,
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

    /// The most events one [`Destinations::send_all`] to `destination` takes in one request:
    /// a webhook's `max_events_per_request`; NATS publishes each event as its own message.
    pub fn events_per_send(&self, destination: &str) -> usize {
        match self.webhook(destination) {
            Some(hook) => hook.endpoint().max_events_per_request.max(1) as usize,
            None => 1,
        }
    }

    /// Sends events of one stream (destination and repository), in order, returning once all
    /// were accepted or at the first failure. A webhook takes them in one request (all or
    /// none: at most [`Destinations::events_per_send`]); NATS one message after the other.
    pub async fn send_all(
        &self,
        destination: &str,
        events: &[OutgoingEvent],
    ) -> Result<(), PartialSend> {
        if let Some(hook) = self.webhook(destination) {
            return hook
                .send_all(destination, events)
                .await
                .map_err(|error| PartialSend { accepted: 0, error });
        }
        for (accepted, event) in events.iter().enumerate() {
            self.send(destination, event)
                .await
                .map_err(|error| PartialSend { accepted, error })?;
        }
        Ok(())
    }

    fn webhook(&self, destination: &str) -> Option<&WebhookDestination> {
        self.inner
            .webhooks
            .iter()
            .find(|(name, _)| name == destination)
            .map(|(_, hook)| hook)
    }
}

//! The NATS destination: each event is published to `<NATS_SUBJECT_PREFIX>.<action>` with
//! the envelope as payload and the event id in `Nats-Msg-Id`, which JetStream streams use to
//! drop a duplicate within their dedup window (a re-send after a lost ack stores nothing new).
//!
//! JetStream modes (`NATS_JETSTREAM`): `true` publishes through JetStream and waits for the
//! stream's ack; `auto` does the same where a stream covers the subject, and publishes on core
//! NATS where none does (logged once per process); `false` publishes on core NATS. A core
//! publish counts as sent once a flush (a round trip to the server) succeeds: the server has
//! it, though no subscriber may have been there to see it.
//!
//! `auto` asks JetStream which stream covers the subject (`$JS.API.STREAM.NAMES`, remembered
//! for [`STREAM_LOOKUP_TTL`]) rather than reading "no responders" on a JetStream publish:
//! a JetStream publish is a request on the subject itself, so with no stream but a core
//! subscriber on it (the usual consumer of core events), the subscriber gets the request, no
//! one answers, and the publish would wait out its timeout and fail every time.
//!
//! The connection is opened at the first send, so NATS being down never stops a start-up; a
//! failed connection is retried at the next send, and once connected the client reconnects on
//! its own. Every send is bounded by [`SEND_TIMEOUT`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::context::{GetStreamByNameErrorKind, PublishErrorKind};
use async_nats::jetstream::{self, message::PublishMessage};
use async_nats::{ConnectOptions, HeaderMap, ServerAddr};
use bytes::Bytes;
use tokio::sync::OnceCell;

use super::{NATS_DESTINATION, OutgoingEvent, SendError};
use crate::config::{JetStreamMode, NatsConfig, NatsCredentials};

/// The longest a send (connection included) may take before it counts as failed.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// How long connecting to one server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long `auto` mode trusts what it learnt about a subject's stream (a stream created or
/// removed is noticed within this time).
pub const STREAM_LOOKUP_TTL: Duration = Duration::from_secs(30);

/// The NATS destination of [`super::Destinations`].
#[derive(Debug)]
pub struct NatsDestination {
    config: NatsConfig,
    /// The client name the server shows (`registry <instance>`).
    client_name: String,
    connection: OnceCell<Connection>,
    /// Whether the fall-back to core NATS (`auto`, no stream) was logged already.
    fallback_logged: AtomicBool,
    /// `auto` mode: per subject, whether a stream covers it, and when that was learnt.
    streams: Mutex<HashMap<String, (bool, Instant)>>,
}

#[derive(Debug)]
struct Connection {
    client: async_nats::Client,
    jetstream: jetstream::Context,
}

impl NatsDestination {
    pub fn new(config: &NatsConfig, source_instance: &str) -> Self {
        NatsDestination {
            config: config.clone(),
            client_name: format!("registry {source_instance}"),
            connection: OnceCell::new(),
            fallback_logged: AtomicBool::new(false),
            streams: Mutex::new(HashMap::new()),
        }
    }

    /// The subject of events of `event`'s action.
    pub fn subject(&self, event: &OutgoingEvent) -> String {
        format!("{}.{}", self.config.subject_prefix, event.action.as_str())
    }

    /// Publishes one event; see the module docs for when it counts as sent.
    pub async fn send(&self, event: &OutgoingEvent) -> Result<(), SendError> {
        tokio::time::timeout(SEND_TIMEOUT, self.send_unbounded(event))
            .await
            .unwrap_or_else(|_| {
                Err(error(format!(
                    "no answer within {} s (server unreachable or slow)",
                    SEND_TIMEOUT.as_secs()
                )))
            })
    }

    async fn send_unbounded(&self, event: &OutgoingEvent) -> Result<(), SendError> {
        let connection = self.connection.get_or_try_init(|| self.connect()).await?;
        let subject = self.subject(event);
        let payload = Bytes::from(event.envelope());
        let through_jetstream = match self.config.jetstream {
            JetStreamMode::Off => false,
            JetStreamMode::Required => true,
            JetStreamMode::Auto => self.stream_covers(connection, &subject).await?,
        };
        if !through_jetstream {
            if self.config.jetstream == JetStreamMode::Auto
                && !self.fallback_logged.swap(true, Ordering::Relaxed)
            {
                tracing::info!(
                    subject,
                    "no JetStream stream covers the events' subject: publishing on core NATS \
                     (no ack; NATS_JETSTREAM=true makes this an error)"
                );
            }
            return core_publish(&connection.client, subject, &event.id, payload).await;
        }
        let publish = PublishMessage::build()
            .payload(payload.clone())
            .message_id(&event.id);
        let acked = match connection
            .jetstream
            .send_publish(subject.clone(), publish)
            .await
        {
            Ok(ack) => ack.await,
            Err(e) => Err(e),
        };
        match acked {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == PublishErrorKind::StreamNotFound => {
                // The stream went away since the lookup: look again next time.
                self.forget(&subject);
                Err(error(format!(
                    "no JetStream stream covers the subject {subject}{}",
                    if self.config.jetstream == JetStreamMode::Required {
                        " (NATS_JETSTREAM=true)"
                    } else {
                        ""
                    }
                )))
            }
            Err(e) => Err(error(format!("JetStream publish to {subject}: {e}"))),
        }
    }

    /// `auto` mode: whether a JetStream stream covers `subject` (no JetStream on the server:
    /// none does), remembered for [`STREAM_LOOKUP_TTL`].
    async fn stream_covers(
        &self,
        connection: &Connection,
        subject: &str,
    ) -> Result<bool, SendError> {
        if let Some((covered, at)) = self.lock_streams().get(subject).copied()
            && at.elapsed() < STREAM_LOOKUP_TTL
        {
            return Ok(covered);
        }
        let covered = if !connection.client.server_info().jetstream {
            false
        } else {
            match connection.jetstream.stream_by_subject(subject).await {
                Ok(_) => true,
                Err(e) if e.kind() == GetStreamByNameErrorKind::NotFound => false,
                Err(e) => {
                    return Err(error(format!(
                        "asking JetStream which stream covers {subject}: {e}"
                    )));
                }
            }
        };
        self.lock_streams()
            .insert(subject.to_owned(), (covered, Instant::now()));
        Ok(covered)
    }

    fn forget(&self, subject: &str) {
        self.lock_streams().remove(subject);
    }

    /// The lookup cache; a panic elsewhere while holding it leaves plain data, still usable.
    fn lock_streams(&self) -> std::sync::MutexGuard<'_, HashMap<String, (bool, Instant)>> {
        self.streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn connect(&self) -> Result<Connection, SendError> {
        let mut options = ConnectOptions::new()
            .name(&self.client_name)
            .connection_timeout(CONNECT_TIMEOUT);
        options = match &self.config.credentials {
            NatsCredentials::None => options,
            NatsCredentials::CredsFile { path, contents } => {
                options.credentials(contents.expose()).map_err(|e| {
                    error(format!(
                        "NATS_CREDS_FILE {}: not usable: {e}",
                        path.display()
                    ))
                })?
            }
            NatsCredentials::UserPassword { user, password } => {
                options.user_and_password(user.clone(), password.expose().clone())
            }
            NatsCredentials::Token(token) => options.token(token.expose().clone()),
        };
        let servers = self
            .config
            .url
            .split(',')
            .map(|server| server.trim().parse::<ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| error(format!("NATS_URL: {e}")))?;
        let client = options
            .connect(servers)
            .await
            .map_err(|e| error(format!("cannot connect: {e}")))?;
        let jetstream = jetstream::new(client.clone());
        Ok(Connection { client, jetstream })
    }
}

/// A core NATS publish, sent once the flush returns.
async fn core_publish(
    client: &async_nats::Client,
    subject: String,
    id: &str,
    payload: Bytes,
) -> Result<(), SendError> {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", id);
    client
        .publish_with_headers(subject.clone(), headers, payload)
        .await
        .map_err(|e| error(format!("publish to {subject}: {e}")))?;
    client
        .flush()
        .await
        .map_err(|e| error(format!("flush after publishing to {subject}: {e}")))
}

fn error(message: String) -> SendError {
    SendError::new(NATS_DESTINATION, message)
}

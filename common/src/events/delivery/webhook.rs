//! The webhook destinations: events are `POST`ed to the endpoint's URL as distribution's
//! notification envelope (`{"events":[<body>,…]}`, `Content-Type:
//! application/vnd.docker.distribution.events.v1+json`), up to the endpoint's
//! `max_events_per_request` events of one repository per request, in order, with the
//! endpoint's own headers, `X-Registry-Event-Id: <id>, <id>, …` (the events' ids in body
//! order; each event's `id` is the receiver's idempotency key: a retried event keeps its id,
//! though it may come back in a request of other events) and, when the endpoint has a secret,
//! `X-Registry-Signature-256: sha256=<hex>`, the HMAC-SHA256 of the exact body bytes under
//! that secret.
//!
//! A send succeeds on any 2xx answer within the endpoint's timeout (which covers connecting,
//! sending and the answer's head). Redirects are not followed (a 3xx is a failure: the
//! signature was made for this URL's receiver, and a POST body is not re-sent on a 303).

use std::sync::Arc;
use std::sync::LazyLock;

use hmac::{Hmac, KeyInit, Mac};
use reqwest_tls::header::CONTENT_TYPE;
use sha2::Sha256;

use super::{OutgoingEvent, SendError, envelope};
use crate::config::WebhookEndpoint;

/// distribution's media type of a notification envelope.
pub const EVENTS_MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";
/// The header carrying the events' ids (comma-separated, in body order).
pub const EVENT_ID_HEADER: &str = "X-Registry-Event-Id";
/// The header carrying `sha256=<hex HMAC-SHA256(secret, body)>`.
pub const SIGNATURE_HEADER: &str = "X-Registry-Signature-256";

/// How much of a refusing answer's body is kept in the error (receivers explain there).
const ANSWER_EXCERPT: usize = 200;

/// One client for every endpoint (one connection pool); built once per process.
static CLIENT: LazyLock<Result<reqwest_tls::Client, String>> = LazyLock::new(|| {
    reqwest_tls::Client::builder()
        .redirect(reqwest_tls::redirect::Policy::none())
        .user_agent(concat!("registry-events/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("the HTTP client could not be built: {e}"))
});

/// One webhook endpoint of [`super::Destinations`].
#[derive(Debug)]
pub struct WebhookDestination {
    endpoint: Arc<WebhookEndpoint>,
}

impl WebhookDestination {
    pub fn new(endpoint: Arc<WebhookEndpoint>) -> Self {
        WebhookDestination { endpoint }
    }

    pub fn endpoint(&self) -> &WebhookEndpoint {
        &self.endpoint
    }

    /// `POST`s one event; `destination` is this endpoint's destination name (for errors).
    pub async fn send(&self, destination: &str, event: &OutgoingEvent) -> Result<(), SendError> {
        self.send_all(destination, std::slice::from_ref(event))
            .await
    }

    /// `POST`s `events` (of one repository, in order) in one request: accepted all, or none.
    pub async fn send_all(
        &self,
        destination: &str,
        events: &[OutgoingEvent],
    ) -> Result<(), SendError> {
        let fail = |message: String| SendError::new(destination, message);
        let client = CLIENT.as_ref().map_err(|e| fail(e.clone()))?;
        let endpoint = &self.endpoint;
        let body = envelope(events);
        let ids = events
            .iter()
            .map(|e| e.id.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let mut request = client
            .post(&endpoint.url)
            .timeout(endpoint.timeout)
            .header(CONTENT_TYPE, EVENTS_MEDIA_TYPE)
            .header(EVENT_ID_HEADER, ids);
        for (name, value) in &endpoint.headers {
            request = request.header(name, value);
        }
        if let Some(secret) = &endpoint.secret {
            request = request.header(
                SIGNATURE_HEADER,
                signature(secret.expose(), body.as_bytes()),
            );
        }
        // `without_url`: the URL may carry a token in its query.
        let response = request.body(body).send().await.map_err(|e| {
            let e = e.without_url();
            if e.is_timeout() {
                fail(format!(
                    "no answer within {} s (timeout_secs)",
                    endpoint.timeout.as_secs()
                ))
            } else {
                fail(format!("POST failed: {}", error_chain(&e)))
            }
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let excerpt = match response.text().await {
            Ok(text) => text.chars().take(ANSWER_EXCERPT).collect::<String>(),
            Err(_) => String::new(),
        };
        Err(fail(format!(
            "answered {status}{}{}",
            if excerpt.is_empty() { "" } else { ": " },
            excerpt.trim()
        )))
    }
}

/// `sha256=<hex>` of HMAC-SHA256 under `secret` over `body`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail; the fallback keeps it total.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    format!(
        "sha256={}",
        crate::oci::digest::hex(&mac.finalize().into_bytes())
    )
}

/// An error with its sources (reqwest's own message is often just "error sending request").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::signature;

    #[test]
    fn signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}

//! Who asked for a change, and how: the `request` and `actor` records of an event. The HTTP
//! layer fills it from the request (an extractor); jobs and tests use [`EventOrigin::internal`].

/// The request behind an event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventOrigin {
    /// A fresh id per request (a UUID).
    pub request_id: String,
    /// The client's address (`ip:port`), or the first `X-Forwarded-For` entry behind a proxy.
    pub addr: String,
    /// The host the client addressed (`X-Forwarded-Host`, else `Host`).
    pub host: String,
    /// `http` or `https` as the client saw it (`X-Forwarded-Proto`).
    pub scheme: String,
    pub method: String,
    pub user_agent: String,
    /// The authenticated user, when there is one.
    pub actor: Option<String>,
}

impl EventOrigin {
    /// A change made by the registry itself (a job, a test), not by a client request.
    pub fn internal(method: &str) -> EventOrigin {
        EventOrigin {
            request_id: uuid::Uuid::new_v4().to_string(),
            method: method.to_owned(),
            scheme: "http".to_owned(),
            host: "localhost".to_owned(),
            ..EventOrigin::default()
        }
    }

    /// `<scheme>://<host>/v2/<repository>/<kind>/<reference>`: the `url` of a target.
    pub fn url(&self, repository: &str, kind: &str, reference: &str) -> String {
        let scheme = if self.scheme.is_empty() {
            "http"
        } else {
            &self.scheme
        };
        let host = if self.host.is_empty() {
            "localhost"
        } else {
            &self.host
        };
        format!("{scheme}://{host}/v2/{repository}/{kind}/{reference}")
    }
}

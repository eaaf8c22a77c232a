//! The [`EventOrigin`] of a request: the `request` and `actor` records of the events its
//! change writes. Behind a proxy (Cloud Run's load balancer) the client is the first
//! `X-Forwarded-For` entry and the host and scheme are `X-Forwarded-Host`/`-Proto`. With
//! events off it is left empty: a pull pays nothing for it.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use http::header::{HOST, USER_AGENT};
use http::request::Parts;

use crate::auth::Caller;
use crate::events::EventOrigin;
use crate::state::AppState;

impl FromRequestParts<AppState> for EventOrigin {
    type Rejection = std::convert::Infallible;

    /// Empty (and free) when events are off: nothing reads it then.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if !state.events.enabled() {
            return Ok(EventOrigin::default());
        }
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.to_string());
        let host = header("x-forwarded-host")
            .or_else(|| header(HOST.as_str()))
            .or_else(|| parts.uri.authority().map(|a| a.as_str().to_owned()))
            .unwrap_or_default();
        let scheme = header("x-forwarded-proto")
            .or_else(|| parts.uri.scheme_str().map(str::to_owned))
            .unwrap_or_else(|| "http".to_owned());
        let actor = parts
            .extensions
            .get::<Caller>()
            .and_then(|caller| caller.principal().user().map(str::to_owned));
        Ok(EventOrigin {
            request_id: uuid::Uuid::new_v4().to_string(),
            addr: header("x-forwarded-for").or(peer).unwrap_or_default(),
            host,
            scheme,
            method: parts.method.as_str().to_owned(),
            user_agent: parts
                .headers
                .get(USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
            actor,
        })
    }
}

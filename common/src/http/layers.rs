//! The layers every service shares: request log, API version header, URI length bound,
//! path rewriting, `/healthz`, and spec-shaped 404/405 answers.
//!
//! The request log writes one line per request, when the response head is ready (a streamed
//! body may still be flowing). In text: `method=… uri=… status=… latency_ms=…` (the
//! end-to-end tests read those three keys). In JSON: Cloud Logging's `httpRequest` object
//! (`requestMethod`, `requestUrl`, `status`, `responseSize` and `requestSize` when a
//! `Content-Length` says, `userAgent`, `remoteIp` (the TCP peer), `latency` as `"0.001234s"`,
//! `protocol`), inside the request's span so that trace correlation applies (see
//! [`crate::telemetry`]).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header::{HeaderValue, USER_AGENT};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, Method, StatusCode, Uri, Version};
use tracing::Instrument;

use super::oci_error::RegistryError;
use super::route::{Endpoint, HEALTHZ_PATH, INTERNAL_PREFIX, RegistryRoute};
use crate::oci::RepositoryName;
use crate::state::AppState;
use crate::telemetry;

/// Longest request target (path and query) served; longer ones get 414.
const MAX_URI_BYTES: usize = 8 * 1024;

static API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");

/// Wraps a service's routes into the app it serves, on `state`.
pub fn registry_app(routes: Router<AppState>, state: AppState) -> Router {
    let routes = registry_fallbacks(routes.route(HEALTHZ_PATH, get(healthz)));
    Router::new()
        .fallback_service(routes.with_state(state.clone()))
        // The management API's CORS layer is declared with its routes, before any state
        // exists; it reads the allowed origins from here.
        .layer(axum::Extension(state.cors_origins.clone()))
        .layer(middleware::from_fn_with_state(
            state,
            super::auth_layer::authorize,
        ))
        .layer(middleware::from_fn(rewrite_path))
        .layer(middleware::from_fn(api_version_header))
        .layer(middleware::from_fn(log_request))
}

/// Adds the spec-shaped answers for unknown paths and methods. A service that serves only
/// some endpoints answers 405 on a path of the API it does not serve: behind the load balancer
/// it only sees such a path with a method that no service serves there (see
/// `terraform/routes.json`), so 405 is what the single binary would answer too.
pub fn registry_fallbacks<S: Clone + Send + Sync + 'static>(routes: Router<S>) -> Router<S> {
    routes
        .fallback(|uri: Uri| async move {
            if is_api_endpoint(uri.path()) {
                RegistryError::unsupported(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method not allowed on this endpoint",
                )
            } else {
                RegistryError::unsupported(StatusCode::NOT_FOUND, "no such endpoint")
            }
        })
        .method_not_allowed_fallback(|| async {
            RegistryError::unsupported(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this endpoint",
            )
        })
}

/// Whether a (rewritten) path is an endpoint of the distribution API, its parameter present.
fn is_api_endpoint(path: &str) -> bool {
    Endpoint::of_route(path).is_some()
}

/// `GET /healthz`: the process serves; touches neither the database nor storage.
async fn healthz() -> &'static str {
    "ok"
}

async fn rewrite_path(mut request: Request, next: Next) -> Response {
    let uri = request.uri().clone();
    let target_len = uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if target_len > MAX_URI_BYTES {
        return RegistryError::unsupported(StatusCode::URI_TOO_LONG, "request URI too long")
            .into_response();
    }
    let internal = match RegistryRoute::rewrite(uri.path()) {
        RegistryRoute::Unchanged => return next.run(request).await,
        RegistryRoute::NotFound => format!("{INTERNAL_PREFIX}/not-found"),
        RegistryRoute::Repository { name, internal, .. } => match RepositoryName::parse(name) {
            Ok(name) => {
                request.extensions_mut().insert(name);
                internal
            }
            Err(e) => return RegistryError::from(e).into_response(),
        },
    };
    let target = match uri.query() {
        Some(query) => format!("{internal}?{query}"),
        None => internal,
    };
    let mut parts = uri.into_parts();
    parts.path_and_query = PathAndQuery::try_from(target).ok();
    match Uri::from_parts(parts) {
        Ok(rewritten) => *request.uri_mut() = rewritten,
        Err(_) => {
            return RegistryError::unsupported(StatusCode::BAD_REQUEST, "malformed request path")
                .into_response();
        }
    }
    next.run(request).await
}

async fn api_version_header(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response.headers_mut().insert(
        API_VERSION.clone(),
        HeaderValue::from_static("registry/2.0"),
    );
    response
}

async fn log_request(request: Request, next: Next) -> Response {
    let span = telemetry::request_span(request.headers());
    let line = RequestLine::of(&request);
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    span.in_scope(|| line.log(&response, started.elapsed()));
    response
}

/// What the request log line says about the request.
struct RequestLine {
    method: Method,
    uri: Uri,
    version: Version,
    user_agent: Option<String>,
    remote_ip: Option<String>,
    request_size: Option<String>,
}

impl RequestLine {
    fn of(request: &Request) -> RequestLine {
        let headers = request.headers();
        RequestLine {
            method: request.method().clone(),
            uri: request.uri().clone(),
            version: request.version(),
            user_agent: headers
                .get(USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            remote_ip: request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(peer)| peer.ip().to_string()),
            request_size: header_len(headers),
        }
    }

    fn log(self, response: &Response, latency: Duration) {
        let status = response.status().as_u16();
        if !telemetry::json_enabled() {
            // The request target as the client wrote it in HTTP/1.1 (an h2 request carries
            // scheme and authority too; they say nothing here).
            let target = self
                .uri
                .path_and_query()
                .map_or_else(|| self.uri.path().to_owned(), |pq| pq.as_str().to_owned());
            tracing::info!(
                method = %self.method,
                uri = %target,
                status,
                latency_ms = latency.as_millis() as u64,
                "request"
            );
            return;
        }
        tracing::info!(
            http_request.request_method = %self.method,
            http_request.request_url = %self.uri,
            http_request.status = status,
            http_request.response_size = header_len(response.headers()).as_deref(),
            http_request.request_size = self.request_size.as_deref(),
            http_request.user_agent = self.user_agent.as_deref(),
            http_request.remote_ip = self.remote_ip.as_deref(),
            http_request.latency = format!("{:.6}s", latency.as_secs_f64()),
            http_request.protocol = protocol(self.version),
            "request"
        );
    }
}

/// The protocol as Cloud Logging names it (`HTTP/1.1`, `HTTP/2`).
fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

/// `Content-Length` as Cloud Logging's int64 (a JSON string), when the head says it.
fn header_len(headers: &HeaderMap) -> Option<String> {
    super::content_length(headers).map(|len| len.to_string())
}

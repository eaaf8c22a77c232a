//! The layers every service shares: request log, API version header, URI length bound,
//! path rewriting, `/healthz`, and spec-shaped 404/405 answers.

use std::time::Instant;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::header::HeaderValue;
use http::uri::PathAndQuery;
use http::{HeaderName, StatusCode, Uri};

use super::route::{INTERNAL_PREFIX, RegistryRoute};
use crate::error::RegistryError;
use crate::oci::RepositoryName;

/// Longest request target (path and query) served; longer ones get 414.
const MAX_URI_BYTES: usize = 8 * 1024;

static API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");

/// Wraps a service's routes (already given their state) into the app it serves.
pub fn registry_app(routes: Router) -> Router {
    let routes = registry_fallbacks(routes.route("/healthz", get(healthz)));
    Router::new()
        .fallback_service(routes)
        .layer(middleware::from_fn(rewrite_path))
        .layer(middleware::from_fn(api_version_header))
        .layer(middleware::from_fn(log_request))
}

/// Adds the spec-shaped answers for unknown paths and methods.
pub fn registry_fallbacks(routes: Router) -> Router {
    routes
        .fallback(|| async {
            RegistryError::unsupported(StatusCode::NOT_FOUND, "no such endpoint")
        })
        .method_not_allowed_fallback(|| async {
            RegistryError::unsupported(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this endpoint",
            )
        })
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
        RegistryRoute::Repository { name, internal } => match RepositoryName::parse(name) {
            Ok(name) => {
                request.extensions_mut().insert(name);
                internal
            }
            Err(e) => return e.into_response(),
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
    let method = request.method().clone();
    let uri = request.uri().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        method = %method,
        uri = %uri,
        status = response.status().as_u16(),
        latency_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

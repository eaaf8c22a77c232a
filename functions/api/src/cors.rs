//! CORS for the dashboards named by `API_CORS_ORIGINS`: their browsers may call the management
//! API with the user's credentials. The allowed origins are the state's
//! (`AppState::cors_origins`); the layer is declared with the routes, before the state exists,
//! so `registry_app` hands them to each request. Without them no origin is allowed.
//! Preflight requests (`OPTIONS`) are answered here, before authorization, as browsers send
//! them without credentials.

use std::time::Duration;

use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, request};
use registry_common::config::CorsOrigins;
use tower_http::cors::{AllowCredentials, AllowOrigin, CorsLayer};

/// How long a browser may reuse a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The CORS layer of the `/api/` routes.
pub fn layer() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(allowed))
        .allow_credentials(AllowCredentials::predicate(allowed))
        .allow_methods([Method::POST, Method::GET])
        .allow_headers([AUTHORIZATION, CONTENT_TYPE])
        .max_age(PREFLIGHT_MAX_AGE)
}

fn allowed(origin: &HeaderValue, request: &request::Parts) -> bool {
    request
        .extensions
        .get::<CorsOrigins>()
        .is_some_and(|origins| origins.allows(origin.as_bytes()))
}

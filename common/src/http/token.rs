//! The Docker token endpoint's HTTP side (`GET /auth/token`): parse the query and the
//! credentials, ask [`Authorizer::issue_token`](crate::auth::Authorizer::issue_token), answer.
//!
//! It lives here, beside the auth layer, and not in a service crate: it is part of
//! authentication (its domain is `crate::auth`), not of manifests. The `manifest` binary mounts
//! it ([`TOKEN_PATH`](super::TOKEN_PATH)) only because it is the load balancer's default
//! service, which the URL map sends `/auth/token` to.

use super::oci_error::RegistryError;
use crate::auth::{AuthError, Credentials};
use crate::state::AppState;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use http::header::CACHE_CONTROL;

/// `GET /auth/token?service=&scope=&account=`: a bearer token for the scopes the caller may
/// have.
pub async fn token_endpoint(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, RegistryError> {
    let Query(params) =
        query.map_err(|_| AuthError::BadTokenRequest("malformed query string".to_owned()))?;
    let credentials = Credentials::from_headers(&headers);
    let answer = state.auth.issue_token(&credentials, &params).await?;
    Ok(([(CACHE_CONTROL, "no-store")], Json(answer)).into_response())
}

//! The Docker token endpoint, served by the default service: what it grants is decided in
//! `registry_common::auth` (`Authorizer::issue_token`).

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::HeaderMap;
use http::header::CACHE_CONTROL;
use registry_common::auth::{AuthError, Authorizer, Credentials};
use registry_common::http::RegistryError;

/// `GET /auth/token?service=&scope=&account=`: a bearer token for the scopes the caller may
/// have.
pub async fn issue(
    Extension(auth): Extension<Authorizer>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, RegistryError> {
    let Query(params) =
        query.map_err(|_| AuthError::BadTokenRequest("malformed query string".to_owned()))?;
    let credentials = Credentials::from_headers(&headers);
    let answer = auth.issue_token(&credentials, &params).await?;
    Ok(([(CACHE_CONTROL, "no-store")], Json(answer)).into_response())
}

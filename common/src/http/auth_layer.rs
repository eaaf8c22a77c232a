//! Authorization of every request, after the path is parsed: the layer takes the
//! [`Authorizer`] from the [`AppState`], authenticates the caller, checks what the request
//! needs, and hands the handlers a [`Caller`] (an extractor) for the questions only they can
//! ask (a mount's source, catalog entries, the management API's projects).
//!
//! | Request | Needs |
//! |---|---|
//! | `/healthz`, `/auth/token`, `/internal/…` | nothing (the token endpoint and the job endpoints check their own credentials) |
//! | `/v2/<name>/…` | the action of the method (`pull`: GET/HEAD, `push`: POST/PUT/PATCH, `delete`: DELETE) on `<name>` |
//! | `/v2/_catalog` | authentication (tokens: `registry:catalog:*`); entries filtered by `pull` |
//! | `/api/…` | nothing here: the handler authorizes per project, and answers refusals (wrong credentials included) in the management API's envelope |
//! | anything else (`/v2/`, unknown paths) | authentication |
//!
//! The state cannot be built without an authorizer, so no binary can forget it; a handler that
//! asks for a [`Caller`] on a request this layer did not pass answers 500 rather than serve.

use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::HOST;
use http::request::Parts;

use super::oci_error::{OciCode, RegistryError};
use super::route::{HEALTHZ_PATH, JOB_ENDPOINTS_PREFIX, TOKEN_PATH};
use crate::auth::{Action, Caller, Credentials, Principal};
use crate::oci::RepositoryName;
use crate::state::AppState;

/// What a request needs before its handler runs.
enum Need {
    Nothing,
    Authentication,
    Catalog,
    Repository(RepositoryName, Action),
    Management,
}

impl Need {
    fn of(request: &Request) -> Need {
        let path = request.uri().path();
        if path == HEALTHZ_PATH || path == TOKEN_PATH || path.starts_with(JOB_ENDPOINTS_PREFIX) {
            return Need::Nothing;
        }
        if path == "/api" || path.starts_with("/api/") {
            return Need::Management;
        }
        if let Some(name) = request.extensions().get::<RepositoryName>() {
            return Need::Repository(name.clone(), Action::of_method(request.method()));
        }
        if path == "/v2/_catalog" {
            return Need::Catalog;
        }
        Need::Authentication
    }
}

/// The middleware (see the module documentation).
pub async fn authorize(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let auth = state.auth.clone();
    if !auth.is_enabled() {
        request
            .extensions_mut()
            .insert(Caller::new(auth, Principal::Anyone, None));
        return next.run(request).await;
    }
    let need = Need::of(&request);
    let principal = match need {
        Need::Nothing => Principal::Anonymous,
        _ => {
            auth.authenticate(&Credentials::from_headers(request.headers()))
                .await
        }
    };
    let caller = Caller::new(auth, principal, Some(token_realm(&request)));
    let checked = match &need {
        Need::Nothing => Ok(()),
        Need::Authentication => caller.authenticated().await,
        Need::Catalog => caller.authorize_catalog().await,
        Need::Repository(name, action) => caller.authorize(name, *action).await,
        Need::Management => Ok(()),
    };
    if let Err(refused) = checked {
        return RegistryError::from(refused).into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// This registry's `/auth/token` at the scheme and host the request came to (behind a proxy,
/// `X-Forwarded-Proto` and `X-Forwarded-Host`), for challenges when `TOKEN_REALM` is unset.
fn token_realm(request: &Request) -> String {
    let headers = request.headers();
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let scheme = first("x-forwarded-proto")
        .or(request.uri().scheme_str())
        .unwrap_or("http");
    let host = first("x-forwarded-host")
        .or_else(|| headers.get(HOST).and_then(|v| v.to_str().ok()))
        .or(request.uri().authority().map(|a| a.as_str()))
        .unwrap_or("localhost");
    format!("{scheme}://{host}/auth/token")
}

/// The caller of a request, as the layer authenticated it.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = RegistryError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            tracing::error!(
                "a handler asked for the Caller on a request the auth layer did not pass"
            );
            RegistryError::new(OciCode::Unknown, "internal server error")
        })
    }
}

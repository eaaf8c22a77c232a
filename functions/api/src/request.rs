//! What every method does before its handler: `POST` only (405), a JSON body (415), at most
//! [`MAX_BODY`] bytes (413), parsed into the method's parameters (400, naming what is wrong).

use std::future::Future;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any};
use http::Method;
use registry_common::auth::Caller;
use registry_common::events::EventOrigin;
use registry_common::http::{content_type, read_limited};
use registry_common::state::AppState;
use serde::de::DeserializeOwned;

use crate::envelope::{Answer, ApiError};

/// Largest request body: every method's parameters fit in far less.
pub const MAX_BODY: usize = 64 * 1024;

/// What a method's handler gets besides its parameters.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub state: AppState,
    pub caller: Caller,
    /// The request, for the events of the deletes.
    pub origin: EventOrigin,
}

/// The route of one method: checks the request, parses the parameters `P`, runs `handler`.
pub fn method<P, F, Fut>(handler: F) -> MethodRouter<AppState>
where
    P: DeserializeOwned + Send + 'static,
    F: Fn(Ctx, P) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Answer, ApiError>> + Send + 'static,
{
    any(
        move |State(state): State<AppState>,
              caller: Caller,
              origin: EventOrigin,
              request: Request| {
            let ctx = Ctx {
                state,
                caller,
                origin,
            };
            run(handler.clone(), ctx, request)
        },
    )
}

/// Like [`method`], for the deletes: the request, from its body on, is handled in a task of
/// its own that the request only awaits. A client that hangs up or times out drops the
/// request, never the delete: once the whole request has arrived, it is carried out to the
/// end. (The server notices a client has gone only once the body is read, which the task
/// does.)
pub fn detached<P, F, Fut>(handler: F) -> MethodRouter<AppState>
where
    P: DeserializeOwned + Send + 'static,
    F: Fn(Ctx, P) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Answer, ApiError>> + Send + 'static,
{
    any(
        move |State(state): State<AppState>,
              caller: Caller,
              origin: EventOrigin,
              request: Request| {
            let ctx = Ctx {
                state,
                caller,
                origin,
            };
            let task = tokio::spawn(run(handler.clone(), ctx, request));
            async move {
                task.await
                    .unwrap_or_else(|e| ApiError::internal(&e).into_response())
            }
        },
    )
}

async fn run<P, F, Fut>(handler: F, ctx: Ctx, request: Request) -> Response
where
    P: DeserializeOwned,
    F: Fn(Ctx, P) -> Fut,
    Fut: Future<Output = Result<Answer, ApiError>>,
{
    match parameters::<P>(&ctx, request).await {
        Ok(params) => handler(ctx, params).await.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn parameters<P: DeserializeOwned>(ctx: &Ctx, request: Request) -> Result<P, ApiError> {
    if request.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed { allow: "POST" });
    }
    let (parts, body) = request.into_parts();
    if !content_type(&parts.headers).is_some_and(|t| t.eq_ignore_ascii_case("application/json")) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let bytes = read_limited(&parts.headers, body, MAX_BODY, ctx.state.body_idle_timeout)
        .await
        .map_err(|e| {
            if e.status == http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge { limit: MAX_BODY }
            } else {
                ApiError::BadRequest("request body ended before it was complete".to_owned())
            }
        })?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::BadRequest(
            "the body must be a JSON object of the method's parameters".to_owned(),
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        // A wrong type names its field; a missing or unknown field names itself.
        let field = e.path().to_string();
        match field.as_str() {
            "." => ApiError::BadRequest(format!("invalid parameters: {}", e.inner())),
            _ => ApiError::BadRequest(format!("{field}: {}", e.inner())),
        }
    })
}

//! What every method does before its handler: `POST` only (405), a JSON body (415), at most
//! [`MAX_BODY`] bytes (413), parsed into the method's parameters (400, naming what is wrong).

use std::future::Future;

use axum::Extension;
use axum::extract::{Request, State};
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, any};
use http::Method;
use registry_common::auth::Caller;
use registry_common::http::{content_type, read_limited};
use registry_common::state::AppState;
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use crate::envelope::{Answer, ApiError};

/// Largest request body: every method's parameters fit in far less.
pub const MAX_BODY: usize = 64 * 1024;

/// What a method's handler gets besides its parameters.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub state: AppState,
    pub caller: Caller,
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
              Extension(caller): Extension<Caller>,
              request: Request| {
            let handler = handler.clone();
            async move {
                let ctx = Ctx { state, caller };
                match parameters::<P>(&ctx, request).await {
                    Ok(params) => handler(ctx, params).await.into_response(),
                    Err(e) => e.into_response(),
                }
            }
        },
    )
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
    serde_json::from_slice(&bytes).map_err(|e| match e.classify() {
        Category::Data => ApiError::BadRequest(format!("invalid parameters: {e}")),
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::BadRequest(format!("malformed JSON: {e}"))
        }
    })
}

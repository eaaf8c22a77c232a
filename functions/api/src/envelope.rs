//! The envelope every answer of the management API is: `{"ok":true,"result":…}` (`{"ok":true}`
//! for deletes) or `{"ok":false,"error":{"message":…}}`, and the one place where errors
//! become statuses. Internal causes are logged, never sent.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::header::{ALLOW, CACHE_CONTROL, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use registry_common::auth::AuthError;
use registry_common::error::ErrorChain;
use registry_common::services::ManagementError;
use serde::Serialize;

/// Why a request failed, as the client will see it.
#[derive(Debug)]
pub enum ApiError {
    /// 400: the body is not the method's JSON, or a parameter is not valid.
    BadRequest(String),
    /// 401, with the authentication mode's `WWW-Authenticate` challenge.
    Unauthenticated { challenge: String },
    /// 403: valid credentials without the right on the project.
    Denied,
    /// 404: no such repository, tag or manifest.
    NotFound(&'static str),
    /// 404: the path names no method.
    UnknownMethod,
    /// 405, with the `Allow` header of the path.
    MethodNotAllowed { allow: &'static str },
    /// 409.
    Conflict(String),
    /// 413.
    TooLarge { limit: usize },
    /// 415.
    UnsupportedMediaType,
    /// 405: a delete while `DELETE_ENABLED=false`.
    DeletesDisabled,
    /// 503: the permission service did not answer.
    Unavailable,
    /// 500: the cause is in the log.
    Internal,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Denied => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::UnknownMethod => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::DeletesDisabled => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::BadRequest(message) | ApiError::Conflict(message) => message.clone(),
            ApiError::Unauthenticated { .. } => "authentication required".to_owned(),
            ApiError::Denied => "permission denied on this project".to_owned(),
            ApiError::NotFound(what) => format!("{what} not found"),
            ApiError::UnknownMethod => "unknown method".to_owned(),
            ApiError::MethodNotAllowed { allow } => format!("method not allowed; use {allow}"),
            ApiError::TooLarge { limit } => format!("request body larger than {limit} bytes"),
            ApiError::UnsupportedMediaType => "Content-Type must be application/json".to_owned(),
            ApiError::DeletesDisabled => {
                "deletes are disabled on this registry (DELETE_ENABLED=false)".to_owned()
            }
            ApiError::Unavailable => {
                "authorization service unavailable; try again later".to_owned()
            }
            ApiError::Internal => "internal server error".to_owned(),
        }
    }

    /// A server-side failure: logged here, a bare 500 for the client.
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> ApiError {
        tracing::error!(error = %ErrorChain(cause), "management API: internal error");
        ApiError::Internal
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Unauthenticated { challenge } => ApiError::Unauthenticated { challenge },
            AuthError::Denied => ApiError::Denied,
            AuthError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "authorization unavailable");
                ApiError::Unavailable
            }
            other => ApiError::internal(&other),
        }
    }
}

impl From<ManagementError> for ApiError {
    fn from(error: ManagementError) -> Self {
        match error {
            ManagementError::Invalid { .. } => ApiError::BadRequest(error.to_string()),
            ManagementError::RepositoryNotFound => ApiError::NotFound("repository"),
            ManagementError::TagNotFound => ApiError::NotFound("tag"),
            ManagementError::ManifestNotFound => ApiError::NotFound("manifest"),
            ManagementError::DeadLetterNotFound => ApiError::NotFound("dead letter"),
            ManagementError::ManifestInUse => ApiError::Conflict(error.to_string()),
            ManagementError::Metadata(_) | ManagementError::Task(_) => ApiError::internal(&error),
        }
    }
}

#[derive(Serialize)]
struct Failure {
    ok: bool,
    error: Message,
}

#[derive(Serialize)]
struct Message {
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Failure {
            ok: false,
            error: Message {
                message: self.message(),
            },
        };
        let mut response = private((self.status(), Json(body)).into_response());
        let header = match &self {
            ApiError::Unauthenticated { challenge } => Some((WWW_AUTHENTICATE, challenge.as_str())),
            ApiError::MethodNotAllowed { allow } => Some((ALLOW, *allow)),
            _ => None,
        };
        if let Some((name, value)) = header
            && let Ok(value) = HeaderValue::from_str(value)
        {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// A method's success: `{"ok":true,"result":…}`, or `{"ok":true}` when there is nothing to say.
#[derive(Debug, Serialize)]
pub struct Answer {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<serde_json::Value>,
}

impl Answer {
    pub fn result(value: impl Serialize) -> Result<Answer, ApiError> {
        let value = serde_json::to_value(value).map_err(|e| ApiError::internal(&e))?;
        Ok(Answer {
            ok: true,
            result: Some(value),
        })
    }

    pub fn done() -> Result<Answer, ApiError> {
        Ok(Answer {
            ok: true,
            result: None,
        })
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        private(Json(self).into_response())
    }
}

/// Answers carry one user's data: no shared cache may keep them.
fn private(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

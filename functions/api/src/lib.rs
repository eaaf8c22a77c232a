//! The `api` service: the management JSON API under `/api/`. Every answer is the envelope
//! `{"ok":true,"data":…}` or `{"ok":false,"error":{"message":…}}`. No method exists yet: the
//! management endpoints (issue 8) are added to [`router`]; until then every `/api/` request
//! gets the envelope's `unknown method` with 404.

use axum::routing::any;
use axum::{Json, Router};
use http::StatusCode;
use registry_common::state::AppState;

/// Routes of the api service.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api", any(unknown_method))
        .route("/api/", any(unknown_method))
        .route("/api/{*rest}", any(unknown_method))
}

/// What the `api` binary serves: the management API alone.
pub fn service_routes() -> Router<AppState> {
    router()
}

/// Any `/api/` path that names no method of the management API.
async fn unknown_method() -> (StatusCode, Json<serde_json::Value>) {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "ok": false, "error": { "message": "unknown method" } })),
    )
}

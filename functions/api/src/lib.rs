//! The `api` service: the management JSON API for dashboards, under `/api/`.
//!
//! `POST /api/<method>` with a JSON body; every answer is the envelope `{"ok":true,"result":…}`
//! (`{"ok":true}` for deletes) or `{"ok":false,"error":{"message":…}}` with a fitting status
//! ([`envelope`]). Handlers ([`methods`]) validate, authorize the caller on the project through
//! [`Caller::authorize_project`](registry_common::auth::Caller::authorize_project), call the
//! management service and answer; the deletes run in a task of their own, so that a client
//! that goes away does not stop one half-way ([`request::detached`]). `GET /api/openapi.json`
//! serves the OpenAPI document of it all (`functions/api/openapi.json`), to anyone. Browsers of
//! the dashboards named by `API_CORS_ORIGINS` may call it ([`cors`]). With `INTERNAL_SECRET`,
//! the scheduled jobs are also served as `POST /internal/<job>` ([`internal`]).

pub mod cors;
pub mod envelope;
pub mod internal;
pub mod methods;
pub mod request;

use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http::Method;
use http::header::CONTENT_TYPE;
use registry_common::config::ServiceConfig;
use registry_common::state::AppState;

use envelope::ApiError;
use request::{detached, method};

/// The OpenAPI 3 document of the management API.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Routes of the api service.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/openapi.json", any(openapi))
        .route("/api/listRepositories", method(methods::list_repositories))
        .route("/api/getRepository", method(methods::get_repository))
        .route("/api/listTags", method(methods::list_tags))
        .route("/api/listManifests", method(methods::list_manifests))
        .route(
            "/api/getProjectStorage",
            method(methods::get_project_storage),
        )
        .route("/api/listDeadLetters", method(methods::list_dead_letters))
        .route("/api/replayDeadLetter", method(methods::replay_dead_letter))
        .route("/api/deleteTag", detached(methods::delete_tag))
        .route("/api/deleteManifest", detached(methods::delete_manifest))
        .route(
            "/api/deleteRepository",
            detached(methods::delete_repository),
        )
        .route("/api", any(unknown_method))
        .route("/api/", any(unknown_method))
        .route("/api/{*rest}", any(unknown_method))
        .layer(cors::layer())
}

/// What the `api` binary serves: the management API, and the job endpoints when
/// `INTERNAL_SECRET` is set ([`internal`]).
pub fn service_routes(config: &ServiceConfig) -> Router<AppState> {
    router().merge(internal::router(&config.internal, &config.events))
}

/// `GET /api/openapi.json`: the OpenAPI document.
async fn openapi(request: Request) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return ApiError::MethodNotAllowed { allow: "GET, HEAD" }.into_response();
    }
    ([(CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Any `/api/` path that names no method of the management API.
async fn unknown_method() -> ApiError {
    ApiError::UnknownMethod
}

#[cfg(test)]
mod tests {
    use super::OPENAPI;

    #[test]
    fn the_openapi_document_is_json_naming_every_method() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
        let paths = doc["paths"].as_object().expect("paths");
        for name in [
            "listRepositories",
            "getRepository",
            "listTags",
            "listManifests",
            "getProjectStorage",
            "deleteTag",
            "deleteManifest",
            "deleteRepository",
        ] {
            let operation = &paths[&format!("/api/{name}")]["post"];
            assert_eq!(operation["operationId"], name, "{name}");
        }
        assert!(paths.contains_key("/api/openapi.json"));
    }
}

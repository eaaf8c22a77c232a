//! The `upload` service: `POST`/`PATCH`/`PUT`/`GET`/`DELETE` of blob upload sessions, and
//! cross-repository mounts. Handlers parse, call the upload service and answer.

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::StatusCode;
use http::header::{CONTENT_LENGTH, HeaderMap, LOCATION, RANGE};
use registry_common::auth::{Action, Caller};
use registry_common::events::EventOrigin;
use registry_common::http::headers::{
    DOCKER_CONTENT_DIGEST, DOCKER_UPLOAD_UUID, content_range, upload_location, upload_range,
};
use registry_common::http::{
    Endpoint, OciCode, RegistryError, Repo, UploadIdPath, body_stream, content_length,
};
use registry_common::oci::{Digest, RepositoryName, UploadId};
use registry_common::services::UploadState;
use registry_common::state::AppState;
use serde::Deserialize;

/// Routes of the upload service, on the internal paths.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(Endpoint::UploadStart.route(), post(start_upload))
        .route(
            Endpoint::UploadSession.route(),
            get(upload_status)
                .patch(patch_upload)
                .put(finish_upload)
                .delete(cancel_upload),
        )
}

/// What the `upload` binary serves: the upload routes alone (the load balancer sends it every
/// `POST` and `PATCH` under `/v2/`, and `PUT ?digest=` on upload sessions; see
/// `terraform/routes.json`).
pub fn service_routes() -> Router<AppState> {
    router()
}

#[derive(Debug, Deserialize)]
struct StartQuery {
    digest: Option<String>,
    mount: Option<String>,
    from: Option<String>,
}

#[derive(Debug, Deserialize)]
struct FinishQuery {
    digest: Option<String>,
}

fn bad_query(_: QueryRejection) -> RegistryError {
    RegistryError::new(OciCode::BlobUploadInvalid, "malformed query string")
}

/// 201 for a blob now in the repository.
fn created(name: &RepositoryName, digest: &Digest) -> Response {
    (
        StatusCode::CREATED,
        [
            (LOCATION, format!("/v2/{name}/blobs/{digest}")),
            (DOCKER_CONTENT_DIGEST.clone(), digest.to_string()),
            (CONTENT_LENGTH, "0".to_owned()),
        ],
    )
        .into_response()
}

/// The headers that say where a session stands.
fn session(
    status: StatusCode,
    name: &RepositoryName,
    id: &UploadId,
    state: UploadState,
) -> Response {
    (
        status,
        [
            (LOCATION, upload_location(name, id)),
            (RANGE, upload_range(state.offset)),
            (DOCKER_UPLOAD_UUID.clone(), id.to_string()),
            (CONTENT_LENGTH, "0".to_owned()),
        ],
    )
        .into_response()
}

/// `POST /v2/<name>/blobs/uploads/`: mount, monolithic upload, or a new session.
async fn start_upload(
    State(state): State<AppState>,
    caller: Caller,
    Repo(name): Repo,
    origin: EventOrigin,
    query: Result<Query<StartQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RegistryError> {
    let Query(query) = query.map_err(bad_query)?;
    state.cache.refuse_writes(&name)?;
    if let Some(mount) = &query.mount {
        let digest = Digest::parse(mount)?;
        let from = query.from.as_deref();
        if mounted(&state, &caller, &name, from, &digest, &origin).await? {
            return Ok(created(&name, &digest));
        }
    } else if let Some(digest) = &query.digest {
        let digest = Digest::parse(digest)?;
        let body = body_stream(body, state.body_idle_timeout);
        state
            .uploads
            .put_monolithic(&name, &digest, content_length(&headers), body, &origin)
            .await?;
        return Ok(created(&name, &digest));
    }
    let id = state.uploads.start(&name).await?;
    Ok(session(
        StatusCode::ACCEPTED,
        &name,
        &id,
        UploadState { offset: 0 },
    ))
}

/// Whether `?mount=&from=` linked the blob. Mounting reads the source: without `pull` on it,
/// a plain session opens instead, as for a blob that is not there (which says nothing about
/// whether it is).
async fn mounted(
    state: &AppState,
    caller: &Caller,
    name: &RepositoryName,
    from: Option<&str>,
    digest: &Digest,
    origin: &EventOrigin,
) -> Result<bool, RegistryError> {
    let from = from.map(RepositoryName::parse).transpose()?;
    if let Some(from) = &from
        && !caller.may(from, Action::Pull).await?
    {
        return Ok(false);
    }
    let linked = state
        .uploads
        .mount(name, from.as_ref(), digest, origin)
        .await?;
    Ok(linked.is_some())
}

/// `GET /v2/<name>/blobs/uploads/<id>`: where the session stands.
async fn upload_status(
    State(state): State<AppState>,
    Repo(name): Repo,
    UploadIdPath(id): UploadIdPath,
) -> Result<Response, RegistryError> {
    let status = state.uploads.status(&name, &id).await?;
    Ok(session(StatusCode::NO_CONTENT, &name, &id, status))
}

/// `PATCH /v2/<name>/blobs/uploads/<id>`: a streamed or ranged chunk.
async fn patch_upload(
    State(state): State<AppState>,
    Repo(name): Repo,
    UploadIdPath(id): UploadIdPath,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RegistryError> {
    let range = content_range(&headers)?;
    let body = body_stream(body, state.body_idle_timeout);
    let status = state
        .uploads
        .append(&name, &id, range, content_length(&headers), body)
        .await?;
    Ok(session(StatusCode::ACCEPTED, &name, &id, status))
}

/// `PUT /v2/<name>/blobs/uploads/<id>?digest=`: the last chunk, if any, and the blob.
async fn finish_upload(
    State(state): State<AppState>,
    Repo(name): Repo,
    UploadIdPath(id): UploadIdPath,
    origin: EventOrigin,
    query: Result<Query<FinishQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RegistryError> {
    let Query(query) = query.map_err(bad_query)?;
    let digest = query.digest.ok_or_else(|| {
        RegistryError::new(
            OciCode::DigestInvalid,
            "the digest query parameter is required",
        )
    })?;
    let digest = Digest::parse(&digest)?;
    let range = content_range(&headers)?;
    let body = body_stream(body, state.body_idle_timeout);
    let length = content_length(&headers);
    state
        .uploads
        .finish(&name, &id, &digest, range, length, body, &origin)
        .await?;
    Ok(created(&name, &digest))
}

/// `DELETE /v2/<name>/blobs/uploads/<id>`: cancels the session.
async fn cancel_upload(
    State(state): State<AppState>,
    Repo(name): Repo,
    UploadIdPath(id): UploadIdPath,
) -> Result<Response, RegistryError> {
    state.uploads.cancel(&name, &id).await?;
    Ok((StatusCode::NO_CONTENT, [(CONTENT_LENGTH, "0")]).into_response())
}

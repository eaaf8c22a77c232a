//! The `blob` service: `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`. Handlers parse,
//! call the blob service and answer; nothing else.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use http::header::{
    ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, HeaderMap, LOCATION,
};
use registry_common::events::EventOrigin;
use registry_common::http::headers::{self, DOCKER_CONTENT_DIGEST};
use registry_common::http::{DigestPath, Endpoint, MirrorNamespace, RegistryError, Repo};
use registry_common::oci::Digest;
use registry_common::services::{BlobAnswer, BlobRead};
use registry_common::state::AppState;

/// Routes of the blob service, on the internal paths.
pub fn router() -> Router<AppState> {
    Router::new().route(
        Endpoint::Blob.route(),
        get(get_blob).head(head_blob).delete(delete_blob),
    )
}

/// What the `blob` binary serves: the blob routes alone (the load balancer sends it
/// `/v2/<name>/blobs/<digest>` for names of 1 to 4 components; see `terraform/routes.json`).
pub fn service_routes() -> Router<AppState> {
    router()
}

fn blob_headers(digest: &Digest, length: u64) -> [(http::HeaderName, String); 5] {
    [
        (CONTENT_LENGTH, length.to_string()),
        (CONTENT_TYPE, "application/octet-stream".to_owned()),
        (DOCKER_CONTENT_DIGEST.clone(), digest.to_string()),
        (ETAG, format!("\"{digest}\"")),
        (ACCEPT_RANGES, "bytes".to_owned()),
    ]
}

/// `HEAD /v2/<name>/blobs/<digest>`: existence and size, without touching the bytes (for a
/// blob not cached yet, the upstream's answer; nothing is fetched).
async fn head_blob(
    State(state): State<AppState>,
    Repo(name): Repo,
    DigestPath(digest): DigestPath,
    ns: MirrorNamespace,
) -> Result<Response, RegistryError> {
    let size = state.cache.blob_size(&name, &digest, ns.as_deref()).await?;
    Ok((StatusCode::OK, blob_headers(&digest, size)).into_response())
}

/// `GET /v2/<name>/blobs/<digest>`: the bytes, or one range of them, or a 307 to the
/// storage backend's signed URL; through the pull-through cache.
async fn get_blob(
    State(state): State<AppState>,
    Repo(name): Repo,
    DigestPath(digest): DigestPath,
    ns: MirrorNamespace,
    origin: EventOrigin,
    headers: HeaderMap,
) -> Result<Response, RegistryError> {
    let range = headers::range(&headers);
    let answer = state
        .cache
        .blob(&name, &digest, range, ns.as_deref())
        .await?;
    let size = match &answer {
        BlobAnswer::Redirect { .. } => None,
        BlobAnswer::Bytes(read) => Some(read.size),
    };
    state.events.blob_pulled(&origin, &name, &digest, size);
    Ok(match answer {
        // The signed URL honours `Range` itself; clients follow the redirect with it.
        BlobAnswer::Redirect { url } => {
            let headers = [
                (LOCATION, url),
                (DOCKER_CONTENT_DIGEST.clone(), digest.to_string()),
            ];
            (StatusCode::TEMPORARY_REDIRECT, headers).into_response()
        }
        BlobAnswer::Bytes(read) => bytes(&digest, read),
    })
}

/// 200 with the whole blob, or 206 with the range read.
fn bytes(digest: &Digest, read: BlobRead) -> Response {
    let body = Body::from_stream(read.body);
    match read.range {
        None => (StatusCode::OK, blob_headers(digest, read.size), body).into_response(),
        Some(r) => {
            let content_range = format!("bytes {}-{}/{}", r.start, r.end, read.size);
            (
                StatusCode::PARTIAL_CONTENT,
                blob_headers(digest, r.len()),
                [(CONTENT_RANGE, content_range)],
                body,
            )
                .into_response()
        }
    }
}

/// `DELETE /v2/<name>/blobs/<digest>`: unlinks the blob from the repository.
async fn delete_blob(
    State(state): State<AppState>,
    Repo(name): Repo,
    DigestPath(digest): DigestPath,
    origin: EventOrigin,
) -> Result<Response, RegistryError> {
    if !state.limits.delete_enabled {
        return Err(RegistryError::deletes_disabled());
    }
    state.blobs.delete(&name, &digest, &origin).await?;
    Ok((StatusCode::ACCEPTED, [(CONTENT_LENGTH, "0")]).into_response())
}

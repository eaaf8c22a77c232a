//! The `manifest` service: `/v2/`, manifests, tags, referrers, the catalog, and (as the
//! default service) the token endpoint `/auth/token`, whose handler lives with the auth code
//! (`registry_common::http::token_endpoint`). Handlers parse, call the manifest service and answer; nothing else.
//!
//! The `manifest` binary is also the load balancer's default service, so it serves every
//! route of the distribution API ([`service_routes`]): what the URL map cannot tell apart
//! (names deeper than its path templates reach, unusual methods) still gets a right answer.

mod pagination;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, ETAG, HeaderMap, LINK, LOCATION};
use http::{HeaderName, StatusCode};
use registry_common::auth::Caller;
use registry_common::events::EventOrigin;
use registry_common::http::RegistryError;
use registry_common::http::headers::DOCKER_CONTENT_DIGEST;
use registry_common::http::{
    DigestPath, Endpoint, MirrorNamespace, ReferencePath, Repo, TOKEN_PATH, WriteReferencePath,
    content_type, read_limited, token_endpoint,
};
use registry_common::metadata::StoredManifest;
use registry_common::oci::manifest::OCI_INDEX;
use registry_common::oci::{RepositoryName, Tag};
use registry_common::state::AppState;
use serde::Deserialize;

use pagination::PageQuery;

static OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
static OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

/// Routes of the manifest service, on the public and internal paths.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(Endpoint::Base.route(), get(base))
        .route(Endpoint::Catalog.route(), get(catalog))
        .route(
            Endpoint::Manifest.route(),
            get(get_manifest)
                .head(head_manifest)
                .put(put_manifest)
                .delete(delete_manifest),
        )
        .route(Endpoint::Tags.route(), get(list_tags))
        .route(Endpoint::Referrers.route(), get(referrers))
        .route(TOKEN_PATH, get(token_endpoint))
}

/// What the `manifest` binary serves: every route of the distribution API, because it is the
/// URL map's default service (blob and upload routes included, for requests the map does not
/// send to those services).
pub fn service_routes() -> Router<AppState> {
    router()
        .merge(registry_blob::router())
        .merge(registry_upload::router())
}

/// `GET /v2/`: the API version check.
async fn base() -> Json<serde_json::Value> {
    Json(serde_json::json!({}))
}

fn manifest_headers(manifest: &StoredManifest) -> [(HeaderName, String); 4] {
    [
        (CONTENT_TYPE, manifest.media_type.to_string()),
        (CONTENT_LENGTH, manifest.payload.len().to_string()),
        (DOCKER_CONTENT_DIGEST.clone(), manifest.digest.to_string()),
        (ETAG, format!("\"{}\"", manifest.digest)),
    ]
}

/// `GET /v2/<name>/manifests/<reference>` (through the pull-through cache).
async fn get_manifest(
    State(state): State<AppState>,
    Repo(name): Repo,
    ReferencePath(reference): ReferencePath,
    ns: MirrorNamespace,
    origin: EventOrigin,
) -> Result<Response, RegistryError> {
    let manifest = state
        .cache
        .manifest(&name, &reference, ns.as_deref())
        .await?;
    state
        .events
        .manifest_pulled(&origin, &name, &manifest, &reference);
    let headers = manifest_headers(&manifest);
    Ok((StatusCode::OK, headers, manifest.payload).into_response())
}

/// `HEAD /v2/<name>/manifests/<reference>` (through the pull-through cache).
async fn head_manifest(
    State(state): State<AppState>,
    Repo(name): Repo,
    ReferencePath(reference): ReferencePath,
    ns: MirrorNamespace,
) -> Result<Response, RegistryError> {
    let manifest = state
        .cache
        .manifest(&name, &reference, ns.as_deref())
        .await?;
    Ok((StatusCode::OK, manifest_headers(&manifest)).into_response())
}

/// `PUT /v2/<name>/manifests/<reference>`.
async fn put_manifest(
    State(state): State<AppState>,
    Repo(name): Repo,
    WriteReferencePath(reference): WriteReferencePath,
    origin: EventOrigin,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RegistryError> {
    state.cache.refuse_writes(&name)?;
    let limit = state.limits.manifest_max_bytes;
    let body = read_limited(&headers, body, limit, state.body_idle_timeout).await?;
    let pushed = state
        .manifests
        .put(&name, &reference, content_type(&headers), &body, &origin)
        .await?;
    let location = format!("/v2/{name}/manifests/{}", pushed.digest);
    let mut response = (
        StatusCode::CREATED,
        [
            (LOCATION, location),
            (DOCKER_CONTENT_DIGEST.clone(), pushed.digest.to_string()),
            (CONTENT_LENGTH, "0".to_owned()),
        ],
    )
        .into_response();
    if let Some(subject) = pushed.subject
        && let Ok(value) = subject.to_string().parse()
    {
        response.headers_mut().insert(OCI_SUBJECT.clone(), value);
    }
    Ok(response)
}

/// `DELETE /v2/<name>/manifests/<reference>`: a digest deletes the manifest, a tag the tag.
async fn delete_manifest(
    State(state): State<AppState>,
    Repo(name): Repo,
    WriteReferencePath(reference): WriteReferencePath,
    origin: EventOrigin,
) -> Result<Response, RegistryError> {
    if !state.limits.delete_enabled {
        return Err(RegistryError::deletes_disabled());
    }
    state.manifests.delete(&name, &reference, &origin).await?;
    Ok((StatusCode::ACCEPTED, [(CONTENT_LENGTH, "0")]).into_response())
}

/// `GET /v2/<name>/tags/list?n=&last=`.
async fn list_tags(
    State(state): State<AppState>,
    Repo(name): Repo,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, RegistryError> {
    let query = pagination::parse(query, state.limits.page_max, |last| {
        Tag::parse(last).map(drop).map_err(Into::into)
    })?;
    let page = state
        .manifests
        .tags(&name, query.n, query.last.as_deref())
        .await?;
    let body = serde_json::json!({ "name": name.as_str(), "tags": page.items });
    let link = page
        .next_cursor
        .map(|last| pagination::link(&format!("/v2/{name}/tags/list"), query.n, &last));
    Ok(with_link(Json(body).into_response(), link))
}

/// `GET /v2/_catalog?n=&last=`: the repositories the caller may pull.
async fn catalog(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, RegistryError> {
    let query = pagination::parse(query, state.limits.page_max, |last| {
        RepositoryName::parse(last).map(drop).map_err(Into::into)
    })?;
    let visible = |name: String| {
        let caller = caller.clone();
        async move { Ok::<_, RegistryError>(caller.may_see(&name).await?) }
    };
    let page = state
        .manifests
        .catalog(query.n, query.last.as_deref(), visible)
        .await?;
    let body = serde_json::json!({ "repositories": page.items });
    let link = page
        .next_cursor
        .map(|last| pagination::link("/v2/_catalog", query.n, &last));
    Ok(with_link(Json(body).into_response(), link))
}

fn with_link(mut response: Response, link: Option<String>) -> Response {
    if let Some(link) = link.and_then(|l| l.parse().ok()) {
        response.headers_mut().insert(LINK, link);
    }
    response
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReferrersQuery {
    artifact_type: Option<String>,
}

/// `GET /v2/<name>/referrers/<digest>?artifactType=`.
async fn referrers(
    State(state): State<AppState>,
    Repo(name): Repo,
    DigestPath(digest): DigestPath,
    ns: MirrorNamespace,
    query: Result<Query<ReferrersQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, RegistryError> {
    let artifact_type = query
        .ok()
        .and_then(|Query(q)| q.artifact_type)
        .filter(|t| !t.is_empty());
    let index = state
        .cache
        .referrers(&name, &digest, artifact_type.as_deref(), ns.as_deref())
        .await?;
    let mut response = (
        StatusCode::OK,
        [(CONTENT_TYPE, OCI_INDEX)],
        Json(index).into_response().into_body(),
    )
        .into_response();
    if artifact_type.is_some() {
        response.headers_mut().insert(
            OCI_FILTERS_APPLIED.clone(),
            http::HeaderValue::from_static("artifactType"),
        );
    }
    Ok(response)
}

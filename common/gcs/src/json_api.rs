//! The few GCS operations the google-cloud-storage crate only offers over gRPC (stat, list,
//! delete, compose), through the JSON API with reqwest and google-cloud-auth credentials, so
//! that every one of them also runs against an HTTP emulator.
//!
//! Every call here is idempotent (deletes tolerate 404; a compose either writes a fresh
//! object name or is guarded by `ifGenerationMatch=0`), so transient failures (no answer,
//! 408, 429, 5xx) are retried with exponential backoff and jitter.

use std::time::{Duration, SystemTime};

use google_cloud_auth::credentials::{CacheableResource, Credentials};
use http::{Extensions, HeaderMap};
use reqwest_tls::{Client, RequestBuilder, Response, StatusCode, Url};
use serde::{Deserialize, Serialize};

use crate::error::GcsError;

const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";
const ATTEMPTS: u32 = 6;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A JSON API client bound to one bucket.
#[derive(Debug, Clone)]
pub(crate) struct JsonApi {
    http: Client,
    endpoint: Url,
    bucket: String,
    credentials: Credentials,
}

/// What a listing tells about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object's name (from [`crate::GcsStorage::list`]: relative to `GCS_PREFIX`).
    pub name: String,
    pub size: u64,
    /// When it was last written.
    pub updated: SystemTime,
}

/// One page of a listing.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub objects: Vec<ObjectInfo>,
    /// Pass to the next call to get the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct ObjectResource {
    name: String,
    /// The JSON API sends 64-bit integers as strings.
    size: String,
    /// RFC 3339.
    updated: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectList {
    #[serde(default)]
    items: Vec<ObjectResource>,
    next_page_token: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ComposeRequest<'a> {
    source_objects: Vec<SourceObject<'a>>,
    destination: Destination,
}

#[derive(Serialize)]
struct SourceObject<'a> {
    name: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Destination {
    content_type: &'static str,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: String,
}

/// A compose destination that must not exist yet, or may be overwritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overwrite {
    /// `ifGenerationMatch=0`: an existing object is left as it is (and is not an error).
    Never,
    /// The name is fresh; a retried request rewrites the same bytes.
    Allowed,
}

impl ObjectResource {
    fn info(self, operation: &'static str) -> Result<ObjectInfo, GcsError> {
        let invalid = |message: String| GcsError::Api {
            operation,
            object: self.name.clone(),
            status: 200,
            message,
        };
        let size = self
            .size
            .parse()
            .map_err(|_| invalid(format!("object size {:?} is not a number", self.size)))?;
        let updated = match &self.updated {
            Some(raw) => raw
                .parse::<jiff::Timestamp>()
                .map(SystemTime::from)
                .map_err(|e| invalid(format!("object time {raw:?}: {e}")))?,
            None => return Err(invalid("no `updated` time".to_owned())),
        };
        Ok(ObjectInfo {
            name: self.name,
            size,
            updated,
        })
    }
}

impl JsonApi {
    pub(crate) fn new(
        endpoint: Option<&str>,
        bucket: &str,
        credentials: Credentials,
    ) -> Result<Self, crate::error::OpenError> {
        let raw = endpoint.unwrap_or(DEFAULT_ENDPOINT);
        let endpoint = Url::parse(raw).map_err(|e| {
            registry_common::config::ConfigError::Invalid(format!("GCS_ENDPOINT={raw:?}: {e}"))
        })?;
        let http = Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(crate::error::OpenError::Http)?;
        Ok(JsonApi {
            http,
            endpoint,
            bucket: bucket.to_owned(),
            credentials,
        })
    }

    /// `…/storage/v1/b/<bucket>/o[/<object>][/<action>]`, each segment percent-encoded
    /// (an object name's `/` becomes `%2F`, as the API wants).
    fn url(&self, object: Option<&str>, action: Option<&str>) -> Url {
        let mut url = self.endpoint.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop_if_empty()
                .extend(["storage", "v1", "b", &self.bucket, "o"]);
            segments.extend(object);
            segments.extend(action);
        }
        url
    }

    /// The object's size, or `None` when it does not exist.
    pub(crate) async fn stat(&self, object: &str) -> Result<Option<u64>, GcsError> {
        let operation = "stat";
        let url = self.url(Some(object), None);
        let response = self
            .send(operation, object, || {
                self.http.get(url.clone()).query(&[("fields", "name,size")])
            })
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resource: ObjectResource = read_json(operation, object, response).await?;
        let size = resource.size.parse().map_err(|_| GcsError::Api {
            operation,
            object: object.to_owned(),
            status: 200,
            message: format!("object size {:?} is not a number", resource.size),
        })?;
        Ok(Some(size))
    }

    /// Deletes an object; a missing one is not an error.
    pub(crate) async fn delete(&self, object: &str) -> Result<(), GcsError> {
        let operation = "delete";
        let url = self.url(Some(object), None);
        let response = self
            .send(operation, object, || self.http.delete(url.clone()))
            .await?;
        if response.status() == StatusCode::NOT_FOUND || response.status().is_success() {
            return Ok(());
        }
        Err(api_error(operation, object, response).await)
    }

    /// Composes up to 32 sources, in order, into `destination`. With [`Overwrite::Never`], an
    /// existing destination is left as it is and the call succeeds.
    pub(crate) async fn compose(
        &self,
        sources: &[String],
        destination: &str,
        overwrite: Overwrite,
    ) -> Result<(), GcsError> {
        let operation = "compose";
        let url = self.url(Some(destination), Some("compose"));
        let body = ComposeRequest {
            source_objects: sources.iter().map(|name| SourceObject { name }).collect(),
            destination: Destination {
                content_type: "application/octet-stream",
            },
        };
        let response = self
            .send(operation, destination, || {
                let request = self.http.post(url.clone()).json(&body);
                match overwrite {
                    Overwrite::Never => request.query(&[("ifGenerationMatch", "0")]),
                    Overwrite::Allowed => request,
                }
            })
            .await?;
        let status = response.status();
        if status.is_success()
            || (overwrite == Overwrite::Never && status == StatusCode::PRECONDITION_FAILED)
        {
            return Ok(());
        }
        if status == StatusCode::NOT_FOUND {
            return Err(GcsError::NotFound {
                object: format!("a source of {destination}"),
            });
        }
        Err(api_error(operation, destination, response).await)
    }

    /// One page of the objects whose names start with `prefix`, in name order.
    pub(crate) async fn list(
        &self,
        prefix: &str,
        page_token: Option<&str>,
        max_results: u32,
    ) -> Result<ListPage, GcsError> {
        let operation = "list";
        let url = self.url(None, None);
        let max = max_results.to_string();
        let response = self
            .send(operation, prefix, || {
                let request = self.http.get(url.clone()).query(&[
                    ("prefix", prefix),
                    ("maxResults", &max),
                    ("fields", "items(name,size,updated),nextPageToken"),
                ]);
                match page_token {
                    Some(token) => request.query(&[("pageToken", token)]),
                    None => request,
                }
            })
            .await?;
        let list: ObjectList = read_json(operation, prefix, response).await?;
        let objects = list
            .items
            .into_iter()
            .map(|item| item.info(operation))
            .collect::<Result<_, _>>()?;
        Ok(ListPage {
            objects,
            next_page_token: list.next_page_token.filter(|t| !t.is_empty()),
        })
    }

    /// Sends a request built by `build`, with fresh auth headers, retrying transient failures.
    /// Returns the last response, whatever its status, or the last transport error.
    async fn send(
        &self,
        operation: &'static str,
        object: &str,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response, GcsError> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let headers = self.auth_headers(operation, object).await?;
            let outcome = build().headers(headers).send().await;
            let retry = match &outcome {
                Ok(response) => is_transient(response.status()),
                // No answer: every call here is idempotent, so sending it again is safe.
                Err(e) => !e.is_builder(),
            };
            if !retry || attempt == ATTEMPTS {
                return outcome.map_err(|source| GcsError::Transport {
                    operation,
                    object: object.to_owned(),
                    source,
                });
            }
            tracing::debug!(
                operation,
                object,
                attempt,
                "transient GCS failure; retrying"
            );
            tokio::time::sleep(jittered(backoff)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            attempt += 1;
        }
    }

    async fn auth_headers(
        &self,
        operation: &'static str,
        object: &str,
    ) -> Result<HeaderMap, GcsError> {
        let headers = self
            .credentials
            .headers(Extensions::new())
            .await
            .map_err(|source| GcsError::Credentials {
                operation,
                object: object.to_owned(),
                source,
            })?;
        Ok(match headers {
            CacheableResource::New { data, .. } => data,
            // Only returned to a caller that passed an entity tag, which this one never does.
            CacheableResource::NotModified => HeaderMap::new(),
        })
    }
}

fn is_transient(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// Between half and all of `backoff`, so that many instances do not retry in step.
fn jittered(backoff: Duration) -> Duration {
    let random = (uuid::Uuid::new_v4().as_u128() % 1000) as u32;
    backoff / 2 + backoff / 2 * random / 1000
}

async fn read_json<T: serde::de::DeserializeOwned>(
    operation: &'static str,
    object: &str,
    response: Response,
) -> Result<T, GcsError> {
    if !response.status().is_success() {
        return Err(api_error(operation, object, response).await);
    }
    response.json().await.map_err(|source| GcsError::Transport {
        operation,
        object: object.to_owned(),
        source,
    })
}

async fn api_error(operation: &'static str, object: &str, response: Response) -> GcsError {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<ErrorBody>(&text)
        .map(|body| body.error.message)
        .unwrap_or_else(|_| text.chars().take(200).collect());
    GcsError::Api {
        operation,
        object: object.to_owned(),
        status,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(endpoint: &str) -> JsonApi {
        let credentials = google_cloud_auth::credentials::anonymous::Builder::new().build();
        JsonApi::new(Some(endpoint), "my-bucket", credentials).unwrap()
    }

    #[test]
    fn object_names_are_one_encoded_path_segment() {
        let url = api("http://127.0.0.2").url(Some("p/blobs/sha256/ab/ab cd"), Some("compose"));
        assert_eq!(
            url.as_str(),
            "http://127.0.0.2/storage/v1/b/my-bucket/o/p%2Fblobs%2Fsha256%2Fab%2Fab%20cd/compose"
        );
        let url = api("https://example.test/base/").url(None, None);
        assert_eq!(
            url.as_str(),
            "https://example.test/base/storage/v1/b/my-bucket/o"
        );
    }

    #[test]
    fn transient_statuses_are_retried_and_others_are_not() {
        for status in [408, 429, 500, 503] {
            assert!(
                is_transient(StatusCode::from_u16(status).unwrap()),
                "{status}"
            );
        }
        for status in [200, 400, 403, 404, 412] {
            assert!(
                !is_transient(StatusCode::from_u16(status).unwrap()),
                "{status}"
            );
        }
    }

    #[test]
    fn jitter_stays_within_half_and_all_of_the_backoff() {
        for _ in 0..100 {
            let d = jittered(Duration::from_millis(1000));
            assert!(d >= Duration::from_millis(500) && d <= Duration::from_millis(1000));
        }
    }
}

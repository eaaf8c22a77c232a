//! The requests: authentication on `401`, redirects without credentials to other origins,
//! statuses mapped to [`UpstreamError`], payloads verified.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE,
};
use reqwest_tls::{Method, Response, Url};

use super::auth::{self, AuthCache, Authorization, Challenge, Requester};
use super::{FetchedBlob, FetchedManifest, Upstream, UpstreamError};
use crate::config::{Secret, UpstreamConfig};
use crate::oci::manifest::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use crate::oci::{Digest, DigestHasher, Reference, RepositoryName, Tag};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A response (headers or body) that sends nothing for this long fails.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_REDIRECTS: usize = 5;
/// Largest manifest read when a `HEAD` gives no digest and a `GET` must hash it (the default
/// `MANIFEST_MAX_BYTES`).
const HEAD_FALLBACK_LIMIT: u64 = 4 * 1024 * 1024;
const USER_AGENT: &str = concat!(
    "registry/",
    env!("CARGO_PKG_VERSION"),
    " (pull-through cache)"
);
const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

/// Every manifest type this registry stores, so that the upstream answers with an index where
/// it has one (and its digest on `HEAD`) rather than a platform's manifest.
fn accept_manifests() -> String {
    [
        OCI_MANIFEST,
        OCI_INDEX,
        DOCKER_MANIFEST,
        DOCKER_MANIFEST_LIST,
    ]
    .join(", ")
}

#[derive(Debug)]
pub(super) struct Inner {
    config: Arc<UpstreamConfig>,
    /// `upstream "name"`, for errors.
    label: String,
    client: reqwest_tls::Client,
    /// The origin credentials may be sent to.
    origin: Url,
    auth: AuthCache,
    /// A static bearer token sent with every request instead of the challenge flow.
    static_token: Option<Secret<String>>,
}

/// A reqwest error without its URL (a signed URL holds a signature), with its causes.
pub(super) fn describe(error: reqwest_tls::Error) -> String {
    crate::error::ErrorChain(&error.without_url()).to_string()
}

impl Upstream {
    pub fn new(config: Arc<UpstreamConfig>) -> Result<Upstream, UpstreamError> {
        Upstream::build(config, None)
    }

    /// A client that sends `token` as a static bearer with every request (to the upstream's
    /// origin only) instead of answering challenges; a `401` is [`UpstreamError::Denied`].
    pub fn with_token(
        config: Arc<UpstreamConfig>,
        token: Secret<String>,
    ) -> Result<Upstream, UpstreamError> {
        Upstream::build(config, Some(token))
    }

    fn build(
        config: Arc<UpstreamConfig>,
        static_token: Option<Secret<String>>,
    ) -> Result<Upstream, UpstreamError> {
        let label = format!("upstream {:?}", config.name);
        let invalid = |reason: String| UpstreamError::Invalid {
            reason: format!("{label}: {reason}"),
        };
        let origin = Url::parse(&config.url).map_err(|e| invalid(format!("url: {e}")))?;
        let client = reqwest_tls::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(IDLE_TIMEOUT)
            // Followed by hand, so that credentials never leave the upstream's origin.
            .redirect(reqwest_tls::redirect::Policy::none())
            .build()
            .map_err(|e| invalid(format!("building the HTTP client: {}", describe(e))))?;
        Ok(Upstream {
            inner: Arc::new(Inner {
                config,
                label,
                client,
                origin,
                auth: AuthCache::default(),
                static_token,
            }),
        })
    }

    pub fn config(&self) -> &UpstreamConfig {
        &self.inner.config
    }

    /// GET a manifest (Accept: every manifest type: OCI manifest and index, Docker v2 manifest
    /// and list), at most `limit` bytes; by digest the payload is verified against it; by tag
    /// the digest is computed (and checked against Docker-Content-Digest when the upstream
    /// sends it).
    pub async fn manifest(
        &self,
        repository: &str,
        reference: &Reference,
        limit: u64,
    ) -> Result<FetchedManifest, UpstreamError> {
        let path = format!("manifests/{reference}");
        let mut response = self
            .request(Method::GET, repository, &path, Some(&accept_manifests()))
            .await?;
        let too_large = || self.invalid(format!("the manifest is larger than {limit} bytes"));
        if content_length(&response).is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let header_digest = header(&response, DOCKER_CONTENT_DIGEST).map(str::to_owned);
        let content_type = header(&response, CONTENT_TYPE.as_str())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        let mut payload = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.unavailable(format!("reading the manifest: {}", describe(e))))?
        {
            if payload.len() as u64 + chunk.len() as u64 > limit {
                return Err(too_large());
            }
            payload.extend_from_slice(&chunk);
        }
        let digest = verify_manifest(reference, header_digest.as_deref(), &payload)
            .map_err(|why| self.invalid(format!("{repository}:{reference}: {why}")))?;
        let media_type = media_type(content_type, &payload)
            .ok_or_else(|| self.invalid(format!("{repository}:{reference}: no media type")))?;
        Ok(FetchedManifest {
            digest,
            media_type,
            payload,
        })
    }

    /// The digests of the manifests whose subject is `subject` (the referrers API, all artifact
    /// types); `NotFound` when the upstream has no referrers API (distribution before OCI 1.1
    /// answers `404`), and the caller falls back to the tag schema.
    pub async fn referrers(
        &self,
        repository: &str,
        subject: &Digest,
    ) -> Result<Vec<Digest>, UpstreamError> {
        let path = format!("referrers/{subject}");
        let mut response = self
            .request(Method::GET, repository, &path, Some(OCI_INDEX))
            .await?;
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.unavailable(format!("reading the referrers: {}", describe(e))))?
        {
            if body.len() + chunk.len() > HEAD_FALLBACK_LIMIT as usize {
                return Err(self.invalid("the referrers index is too large".to_owned()));
            }
            body.extend_from_slice(&chunk);
        }
        referrer_digests(&body)
            .map_err(|why| self.invalid(format!("referrers of {subject}: {why}")))
    }

    /// HEAD of a manifest by tag: the digest it names now (Docker-Content-Digest; when the
    /// upstream sends none, a GET and its hash).
    pub async fn manifest_digest(
        &self,
        repository: &str,
        tag: &Tag,
    ) -> Result<Digest, UpstreamError> {
        let path = format!("manifests/{tag}");
        let response = self
            .request(Method::HEAD, repository, &path, Some(&accept_manifests()))
            .await?;
        match header(&response, DOCKER_CONTENT_DIGEST) {
            Some(raw) => {
                Digest::parse(raw).map_err(|e| self.invalid(format!("Docker-Content-Digest: {e}")))
            }
            None => {
                let reference = Reference::Tag(tag.clone());
                Ok(self
                    .manifest(repository, &reference, HEAD_FALLBACK_LIMIT)
                    .await?
                    .digest)
            }
        }
    }

    /// GET of a blob: its size (Content-Length, required) and the bytes as a stream; follows
    /// redirects (S3/GCS-backed upstreams), never sending credentials to another host.
    pub async fn blob(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<FetchedBlob, UpstreamError> {
        let path = format!("blobs/{digest}");
        let response = self.request(Method::GET, repository, &path, None).await?;
        let size = content_length(&response)
            .ok_or_else(|| self.invalid(format!("blob {digest}: no Content-Length")))?;
        let label = self.inner.label.clone();
        let bytes = response.bytes_stream().map(move |chunk| {
            chunk.map_err(|e| {
                io::Error::other(format!("{label}: reading the blob: {}", describe(e)))
            })
        });
        Ok(FetchedBlob {
            size,
            body: Box::pin(Verified::new(
                Box::pin(bytes),
                digest.clone(),
                size,
                self.inner.label.clone(),
            )),
        })
    }

    /// HEAD of a blob: its size.
    pub async fn blob_size(&self, repository: &str, digest: &Digest) -> Result<u64, UpstreamError> {
        let path = format!("blobs/{digest}");
        let response = self.request(Method::HEAD, repository, &path, None).await?;
        content_length(&response)
            .ok_or_else(|| self.invalid(format!("blob {digest}: no Content-Length")))
    }

    pub(super) fn invalid(&self, reason: String) -> UpstreamError {
        UpstreamError::Invalid {
            reason: format!("{}: {reason}", self.inner.label),
        }
    }

    pub(super) fn unavailable(&self, reason: String) -> UpstreamError {
        UpstreamError::Unavailable {
            reason: format!("{}: {reason}", self.inner.label),
        }
    }

    fn requester(&self) -> Requester<'_> {
        Requester {
            client: &self.inner.client,
            cache: &self.inner.auth,
            label: &self.inner.label,
            upstream_is_https: self.inner.origin.scheme() == "https",
            credentials: self.inner.config.credentials.as_ref(),
        }
    }

    /// `method /v2/<repository>/<path>`, authenticated as the upstream asks, its status
    /// mapped: a response returned is a 2xx.
    async fn request(
        &self,
        method: Method,
        repository: &str,
        path: &str,
        accept: Option<&str>,
    ) -> Result<Response, UpstreamError> {
        RepositoryName::parse(repository).map_err(|e| self.invalid(e.to_string()))?;
        let url = self.url(&format!("/v2/{repository}/{path}"))?;
        let scope = format!("repository:{repository}:pull");
        self.request_url(method, url, &scope, accept).await
    }

    /// `target` (a path with its query, from `/v2/`) under the upstream's base URL.
    pub(super) fn url(&self, target: &str) -> Result<Url, UpstreamError> {
        let url = format!("{}{target}", self.inner.config.url);
        Url::parse(&url).map_err(|e| self.invalid(format!("{url}: {e}")))
    }

    /// `method url` with the token of `scope`, authenticated as the upstream asks, its status
    /// mapped: a response returned is a 2xx.
    pub(super) async fn request_url(
        &self,
        method: Method,
        url: Url,
        scope: &str,
        accept: Option<&str>,
    ) -> Result<Response, UpstreamError> {
        if let Some(token) = &self.inner.static_token {
            let bearer = Authorization::Bearer(token.clone());
            let response = self.follow(&method, &url, accept, Some(&bearer)).await?;
            return self.status(response);
        }
        let first = match self.inner.auth.before(scope) {
            Ok(authorization) => authorization,
            Err(Challenge::Bearer { realm, service }) => Some(Authorization::Bearer(
                auth::fetch_token(self.requester(), &realm, service.as_deref(), scope).await?,
            )),
            Err(Challenge::Basic) => Some(Authorization::Basic),
        };
        let response = self.follow(&method, &url, accept, first.as_ref()).await?;
        if response.status().as_u16() != 401 {
            return self.status(response);
        }
        self.inner.auth.forget(scope);
        let challenge = auth::parse_challenges(
            response
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        let retry = match challenge {
            Some(Challenge::Bearer { realm, service }) => Authorization::Bearer(
                auth::fetch_token(self.requester(), &realm, service.as_deref(), scope).await?,
            ),
            // Basic credentials already refused, or none to give: nothing else to try.
            Some(Challenge::Basic)
                if self.inner.config.credentials.is_some()
                    && !matches!(first, Some(Authorization::Basic)) =>
            {
                self.inner.auth.remember_basic();
                Authorization::Basic
            }
            _ => return Err(UpstreamError::Denied { status: 401 }),
        };
        let response = self.follow(&method, &url, accept, Some(&retry)).await?;
        self.status(response)
    }

    /// Sends the request, following redirects; credentials only to the upstream's origin.
    async fn follow(
        &self,
        method: &Method,
        url: &Url,
        accept: Option<&str>,
        authorization: Option<&Authorization>,
    ) -> Result<Response, UpstreamError> {
        let mut url = url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let mut request = self.inner.client.request(method.clone(), url.clone());
            if let Some(accept) = accept {
                request = request.header(ACCEPT, accept);
            }
            if same_origin(&url, &self.inner.origin) {
                request = match (authorization, &self.inner.config.credentials) {
                    (Some(Authorization::Bearer(token)), _) => {
                        request.header(AUTHORIZATION, format!("Bearer {}", token.expose()))
                    }
                    (Some(Authorization::Basic), Some(credentials)) => request
                        .basic_auth(&credentials.username, Some(credentials.password.expose())),
                    _ => request,
                };
            }
            let response = request
                .send()
                .await
                .map_err(|e| self.unavailable(describe(e)))?;
            let status = response.status().as_u16();
            if !matches!(status, 301 | 302 | 303 | 307 | 308) {
                return Ok(response);
            }
            let location = header(&response, LOCATION.as_str())
                .ok_or_else(|| self.invalid(format!("HTTP {status} without Location")))?;
            url = url
                .join(location)
                .map_err(|_| self.invalid(format!("HTTP {status} to an unusable Location")))?;
        }
        Err(self.invalid("too many redirects".to_owned()))
    }

    fn status(&self, response: Response) -> Result<Response, UpstreamError> {
        let status = response.status().as_u16();
        match status {
            200..=299 => Ok(response),
            404 => Err(UpstreamError::NotFound),
            401 | 403 => Err(UpstreamError::Denied { status }),
            429 | 500..=599 => Err(self.unavailable(format!("HTTP {status}"))),
            _ => Err(self.invalid(format!("unexpected HTTP {status}"))),
        }
    }
}

/// The digests an image index lists (a referrers answer, or a tag-schema fallback index).
pub fn referrer_digests(index: &[u8]) -> Result<Vec<Digest>, String> {
    #[derive(serde::Deserialize)]
    struct Index {
        #[serde(default)]
        manifests: Vec<Descriptor>,
    }
    #[derive(serde::Deserialize)]
    struct Descriptor {
        digest: String,
    }
    let index: Index = serde_json::from_slice(index).map_err(|e| format!("not an index: {e}"))?;
    index
        .manifests
        .iter()
        .map(|d| Digest::parse(&d.digest).map_err(|e| e.to_string()))
        .collect()
}

/// Whether credentials meant for `origin` may go to `url`: same scheme, host and port.
fn same_origin(url: &Url, origin: &Url) -> bool {
    url.scheme() == origin.scheme()
        && url.host_str() == origin.host_str()
        && url.port_or_known_default() == origin.port_or_known_default()
}

pub(super) fn header<'r>(response: &'r Response, name: &str) -> Option<&'r str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The `Content-Length` header (also on a `HEAD`, where the body is empty).
fn content_length(response: &Response) -> Option<u64> {
    header(response, CONTENT_LENGTH.as_str()).and_then(|v| v.trim().parse().ok())
}

/// The answer's `Content-Type` when it names a type, else the payload's `mediaType`.
fn media_type(content_type: Option<String>, payload: &[u8]) -> Option<String> {
    let generic = [
        "application/json",
        "application/octet-stream",
        "text/plain",
        "",
    ];
    match content_type {
        Some(t) if !generic.contains(&t.as_str()) => Some(t),
        _ => serde_json::from_slice::<serde_json::Value>(payload)
            .ok()?
            .get("mediaType")?
            .as_str()
            .map(str::to_owned),
    }
}

/// The digest of a manifest fetched by `reference`: by digest, the payload must hash to it;
/// by tag, to `Docker-Content-Digest` when the upstream sends one (that digest is returned,
/// whatever its algorithm), else its sha256.
pub fn verify_manifest(
    reference: &Reference,
    docker_content_digest: Option<&str>,
    payload: &[u8],
) -> Result<Digest, String> {
    let expected = match (reference, docker_content_digest) {
        (Reference::Digest(digest), _) => digest.clone(),
        (Reference::Tag(_), Some(raw)) => {
            Digest::parse(raw).map_err(|e| format!("Docker-Content-Digest: {e}"))?
        }
        (Reference::Tag(_), None) => return Ok(Digest::sha256_of(payload)),
    };
    let actual = Digest::of(expected.algorithm(), payload);
    if actual == expected {
        Ok(actual)
    } else {
        Err(format!("the manifest hashes to {actual}, not {expected}"))
    }
}

type IoStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// A blob's bytes, passed on as they arrive; at their end, an `InvalidData` error instead of
/// the end when they are not `size` long or do not hash to `digest`.
struct Verified {
    inner: IoStream,
    hasher: Option<DigestHasher>,
    digest: Digest,
    size: u64,
    seen: u64,
    label: String,
}

impl Verified {
    fn new(inner: IoStream, digest: Digest, size: u64, label: String) -> Verified {
        Verified {
            inner,
            hasher: Some(DigestHasher::new(digest.algorithm())),
            digest,
            size,
            seen: 0,
            label,
        }
    }

    fn fail(&mut self, why: String) -> Poll<Option<io::Result<Bytes>>> {
        self.hasher = None;
        Poll::Ready(Some(Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: blob {}: {why}", self.label, self.digest),
        ))))
    }
}

impl Stream for Verified {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.hasher.is_none() {
            return Poll::Ready(None);
        }
        match ready!(this.inner.as_mut().poll_next(cx)) {
            Some(Ok(bytes)) => {
                this.seen += bytes.len() as u64;
                if this.seen > this.size {
                    return this.fail(format!("more than the {} bytes announced", this.size));
                }
                if let Some(hasher) = this.hasher.as_mut() {
                    hasher.update(&bytes);
                }
                Poll::Ready(Some(Ok(bytes)))
            }
            Some(Err(e)) => {
                this.hasher = None;
                Poll::Ready(Some(Err(e)))
            }
            None => {
                let Some(hasher) = this.hasher.take() else {
                    return Poll::Ready(None);
                };
                if this.seen != this.size {
                    let why = format!("{} bytes, not the {} announced", this.seen, this.size);
                    return this.fail(why);
                }
                let actual = hasher.finish();
                if actual != this.digest {
                    return this.fail(format!("the bytes hash to {actual}"));
                }
                Poll::Ready(None)
            }
        }
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;

//! A registry client that checks every answer: status codes, `Location`/`Range` progress,
//! `Docker-Content-Digest`, lengths, and the bytes themselves (by SHA-256, or compared with
//! what was pushed), so that a fast but wrong server fails the benchmark instead of scoring.
//!
//! It speaks the distribution API as clients do: `POST` then `PUT ?digest=` with the whole
//! body (monolithic), `POST` + `PATCH`es with `Content-Range` + `PUT` (chunked), `POST` + one
//! `PATCH` without `Content-Length` + `PUT` (streamed), and follows `Location` after every
//! step (distribution carries its state in it).

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use reqwest::header::{
    ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, LINK, LOCATION, RANGE,
};
use reqwest::{Method, Response, StatusCode};
use sha2::{Digest as _, Sha256};

use crate::data::hex;

/// How a blob is pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushMode {
    /// `POST`, then `PUT ?digest=` carrying the whole body with its `Content-Length`.
    Monolithic,
    /// `POST`, `PATCH`es of this many bytes with `Content-Range`, then an empty `PUT`.
    Chunked(u64),
    /// `POST`, one `PATCH` streaming the body without `Content-Length`, then an empty `PUT`.
    Streamed,
}

/// How a pulled body is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// SHA-256 of the body against the digest, as a client verifying what it pulls does.
    Digest,
    /// Byte-for-byte comparison with the pushed data (memory speed: the "no verification"
    /// figure, still refusing wrong bytes).
    Compare,
}

/// Chunks of a streamed body.
const STREAM_CHUNK: usize = 1 << 20;

/// A registry at a base URL.
#[derive(Debug, Clone)]
pub struct Registry {
    http: reqwest::Client,
    base: String,
}

impl Registry {
    pub fn new(base: &str) -> anyhow::Result<Registry> {
        let http = reqwest::Client::builder()
            .http1_only()
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(256)
            .build()
            .context("HTTP client")?;
        Ok(Registry {
            http,
            base: base.to_owned(),
        })
    }

    /// An absolute URL for a path or a `Location` (absolute, as distribution sends, or not).
    fn resolve(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else {
            format!("{}{location}", self.base)
        }
    }

    /// `GET /v2/` answers 200.
    pub async fn ping(&self) -> anyhow::Result<()> {
        let response = self
            .send(Method::GET, "/v2/", HeaderMap::new(), None)
            .await?;
        expect(response, StatusCode::OK, "GET /v2/").await.map(drop)
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<reqwest::Body>,
    ) -> anyhow::Result<Response> {
        let mut request = self
            .http
            .request(method.clone(), self.resolve(url))
            .headers(headers);
        if let Some(body) = body {
            request = request.body(body);
        }
        request
            .send()
            .await
            .with_context(|| format!("{method} {url}"))
    }

    /// Opens an upload session; its `Location`.
    async fn start_upload(&self, repo: &str) -> anyhow::Result<String> {
        let url = format!("/v2/{repo}/blobs/uploads/");
        let response = self
            .send(
                Method::POST,
                &url,
                HeaderMap::new(),
                Some(Bytes::new().into()),
            )
            .await?;
        let response = expect(response, StatusCode::ACCEPTED, &format!("POST {url}")).await?;
        location(&response)
    }

    /// Pushes a blob and checks the registry names it by `digest`.
    pub async fn push_blob(
        &self,
        repo: &str,
        digest: &str,
        data: Bytes,
        mode: PushMode,
    ) -> anyhow::Result<()> {
        let size = data.len() as u64;
        let mut at = self.start_upload(repo).await?;
        let last = match mode {
            PushMode::Monolithic => data,
            PushMode::Chunked(chunk) => {
                let chunk = usize::try_from(chunk.max(1))?;
                let mut start = 0;
                while start < data.len() {
                    let end = (start + chunk).min(data.len());
                    let mut headers = HeaderMap::new();
                    headers.insert(CONTENT_RANGE, format!("{start}-{}", end - 1).parse()?);
                    headers.insert(CONTENT_TYPE, "application/octet-stream".parse()?);
                    let body = data.slice(start..end);
                    at = self.patch(&at, headers, body.into(), end as u64).await?;
                    start = end;
                }
                Bytes::new()
            }
            PushMode::Streamed => {
                let chunks: Vec<std::io::Result<Bytes>> = (0..data.len())
                    .step_by(STREAM_CHUNK)
                    .map(|s| Ok(data.slice(s..(s + STREAM_CHUNK).min(data.len()))))
                    .collect();
                let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
                let mut headers = HeaderMap::new();
                headers.insert(CONTENT_TYPE, "application/octet-stream".parse()?);
                at = self.patch(&at, headers, body, size).await?;
                Bytes::new()
            }
        };
        let separator = if at.contains('?') { '&' } else { '?' };
        let url = format!("{at}{separator}digest={digest}");
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, "application/octet-stream".parse()?);
        let response = self
            .send(Method::PUT, &url, headers, Some(last.into()))
            .await?;
        let response = expect(response, StatusCode::CREATED, "PUT upload").await?;
        expect_digest(response.headers(), digest, "PUT upload")
    }

    /// One `PATCH`; checks the session now covers `0..offset`; the next `Location`.
    async fn patch(
        &self,
        at: &str,
        headers: HeaderMap,
        body: reqwest::Body,
        offset: u64,
    ) -> anyhow::Result<String> {
        let response = self.send(Method::PATCH, at, headers, Some(body)).await?;
        let response = expect(response, StatusCode::ACCEPTED, "PATCH upload").await?;
        let range = header(response.headers(), RANGE.as_str()).unwrap_or_default();
        ensure!(
            range == format!("0-{}", offset - 1),
            "PATCH upload: Range {range:?}, expected 0-{}",
            offset - 1
        );
        location(&response)
    }

    /// `HEAD` of a blob: its length, or `None` when the registry answers 404.
    pub async fn blob_size(&self, repo: &str, digest: &str) -> anyhow::Result<Option<u64>> {
        let url = format!("/v2/{repo}/blobs/{digest}");
        let response = self
            .send(Method::HEAD, &url, HeaderMap::new(), None)
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = expect(response, StatusCode::OK, &format!("HEAD {url}")).await?;
        expect_digest(response.headers(), digest, "HEAD blob")?;
        let length = header(response.headers(), CONTENT_LENGTH.as_str())
            .and_then(|v| v.parse().ok())
            .context("HEAD blob: no Content-Length")?;
        Ok(Some(length))
    }

    /// Pulls a whole blob and checks it; the number of bytes.
    pub async fn pull_blob(
        &self,
        repo: &str,
        digest: &str,
        expected: &Bytes,
        verify: Verify,
    ) -> anyhow::Result<u64> {
        let url = format!("/v2/{repo}/blobs/{digest}");
        let response = self.send(Method::GET, &url, HeaderMap::new(), None).await?;
        let mut response = expect(response, StatusCode::OK, &format!("GET {url}")).await?;
        if response.headers().contains_key("docker-content-digest") {
            expect_digest(response.headers(), digest, "GET blob")?;
        }
        if let Some(length) = response.content_length() {
            ensure!(
                length == expected.len() as u64,
                "GET blob: Content-Length {length}, expected {}",
                expected.len()
            );
        }
        let mut hasher = Sha256::new();
        let mut received = 0usize;
        while let Some(chunk) = response.chunk().await.context("GET blob: body")? {
            let end = received + chunk.len();
            ensure!(end <= expected.len(), "GET blob: body longer than the blob");
            match verify {
                Verify::Digest => hasher.update(&chunk),
                Verify::Compare => ensure!(
                    chunk[..] == expected[received..end],
                    "GET blob: bytes differ from what was pushed at offset {received}"
                ),
            }
            received = end;
        }
        ensure!(
            received == expected.len(),
            "GET blob: {received} bytes, expected {}",
            expected.len()
        );
        if verify == Verify::Digest {
            let computed = format!("sha256:{}", hex(&hasher.finalize()));
            ensure!(computed == digest, "GET blob: body hashes to {computed}");
        }
        Ok(received as u64)
    }

    /// A ranged `GET` of `start..=end`, checked against the pushed bytes.
    pub async fn pull_range(
        &self,
        repo: &str,
        digest: &str,
        blob: &Bytes,
        start: u64,
        end: u64,
    ) -> anyhow::Result<()> {
        let url = format!("/v2/{repo}/blobs/{digest}");
        let mut headers = HeaderMap::new();
        headers.insert(RANGE, format!("bytes={start}-{end}").parse()?);
        let response = self.send(Method::GET, &url, headers, None).await?;
        let response = expect(response, StatusCode::PARTIAL_CONTENT, "ranged GET").await?;
        let content_range = header(response.headers(), CONTENT_RANGE.as_str()).unwrap_or_default();
        let wanted = format!("bytes {start}-{end}/{}", blob.len());
        ensure!(
            content_range == wanted,
            "ranged GET: Content-Range {content_range:?}, expected {wanted:?}"
        );
        let body = response.bytes().await.context("ranged GET: body")?;
        let (start, end) = (usize::try_from(start)?, usize::try_from(end)?);
        ensure!(
            body[..] == blob[start..=end],
            "ranged GET: bytes differ from the pushed blob"
        );
        Ok(())
    }

    /// `PUT` a manifest under a tag or its digest; checks the digest the registry names.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        payload: Bytes,
        digest: &str,
    ) -> anyhow::Result<()> {
        let url = format!("/v2/{repo}/manifests/{reference}");
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, media_type.parse()?);
        let response = self
            .send(Method::PUT, &url, headers, Some(payload.into()))
            .await?;
        let response = expect(response, StatusCode::CREATED, &format!("PUT {url}")).await?;
        expect_digest(response.headers(), digest, "PUT manifest")
    }

    /// `GET` a manifest; checks its type, its digest header and that its bytes hash to
    /// `digest`.
    pub async fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        digest: &str,
    ) -> anyhow::Result<Bytes> {
        let url = format!("/v2/{repo}/manifests/{reference}");
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, media_type.parse()?);
        let response = self.send(Method::GET, &url, headers, None).await?;
        let response = expect(response, StatusCode::OK, &format!("GET {url}")).await?;
        expect_digest(response.headers(), digest, "GET manifest")?;
        let content_type = header(response.headers(), CONTENT_TYPE.as_str()).unwrap_or_default();
        ensure!(
            content_type == media_type,
            "GET manifest: Content-Type {content_type:?}"
        );
        let body = response.bytes().await.context("GET manifest: body")?;
        let computed = crate::data::sha256_digest(&body);
        ensure!(
            computed == digest,
            "GET manifest: body hashes to {computed}"
        );
        Ok(body)
    }

    /// Every tag of a repository (following `Link` pages).
    pub async fn tags(&self, repo: &str) -> anyhow::Result<Vec<String>> {
        self.listing(&format!("/v2/{repo}/tags/list"), "tags").await
    }

    /// Every repository of the catalog (following `Link` pages of 1000).
    pub async fn catalog(&self) -> anyhow::Result<Vec<String>> {
        self.listing("/v2/_catalog?n=1000", "repositories").await
    }

    async fn listing(&self, first: &str, field: &str) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        let mut next = Some(first.to_owned());
        while let Some(url) = next.take() {
            let response = self.send(Method::GET, &url, HeaderMap::new(), None).await?;
            let response = expect(response, StatusCode::OK, &format!("GET {url}")).await?;
            next = header(response.headers(), LINK.as_str()).and_then(|l| next_link(&l));
            let body: serde_json::Value = response
                .json()
                .await
                .with_context(|| format!("GET {url}: JSON body"))?;
            let items = body[field]
                .as_array()
                .with_context(|| format!("GET {url}: no {field} array"))?;
            for item in items {
                out.push(item.as_str().context("a non-string entry")?.to_owned());
            }
        }
        Ok(out)
    }
}

/// The response when its status is `want`; otherwise an error with the body's start.
async fn expect(response: Response, want: StatusCode, what: &str) -> anyhow::Result<Response> {
    if response.status() == want {
        return Ok(response);
    }
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    bail!(
        "{what}: {status}, expected {want}: {}",
        body.chars().take(300).collect::<String>()
    )
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn location(response: &Response) -> anyhow::Result<String> {
    header(response.headers(), LOCATION.as_str()).context("no Location header")
}

fn expect_digest(headers: &HeaderMap, digest: &str, what: &str) -> anyhow::Result<()> {
    let named = header(headers, "docker-content-digest").unwrap_or_default();
    ensure!(
        named == digest,
        "{what}: Docker-Content-Digest {named:?}, expected {digest}"
    );
    Ok(())
}

/// The target of `Link: <url>; rel="next"`.
fn next_link(link: &str) -> Option<String> {
    let (target, params) = link.split_once(';')?;
    params.contains("rel=\"next\"").then(|| {
        target
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_and_locations() {
        assert_eq!(
            next_link("</v2/_catalog?n=2&last=b>; rel=\"next\"").as_deref(),
            Some("/v2/_catalog?n=2&last=b")
        );
        assert_eq!(next_link("</x>; rel=\"prev\""), None);
        let registry = Registry::new("http://127.0.0.1:1").unwrap();
        assert_eq!(registry.resolve("/v2/"), "http://127.0.0.1:1/v2/");
        assert_eq!(registry.resolve("http://h/v2/x"), "http://h/v2/x");
    }
}

//! Typed extractors for what follows the repository name in a path: a blob's digest, a
//! manifest's reference, an upload's id. Each parses once, and its rejection is the spec's
//! error for that part (`DIGEST_INVALID`, `BLOB_UPLOAD_UNKNOWN`; for references see
//! [`ReferencePath`] and [`WriteReferencePath`]), so handlers never hold a `Path<String>`.
//! (The repository itself is [`Repo`](super::Repo).)

use axum::extract::{FromRequestParts, Path};
use http::request::Parts;

use super::oci_error::RegistryError;
use crate::oci::{Digest, DigestError, Reference, TagError, UploadId, UploadIdError, truncate};

/// `{digest}` of `/blobs/<digest>` and `/referrers/<digest>`.
#[derive(Debug, Clone)]
pub struct DigestPath(pub Digest);

/// `{reference}` of `/manifests/<reference>` to read (`GET`, `HEAD`): a tag or a digest. One
/// that cannot name a manifest names none, so it is `404 MANIFEST_UNKNOWN` like any reference
/// the repository lacks (the conformance suite checks it).
#[derive(Debug, Clone)]
pub struct ReferencePath(pub Reference);

/// `{reference}` of `PUT` and `DELETE /manifests/<reference>`, which change the repository: an
/// invalid one is the client's mistake, `400 TAG_INVALID` (or `DIGEST_INVALID`), as for a
/// blob `DELETE` of a malformed digest.
#[derive(Debug, Clone)]
pub struct WriteReferencePath(pub Reference);

/// containerd's `?ns=<registry host>` on requests to a mirror: which upstream registry the
/// client means (see `services::cache::sources`). Absent or empty: none.
#[derive(Debug, Clone, Default)]
pub struct MirrorNamespace(pub Option<String>);

impl MirrorNamespace {
    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for MirrorNamespace {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let ns = parts.uri.query().and_then(|query| {
            query.split('&').find_map(|pair| {
                let value = pair.strip_prefix("ns=")?;
                percent_decoded(value).filter(|v| !v.is_empty())
            })
        });
        Ok(MirrorNamespace(ns))
    }
}

/// A query value, percent-decoded (`+` is not a space in a host name).
fn percent_decoded(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `{id}` of `/blobs/uploads/<id>`.
#[derive(Debug, Clone)]
pub struct UploadIdPath(pub UploadId);

/// The one path parameter, percent-decoded; `None` when it does not decode to UTF-8.
async fn raw<S: Send + Sync>(parts: &mut Parts, state: &S) -> Option<String> {
    Path::<String>::from_request_parts(parts, state)
        .await
        .ok()
        .map(|Path(raw)| raw)
}

impl<S: Send + Sync> FromRequestParts<S> for DigestPath {
    type Rejection = RegistryError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = raw(parts, state).await.ok_or(DigestError {
            digest: String::new(),
            reason: "not valid UTF-8",
        })?;
        Ok(DigestPath(Digest::parse(&raw)?))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ReferencePath {
    type Rejection = RegistryError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = raw(parts, state).await.unwrap_or_default();
        Reference::parse(&raw)
            .map(ReferencePath)
            .map_err(|_| RegistryError::manifest_unknown(&truncate(&raw, 200)))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WriteReferencePath {
    type Rejection = RegistryError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = raw(parts, state)
            .await
            .ok_or(TagError { tag: String::new() })?;
        Ok(WriteReferencePath(Reference::parse(&raw)?))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for UploadIdPath {
    type Rejection = RegistryError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw = raw(parts, state).await.ok_or(UploadIdError)?;
        Ok(UploadIdPath(UploadId::parse(&raw)?))
    }
}

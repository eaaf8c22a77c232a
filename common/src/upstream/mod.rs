//! The HTTP client of one upstream registry of the pull-through cache (distribution API v2):
//! manifests and blobs, `GET` and `HEAD`, and (for `jobs import`) the catalog and tag listings. No server types, no metadata, no
//! storage: the cache service decides what to fetch and where it goes.
//!
//! The contract:
//! - Everything fetched is verified: a manifest by digest hashes to it; a manifest by tag
//!   hashes to `Docker-Content-Digest` when the upstream sends one; a blob's stream ends with
//!   an `InvalidData` error instead of its end when its bytes do not hash to the digest or are
//!   not `Content-Length` long, so nothing consuming it takes a wrong blob for a complete one.
//! - Authentication as docker does it: a request goes out with the token cached for its scope
//!   (or Basic, once the upstream asked for Basic); a `401` is answered per its
//!   `WWW-Authenticate`: `Bearer` → a token from the realm for `repository:<name>:pull`
//!   (with the configured credentials, or anonymous), cached until `expires_in` (default 60 s)
//!   minus a margin; `Basic` → the credentials. A `401`/`403` after that is [`UpstreamError::Denied`].
//! - Credentials go to the upstream's own origin and its token realm only: redirects (blob
//!   downloads from S3 or GCS) are followed without them. Secrets never appear in errors or
//!   logs (errors carry no URL either: signed redirect URLs hold signatures).
//! - Connecting takes at most 10 s; a response that sends nothing for 60 s fails. Requests
//!   carry `User-Agent: registry/<version> (pull-through cache)`.
//!
//! Errors: `404` → [`UpstreamError::NotFound`]; `401`/`403` → `Denied`; connection, timeout,
//! TLS, `429` and `5xx` → `Unavailable` (serve what is cached); anything else the upstream got
//! wrong (digest mismatch, too large, no `Content-Length`, another status) → `Invalid`.

mod auth;
mod client;
mod listing;

pub use client::{referrer_digests, verify_manifest};

use std::sync::Arc;

use crate::oci::Digest;
use crate::storage::ByteStream;

/// The client of one upstream; cheap to clone (the connection pool and the token cache are
/// shared).
#[derive(Debug, Clone)]
pub struct Upstream {
    inner: Arc<client::Inner>,
}

/// A manifest as the upstream serves it, verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedManifest {
    pub digest: Digest,
    /// `Content-Type` of the answer (without parameters), or the payload's `mediaType`.
    pub media_type: String,
    pub payload: Vec<u8>,
}

/// A blob being downloaded: its size (`Content-Length`) and its bytes, verified as they end.
pub struct FetchedBlob {
    pub size: u64,
    pub body: ByteStream,
}

impl std::fmt::Debug for FetchedBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchedBlob")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Why a fetch from an upstream failed. `reason`s start with the upstream's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// `404` from the upstream.
    #[error("not found upstream")]
    NotFound,
    /// `401`/`403` even after authenticating (or from the token endpoint).
    #[error("the upstream refused access (HTTP {status})")]
    Denied { status: u16 },
    /// Connection, timeout or TLS failure, `429`, `5xx`: for logs, never for clients.
    #[error("unavailable: {reason}")]
    Unavailable { reason: String },
    /// The upstream answered something unusable: digest mismatch, too large, no
    /// `Content-Length`, an unexpected status.
    #[error("invalid answer: {reason}")]
    Invalid { reason: String },
}

//! Entry points for the fuzz targets (`fuzz/` at the repository root), not an API: the parsers
//! that see bytes from outside but are private to their modules, reached here without a
//! server, a database or a file. Each function only forwards to the parser the registry runs
//! (nothing here parses on its own), so that what is fuzzed is what serves.

use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;

use crate::metadata::UploadRow;
use crate::oci::{Algorithm, Digest, DigestHasher, RepositoryName, UploadId};
use crate::services::management_model::{Kind, PageRequest};
use crate::services::{ContentRange, RangeSpec, UploadError};

pub use crate::auth::rules::{Rules, Who};
pub use crate::auth::token::{KeySources, TokenKeys};

/// A `Range` header's value as the blob `GET` reads it.
pub fn range(header: &str) -> Option<RangeSpec> {
    crate::http::headers::parse_range(header)
}

/// A `Content-Range` header's value as an upload `PATCH` reads it.
pub fn content_range(header: &str) -> Option<ContentRange> {
    crate::http::headers::parse_content_range(header)
}

/// The length a chunk's body must have, for a session at `offset`.
pub fn expected_length(
    offset: u64,
    range: Option<ContentRange>,
    content_length: Option<u64>,
) -> Result<Option<u64>, UploadError> {
    let name = RepositoryName::parse("fuzz").map_err(|e| UploadError::BodyCutOff {
        reason: e.to_string(),
    })?;
    let row = UploadRow {
        repository_id: 1,
        offset,
        hash_state: Vec::new(),
        parts: Vec::new(),
    };
    crate::services::upload_service::expected_length(
        &name,
        &UploadId::new(),
        &row,
        range,
        content_length,
    )
}

/// What an upload body's chunks came to through the stream that hashes and bounds them.
#[derive(Debug)]
pub struct Hashed {
    /// The chunks the stream let through, in order.
    pub passed: Vec<Bytes>,
    /// Whether it refused a chunk for going past `limit`.
    pub refused: bool,
    /// The digest of what it hashed.
    pub digest: Digest,
}

/// Streams `chunks` through the upload path's hashing stream with a declared length `limit`.
pub fn hash_limited(chunks: Vec<Bytes>, limit: Option<u64>) -> Hashed {
    let mut hasher = DigestHasher::new(Algorithm::Sha256);
    let mut passed = Vec::new();
    let mut refused = false;
    {
        let mut stream = crate::services::upload_service::Hashing {
            inner: futures_util::stream::iter(chunks.into_iter().map(Ok)),
            hasher: &mut hasher,
            count: 0,
            limit,
        };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        // The inner stream is always ready: every poll answers.
        while let Poll::Ready(Some(item)) = std::pin::Pin::new(&mut stream).poll_next(&mut cx) {
            match item {
                Ok(chunk) => passed.push(chunk),
                Err(_) => {
                    refused = true;
                    break;
                }
            }
        }
    }
    Hashed {
        passed,
        refused,
        digest: hasher.finish(),
    }
}

/// An htpasswd file's text, parsed as at start-up: `Err` holds the line at fault and why.
pub fn htpasswd(text: &str) -> Result<(), (usize, String)> {
    crate::auth::htpasswd::Htpasswd::parse(text, std::time::Duration::from_secs(1)).map(|_| ())
}

/// A management API cursor of each listing (repositories, tags, manifests) for `key`.
pub fn cursors(key: &str) -> [String; 3] {
    [Kind::Repositories, Kind::Tags, Kind::Manifests].map(|kind| kind.cursor(key))
}

/// The key `page`'s cursor carries in each listing (repositories, tags, manifests), as the
/// management service reads it.
pub fn cursor_keys(
    page: &PageRequest,
) -> [Result<Option<String>, crate::services::ManagementError>; 3] {
    [Kind::Repositories, Kind::Tags, Kind::Manifests].map(|kind| page.key(kind))
}

//! Request bodies as byte streams that give up when the client goes quiet, and small header
//! readers.

use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::HeaderMap;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};

use super::oci_error::{OciCode, RegistryError};

/// The body as a stream of chunks; an error ends it when the client sends nothing for `idle`.
pub fn body_stream(
    body: Body,
    idle: Duration,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + Unpin + 'static {
    let stream = body.into_data_stream();
    Box::pin(futures_util::stream::unfold(
        Some(stream),
        move |state| async move {
            let mut stream = state?;
            match tokio::time::timeout(idle, stream.next()).await {
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(stream))),
                Ok(Some(Err(e))) => Some((Err(std::io::Error::other(e)), None)),
                Ok(None) => None,
                Err(_) => Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "request body idle for too long",
                    )),
                    None,
                )),
            }
        },
    ))
}

/// Reads a whole body of at most `limit` bytes (413 `SIZE_INVALID` beyond).
pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    idle: Duration,
) -> Result<Bytes, RegistryError> {
    let too_large = || {
        RegistryError::new(OciCode::SizeInvalid, "body exceeds the size limit")
            .with_status(http::StatusCode::PAYLOAD_TOO_LARGE)
            .with_detail(serde_json::json!({ "limit": limit }))
    };
    if content_length(headers).is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    let mut stream = body_stream(body, idle);
    let mut out = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            RegistryError::new(
                OciCode::SizeInvalid,
                "request body ended before it was complete",
            )
            .with_detail(serde_json::json!({ "reason": e.to_string() }))
        })?;
        if out.len() + chunk.len() > limit {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

/// `Content-Length`, when present and numeric.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// `Content-Type` without parameters, when present.
pub fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim())
}

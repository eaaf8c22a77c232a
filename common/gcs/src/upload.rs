//! Writing one part object from a request body, with flat memory.
//!
//! The body is borrowed (the caller's hasher wraps it), while the google-cloud-storage client
//! wants a `'static` source; so the body is pumped into a small channel that the client reads,
//! both futures running in the caller's task. A body that ends within
//! [`SINGLE_SHOT_MAX`] bytes goes in one request; a longer one goes as a resumable upload
//! that the client sends in chunks of its buffer size, so memory stays bounded whatever the
//! part's size. A failed body fails the upload before it is finalised: no object appears.

use std::collections::VecDeque;

use bytes::Bytes;
use futures_util::StreamExt;
use google_cloud_storage::client::Storage as GcsClient;
use google_cloud_storage::streaming_source::StreamingSource;
use registry_common::storage::{BodyStream, StorageError};
use tokio::sync::mpsc;

use crate::error::GcsError;

/// Bodies up to this size are written in one request (they are held in memory meanwhile).
pub(crate) const SINGLE_SHOT_MAX: usize = 4 * 1024 * 1024;
/// Chunks in flight between the body and the client.
const CHANNEL_DEPTH: usize = 8;

/// The client's view of the body: what was read ahead, then what the pump sends.
struct ChannelSource {
    head: VecDeque<Bytes>,
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
}

impl StreamingSource for ChannelSource {
    type Error = std::io::Error;

    async fn next(&mut self) -> Option<Result<Bytes, Self::Error>> {
        match self.head.pop_front() {
            Some(chunk) => Some(Ok(chunk)),
            None => self.rx.recv().await,
        }
    }
}

/// How the pump ended.
enum Pumped {
    /// The body ended; this many bytes were handed over.
    Done(u64),
    /// The body failed; the client was told, so it will not finalise the object.
    Failed(std::io::Error),
    /// The client stopped reading (its upload failed).
    Abandoned,
}

/// Feeds the rest of the body to the client until the body ends or the client goes away.
async fn pump(body: BodyStream<'_>, tx: mpsc::Sender<std::io::Result<Bytes>>) -> Pumped {
    let mut sent = 0u64;
    loop {
        let next = tokio::select! {
            () = tx.closed() => return Pumped::Abandoned,
            next = body.next() => next,
        };
        match next {
            Some(Ok(chunk)) if chunk.is_empty() => {}
            Some(Ok(chunk)) => {
                sent += chunk.len() as u64;
                if tx.send(Ok(chunk)).await.is_err() {
                    return Pumped::Abandoned;
                }
            }
            Some(Err(e)) => {
                let _ = tx
                    .send(Err(std::io::Error::other("the request body failed")))
                    .await;
                return Pumped::Failed(e);
            }
            None => return Pumped::Done(sent),
        }
    }
}

/// Writes `object` from `body`; returns its length. The object exists only if this succeeds.
pub(crate) async fn write_part(
    client: &GcsClient,
    bucket: &str,
    object: &str,
    body: BodyStream<'_>,
) -> Result<u64, StorageError> {
    let client_error = |source| GcsError::Client {
        operation: "writing",
        object: object.to_owned(),
        source,
    };
    // Read ahead: a small body goes in one request, with its exact size.
    let mut head = Vec::new();
    let mut head_len = 0usize;
    let mut ended = false;
    while head_len < SINGLE_SHOT_MAX {
        match body.next().await {
            Some(Ok(chunk)) => {
                head_len += chunk.len();
                head.push(chunk);
            }
            Some(Err(source)) => return Err(StorageError::Body { source }),
            None => {
                ended = true;
                break;
            }
        }
    }
    let sent;
    let stored = if ended {
        sent = head_len as u64;
        // A part's name is unique to one request, so writing it again is harmless: the
        // client may retry it.
        let whole = match head.len() {
            1 => head.swap_remove(0),
            _ => head.concat().into(),
        };
        // A known checksum goes in the request's metadata, for the service to check; it also
        // spares the client a trailing checksum part, which emulators do not understand.
        let crc = crc32c::crc32c(&whole);
        client
            .write_object(bucket, object, whole)
            .with_known_crc32c(crc)
            .with_idempotency(true)
            .send_unbuffered()
            .await
            .map_err(client_error)?
    } else {
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let source = ChannelSource {
            head: head.into(),
            rx,
        };
        let upload = async {
            client
                .write_object(bucket, object, source)
                .with_idempotency(true)
                .send_buffered()
                .await
        };
        let (uploaded, pumped) = tokio::join!(upload, pump(body, tx));
        match (uploaded, pumped) {
            (_, Pumped::Failed(source)) => return Err(StorageError::Body { source }),
            (Err(e), _) => return Err(client_error(e).into()),
            (Ok(_), Pumped::Abandoned) => {
                // The client finished without reading the whole body: never finalise that.
                return Err(GcsError::SizeMismatch {
                    object: object.to_owned(),
                    sent: head_len as u64,
                    stored: 0,
                }
                .into());
            }
            (Ok(stored), Pumped::Done(rest)) => {
                sent = head_len as u64 + rest;
                stored
            }
        }
    };
    let stored_size = u64::try_from(stored.size).unwrap_or(u64::MAX);
    if stored_size != sent {
        return Err(GcsError::SizeMismatch {
            object: object.to_owned(),
            sent,
            stored: stored_size,
        }
        .into());
    }
    Ok(sent)
}

//! Filling the cache with one blob from an upstream, once, while a client reads it.
//!
//! One instance at a time fetches a digest: it takes the digest's lease row (renewed while
//! the bytes arrive; a lease whose holder died expires and is taken over). The holder's task
//! streams the upstream's body into a part object of its own while hashing it and handing each
//! chunk to the client that asked ([`Tee`]): nothing is held whole in memory, and a client that
//! goes away does not stop the fill, so its bytes are not fetched again. The last chunk is held
//! back until the bytes are verified (size and digest) and recorded: a client reading to the
//! declared length has a verified blob, and a fill that fails breaks the body instead (an
//! error where the last chunk would be), so no client takes a wrong blob for a whole one.
//!
//! The blob becomes visible as any upload's does: assembled from its part, then recorded under
//! the digest's lock (which garbage collection also takes), after the object is checked to be
//! there. Other clients of the same digest, on any instance, wait for the row and are then
//! served from storage.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

use super::CacheError;
use crate::metadata::Metadata;
use crate::oci::{Digest, DigestHasher, RepositoryName, UploadId};
use crate::storage::{BlobKey, ByteStream, PartName, Storage, UploadPartKey};
use crate::upstream::FetchedBlob;

/// How long a fetch lease lasts without renewal, and how often its holder renews it.
pub const LEASE_TTL: Duration = Duration::from_secs(30);
const LEASE_RENEWAL: Duration = Duration::from_secs(10);
/// Chunks buffered between the upstream and a slow client before the fill waits for it.
const CLIENT_BUFFER: usize = 16;

/// What a fill needs, cloned into its task.
#[derive(Debug, Clone)]
pub struct Filler {
    pub metadata: Metadata,
    pub storage: Arc<dyn Storage>,
    /// This process's lease holder name.
    pub holder: Arc<str>,
}

impl Filler {
    /// Starts filling `local` with the fetched blob, the caller holding the digest's lease;
    /// returns the bytes for the client as they arrive, and the fill's outcome.
    pub fn start(
        &self,
        local: RepositoryName,
        digest: Digest,
        fetched: FetchedBlob,
        upstream: String,
    ) -> (ByteStream, tokio::task::JoinHandle<Result<(), CacheError>>) {
        let (sender, receiver) = mpsc::channel(CLIENT_BUFFER);
        let filler = self.clone();
        let task = tokio::spawn(async move {
            let heartbeat = filler.heartbeat(&digest);
            let outcome = filler
                .fill(&local, &digest, fetched, &upstream, sender.clone())
                .await;
            heartbeat.abort();
            if let Err(e) = filler
                .metadata
                .release_fetch_lease(&digest, &filler.holder)
                .await
            {
                tracing::warn!(%digest, error = %crate::error::ErrorChain(&e), "releasing a fetch lease");
            }
            if let Err(e) = &outcome {
                tracing::warn!(%digest, repository = %local, upstream, error = %crate::error::ErrorChain(e), "cache fill failed");
                let _ = sender
                    .send(Err(std::io::Error::other("the upstream transfer failed")))
                    .await;
            }
            outcome
        });
        let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|item| (item, receiver))
        });
        (Box::pin(body), task)
    }

    /// Renews the lease until aborted.
    fn heartbeat(&self, digest: &Digest) -> tokio::task::JoinHandle<()> {
        let metadata = self.metadata.clone();
        let holder = self.holder.clone();
        let digest = digest.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(LEASE_RENEWAL);
            every.tick().await;
            loop {
                every.tick().await;
                match metadata
                    .renew_fetch_lease(&digest, &holder, lease_ms())
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(%digest, "fetch lease lost; another instance may fetch too");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(%digest, error = %crate::error::ErrorChain(&e), "renewing a fetch lease")
                    }
                }
            }
        })
    }

    async fn fill(
        &self,
        local: &RepositoryName,
        digest: &Digest,
        fetched: FetchedBlob,
        upstream: &str,
        client: mpsc::Sender<std::io::Result<Bytes>>,
    ) -> Result<(), CacheError> {
        let part = UploadPartKey {
            upload: UploadId::new(),
            part: PartName::new(0),
        };
        let mut tee = Tee {
            inner: fetched.body,
            hasher: DigestHasher::new(digest.algorithm()),
            client: Some(PollSender::new(client)),
            unsent: None,
            held: None,
        };
        let written = self.storage.put_part(&part, &mut tee).await;
        let parts = [part];
        let result = async {
            let size = written.map_err(|e| {
                CacheError::fill(upstream, crate::error::ErrorChain(&e).to_string())
            })?;
            if size != fetched.size {
                return Err(CacheError::fill(
                    upstream,
                    format!("sent {size} bytes of a {}-byte blob", fetched.size),
                ));
            }
            let computed =
                std::mem::replace(&mut tee.hasher, DigestHasher::new(digest.algorithm())).finish();
            if computed != *digest {
                return Err(CacheError::fill(
                    upstream,
                    format!("sent bytes hashing to {computed}"),
                ));
            }
            let key = BlobKey(digest.clone());
            self.storage.assemble(&parts, &key).await?;
            let mut lock = self.metadata.lock_blob(digest).await?;
            if self.storage.stat(&key).await?.is_none() {
                self.storage.assemble(&parts, &key).await?;
            }
            lock.record_cached(local, size).await?;
            lock.commit().await?;
            Ok(())
        }
        .await;
        if let Err(e) = self.storage.delete_parts(&parts).await {
            tracing::warn!(%digest, error = %crate::error::ErrorChain(&e), "deleting a cache fill's part");
        }
        // Verified and recorded: the last chunk goes, and then the body ends. (On failure the
        // caller sends an error in its place.)
        if result.is_ok()
            && let (Some(last), Some(client)) = (tee.held.take(), tee.client.take())
            && let Some(sender) = client.get_ref()
        {
            let _ = sender.send(Ok(last)).await;
        }
        drop(tee);
        result
    }
}

/// The lease length in the database's unit (milliseconds).
pub fn lease_ms() -> i64 {
    i64::try_from(LEASE_TTL.as_millis()).unwrap_or(i64::MAX)
}

/// The upstream's body on its way into storage: hashed, and each chunk handed to the client
/// too (waiting for a slow one; forgetting one that went away).
struct Tee {
    inner: ByteStream,
    hasher: DigestHasher,
    client: Option<PollSender<std::io::Result<Bytes>>>,
    /// A chunk passed to storage but not yet to the client.
    unsent: Option<Bytes>,
    /// The latest chunk, held back from the client until the next one arrives, and the last
    /// one until the blob is verified.
    held: Option<Bytes>,
}

impl Tee {
    /// Hands the unsent chunk to the client; `Pending` while the client's buffer is full.
    fn flush(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(chunk) = self.unsent.take() else {
            return Poll::Ready(());
        };
        let Some(client) = self.client.as_mut() else {
            return Poll::Ready(());
        };
        match client.poll_reserve(cx) {
            Poll::Pending => {
                self.unsent = Some(chunk);
                Poll::Pending
            }
            Poll::Ready(Ok(())) => {
                if client.send_item(Ok(chunk)).is_err() {
                    self.client = None;
                }
                Poll::Ready(())
            }
            // The client went away: the fill goes on for the next one.
            Poll::Ready(Err(_)) => {
                self.client = None;
                Poll::Ready(())
            }
        }
    }
}

impl Stream for Tee {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.flush(cx).is_pending() {
            return Poll::Pending;
        }
        match this.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.hasher.update(&chunk);
                if this.client.is_some() {
                    this.unsent = this.held.replace(chunk.clone());
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            other => other,
        }
    }
}

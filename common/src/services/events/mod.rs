//! Events: what the services write into the outbox with each change ([`EventRecorder`]), and
//! the [`Deliverer`] that sends the outbox to its destinations.
//!
//! The recorder only builds rows: the services hand them to the metadata call that makes the
//! change, which writes them in the same transaction (a rolled-back change records nothing;
//! a committed one cannot lose its event). After a commit the service calls
//! [`EventRecorder::committed`], which wakes this process's deliverer: delivery starts right
//! away, after the client's answer is on its way and never in front of it. With no
//! destination configured the recorder is off and writes nothing.
//!
//! Pull events (`EVENTS_PULLS`) would cost a write per pull; they are buffered in memory and
//! written in batches instead (at most every [`PULL_FLUSH_INTERVAL`] or [`PULL_BATCH`]
//! events), so a process that dies loses at most that window of pulls, never a change.

mod body;
mod deliver;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::events::{Action, EventOrigin};
use crate::metadata::{Metadata, NewEvent, StoredManifest};
use crate::oci::{Digest, ParsedManifest, Reference, RepositoryName, Tag};

pub use body::EventSource;
pub use deliver::{Deliverer, DeliveryPolicy, DeliveryReport};

use body::{Actor, Event, Request, Source, Subject, Target};

/// Pull events are written at least this often while some wait.
pub const PULL_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Pull events are written as soon as this many wait.
pub const PULL_BATCH: usize = 256;

/// Builds the outbox rows of changes, and wakes the deliverer after they commit.
#[derive(Debug, Clone)]
pub struct EventRecorder {
    inner: Option<Arc<Recording>>,
}

#[derive(Debug)]
struct Recording {
    source: EventSource,
    pulls: bool,
    wake: Arc<Notify>,
    pending_pulls: Mutex<Vec<NewEvent>>,
    pulls_waiting: Notify,
}

/// A manifest change, as its event describes it.
#[derive(Debug, Clone, Copy)]
pub struct ManifestTarget<'a> {
    pub digest: &'a Digest,
    pub media_type: &'a str,
    pub size: u64,
    pub parsed: Option<&'a ParsedManifest>,
}

impl EventRecorder {
    /// Records nothing (no destination configured).
    pub fn off() -> Self {
        EventRecorder { inner: None }
    }

    /// Records every change, and pulls too when `pulls`.
    pub fn new(source: EventSource, pulls: bool) -> Self {
        EventRecorder {
            inner: Some(Arc::new(Recording {
                source,
                pulls,
                wake: Arc::new(Notify::new()),
                pending_pulls: Mutex::new(Vec::new()),
                pulls_waiting: Notify::new(),
            })),
        }
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// What a deliverer of this process waits on.
    pub fn wake_handle(&self) -> Option<Arc<Notify>> {
        self.inner.as_ref().map(|r| r.wake.clone())
    }

    /// Call after a change with events committed: this process's deliverer starts on them.
    pub fn committed(&self) {
        if let Some(recording) = &self.inner {
            recording.wake.notify_one();
        }
    }

    /// A manifest stored (under `tag` when given).
    pub fn manifest_pushed(
        &self,
        origin: &EventOrigin,
        name: &RepositoryName,
        manifest: ManifestTarget<'_>,
        tag: Option<&Tag>,
    ) -> Vec<NewEvent> {
        let mut target = manifest_target(origin, name, &manifest);
        target.tag = tag.map_or("", Tag::as_str);
        if let Some(parsed) = manifest.parsed {
            target.references = parsed
                .blobs
                .iter()
                .chain(&parsed.children)
                .map(body::Reference::of)
                .collect();
            // The referrers API falls back to the config's media type; an event names an
            // artifact type only for artifacts, not for every image.
            target.artifact_type = parsed
                .artifact_type
                .as_deref()
                .filter(|t| !IMAGE_CONFIGS.contains(t));
            target.subject = parsed.subject.as_ref().map(|digest| Subject {
                digest: digest.to_string(),
            });
        }
        self.event(origin, name, Action::Push, target)
    }

    /// A blob stored in the repository by an upload.
    pub fn blob_pushed(
        &self,
        origin: &EventOrigin,
        name: &RepositoryName,
        digest: &Digest,
        size: u64,
    ) -> Vec<NewEvent> {
        self.event(
            origin,
            name,
            Action::Push,
            blob_target(origin, name, digest, size),
        )
    }

    /// A blob linked into `name` from `from`.
    pub fn blob_mounted(
        &self,
        origin: &EventOrigin,
        name: &RepositoryName,
        from: &RepositoryName,
        digest: &Digest,
        size: u64,
    ) -> Vec<NewEvent> {
        let mut target = blob_target(origin, name, digest, size);
        target.from_repository = from.as_str();
        self.event(origin, name, Action::Mount, target)
    }

    /// A manifest deleted by digest (its tags with it).
    pub fn manifest_deleted(
        &self,
        origin: &EventOrigin,
        name: &RepositoryName,
        digest: &Digest,
    ) -> Vec<NewEvent> {
        let target = Target {
            digest: digest.to_string(),
            repository: name.as_str(),
            ..Target::default()
        };
        self.event(origin, name, Action::Delete, target)
    }

    /// A tag deleted (its manifest stays).
    pub fn tag_deleted(
        &self,
        origin: &EventOrigin,
        name: &RepositoryName,
        tag: &Tag,
    ) -> Vec<NewEvent> {
        let target = Target {
            repository: name.as_str(),
            tag: tag.as_str(),
            ..Target::default()
        };
        self.event(origin, name, Action::Delete, target)
    }

    /// A blob deleted from the repository.
    pub fn blob_deleted(
        &self,
        origin: &EventOrigin,
        name: &RepositoryName,
        digest: &Digest,
    ) -> Vec<NewEvent> {
        let target = Target {
            media_type: BLOB_MEDIA_TYPE,
            digest: digest.to_string(),
            repository: name.as_str(),
            ..Target::default()
        };
        self.event(origin, name, Action::Delete, target)
    }

    /// A whole repository deleted (the management API).
    pub fn repository_deleted(&self, origin: &EventOrigin, name: &RepositoryName) -> Vec<NewEvent> {
        let target = Target {
            repository: name.as_str(),
            ..Target::default()
        };
        self.event(origin, name, Action::Delete, target)
    }

    /// A manifest pulled (`GET`): buffered, written with the next batch (only with
    /// `EVENTS_PULLS`).
    pub fn manifest_pulled(
        &self,
        origin: &EventOrigin,
        name: &RepositoryName,
        manifest: &StoredManifest,
        reference: &Reference,
    ) {
        if !self.inner.as_ref().is_some_and(|r| r.pulls) {
            return;
        }
        let tag = match reference {
            Reference::Tag(tag) => Some(tag),
            Reference::Digest(_) => None,
        };
        let manifest = ManifestTarget {
            digest: &manifest.digest,
            media_type: manifest.media_type.as_str(),
            size: manifest.payload.len() as u64,
            parsed: None,
        };
        let mut target = manifest_target(origin, name, &manifest);
        target.tag = tag.map_or("", Tag::as_str);
        let events = self.event(origin, name, Action::Pull, target);
        self.buffer_pulls(events);
    }

    /// A blob pulled: buffered like [`EventRecorder::manifest_pulled`].
    pub fn blob_pulled(
        &self,
        origin: &EventOrigin,
        name: &RepositoryName,
        digest: &Digest,
        size: Option<u64>,
    ) {
        if !self.inner.as_ref().is_some_and(|r| r.pulls) {
            return;
        }
        let mut target = blob_target(origin, name, digest, 0);
        // A redirected download does not say the size (the registry did not read it).
        target.size = size;
        target.length = size;
        let events = self.event(origin, name, Action::Pull, target);
        self.buffer_pulls(events);
    }

    fn buffer_pulls(&self, events: Vec<NewEvent>) {
        let Some(recording) = &self.inner else {
            return;
        };
        let full = match recording.pending_pulls.lock() {
            Ok(mut pending) => {
                pending.extend(events);
                pending.len() >= PULL_BATCH
            }
            Err(_) => false,
        };
        if full {
            recording.pulls_waiting.notify_one();
        }
    }

    /// Writes buffered pull events until the process ends: every [`PULL_FLUSH_INTERVAL`], or
    /// as soon as [`PULL_BATCH`] wait. Returns at once when pull events are off.
    pub async fn write_pulls(self, metadata: Metadata) {
        let Some(recording) = self.inner.clone().filter(|r| r.pulls) else {
            return;
        };
        loop {
            let _ =
                tokio::time::timeout(PULL_FLUSH_INTERVAL, recording.pulls_waiting.notified()).await;
            self.flush_pulls(&metadata).await;
        }
    }

    /// Writes the pull events waiting now (also at shutdown).
    pub async fn flush_pulls(&self, metadata: &Metadata) {
        let Some(recording) = &self.inner else {
            return;
        };
        let batch = match recording.pending_pulls.lock() {
            Ok(mut pending) => std::mem::take(&mut *pending),
            Err(_) => return,
        };
        if batch.is_empty() {
            return;
        }
        match metadata.insert_events(&batch).await {
            Ok(()) => self.committed(),
            Err(e) => tracing::warn!(
                events = batch.len(),
                error = %crate::error::ErrorChain(&e),
                "pull events lost"
            ),
        }
    }

    fn event(
        &self,
        origin: &EventOrigin,
        name: &RepositoryName,
        action: Action,
        target: Target<'_>,
    ) -> Vec<NewEvent> {
        let Some(recording) = &self.inner else {
            return Vec::new();
        };
        let id = uuid::Uuid::new_v4().to_string();
        let event = Event {
            id: &id,
            timestamp: jiff::Timestamp::now().to_string(),
            action,
            target,
            request: Request::of(origin),
            actor: Actor {
                name: origin.actor.as_deref(),
            },
            source: Source {
                addr: &recording.source.addr,
                instance_id: &recording.source.instance_id,
            },
        };
        match serde_json::to_string(&event) {
            Ok(body) => vec![NewEvent {
                id,
                repository: name.as_str().to_owned(),
                action,
                body,
            }],
            Err(e) => {
                // Serializing strings and numbers cannot fail; say so loudly if it ever does.
                tracing::error!(error = %e, "event not serializable");
                Vec::new()
            }
        }
    }
}

/// The config media types of ordinary images (not artifacts).
const IMAGE_CONFIGS: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// The media type distribution gives blob targets.
const BLOB_MEDIA_TYPE: &str = "application/octet-stream";

fn manifest_target<'a>(
    origin: &EventOrigin,
    name: &'a RepositoryName,
    manifest: &ManifestTarget<'a>,
) -> Target<'a> {
    Target {
        media_type: manifest.media_type,
        size: Some(manifest.size),
        digest: manifest.digest.to_string(),
        length: Some(manifest.size),
        repository: name.as_str(),
        url: origin.url(name.as_str(), "manifests", &manifest.digest.to_string()),
        ..Target::default()
    }
}

fn blob_target<'a>(
    origin: &EventOrigin,
    name: &'a RepositoryName,
    digest: &Digest,
    size: u64,
) -> Target<'a> {
    Target {
        media_type: BLOB_MEDIA_TYPE,
        size: Some(size),
        digest: digest.to_string(),
        length: Some(size),
        repository: name.as_str(),
        url: origin.url(name.as_str(), "blobs", &digest.to_string()),
        ..Target::default()
    }
}

#[cfg(test)]
mod tests;

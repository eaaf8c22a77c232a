//! Pulls, with the pull-through cache: manifests and blobs served from local content, and
//! what is missing fetched from the upstream registries of `UPSTREAMS_FILE`
//! ([`sources`] says which upstream a name reaches, and how).
//!
//! Every pull goes through here; with no upstreams configured it is the plain local read and
//! costs nothing more. Rules:
//! - manifests by digest are immutable: cached once, never asked for again; manifests by tag
//!   are revalidated with one `HEAD` after the upstream's `tag_ttl` (a tag that a push moved
//!   since is local and is not);
//! - only what a client asks for is fetched: an index without its platforms, a manifest
//!   without its layers (the references wait, see `metadata::cache`); a blob `HEAD` asks the
//!   upstream for the size and fetches nothing;
//! - a blob is fetched once, across instances, while the first client reads it ([`fill`]);
//! - what is cached is served whatever the upstream's state; what is not, while the upstream
//!   is down, is [`CacheError::UpstreamUnavailable`] naming it;
//! - a prefix is read-only: pushes into it are refused ([`CacheService::refuse_writes`]).

mod fill;
pub mod sources;

use super::events::EventRecorder;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::UpstreamConfig;
use crate::error::ErrorChain;
use crate::metadata::{CachedManifest, Metadata, MetadataError, NewManifest, StoredManifest};
use crate::oci::{Digest, ParsedManifest, Reference, RepositoryName, Tag};
use crate::storage::{BlobKey, Storage, StorageError};
use crate::upstream::{Upstream, UpstreamError, referrer_digests};

use super::{
    BlobAnswer, BlobError, BlobRead, BlobService, ManifestError, ManifestService, RangeSpec,
};
use fill::Filler;
use sources::{Lookup, Source};

/// How long a follower waits for another instance's fill of a blob before giving up.
const FILL_WAIT: Duration = Duration::from_secs(600);
/// How often a follower looks whether the fill is done.
const FILL_POLL: Duration = Duration::from_millis(200);
/// How stale a cached manifest's `pulled_at` may get (the size cap's order needs no more).
const PULL_REFRESH: Duration = Duration::from_secs(600);
/// Manifests whose last refresh this process remembers, before it forgets them all.
const PULL_MEMORY: usize = 10_000;

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The upstream is down, too slow, or rate-limits, and nothing cached answers.
    #[error("upstream {upstream} unavailable")]
    UpstreamUnavailable { upstream: String },
    /// The upstream refused the registry's credentials (or has none for it).
    #[error("upstream {upstream} denied access")]
    UpstreamDenied { upstream: String },
    /// The upstream sent something that is not what was asked for.
    #[error("upstream {upstream} sent an invalid answer: {reason}")]
    UpstreamInvalid { upstream: String, reason: String },
    /// A push into an upstream's cache.
    #[error("repository {name} is a read-only cache of upstream {upstream}")]
    ReadOnly {
        name: RepositoryName,
        upstream: String,
    },
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl CacheError {
    fn fill(upstream: &str, reason: String) -> Self {
        CacheError::UpstreamInvalid {
            upstream: upstream.to_owned(),
            reason,
        }
    }
}

/// Pulls through the cache.
#[derive(Debug, Clone)]
pub struct CacheService {
    metadata: Metadata,
    blobs: BlobService,
    manifests: ManifestService,
    upstreams: Arc<[Upstream]>,
    configs: Arc<[Arc<UpstreamConfig>]>,
    filler: Filler,
    manifest_limit: u64,
    /// When this process last refreshed a cached manifest's `pulled_at`.
    pulls: Arc<Mutex<HashMap<(String, Digest), Instant>>>,
}

/// A manifest, or a lookup that found none, while trying sources in turn.
type Found<T> = Result<Option<T>, CacheError>;

impl CacheService {
    pub fn new(
        metadata: Metadata,
        storage: Arc<dyn Storage>,
        upstreams: Vec<Upstream>,
        manifest_limit: u64,
        events: EventRecorder,
    ) -> Self {
        let configs = upstreams
            .iter()
            .map(|u| Arc::new(u.config().clone()))
            .collect();
        CacheService {
            blobs: BlobService::new(metadata.clone(), storage.clone(), events.clone()),
            manifests: ManifestService::new(metadata.clone(), events),
            filler: Filler {
                metadata: metadata.clone(),
                storage,
                holder: Arc::from(uuid::Uuid::new_v4().simple().to_string()),
            },
            metadata,
            upstreams: upstreams.into(),
            configs,
            manifest_limit,
            pulls: Arc::default(),
        }
    }

    /// The upstreams' settings, in file order (the size-cap job reads them).
    pub fn upstreams(&self) -> Vec<Arc<UpstreamConfig>> {
        self.configs.to_vec()
    }

    fn lookup(&self, name: &RepositoryName, ns: Option<&str>) -> Lookup {
        sources::lookup(&self.configs, name, ns)
    }

    /// Refuses a push into an upstream's prefix.
    pub fn refuse_writes(&self, name: &RepositoryName) -> Result<(), CacheError> {
        match sources::prefix_of(&self.configs, name) {
            Some((index, _)) => Err(CacheError::ReadOnly {
                name: name.clone(),
                upstream: self.configs[index].name.clone(),
            }),
            None => Ok(()),
        }
    }

    /// A manifest by tag or digest (`ns`: containerd's mirror parameter).
    pub async fn manifest(
        &self,
        name: &RepositoryName,
        reference: &Reference,
        ns: Option<&str>,
    ) -> Result<StoredManifest, CacheError> {
        let sources = match self.lookup(name, ns) {
            Lookup::Local => return Ok(self.manifests.get(name, reference).await?),
            Lookup::Prefix(source) => vec![source],
            Lookup::LocalThen(sources) => match self.manifests.get(name, reference).await {
                Ok(found) => return Ok(found),
                Err(ManifestError::Unknown { .. } | ManifestError::NameUnknown { .. }) => sources,
                Err(e) => return Err(e.into()),
            },
        };
        let mut failure = None;
        for source in &sources {
            match self.manifest_from(source, reference).await {
                Ok(Some(found)) => return Ok(found),
                Ok(None) => {}
                Err(e) => failure = Some(e),
            }
        }
        Err(failure.unwrap_or_else(|| {
            ManifestError::Unknown {
                reference: reference.clone(),
            }
            .into()
        }))
    }

    /// A manifest from one source: its cache, revalidated or filled from the upstream.
    async fn manifest_from(&self, source: &Source, reference: &Reference) -> Found<StoredManifest> {
        let upstream = &self.upstreams[source.upstream];
        let found = match reference {
            Reference::Digest(digest) => {
                match self
                    .metadata
                    .manifest_by_digest(&source.local, digest)
                    .await?
                {
                    Some(found) => Some(found),
                    None => self.fetch_manifest(source, reference, None).await?,
                }
            }
            Reference::Tag(tag) => {
                match self
                    .metadata
                    .manifest_by_tag_checked(&source.local, tag)
                    .await?
                {
                    None => self.fetch_manifest(source, reference, Some(tag)).await?,
                    Some(cached) => match cached.checked_at {
                        Some(at) if is_stale(at, upstream.config().tag_ttl) => {
                            Some(self.revalidate(source, tag, cached.manifest).await?)
                        }
                        _ => Some(cached.manifest),
                    },
                }
            }
        };
        if let Some(found) = &found {
            self.note_pull(&source.local, &found.digest);
        }
        Ok(found)
    }

    /// A tag past its TTL: one `HEAD`; a moved tag is fetched anew. Whatever goes wrong
    /// upstream, the cached manifest is served.
    async fn revalidate(
        &self,
        source: &Source,
        tag: &Tag,
        cached: StoredManifest,
    ) -> Result<StoredManifest, CacheError> {
        let upstream = &self.upstreams[source.upstream];
        match upstream.manifest_digest(&source.remote, tag).await {
            Ok(digest) if digest == cached.digest => {
                self.metadata
                    .tag_checked(&source.local, tag, &digest)
                    .await?;
                Ok(cached)
            }
            Ok(_) => {
                let reference = Reference::Tag(tag.clone());
                match self.fetch_manifest(source, &reference, Some(tag)).await {
                    Ok(Some(fresh)) => Ok(fresh),
                    Ok(None) => Ok(cached),
                    Err(e) => {
                        tracing::warn!(upstream = upstream.config().name, repository = %source.local, %tag, error = %ErrorChain(&e), "refreshing a moved tag failed; serving the cached manifest");
                        Ok(cached)
                    }
                }
            }
            Err(e) => {
                tracing::warn!(upstream = upstream.config().name, repository = %source.local, %tag, error = %ErrorChain(&e), "revalidating a tag failed; serving the cached manifest");
                Ok(cached)
            }
        }
    }

    /// Fetches a manifest and caches it (with its tag); `None` when the upstream has none.
    async fn fetch_manifest(
        &self,
        source: &Source,
        reference: &Reference,
        tag: Option<&Tag>,
    ) -> Found<StoredManifest> {
        let upstream = &self.upstreams[source.upstream];
        let name = upstream.config().name.as_str();
        let fetched = match upstream
            .manifest(&source.remote, reference, self.manifest_limit)
            .await
        {
            Ok(fetched) => fetched,
            Err(UpstreamError::NotFound) => return Ok(None),
            Err(e) => return Err(upstream_failure(name, e)),
        };
        let parsed =
            ParsedManifest::parse(Some(&fetched.media_type), &fetched.payload).map_err(|e| {
                CacheError::UpstreamInvalid {
                    upstream: name.to_owned(),
                    reason: e.to_string(),
                }
            })?;
        let media_type = parsed.kind.media_type();
        self.metadata
            .put_cached_manifest(
                &source.local,
                CachedManifest {
                    manifest: NewManifest {
                        digest: &fetched.digest,
                        media_type,
                        payload: &fetched.payload,
                        parsed: &parsed,
                    },
                    tag,
                    upstream: name,
                },
            )
            .await?;
        tracing::info!(upstream = name, repository = %source.local, %reference, digest = %fetched.digest, "cached a manifest");
        Ok(self
            .metadata
            .manifest_by_digest(&source.local, &fetched.digest)
            .await?)
    }

    /// The referrers of a subject. Through a cache, the upstream's referrers are fetched into
    /// it first (their manifests, not their blobs; from the referrers API, or the tag schema's
    /// `sha256-<hex>` index where the upstream has none), so the answer is the local one and
    /// stays whole with the upstream down; an upstream failure only leaves it as cached.
    pub async fn referrers(
        &self,
        name: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
        ns: Option<&str>,
    ) -> Result<serde_json::Value, CacheError> {
        let source = match self.lookup(name, ns) {
            Lookup::Local => None,
            Lookup::Prefix(source) => Some(source),
            Lookup::LocalThen(sources) => {
                if self
                    .metadata
                    .manifest_by_digest(name, subject)
                    .await?
                    .is_some()
                {
                    None
                } else {
                    sources.into_iter().next()
                }
            }
        };
        let Some(source) = source else {
            return Ok(self
                .manifests
                .referrers(name, subject, artifact_type)
                .await?);
        };
        self.fetch_referrers(&source, subject).await;
        Ok(self
            .manifests
            .referrers(&source.local, subject, artifact_type)
            .await?)
    }

    /// Brings the upstream's referrers of `subject` into the source's cache, as far as the
    /// upstream answers.
    async fn fetch_referrers(&self, source: &Source, subject: &Digest) {
        let upstream = &self.upstreams[source.upstream];
        let listed = match upstream.referrers(&source.remote, subject).await {
            Ok(digests) => digests,
            Err(UpstreamError::NotFound) => {
                let Ok(tag) = Tag::parse(&format!(
                    "{}-{}",
                    subject.algorithm().as_str(),
                    subject.hex()
                )) else {
                    return;
                };
                match self.manifest_from(source, &Reference::Tag(tag)).await {
                    Ok(Some(index)) => referrer_digests(&index.payload).unwrap_or_default(),
                    Ok(None) => return,
                    Err(e) => {
                        tracing::warn!(upstream = upstream.config().name, %subject, error = %ErrorChain(&e), "fetching the referrers tag failed; answering what is cached");
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(upstream = upstream.config().name, %subject, error = %ErrorChain(&e), "fetching referrers failed; answering what is cached");
                return;
            }
        };
        for digest in listed {
            let cached = self
                .metadata
                .manifest_by_digest(&source.local, &digest)
                .await;
            if matches!(cached, Ok(Some(_))) {
                continue;
            }
            if let Err(e) = self
                .fetch_manifest(source, &Reference::Digest(digest.clone()), None)
                .await
            {
                tracing::warn!(upstream = upstream.config().name, %digest, error = %ErrorChain(&e), "fetching a referrer failed");
            }
        }
    }

    /// Refreshes a cached manifest's `pulled_at` at most every [`PULL_REFRESH`] per process,
    /// off the request's path.
    fn note_pull(&self, local: &RepositoryName, digest: &Digest) {
        let key = (local.as_str().to_owned(), digest.clone());
        {
            let Ok(mut pulls) = self.pulls.lock() else {
                return;
            };
            if pulls
                .get(&key)
                .is_some_and(|at| at.elapsed() < PULL_REFRESH)
            {
                return;
            }
            if pulls.len() >= PULL_MEMORY {
                pulls.clear();
            }
            pulls.insert(key, Instant::now());
        }
        let metadata = self.metadata.clone();
        let (local, digest) = (local.clone(), digest.clone());
        tokio::spawn(async move {
            if let Err(e) = metadata.cached_manifest_pulled(&local, &digest).await {
                tracing::warn!(repository = %local, %digest, error = %ErrorChain(&e), "recording a cached pull");
            }
        });
    }

    /// The size of a blob (a `HEAD`): local, cached, or the upstream's answer (nothing is
    /// fetched).
    pub async fn blob_size(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        ns: Option<&str>,
    ) -> Result<u64, CacheError> {
        let sources = match self
            .sources_after_local(name, ns, self.blobs.size(name, digest))
            .await?
        {
            Ok(size) => return Ok(size),
            Err(sources) => sources,
        };
        let mut failure = None;
        for source in &sources {
            match self.blobs.size(&source.local, digest).await {
                Ok(size) => return Ok(size),
                Err(BlobError::Unknown { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            let upstream = &self.upstreams[source.upstream];
            match upstream.blob_size(&source.remote, digest).await {
                Ok(size) => return Ok(size),
                Err(UpstreamError::NotFound) => {}
                Err(e) => failure = Some(upstream_failure(&upstream.config().name, e)),
            }
        }
        Err(failure.unwrap_or_else(|| blob_unknown(digest)))
    }

    /// A blob (or a range of it): local, cached, or fetched from the upstream while the
    /// client reads it.
    pub async fn blob(
        &self,
        name: &RepositoryName,
        digest: &Digest,
        range: Option<RangeSpec>,
        ns: Option<&str>,
    ) -> Result<BlobAnswer, CacheError> {
        let local = self.blobs.get(name, digest, range);
        let sources = match self.sources_after_local(name, ns, local).await? {
            Ok(answer) => return Ok(answer),
            Err(sources) => sources,
        };
        let mut failure = None;
        for source in &sources {
            match self.blobs.get(&source.local, digest, range).await {
                Ok(answer) => return Ok(answer),
                Err(BlobError::Unknown { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            match self.fill_blob(source, digest, range).await {
                Ok(Some(answer)) => return Ok(answer),
                Ok(None) => {}
                Err(e) => failure = Some(e),
            }
        }
        Err(failure.unwrap_or_else(|| blob_unknown(digest)))
    }

    /// The local read first (unless the name is a prefix's): its answer, or the sources to
    /// try when it found nothing.
    async fn sources_after_local<T>(
        &self,
        name: &RepositoryName,
        ns: Option<&str>,
        local: impl Future<Output = Result<T, BlobError>>,
    ) -> Result<Result<T, Vec<Source>>, CacheError> {
        match self.lookup(name, ns) {
            Lookup::Local => Ok(Ok(local.await?)),
            Lookup::Prefix(source) => Ok(Err(vec![source])),
            Lookup::LocalThen(sources) => match local.await {
                Ok(found) => Ok(Ok(found)),
                Err(BlobError::Unknown { .. }) => Ok(Err(sources)),
                Err(e) => Err(e.into()),
            },
        }
    }

    /// Brings a blob into the source's cache: linked at once when the registry holds its
    /// bytes already, else fetched by this instance (holding the lease) or waited for.
    async fn fill_blob(
        &self,
        source: &Source,
        digest: &Digest,
        range: Option<RangeSpec>,
    ) -> Found<BlobAnswer> {
        let upstream = &self.upstreams[source.upstream];
        let name = upstream.config().name.clone();
        let started = Instant::now();
        loop {
            if self.metadata.held_blob_size(digest).await?.is_some() {
                // Filled meanwhile (by another client of this repository), or held elsewhere.
                match self.blobs.get(&source.local, digest, range).await {
                    Ok(answer) => return Ok(Some(answer)),
                    Err(BlobError::Unknown { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
                return self.link_held(source, digest, range).await;
            }
            if self
                .metadata
                .take_fetch_lease(digest, &self.filler.holder, fill::lease_ms())
                .await?
            {
                // A fill that ended between the check above and this lease (its holder
                // records the blob, then releases the lease) is not fetched again.
                if self.metadata.held_blob_size(digest).await?.is_some() {
                    self.metadata
                        .release_fetch_lease(digest, &self.filler.holder)
                        .await?;
                    continue;
                }
                let fetched = match upstream.blob(&source.remote, digest).await {
                    Ok(fetched) => fetched,
                    Err(e) => {
                        self.metadata
                            .release_fetch_lease(digest, &self.filler.holder)
                            .await?;
                        return match e {
                            UpstreamError::NotFound => Ok(None),
                            e => Err(upstream_failure(&name, e)),
                        };
                    }
                };
                let size = fetched.size;
                tracing::info!(upstream = name, repository = %source.local, %digest, size, "fetching a blob into the cache");
                let (body, fill) =
                    self.filler
                        .start(source.local.clone(), digest.clone(), fetched, name);
                if range.is_none() {
                    return Ok(Some(BlobAnswer::Bytes(BlobRead {
                        size,
                        range: None,
                        body,
                    })));
                }
                // A range of a blob not cached yet: served from storage once it is.
                drop(body);
                match fill.await {
                    Ok(outcome) => outcome?,
                    Err(e) => {
                        return Err(CacheError::UpstreamInvalid {
                            upstream: upstream.config().name.clone(),
                            reason: format!("the fill stopped: {e}"),
                        });
                    }
                }
                return Ok(Some(self.blobs.get(&source.local, digest, range).await?));
            }
            if started.elapsed() > FILL_WAIT {
                return Err(CacheError::UpstreamUnavailable { upstream: name });
            }
            tokio::time::sleep(FILL_POLL).await;
        }
    }

    /// Links bytes the registry already holds (cached or pushed in another repository) into
    /// the source's cache, once the upstream confirms that repository has them: knowing a
    /// digest never lets a client read another repository's blob.
    async fn link_held(
        &self,
        source: &Source,
        digest: &Digest,
        range: Option<RangeSpec>,
    ) -> Found<BlobAnswer> {
        let upstream = &self.upstreams[source.upstream];
        match upstream.blob_size(&source.remote, digest).await {
            Ok(_) => {}
            Err(UpstreamError::NotFound) => return Ok(None),
            Err(e) => return Err(upstream_failure(&upstream.config().name, e)),
        }
        let mut lock = self.metadata.lock_blob(digest).await?;
        let Some(size) = lock.held_size().await? else {
            return Ok(None);
        };
        if self
            .filler
            .storage
            .stat(&BlobKey(digest.clone()))
            .await?
            .is_none()
        {
            return Ok(None);
        }
        lock.record_cached(&source.local, size).await?;
        lock.commit().await?;
        Ok(Some(self.blobs.get(&source.local, digest, range).await?))
    }
}

fn is_stale(checked_at: i64, ttl: Duration) -> bool {
    let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    crate::metadata::cutoff(Duration::ZERO).saturating_sub(checked_at) >= ttl
}

fn blob_unknown(digest: &Digest) -> CacheError {
    BlobError::Unknown {
        digest: digest.clone(),
    }
    .into()
}

/// An upstream failure other than "not found", as the client will see it.
fn upstream_failure(upstream: &str, error: UpstreamError) -> CacheError {
    let upstream = upstream.to_owned();
    match error {
        UpstreamError::NotFound | UpstreamError::Unavailable { .. } => {
            tracing::warn!(upstream, error = %ErrorChain(&error), "upstream unavailable");
            CacheError::UpstreamUnavailable { upstream }
        }
        UpstreamError::Denied { status } => {
            tracing::warn!(upstream, status, "upstream denied access");
            CacheError::UpstreamDenied { upstream }
        }
        UpstreamError::Invalid { reason } => CacheError::UpstreamInvalid { upstream, reason },
    }
}

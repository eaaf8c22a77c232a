//! What every handler receives: the services, built once at start-up. Shared services live
//! here (the authorizer included), never in request extensions; what belongs to one request
//! (the validated repository name, the [`Caller`](crate::auth::Caller)) comes through extractors.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::Authorizer;
use crate::config::{CorsOrigins, LimitsConfig};
use crate::metadata::Metadata;
use crate::services::{
    BlobService, CacheService, EventRecorder, ManagementService, ManifestService, UploadService,
};
use crate::storage::Storage;
use crate::upstream::Upstream;

/// Shared, cheaply cloned application state.
#[derive(Debug, Clone)]
pub struct AppState {
    pub metadata: Metadata,
    /// The byte store (also used by the single binary's in-process jobs).
    pub storage: Arc<dyn Storage>,
    pub blobs: BlobService,
    pub uploads: UploadService,
    pub manifests: ManifestService,
    /// Pulls (manifest and blob `GET`/`HEAD`), through the pull-through cache when
    /// `UPSTREAMS_FILE` names upstreams.
    pub cache: CacheService,
    /// The management API's operations.
    pub management: ManagementService,
    /// Writes the events of changes (and pulls) into the outbox; off without destinations.
    pub events: EventRecorder,
    /// Who may do what: every request is checked against it (see `http::auth_layer`).
    pub auth: Authorizer,
    /// The dashboards whose browsers may call the management API (`API_CORS_ORIGINS`).
    pub cors_origins: CorsOrigins,
    pub limits: LimitsConfig,
    /// A request body that sends nothing for this long is aborted.
    pub body_idle_timeout: Duration,
}

impl AppState {
    #[expect(
        clippy::too_many_arguments,
        reason = "called once, at start-up, with parts each opened on its own"
    )]
    pub fn new(
        metadata: Metadata,
        storage: Arc<dyn Storage>,
        upstreams: Vec<Upstream>,
        auth: Authorizer,
        cors_origins: CorsOrigins,
        limits: LimitsConfig,
        body_idle_timeout: Duration,
        events: EventRecorder,
    ) -> Self {
        AppState {
            metadata: metadata.clone(),
            storage: storage.clone(),
            blobs: BlobService::new(metadata.clone(), storage.clone(), events.clone()),
            uploads: UploadService::new(metadata.clone(), storage.clone(), events.clone()),
            cache: CacheService::new(
                metadata.clone(),
                storage.clone(),
                upstreams,
                u64::try_from(limits.manifest_max_bytes).unwrap_or(u64::MAX),
                events.clone(),
            ),
            management: ManagementService::new(metadata.clone(), storage, events.clone()),
            manifests: ManifestService::new(metadata, events.clone()),
            events,
            auth,
            cors_origins,
            limits,
            body_idle_timeout,
        }
    }
}

//! Start-up shared by every binary: open the byte store and the metadata database the
//! configuration names, and build the application state.
//!
//! Backends other than the filesystem live in crates of their own (so that only the binaries
//! linking them compile them); a binary hands their openers in as [`StorageBackends`], and
//! each opener receives its backend's settings, already read.

use crate::services::EventRecorder;
use crate::services::events::EventSource;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::Authorizer;
use crate::config::{GcsConfig, S3Config, ServiceConfig, StorageBackend, StorageConfig};
use crate::metadata::{Metadata, MetadataError};
use crate::state::AppState;
use crate::storage::{FsStorage, Storage};
use crate::upstream::{Upstream, UpstreamError};

/// A boxed error from a plug-in (a storage backend in a crate of its own).
pub type PluginError = Box<dyn std::error::Error + Send + Sync>;
/// What a backend's opener returns.
pub type OpenedStorage<'a> =
    Pin<Box<dyn Future<Output = Result<Arc<dyn Storage>, PluginError>> + Send + 'a>>;
/// Opens a bucket from its settings (`registry_gcs::open_storage`).
pub type GcsOpener = for<'a> fn(&'a GcsConfig) -> OpenedStorage<'a>;
/// Opens an S3-compatible bucket from its settings (`registry_s3::open_storage`).
pub type S3Opener = for<'a> fn(&'a S3Config) -> OpenedStorage<'a>;

/// The byte stores a binary can open besides the filesystem: one opener per backend crate it
/// links. One that is missing makes its `STORAGE_BACKEND` a start-up error.
#[derive(Debug, Clone, Copy, Default)]
pub struct StorageBackends {
    gcs: Option<GcsOpener>,
    s3: Option<S3Opener>,
}

impl StorageBackends {
    /// With Google Cloud Storage (`STORAGE_BACKEND=gcs`).
    pub fn with_gcs(mut self, open: GcsOpener) -> Self {
        self.gcs = Some(open);
        self
    }

    /// With S3-compatible storage (`STORAGE_BACKEND=s3`).
    pub fn with_s3(mut self, open: S3Opener) -> Self {
        self.s3 = Some(open);
        self
    }
}

/// Why the registry could not start.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("creating DATA_DIR {path}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("STORAGE_BACKEND={0}: this binary is built without that backend")]
    BackendMissing(&'static str),
    #[error("opening the byte store (STORAGE_BACKEND={backend})")]
    Storage {
        backend: &'static str,
        #[source]
        source: PluginError,
    },
    #[error("upstream {name} (UPSTREAMS_FILE)")]
    Upstream {
        name: String,
        #[source]
        source: UpstreamError,
    },
    #[error("opening the metadata database")]
    Metadata(#[from] MetadataError),
}

/// The byte store `config` names, opened with the backend's opener.
pub async fn open_storage(
    config: &StorageConfig,
    backends: &StorageBackends,
) -> Result<Arc<dyn Storage>, BootstrapError> {
    let backend = config.backend.name();
    match &config.backend {
        StorageBackend::Filesystem => {
            // distribution's root directory given as DATA_DIR (REGISTRY_STORAGE_FILESYSTEM_
            // ROOTDIRECTORY): its images are not served from its layout, say how to bring them.
            if config
                .data_dir
                .join("docker/registry/v2/repositories")
                .is_dir()
            {
                tracing::warn!(
                    data_dir = %config.data_dir.display(),
                    "this directory holds distribution's storage layout, which is not served as \
                     it is: copy its images in with `jobs import --from-layout <this directory>`"
                );
            }
            Ok(Arc::new(FsStorage::new(&config.data_dir)))
        }
        StorageBackend::Gcs(gcs) => {
            let open = backends
                .gcs
                .ok_or(BootstrapError::BackendMissing(backend))?;
            open(gcs)
                .await
                .map_err(|source| BootstrapError::Storage { backend, source })
        }
        StorageBackend::S3(s3) => {
            let open = backends.s3.ok_or(BootstrapError::BackendMissing(backend))?;
            open(s3)
                .await
                .map_err(|source| BootstrapError::Storage { backend, source })
        }
    }
}

/// Opens storage and metadata and builds the state every service shares, with the
/// filesystem as the only byte store it can open. The caller builds the authorizer first, so
/// that unusable auth settings stop a binary before anything is opened.
pub async fn open_state(
    config: &ServiceConfig,
    auth: Authorizer,
) -> Result<AppState, BootstrapError> {
    open_state_with(config, &StorageBackends::default(), auth).await
}

/// Like [`open_state`], with the binary's storage backends. `DATA_DIR` is created whatever
/// the backend: the default SQLite file lives there.
pub async fn open_state_with(
    config: &ServiceConfig,
    backends: &StorageBackends,
    auth: Authorizer,
) -> Result<AppState, BootstrapError> {
    let upstreams = config
        .upstreams
        .upstreams
        .iter()
        .map(|upstream| {
            Upstream::new(upstream.clone()).map_err(|source| BootstrapError::Upstream {
                name: upstream.name.clone(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let storage = open_storage(&config.storage, backends).await?;
    let data_dir = &config.storage.data_dir;
    std::fs::create_dir_all(data_dir).map_err(|source| BootstrapError::DataDir {
        path: data_dir.display().to_string(),
        source,
    })?;
    let metadata = Metadata::connect(&config.database_url(), &config.db).await?;
    Ok(AppState::new(
        metadata,
        storage,
        upstreams,
        auth,
        config.api.api_cors_origins.clone(),
        config.limits.clone(),
        Duration::from_secs(config.server.body_idle_timeout_secs),
        event_recorder(config),
    ))
}

/// Records events when a destination is configured; otherwise records nothing.
fn event_recorder(config: &ServiceConfig) -> EventRecorder {
    if !config.events.enabled() {
        return EventRecorder::off();
    }
    let source = EventSource {
        addr: config.events.source_addr.clone(),
        instance_id: config.events.source_instance.clone(),
    };
    EventRecorder::new(source, config.events.pulls)
}

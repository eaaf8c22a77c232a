//! Start-up shared by every binary: open the metadata database and the storage named by the
//! configuration, and build the application state.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::Authorizer;
use crate::config::Config;
use crate::metadata::{Metadata, MetadataError};
use crate::state::AppState;
use crate::storage::{FsStorage, Storage};

/// Why the registry could not start.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("creating DATA_DIR {path}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("opening the metadata database")]
    Metadata(#[from] MetadataError),
}

/// Opens metadata and storage and builds the state every service shares. The caller builds the
/// authorizer first, so that unusable auth settings stop a binary before anything is opened.
pub async fn open_state(config: &Config, auth: Authorizer) -> Result<AppState, BootstrapError> {
    let storage = Arc::new(FsStorage::new(&config.storage.data_dir));
    open_state_with(config, storage, auth).await
}

/// Like [`open_state`], with a byte store chosen by the caller (e.g. GCS, which lives in a
/// crate of its own so that only the binaries linking it compile it). `DATA_DIR` is still
/// created: the default SQLite file lives there.
pub async fn open_state_with(
    config: &Config,
    storage: Arc<dyn Storage>,
    auth: Authorizer,
) -> Result<AppState, BootstrapError> {
    let data_dir = &config.storage.data_dir;
    std::fs::create_dir_all(data_dir).map_err(|source| BootstrapError::DataDir {
        path: data_dir.display().to_string(),
        source,
    })?;
    let metadata = Metadata::connect(&config.database_url(), &config.db).await?;
    Ok(AppState::new(
        metadata,
        storage,
        auth,
        config.api.api_cors_origins.clone(),
        config.limits.clone(),
        Duration::from_secs(config.server.body_idle_timeout_secs),
    ))
}

//! The whole registry in one process: the blob, manifest and upload services on one port,
//! on the embedded default (filesystem + SQLite under `DATA_DIR`) unless configured otherwise.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use registry_common::config::Config;
use registry_common::http::{registry_app, serve, shutdown_signal};
use registry_common::metadata::Metadata;
use registry_common::state::AppState;
use registry_common::storage::FsStorage;
use registry_common::telemetry;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("registry: {e}");
            std::process::exit(2);
        }
    };
    telemetry::init(&config.log);

    let data_dir = &config.storage.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating DATA_DIR {}", data_dir.display()))?;
    let metadata = Metadata::connect(&config.database_url(), config.db.db_max_connections)
        .await
        .context("opening the metadata database")?;
    let storage = Arc::new(FsStorage::new(data_dir));
    let state = AppState::new(
        metadata.clone(),
        storage,
        config.limits.clone(),
        Duration::from_secs(config.server.body_idle_timeout_secs),
    );
    let routes = Router::new()
        .merge(registry_blob::router())
        .merge(registry_manifest::router())
        .merge(registry_upload::router())
        .with_state(state);

    let addr = SocketAddr::new(config.server.host, config.server.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!(address = %addr, data_dir = %data_dir.display(), "registry listening");
    serve(
        listener,
        registry_app(routes),
        &config.server,
        shutdown_signal(),
    )
    .await?;
    metadata.close().await;
    Ok(())
}

//! The whole registry in one process: the blob, manifest and upload services on one port,
//! on the embedded default (filesystem + SQLite under `DATA_DIR`) unless configured otherwise.

use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use registry_common::bootstrap::open_state;
use registry_common::config::Config;
use registry_common::http::{registry_app, serve, shutdown_signal};
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

    let state = open_state(&config).await.context("starting the registry")?;
    let metadata = state.metadata.clone();
    let routes = Router::new()
        .merge(registry_blob::router())
        .merge(registry_manifest::router())
        .merge(registry_upload::router())
        .with_state(state);

    let addr = SocketAddr::new(config.server.host, config.server.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!(address = %addr, data_dir = %config.storage.data_dir.display(), "registry listening");
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

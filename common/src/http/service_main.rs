//! The `main` of every binary, so that each `main.rs` is one call: read the configuration,
//! start logging, load the authentication settings (the `Authorizer` every request is checked
//! by), open metadata and storage, serve the routes on `HOST:PORT` (HTTP/1.1 and h2c)
//! until SIGTERM or Ctrl-C, let in-flight requests finish, close the database, exit 0.
//!
//! Exit codes: 0 after a graceful shutdown, 2 for a configuration error (the message names the
//! variable), 1 for anything else that stops the start (database, storage, port in use).

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::Router;
use tokio::net::TcpListener;

use super::{registry_app, serve, shutdown_signal};
use crate::auth::{AuthSetupError, Authorizer};
use crate::bootstrap::{BootstrapError, open_state};
use crate::config::{Config, ServerConfig};
use crate::state::AppState;
use crate::telemetry;

/// Which binary is starting: its name (in logs) and its port when `PORT` is unset.
#[derive(Debug, Clone, Copy)]
pub struct Service {
    pub name: &'static str,
    pub default_port: u16,
}

impl Service {
    /// A Cloud Run service binary: `PORT` defaults to 8080, Cloud Run's own default.
    pub const fn cloud_run(name: &'static str) -> Service {
        Service {
            name,
            default_port: ServerConfig::SERVICE_PORT,
        }
    }

    /// The single `registry` binary: `PORT` defaults to 5000, the registry convention.
    pub const fn registry() -> Service {
        Service {
            name: "registry",
            default_port: ServerConfig::REGISTRY_PORT,
        }
    }
}

/// Why a service stopped before serving or while serving.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("starting the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    #[error("authentication settings")]
    Auth(#[from] AuthSetupError),
    #[error("binding {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving")]
    Serve(#[source] std::io::Error),
}

/// Runs `service` with `routes` (not yet given their state) and returns the exit code.
pub fn run(service: Service, routes: Router<AppState>) -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{}: {e}", service.name);
            return ExitCode::from(2);
        }
    };
    telemetry::init(&config.log);
    let served = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServiceError::Runtime)
        .and_then(|runtime| runtime.block_on(serve_service(service, &config, routes)));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let chain = error_chain(&e);
            tracing::error!(service = service.name, error = %chain, "stopped");
            eprintln!("{}: {chain}", service.name);
            ExitCode::FAILURE
        }
    }
}

/// Opens the state, binds, serves until a shutdown signal, then closes the database.
pub async fn serve_service(
    service: Service,
    config: &Config,
    routes: Router<AppState>,
) -> Result<(), ServiceError> {
    let auth = Authorizer::from_config(&config.auth)?;
    let state = open_state(config).await?;
    let metadata = state.metadata.clone();
    let addr = SocketAddr::new(
        config.server.host,
        config.server.port_or(service.default_port),
    );
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServiceError::Bind { addr, source })?;
    tracing::info!(
        service = service.name,
        address = %addr,
        data_dir = %config.storage.data_dir.display(),
        "listening"
    );
    let app = registry_app(routes.with_state(state)).layer(axum::Extension(auth));
    serve(listener, app, &config.server, shutdown_signal())
        .await
        .map_err(ServiceError::Serve)?;
    metadata.close().await;
    tracing::info!(service = service.name, "stopped");
    Ok(())
}

/// `error: cause: cause…`, the whole `source` chain on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

//! The `main` of every binary, so that each `main.rs` is one call: read the configuration,
//! start logging, load the authentication settings (the `Authorizer` every request is checked
//! by), open metadata and storage, serve the routes on `HOST:PORT` (HTTP/1.1 and h2c)
//! until SIGTERM or Ctrl-C, let in-flight requests finish, close the database, exit 0.
//!
//! Exit codes: 0 after a graceful shutdown, 2 for a configuration error (the message names the
//! variable), 1 for anything else that stops the start (database, storage, port in use).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

use super::{registry_app, serve, shutdown_signal};
use crate::auth::{AuthSetupError, Authorizer};
use crate::bootstrap::{BootstrapError, open_state_with};
use crate::config::{Config, ServerConfig};
use crate::state::AppState;
use crate::storage::{FsStorage, Storage};
use crate::telemetry;

/// A boxed error from a plug-in (a storage backend in a crate of its own).
pub type PluginError = Box<dyn std::error::Error + Send + Sync>;
/// What [`StorageOpener`] returns.
pub type OpenedStorage<'a> =
    Pin<Box<dyn Future<Output = Result<Arc<dyn Storage>, PluginError>> + Send + 'a>>;
/// Opens the byte store the configuration names. `common` links only the filesystem backend;
/// binaries pass the opener of the crate that knows the others (`registry_gcs::open_storage`).
pub type StorageOpener = for<'a> fn(&'a Config) -> OpenedStorage<'a>;

/// Background work started with the state (see [`Plugins::on_start`]).
pub type StartHook = fn(&AppState) -> Result<(), PluginError>;

/// What a binary plugs into the common start-up.
#[derive(Debug, Clone, Copy)]
pub struct Plugins {
    pub open_storage: StorageOpener,
    /// Called once the state is open, before serving: background work such as the single
    /// binary's job timer (spawn it; do not block). An error stops the start.
    pub on_start: Option<StartHook>,
}

impl Default for Plugins {
    fn default() -> Self {
        Plugins {
            open_storage: |config| {
                let storage: Arc<dyn Storage> = Arc::new(FsStorage::new(&config.storage.data_dir));
                Box::pin(std::future::ready(Ok(storage)))
            },
            on_start: None,
        }
    }
}

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
    #[error("opening the byte store")]
    Storage(#[source] PluginError),
    #[error("starting background work")]
    Plugin(#[source] PluginError),
    #[error("binding {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving")]
    Serve(#[source] std::io::Error),
}

/// Runs `service` with `routes` (not yet given their state) on the filesystem byte store, and
/// returns the exit code: 0 after a clean shutdown, 2 when a setting (an environment variable
/// or a file it names) cannot be used, 1 on any other failure.
pub fn run(service: Service, routes: Router<AppState>) -> ExitCode {
    run_with(service, routes, Plugins::default())
}

/// Like [`run`], with the binary's plug-ins.
pub fn run_with(service: Service, routes: Router<AppState>, plugins: Plugins) -> ExitCode {
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
        .and_then(|runtime| runtime.block_on(serve_service(service, &config, routes, plugins)));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let chain = error_chain(&e);
            tracing::error!(service = service.name, error = %chain, "stopped");
            eprintln!("{}: {chain}", service.name);
            exit_code(&e)
        }
    }
}

/// 2 for settings it cannot use (as for unparsable environment variables), 1 for the rest.
fn exit_code(error: &ServiceError) -> ExitCode {
    match error {
        // A byte store that cannot be opened is a setting (bucket, endpoint, credentials).
        ServiceError::Auth(_) | ServiceError::Storage(_) => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    }
}

/// Opens the state, binds, serves until a shutdown signal, then closes the database.
pub async fn serve_service(
    service: Service,
    config: &Config,
    routes: Router<AppState>,
    plugins: Plugins,
) -> Result<(), ServiceError> {
    let auth = Authorizer::from_config(&config.auth)?;
    let storage = (plugins.open_storage)(config)
        .await
        .map_err(ServiceError::Storage)?;
    let state = open_state_with(config, storage).await?;
    if let Some(on_start) = plugins.on_start {
        on_start(&state).map_err(ServiceError::Plugin)?;
    }
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
    // The management API's CORS layer finds the allowed origins in each request.
    let app = registry_app(routes.with_state(state))
        .layer(axum::Extension(auth))
        .layer(axum::Extension(config.api.api_cors_origins.clone()));
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

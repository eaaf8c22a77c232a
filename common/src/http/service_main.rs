//! The `main` of every server binary, so that each `main.rs` is a few lines: it reads its
//! configuration from the environment (once, e.g. [`ServiceConfig::from_env`]) and hands it
//! to [`run`], which starts logging, load the authentication settings (the `Authorizer` every request is checked
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
use crate::bootstrap::{BootstrapError, open_state_with};
pub use crate::bootstrap::{OpenedStorage, PluginError, StorageBackends};
use crate::config::{ConfigError, ServerConfig, ServiceConfig};
use crate::events::delivery::Destinations;
use crate::services::events::{Deliverer, DeliveryPolicy};
use crate::state::AppState;
use crate::telemetry;

/// Background work started with the state (see [`Plugins::on_start`]), given what it needs
/// of the configuration when the binary builds it.
pub type StartHook = Box<dyn FnOnce(&AppState) -> Result<(), PluginError> + Send>;

/// What a binary plugs into the common start-up.
#[derive(Default)]
pub struct Plugins {
    /// The byte stores besides the filesystem this binary links.
    pub storage: StorageBackends,
    /// Called once the state is open, before serving: background work such as the single
    /// binary's job timer (spawn it; do not block). An error stops the start.
    pub on_start: Option<StartHook>,
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugins")
            .field("storage", &self.storage)
            .field("on_start", &self.on_start.is_some())
            .finish()
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

/// Runs `service` on its configuration (read by the binary, once: see [`ServiceConfig`]) with
/// `routes` (not yet given their state), and returns the exit code: 0 after a clean shutdown,
/// 2 when a setting (an environment variable or a file it names) cannot be used, 1 on any
/// other failure.
pub fn run(
    service: Service,
    config: Result<ServiceConfig, ConfigError>,
    routes: Router<AppState>,
    plugins: Plugins,
) -> ExitCode {
    let config = match config {
        Ok(config) => config,
        Err(e) => return config_error(service, &e),
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
            let chain = crate::error::ErrorChain(&e).to_string();
            tracing::error!(service = service.name, error = %chain, "stopped");
            eprintln!("{}: {chain}", service.name);
            exit_code(&e)
        }
    }
}

/// Reports a configuration error (before logging is set up, so on stderr) and returns exit
/// status 2.
pub fn config_error(service: Service, error: &ConfigError) -> ExitCode {
    eprintln!("{}: {error}", service.name);
    ExitCode::from(2)
}

/// 2 for settings it cannot use (as for unparsable environment variables), 1 for the rest.
fn exit_code(error: &ServiceError) -> ExitCode {
    match error {
        // A byte store that cannot be opened is a setting (bucket, endpoint, credentials).
        ServiceError::Auth(_)
        | ServiceError::Bootstrap(
            BootstrapError::Storage { .. } | BootstrapError::BackendMissing(_),
        ) => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    }
}

/// Opens the state, binds, serves until a shutdown signal, then closes the database.
pub async fn serve_service(
    service: Service,
    config: &ServiceConfig,
    routes: Router<AppState>,
    plugins: Plugins,
) -> Result<(), ServiceError> {
    let auth = Authorizer::from_config(&config.auth)?;
    let state = open_state_with(config, &plugins.storage, auth).await?;
    if let Some(on_start) = plugins.on_start {
        on_start(&state).map_err(ServiceError::Plugin)?;
    }
    start_event_delivery(&state, config);
    let metadata = state.metadata.clone();
    let events = state.events.clone();
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
    let app = registry_app(routes, state);
    serve(listener, app, &config.server, shutdown_signal())
        .await
        .map_err(ServiceError::Serve)?;
    events.flush_pulls(&metadata).await;
    metadata.close().await;
    tracing::info!(service = service.name, "stopped");
    Ok(())
}

/// How often this process's deliverer looks for retries that came due (a change it commits
/// wakes it at once).
const DELIVERY_TICK: std::time::Duration = std::time::Duration::from_secs(5);

/// When events are on: this process's deliverer (right after each commit here, and for due
/// retries), and the writer of batched pull events.
fn start_event_delivery(state: &AppState, config: &ServiceConfig) {
    let Some(wake) = state.events.wake_handle() else {
        return;
    };
    let deliverer = Deliverer::new(
        state.metadata.clone(),
        Destinations::new(&config.events),
        DeliveryPolicy::of(&config.events),
    );
    tokio::spawn(deliverer.run(wake, DELIVERY_TICK));
    tokio::spawn(state.events.clone().write_pulls(state.metadata.clone()));
}

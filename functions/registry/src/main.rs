//! The whole registry in one process: the blob, manifest, upload and api services on one port,
//! and the scheduled jobs on an in-process timer (`JOBS_INTERVAL_SECS`); on the embedded default
//! (filesystem + SQLite under `DATA_DIR`) unless configured otherwise (`DATABASE_URL`,
//! `STORAGE_BACKEND`).

use axum::Router;
use registry_common::config::RegistryConfig;
use registry_common::http::Service;
use registry_common::http::service_main::{self, Plugins, StorageBackends};

fn main() -> std::process::ExitCode {
    let service = Service::registry();
    let config = match RegistryConfig::from_env() {
        Ok(config) => config,
        Err(e) => return service_main::config_error(service, &e),
    };
    let routes = Router::new()
        .merge(registry_blob::router())
        .merge(registry_manifest::router())
        .merge(registry_upload::router())
        .merge(registry_api::service_routes(&config.service));
    let plugins = Plugins {
        storage: StorageBackends::default()
            .with_gcs(registry_gcs::open_storage)
            .with_s3(registry_s3::open_storage),
        on_start: Some(registry_jobs::timer::hook(
            config.jobs,
            config.service.events.clone(),
        )),
    };
    service_main::run(service, Ok(config.service), routes, plugins)
}

//! The whole registry in one process: the blob, manifest, upload and api services on one port,
//! and the scheduled jobs on an in-process timer (`JOBS_INTERVAL_SECS`); on the embedded default
//! (filesystem + SQLite under `DATA_DIR`) unless configured otherwise (`DATABASE_URL`,
//! `STORAGE_BACKEND`).

use axum::Router;
use registry_common::http::{Service, service_main};

fn main() -> std::process::ExitCode {
    let routes = Router::new()
        .merge(registry_blob::router())
        .merge(registry_manifest::router())
        .merge(registry_upload::router())
        .merge(registry_api::router());
    let plugins = service_main::Plugins {
        open_storage: registry_gcs::open_storage,
        on_start: Some(registry_jobs::timer::start),
    };
    service_main::run_with(Service::registry(), routes, plugins)
}

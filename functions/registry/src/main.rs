//! The whole registry in one process: the blob, manifest, upload and api services on one port,
//! on the embedded default (filesystem + SQLite under `DATA_DIR`) unless configured otherwise.

use axum::Router;
use registry_common::http::{Service, service_main};

fn main() -> std::process::ExitCode {
    let routes = Router::new()
        .merge(registry_blob::router())
        .merge(registry_manifest::router())
        .merge(registry_upload::router())
        .merge(registry_api::router());
    service_main::run(Service::registry(), routes)
}

//! The `api` Cloud Run service: the management JSON API under `/api/`.

use registry_common::config::ServiceConfig;
use registry_common::http::Service;
use registry_common::http::service_main::{self, Plugins, StorageBackends};

fn main() -> std::process::ExitCode {
    let service = Service::cloud_run("api");
    let config = match ServiceConfig::from_env() {
        Ok(config) => config,
        Err(e) => return service_main::config_error(service, &e),
    };
    let routes = registry_api::service_routes(&config);
    service_main::run(
        service,
        Ok(config),
        routes,
        Plugins {
            storage: StorageBackends::default()
                .with_gcs(registry_gcs::open_storage)
                .with_s3(registry_s3::open_storage),
            on_start: None,
        },
    )
}

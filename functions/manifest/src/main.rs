//! The `manifest` Cloud Run service, the URL map's default: every route of the distribution API.

use registry_common::config::ServiceConfig;
use registry_common::http::Service;
use registry_common::http::service_main::{self, Plugins, StorageBackends};

fn main() -> std::process::ExitCode {
    service_main::run(
        Service::cloud_run("manifest"),
        ServiceConfig::from_env(),
        registry_manifest::service_routes(),
        Plugins {
            storage: StorageBackends::default()
                .with_gcs(registry_gcs::open_storage)
                .with_s3(registry_s3::open_storage),
            on_start: None,
        },
    )
}

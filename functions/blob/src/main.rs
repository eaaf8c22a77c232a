//! The `blob` Cloud Run service: `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`.

use registry_common::config::ServiceConfig;
use registry_common::http::Service;
use registry_common::http::service_main::{self, Plugins, StorageBackends};

fn main() -> std::process::ExitCode {
    service_main::run(
        Service::cloud_run("blob"),
        ServiceConfig::from_env(),
        registry_blob::service_routes(),
        Plugins {
            storage: StorageBackends::default()
                .with_gcs(registry_gcs::open_storage)
                .with_s3(registry_s3::open_storage),
            on_start: None,
        },
    )
}

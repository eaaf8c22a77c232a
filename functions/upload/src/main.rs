//! The `upload` Cloud Run service: blob upload sessions and cross-repository mounts.

fn main() -> std::process::ExitCode {
    registry_common::http::service_main::run_with(
        registry_common::http::Service::cloud_run("upload"),
        registry_upload::service_routes(),
        registry_common::http::service_main::Plugins {
            open_storage: registry_gcs::open_storage,
            on_start: None,
        },
    )
}

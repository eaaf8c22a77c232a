//! The `manifest` Cloud Run service, the URL map's default: every route of the distribution API.

fn main() -> std::process::ExitCode {
    registry_common::http::service_main::run_with(
        registry_common::http::Service::cloud_run("manifest"),
        registry_manifest::service_routes(),
        registry_common::http::service_main::Plugins {
            open_storage: registry_gcs::open_storage,
            on_start: None,
        },
    )
}

//! The `api` Cloud Run service: the management JSON API under `/api/`.

fn main() -> std::process::ExitCode {
    registry_common::http::service_main::run_with(
        registry_common::http::Service::cloud_run("api"),
        registry_api::service_routes(),
        registry_common::http::service_main::Plugins {
            open_storage: registry_gcs::open_storage,
            on_start: None,
        },
    )
}

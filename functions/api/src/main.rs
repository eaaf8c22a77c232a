//! The `api` Cloud Run service: the management JSON API under `/api/`.

fn main() -> std::process::ExitCode {
    registry_common::http::service_main::run(
        registry_common::http::Service::cloud_run("api"),
        registry_api::service_routes(),
    )
}

//! The `manifest` Cloud Run service, the URL map's default: every route of the distribution API.

fn main() -> std::process::ExitCode {
    registry_common::http::service_main::run(
        registry_common::http::Service::cloud_run("manifest"),
        registry_manifest::service_routes(),
    )
}

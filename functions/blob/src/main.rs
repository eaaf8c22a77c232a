//! The `blob` Cloud Run service: `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`.

fn main() -> std::process::ExitCode {
    registry_common::http::service_main::run_with(
        registry_common::http::Service::cloud_run("blob"),
        registry_blob::service_routes(),
        registry_common::http::service_main::Plugins {
            open_storage: registry_gcs::open_storage,
            on_start: None,
        },
    )
}

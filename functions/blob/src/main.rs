//! The `blob` Cloud Run service: `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`.

fn main() -> std::process::ExitCode {
    registry_common::http::service_main::run(
        registry_common::http::Service::cloud_run("blob"),
        registry_blob::service_routes(),
    )
}

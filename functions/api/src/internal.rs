//! `POST /internal/<job>`: the scheduled jobs as HTTP endpoints, for schedulers that call a
//! URL (Cloud Scheduler's HTTP targets, cron with curl) rather than start a Cloud Run Job.
//! The paths and answers are those of the Deploys.app registry, so its schedules work
//! unchanged: `indexManifests`, `runBlobGC`, `calculateProjectStorage` and `runAll` (this
//! registry's `run-all`, every job in order, stopping at the first that fails).
//!
//! Served only when `INTERNAL_SECRET` is set; each request must carry
//! `Authorization: Bearer <INTERNAL_SECRET>` (compared in constant time: both sides are
//! hashed, and the hashes compared without an early exit), otherwise `401`. The job runs in a
//! task of its own: a scheduler that gives up does not stop it half-way. `204` when it
//! succeeded; `500` with `{"error": "…", "reports": […]}` when it or any item failed.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http::header::{ALLOW, AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, Method, StatusCode};
use registry_common::config::{EventsConfig, InternalConfig, JobsConfig, Secret};
use registry_common::state::AppState;
use registry_jobs::{Job, JobContext, JobReport};
use sha2::{Digest, Sha256};

/// What the endpoints need: the secret, and the settings jobs run with.
#[derive(Debug)]
struct Internal {
    secret: Secret<String>,
    jobs: JobsConfig,
    events: EventsConfig,
}

/// The routes, or none when `INTERNAL_SECRET` is unset.
pub fn router(config: &InternalConfig, events: &EventsConfig) -> Router<AppState> {
    let (Some(secret), Some(jobs)) = (config.secret.clone(), config.jobs.clone()) else {
        return Router::new();
    };
    let internal = Arc::new(Internal {
        secret,
        jobs,
        events: events.clone(),
    });
    let mut router = Router::new();
    for (path, job) in [
        ("/internal/indexManifests", Job::IndexManifests),
        ("/internal/runBlobGC", Job::BlobGc),
        ("/internal/calculateProjectStorage", Job::ProjectStorage),
        ("/internal/runAll", Job::RunAll),
    ] {
        let internal = internal.clone();
        router = router.route(
            path,
            any(move |State(state): State<AppState>, request: Request| {
                let internal = internal.clone();
                async move { answer(&internal, job, state, request).await }
            }),
        );
    }
    router
}

async fn answer(internal: &Arc<Internal>, job: Job, state: AppState, request: Request) -> Response {
    if request.method() != Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, [(ALLOW, "POST")]).into_response();
    }
    if !authorized(request.headers(), &internal.secret) {
        return (
            StatusCode::UNAUTHORIZED,
            [(WWW_AUTHENTICATE, "Bearer")],
            axum::Json(
                serde_json::json!({ "error": "a valid Bearer INTERNAL_SECRET is required" }),
            ),
        )
            .into_response();
    }
    let ctx = JobContext::of_state(&state, internal.jobs.clone(), &internal.events);
    tracing::info!(job = job.name(), "job started by /internal/");
    let task = tokio::spawn(async move { registry_jobs::run(job, &ctx).await });
    match task.await {
        Ok(Ok(_)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(error)) => {
            let message = registry_common::error::ErrorChain(&error).to_string();
            tracing::error!(job = job.name(), error = %message, "job started by /internal/ failed");
            let reports: Vec<serde_json::Value> = error.reports().iter().map(report_json).collect();
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(serde_json::json!({ "error": message, "reports": reports })),
            )
                .into_response()
        }
        Err(panicked) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(serde_json::json!({ "error": format!("the job stopped: {panicked}") })),
        )
            .into_response(),
    }
}

fn report_json(report: &JobReport) -> serde_json::Value {
    serde_json::json!({
        "job": report.job,
        "examined": report.examined,
        "changed": report.changed,
        "bytes": report.bytes,
        "failures": report.failures,
        "duration_ms": u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
    })
}

/// Whether the headers carry `Bearer <secret>`, compared without a data-dependent early exit.
fn authorized(headers: &HeaderMap, secret: &Secret<String>) -> bool {
    let Some(token) = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
    else {
        return false;
    };
    let given = Sha256::digest(token.trim().as_bytes());
    let expected = Sha256::digest(secret.expose().as_bytes());
    given
        .iter()
        .zip(expected.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value.parse().unwrap());
        headers
    }

    #[test]
    fn only_the_exact_bearer_secret_passes() {
        let secret = Secret::new("0123456789abcdef-secret".to_owned());
        assert!(authorized(
            &headers("Bearer 0123456789abcdef-secret"),
            &secret
        ));
        assert!(!authorized(
            &headers("Bearer 0123456789abcdef-secreT"),
            &secret
        ));
        assert!(!authorized(&headers("Bearer 0123456789abcdef"), &secret));
        assert!(!authorized(
            &headers("Basic 0123456789abcdef-secret"),
            &secret
        ));
        assert!(!authorized(&HeaderMap::new(), &secret));
    }
}

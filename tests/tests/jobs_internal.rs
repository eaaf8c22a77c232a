//! `INTERNAL_SECRET`: the scheduled jobs as `POST /internal/<job>` on the single binary and
//! on the `api` service, as the Deploys.app registry's schedulers call them.

use registry_tests::Registry;
use registry_tests::services::ServiceProcess;

const SECRET: &str = "internal-secret-for-the-tests-0123";

const ENDPOINTS: [&str; 4] = [
    "/internal/indexManifests",
    "/internal/runBlobGC",
    "/internal/calculateProjectStorage",
    "/internal/runAll",
];

#[tokio::test]
async fn the_job_endpoints_run_the_jobs_for_the_bearer_secret_only() {
    let reg = Registry::start_with(&[
        ("INTERNAL_SECRET", SECRET),
        ("JOBS_INTERVAL_SECS", "0"),
        ("GC_GRACE_SECS", "0"),
    ])
    .await;
    let image = reg.push_image("internal/app", "v1", &[4096, 512]).await;
    let loose = reg
        .push_blob("internal/app", b"pushed, never referenced")
        .await;
    let client = reqwest::Client::new();

    for path in ENDPOINTS {
        let none = client.post(reg.url(path)).send().await.expect("POST");
        assert_eq!(none.status(), 401, "{path} without a token");
        assert_eq!(none.headers()["www-authenticate"], "Bearer");
        let wrong = client
            .post(reg.url(path))
            .bearer_auth(format!("{SECRET}x"))
            .send()
            .await
            .expect("POST");
        assert_eq!(wrong.status(), 401, "{path} with a wrong token");
        let get = client
            .get(reg.url(path))
            .bearer_auth(SECRET)
            .send()
            .await
            .expect("GET");
        assert_eq!(get.status(), 405, "GET {path}");
        assert_eq!(get.headers()["allow"], "POST");
    }
    // Nothing ran: the loose blob is still there.
    let head = client
        .head(reg.url(&format!("/v2/internal/app/blobs/{loose}")))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(head.status(), 200);

    let gc = client
        .post(reg.url("/internal/runBlobGC"))
        .bearer_auth(SECRET)
        .send()
        .await
        .expect("runBlobGC");
    assert_eq!(gc.status(), 204, "{}", reg.log());
    let head = client
        .head(reg.url(&format!("/v2/internal/app/blobs/{loose}")))
        .send()
        .await
        .expect("HEAD");
    assert_eq!(
        head.status(),
        404,
        "the collector removed the unreferenced blob"
    );
    for (digest, bytes) in &image.layers {
        let got = client
            .get(reg.url(&format!("/v2/internal/app/blobs/{digest}")))
            .send()
            .await
            .expect("GET layer");
        assert_eq!(got.bytes().await.expect("body").as_ref(), bytes.as_slice());
    }

    for path in [
        "/internal/indexManifests",
        "/internal/calculateProjectStorage",
        "/internal/runAll",
    ] {
        let answer = client
            .post(reg.url(path))
            .bearer_auth(SECRET)
            .send()
            .await
            .expect("POST");
        assert_eq!(answer.status(), 204, "{path}: {}", reg.log());
        assert!(answer.bytes().await.expect("body").is_empty());
    }
    let storage: serde_json::Value = client
        .post(reg.url("/api/getProjectStorage"))
        .json(&serde_json::json!({ "project": "internal" }))
        .send()
        .await
        .expect("getProjectStorage")
        .json()
        .await
        .expect("JSON");
    let bytes = storage["result"]["size"].as_u64();
    let expected: usize = image.layers.iter().map(|(_, b)| b.len()).sum::<usize>();
    assert!(
        bytes.is_some_and(|b| b >= expected as u64),
        "project storage after calculateProjectStorage: {storage}"
    );
    let log = reg.log();
    assert!(log.contains("job started by /internal/"), "{log}");
    assert!(log.contains("job=\"project-storage\""), "{log}");
}

#[tokio::test]
async fn without_the_secret_the_endpoints_are_not_served() {
    let reg = Registry::start_with(&[("JOBS_INTERVAL_SECS", "0")]).await;
    let client = reqwest::Client::new();
    for path in ENDPOINTS {
        let answer = client
            .post(reg.url(path))
            .bearer_auth(SECRET)
            .send()
            .await
            .expect("POST");
        assert_eq!(answer.status(), 404, "{path}");
    }
}

#[tokio::test]
async fn the_api_service_serves_them_too() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let api = ServiceProcess::start(
        "api",
        &data,
        dir.path(),
        &[("INTERNAL_SECRET", SECRET), ("GC_GRACE_SECS", "0")],
    )
    .await;
    let client = reqwest::Client::new();
    let unauthorized = client
        .post(api.url("/internal/runAll"))
        .send()
        .await
        .expect("POST");
    assert_eq!(unauthorized.status(), 401);
    let run_all = client
        .post(api.url("/internal/runAll"))
        .bearer_auth(SECRET)
        .send()
        .await
        .expect("POST");
    assert_eq!(run_all.status(), 204, "{}", api.log());
    let log = api.log();
    for job in ["migrate", "index-manifests", "blob-gc", "project-storage"] {
        assert!(log.contains(&format!("job=\"{job}\"")), "{job} ran: {log}");
    }
}

#[tokio::test]
async fn a_short_secret_stops_the_start() {
    let output = std::process::Command::new(registry_tests::registry_bin())
        .env_clear()
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("INTERNAL_SECRET", "short")
        .output()
        .expect("run registry");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("INTERNAL_SECRET"), "{stderr}");
}

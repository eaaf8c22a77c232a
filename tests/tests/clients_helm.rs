//! Helm's Go SDK (PyPI `helm-python-sdk`, in the test command's venv) against the registry,
//! driven by `tests/clients/helm_client.py`: a chart created, packaged, pushed to `oci://`,
//! listed, resolved and pulled back, anonymously and after a login under basic auth. The
//! registry must hold a Helm OCI manifest whose layer is the very archive Helm packaged.

use registry_tests::auth::{ALICE, AuthFiles, Client, Scheme};
use registry_tests::clients::{anonymous, assert_complete, blob, python, script};
use registry_tests::{OCI_MANIFEST, Registry};
use serde_json::Value;

const HELM_CONFIG: &str = "application/vnd.cncf.helm.config.v1+json";
const HELM_CHART: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";

/// Runs `helm_client.py push-pull` for chart `demo` 1.2.3 in `repo`; returns its report.
async fn push_pull(reg: &Registry, repo: &str, creds: Option<(&str, &str)>) -> Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path().join("home");
    std::fs::create_dir(&home).expect("create home");
    let python = python()
        .env("HOME", &home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("TMPDIR", dir.path());
    let script = script("helm_client.py");
    let work = dir.path().display().to_string();
    let host = reg.host();
    let mut args = vec![
        script.to_str().expect("UTF-8 path"),
        "push-pull",
        &host,
        repo,
        "demo",
        "1.2.3",
        &work,
    ];
    if let Some((user, password)) = creds {
        args.extend([user, password]);
    }
    let out = python.ok(reg, &args).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("helm_client.py: {e}: {out}"))
}

/// What the registry holds for the chart is what Helm packaged, pushed and pulled.
async fn assert_chart(client: &Client<'_>, repo: &str, report: &Value) {
    let chart_repo = format!("{repo}/demo");
    let stored = assert_complete(client, &chart_repo, "1.2.3").await;
    assert_eq!(stored.media_type, OCI_MANIFEST);
    assert_eq!(stored.json["config"]["mediaType"], HELM_CONFIG);
    let layers = stored.layers();
    assert_eq!(
        layers.len(),
        1,
        "{}",
        String::from_utf8_lossy(&stored.bytes)
    );
    assert_eq!(layers[0].0, HELM_CHART);
    assert_eq!(
        report["archive"],
        layers[0].1.as_str(),
        "layer is the packaged archive"
    );
    assert_eq!(
        report["pulled_archive"], report["archive"],
        "pulled archive differs"
    );
    assert_eq!(report["resolved"]["digest"], stored.digest.as_str());
    assert_eq!(report["resolved"]["size"], stored.bytes.len());
    assert_eq!(report["tags"], serde_json::json!(["1.2.3"]));
    let shown = report["shown"].as_str().expect("shown chart");
    assert!(
        shown.contains("name: demo") && shown.contains("version: 1.2.3"),
        "{shown}"
    );

    let config = blob(client, &chart_repo, &stored.config_digest()).await;
    let config: Value = serde_json::from_slice(&config).expect("chart config JSON");
    assert_eq!(config["name"], "demo");
    assert_eq!(config["version"], "1.2.3");
}

#[tokio::test]
async fn chart_is_pushed_and_pulled() {
    let reg = Registry::start().await;
    let report = push_pull(&reg, "charts", None).await;
    assert_chart(&anonymous(&reg), "charts", &report).await;
}

#[tokio::test]
async fn chart_is_pushed_and_pulled_after_login() {
    let files = AuthFiles::new();
    let reg = Registry::start_with(&[
        ("AUTH_MODE", "basic"),
        ("HTPASSWD_FILE", &files.htpasswd.display().to_string()),
        ("AUTH_RULES_FILE", &files.rules.display().to_string()),
    ])
    .await;
    let report = push_pull(&reg, "alpha/charts", Some(ALICE)).await;
    let alice = Client::new(&reg, Scheme::Basic, Some(ALICE));
    assert_chart(&alice, "alpha/charts", &report).await;
    let reply = anonymous(&reg)
        .send("GET", "/v2/alpha/charts/demo/manifests/1.2.3", None)
        .await;
    assert_eq!(reply.status, 401, "the chart is readable without login");
}

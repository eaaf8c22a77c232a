//! The four Cloud Run services as separate processes (`registry_tests::services`): each speaks
//! HTTP/1.1 and h2c on its port and answers `/healthz`; together, behind a router that applies
//! the URL map's route table with two `upload` instances, they behave as one registry (pushes
//! whose chunks land on different upload instances, pulls from blob and manifest, skopeo);
//! SIGTERM lets an upload in flight finish before the process exits 0; `LOG_FORMAT=json`
//! writes Cloud Logging lines with `httpRequest` and the caller's trace.

use std::path::Path;
use std::time::Duration;

use registry_tests::oci_layout::{Image, OciLayout};
use registry_tests::services::{Fleet, ServiceProcess};
use registry_tests::{OCI_MANIFEST, image_manifest_json, pseudo_random_bytes, sha256_digest};

/// `curl --http2-prior-knowledge` against one URL: (HTTP version, status, body).
fn curl_h2c(url: &str) -> (String, String, String) {
    let out = std::process::Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--http2-prior-knowledge",
            "--write-out",
            "\n%{http_version} %{http_code}",
            url,
        ])
        .output()
        .expect("run curl (apt-get install curl)");
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, last) = text.rsplit_once('\n').expect("curl write-out line");
    let (version, status) = last.split_once(' ').expect("version and status");
    (version.to_owned(), status.to_owned(), body.to_owned())
}

#[tokio::test]
async fn each_service_speaks_h2c_and_http1_on_one_port() {
    let fleet = Fleet::start().await;
    let h2c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("h2c client");
    let http1 = reqwest::Client::new();
    for (name, instances) in &fleet.services {
        for service in instances {
            let (version, status, body) = curl_h2c(&service.url("/healthz"));
            assert_eq!((version.as_str(), status.as_str()), ("2", "200"), "{name}");
            assert_eq!(body, "ok", "{name}");
            let resp = h2c.get(service.url("/healthz")).send().await.expect("h2c");
            assert_eq!(resp.version(), reqwest::Version::HTTP_2, "{name}");
            assert_eq!(resp.status(), 200, "{name}");
            let resp = http1
                .get(service.url("/healthz"))
                .send()
                .await
                .expect("http1");
            assert_eq!(resp.version(), reqwest::Version::HTTP_11, "{name}");
            assert_eq!(resp.text().await.expect("body"), "ok", "{name}");
        }
    }
    let (_, status, body) = curl_h2c(&fleet.service("manifest").url("/v2/"));
    assert_eq!((status.as_str(), body.as_str()), ("200", "{}"));
    let (_, status, body) = curl_h2c(&fleet.service("api").url("/api/anything"));
    assert_eq!(status, "404");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).expect("api JSON"),
        serde_json::json!({"ok": false, "error": {"message": "unknown method"}})
    );
}

#[tokio::test]
async fn services_behind_the_route_table_behave_as_one_registry() {
    let fleet = Fleet::start().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let router = &fleet.router;
    let repo = "team/app/web";
    // A chunked upload: POST, four PATCHes, PUT; consecutive requests go to the two upload
    // instances in turn.
    let layer = pseudo_random_bytes(256 << 10, 42);
    let resp = client
        .post(router.url(&format!("/v2/{repo}/blobs/uploads/")))
        .send()
        .await
        .expect("start upload");
    assert_eq!(resp.status(), 202, "{}", fleet.logs());
    let mut location = resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let mut offset = 0;
    for chunk in layer.chunks(64 << 10) {
        let end = offset + chunk.len() - 1;
        let resp = client
            .patch(router.url(&location))
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{offset}-{end}"))
            .body(chunk.to_vec())
            .send()
            .await
            .expect("patch");
        assert_eq!(resp.status(), 202, "{}", fleet.logs());
        assert_eq!(resp.headers()["range"], format!("0-{end}").as_str());
        location = resp.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned();
        offset = end + 1;
    }
    let layer_digest = sha256_digest(&layer);
    let separator = if location.contains('?') { '&' } else { '?' };
    let resp = client
        .put(router.url(&format!("{location}{separator}digest={layer_digest}")))
        .send()
        .await
        .expect("finish upload");
    assert_eq!(resp.status(), 201, "{}", fleet.logs());
    let patches: Vec<_> = router
        .hops()
        .into_iter()
        .filter(|h| h.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 4);
    assert!(patches.iter().all(|h| h.service == "upload"));
    let instances: std::collections::BTreeSet<_> = patches.iter().map(|h| h.instance).collect();
    assert_eq!(instances.len(), 2, "PATCHes on both upload instances");

    // A config pushed monolithically, then the manifest; pulled back through the router.
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = sha256_digest(config);
    let resp = client
        .post(router.url(&format!("/v2/{repo}/blobs/uploads/?digest={config_digest}")))
        .header("content-type", "application/octet-stream")
        .body(config.to_vec())
        .send()
        .await
        .expect("monolithic upload");
    assert_eq!(resp.status(), 201);
    let manifest = image_manifest_json(
        &(config_digest.clone(), config.len()),
        &[(layer_digest.clone(), layer.len())],
    );
    let resp = client
        .put(router.url(&format!("/v2/{repo}/manifests/v1")))
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .expect("put manifest");
    assert_eq!(resp.status(), 201, "{}", fleet.logs());
    let pulled = client
        .get(router.url(&format!("/v2/{repo}/manifests/v1")))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .expect("get manifest");
    assert_eq!(pulled.status(), 200);
    assert_eq!(
        pulled.bytes().await.expect("manifest body"),
        manifest.as_bytes()
    );
    let pulled = client
        .get(router.url(&format!("/v2/{repo}/blobs/{layer_digest}")))
        .send()
        .await
        .expect("get layer");
    assert_eq!(pulled.status(), 200);
    assert_eq!(pulled.bytes().await.expect("layer body"), layer.as_slice());
    let served = |method: &str, needle: &str| {
        router
            .hops()
            .into_iter()
            .filter(|h| h.method == method && h.target.contains(needle))
            .map(|h| h.service)
            .collect::<Vec<_>>()
    };
    assert_eq!(served("GET", "/blobs/sha256:"), ["blob"]);
    assert_eq!(served("GET", "/manifests/"), ["manifest"]);
    assert_eq!(served("PUT", "/manifests/"), ["manifest"]);
    assert_eq!(served("POST", "/blobs/uploads/"), ["upload", "upload"]);

    // The same data straight from each service: what one instance wrote, all can read.
    let direct = client
        .get(
            fleet
                .service("blob")
                .url(&format!("/v2/{repo}/blobs/{config_digest}")),
        )
        .send()
        .await
        .expect("blob service");
    assert_eq!(
        direct.bytes().await.expect("config body"),
        config.as_slice()
    );
    let tags = client
        .get(
            fleet
                .service("manifest")
                .url(&format!("/v2/{repo}/tags/list")),
        )
        .send()
        .await
        .expect("tags");
    let tags: serde_json::Value = tags.json().await.expect("tags JSON");
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));
    for upload in &fleet.services["upload"] {
        let resp = client
            .head(upload.url(&format!("/v2/{repo}/blobs/{layer_digest}")))
            .send()
            .await
            .expect("head on upload service");
        assert_eq!(
            resp.status(),
            405,
            "the upload service serves no blob reads"
        );
    }
}

#[tokio::test]
async fn skopeo_copies_through_the_route_table() {
    let fleet = Fleet::start().await;
    let work = tempfile::tempdir().expect("temp dir");
    let mut layout = OciLayout::create(&work.path().join("src")).expect("layout");
    let image = Image::generate("amd64", 7, &[200 << 10, 100 << 10]);
    layout.add_image("img", &image).expect("add image");
    // Six components: the blob reads of this name are beyond the templates and go to the
    // default service, which serves them too.
    for repo in ["skopeo/app", "a/b/c/d/e/f"] {
        let dest = format!("docker://{}/{repo}:v1", fleet.router.host());
        skopeo(
            work.path(),
            &[
                "copy",
                "--preserve-digests",
                "--dest-tls-verify=false",
                &layout.reference("img"),
                &dest,
            ],
        )
        .await;
        let back = format!(
            "oci:{}:img",
            work.path().join(repo.replace('/', "_")).display()
        );
        let src = format!("docker://{}/{repo}:v1", fleet.router.host());
        skopeo(
            work.path(),
            &[
                "copy",
                "--preserve-digests",
                "--src-tls-verify=false",
                &src,
                &back,
            ],
        )
        .await;
        let copied =
            registry_tests::oci_layout::blob_digests(&work.path().join(repo.replace('/', "_")))
                .expect("copied layout");
        assert!(
            image.digests().is_subset(&copied),
            "{repo}: {:?} not in {copied:?}",
            image.digests()
        );
    }
    let hops = fleet.router.hops();
    let blob_gets = |prefix: &str| {
        hops.iter()
            .filter(|h| {
                h.method == "GET"
                    && h.target.starts_with(prefix)
                    && h.target.contains("/blobs/sha256:")
            })
            .map(|h| h.service.as_str())
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(blob_gets("/v2/skopeo/app/"), ["blob"].into());
    assert_eq!(blob_gets("/v2/a/b/c/d/e/f/"), ["manifest"].into());
    assert!(hops.iter().all(|h| h.status < 500), "{hops:?}");
}

/// Runs skopeo with a policy of its own; panics with its output when it fails. Async: the
/// router runs on this test's runtime.
async fn skopeo(dir: &Path, args: &[&str]) {
    let policy = dir.join("policy.json");
    std::fs::write(
        &policy,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .expect("policy");
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).expect("tmp");
    let out = tokio::process::Command::new("skopeo")
        .arg("--policy")
        .arg(&policy)
        .arg("--tmpdir")
        .arg(&tmp)
        .args(args)
        .env("HOME", dir)
        .env("TMPDIR", &tmp)
        .env("XDG_RUNTIME_DIR", &tmp)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run skopeo (./scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn sigterm_lets_an_upload_in_flight_finish_then_exits_zero() {
    let data = tempfile::tempdir().expect("temp dir");
    let data_dir = data.path().join("data");
    let mut upload = ServiceProcess::start("upload", &data_dir, data.path(), &[]).await;
    let client = reqwest::Client::new();
    let repo = "slow/upload";
    let resp = client
        .post(upload.url(&format!("/v2/{repo}/blobs/uploads/")))
        .send()
        .await
        .expect("start upload");
    assert_eq!(resp.status(), 202);
    let location = resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    // A body sent slowly, in 8 pieces; SIGTERM arrives after the first.
    let bytes = pseudo_random_bytes(8 * (32 << 10), 3);
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let stream = futures_util::stream::unfold(receiver, |mut r| async move {
        r.recv().await.map(|item| (item, r))
    });
    let patch = tokio::spawn(
        client
            .patch(upload.url(&location))
            .header("content-type", "application/octet-stream")
            .header("content-length", bytes.len())
            .body(reqwest::Body::wrap_stream(stream))
            .send(),
    );
    let pieces: Vec<Vec<u8>> = bytes.chunks(32 << 10).map(<[u8]>::to_vec).collect();
    sender
        .send(Ok(pieces[0].clone()))
        .await
        .expect("first piece");
    tokio::time::sleep(Duration::from_millis(200)).await;
    upload.terminate();
    for piece in &pieces[1..] {
        tokio::time::sleep(Duration::from_millis(100)).await;
        sender.send(Ok(piece.clone())).await.expect("next piece");
    }
    drop(sender);
    let resp = patch.await.expect("join").expect("patch answered");
    assert_eq!(resp.status(), 202, "{}", upload.log());
    assert_eq!(
        resp.headers()["range"],
        format!("0-{}", bytes.len() - 1).as_str()
    );
    let status = upload.wait_exit(Duration::from_secs(30)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?}:\n{}",
        upload.log()
    );
    assert!(upload.log().contains("shutting down"), "{}", upload.log());
    // The chunk was committed: a new instance on the same data closes the upload.
    let next = ServiceProcess::start("upload", &data_dir, data.path(), &[]).await;
    let digest = sha256_digest(&bytes);
    let resp = client
        .put(next.url(&format!("{location}?digest={digest}")))
        .send()
        .await
        .expect("finish upload");
    assert_eq!(resp.status(), 201, "{}", next.log());
}

#[tokio::test]
async fn json_logs_carry_http_request_and_the_callers_trace() {
    let data = tempfile::tempdir().expect("temp dir");
    let env = [
        ("LOG_FORMAT", "json"),
        ("GOOGLE_CLOUD_PROJECT", "test-project"),
    ];
    let manifest =
        ServiceProcess::start("manifest", &data.path().join("data"), data.path(), &env).await;
    let client = reqwest::Client::new();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let resp = client
        .get(manifest.url("/v2/"))
        .header("user-agent", "routing-test/1")
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .send()
        .await
        .expect("get /v2/");
    assert_eq!(resp.status(), 200);
    let resp = client
        .get(manifest.url("/v2/_catalog"))
        .header(
            "x-cloud-trace-context",
            "0123456789abcdef0123456789abcdef/42;o=0",
        )
        .send()
        .await
        .expect("get catalog");
    assert_eq!(resp.status(), 200);
    let resp = client
        .get(manifest.url("/v2/a/manifests/missing"))
        .send()
        .await
        .expect("get missing manifest");
    assert_eq!(resp.status(), 404);
    // The request line is written once the response head is ready: wait for all three.
    let lines = wait_for_request_lines(&manifest, 3).await;
    for line in &lines {
        assert_eq!(line["severity"], "INFO", "{line}");
        assert!(line["time"].is_string(), "{line}");
        let latency = line["httpRequest"]["latency"].as_str().expect("latency");
        assert!(latency.ends_with('s') && latency[..latency.len() - 1].parse::<f64>().is_ok());
        assert_eq!(line["httpRequest"]["protocol"], "HTTP/1.1");
        assert_eq!(line["httpRequest"]["remoteIp"], "127.0.0.1");
        assert_eq!(line["httpRequest"]["requestMethod"], "GET");
    }
    let by_url = |url: &str| {
        lines
            .iter()
            .find(|l| l["httpRequest"]["requestUrl"] == url)
            .unwrap_or_else(|| panic!("no line for {url}: {lines:?}"))
    };
    let base = by_url("/v2/");
    assert_eq!(base["httpRequest"]["status"], 200);
    assert_eq!(base["httpRequest"]["responseSize"], "2");
    assert_eq!(base["httpRequest"]["userAgent"], "routing-test/1");
    assert_eq!(
        base["logging.googleapis.com/trace"],
        format!("projects/test-project/traces/{trace}").as_str()
    );
    assert_eq!(base["logging.googleapis.com/trace_sampled"], true);
    let catalog = by_url("/v2/_catalog");
    assert_eq!(
        catalog["logging.googleapis.com/trace"],
        "projects/test-project/traces/0123456789abcdef0123456789abcdef"
    );
    assert!(
        catalog
            .get("logging.googleapis.com/trace_sampled")
            .is_none()
    );
    let missing = by_url("/v2/a/manifests/missing");
    assert_eq!(missing["httpRequest"]["status"], 404);
    assert!(
        missing.get("logging.googleapis.com/trace").is_none(),
        "no trace header, no trace: {missing}"
    );
}

/// The JSON request lines of a process, once at least `count` are there (at most 10 s).
async fn wait_for_request_lines(service: &ServiceProcess, count: usize) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = service.log();
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .filter(|v: &serde_json::Value| v["message"] == "request")
            .collect();
        if lines.len() >= count {
            return lines;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{count} request lines:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

//! skopeo, a real client, against the registry: images and multi-arch indexes go from an OCI
//! layout into the registry and back without a digest changing; inspect, list-tags and delete
//! see what was pushed; a copy between two repositories mounts blobs instead of uploading them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Output;

use registry_tests::Registry;
use registry_tests::oci_layout::{self, Image, MultiArch, OciLayout};

/// Three layers of a few hundred KiB.
const LAYER_SIZES: &[usize] = &[300 << 10, 200 << 10, 100 << 10];

/// skopeo with its own policy, credentials, home and temporary directory, so neither the
/// user's configuration nor the system's temporary directory is read or written. (As root,
/// containers/image keeps its blob location cache in `/var/lib/containers/cache`, which no
/// flag moves; the cross-repository mount relies on that cache.)
#[derive(Debug)]
struct Skopeo {
    dir: tempfile::TempDir,
}

impl Skopeo {
    fn new() -> Skopeo {
        match std::process::Command::new("skopeo")
            .arg("--version")
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "`skopeo --version` failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => panic!(
                "skopeo is not installed ({e}); ./scripts/test.sh installs it \
                 (apt-get install skopeo)"
            ),
        }
        let dir = tempfile::tempdir().expect("temp dir");
        for sub in ["tmp", "home", "run"] {
            std::fs::create_dir(dir.path().join(sub)).expect("create skopeo dir");
        }
        std::fs::write(
            dir.path().join("policy.json"),
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .expect("write policy.json");
        std::fs::write(dir.path().join("auth.json"), r#"{"auths":{}}"#).expect("write auth.json");
        Skopeo { dir }
    }

    /// A path under this skopeo's temp directory, for layouts and digest files.
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    async fn run(&self, args: &[&str]) -> Output {
        let dir = self.dir.path();
        tokio::process::Command::new("skopeo")
            .arg("--policy")
            .arg(dir.join("policy.json"))
            .arg("--tmpdir")
            .arg(dir.join("tmp"))
            // A safety net against a stalled transfer, not a performance check.
            .args(["--command-timeout", "300s"])
            .args(args)
            .env("REGISTRY_AUTH_FILE", dir.join("auth.json"))
            .env("HOME", dir.join("home"))
            .env("XDG_RUNTIME_DIR", dir.join("run"))
            .env("TMPDIR", dir.join("tmp"))
            .kill_on_drop(true)
            .output()
            .await
            .expect("run skopeo")
    }

    /// Runs skopeo, asserts it succeeded and returns its standard output.
    async fn ok(&self, reg: &Registry, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.status.success(),
            "skopeo {args:?} failed ({}):\n{}\nregistry log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            reg.log()
        );
        String::from_utf8(out.stdout).expect("skopeo prints UTF-8")
    }

    /// Runs skopeo, asserts it failed and returns its standard error.
    async fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            !out.status.success(),
            "skopeo {args:?} succeeded but should have failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// Writes `image` into a new layout named `name` and returns the layout.
fn layout_with_image(skopeo: &Skopeo, name: &str, image: &Image) -> OciLayout {
    let mut layout = OciLayout::create(&skopeo.path("src")).expect("create layout");
    layout.add_image(name, image).expect("write image");
    layout
}

/// Pushes `src` to `docker://<registry>/<dest>` keeping every digest; returns the digest
/// skopeo reports for the pushed manifest.
async fn push(skopeo: &Skopeo, reg: &Registry, src: &str, dest: &str) -> String {
    let digest_file = skopeo.path("pushed-digest");
    let dest = format!("docker://{}/{dest}", reg.host());
    let digest_arg = digest_file.to_str().expect("UTF-8 path");
    skopeo
        .ok(
            reg,
            &[
                "copy",
                "--all",
                "--preserve-digests",
                "--dest-tls-verify=false",
                "--digestfile",
                digest_arg,
                src,
                &dest,
            ],
        )
        .await;
    std::fs::read_to_string(&digest_file).expect("read digest file")
}

/// Pulls `docker://<registry>/<src>` into the layout at `dst` as `name`, keeping every digest.
async fn pull(skopeo: &Skopeo, reg: &Registry, src: &str, dst: &std::path::Path, name: &str) {
    let src = format!("docker://{}/{src}", reg.host());
    let dst = format!("oci:{}:{name}", dst.display());
    skopeo
        .ok(
            reg,
            &[
                "copy",
                "--multi-arch",
                "all",
                "--preserve-digests",
                "--dest-oci-accept-uncompressed-layers",
                "--src-tls-verify=false",
                &src,
                &dst,
            ],
        )
        .await;
    if registry_tests::redirected_downloads() {
        // Blobs came through the storage's signed URLs, not through the registry.
        assert!(
            reg.log().contains("status=307"),
            "redirected downloads are on but no blob GET answered 307:\n{}",
            reg.log()
        );
    }
}

#[tokio::test]
async fn multi_layer_image_goes_in_and_out_unchanged() {
    let reg = Registry::start().await;
    let skopeo = Skopeo::new();
    let image = Image::generate("amd64", 11, LAYER_SIZES);
    let layout = layout_with_image(&skopeo, "v1", &image);

    let pushed = push(&skopeo, &reg, &layout.reference("v1"), "team/app:v1").await;
    assert_eq!(pushed, image.manifest.digest);

    let dst = skopeo.path("dst");
    pull(&skopeo, &reg, "team/app:v1", &dst, "pulled").await;
    let entry = oci_layout::read_ref(&dst, "pulled")
        .expect("read index.json")
        .expect("pulled entry in index.json");
    assert_eq!(entry["digest"], image.manifest.digest.as_str());
    assert_eq!(
        oci_layout::blob_digests(&dst).expect("read pulled blobs"),
        image.digests()
    );
}

#[tokio::test]
async fn inspect_and_list_tags_show_what_was_pushed() {
    let reg = Registry::start().await;
    let skopeo = Skopeo::new();
    let image = Image::generate("amd64", 12, LAYER_SIZES);
    let layout = layout_with_image(&skopeo, "v1", &image);
    push(&skopeo, &reg, &layout.reference("v1"), "team/app:v1").await;
    push(&skopeo, &reg, &layout.reference("v1"), "team/app:v2").await;
    let by_tag = format!("docker://{}/team/app:v1", reg.host());
    let by_digest = format!("docker://{}/team/app@{}", reg.host(), image.manifest.digest);

    for reference in [&by_tag, &by_digest] {
        let raw = skopeo
            .ok(&reg, &["inspect", "--raw", "--tls-verify=false", reference])
            .await;
        assert_eq!(
            raw.as_bytes(),
            image.manifest.bytes,
            "raw manifest of {reference}"
        );
    }
    let config = skopeo
        .ok(
            &reg,
            &[
                "inspect",
                "--config",
                "--raw",
                "--tls-verify=false",
                &by_tag,
            ],
        )
        .await;
    assert_eq!(config.as_bytes(), image.config.bytes);

    let inspected = skopeo
        .ok(&reg, &["inspect", "--tls-verify=false", &by_tag])
        .await;
    let inspected: serde_json::Value = serde_json::from_str(&inspected).expect("inspect JSON");
    assert_eq!(inspected["Digest"], image.manifest.digest.as_str());
    assert_eq!(inspected["Architecture"], "amd64");
    let layers: Vec<&str> = image.layers.iter().map(|l| l.digest.as_str()).collect();
    assert_eq!(inspected["Layers"], serde_json::json!(layers));
    assert_eq!(inspected["RepoTags"], serde_json::json!(["v1", "v2"]));

    let repo = format!("docker://{}/team/app", reg.host());
    let tags = skopeo
        .ok(&reg, &["list-tags", "--tls-verify=false", &repo])
        .await;
    let tags: serde_json::Value = serde_json::from_str(&tags).expect("list-tags JSON");
    assert_eq!(tags["Tags"], serde_json::json!(["v1", "v2"]));
}

#[tokio::test]
async fn multi_arch_index_goes_in_and_out_with_every_platform() {
    let reg = Registry::start().await;
    let skopeo = Skopeo::new();
    let multi = MultiArch::generate(&["amd64", "arm64"], 13);
    let mut layout = OciLayout::create(&skopeo.path("src")).expect("create layout");
    layout.add_multi_arch("multi", &multi).expect("write index");

    let pushed = push(&skopeo, &reg, &layout.reference("multi"), "team/multi:1.0").await;
    assert_eq!(pushed, multi.index.digest);

    let by_tag = format!("docker://{}/team/multi:1.0", reg.host());
    let raw = skopeo
        .ok(&reg, &["inspect", "--raw", "--tls-verify=false", &by_tag])
        .await;
    assert_eq!(raw.as_bytes(), multi.index.bytes);
    for image in &multi.images {
        let by_digest = format!(
            "docker://{}/team/multi@{}",
            reg.host(),
            image.manifest.digest
        );
        let raw = skopeo
            .ok(
                &reg,
                &["inspect", "--raw", "--tls-verify=false", &by_digest],
            )
            .await;
        assert_eq!(
            raw.as_bytes(),
            image.manifest.bytes,
            "{} manifest",
            image.architecture
        );
        // skopeo picks the platform's image out of the index.
        let arch = image.architecture.as_str();
        let config = skopeo
            .ok(
                &reg,
                &[
                    "--override-arch",
                    arch,
                    "--override-os",
                    "linux",
                    "inspect",
                    "--config",
                    "--raw",
                    "--tls-verify=false",
                    &by_tag,
                ],
            )
            .await;
        assert_eq!(config.as_bytes(), image.config.bytes, "{arch} config");
    }

    let dst = skopeo.path("dst");
    pull(&skopeo, &reg, "team/multi:1.0", &dst, "pulled").await;
    let entry = oci_layout::read_ref(&dst, "pulled")
        .expect("read index.json")
        .expect("pulled entry in index.json");
    assert_eq!(entry["digest"], multi.index.digest.as_str());
    assert_eq!(
        oci_layout::blob_digests(&dst).expect("read pulled blobs"),
        multi.digests()
    );
}

#[tokio::test]
async fn delete_removes_the_image() {
    let reg = Registry::start().await;
    let skopeo = Skopeo::new();
    let image = Image::generate("amd64", 14, LAYER_SIZES);
    let layout = layout_with_image(&skopeo, "v1", &image);
    push(&skopeo, &reg, &layout.reference("v1"), "team/gone:v1").await;
    let by_tag = format!("docker://{}/team/gone:v1", reg.host());
    let by_digest = format!(
        "docker://{}/team/gone@{}",
        reg.host(),
        image.manifest.digest
    );

    skopeo
        .ok(&reg, &["delete", "--tls-verify=false", &by_tag])
        .await;

    let deleted = requests(&reg.log()).into_iter().any(|r| {
        r.method == "DELETE"
            && r.path == format!("/v2/team/gone/manifests/{}", image.manifest.digest)
            && r.status == 202
    });
    assert!(
        deleted,
        "no DELETE of the manifest answered 202:\n{}",
        reg.log()
    );
    for reference in [&by_tag, &by_digest] {
        let stderr = skopeo
            .fails(&["inspect", "--raw", "--tls-verify=false", reference])
            .await;
        assert!(
            stderr.contains("manifest unknown"),
            "inspect {reference} after delete: {stderr}"
        );
    }
}

#[tokio::test]
async fn copy_between_repositories_mounts_blobs() {
    let reg = Registry::start().await;
    let skopeo = Skopeo::new();
    let image = Image::generate("amd64", 15, LAYER_SIZES);
    let layout = layout_with_image(&skopeo, "t", &image);
    push(&skopeo, &reg, &layout.reference("t"), "a:t").await;

    let from = format!("docker://{}/a:t", reg.host());
    let to = format!("docker://{}/b:t", reg.host());
    skopeo
        .ok(
            &reg,
            &[
                "copy",
                "--preserve-digests",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                &from,
                &to,
            ],
        )
        .await;

    let log = reg.log();
    let requests = requests(&log);
    let mounted: BTreeSet<&str> = requests
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/v2/b/blobs/uploads/" && r.status == 201)
        .filter(|r| r.query("from") == Some("a"))
        .filter_map(|r| r.query("mount"))
        .collect();
    for layer in &image.layers {
        assert!(
            mounted.contains(layer.digest.as_str()),
            "layer {} was not mounted from a into b:\n{log}",
            layer.digest
        );
    }
    // skopeo uploads the config instead of mounting it; no layer may be uploaded.
    let layers: BTreeSet<&str> = image.layers.iter().map(|l| l.digest.as_str()).collect();
    for (session, digest) in upload_sessions(&requests, "b") {
        let digest = digest.unwrap_or_else(|| panic!("upload {session} to b never closed:\n{log}"));
        assert!(
            !layers.contains(digest.as_str()),
            "layer {digest} uploaded to b through {session} instead of mounted:\n{log}"
        );
    }

    let raw = skopeo
        .ok(&reg, &["inspect", "--raw", "--tls-verify=false", &to])
        .await;
    assert_eq!(raw.as_bytes(), image.manifest.bytes);
}

/// One request as the registry logged it.
#[derive(Debug)]
struct Request {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    status: u16,
}

impl Request {
    /// The percent-decoded value of the query parameter `key`.
    fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Blob uploads into `repo`: each upload session's path, with the digest its closing `PUT`
/// named (`None` if never closed); monolithic `POST ?digest=` uploads count as sessions too.
fn upload_sessions(requests: &[Request], repo: &str) -> BTreeMap<String, Option<String>> {
    let uploads = format!("/v2/{repo}/blobs/uploads/");
    let mut sessions = BTreeMap::new();
    for r in requests.iter().filter(|r| r.path.starts_with(&uploads)) {
        let digest = r.query("digest").map(str::to_owned);
        match r.method.as_str() {
            "POST" if digest.is_some() => {
                sessions.insert(format!("POST {}", r.path), digest);
            }
            "PATCH" => {
                sessions.entry(r.path.clone()).or_insert(None);
            }
            "PUT" => {
                sessions.insert(r.path.clone(), digest);
            }
            _ => {}
        }
    }
    sessions
}

/// The requests in the registry log: lines holding `method=`, `uri=` and `status=` fields.
fn requests(log: &str) -> Vec<Request> {
    let requests: Vec<Request> = log.lines().filter_map(parse_request).collect();
    assert!(
        !requests.is_empty(),
        "no request lines (method=… uri=… status=…) in the registry log:\n{log}"
    );
    requests
}

fn parse_request(line: &str) -> Option<Request> {
    let method = field(line, "method")?;
    let uri = field(line, "uri")?;
    let status = field(line, "status")?.parse().ok()?;
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let query = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    Some(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query,
        status,
    })
}

/// The value of `key=value` in a log line, quotes removed.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split(|c: char| c.is_whitespace() || matches!(c, '{' | '}' | ','))
        .find_map(|token| token.strip_prefix(key)?.strip_prefix('='))
        .map(|value| value.trim_matches('"'))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn request_lines_are_parsed() {
    let line = "2026-01-01T00:00:00.000000Z  INFO registry_common::http::layers: request \
                method=POST uri=/v2/b/blobs/uploads/?from=a&mount=sha256%3Aab status=201 \
                latency_ms=1";
    let request = parse_request(line).expect("a request line");
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/v2/b/blobs/uploads/");
    assert_eq!(request.query("mount"), Some("sha256:ab"));
    assert_eq!(request.query("from"), Some("a"));
    assert_eq!(request.status, 201);
}

//! The cache suites' upstream works as they assume: distribution (Debian's docker-registry)
//! starts in each flavour, takes the fixtures, serves them to skopeo with the right
//! credentials and refuses it with wrong ones or none; its access log counts the requests
//! that were made; it stops and starts again on the same port with its data.

use std::collections::BTreeSet;

use registry_tests::auth::Skopeo;
use registry_tests::daemons::Dockerd;
use registry_tests::oci_layout::{self, Image, MultiArch};
use registry_tests::upstream::{Distribution, Flavour, UPSTREAM_USER, skopeo_pull_args};
use registry_tests::{OCI_INDEX, OCI_MANIFEST, sha256_digest};

/// Pushes the three fixtures, copies each out with skopeo, checks digests and the counts.
async fn serves_fixtures(flavour: Flavour) {
    let dist = Distribution::start(flavour).await;
    let creds = dist.credentials();
    let image = Image::generate("amd64", 11, &[64 << 10, 32 << 10]);
    dist.push_image("team/plain", Some("1.0"), &image).await;
    let multi = MultiArch::generate(&["amd64", "arm64"], 12);
    dist.push_multi_arch("team/multi", "2.0", &multi).await;
    let subject = Image::generate("arm64", 13, &[16 << 10]);
    dist.push_image("team/signed", Some("3.0"), &subject).await;
    let referrer = dist.push_referrer("team/signed", &subject, 14).await;
    assert_eq!(
        dist.settled_count_ok("PUT", "/v2/team/plain/manifests/")
            .await,
        1
    );
    assert_eq!(dist.count_ok("PUT", "/v2/team/multi/manifests/"), 3);

    let skopeo = Skopeo::new();
    let at = |repo: &str| format!("docker://{}/{repo}", dist.host());

    // The plain image: every blob fetched once, each one line in the access log.
    let out = skopeo.path("plain");
    skopeo
        .ok(&skopeo_pull_args(&at("team/plain:1.0"), &out, "p", creds))
        .await;
    let got = oci_layout::blob_digests(&out).expect("layout blobs");
    assert_eq!(got, image.digests(), "blobs copied out of distribution");
    assert_eq!(
        dist.settled_count_ok("GET", "/v2/team/plain/blobs/").await,
        image.layers.len() + 1,
        "config and layers, once each:\n{:?}",
        dist.requests("GET", "/v2/team/plain/")
    );

    // The index with both platforms.
    let out = skopeo.path("multi");
    skopeo
        .ok(&skopeo_pull_args(&at("team/multi:2.0"), &out, "m", creds))
        .await;
    let got = oci_layout::blob_digests(&out).expect("layout blobs");
    assert_eq!(got, multi.digests(), "index and both platforms");
    let index = dist.get_manifest("team/multi", "2.0").await;
    assert_eq!(index.status, 200);
    assert_eq!(index.header("content-type"), Some(OCI_INDEX));
    assert_eq!(index.body, multi.index.bytes);

    // The referrer: by digest, and listed by the tag-schema fallback.
    let artifact = dist
        .get_manifest("team/signed", &referrer.manifest.digest)
        .await;
    assert_eq!(artifact.status, 200, "{}", artifact.text());
    assert_eq!(artifact.body, referrer.manifest.bytes);
    assert_eq!(
        artifact.json()["subject"]["digest"],
        subject.manifest.digest.as_str()
    );
    let fallback = dist
        .get_manifest("team/signed", &referrer.fallback_tag)
        .await;
    assert_eq!(fallback.status, 200, "{}", fallback.text());
    assert_eq!(
        fallback.json()["manifests"][0]["digest"],
        referrer.manifest.digest.as_str()
    );
    for blob in &referrer.blobs {
        let reply = dist.get_blob("team/signed", &blob.digest).await;
        assert_eq!(reply.body, blob.bytes);
    }
    let raw = skopeo
        .ok(&inspect_args(&at("team/signed:3.0"), creds))
        .await;
    assert_eq!(raw.as_bytes(), subject.manifest.bytes);

    // Credentials: wrong ones and none are refused where the flavour wants them.
    if let Some((user, _)) = creds {
        let wrong = Some((user, "not-the-password"));
        let denied = skopeo
            .fails(&inspect_args(&at("team/plain:1.0"), wrong))
            .await;
        assert!(
            denied.to_lowercase().contains("unauthorized")
                || denied.contains("authentication required"),
            "{denied}"
        );
        skopeo
            .fails(&inspect_args(&at("team/plain:1.0"), None))
            .await;
        let refused = dist
            .client
            .get(dist.url("/v2/team/plain/manifests/1.0"))
            .send()
            .await
            .expect("GET");
        assert_eq!(refused.status(), 401);
        assert!(refused.headers().contains_key("www-authenticate"));
    }
    if flavour == Flavour::Token {
        let token = dist.token_server().expect("token server");
        assert!(token.issued() > 0, "skopeo and the pushers took tokens");
        assert!(
            token
                .requested_scopes()
                .iter()
                .any(|s| s == "repository:team/plain:pull"),
            "skopeo asked for pull on team/plain: {:?}",
            token.requested_scopes()
        );
    }
}

fn inspect_args(src: &str, creds: Option<(&str, &str)>) -> Vec<String> {
    let mut args = vec![
        "inspect".to_owned(),
        "--raw".to_owned(),
        "--tls-verify=false".to_owned(),
    ];
    match creds {
        Some((user, password)) => args.push(format!("--creds={user}:{password}")),
        None => args.push("--no-creds".to_owned()),
    }
    args.push(src.to_owned());
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_distribution_serves_the_fixtures() {
    serves_fixtures(Flavour::Open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htpasswd_distribution_serves_the_fixtures_to_its_user_only() {
    serves_fixtures(Flavour::Htpasswd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_distribution_serves_the_fixtures_to_its_user_only() {
    serves_fixtures(Flavour::Token).await;
}

/// A big layer streams up and comes back whole, byte-identical by digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_image_streams_up_and_comes_back() {
    let dist = Distribution::start(Flavour::Token).await;
    let big = dist.push_big_image("team/big", "1", 24, 5).await;
    assert_eq!(big.layer_size, (24 << 20) + 1536);
    let manifest = dist.get_manifest("team/big", "1").await;
    assert_eq!(manifest.body, big.manifest.bytes);
    assert_eq!(manifest.header("content-type"), Some(OCI_MANIFEST));
    let layer = dist.get_blob("team/big", &big.layer_digest).await;
    assert_eq!(layer.status, 200);
    assert_eq!(layer.body.len() as u64, big.layer_size);
    assert_eq!(sha256_digest(&layer.body), big.layer_digest);
    // The layer is a tar of one file.
    assert_eq!(&layer.body[..7], b"big.bin");
    assert_eq!(&layer.body[257..262], b"ustar");
}

/// An outage: stopped, nothing answers on the port; started again, the same port serves the
/// same content, and the access log runs on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_distribution_comes_back_with_its_data() {
    let mut dist = Distribution::start(Flavour::Htpasswd).await;
    let image = Image::generate("amd64", 21, &[8 << 10]);
    dist.push_image("team/app", Some("v1"), &image).await;
    let before = dist.get_manifest("team/app", "v1").await;
    assert_eq!(before.status, 200);
    let (port, host) = (dist.port(), dist.host());

    dist.stop();
    assert!(!dist.is_running());
    let down = dist.client.get(dist.url("/v2/")).send().await;
    assert!(down.is_err(), "nothing answers during the outage: {down:?}");

    dist.start_again().await;
    assert_eq!((dist.port(), dist.host()), (port, host));
    let after = dist.get_manifest("team/app", "v1").await;
    assert_eq!(after.status, 200, "{}", after.text());
    assert_eq!(after.body, image.manifest.bytes);
    assert_eq!(
        dist.settled_count_ok("GET", "/v2/team/app/manifests/v1")
            .await,
        2
    );
    let blob = dist.get_blob("team/app", &image.layers[0].digest).await;
    assert_eq!(blob.body, image.layers[0].bytes);
    dist.settled_count_ok("GET", "/v2/team/app/blobs/").await;
    let layers: BTreeSet<String> = dist
        .requests("GET", "/v2/team/app/blobs/")
        .iter()
        .map(|e| e.path().rsplit('/').next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(layers, BTreeSet::from([image.layers[0].digest.clone()]));
    assert_eq!(UPSTREAM_USER, dist.credentials().expect("htpasswd creds"));
}

/// dockerd configured with `registry-mirrors` asks the mirror for Docker Hub's names: with
/// distribution as the mirror, `docker pull alpine` is `library/alpine:latest` from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dockerd_pulls_docker_hub_names_from_its_mirror() {
    let dist = Distribution::start(Flavour::Open).await;
    let image = Image::generate("amd64", 31, &[40 << 10]);
    dist.push_image("library/alpine", Some("latest"), &image)
        .await;
    let dockerd = Dockerd::start_with_mirrors(&[&dist.base_url()]).await;
    let docker = dockerd.docker();
    let out = docker.run(&["pull", "alpine"]).await;
    assert!(
        out.status.success(),
        "docker pull alpine through the mirror: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        dockerd.log()
    );
    let id = docker
        .run(&["image", "inspect", "--format", "{{.Id}}", "alpine"])
        .await;
    assert_eq!(
        String::from_utf8_lossy(&id.stdout).trim(),
        image.config.digest,
        "the image docker holds is the mirror's"
    );
    // docker 20.10 (containerd's resolver) asks for the tag with a HEAD, then fetches the
    // manifest by digest, the config and the layer.
    assert_eq!(
        dist.settled_count_ok("HEAD", "/v2/library/alpine/manifests/latest")
            .await,
        1,
        "{:?}",
        dist.access_log()
    );
    let by_digest = format!("/v2/library/alpine/manifests/{}", image.manifest.digest);
    assert_eq!(dist.count_ok("GET", &by_digest), 1);
    assert_eq!(
        dist.count_ok("GET", "/v2/library/alpine/blobs/"),
        2,
        "{:?}",
        dist.access_log()
    );
}

/// The baseline of the cache's one-platform check: skopeo asked for one platform of an index
/// fetches the index, that platform's manifest and its blobs, nothing of the other platform.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pulls_one_platform_of_the_index_and_nothing_else() {
    let dist = Distribution::start(Flavour::Open).await;
    let multi = MultiArch::generate(&["amd64", "arm64"], 41);
    dist.push_multi_arch("team/multi", "1", &multi).await;
    let skopeo = Skopeo::new();
    let out = skopeo.path("arm64");
    let src = format!("docker://{}/team/multi:1", dist.host());
    let mut args = vec!["--override-arch".to_owned(), "arm64".to_owned()];
    args.extend(
        skopeo_pull_args(&src, &out, "arm", None)
            .into_iter()
            .filter(|a| a != "--all"),
    );
    skopeo.ok(&args).await;
    let (amd64, arm64) = (&multi.images[0], &multi.images[1]);
    let got = oci_layout::blob_digests(&out).expect("layout blobs");
    assert!(got.is_superset(&arm64.digests()), "{got:?}");
    assert!(got.is_disjoint(&amd64.digests()), "{got:?}");
    dist.settled_count_ok("GET", "/v2/").await;
    let fetched: BTreeSet<String> = dist
        .requests("GET", "/v2/team/multi/")
        .iter()
        .map(|e| e.path().rsplit('/').next().unwrap_or_default().to_owned())
        .collect();
    assert!(fetched.is_disjoint(&amd64.digests()), "{fetched:?}");
    assert!(fetched.contains(&arm64.layers[0].digest), "{fetched:?}");
}

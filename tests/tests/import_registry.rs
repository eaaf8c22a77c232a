//! `jobs import --from <registry URL>`: another registry's content copied into a fresh
//! registry's database and storage, from distribution (Debian's `docker-registry` 2.8: no
//! referrers API, referrers kept by the tag-schema fallback) and from a second instance of
//! this registry (its referrers API). Each test checks the result through this registry's
//! `/v2` API: every source tag resolves to the same digest, every manifest and blob reached
//! from the tags (through indexes and referrers) is served with bytes hashing to its digest;
//! and the report's counts: a second run copies nothing, a run killed midway resumes without
//! copying again what was done.

use std::collections::BTreeSet;
use std::process::Stdio;

use registry_tests::auth::{ALICE, AuthFiles, Client, Scheme};
use registry_tests::clients::ACCEPT_MANIFESTS;
use registry_tests::import::{count, import, import_command};
use registry_tests::oci_layout::{Image, MultiArch};
use registry_tests::upstream::{Distribution, Flavour, UPSTREAM_USER};
use registry_tests::{
    EMPTY_JSON, OCI_EMPTY, OCI_MANIFEST, PushedImage, Registry, Reply, send, sha256_digest,
};
use tokio::io::{AsyncBufReadExt, BufReader};

/// A registry's `/v2` API as the tests read it (with Basic credentials when it wants them).
struct Side<'a> {
    base: String,
    client: reqwest::Client,
    auth: Option<(&'a str, &'a str)>,
}

impl<'a> Side<'a> {
    fn of_distribution(dist: &Distribution, auth: Option<(&'a str, &'a str)>) -> Side<'a> {
        Side {
            base: dist.base_url(),
            client: reqwest::Client::new(),
            auth,
        }
    }

    fn of_registry(reg: &Registry) -> Side<'a> {
        Side {
            base: reg.url(""),
            client: reqwest::Client::new(),
            auth: None,
        }
    }

    async fn get(&self, target: &str) -> Reply {
        let url = if target.starts_with("http") {
            target.to_owned()
        } else {
            format!("{}{target}", self.base)
        };
        let mut request = self.client.get(url).header("Accept", ACCEPT_MANIFESTS);
        if let Some((user, password)) = self.auth {
            request = request.basic_auth(user, Some(password));
        }
        send(request).await
    }

    /// Every tag of the repository, following `Link` pages.
    async fn tags(&self, repository: &str) -> Vec<String> {
        let mut tags = Vec::new();
        let mut next = Some(format!("/v2/{repository}/tags/list?n=250"));
        while let Some(target) = next.take() {
            let reply = self.get(&target).await;
            assert_eq!(reply.status, 200, "{target}: {}", reply.text());
            for tag in reply.json()["tags"].as_array().into_iter().flatten() {
                tags.push(tag.as_str().expect("tag").to_owned());
            }
            next = reply
                .header("link")
                .and_then(|l| l.split_once('<'))
                .and_then(|(_, rest)| rest.split_once('>'))
                .map(|(target, _)| target.to_owned());
        }
        tags.sort();
        tags
    }

    /// The digest a tag names.
    async fn digest_of(&self, repository: &str, tag: &str) -> Option<String> {
        let reply = self.get(&format!("/v2/{repository}/manifests/{tag}")).await;
        (reply.status == 200).then(|| sha256_digest(&reply.body))
    }

    /// The manifests and blobs reached from `digest`: children of indexes, config and
    /// layers, and (`referrers_api`) the referrers the API lists.
    async fn closure(
        &self,
        repository: &str,
        digest: &str,
        referrers_api: bool,
        manifests: &mut BTreeSet<String>,
        blobs: &mut BTreeSet<String>,
    ) {
        let mut pending = vec![digest.to_owned()];
        while let Some(digest) = pending.pop() {
            if !manifests.insert(digest.clone()) {
                continue;
            }
            let reply = self
                .get(&format!("/v2/{repository}/manifests/{digest}"))
                .await;
            assert_eq!(reply.status, 200, "{repository}@{digest}: {}", reply.text());
            let manifest = reply.json();
            for child in manifest["manifests"].as_array().into_iter().flatten() {
                pending.push(child["digest"].as_str().expect("digest").to_owned());
            }
            let config = manifest.get("config").into_iter();
            for blob in config.chain(manifest["layers"].as_array().into_iter().flatten()) {
                blobs.insert(blob["digest"].as_str().expect("digest").to_owned());
            }
            if referrers_api {
                let reply = self
                    .get(&format!("/v2/{repository}/referrers/{digest}"))
                    .await;
                assert_eq!(reply.status, 200, "referrers: {}", reply.text());
                for referrer in reply.json()["manifests"].as_array().into_iter().flatten() {
                    pending.push(referrer["digest"].as_str().expect("digest").to_owned());
                }
            }
        }
    }
}

/// Asserts that every tag of `repositories` at the source resolves in `dest` to the same
/// digest and that every manifest and blob reached from them is served by `dest` with bytes
/// hashing to their digest; returns the number of blobs (per repository).
async fn assert_imported(
    source: &Side<'_>,
    dest: &Side<'_>,
    repositories: &[&str],
    referrers_api: bool,
) -> usize {
    let mut blob_count = 0;
    for repository in repositories {
        let tags = source.tags(repository).await;
        assert!(!tags.is_empty(), "{repository} has tags at the source");
        assert_eq!(
            dest.tags(repository).await,
            tags,
            "{repository}: the same tags"
        );
        let mut manifests = BTreeSet::new();
        let mut blobs = BTreeSet::new();
        for tag in &tags {
            let digest = source.digest_of(repository, tag).await.expect("source tag");
            assert_eq!(
                dest.digest_of(repository, tag).await.as_deref(),
                Some(digest.as_str()),
                "{repository}:{tag}"
            );
            source
                .closure(
                    repository,
                    &digest,
                    referrers_api,
                    &mut manifests,
                    &mut blobs,
                )
                .await;
        }
        for digest in &manifests {
            let reply = dest
                .get(&format!("/v2/{repository}/manifests/{digest}"))
                .await;
            assert_eq!(reply.status, 200, "{repository}@{digest} here");
            assert_eq!(sha256_digest(&reply.body), *digest);
        }
        for digest in &blobs {
            let reply = dest.get(&format!("/v2/{repository}/blobs/{digest}")).await;
            assert_eq!(reply.status, 200, "blob {repository}@{digest} here");
            assert_eq!(sha256_digest(&reply.body), *digest, "blob {digest} intact");
        }
        blob_count += blobs.len();
    }
    blob_count
}

#[tokio::test]
async fn imports_distribution_with_an_index_a_fallback_referrer_and_a_thousand_tags() {
    let dist = Distribution::start(Flavour::Open).await;
    let multi = MultiArch::generate(&["amd64", "arm64"], 41);
    dist.push_multi_arch("multi/app", "v1", &multi).await;
    let image = Image::generate("amd64", 42, &[20_000]);
    dist.push_image("art/app", Some("v1"), &image).await;
    let referrer = dist.push_referrer("art/app", &image, 7).await;
    let few: Vec<Image> = (0..4)
        .map(|i| Image::generate("amd64", 100 + i, &[1000]))
        .collect();
    for image in &few {
        dist.push_image("many/tags", None, image).await;
    }
    for i in 0..1000 {
        let image = &few[i % few.len()];
        dist.push_manifest(
            "many/tags",
            &format!("t{i:04}"),
            OCI_MANIFEST,
            &image.manifest.bytes,
        )
        .await;
    }
    let reg = Registry::start().await;

    let (code, report) = import(&reg, &["--from", &dist.base_url()], &[]).await;
    assert_eq!(code, 0, "{report}");
    let source = Side::of_distribution(&dist, None);
    let dest = Side::of_registry(&reg);
    let repositories = ["art/app", "many/tags", "multi/app"];
    let blobs = assert_imported(&source, &dest, &repositories, false).await;
    assert_eq!(
        count(&report, "blobs:", "copied") as usize,
        blobs,
        "{report}"
    );
    assert_eq!(count(&report, "tags:", "set"), 1000 + 2 + 1, "{report}");
    assert_eq!(count(&report, "verification:", "mismatches"), 0, "{report}");
    // The fallback tag came as a tag, and its artifact (with its subject) is now listed by
    // this registry's referrers API too.
    assert_eq!(
        dest.digest_of("art/app", &referrer.fallback_tag).await,
        Some(referrer.fallback_index.digest.clone())
    );
    let referrers = dest
        .get(&format!("/v2/art/app/referrers/{}", image.manifest.digest))
        .await;
    assert_eq!(
        referrers.json()["manifests"][0]["digest"],
        referrer.manifest.digest
    );

    // A second run copies nothing.
    let (code, again) = import(&reg, &["--from", &dist.base_url()], &[]).await;
    assert_eq!(code, 0, "{again}");
    assert_eq!(count(&again, "blobs:", "copied"), 0, "{again}");
    assert_eq!(count(&again, "manifests:", "stored"), 0, "{again}");
    assert_eq!(count(&again, "tags:", "set"), 0, "{again}");
    assert_eq!(count(&again, "tags:", "already done"), 1003, "{again}");
    assert_eq!(
        count(&again, "verification:", "blobs") as usize,
        blobs,
        "{again}"
    );
}

#[tokio::test]
async fn a_killed_import_resumes_without_copying_again_what_was_done() {
    let dist = Distribution::start(Flavour::Htpasswd).await;
    let mut repositories = Vec::new();
    for r in 0..12u64 {
        let repository = format!("fleet/app{r:02}");
        let image = Image::generate("amd64", 500 + r, &[150_000, 150_000, 150_000, 150_000]);
        dist.push_image(&repository, Some("v1"), &image).await;
        repositories.push(repository);
    }
    let names: Vec<&str> = repositories.iter().map(String::as_str).collect();
    let reg = Registry::start().await;
    let (user, password) = UPSTREAM_USER;
    let args = [
        "--from",
        &dist.base_url(),
        "--username",
        user,
        "--password-env",
        "SOURCE_PASSWORD",
        "--prefix",
        "fleet/",
        "--concurrency",
        "1",
        "--progress-interval",
        "0.1",
    ];
    let env = [("SOURCE_PASSWORD", password)];

    // Killed once its progress line says blobs were copied.
    let mut child = import_command(&reg, &args, &env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn jobs import");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    loop {
        let line = lines
            .next_line()
            .await
            .expect("read stderr")
            .expect("a progress line before the end");
        assert!(
            !line.contains("import finished"),
            "finished before the kill"
        );
        let copied = line
            .split_once("blobs_copied=")
            .and_then(|(_, rest)| rest.split(' ').next())
            .and_then(|n| n.parse::<u64>().ok());
        if line.contains("import progress") && copied.is_some_and(|n| n > 0) {
            break;
        }
    }
    assert!(child.try_wait().expect("wait").is_none(), "still running");
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("reaped");

    // What is here after the kill is exactly what the resumed run does not copy.
    let source = Side::of_distribution(&dist, Some(UPSTREAM_USER));
    let dest = Side::of_registry(&reg);
    let mut total = 0;
    let mut here = 0;
    for repository in &names {
        let digest = source
            .digest_of(repository, "v1")
            .await
            .expect("source tag");
        let (mut manifests, mut blobs) = (BTreeSet::new(), BTreeSet::new());
        source
            .closure(repository, &digest, false, &mut manifests, &mut blobs)
            .await;
        total += blobs.len() as u64;
        for blob in &blobs {
            let head = send(
                dest.client
                    .head(reg.url(&format!("/v2/{repository}/blobs/{blob}"))),
            )
            .await;
            here += u64::from(head.status == 200);
        }
    }
    assert!(
        here > 0 && here < total,
        "{here} of {total} blobs copied before the kill"
    );

    let (code, report) = import(&reg, &args, &env).await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(count(&report, "blobs:", "copied"), total - here, "{report}");
    assert_eq!(
        assert_imported(&source, &dest, &names, false).await as u64,
        total
    );

    let (code, again) = import(&reg, &args, &env).await;
    assert_eq!(code, 0, "{again}");
    assert_eq!(count(&again, "blobs:", "copied"), 0, "{again}");
    assert_eq!(count(&again, "tags:", "already done"), 12, "{again}");
}

#[tokio::test]
async fn imports_from_another_instance_of_this_registry_with_its_referrers_api() {
    let source_reg = Registry::start().await;
    let image = source_reg.push_image("team/app", "v1", &[3000, 5000]).await;
    // The same bytes under another repository: linked, not copied, once team/app is here.
    source_reg
        .push_image("team/copy", "v1", &[3000, 5000])
        .await;
    source_reg.push_image("team/app", "v2", &[7000]).await;
    source_reg.push_image("other/app", "v1", &[100]).await;
    // An artifact whose subject is v1, reached only through the referrers API.
    let config = source_reg.push_blob("team/app", EMPTY_JSON).await;
    let sbom = source_reg.push_blob("team/app", b"sbom of v1").await;
    let artifact = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom.v1+json",
        "config": {"mediaType": OCI_EMPTY, "digest": config, "size": 2},
        "layers": [{"mediaType": "application/vnd.example.sbom.v1+json", "digest": sbom, "size": 10}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": image.digest, "size": image.manifest.len()},
    })
    .to_string();
    let artifact_digest = sha256_digest(artifact.as_bytes());
    source_reg
        .push_manifest(
            "team/app",
            &artifact_digest,
            OCI_MANIFEST,
            artifact.as_bytes(),
        )
        .await;
    let reg = Registry::start().await;

    let from = source_reg.url("");
    let (code, report) = import(&reg, &["--from", &from, "--repository", "team/app"], &[]).await;
    assert_eq!(code, 0, "{report}");
    let source = Side::of_registry(&source_reg);
    let dest = Side::of_registry(&reg);
    let blobs = assert_imported(&source, &dest, &["team/app"], true).await;
    assert_eq!(
        count(&report, "blobs:", "copied") as usize,
        blobs,
        "{report}"
    );
    let referrers = dest
        .get(&format!("/v2/team/app/referrers/{}", image.digest))
        .await;
    assert_eq!(referrers.json()["manifests"][0]["digest"], artifact_digest);
    // Only the repository asked for.
    assert_eq!(dest.get("/v2/other/app/tags/list").await.status, 404);

    let (code, again) = import(&reg, &["--from", &from, "--repository", "team/app"], &[]).await;
    assert_eq!(code, 0, "{again}");
    assert_eq!(count(&again, "blobs:", "copied"), 0, "{again}");

    let (code, copy) = import(&reg, &["--from", &from, "--prefix", "team/c"], &[]).await;
    assert_eq!(code, 0, "{copy}");
    assert_eq!(count(&copy, "blobs:", "copied"), 0, "{copy}");
    assert_eq!(
        count(&copy, "blobs:", "linked from this registry"),
        3,
        "{copy}"
    );
    assert_imported(&source, &dest, &["team/copy"], true).await;
}

/// Asserts that `dest` serves `image` as `repository:tag`, every byte the same.
async fn assert_serves(dest: &Side<'_>, repository: &str, tag: &str, image: &PushedImage) {
    assert_eq!(
        dest.digest_of(repository, tag).await.as_deref(),
        Some(image.digest.as_str())
    );
    for (digest, bytes) in image.layers.iter().chain([&image.config]) {
        let reply = dest.get(&format!("/v2/{repository}/blobs/{digest}")).await;
        assert_eq!(reply.status, 200, "{repository}@{digest}");
        assert!(reply.body == *bytes, "{repository}@{digest} intact");
    }
}

#[tokio::test]
async fn imports_from_a_token_authenticated_registry_with_credentials_or_a_static_token() {
    const SECRET: &str = "a-test-secret-of-more-than-32-bytes-0123456789";
    let files = AuthFiles::new();
    let source_reg = Registry::start_with(&[
        ("AUTH_MODE", "token"),
        ("JWT_SECRET", SECRET),
        (
            "HTPASSWD_FILE",
            files.htpasswd.to_str().expect("UTF-8 path"),
        ),
        ("AUTH_RULES_FILE", files.rules.to_str().expect("UTF-8 path")),
    ])
    .await;
    let alice = Client::new(&source_reg, Scheme::Token, Some(ALICE));
    let image = alice.push_image("alpha/app", "v1", 9).await;
    let from = source_reg.url("");
    let (user, password) = ALICE;

    // Credentials: a token per scope from the source's realm, as docker gets them.
    let reg = Registry::start().await;
    let args = [
        "--from",
        &from,
        "--username",
        user,
        "--password-env",
        "PW",
        "--prefix",
        "alpha/",
    ];
    let (code, report) = import(&reg, &args, &[("PW", password)]).await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(count(&report, "blobs:", "copied"), 3, "{report}");
    assert_serves(&Side::of_registry(&reg), "alpha/app", "v1", &image).await;
    // A wrong password: nothing can be listed.
    let (code, _) = import(&reg, &args, &[("PW", "wrong")]).await;
    assert_eq!(code, 1);

    // A static token, sent as is (its scope covers the repository; no catalog read).
    let token = alice.token(&["repository:alpha/app:pull".to_owned()]).await;
    let other = Registry::start().await;
    let args = [
        "--from",
        &from,
        "--token-env",
        "TOKEN",
        "--repository",
        "alpha/app",
    ];
    let (code, report) = import(&other, &args, &[("TOKEN", token.as_str())]).await;
    assert_eq!(code, 0, "{report}");
    assert_serves(&Side::of_registry(&other), "alpha/app", "v1", &image).await;
}

#[tokio::test]
async fn usage_errors_exit_2_and_a_source_that_fails_exits_1() {
    let reg = Registry::start().await;
    for args in [
        &[][..],
        &["--from"][..],
        &["--from", "ftp://example"][..],
        &["--from", "http://user:pw@127.0.0.1:1"][..],
        &["--from", "http://127.0.0.1:1", "--password-env", "X"][..],
        &["--from", "http://127.0.0.1:1", "--bogus"][..],
    ] {
        let (code, _) = import(&reg, args, &[]).await;
        assert_eq!(code, 2, "{args:?}");
    }
    // Nothing listens there: the catalog cannot be read.
    let (code, _) = import(&reg, &["--from", "http://127.0.0.1:1"], &[]).await;
    assert_eq!(code, 1);
}

//! `jobs import --from-layout <dir>`: distribution's storage layout (Debian's
//! `docker-registry` 2.8, filesystem storage) read from its files, distribution stopped
//! first so that nothing but the files is read. What was pushed (a multi-platform index, an
//! artifact with its subject and its tag-schema fallback tag, an untagged manifest, a
//! repository of several tags) is checked through this registry's `/v2` API: the same tags
//! naming the same digests, the untagged manifest by digest, every blob byte for byte, the
//! artifact listed by the referrers API; a second run copies nothing; a blob whose file was
//! changed is refused (exit 1, a failure in the report) while the rest is imported.

use registry_tests::clients::ACCEPT_MANIFESTS;
use registry_tests::import::{count, import};
use registry_tests::oci_layout::{Blob, Image, MultiArch};
use registry_tests::upstream::{Distribution, Flavour};
use registry_tests::{OCI_MANIFEST, Registry, Reply, send, sha256_digest};

async fn get(reg: &Registry, path: &str) -> Reply {
    send(
        reqwest::Client::new()
            .get(reg.url(path))
            .header("Accept", ACCEPT_MANIFESTS),
    )
    .await
}

/// Asserts that `reg` serves `reference` in `repository` as `manifest`, byte for byte.
async fn assert_manifest(reg: &Registry, repository: &str, reference: &str, manifest: &Blob) {
    let reply = get(reg, &format!("/v2/{repository}/manifests/{reference}")).await;
    assert_eq!(
        reply.status,
        200,
        "{repository}:{reference}: {}",
        reply.text()
    );
    assert_eq!(
        sha256_digest(&reply.body),
        manifest.digest,
        "{repository}:{reference}"
    );
}

/// Asserts that `reg` serves every blob in `repository`, byte for byte.
async fn assert_blobs<'a>(
    reg: &Registry,
    repository: &str,
    blobs: impl IntoIterator<Item = &'a Blob>,
) {
    for blob in blobs {
        let reply = get(reg, &format!("/v2/{repository}/blobs/{}", blob.digest)).await;
        assert_eq!(reply.status, 200, "{repository}@{}", blob.digest);
        assert!(
            reply.body == blob.bytes,
            "{repository}@{} intact",
            blob.digest
        );
    }
}

async fn assert_image(reg: &Registry, repository: &str, reference: &str, image: &Image) {
    assert_manifest(reg, repository, reference, &image.manifest).await;
    assert_blobs(
        reg,
        repository,
        std::iter::once(&image.config).chain(&image.layers),
    )
    .await;
}

async fn tags(reg: &Registry, repository: &str) -> Vec<String> {
    let reply = get(reg, &format!("/v2/{repository}/tags/list?n=1000")).await;
    assert_eq!(reply.status, 200, "{repository}: {}", reply.text());
    let mut tags: Vec<String> = reply.json()["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| t.as_str().expect("tag").to_owned())
        .collect();
    tags.sort();
    tags
}

#[tokio::test]
async fn imports_distribution_s_files_with_untagged_manifests_referrers_and_refuses_a_changed_blob()
{
    let mut dist = Distribution::start(Flavour::Open).await;
    let multi = MultiArch::generate(&["amd64", "arm64"], 61);
    dist.push_multi_arch("multi/app", "v1", &multi).await;
    let image = Image::generate("amd64", 62, &[20_000]);
    dist.push_image("art/app", Some("v1"), &image).await;
    let referrer = dist.push_referrer("art/app", &image, 8).await;
    let untagged = Image::generate("arm64", 63, &[3000]);
    dist.push_image("art/app", None, &untagged).await;
    let few: Vec<Image> = (0..3)
        .map(|i| Image::generate("amd64", 200 + i, &[1000]))
        .collect();
    let mut many = Vec::new();
    for (i, image) in few.iter().enumerate() {
        dist.push_image("team/many/tags", Some(&format!("r{i}")), image)
            .await;
        many.push((format!("r{i}"), image));
    }
    for i in 0..6 {
        let image = &few[i % few.len()];
        let tag = format!("t{i}");
        dist.push_manifest("team/many/tags", &tag, OCI_MANIFEST, &image.manifest.bytes)
            .await;
        many.push((tag, image));
    }
    // Only the files are read from here on.
    dist.stop();
    let root = dist.root_dir();
    let root = root.to_str().expect("UTF-8 path");
    let reg = Registry::start().await;

    let (code, report) = import(&reg, &["--from-layout", root], &[]).await;
    assert_eq!(code, 0, "{report}");
    assert!(
        report.starts_with(&format!("import from {root}:")),
        "{report}"
    );
    assert_eq!(count(&report, "import from", "repositories"), 3, "{report}");
    assert_manifest(&reg, "multi/app", "v1", &multi.index).await;
    for platform in &multi.images {
        assert_image(&reg, "multi/app", &platform.manifest.digest, platform).await;
    }
    assert_image(&reg, "art/app", "v1", &image).await;
    assert_image(&reg, "art/app", &untagged.manifest.digest, &untagged).await;
    assert_manifest(
        &reg,
        "art/app",
        &referrer.manifest.digest,
        &referrer.manifest,
    )
    .await;
    assert_blobs(&reg, "art/app", &referrer.blobs).await;
    assert_manifest(
        &reg,
        "art/app",
        &referrer.fallback_tag,
        &referrer.fallback_index,
    )
    .await;
    assert_eq!(
        tags(&reg, "art/app").await,
        [referrer.fallback_tag.clone(), "v1".to_owned()]
    );
    let referrers = get(
        &reg,
        &format!("/v2/art/app/referrers/{}", image.manifest.digest),
    )
    .await;
    assert_eq!(referrers.status, 200, "{}", referrers.text());
    let listed = referrers.json()["manifests"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["digest"], referrer.manifest.digest);
    for (tag, image) in &many {
        assert_image(&reg, "team/many/tags", tag, image).await;
    }
    let mut expected: Vec<String> = many.iter().map(|(tag, _)| tag.clone()).collect();
    expected.sort();
    assert_eq!(tags(&reg, "team/many/tags").await, expected);
    assert_eq!(count(&report, "tags:", "set"), 1 + 2 + 9, "{report}");
    // Index children, the image, the artifact, the fallback index, the untagged one, three.
    assert_eq!(
        count(&report, "manifests:", "stored"),
        3 + 4 + 3,
        "{report}"
    );
    assert_eq!(count(&report, "verification:", "mismatches"), 0, "{report}");
    // The verification covers the untagged manifest's blobs too: every blob copied.
    assert_eq!(
        count(&report, "verification:", "blobs"),
        count(&report, "blobs:", "copied"),
        "{report}"
    );

    // A second run copies nothing.
    let (code, again) = import(&reg, &["--from-layout", root], &[]).await;
    assert_eq!(code, 0, "{again}");
    assert_eq!(count(&again, "blobs:", "copied"), 0, "{again}");
    assert_eq!(count(&again, "manifests:", "stored"), 0, "{again}");
    assert_eq!(count(&again, "tags:", "set"), 0, "{again}");
    assert_eq!(count(&again, "tags:", "already done"), 12, "{again}");

    // New content, one of its layers changed on disk after the push: refused, the rest
    // imported.
    dist.start_again().await;
    let bad = Image::generate("amd64", 64, &[5000]);
    dist.push_image("late/bad", Some("v1"), &bad).await;
    let good = Image::generate("amd64", 65, &[5000]);
    dist.push_image("late/good", Some("v1"), &good).await;
    dist.stop();
    let file = dist.blob_file(&bad.layers[0].digest);
    let mut bytes = std::fs::read(&file).expect("read the layer file");
    bytes[100] ^= 0xff;
    std::fs::write(&file, &bytes).expect("change the layer file");

    let (code, late) = import(&reg, &["--from-layout", root, "--prefix", "late/"], &[]).await;
    assert_eq!(code, 1, "{late}");
    assert!(
        late.lines()
            .any(|l| l.starts_with("failed: late/bad") && l.contains(&bad.layers[0].digest)),
        "{late}"
    );
    assert_image(&reg, "late/good", "v1", &good).await;
    assert_eq!(get(&reg, "/v2/late/bad/manifests/v1").await.status, 404);
    let reply = get(
        &reg,
        &format!("/v2/late/bad/blobs/{}", bad.layers[0].digest),
    )
    .await;
    assert_eq!(reply.status, 404);
}

#[tokio::test]
async fn a_layout_without_distribution_s_tree_or_with_credentials_is_a_usage_error() {
    let reg = Registry::start().await;
    let empty = tempfile::tempdir().expect("temp dir");
    let empty = empty.path().to_str().expect("UTF-8 path");
    for args in [
        &["--from-layout", empty][..],
        &["--from-layout", "s3://bucket/registry"][..],
        &["--from-layout", "gs://bucket"][..],
        &["--from-layout", empty, "--from", "http://127.0.0.1:1"][..],
        &[
            "--from-layout",
            empty,
            "--username",
            "u",
            "--password-env",
            "P",
        ][..],
    ] {
        let (code, _) = import(&reg, args, &[]).await;
        assert_eq!(code, 2, "{args:?}");
    }
}

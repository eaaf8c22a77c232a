//! containerd's `ctr` (Debian's containerd) against the registry, on a containerd of each
//! test's own: a two-platform index pulled with `--all-platforms`, pushed back, exported to
//! an archive and imported into another namespace and pushed again, every digest unchanged;
//! a single image pulled for one platform and pushed to another repository.

use std::collections::BTreeSet;

use registry_tests::clients::{Tool, anonymous, assert_complete};
use registry_tests::daemons::Containerd;
use registry_tests::oci_layout::{Image, MultiArch};
use registry_tests::{OCI_INDEX, Registry};

/// Pushes `image` (its blobs, then its manifest) over HTTP as `repo:tag`.
async fn seed_image(reg: &Registry, repo: &str, tag: &str, image: &Image) {
    for blob in std::iter::once(&image.config).chain(&image.layers) {
        reg.push_blob(repo, &blob.bytes).await;
    }
    let media_type = image.manifest.media_type;
    reg.push_manifest(repo, tag, media_type, &image.manifest.bytes)
        .await;
}

/// Pushes every image of `multi` by digest, then the index as `repo:tag`.
async fn seed_index(reg: &Registry, repo: &str, tag: &str, multi: &MultiArch) {
    for image in &multi.images {
        seed_image(reg, repo, &image.manifest.digest, image).await;
    }
    reg.push_manifest(repo, tag, OCI_INDEX, &multi.index.bytes)
        .await;
}

/// The digest `ctr images ls` shows for `reference`.
async fn listed_digest(ctr: &Tool, reg: &Registry, reference: &str) -> String {
    let listing = ctr.ok(reg, &["images", "ls"]).await;
    listing
        .lines()
        .find_map(|line| {
            let mut columns = line.split_whitespace();
            (columns.next() == Some(reference)).then(|| columns.nth(1))?
        })
        .unwrap_or_else(|| panic!("{reference} not in `ctr images ls`:\n{listing}"))
        .to_owned()
}

/// The digests of every blob in the content store.
async fn content(ctr: &Tool, reg: &Registry) -> BTreeSet<String> {
    let listing = ctr.ok(reg, &["content", "ls", "--quiet"]).await;
    listing.lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn index_is_pulled_for_all_platforms_pushed_exported_and_imported() {
    let reg = Registry::start().await;
    let containerd = Containerd::start().await;
    let ctr = containerd.ctr("pulled");
    let multi = MultiArch::generate(&["amd64", "arm64"], 31);
    seed_index(&reg, "team/multi", "1.0", &multi).await;

    let source = format!("{}/team/multi:1.0", reg.host());
    let pull = [
        "images",
        "pull",
        "--plain-http",
        "--all-platforms",
        "--snapshotter=native",
        &source,
    ];
    ctr.ok(&reg, &pull).await;
    assert_eq!(listed_digest(&ctr, &reg, &source).await, multi.index.digest);
    let held = content(&ctr, &reg).await;
    assert!(
        multi.digests().is_subset(&held),
        "missing after pull --all-platforms: {:?}",
        multi.digests().difference(&held).collect::<Vec<_>>()
    );

    let copy = format!("{}/team/copy:1.0", reg.host());
    ctr.ok(&reg, &["images", "tag", &source, &copy]).await;
    ctr.ok(&reg, &["images", "push", "--plain-http", &copy])
        .await;
    let stored = assert_complete(&anonymous(&reg), "team/copy", "1.0").await;
    assert_eq!(stored.digest, multi.index.digest);
    assert_eq!(stored.bytes, multi.index.bytes);

    let archive = containerd.path("multi.tar");
    let archive = archive.to_str().expect("UTF-8 path");
    ctr.ok(
        &reg,
        &["images", "export", "--all-platforms", archive, &source],
    )
    .await;
    let imported = containerd.ctr("imported");
    imported
        .ok(
            &reg,
            &[
                "images",
                "import",
                "--all-platforms",
                "--snapshotter=native",
                archive,
            ],
        )
        .await;
    assert_eq!(
        listed_digest(&imported, &reg, &source).await,
        multi.index.digest
    );
    let again = format!("{}/team/imported:1.0", reg.host());
    imported.ok(&reg, &["images", "tag", &source, &again]).await;
    imported
        .ok(&reg, &["images", "push", "--plain-http", &again])
        .await;
    let stored = assert_complete(&anonymous(&reg), "team/imported", "1.0").await;
    assert_eq!(stored.digest, multi.index.digest);
}

#[tokio::test]
async fn one_platform_is_pulled_and_pushed_as_an_image() {
    let reg = Registry::start().await;
    let containerd = Containerd::start().await;
    let ctr = containerd.ctr("single");
    let multi = MultiArch::generate(&["amd64", "arm64"], 32);
    seed_index(&reg, "team/multi", "2.0", &multi).await;
    let arm64 = multi
        .images
        .iter()
        .find(|image| image.architecture == "arm64")
        .expect("arm64 image");

    // By digest: the arm64 manifest itself, not the index.
    let source = format!("{}/team/multi@{}", reg.host(), arm64.manifest.digest);
    let pull = [
        "images",
        "pull",
        "--plain-http",
        "--platform=linux/arm64",
        "--snapshotter=native",
        &source,
    ];
    ctr.ok(&reg, &pull).await;
    let held = content(&ctr, &reg).await;
    assert!(
        arm64.digests().is_subset(&held),
        "arm64 image not all pulled"
    );
    let amd64 = &multi.images[0];
    assert!(
        !held.contains(&amd64.manifest.digest),
        "the amd64 image was pulled too"
    );

    let target = format!("{}/team/arm:1.0", reg.host());
    ctr.ok(&reg, &["images", "tag", &source, &target]).await;
    ctr.ok(
        &reg,
        &[
            "images",
            "push",
            "--plain-http",
            "--platform=linux/arm64",
            &target,
        ],
    )
    .await;
    let stored = assert_complete(&anonymous(&reg), "team/arm", "1.0").await;
    assert_eq!(stored.digest, arm64.manifest.digest);
    assert_eq!(stored.bytes, arm64.manifest.bytes);
    assert_eq!(stored.config_digest(), arm64.config.digest);
}

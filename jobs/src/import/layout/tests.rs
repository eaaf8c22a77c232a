//! A layout written by hand in a temporary directory, as distribution 2.8 lays it out.

use std::path::Path;

use futures_util::StreamExt;

use super::*;

/// Writes distribution's files for one repository's content.
struct Layout {
    dir: tempfile::TempDir,
}

impl Layout {
    fn new() -> Layout {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("docker/registry/v2/repositories")).expect("mkdir");
        Layout { dir }
    }

    fn v2(&self) -> std::path::PathBuf {
        self.dir.path().join("docker/registry/v2")
    }

    fn write(path: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, bytes).expect("write");
    }

    /// Stores bytes under `blobs/`; their digest.
    fn blob(&self, bytes: &[u8]) -> Digest {
        let digest = Digest::sha256_of(bytes);
        let hex = digest.hex();
        Layout::write(
            &self
                .v2()
                .join(format!("blobs/sha256/{}/{hex}/data", &hex[..2])),
            bytes,
        );
        digest
    }

    fn link(&self, repository: &str, under: &str, digest: &Digest) {
        let path = self.v2().join(format!(
            "repositories/{repository}/{under}/sha256/{}/link",
            digest.hex()
        ));
        Layout::write(&path, digest.to_string().as_bytes());
    }

    fn layer(&self, repository: &str, bytes: &[u8]) -> Digest {
        let digest = self.blob(bytes);
        self.link(repository, "_layers", &digest);
        digest
    }

    fn manifest(&self, repository: &str, json: &serde_json::Value) -> Digest {
        let digest = self.blob(json.to_string().as_bytes());
        self.link(repository, "_manifests/revisions", &digest);
        digest
    }

    fn tag(&self, repository: &str, tag: &str, digest: &Digest) {
        let path = self.v2().join(format!(
            "repositories/{repository}/_manifests/tags/{tag}/current/link"
        ));
        Layout::write(&path, digest.to_string().as_bytes());
    }

    fn source(&self) -> LayoutSource {
        LayoutSource::new(self.dir.path()).expect("a layout")
    }
}

fn name(raw: &str) -> RepositoryName {
    RepositoryName::parse(raw).expect("name")
}

fn image(config: &Digest, config_type: &str, layer: &Digest) -> serde_json::Value {
    serde_json::json!({
        "schemaVersion": 2,
        "config": {"mediaType": config_type, "digest": config.to_string(), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.to_string(), "size": 5}],
    })
}

async fn read_all(blob: SourceBlob) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut stream = blob.bytes;
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.expect("chunk"));
    }
    bytes
}

#[tokio::test]
async fn repositories_are_the_directories_with_manifests_nested_and_sorted() {
    let layout = Layout::new();
    let empty = serde_json::json!({"schemaVersion": 2, "manifests": []});
    for repository in [
        "zeta",
        "team/app",
        "team",
        "team/app/sub",
        "alpha/beta/gamma",
    ] {
        layout.manifest(repository, &empty);
    }
    // A directory with only uploads is no repository.
    std::fs::create_dir_all(layout.v2().join("repositories/half/_uploads")).expect("mkdir");
    let names = layout.source().repositories().await.expect("listed");
    let names: Vec<&str> = names.iter().map(RepositoryName::as_str).collect();
    assert_eq!(
        names,
        [
            "alpha/beta/gamma",
            "team",
            "team/app",
            "team/app/sub",
            "zeta"
        ]
    );
    assert_eq!(
        layout.source().describe(),
        std::fs::canonicalize(layout.dir.path())
            .expect("canonical")
            .display()
            .to_string()
    );
}

#[tokio::test]
async fn tags_and_every_revision_are_read_from_their_links() {
    let layout = Layout::new();
    let config = layout.layer("app", b"{}");
    let layer = layout.layer("app", b"layer");
    let tagged = layout.manifest(
        "app",
        &image(&config, "application/vnd.oci.image.config.v1+json", &layer),
    );
    let mut untagged_json = image(&config, DOCKER_CONFIG, &layer);
    untagged_json["annotations"] = serde_json::json!({"n": "1"});
    let untagged = layout.manifest("app", &untagged_json);
    layout.tag("app", "v2", &tagged);
    layout.tag("app", "latest", &tagged);
    // A tag whose current link was removed.
    std::fs::create_dir_all(
        layout
            .v2()
            .join("repositories/app/_manifests/tags/gone/index"),
    )
    .expect("mkdir");
    let source = layout.source();
    let repository = name("app");

    let tags = source.tags(&repository).await.expect("tags");
    let listed: Vec<(&str, &Digest)> = tags.iter().map(|t| (t.tag.as_str(), &t.digest)).collect();
    assert_eq!(listed, [("latest", &tagged), ("v2", &tagged)]);
    let mut all = source
        .all_manifests(&repository)
        .await
        .expect("listed")
        .expect("a layout lists its manifests");
    all.sort_by_key(ToString::to_string);
    let mut expected = vec![tagged.clone(), untagged.clone()];
    expected.sort_by_key(ToString::to_string);
    assert_eq!(all, expected);
    assert!(
        source
            .referrers(&repository, &tagged)
            .await
            .expect("none")
            .is_none()
    );

    // Media types inferred from the shape: OCI for an OCI config, Docker's for Docker's.
    let fetched = source
        .manifest(&repository, &tagged)
        .await
        .expect("manifest");
    assert_eq!(fetched.media_type, OCI_MANIFEST);
    assert_eq!(Digest::sha256_of(&fetched.bytes), tagged);
    let fetched = source
        .manifest(&repository, &untagged)
        .await
        .expect("manifest");
    assert_eq!(fetched.media_type, DOCKER_MANIFEST);

    assert!(matches!(
        source.tags(&name("nothing")).await,
        Err(SourceError::NotFound(_))
    ));
}

#[tokio::test]
async fn media_type_is_the_field_when_given_and_an_index_without_it() {
    let layout = Layout::new();
    let list = layout.manifest(
        "app",
        &serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json", "manifests": []}),
    );
    let index = layout.manifest(
        "app",
        &serde_json::json!({"schemaVersion": 2, "manifests": []}),
    );
    let odd = layout.manifest("app", &serde_json::json!({"schemaVersion": 2}));
    let source = layout.source();
    let repository = name("app");
    let fetched = source.manifest(&repository, &list).await.expect("list");
    assert_eq!(
        fetched.media_type,
        registry_common::oci::manifest::DOCKER_MANIFEST_LIST
    );
    let fetched = source.manifest(&repository, &index).await.expect("index");
    assert_eq!(fetched.media_type, OCI_INDEX);
    assert!(matches!(
        source.manifest(&repository, &odd).await,
        Err(SourceError::Invalid(_))
    ));
    // Another repository has no such revision.
    layout.manifest(
        "other",
        &serde_json::json!({"schemaVersion": 2, "manifests": []}),
    );
    assert!(matches!(
        source.manifest(&name("other"), &list).await,
        Err(SourceError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_blob_is_read_only_where_it_is_linked() {
    let layout = Layout::new();
    let layer = layout.layer("app", b"layer bytes");
    layout.manifest(
        "other",
        &serde_json::json!({"schemaVersion": 2, "manifests": []}),
    );
    let source = layout.source();

    let blob = source.blob(&name("app"), &layer).await.expect("linked");
    assert_eq!(blob.size, Some(11));
    assert_eq!(read_all(blob).await, b"layer bytes");
    // Stored, but not linked to `other`: distribution answers 404 there too.
    assert!(matches!(
        source.blob(&name("other"), &layer).await,
        Err(SourceError::NotFound(_))
    ));
    // Linked, but its data gone.
    let missing = Digest::sha256_of(b"never stored");
    layout.link("app", "_layers", &missing);
    assert!(matches!(
        source.blob(&name("app"), &missing).await,
        Err(SourceError::NotFound(_))
    ));
    // A manifest revision is readable as a blob.
    let manifest = layout.manifest(
        "other",
        &serde_json::json!({"schemaVersion": 2, "manifests": [], "annotations": {"a": "b"}}),
    );
    assert!(source.blob(&name("other"), &manifest).await.is_ok());
}

#[tokio::test]
async fn a_link_that_does_not_parse_is_invalid_and_a_missing_root_not_found() {
    let layout = Layout::new();
    let path = layout
        .v2()
        .join("repositories/app/_manifests/tags/v1/current/link");
    Layout::write(&path, b"not a digest");
    assert!(matches!(
        layout.source().tags(&name("app")).await,
        Err(SourceError::Invalid(_))
    ));
    assert!(matches!(
        LayoutSource::new(&layout.dir.path().join("absent")),
        Err(SourceError::NotFound(_))
    ));
}

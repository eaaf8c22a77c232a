//! podman and buildah (Debian's) against the registry, rootful on vfs storage of each test's
//! own: images built `FROM scratch` by buildah, pushed by podman in docker (v2s2) and OCI
//! formats and by buildah with zstd layers, pulled back by digest; a two-platform manifest
//! list pushed with `manifest push --all` by both, pulled by architecture. What the registry
//! stores is checked over HTTP against the digests the clients report and the files built.
//!
//! Configuration comes only from the test's directory (registries, storage, engine, policy,
//! credentials), except the signature policy of `podman manifest push`, which has no flag for
//! it and reads the system's.

use std::path::PathBuf;

use registry_tests::clients::{Tool, anonymous, assert_complete, require};
use registry_tests::{DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, Registry, pseudo_random_bytes};

/// The zstd frame magic number, first bytes of a zstd-compressed layer.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// podman and buildah sharing a storage and a configuration in a temporary directory.
struct Containers {
    dir: tempfile::TempDir,
}

impl Containers {
    fn new() -> Containers {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        for sub in ["home", "tmp", "config", "libpod-tmp"] {
            std::fs::create_dir(root.join(sub)).expect("create containers dir");
        }
        let files = [
            (
                "registries.conf",
                "unqualified-search-registries = []\n".to_owned(),
            ),
            (
                "storage.conf",
                format!(
                    "[storage]\ndriver = \"vfs\"\ngraphroot = \"{0}/storage\"\n\
                     runroot = \"{0}/run\"\n",
                    root.display()
                ),
            ),
            (
                "containers.conf",
                format!(
                    "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                     events_logfile_path = \"{}/events.log\"\n",
                    root.display()
                ),
            ),
            (
                "policy.json",
                r#"{"default":[{"type":"insecureAcceptAnything"}]}"#.to_owned(),
            ),
            ("auth.json", r#"{"auths":{}}"#.to_owned()),
        ];
        for (name, text) in files {
            std::fs::write(root.join(name), text).expect("write containers config");
        }
        Containers { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn tool(&self, program: &str) -> Tool {
        let root = self.dir.path();
        let install = format!("apt-get install {program}");
        Tool::new(require(program, &install))
            .arg(format!("--root={}", root.join("storage").display()))
            .arg(format!("--runroot={}", root.join("run").display()))
            .arg("--storage-driver=vfs")
            .env("CONTAINERS_REGISTRIES_CONF", root.join("registries.conf"))
            .env("CONTAINERS_STORAGE_CONF", root.join("storage.conf"))
            .env("CONTAINERS_CONF", root.join("containers.conf"))
            .env("REGISTRY_AUTH_FILE", root.join("auth.json"))
            .env("HOME", root.join("home"))
            .env("XDG_CONFIG_HOME", root.join("config"))
            .env("TMPDIR", root.join("tmp"))
    }

    fn podman(&self) -> Tool {
        let tmp = self.path("libpod-tmp");
        self.tool("podman")
            .arg(format!("--tmpdir={}", tmp.display()))
    }

    fn buildah(&self) -> Tool {
        self.tool("buildah")
    }

    fn policy(&self) -> String {
        format!("--signature-policy={}", self.path("policy.json").display())
    }

    /// A `--digestfile` argument and the file it names.
    fn digest_file(&self, name: &str) -> (String, PathBuf) {
        let path = self.path(&format!("{name}.digest"));
        (format!("--digestfile={}", path.display()), path)
    }

    /// `buildah bud` from scratch, one layer per file; `extra` goes before the context.
    async fn build(&self, reg: &Registry, tag: &str, files: &[(&str, &[u8])], extra: &[&str]) {
        let context = self.path(&format!("context-{}", tag.replace(['/', ':'], "-")));
        std::fs::create_dir(&context).expect("create build context");
        let mut containerfile = String::from("FROM scratch\n");
        for (name, bytes) in files {
            std::fs::write(context.join(name), bytes).expect("write context file");
            containerfile.push_str(&format!("COPY {name} /{name}\n"));
        }
        std::fs::write(context.join("Containerfile"), containerfile).expect("write Containerfile");
        let mut args = vec![
            "bud".to_owned(),
            "--quiet".to_owned(),
            // One layer per instruction, as docker builds; buildah squashes them otherwise.
            "--layers".to_owned(),
            format!("--tag={tag}"),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        args.push(context.display().to_string());
        self.buildah().ok(reg, &args).await;
    }

    async fn inspect(&self, reg: &Registry, image: &str, format: &str) -> String {
        let args = ["image", "inspect", "--format", format, image];
        self.podman().ok(reg, &args).await.trim().to_owned()
    }

    /// The content of `/name` in `image`, read from the mounted image.
    async fn file_in(&self, reg: &Registry, image: &str, name: &str) -> Vec<u8> {
        let podman = self.podman();
        let mounted = podman.ok(reg, &["image", "mount", image]).await;
        let bytes = std::fs::read(PathBuf::from(mounted.trim()).join(name))
            .unwrap_or_else(|e| panic!("read /{name} of {image}: {e}"));
        podman.ok(reg, &["image", "unmount", image]).await;
        bytes
    }

    /// Removes every local image.
    async fn remove_all(&self, reg: &Registry) {
        self.podman().ok(reg, &["rmi", "--all", "--force"]).await;
    }
}

fn read_digest(path: &PathBuf) -> String {
    std::fs::read_to_string(path)
        .expect("read digest file")
        .trim()
        .to_owned()
}

#[tokio::test]
async fn podman_pushes_docker_and_oci_formats_and_pulls_them_back() {
    let reg = Registry::start().await;
    let containers = Containers::new();
    let podman = containers.podman();
    let big = pseudo_random_bytes(256 << 10, 41);
    let small = b"built by buildah\n".to_vec();
    let local = "localhost/app:v1";
    let files: &[(&str, &[u8])] = &[("big", &big), ("small", &small)];
    containers.build(&reg, local, files, &[]).await;

    let mut pushed = Vec::new();
    for (format, media_type) in [("v2s2", DOCKER_MANIFEST), ("oci", OCI_MANIFEST)] {
        let dest = format!("docker://{}/team/app:{format}", reg.host());
        let (digest_arg, digest_file) = containers.digest_file(format);
        let args = [
            "push",
            "--tls-verify=false",
            &containers.policy(),
            &format!("--format={format}"),
            &digest_arg,
            local,
            &dest,
        ];
        podman.ok(&reg, &args).await;
        let stored = assert_complete(&anonymous(&reg), "team/app", format).await;
        assert_eq!(stored.digest, read_digest(&digest_file), "{format} digest");
        assert_eq!(stored.media_type, media_type, "{format}");
        assert_eq!(stored.layers().len(), 2);
        pushed.push(stored.digest);
    }

    containers.remove_all(&reg).await;
    for digest in &pushed {
        let image = format!("{}/team/app@{digest}", reg.host());
        let args = ["pull", "--tls-verify=false", &containers.policy(), &image];
        podman.ok(&reg, &args).await;
        // Both formats may carry one config, hence one local image with both digests.
        let repo_digests = containers
            .inspect(&reg, &image, "{{json .RepoDigests}}")
            .await;
        assert!(repo_digests.contains(&image), "{image} in {repo_digests}");
        assert_eq!(containers.file_in(&reg, &image, "big").await, big);
        assert_eq!(containers.file_in(&reg, &image, "small").await, small);
    }
}

#[tokio::test]
async fn buildah_pushes_zstd_layers_that_podman_pulls_back() {
    let reg = Registry::start().await;
    let containers = Containers::new();
    let content = pseudo_random_bytes(128 << 10, 42);
    let local = "localhost/zstd:v1";
    containers
        .build(&reg, local, &[("data", &content)], &[])
        .await;

    let dest = format!("docker://{}/team/zstd:v1", reg.host());
    let (digest_arg, digest_file) = containers.digest_file("zstd");
    let args = [
        "push",
        "--tls-verify=false",
        &containers.policy(),
        "--format=oci",
        "--compression-format=zstd",
        &digest_arg,
        local,
        &dest,
    ];
    containers.buildah().ok(&reg, &args).await;
    let client = anonymous(&reg);
    let stored = assert_complete(&client, "team/zstd", "v1").await;
    assert_eq!(stored.digest, read_digest(&digest_file));
    assert_eq!(stored.media_type, OCI_MANIFEST);
    for (media_type, digest) in stored.layers() {
        assert_eq!(media_type, "application/vnd.oci.image.layer.v1.tar+zstd");
        let layer = registry_tests::clients::blob(&client, "team/zstd", &digest).await;
        assert_eq!(layer[..4], ZSTD_MAGIC, "layer {digest} is not zstd");
    }

    containers.remove_all(&reg).await;
    let image = format!("{}/team/zstd:v1", reg.host());
    let args = ["pull", "--tls-verify=false", &containers.policy(), &image];
    containers.podman().ok(&reg, &args).await;
    assert_eq!(
        containers.inspect(&reg, &image, "{{.Digest}}").await,
        stored.digest
    );
    assert_eq!(containers.file_in(&reg, &image, "data").await, content);
}

#[tokio::test]
async fn manifest_lists_are_pushed_with_all_and_pulled_by_architecture() {
    let reg = Registry::start().await;
    let containers = Containers::new();
    let (buildah, podman) = (containers.buildah(), containers.podman());
    let list = "localhost/list:1.0";
    buildah.ok(&reg, &["manifest", "create", list]).await;
    let arches = ["amd64", "arm64"];
    for arch in arches {
        let content = format!("built for {arch}\n").into_bytes();
        let tag = format!("localhost/img:{arch}");
        let extra = [&format!("--arch={arch}"), "--manifest", list];
        containers
            .build(&reg, &tag, &[("arch", &content)], &extra)
            .await;
    }

    let by_buildah = format!("docker://{}/team/list:buildah", reg.host());
    let (digest_arg, digest_file) = containers.digest_file("buildah-list");
    let args = [
        "manifest",
        "push",
        "--all",
        "--tls-verify=false",
        &containers.policy(),
        &digest_arg,
        list,
        &by_buildah,
    ];
    buildah.ok(&reg, &args).await;
    let by_podman = format!("docker://{}/team/list:podman", reg.host());
    let args = [
        "manifest",
        "push",
        "--all",
        "--tls-verify=false",
        list,
        &by_podman,
    ];
    podman.ok(&reg, &args).await;

    let client = anonymous(&reg);
    let buildah_list = assert_complete(&client, "team/list", "buildah").await;
    assert_eq!(buildah_list.digest, read_digest(&digest_file));
    let podman_list = assert_complete(&client, "team/list", "podman").await;
    for stored in [&buildah_list, &podman_list] {
        assert_eq!(stored.media_type, OCI_INDEX);
        let listed: Vec<String> = stored.platforms().into_iter().map(|(a, _)| a).collect();
        assert_eq!(listed, arches, "platforms of {}", stored.digest);
    }

    containers.remove_all(&reg).await;
    for (tag, stored) in [("podman", &podman_list), ("buildah", &buildah_list)] {
        let image = format!("{}/team/list:{tag}", reg.host());
        for (arch, digest) in stored.platforms() {
            let args = [
                "pull",
                "--tls-verify=false",
                &containers.policy(),
                &format!("--arch={arch}"),
                &image,
            ];
            podman.ok(&reg, &args).await;
            // podman records the list's digest; the image it chose is the one whose
            // config the platform's manifest names.
            let child = registry_tests::clients::manifest(&client, "team/list", &digest).await;
            let inspected = containers
                .inspect(&reg, &image, "{{.Architecture}} sha256:{{.Id}} {{.Digest}}")
                .await;
            let want = format!("{arch} {} {}", child.config_digest(), stored.digest);
            assert_eq!(inspected, want, "{image} for {arch}");
            let content = format!("built for {arch}\n").into_bytes();
            assert_eq!(containers.file_in(&reg, &image, "arch").await, content);
        }
    }
}

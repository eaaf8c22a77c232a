//! docker (Debian's docker.io: dockerd and its CLI) against the registry. Each test starts
//! its own dockerd on its own containerd in temporary directories; images are built
//! `FROM scratch`, so nothing comes from the network. What the registry stores is checked
//! over HTTP against what docker reports and holds: manifest digests, image IDs (the config
//! digest), platforms, file contents.

use std::process::{Output, Stdio};

use registry_tests::auth::{ALICE, AuthFiles, BOB, Client, Scheme};
use registry_tests::clients::{Tool, anonymous, assert_complete, reported_digest};
use registry_tests::daemons::Dockerd;
use registry_tests::{DOCKER_LIST, DOCKER_MANIFEST, Registry, pseudo_random_bytes};

/// Builds `tag` from scratch with one layer per file (a `COPY` each); returns the image ID.
async fn build(
    dockerd: &Dockerd,
    reg: &Registry,
    tag: &str,
    files: &[(&str, &[u8])],
    platform: Option<&str>,
) -> String {
    let context = dockerd.path(&format!("context-{}", tag.replace(['/', ':'], "-")));
    std::fs::create_dir(&context).expect("create build context");
    let mut dockerfile = String::from("FROM scratch\n");
    for (name, bytes) in files {
        std::fs::write(context.join(name), bytes).expect("write context file");
        dockerfile.push_str(&format!("COPY {name} /{name}\n"));
    }
    std::fs::write(context.join("Dockerfile"), dockerfile).expect("write Dockerfile");
    let mut args = vec!["build".to_owned(), "--quiet".to_owned()];
    if let Some(platform) = platform {
        args.push(format!("--platform={platform}"));
    }
    args.extend(["--tag".to_owned(), tag.to_owned()]);
    args.push(context.display().to_string());
    dockerd.docker().ok(reg, &args).await;
    image_id(&dockerd.docker(), reg, tag).await
}

async fn image_id(docker: &Tool, reg: &Registry, reference: &str) -> String {
    inspect(docker, reg, reference, "{{.Id}}").await
}

async fn inspect(docker: &Tool, reg: &Registry, reference: &str, format: &str) -> String {
    let args = ["image", "inspect", "--format", format, reference];
    docker.ok(reg, &args).await.trim().to_owned()
}

/// `docker push`; returns the digest docker reports.
async fn push(docker: &Tool, reg: &Registry, reference: &str) -> String {
    reported_digest(&docker.ok(reg, &["push", reference]).await)
}

/// Removes every tag and digest reference docker holds for `references`.
async fn remove(docker: &Tool, reg: &Registry, references: &[&str]) {
    let mut args = vec!["image", "rm", "--force"];
    args.extend(references);
    docker.ok(reg, &args).await;
}

/// The content of `/path` in `image`, copied out of a container created (not run) from it.
async fn file_in(dockerd: &Dockerd, reg: &Registry, image: &str, path: &str) -> Vec<u8> {
    let docker = dockerd.docker();
    let created = docker
        .ok(reg, &["create", "--entrypoint", "/none", image])
        .await;
    let container = created.trim();
    let out = dockerd.path(&format!("copied-{container}"));
    std::fs::create_dir(&out).expect("create copy dir");
    let dest = out.display().to_string();
    docker
        .ok(reg, &["cp", &format!("{container}:{path}"), &dest])
        .await;
    docker.ok(reg, &["rm", container]).await;
    let name = path.rsplit('/').next().expect("file name");
    std::fs::read(out.join(name)).expect("read copied file")
}

#[tokio::test]
async fn scratch_image_is_pushed_removed_and_pulled_by_tag_and_digest() {
    let reg = Registry::start().await;
    let dockerd = Dockerd::start().await;
    let docker = dockerd.docker();
    let big = pseudo_random_bytes(512 << 10, 21);
    let small = b"hello from scratch\n".to_vec();
    let tag = format!("{}/team/app:v1", reg.host());
    let id = build(
        &dockerd,
        &reg,
        &tag,
        &[("big", &big), ("small", &small)],
        None,
    )
    .await;

    let digest = push(&docker, &reg, &tag).await;
    let anonymous = anonymous(&reg);
    let stored = assert_complete(&anonymous, "team/app", "v1").await;
    assert_eq!(stored.digest, digest, "digest docker reported");
    assert_eq!(stored.media_type, DOCKER_MANIFEST);
    assert_eq!(
        stored.config_digest(),
        id,
        "config is the image docker built"
    );
    assert_eq!(stored.layers().len(), 2, "one layer per COPY");

    let by_digest = format!("{}/team/app@{digest}", reg.host());
    remove(&docker, &reg, &[&tag]).await;
    docker.ok(&reg, &["pull", &tag]).await;
    assert_eq!(image_id(&docker, &reg, &tag).await, id);
    let repo_digests = inspect(&docker, &reg, &tag, "{{json .RepoDigests}}").await;
    assert!(repo_digests.contains(&by_digest), "{repo_digests}");
    assert_eq!(file_in(&dockerd, &reg, &tag, "/big").await, big);
    assert_eq!(file_in(&dockerd, &reg, &tag, "/small").await, small);

    remove(&docker, &reg, &[&tag, &by_digest]).await;
    docker.ok(&reg, &["pull", &by_digest]).await;
    assert_eq!(image_id(&docker, &reg, &by_digest).await, id);
    assert_eq!(file_in(&dockerd, &reg, &by_digest, "/big").await, big);
}

#[tokio::test]
async fn two_platform_list_is_pushed_and_pulled_per_platform() {
    let reg = Registry::start().await;
    let dockerd = Dockerd::start().await;
    let docker = dockerd.docker();
    let mut images = Vec::new();
    for arch in ["amd64", "arm64"] {
        let tag = format!("{}/team/multi:{arch}", reg.host());
        let content = format!("built for {arch}\n").into_bytes();
        let platform = format!("linux/{arch}");
        let id = build(&dockerd, &reg, &tag, &[("arch", &content)], Some(&platform)).await;
        assert_eq!(
            inspect(&docker, &reg, &tag, "{{.Architecture}}").await,
            arch
        );
        let digest = push(&docker, &reg, &tag).await;
        images.push((arch, tag, id, digest, content));
    }

    let list = format!("{}/team/multi:1.0", reg.host());
    let mut create = vec!["manifest", "create", "--insecure", list.as_str()];
    create.extend(images.iter().map(|(_, tag, ..)| tag.as_str()));
    docker.ok(&reg, &create).await;
    let pushed = docker
        .ok(&reg, &["manifest", "push", "--insecure", &list])
        .await;
    let stored = assert_complete(&anonymous(&reg), "team/multi", "1.0").await;
    assert_eq!(pushed.trim(), stored.digest, "digest docker reported");
    assert_eq!(stored.media_type, DOCKER_LIST);
    let expected: Vec<(String, String)> = images
        .iter()
        .map(|(arch, _, _, digest, _)| ((*arch).to_owned(), digest.clone()))
        .collect();
    assert_eq!(stored.platforms(), expected);

    let mut tags: Vec<&str> = images.iter().map(|(_, tag, ..)| tag.as_str()).collect();
    tags.push(&list);
    remove(&docker, &reg, &tags).await;
    for (arch, _, id, _, content) in &images {
        let platform = format!("linux/{arch}");
        docker
            .ok(&reg, &["pull", "--platform", &platform, &list])
            .await;
        assert_eq!(image_id(&docker, &reg, &list).await, *id, "{platform}");
        assert_eq!(
            inspect(&docker, &reg, &list, "{{.Architecture}}").await,
            *arch
        );
        assert_eq!(file_in(&dockerd, &reg, &list, "/arch").await, *content);
    }
}

#[tokio::test]
async fn image_of_64_mib_in_four_layers_goes_in_and_out() {
    let reg = Registry::start().await;
    let dockerd = Dockerd::start().await;
    let docker = dockerd.docker();
    let layers: Vec<(String, Vec<u8>)> = (0..4)
        .map(|i| (format!("layer{i}"), pseudo_random_bytes(16 << 20, 100 + i)))
        .collect();
    let files: Vec<(&str, &[u8])> = layers
        .iter()
        .map(|(name, bytes)| (name.as_str(), bytes.as_slice()))
        .collect();
    let tag = format!("{}/team/large:v1", reg.host());
    let id = build(&dockerd, &reg, &tag, &files, None).await;

    let digest = push(&docker, &reg, &tag).await;
    let stored = assert_complete(&anonymous(&reg), "team/large", "v1").await;
    assert_eq!(stored.digest, digest);
    assert_eq!(stored.layers().len(), 4);
    assert_eq!(stored.config_digest(), id);

    remove(&docker, &reg, &[&tag]).await;
    docker.ok(&reg, &["pull", &tag]).await;
    assert_eq!(image_id(&docker, &reg, &tag).await, id);
    let last = &layers[3];
    assert_eq!(
        file_in(&dockerd, &reg, &tag, &format!("/{}", last.0)).await,
        last.1
    );
}

/// `docker login`, then push and pull as alice; bob's project is refused; a wrong password
/// fails the login; after `docker logout` the pull is refused.
async fn logs_in_pushes_and_pulls(reg: &Registry, scheme: Scheme) {
    let dockerd = Dockerd::start().await;
    let docker = dockerd.docker();
    let host = reg.host();

    let wrong = login(&docker, reg, (ALICE.0, "not-the-password")).await;
    assert!(
        !wrong.status.success()
            && String::from_utf8_lossy(&wrong.stderr)
                .to_lowercase()
                .contains("unauthorized"),
        "docker login with a wrong password: {wrong:?}"
    );
    let out = login(&docker, reg, ALICE).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("Login Succeeded"),
        "docker login as alice: {stdout}{}\nregistry log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        reg.log()
    );
    assert!(
        dockerd.cli_config().contains(&host),
        "no login for {host} in config.json: {}",
        dockerd.cli_config()
    );

    let tag = format!("{host}/alpha/app:v1");
    let content = b"alice's image\n".to_vec();
    let id = build(&dockerd, reg, &tag, &[("file", &content)], None).await;
    let digest = push(&docker, reg, &tag).await;
    let alice = Client::new(reg, scheme, Some(ALICE));
    let stored = assert_complete(&alice, "alpha/app", "v1").await;
    assert_eq!(stored.digest, digest);
    assert_eq!(stored.config_digest(), id);

    let beta = format!("{host}/beta/app:v1");
    docker.ok(reg, &["tag", &tag, &beta]).await;
    let denied = docker.fails(&["push", &beta]).await;
    assert!(
        denied.contains("denied") || denied.contains("unauthorized"),
        "{denied}"
    );
    let bob = Client::new(reg, scheme, Some(BOB));
    let reply = bob.send("GET", "/v2/beta/app/manifests/v1", None).await;
    assert_eq!(reply.status, 404, "alice pushed into bob's project");

    remove(&docker, reg, &[&tag, &beta]).await;
    docker.ok(reg, &["pull", &tag]).await;
    assert_eq!(image_id(&docker, reg, &tag).await, id);

    docker.ok(reg, &["logout", &host]).await;
    remove(&docker, reg, &[&tag]).await;
    let anonymous = docker.fails(&["pull", &tag]).await;
    assert!(
        ["unauthorized", "denied", "no basic auth credentials"]
            .iter()
            .any(|refusal| anonymous.contains(refusal)),
        "{anonymous}"
    );
    assert!(!reg.log().contains(ALICE.1), "a password reached the log");
}

/// `docker login` with the password on standard input.
async fn login(docker: &Tool, reg: &Registry, (user, password): (&str, &str)) -> Output {
    use tokio::io::AsyncWriteExt as _;
    let host = reg.host();
    let mut child = docker
        .command(&["login", "--username", user, "--password-stdin", &host])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn docker login");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(password.as_bytes())
        .await
        .expect("write password");
    drop(stdin);
    child.wait_with_output().await.expect("docker login")
}

#[tokio::test]
async fn login_with_basic_auth() {
    let files = AuthFiles::new();
    let reg = Registry::start_with(&[
        ("AUTH_MODE", "basic"),
        ("HTPASSWD_FILE", &files.htpasswd.display().to_string()),
        ("AUTH_RULES_FILE", &files.rules.display().to_string()),
    ])
    .await;
    logs_in_pushes_and_pulls(&reg, Scheme::Basic).await;
}

#[tokio::test]
async fn login_with_token_auth() {
    let files = AuthFiles::new();
    let reg = Registry::start_with(&[
        ("AUTH_MODE", "token"),
        (
            "JWT_SECRET",
            "a-test-secret-of-more-than-32-bytes-0123456789",
        ),
        ("HTPASSWD_FILE", &files.htpasswd.display().to_string()),
        ("AUTH_RULES_FILE", &files.rules.display().to_string()),
    ])
    .await;
    logs_in_pushes_and_pulls(&reg, Scheme::Token).await;
}

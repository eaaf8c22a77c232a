//! The pull-through cache's upstream client (`registry_common::upstream`) against a real
//! registry: this registry's own binary, open, with Basic authentication and with the token
//! flow. Manifests by tag and by digest, blobs streamed and verified, `HEAD`s, and each error:
//! `404` → `NotFound`, refused credentials → `Denied`, a stopped server → `Unavailable`.
//! With `TEST_STORAGE=s3` the blobs come by a 307 to presigned URLs of the store, followed
//! without the upstream's credentials.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use registry_common::config::{Secret, UpstreamConfig, UpstreamCredentials};
use registry_common::oci::{Digest, Reference, Tag};
use registry_common::upstream::{Upstream, UpstreamError};
use registry_tests::auth::{ALICE, AuthFiles, BOB, Client, Scheme};
use registry_tests::{OCI_MANIFEST, PushedImage, Registry, redirected_downloads, sha256_digest};

const LIMIT: u64 = 4 * 1024 * 1024;
const SECRET: &str = "a-test-secret-of-more-than-32-bytes-0123456789";

fn upstream(reg: &Registry, credentials: Option<(&str, &str)>) -> Upstream {
    let config = UpstreamConfig {
        name: "origin".to_owned(),
        url: reg.url(""),
        prefix: Some("cache/origin".to_owned()),
        host: None,
        fallback: false,
        credentials: credentials.map(|(username, password)| UpstreamCredentials {
            username: username.to_owned(),
            password: Secret::new(password.to_owned()),
        }),
        tag_ttl: Duration::from_secs(300),
        repositories: Vec::new(),
        max_bytes: None,
    };
    Upstream::new(Arc::new(config)).expect("client")
}

fn digest(raw: &str) -> Digest {
    Digest::parse(raw).expect("digest")
}

fn tag(raw: &str) -> Tag {
    Tag::parse(raw).expect("tag")
}

/// Everything of `image` (pushed as `repo:tag`) read back through the client.
async fn assert_fetches(client: &Upstream, repo: &str, tag_name: &str, image: &PushedImage) {
    let by_tag = client
        .manifest(repo, &Reference::Tag(tag(tag_name)), LIMIT)
        .await
        .expect("manifest by tag");
    assert_eq!(by_tag.payload, image.manifest);
    assert_eq!(by_tag.digest, digest(&image.digest));
    assert_eq!(by_tag.media_type, OCI_MANIFEST);
    let by_digest = client
        .manifest(repo, &Reference::Digest(digest(&image.digest)), LIMIT)
        .await
        .expect("manifest by digest");
    assert_eq!(by_digest, by_tag);
    assert_eq!(
        client.manifest_digest(repo, &tag(tag_name)).await,
        Ok(digest(&image.digest))
    );
    for (layer_digest, bytes) in image.layers.iter().chain([&image.config]) {
        let layer_digest = digest(layer_digest);
        assert_eq!(
            client.blob_size(repo, &layer_digest).await,
            Ok(bytes.len() as u64)
        );
        let mut blob = client.blob(repo, &layer_digest).await.expect("blob");
        assert_eq!(blob.size, bytes.len() as u64);
        let mut received = Vec::new();
        let mut chunks = 0;
        while let Some(chunk) = blob.body.next().await {
            received.extend_from_slice(&chunk.expect("chunk"));
            chunks += 1;
        }
        assert_eq!(received.len(), bytes.len());
        assert!(received == *bytes, "the bytes of {layer_digest} differ");
        assert_eq!(sha256_digest(&received), layer_digest.to_string());
        if bytes.len() > 1024 * 1024 {
            assert!(
                chunks > 1,
                "a large blob arrives as a stream, not in one piece"
            );
        }
    }
}

#[tokio::test]
async fn an_open_registry_serves_manifests_and_blobs_and_says_what_is_missing() {
    let reg = Registry::start().await;
    let image = reg
        .push_image("lib/app", "v1", &[3000, 3 * 1024 * 1024])
        .await;
    let client = upstream(&reg, None);
    assert_eq!(client.config().name, "origin");
    assert_fetches(&client, "lib/app", "v1", &image).await;
    if redirected_downloads() {
        // With TEST_STORAGE=s3 (or gcs with redirects), the blobs came by 307 from the store.
        assert!(reg.log().contains("status=307"), "no redirect followed");
    }

    let absent = digest(&sha256_digest(b"never pushed"));
    let missing_tag = Reference::Tag(tag("v2"));
    assert_eq!(
        client.manifest("lib/app", &missing_tag, LIMIT).await,
        Err(UpstreamError::NotFound)
    );
    assert_eq!(
        client
            .manifest("lib/app", &Reference::Digest(absent.clone()), LIMIT)
            .await,
        Err(UpstreamError::NotFound)
    );
    assert_eq!(
        client.manifest_digest("lib/app", &tag("v2")).await,
        Err(UpstreamError::NotFound)
    );
    assert_eq!(
        client.manifest_digest("no/such", &tag("v1")).await,
        Err(UpstreamError::NotFound)
    );
    assert_eq!(
        client.blob_size("lib/app", &absent).await,
        Err(UpstreamError::NotFound)
    );
    assert!(matches!(
        client.blob("lib/app", &absent).await,
        Err(UpstreamError::NotFound)
    ));
    // A manifest over the limit is refused, whatever the upstream says.
    let small = client
        .manifest("lib/app", &Reference::Tag(tag("v1")), 100)
        .await;
    assert!(
        matches!(&small, Err(UpstreamError::Invalid { reason }) if reason.contains("larger than 100")),
        "{small:?}"
    );
}

#[tokio::test]
async fn a_stopped_upstream_is_unavailable() {
    let reg = Registry::start().await;
    let client = upstream(&reg, None);
    drop(reg);
    let error = client
        .manifest("lib/app", &Reference::Tag(tag("v1")), LIMIT)
        .await
        .expect_err("nothing listens");
    match &error {
        UpstreamError::Unavailable { reason } => {
            assert!(reason.contains("upstream \"origin\""), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    assert!(error.to_string().contains("upstream \"origin\""), "{error}");
    let absent = digest(&sha256_digest(b"x"));
    assert!(matches!(
        client.blob("lib/app", &absent).await,
        Err(UpstreamError::Unavailable { .. })
    ));
    assert!(matches!(
        client.blob_size("lib/app", &absent).await,
        Err(UpstreamError::Unavailable { .. })
    ));
}

async fn start_basic(files: &AuthFiles) -> Registry {
    Registry::start_with(&[
        ("AUTH_MODE", "basic"),
        (
            "HTPASSWD_FILE",
            files.htpasswd.to_str().expect("UTF-8 path"),
        ),
        ("AUTH_RULES_FILE", files.rules.to_str().expect("UTF-8 path")),
    ])
    .await
}

#[tokio::test]
async fn basic_credentials_are_sent_when_the_upstream_asks() {
    let files = AuthFiles::new();
    let reg = start_basic(&files).await;
    let alice = Client::new(&reg, Scheme::Basic, Some(ALICE));
    let image = alice.push_image("alpha/app", "v1", 11).await;
    let bob = Client::new(&reg, Scheme::Basic, Some(BOB));
    let public = bob.push_image("public/app", "v1", 12).await;

    assert_fetches(&upstream(&reg, Some(ALICE)), "alpha/app", "v1", &image).await;
    // Anonymous pulls where the rules allow them.
    assert_fetches(&upstream(&reg, None), "public/app", "v1", &public).await;

    let v1 = Reference::Tag(tag("v1"));
    let wrong = upstream(&reg, Some((ALICE.0, "wrong-password")));
    let denied = wrong.manifest("alpha/app", &v1, LIMIT).await;
    assert_eq!(denied, Err(UpstreamError::Denied { status: 401 }));
    assert!(
        !format!("{denied:?} {wrong:?}").contains("wrong-password"),
        "the password is printed"
    );
    assert_eq!(
        upstream(&reg, None).manifest("alpha/app", &v1, LIMIT).await,
        Err(UpstreamError::Denied { status: 401 })
    );
    // Valid credentials without the right to pull.
    assert_eq!(
        upstream(&reg, Some(BOB))
            .manifest("alpha/app", &v1, LIMIT)
            .await,
        Err(UpstreamError::Denied { status: 403 })
    );
    let log = reg.log();
    assert!(!log.contains(ALICE.1), "a password reached the log");
}

#[tokio::test]
async fn the_token_flow_gets_one_token_per_repository_and_uses_it() {
    let files = AuthFiles::new();
    let reg = Registry::start_with(&[
        ("AUTH_MODE", "token"),
        ("JWT_SECRET", SECRET),
        ("TOKEN_TTL_SECS", "120"),
        (
            "HTPASSWD_FILE",
            files.htpasswd.to_str().expect("UTF-8 path"),
        ),
        ("AUTH_RULES_FILE", files.rules.to_str().expect("UTF-8 path")),
    ])
    .await;
    let alice = Client::new(&reg, Scheme::Token, Some(ALICE));
    let image = alice.push_image("alpha/app", "v1", 21).await;
    let bob = Client::new(&reg, Scheme::Token, Some(BOB));
    let public = bob.push_image("public/app", "v1", 22).await;
    let shared = bob.push_image("shared/app", "v1", 23).await;
    let token_requests = |log: &str| log.matches("uri=/auth/token").count();
    let before = token_requests(&reg.log());

    let client = upstream(&reg, Some(ALICE));
    assert_fetches(&client, "alpha/app", "v1", &image).await;
    let after = token_requests(&reg.log());
    assert_eq!(
        after - before,
        1,
        "one token for the repository's scope, used for every request"
    );
    // Another repository (alice pulls from `shared` as a member of `shared-readers`): a
    // token for its scope, fetched without a 401 first.
    let first_401s = reg.log().matches("status=401").count();
    assert_fetches(&client, "shared/app", "v1", &shared).await;
    assert_eq!(token_requests(&reg.log()) - after, 1);
    assert_eq!(reg.log().matches("status=401").count(), first_401s);

    // Anonymous tokens where the rules allow anonymous pulls.
    assert_fetches(&upstream(&reg, None), "public/app", "v1", &public).await;

    let v1 = Reference::Tag(tag("v1"));
    let wrong = upstream(&reg, Some((ALICE.0, "wrong-password")));
    assert_eq!(
        wrong.manifest("alpha/app", &v1, LIMIT).await,
        Err(UpstreamError::Denied { status: 401 }),
        "the token endpoint refuses the credentials"
    );
    let anonymous = upstream(&reg, None).manifest("alpha/app", &v1, LIMIT).await;
    assert!(
        matches!(anonymous, Err(UpstreamError::Denied { .. })),
        "a token without the scope: {anonymous:?}"
    );
    let bob_on_alpha = upstream(&reg, Some(BOB))
        .blob_size("alpha/app", &digest(&image.layers[0].0))
        .await;
    assert!(
        matches!(bob_on_alpha, Err(UpstreamError::Denied { .. })),
        "{bob_on_alpha:?}"
    );
    assert!(!reg.log().contains("wrong-password"));
}

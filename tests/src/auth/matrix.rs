//! The cross-tenant matrix every mode must pass, and the anonymous caller's answers (see the
//! parent module for the tenants and their policy).

use super::{ALICE, BOB, Client, Scheme, scope_of};
use crate::{
    OCI_MANIFEST, PushedImage, Registry, Reply, assert_error, pseudo_random_bytes, send,
    sha256_digest,
};

/// Asserts an answer is access (anything but 401/403) or `403 DENIED` (no body for `HEAD`),
/// as `allowed` says.
#[track_caller]
pub fn assert_access(reply: &Reply, allowed: bool, method: &str, what: &str) {
    if allowed {
        assert!(
            reply.status != 401 && reply.status != 403,
            "{what}: want access, got {} {}",
            reply.status,
            reply.text()
        );
    } else {
        assert_eq!(reply.status, 403, "{what}: want 403, body {}", reply.text());
        if method != "HEAD" {
            assert_error(reply, 403, "DENIED");
        }
    }
}

/// A request body and its content type.
type Body<'a> = Option<(&'a [u8], &'a str)>;

/// What one user may do in one repository.
struct Case<'a> {
    who: Client<'a>,
    owner: Client<'a>,
    repo: &'static str,
    image: &'a PushedImage,
    pull: bool,
    push: bool,
    delete: bool,
}

/// Every endpoint of a repository, tried by a user who may or may not use it.
async fn check_case(case: &Case<'_>, user: &str, seed: u64) {
    let Case {
        who,
        owner,
        repo,
        image,
        ..
    } = case;
    let what = |endpoint: &str| format!("{user} {endpoint} {repo}");
    let layer = &image.layers[0].0;
    // Set up by the owner: a session, a tag and a blob that may be deleted.
    let session = owner.open_session(repo).await;
    let doomed_tag = format!("doomed-{user}");
    let path = format!("/v2/{repo}/manifests/{doomed_tag}");
    let reply = owner
        .send("PUT", &path, Some((&image.manifest, OCI_MANIFEST)))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let doomed_blob = owner.push_blob(repo, &pseudo_random_bytes(100, seed)).await;

    let pulls = [
        (
            "GET",
            format!("/v2/{repo}/manifests/v1"),
            "GET manifest by tag",
        ),
        (
            "HEAD",
            format!("/v2/{repo}/manifests/{}", image.digest),
            "HEAD manifest",
        ),
        ("GET", format!("/v2/{repo}/blobs/{layer}"), "GET blob"),
        ("HEAD", format!("/v2/{repo}/blobs/{layer}"), "HEAD blob"),
        ("GET", format!("/v2/{repo}/tags/list"), "GET tags"),
        (
            "GET",
            format!("/v2/{repo}/referrers/{}", image.digest),
            "GET referrers",
        ),
        ("GET", session.clone(), "GET upload status"),
    ];
    for (method, path, endpoint) in &pulls {
        let reply = who.send(method, path, None).await;
        assert_access(&reply, case.pull, method, &what(endpoint));
        if case.pull && *endpoint == "GET blob" {
            assert_eq!(reply.body, image.layers[0].1, "{}", what(endpoint));
        }
    }
    let fresh = pseudo_random_bytes(64, seed + 1);
    let pushes: [(&str, String, Body<'_>, &str); 4] = [
        (
            "POST",
            format!("/v2/{repo}/blobs/uploads/"),
            None,
            "open session",
        ),
        (
            "POST",
            format!("/v2/{repo}/blobs/uploads/?digest={}", sha256_digest(&fresh)),
            Some((&fresh, "application/octet-stream")),
            "monolithic upload",
        ),
        (
            "PATCH",
            session.clone(),
            Some((b"abc", "application/octet-stream")),
            "PATCH session",
        ),
        (
            "PUT",
            format!("/v2/{repo}/manifests/by-{user}"),
            Some((&image.manifest, OCI_MANIFEST)),
            "PUT manifest",
        ),
    ];
    for (method, path, body, endpoint) in pushes {
        let reply = who.send(method, &path, body).await;
        assert_access(&reply, case.push, method, &what(endpoint));
    }
    let deletes = [
        (format!("/v2/{repo}/manifests/{doomed_tag}"), "DELETE tag"),
        (format!("/v2/{repo}/blobs/{doomed_blob}"), "DELETE blob"),
        (session.clone(), "DELETE session"),
    ];
    for (path, endpoint) in &deletes {
        let reply = who.send("DELETE", path, None).await;
        assert_access(&reply, case.delete, "DELETE", &what(endpoint));
    }
    // What was refused changed nothing.
    let tags = owner
        .send("GET", &format!("/v2/{repo}/tags/list"), None)
        .await;
    let tags = tags.json()["tags"].clone();
    let has = |tag: &str| tags.as_array().is_some_and(|t| t.iter().any(|v| v == tag));
    assert_eq!(
        has(&doomed_tag),
        !case.delete,
        "{user} deleting in {repo}: {tags}"
    );
    assert_eq!(
        has(&format!("by-{user}")),
        case.push,
        "{user} tagging in {repo}: {tags}"
    );
    let manifest = owner
        .send("GET", &format!("/v2/{repo}/manifests/v1"), None)
        .await;
    assert_eq!(manifest.body, image.manifest, "{repo}:v1 changed");
}

/// The cross-tenant matrix (see the module documentation for the policy).
pub async fn tenant_matrix(reg: &Registry, scheme: Scheme) {
    let alice = Client::new(reg, scheme, Some(ALICE));
    let bob = Client::new(reg, scheme, Some(BOB));
    let alpha = alice.push_image("alpha/app", "v1", 1).await;
    let beta = bob.push_image("beta/app", "v1", 2).await;
    let shared = bob.push_image("shared/app", "v1", 3).await;
    let cases = [
        Case {
            who: alice,
            owner: alice,
            repo: "alpha/app",
            image: &alpha,
            pull: true,
            push: true,
            delete: true,
        },
        Case {
            who: alice,
            owner: bob,
            repo: "beta/app",
            image: &beta,
            pull: false,
            push: false,
            delete: false,
        },
        Case {
            who: alice,
            owner: bob,
            repo: "shared/app",
            image: &shared,
            pull: true,
            push: false,
            delete: false,
        },
        Case {
            who: bob,
            owner: alice,
            repo: "alpha/app",
            image: &alpha,
            pull: false,
            push: false,
            delete: false,
        },
        Case {
            who: bob,
            owner: bob,
            repo: "beta/app",
            image: &beta,
            pull: true,
            push: true,
            delete: true,
        },
        Case {
            who: bob,
            owner: bob,
            repo: "shared/app",
            image: &shared,
            pull: true,
            push: true,
            delete: true,
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        let user = case.who.creds.map_or("anonymous", |(u, _)| u);
        check_case(case, user, 100 + i as u64).await;
    }

    // A digest alone reads nothing: bob's layer is not in alice's repository.
    let bobs_layer = &beta.layers[0].0;
    let reply = alice
        .send("HEAD", &format!("/v2/alpha/app/blobs/{bobs_layer}"), None)
        .await;
    assert_eq!(reply.status, 404, "bob's blob through alice's repository");
    let reply = alice
        .send("GET", &format!("/v2/alpha/app/blobs/{bobs_layer}"), None)
        .await;
    assert_error(&reply, 404, "BLOB_UNKNOWN");

    // Mounting from a repository alice may not pull opens a plain session; from one she may
    // pull, it mounts.
    let mount = |from: &str, digest: &str| {
        format!("/v2/alpha/app/blobs/uploads/?mount={digest}&from={from}")
    };
    let pull_scope = |repo: &str| vec![format!("repository:{repo}:pull")];
    let request = alice
        .request(
            "POST",
            &mount("beta/app", bobs_layer),
            &pull_scope("beta/app"),
        )
        .await;
    let reply = send(request).await;
    assert_eq!(reply.status, 202, "mount from beta: {}", reply.text());
    assert!(
        reply
            .header("location")
            .is_some_and(|l| l.contains("/v2/alpha/app/blobs/uploads/"))
    );
    let reply = alice
        .send("HEAD", &format!("/v2/alpha/app/blobs/{bobs_layer}"), None)
        .await;
    assert_eq!(reply.status, 404, "a refused mount linked the blob");
    let shared_layer = &shared.layers[0].0;
    let request = alice
        .request(
            "POST",
            &mount("shared/app", shared_layer),
            &pull_scope("shared/app"),
        )
        .await;
    let reply = send(request).await;
    assert_eq!(reply.status, 201, "mount from shared: {}", reply.text());
    let reply = alice
        .send("GET", &format!("/v2/alpha/app/blobs/{shared_layer}"), None)
        .await;
    assert_eq!(reply.body, shared.layers[0].1);

    // Bob's upload session cannot be reached through alice's repository either.
    let session = bob.open_session("beta/app").await;
    let id = session.rsplit('/').next().expect("session id");
    let hijack = format!("/v2/alpha/app/blobs/uploads/{id}");
    for method in ["GET", "PATCH", "PUT", "DELETE"] {
        let path = if method == "PUT" {
            format!("{hijack}?digest={}", sha256_digest(b""))
        } else {
            hijack.clone()
        };
        let reply = alice.send(method, &path, None).await;
        assert_error(&reply, 404, "BLOB_UPLOAD_UNKNOWN");
    }
    let reply = bob.send("GET", &session, None).await;
    assert_eq!(reply.status, 204, "bob's session after alice's attempts");

    // The catalog lists what each may pull, page by page.
    assert_eq!(
        alice.catalog(1).await,
        vec![vec!["alpha/app".to_owned()], vec!["shared/app".to_owned()]]
    );
    assert_eq!(
        bob.catalog(1).await,
        vec![vec!["beta/app".to_owned()], vec!["shared/app".to_owned()]]
    );
    assert_eq!(
        alice.catalog(100).await,
        vec![vec!["alpha/app".to_owned(), "shared/app".to_owned()]]
    );
}

/// Every endpoint of `repo` without credentials: 401 with `challenge` (exactly), and an
/// `UNAUTHORIZED` body.
pub async fn assert_anonymous_refused(reg: &Registry, repo: &str, digest: &str, challenge: &str) {
    let paths = [
        ("GET", "/v2/".to_owned()),
        ("GET", "/v2/_catalog".to_owned()),
        ("GET", format!("/v2/{repo}/manifests/v1")),
        ("HEAD", format!("/v2/{repo}/manifests/{digest}")),
        ("PUT", format!("/v2/{repo}/manifests/v2")),
        ("DELETE", format!("/v2/{repo}/manifests/{digest}")),
        ("GET", format!("/v2/{repo}/blobs/{digest}")),
        ("DELETE", format!("/v2/{repo}/blobs/{digest}")),
        ("POST", format!("/v2/{repo}/blobs/uploads/")),
        ("GET", format!("/v2/{repo}/tags/list")),
        ("GET", format!("/v2/{repo}/referrers/{digest}")),
    ];
    for (method, path) in paths {
        let method_ = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let reply = send(reg.client.request(method_, reg.url(&path))).await;
        assert_eq!(
            reply.status,
            401,
            "anonymous {method} {path}: {}",
            reply.text()
        );
        let want = challenge.replace("{scope}", &scope_of(method, &path).unwrap_or_default());
        let want = want.replace(",scope=\"\"", "");
        assert_eq!(
            reply.header("www-authenticate"),
            Some(want.as_str()),
            "challenge of anonymous {method} {path}"
        );
        if method != "HEAD" {
            assert_error(&reply, 401, "UNAUTHORIZED");
        }
    }
    let health = send(reg.client.get(reg.url("/healthz"))).await;
    assert_eq!(health.status, 200, "/healthz needs no credentials");
}

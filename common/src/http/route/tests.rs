use super::*;

const DIGEST: &str = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

/// The words of the endpoints, which are valid repository name components too.
const WORDS: &[&str] = &[
    "blobs",
    "manifests",
    "tags",
    "uploads",
    "referrers",
    "list",
    "v2",
    "_oci",
];

fn repo(path: &str) -> (String, String) {
    match RegistryRoute::rewrite(path) {
        RegistryRoute::Repository { name, internal, .. } => (name.to_owned(), internal),
        other => panic!("{path}: {other:?}"),
    }
}

/// Names of `depth` components: plain ones, and ones made of the endpoints' words.
fn names(depth: usize) -> Vec<String> {
    let mut names = vec![
        (0..depth)
            .map(|i| format!("c{i}"))
            .collect::<Vec<_>>()
            .join("/"),
    ];
    for word in WORDS {
        names.push(vec![*word; depth].join("/"));
    }
    names.push(
        (0..depth)
            .map(|i| WORDS[(i + depth) % WORDS.len()])
            .collect::<Vec<_>>()
            .join("/"),
    );
    names
}

fn example_param(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Manifest => "latest",
        Endpoint::UploadSession => "0f6b2a4e-1d3c-4b8a-9e2f-5a7c9d1e3b40",
        Endpoint::Blob | Endpoint::Referrers => DIGEST,
        Endpoint::Base | Endpoint::Catalog | Endpoint::Tags | Endpoint::UploadStart => "",
    }
}

#[test]
fn every_endpoint_both_ways_at_depths_1_to_8() {
    let mut checked = 0;
    for endpoint in Endpoint::ALL.into_iter().filter(|e| e.in_repository()) {
        let param = example_param(endpoint);
        for depth in 1..=8 {
            for name in names(depth) {
                let external = endpoint.path(&name, param);
                let route = RegistryRoute::rewrite(&external);
                let expected = RegistryRoute::Repository {
                    name: &name,
                    endpoint,
                    internal: endpoint.internal_path(param),
                };
                assert_eq!(route, expected, "{external}");
                // And back: the internal path is the endpoint the routers declare.
                let internal = endpoint.internal_path(param);
                assert_eq!(Endpoint::of_route(&internal), Some(endpoint), "{internal}");
                assert!(internal.starts_with(INTERNAL_PREFIX), "{internal}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 6 * 8 * (WORDS.len() + 2));
}

/// The parameters of a template other than `{name}`.
fn params(template: &str) -> Vec<&str> {
    template
        .split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(param, _)| param))
        .filter(|param| *param != "name")
        .collect()
}

#[test]
fn templates_agree() {
    for endpoint in Endpoint::ALL {
        let (external, route) = (endpoint.external(), endpoint.route());
        assert_eq!(params(external), params(route), "{endpoint:?}");
        if endpoint.in_repository() {
            assert!(route.starts_with(INTERNAL_PREFIX), "{endpoint:?}");
        } else {
            assert_eq!(external, route, "{endpoint:?}");
            assert_eq!(RegistryRoute::rewrite(external), RegistryRoute::Unchanged);
            assert_eq!(Endpoint::of_route(route), Some(endpoint));
        }
    }
}

#[test]
fn names_with_slashes_and_endpoint_words() {
    assert_eq!(
        repo("/v2/a/b/c/blobs/sha256:x"),
        ("a/b/c".into(), "/_oci/blobs/sha256:x".into())
    );
    assert_eq!(
        repo("/v2/a/blobs/uploads/"),
        ("a".into(), "/_oci/uploads/".into())
    );
    assert_eq!(
        repo("/v2/a/blobs/uploads"),
        ("a".into(), "/_oci/uploads/".into())
    );
    assert_eq!(
        repo("/v2/a/blobs/uploads/123"),
        ("a".into(), "/_oci/uploads/123".into())
    );
    assert_eq!(
        repo("/v2/blobs/manifests/latest"),
        ("blobs".into(), "/_oci/manifests/latest".into())
    );
    assert_eq!(
        repo("/v2/x/tags/list/tags/list"),
        ("x/tags/list".into(), "/_oci/tags".into())
    );
    assert_eq!(
        repo("/v2/p/manifests/blobs/x"),
        ("p/manifests".into(), "/_oci/blobs/x".into())
    );
    assert_eq!(
        repo("/v2/a/referrers/sha256:x"),
        ("a".into(), "/_oci/referrers/sha256:x".into())
    );
}

#[test]
fn the_upload_start_with_and_without_its_slash() {
    for path in ["/v2/a/b/blobs/uploads/", "/v2/a/b/blobs/uploads"] {
        match RegistryRoute::rewrite(path) {
            RegistryRoute::Repository { name, endpoint, .. } => {
                assert_eq!((name, endpoint), ("a/b", Endpoint::UploadStart), "{path}");
            }
            other => panic!("{path}: {other:?}"),
        }
    }
}

#[test]
fn other_paths() {
    assert_eq!(RegistryRoute::rewrite("/v2/"), RegistryRoute::Unchanged);
    assert_eq!(
        RegistryRoute::rewrite("/v2/_catalog"),
        RegistryRoute::Unchanged
    );
    assert_eq!(RegistryRoute::rewrite("/healthz"), RegistryRoute::Unchanged);
    assert_eq!(
        RegistryRoute::rewrite("/_oci/blobs/x"),
        RegistryRoute::NotFound
    );
    assert_eq!(RegistryRoute::rewrite("/v2/a"), RegistryRoute::NotFound);
    assert_eq!(
        RegistryRoute::rewrite("/v2/manifests/latest"),
        RegistryRoute::NotFound
    );
    assert_eq!(
        RegistryRoute::rewrite("/v2/blobs/uploads"),
        RegistryRoute::NotFound
    );
    assert_eq!(
        RegistryRoute::rewrite("/v2/a/unknown/x"),
        RegistryRoute::NotFound
    );
    assert_eq!(
        RegistryRoute::rewrite("/v2/a/tags/list/"),
        RegistryRoute::NotFound
    );
}

#[test]
fn routes_with_their_parameter_present() {
    for (path, endpoint) in [
        ("/v2/", Some(Endpoint::Base)),
        ("/v2/_catalog", Some(Endpoint::Catalog)),
        ("/_oci/tags", Some(Endpoint::Tags)),
        ("/_oci/uploads/", Some(Endpoint::UploadStart)),
        ("/_oci/uploads/abc", Some(Endpoint::UploadSession)),
        ("/_oci/manifests/latest", Some(Endpoint::Manifest)),
        ("/_oci/blobs/sha256:x", Some(Endpoint::Blob)),
        ("/_oci/referrers/sha256:x", Some(Endpoint::Referrers)),
        ("/healthz", None),
        ("/_oci/not-found", None),
        ("/_oci/manifests/", None),
        ("/_oci/blobs/", None),
        ("/_oci/blobs/a/b", None),
        ("/v2", None),
        ("/api/x", None),
        ("/_oci/tagsx", None),
    ] {
        assert_eq!(Endpoint::of_route(path), endpoint, "{path}");
    }
}

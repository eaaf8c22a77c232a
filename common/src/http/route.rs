//! Maps `/v2/<name>/<endpoint>` (where the name has slashes, which no router pattern can
//! match) to internal paths `/_oci/<endpoint>` with the validated name in a request
//! extension, so that each service declares plain routes.

use axum::extract::FromRequestParts;
use http::request::Parts;

use super::oci_error::RegistryError;
use crate::oci::RepositoryName;

/// Prefix of the internal paths; never reachable from outside (see [`RegistryRoute::rewrite`]).
pub const INTERNAL_PREFIX: &str = "/_oci";

/// A distribution API endpoint recognized from a request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryRoute<'a> {
    /// `/v2/`, `/v2/_catalog`, and anything that needs no rewriting.
    Unchanged,
    /// `/v2/<name>/<endpoint>`, rewritten to `internal`.
    Repository { name: &'a str, internal: String },
    /// Not a path of the API.
    NotFound,
}

impl<'a> RegistryRoute<'a> {
    /// Recognizes a raw (still percent-encoded) path.
    pub fn rewrite(path: &'a str) -> Self {
        if path.starts_with(INTERNAL_PREFIX) {
            return RegistryRoute::NotFound;
        }
        let Some(rest) = path.strip_prefix("/v2/") else {
            return RegistryRoute::Unchanged;
        };
        if rest.is_empty() || rest == "_catalog" {
            return RegistryRoute::Unchanged;
        }
        let segments: Vec<&str> = rest.split('/').collect();
        let n = segments.len();
        let name_of =
            |k: usize| &rest[..segments[..k].iter().map(|s| s.len() + 1).sum::<usize>() - 1];
        let (k, internal) = match segments.as_slice() {
            [.., "tags", "list"] if n >= 3 => (n - 2, "/tags".to_owned()),
            [.., "blobs", "uploads", id] if n >= 4 => (n - 3, format!("/uploads/{id}")),
            [.., "blobs", "uploads"] if n >= 3 => (n - 2, "/uploads/".to_owned()),
            [.., "manifests", reference] if n >= 3 => (n - 2, format!("/manifests/{reference}")),
            [.., "blobs", digest] if n >= 3 => (n - 2, format!("/blobs/{digest}")),
            [.., "referrers", digest] if n >= 3 => (n - 2, format!("/referrers/{digest}")),
            _ => return RegistryRoute::NotFound,
        };
        if k == 0 {
            return RegistryRoute::NotFound;
        }
        RegistryRoute::Repository {
            name: name_of(k),
            internal: format!("{INTERNAL_PREFIX}{internal}"),
        }
    }
}

/// The repository named in the request path, validated.
#[derive(Debug, Clone)]
pub struct Repo(pub RepositoryName);

impl<S: Send + Sync> FromRequestParts<S> for Repo {
    type Rejection = RegistryError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<RepositoryName>()
            .cloned()
            .map(Repo)
            .ok_or_else(|| {
                RegistryError::unsupported(http::StatusCode::NOT_FOUND, "no such endpoint")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(path: &str) -> (String, String) {
        match RegistryRoute::rewrite(path) {
            RegistryRoute::Repository { name, internal } => (name.to_owned(), internal),
            other => panic!("{path}: {other:?}"),
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
            RegistryRoute::rewrite("/v2/a/unknown/x"),
            RegistryRoute::NotFound
        );
    }
}

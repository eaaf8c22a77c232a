//! The one definition of the distribution API's route grammar ([`Endpoint`]): each endpoint's
//! external path (`/v2/<name>/manifests/<reference>`, …) and the internal path template the
//! routers declare (`/_oci/manifests/{reference}`, …). The rewrite layer, the 404/405
//! fallbacks and every service's router read it from here, so the three cannot drift apart.
//!
//! Why internal paths: a repository name has slashes (1 to any number of components), which
//! no router pattern can match in front of a fixed suffix. [`RegistryRoute::rewrite`] finds the
//! endpoint by the path's suffix and maps `/v2/<name>/<endpoint>` to `/_oci/<endpoint>`, the
//! validated name going in a request extension that the [`Repo`] extractor reads. Suffixes are
//! tried in [`Endpoint::ALL`]'s order, longest first, so that the name keeps every component
//! before the last endpoint word (`/v2/x/tags/list/tags/list` is `x/tags/list`'s tag list) and
//! `blobs/uploads` is never a blob digest.

use axum::extract::FromRequestParts;
use http::request::Parts;

use super::oci_error::RegistryError;
use crate::oci::RepositoryName;

/// Prefix of the internal paths; never reachable from outside (see [`RegistryRoute::rewrite`]).
pub const INTERNAL_PREFIX: &str = "/_oci";

/// The Docker token endpoint (served by the default service, checked by no layer).
pub const TOKEN_PATH: &str = "/auth/token";

/// The liveness probe, served by every binary.
pub const HEALTHZ_PATH: &str = "/healthz";

/// Where the job endpoints live (`INTERNAL_SECRET`; they check their own Bearer token).
pub const JOB_ENDPOINTS_PREFIX: &str = "/internal/";

/// An endpoint of the distribution API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `/v2/`: the API version check.
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// `/v2/<name>/tags/list`.
    Tags,
    /// `/v2/<name>/blobs/uploads/<id>`: an upload session (status, chunk, finish, cancel).
    UploadSession,
    /// `/v2/<name>/blobs/uploads/` (the trailing slash optional): starts an upload or mounts.
    UploadStart,
    /// `/v2/<name>/manifests/<reference>`.
    Manifest,
    /// `/v2/<name>/blobs/<digest>`.
    Blob,
    /// `/v2/<name>/referrers/<digest>`.
    Referrers,
}

impl Endpoint {
    /// Every endpoint, in the order the rewrite tries their suffixes.
    pub const ALL: [Endpoint; 8] = [
        Endpoint::Base,
        Endpoint::Catalog,
        Endpoint::Tags,
        Endpoint::UploadSession,
        Endpoint::UploadStart,
        Endpoint::Manifest,
        Endpoint::Blob,
        Endpoint::Referrers,
    ];

    /// The path as clients write it, `{name}` standing for the repository name and the
    /// parameter in braces.
    pub const fn external(self) -> &'static str {
        match self {
            Endpoint::Base => "/v2/",
            Endpoint::Catalog => "/v2/_catalog",
            Endpoint::Tags => "/v2/{name}/tags/list",
            Endpoint::UploadSession => "/v2/{name}/blobs/uploads/{id}",
            Endpoint::UploadStart => "/v2/{name}/blobs/uploads/",
            Endpoint::Manifest => "/v2/{name}/manifests/{reference}",
            Endpoint::Blob => "/v2/{name}/blobs/{digest}",
            Endpoint::Referrers => "/v2/{name}/referrers/{digest}",
        }
    }

    /// The path template a router declares (axum syntax): the external path itself for the
    /// endpoints without a name, the internal path for the others.
    pub const fn route(self) -> &'static str {
        match self {
            Endpoint::Base => "/v2/",
            Endpoint::Catalog => "/v2/_catalog",
            Endpoint::Tags => "/_oci/tags",
            Endpoint::UploadSession => "/_oci/uploads/{id}",
            Endpoint::UploadStart => "/_oci/uploads/",
            Endpoint::Manifest => "/_oci/manifests/{reference}",
            Endpoint::Blob => "/_oci/blobs/{digest}",
            Endpoint::Referrers => "/_oci/referrers/{digest}",
        }
    }

    /// Whether the path names a repository (and so is rewritten).
    pub fn in_repository(self) -> bool {
        self.external().starts_with("/v2/{name}/")
    }

    /// The external path of this endpoint for `name` and the parameter `param` (ignored by
    /// the endpoints without one).
    pub fn path(self, name: &str, param: &str) -> String {
        fill(self.external(), name, param)
    }

    /// The internal path a rewritten request of this endpoint has.
    pub fn internal_path(self, param: &str) -> String {
        fill(self.route(), "", param)
    }

    /// The endpoint a rewritten (internal or name-less) path is, when its parameter is present:
    /// what the fallbacks ask to tell a wrong method (405) from an unknown path (404).
    pub fn of_route(path: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|endpoint| {
            let route = endpoint.route();
            match route.split_once('{') {
                None => path == route,
                Some((base, _)) => path
                    .strip_prefix(base)
                    .is_some_and(|param| !param.is_empty() && !param.contains('/')),
            }
        })
    }

    /// The endpoint words after the name, a `None` standing for the parameter.
    fn suffix(self) -> impl Iterator<Item = Option<&'static str>> {
        let words = self.external().strip_prefix("/v2/{name}/").unwrap_or("");
        words
            .split('/')
            .filter(|word| !word.is_empty())
            .map(|word| (!word.starts_with('{')).then_some(word))
    }

    /// Matches the segments of a path after `/v2/`: the endpoint, how many segments the name
    /// has, and the parameter (empty when the endpoint has none).
    fn of_segments<'s>(segments: &[&'s str]) -> Option<(Endpoint, usize, &'s str)> {
        Endpoint::ALL
            .into_iter()
            .filter(|endpoint| endpoint.in_repository())
            .find_map(|endpoint| {
                let name_len = segments.len().checked_sub(endpoint.suffix().count())?;
                if name_len == 0 {
                    return None;
                }
                let mut param = "";
                for (word, segment) in endpoint.suffix().zip(&segments[name_len..]) {
                    match word {
                        Some(word) if word == *segment => {}
                        Some(_) => return None,
                        None => param = segment,
                    }
                }
                // `blobs/uploads/` splits into an empty last segment: the start, as the spec
                // writes it.
                if endpoint == Endpoint::UploadSession && param.is_empty() {
                    return Some((Endpoint::UploadStart, name_len, param));
                }
                Some((endpoint, name_len, param))
            })
    }
}

/// A template with `{name}` and its parameter replaced.
fn fill(template: &str, name: &str, param: &str) -> String {
    let with_name = template.replace("{name}", name);
    match with_name.split_once('{') {
        None => with_name,
        Some((base, rest)) => {
            let tail = rest.split_once('}').map_or("", |(_, tail)| tail);
            format!("{base}{param}{tail}")
        }
    }
}

/// A distribution API endpoint recognized from a request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryRoute<'a> {
    /// `/v2/`, `/v2/_catalog`, and anything that needs no rewriting.
    Unchanged,
    /// `/v2/<name>/<endpoint>`, rewritten to `internal`.
    Repository {
        name: &'a str,
        endpoint: Endpoint,
        internal: String,
    },
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
        if matches!(
            Endpoint::of_route(path),
            Some(Endpoint::Base | Endpoint::Catalog)
        ) {
            return RegistryRoute::Unchanged;
        }
        let segments: Vec<&str> = rest.split('/').collect();
        let Some((endpoint, name_len, param)) = Endpoint::of_segments(&segments) else {
            return RegistryRoute::NotFound;
        };
        let name_bytes = segments[..name_len]
            .iter()
            .map(|s| s.len() + 1)
            .sum::<usize>()
            - 1;
        RegistryRoute::Repository {
            name: &rest[..name_bytes],
            endpoint,
            internal: endpoint.internal_path(param),
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
mod tests;

//! [`RegistrySource`]: another registry read over the distribution API, through the
//! pull-through cache's upstream client (its authentication, verification and redirects):
//! the catalog and tag listings page by page, a `HEAD` per tag for its digest, manifests by
//! digest, the referrers API (`404` → none; distribution 2.8's fallback tags come with the
//! tags), blobs streamed and verified as they arrive.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use registry_common::config::{Secret, UpstreamConfig, UpstreamCredentials};
use registry_common::oci::{Digest, Reference, RepositoryName, Tag};
use registry_common::upstream::{Upstream, UpstreamError};

use super::source::{ImportSource, SourceBlob, SourceError, SourceManifest, SourceTag};

/// Largest manifest read (the registry's default `MANIFEST_MAX_BYTES`).
const MANIFEST_LIMIT: u64 = 4 * 1024 * 1024;

/// How a source registry is authenticated to.
#[derive(Debug, Clone)]
pub enum SourceAuth {
    /// Anonymous (a token for anonymous pulls when the registry asks for one).
    Anonymous,
    /// Basic credentials, sent as Basic or to the registry's token endpoint.
    Basic {
        username: String,
        password: Secret<String>,
    },
    /// A bearer token sent as is.
    Token(Secret<String>),
}

/// A registry's content over its HTTP API.
#[derive(Debug, Clone)]
pub struct RegistrySource {
    url: String,
    upstream: Upstream,
}

impl RegistrySource {
    /// The registry at `url` (`http://host:port` or `https://host`).
    pub fn new(url: &str, auth: SourceAuth) -> Result<RegistrySource, SourceError> {
        let url = url.trim_end_matches('/').to_owned();
        let authority = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .map(|rest| rest.split('/').next().unwrap_or(rest));
        match authority {
            Some(authority) if !authority.is_empty() && !authority.contains('@') => {}
            _ => {
                return Err(SourceError::Invalid(format!(
                    "{url:?} is not an http(s) URL of a registry (credentials go in flags, not in the URL)"
                )));
            }
        }
        let credentials = match &auth {
            SourceAuth::Basic { username, password } => Some(UpstreamCredentials {
                username: username.clone(),
                password: password.clone(),
            }),
            _ => None,
        };
        let config = Arc::new(UpstreamConfig {
            name: "import source".to_owned(),
            url: url.clone(),
            prefix: None,
            host: None,
            fallback: false,
            credentials,
            tag_ttl: Duration::ZERO,
            repositories: Vec::new(),
            max_bytes: None,
        });
        let upstream = match auth {
            SourceAuth::Token(token) => Upstream::with_token(config, token),
            _ => Upstream::new(config),
        }
        .map_err(source_error)?;
        Ok(RegistrySource { url, upstream })
    }
}

/// The upstream client's errors in the source's terms.
fn source_error(error: UpstreamError) -> SourceError {
    match error {
        UpstreamError::NotFound => SourceError::NotFound(error.to_string()),
        UpstreamError::Denied { .. } => SourceError::Denied(error.to_string()),
        UpstreamError::Unavailable { .. } => SourceError::Transient(error.to_string()),
        UpstreamError::Invalid { .. } => SourceError::Invalid(error.to_string()),
    }
}

#[async_trait]
impl ImportSource for RegistrySource {
    fn describe(&self) -> String {
        self.url.clone()
    }

    async fn repositories(&self) -> Result<Vec<RepositoryName>, SourceError> {
        let mut names = self
            .upstream
            .catalog()
            .await
            .map_err(source_error)?
            .into_iter()
            .map(|name| {
                RepositoryName::parse(&name)
                    .map_err(|e| SourceError::Invalid(format!("catalog entry {name:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        names.dedup();
        Ok(names)
    }

    async fn tags(&self, repository: &RepositoryName) -> Result<Vec<SourceTag>, SourceError> {
        let mut names = self
            .upstream
            .tags(repository.as_str())
            .await
            .map_err(source_error)?;
        names.sort();
        names.dedup();
        let mut tags = Vec::with_capacity(names.len());
        for name in names {
            let tag = Tag::parse(&name)
                .map_err(|e| SourceError::Invalid(format!("{repository}: tag {name:?}: {e}")))?;
            let digest = match self
                .upstream
                .manifest_digest(repository.as_str(), &tag)
                .await
            {
                Ok(digest) => digest,
                // Deleted between the listing and now.
                Err(UpstreamError::NotFound) => continue,
                Err(e) => return Err(source_error(e)),
            };
            tags.push(SourceTag { tag, digest });
        }
        Ok(tags)
    }

    async fn all_manifests(
        &self,
        _repository: &RepositoryName,
    ) -> Result<Option<Vec<Digest>>, SourceError> {
        Ok(None)
    }

    async fn referrers(
        &self,
        repository: &RepositoryName,
        subject: &Digest,
    ) -> Result<Option<Vec<Digest>>, SourceError> {
        match self.upstream.referrers(repository.as_str(), subject).await {
            Ok(digests) => Ok(Some(digests)),
            Err(UpstreamError::NotFound) => Ok(None),
            Err(e) => Err(source_error(e)),
        }
    }

    async fn manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<SourceManifest, SourceError> {
        let reference = Reference::Digest(digest.clone());
        let fetched = self
            .upstream
            .manifest(repository.as_str(), &reference, MANIFEST_LIMIT)
            .await
            .map_err(source_error)?;
        Ok(SourceManifest {
            digest: fetched.digest,
            media_type: fetched.media_type,
            bytes: Bytes::from(fetched.payload),
        })
    }

    async fn blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<SourceBlob, SourceError> {
        let fetched = self
            .upstream
            .blob(repository.as_str(), digest)
            .await
            .map_err(source_error)?;
        Ok(SourceBlob {
            size: Some(fetched.size),
            bytes: fetched.body,
        })
    }
}

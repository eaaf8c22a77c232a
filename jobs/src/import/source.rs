//! Where `jobs import` reads from: an [`ImportSource`] is another registry's content, seen as
//! repositories, tags, manifests and blobs, whatever holds it (a registry's HTTP API, or
//! distribution's storage layout on a filesystem or in a bucket). The import engine walks a
//! source through this trait alone, so every source is copied, resumed and verified alike.
//!
//! Contract of every method: names and digests are the source's own, unchanged; a missing
//! repository, tag, manifest or blob is [`SourceError::NotFound`], never an empty answer;
//! a failure that a retry may cure (a timeout, a `5xx`, a reset connection) is
//! [`SourceError::Transient`], so the engine retries it and a resumed run picks it up.

use async_trait::async_trait;
use bytes::Bytes;
use registry_common::oci::{Digest, RepositoryName, Tag};
use registry_common::storage::ByteStream;

/// One tag and the digest of the manifest it names at the time it was listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceTag {
    pub tag: Tag,
    pub digest: Digest,
}

/// A manifest's bytes exactly as the source stores them (their digest is `digest`; the
/// engine checks), with the media type the source gives for them (a registry's
/// `Content-Type`; a layout's `mediaType` field, or the type the bytes' shape implies).
#[derive(Debug, Clone)]
pub struct SourceManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

/// A blob being read: its size when the source knows it before the bytes (a registry's
/// `Content-Length`, an object's size), and its bytes in order. The engine hashes what it
/// reads and refuses a blob whose bytes do not match `digest`.
pub struct SourceBlob {
    pub size: Option<u64>,
    pub bytes: ByteStream,
}

impl std::fmt::Debug for SourceBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceBlob")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Why a source could not answer.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The thing asked for is not there.
    #[error("not found: {0}")]
    NotFound(String),
    /// The source refused the credentials given, or gave none the right to read.
    #[error("access denied: {0}")]
    Denied(String),
    /// A failure a retry may cure: a timeout, a `5xx`, `429`, a dropped connection.
    #[error("transient failure: {0}")]
    Transient(String),
    /// Anything else: a malformed answer, a layout file that does not parse.
    #[error("{0}")]
    Invalid(String),
}

/// A registry's content, read-only.
#[async_trait]
pub trait ImportSource: Send + Sync {
    /// What the report and the logs call the source: a registry URL, a directory, or
    /// `s3://bucket/prefix`, with no credentials in it.
    fn describe(&self) -> String;

    /// Every repository the source holds, sorted by name (the engine then filters them by
    /// the list or prefix the operator gave).
    async fn repositories(&self) -> Result<Vec<RepositoryName>, SourceError>;

    /// Every tag of the repository with the digest it names, sorted by tag (a source that
    /// lists tags without digests resolves each one).
    async fn tags(&self, repository: &RepositoryName) -> Result<Vec<SourceTag>, SourceError>;

    /// Every manifest the source holds in the repository, tagged or not, when it can list
    /// them (a storage layout's revisions); `None` when it cannot (a registry's API, where
    /// untagged manifests are reached from tags, from indexes and through
    /// [`ImportSource::referrers`]).
    async fn all_manifests(
        &self,
        repository: &RepositoryName,
    ) -> Result<Option<Vec<Digest>>, SourceError>;

    /// The digests of the manifests whose `subject` is `subject`, from the referrers API;
    /// `None` when the source has no such API (a registry that answers `404` to it, or a
    /// layout, whose referrers come with [`ImportSource::all_manifests`]). Referrers kept by
    /// the tag-schema fallback (`sha256-<hex>` tags) come with [`ImportSource::tags`].
    async fn referrers(
        &self,
        repository: &RepositoryName,
        subject: &Digest,
    ) -> Result<Option<Vec<Digest>>, SourceError>;

    /// One manifest by digest.
    async fn manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<SourceManifest, SourceError>;

    /// One blob of the repository, streamed.
    async fn blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> Result<SourceBlob, SourceError>;
}

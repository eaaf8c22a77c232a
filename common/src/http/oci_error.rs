//! The one error type answered to clients: the spec's `{"errors":[{code,message,detail}]}`
//! body with its status and headers. The domain's typed errors (the `oci` parse errors and
//! each service's error enum) become it here, once, in `From` impls; internal causes
//! (metadata, storage) are logged, never sent.

use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, StatusCode};
use serde::Serialize;

use super::headers::{DOCKER_UPLOAD_UUID, upload_location, upload_range};
use crate::metadata::MetadataError;
use crate::oci::{
    DigestError, InvalidManifest, NameError, ReferenceError, TagError, UploadIdError,
};
use crate::services::{BlobError, CacheError, ManifestError, SessionAt, UploadError};
use crate::storage::StorageError;

/// Error codes of the distribution spec, plus the few that distribution added and clients know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OciCode {
    /// 404: blob unknown to registry.
    BlobUnknown,
    /// 400: blob upload invalid.
    BlobUploadInvalid,
    /// 404: blob upload unknown to registry.
    BlobUploadUnknown,
    /// 400: provided digest did not match uploaded content.
    DigestInvalid,
    /// 400: manifest references a manifest or blob unknown to registry.
    ManifestBlobUnknown,
    /// 400: manifest invalid.
    ManifestInvalid,
    /// 404: manifest unknown to registry.
    ManifestUnknown,
    /// 400: invalid repository name.
    NameInvalid,
    /// 404: repository name not known to registry.
    NameUnknown,
    /// 400 (413 for oversize bodies): provided length did not match content length.
    SizeInvalid,
    /// 400: manifest tag did not match URI.
    TagInvalid,
    /// 401: authentication required.
    Unauthorized,
    /// 403: requested access to the resource is denied.
    Denied,
    /// 405 or 404: the operation is unsupported.
    Unsupported,
    /// 429: too many requests.
    Toomanyrequests,
    /// 503: a service the registry depends on (the permission service) did not answer.
    Unavailable,
    /// 400: invalid number of results requested.
    PaginationNumberInvalid,
    /// 416: requested range not satisfiable.
    RangeInvalid,
    /// 500: an internal error; the cause is in the server's log.
    Unknown,
}

impl OciCode {
    /// The status a code answers with unless the error says otherwise.
    pub fn default_status(self) -> StatusCode {
        match self {
            OciCode::BlobUnknown
            | OciCode::BlobUploadUnknown
            | OciCode::ManifestUnknown
            | OciCode::NameUnknown => StatusCode::NOT_FOUND,
            OciCode::BlobUploadInvalid
            | OciCode::DigestInvalid
            | OciCode::ManifestBlobUnknown
            | OciCode::ManifestInvalid
            | OciCode::NameInvalid
            | OciCode::SizeInvalid
            | OciCode::TagInvalid
            | OciCode::PaginationNumberInvalid => StatusCode::BAD_REQUEST,
            OciCode::Unauthorized => StatusCode::UNAUTHORIZED,
            OciCode::Denied => StatusCode::FORBIDDEN,
            OciCode::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            OciCode::Toomanyrequests => StatusCode::TOO_MANY_REQUESTS,
            OciCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            OciCode::RangeInvalid => StatusCode::RANGE_NOT_SATISFIABLE,
            OciCode::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error as the client sees it.
#[derive(Debug)]
pub struct RegistryError {
    pub code: OciCode,
    pub status: StatusCode,
    pub message: String,
    pub detail: Option<serde_json::Value>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl RegistryError {
    pub fn new(code: OciCode, message: impl Into<String>) -> Self {
        RegistryError {
            code,
            status: code.default_status(),
            message: message.into(),
            detail: None,
            headers: Vec::new(),
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }

    /// Adds a response header; values that are not valid header text are dropped.
    pub fn with_header(mut self, name: HeaderName, value: impl AsRef<str>) -> Self {
        if let Ok(value) = HeaderValue::from_str(value.as_ref()) {
            self.headers.push((name, value));
        }
        self
    }

    /// A server-side failure: the cause is logged here and the client gets a generic 500.
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %crate::error::ErrorChain(cause), "internal error");
        RegistryError::new(OciCode::Unknown, "internal server error")
    }

    pub fn blob_unknown(digest: &impl std::fmt::Display) -> Self {
        RegistryError::new(OciCode::BlobUnknown, "blob unknown to registry")
            .with_detail(serde_json::json!({ "digest": digest.to_string() }))
    }

    pub fn manifest_unknown(reference: &impl std::fmt::Display) -> Self {
        RegistryError::new(OciCode::ManifestUnknown, "manifest unknown to registry")
            .with_detail(serde_json::json!({ "reference": reference.to_string() }))
    }

    pub fn name_unknown(name: &impl std::fmt::Display) -> Self {
        RegistryError::new(
            OciCode::NameUnknown,
            "repository name not known to registry",
        )
        .with_detail(serde_json::json!({ "name": name.to_string() }))
    }

    pub fn upload_unknown() -> Self {
        RegistryError::new(
            OciCode::BlobUploadUnknown,
            "blob upload unknown to registry",
        )
    }

    pub fn manifest_invalid(why: impl Into<String>) -> Self {
        RegistryError::new(OciCode::ManifestInvalid, "manifest invalid")
            .with_detail(serde_json::json!({ "reason": why.into() }))
    }

    pub fn unsupported(status: StatusCode, message: impl Into<String>) -> Self {
        RegistryError::new(OciCode::Unsupported, message).with_status(status)
    }

    /// A `DELETE` while `DELETE_ENABLED=false` (distribution's
    /// `REGISTRY_STORAGE_DELETE_ENABLED`): `405 UNSUPPORTED`, as distribution answers.
    pub fn deletes_disabled() -> Self {
        RegistryError::unsupported(
            StatusCode::METHOD_NOT_ALLOWED,
            "deletes are disabled on this registry (DELETE_ENABLED=false)",
        )
    }
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

impl std::error::Error for RegistryError {}

#[derive(Serialize)]
struct ErrorBody<'a> {
    errors: [ErrorEntry<'a>; 1],
}

#[derive(Serialize)]
struct ErrorEntry<'a> {
    code: OciCode,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a serde_json::Value>,
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            errors: [ErrorEntry {
                code: self.code,
                message: &self.message,
                detail: self.detail.as_ref(),
            }],
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        for (name, value) in self.headers {
            response.headers_mut().append(name, value);
        }
        response
    }
}

impl From<NameError> for RegistryError {
    fn from(e: NameError) -> Self {
        RegistryError::new(OciCode::NameInvalid, "invalid repository name")
            .with_detail(serde_json::json!({ "name": e.name, "reason": e.reason }))
    }
}

impl From<TagError> for RegistryError {
    fn from(e: TagError) -> Self {
        RegistryError::new(OciCode::TagInvalid, "invalid tag")
            .with_detail(serde_json::json!({ "tag": e.tag }))
    }
}

impl From<DigestError> for RegistryError {
    fn from(e: DigestError) -> Self {
        RegistryError::new(OciCode::DigestInvalid, "invalid digest")
            .with_detail(serde_json::json!({ "digest": e.digest, "reason": e.reason }))
    }
}

impl From<ReferenceError> for RegistryError {
    fn from(e: ReferenceError) -> Self {
        match e {
            ReferenceError::Tag(e) => e.into(),
            ReferenceError::Digest(e) => e.into(),
        }
    }
}

impl From<UploadIdError> for RegistryError {
    fn from(_: UploadIdError) -> Self {
        RegistryError::upload_unknown()
    }
}

impl From<InvalidManifest> for RegistryError {
    fn from(e: InvalidManifest) -> Self {
        RegistryError::manifest_invalid(e.reason)
    }
}

impl From<MetadataError> for RegistryError {
    fn from(error: MetadataError) -> Self {
        RegistryError::internal(&error)
    }
}

impl From<StorageError> for RegistryError {
    fn from(error: StorageError) -> Self {
        match &error {
            // Retryable (the backend retried with backoff already): clients such as docker and
            // containerd retry a 503 that says when.
            StorageError::Unavailable { .. } => {
                tracing::warn!(error = %crate::error::ErrorChain(&error), "storage unavailable");
                RegistryError::new(OciCode::Unavailable, "storage unavailable; retry later")
                    .with_header(http::header::RETRY_AFTER, "1")
            }
            _ => RegistryError::internal(&error),
        }
    }
}

impl From<BlobError> for RegistryError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::Unknown { digest } => RegistryError::blob_unknown(&digest),
            BlobError::RangeUnsatisfiable { size } => {
                RegistryError::new(OciCode::RangeInvalid, "requested range not satisfiable")
                    .with_header(http::header::CONTENT_RANGE, format!("bytes */{size}"))
            }
            BlobError::Metadata(e) => e.into(),
            BlobError::Storage(e) => e.into(),
        }
    }
}

impl From<UploadError> for RegistryError {
    fn from(e: UploadError) -> Self {
        let invalid = |message: &str, detail| {
            RegistryError::new(OciCode::BlobUploadInvalid, message).with_detail(detail)
        };
        match e {
            UploadError::UnknownSession => RegistryError::upload_unknown(),
            UploadError::OffsetMismatch { at } => {
                session_conflict(at, "chunk does not start at the session's offset")
            }
            UploadError::MovedOn { at } => {
                session_conflict(at, "the upload was moved on by another request")
            }
            UploadError::DigestMismatch { provided, computed } => RegistryError::new(
                OciCode::DigestInvalid,
                "provided digest did not match uploaded content",
            )
            .with_detail(serde_json::json!({
                "provided": provided.to_string(), "computed": computed.to_string()
            })),
            UploadError::BodyCutOff { reason } => invalid(
                "request body ended before it was complete",
                serde_json::json!({ "reason": reason }),
            ),
            UploadError::LengthMismatch { declared, received } => invalid(
                "body length differs from the declared range",
                serde_json::json!({ "declared": declared, "received": received }),
            ),
            UploadError::RangeLengthMismatch {
                content_length,
                range_length,
            } => invalid(
                "Content-Length disagrees with Content-Range",
                serde_json::json!({ "Content-Length": content_length, "range length": range_length }),
            ),
            UploadError::HashState(e) => RegistryError::internal(&e),
            UploadError::Metadata(e) => e.into(),
            UploadError::Storage(e) => e.into(),
        }
    }
}

/// A 416 telling the client where the session really is.
fn session_conflict(at: SessionAt, message: &str) -> RegistryError {
    RegistryError::new(OciCode::BlobUploadInvalid, message)
        .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
        .with_header(http::header::RANGE, upload_range(at.offset))
        .with_header(
            http::header::LOCATION,
            upload_location(&at.repository, &at.id),
        )
        .with_header(DOCKER_UPLOAD_UUID.clone(), at.id.to_string())
}

impl From<ManifestError> for RegistryError {
    fn from(e: ManifestError) -> Self {
        match e {
            ManifestError::DigestMismatch {
                reference,
                computed,
            } => RegistryError::new(
                OciCode::DigestInvalid,
                "manifest digest does not match the reference",
            )
            .with_detail(serde_json::json!({
                "reference": reference.to_string(), "computed": computed.to_string()
            })),
            ManifestError::Invalid(e) => e.into(),
            ManifestError::BlobUnknown { digest } => RegistryError::new(
                OciCode::ManifestBlobUnknown,
                "manifest references a manifest or blob unknown to this repository",
            )
            .with_detail(serde_json::json!({ "digest": digest.to_string() })),
            e @ ManifestError::SizeMismatch { .. } => {
                RegistryError::manifest_invalid(e.to_string())
            }
            ManifestError::Unknown { reference } => RegistryError::manifest_unknown(&reference),
            ManifestError::NameUnknown { name } => RegistryError::name_unknown(&name),
            // A state conflict, not an access error: `DENIED` would send the user to check
            // their rights.
            ManifestError::InUse => RegistryError::new(
                OciCode::Unsupported,
                "manifest is listed by an index of this repository; delete the index first",
            )
            .with_status(StatusCode::CONFLICT),
            ManifestError::Metadata(e) => e.into(),
        }
    }
}

impl From<CacheError> for RegistryError {
    fn from(e: CacheError) -> Self {
        match e {
            CacheError::Blob(e) => e.into(),
            CacheError::Manifest(e) => e.into(),
            // Retryable: what is cached is served; this was not, and the upstream is down.
            CacheError::UpstreamUnavailable { upstream } => RegistryError::new(
                OciCode::Unavailable,
                format!("upstream registry {upstream} is unavailable and this content is not cached; retry later"),
            )
            .with_header(http::header::RETRY_AFTER, "10")
            .with_detail(serde_json::json!({ "upstream": upstream })),
            CacheError::UpstreamDenied { upstream } => RegistryError::new(
                OciCode::Denied,
                format!("upstream registry {upstream} denied access to this repository"),
            )
            .with_detail(serde_json::json!({ "upstream": upstream })),
            CacheError::UpstreamInvalid { upstream, reason } => {
                tracing::warn!(upstream, reason, "invalid answer from an upstream");
                RegistryError::new(
                    OciCode::Unavailable,
                    format!("upstream registry {upstream} sent an invalid answer; retry later"),
                )
                .with_status(StatusCode::BAD_GATEWAY)
                .with_detail(serde_json::json!({ "upstream": upstream }))
            }
            CacheError::ReadOnly { name, upstream } => RegistryError::new(
                OciCode::Unsupported,
                format!("repository {name} is a read-only cache of upstream registry {upstream}; push elsewhere"),
            )
            .with_detail(serde_json::json!({ "repository": name.as_str(), "upstream": upstream })),
            CacheError::Metadata(e) => e.into(),
            CacheError::Storage(e) => e.into(),
        }
    }
}

#[cfg(test)]
#[path = "oci_error_tests.rs"]
mod tests;

//! Every domain error, as the client sees it: code, status, headers and body.

use serde_json::{Value, json};

use super::*;
use crate::oci::{Digest, Reference, RepositoryName, Tag, UploadId};
use crate::services::{BlobError, ManifestError, SessionAt, UploadError};

fn digest(fill: char) -> Digest {
    Digest::parse(&format!("sha256:{}", fill.to_string().repeat(64))).unwrap()
}

/// Response headers other than `Content-Type`, in order.
type Headers = Vec<(String, String)>;

async fn answer(error: RegistryError) -> (StatusCode, Headers, Value) {
    let response = error.into_response();
    let status = response.status();
    let headers = response
        .headers()
        .iter()
        .filter(|(name, _)| *name != http::header::CONTENT_TYPE)
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    let body = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    (status, headers, serde_json::from_slice(&body).unwrap())
}

fn body(code: &str, message: &str, detail: Option<Value>) -> Value {
    let mut entry = json!({ "code": code, "message": message });
    if let Some(detail) = detail {
        entry["detail"] = detail;
    }
    json!({ "errors": [entry] })
}

#[tokio::test]
async fn every_domain_error_maps_to_its_oci_answer() {
    let name = RepositoryName::parse("p/app").unwrap();
    let id = UploadId::parse("0b7e3a2e-8d1e-4b8e-9f0e-1a2b3c4d5e6f").unwrap();
    let session = SessionAt {
        repository: name.clone(),
        id: id.clone(),
        offset: 7,
    };
    let session_headers = vec![
        ("range".to_owned(), "0-6".to_owned()),
        (
            "location".to_owned(),
            format!("/v2/p/app/blobs/uploads/{id}"),
        ),
        ("docker-upload-uuid".to_owned(), id.to_string()),
    ];
    let (a, b) = (digest('a'), digest('b'));
    let internal = || crate::metadata::MetadataError::Corrupt("x".into());
    let tag = Reference::Tag(Tag::parse("v1").unwrap());
    let name_error = RepositoryName::parse("A").unwrap_err();
    let name_reason = name_error.reason;
    let table: Vec<(RegistryError, StatusCode, Headers, Value)> = vec![
        (
            name_error.into(),
            StatusCode::BAD_REQUEST,
            vec![],
            body(
                "NAME_INVALID",
                "invalid repository name",
                Some(json!({ "name": "A", "reason": name_reason })),
            ),
        ),
        (
            Tag::parse(".x").unwrap_err().into(),
            StatusCode::BAD_REQUEST,
            vec![],
            body("TAG_INVALID", "invalid tag", Some(json!({ "tag": ".x" }))),
        ),
        (
            Reference::parse("sha256:x").unwrap_err().into(),
            StatusCode::BAD_REQUEST,
            vec![],
            body(
                "DIGEST_INVALID",
                "invalid digest",
                Some(json!({
                    "digest": "sha256:x",
                    "reason": "encoded part must be lowercase hex of the algorithm's length"
                })),
            ),
        ),
        (
            UploadId::parse("x").unwrap_err().into(),
            StatusCode::NOT_FOUND,
            vec![],
            body(
                "BLOB_UPLOAD_UNKNOWN",
                "blob upload unknown to registry",
                None,
            ),
        ),
        (
            BlobError::Unknown { digest: a.clone() }.into(),
            StatusCode::NOT_FOUND,
            vec![],
            body(
                "BLOB_UNKNOWN",
                "blob unknown to registry",
                Some(json!({ "digest": a.to_string() })),
            ),
        ),
        (
            BlobError::RangeUnsatisfiable { size: 10 }.into(),
            StatusCode::RANGE_NOT_SATISFIABLE,
            vec![("content-range".to_owned(), "bytes */10".to_owned())],
            body("RANGE_INVALID", "requested range not satisfiable", None),
        ),
        (
            BlobError::Metadata(internal()).into(),
            StatusCode::INTERNAL_SERVER_ERROR,
            vec![],
            body("UNKNOWN", "internal server error", None),
        ),
        (
            UploadError::UnknownSession.into(),
            StatusCode::NOT_FOUND,
            vec![],
            body(
                "BLOB_UPLOAD_UNKNOWN",
                "blob upload unknown to registry",
                None,
            ),
        ),
        (
            UploadError::OffsetMismatch {
                at: session.clone(),
            }
            .into(),
            StatusCode::RANGE_NOT_SATISFIABLE,
            session_headers.clone(),
            body(
                "BLOB_UPLOAD_INVALID",
                "chunk does not start at the session's offset",
                None,
            ),
        ),
        (
            UploadError::MovedOn { at: session }.into(),
            StatusCode::RANGE_NOT_SATISFIABLE,
            session_headers,
            body(
                "BLOB_UPLOAD_INVALID",
                "the upload was moved on by another request",
                None,
            ),
        ),
        (
            UploadError::DigestMismatch {
                provided: a.clone(),
                computed: b.clone(),
            }
            .into(),
            StatusCode::BAD_REQUEST,
            vec![],
            body(
                "DIGEST_INVALID",
                "provided digest did not match uploaded content",
                Some(json!({ "provided": a.to_string(), "computed": b.to_string() })),
            ),
        ),
        (
            UploadError::BodyCutOff {
                reason: "idle".into(),
            }
            .into(),
            StatusCode::BAD_REQUEST,
            vec![],
            body(
                "BLOB_UPLOAD_INVALID",
                "request body ended before it was complete",
                Some(json!({ "reason": "idle" })),
            ),
        ),
        (
            UploadError::LengthMismatch {
                declared: 3,
                received: 2,
            }
            .into(),
            StatusCode::BAD_REQUEST,
            vec![],
            body(
                "BLOB_UPLOAD_INVALID",
                "body length differs from the declared range",
                Some(json!({ "declared": 3, "received": 2 })),
            ),
        ),
        (
            UploadError::RangeLengthMismatch {
                content_length: 2,
                range_length: 3,
            }
            .into(),
            StatusCode::BAD_REQUEST,
            vec![],
            body(
                "BLOB_UPLOAD_INVALID",
                "Content-Length disagrees with Content-Range",
                Some(json!({ "Content-Length": 2, "range length": 3 })),
            ),
        ),
        (
            UploadError::Storage(crate::storage::StorageError::Unsupported("x")).into(),
            StatusCode::INTERNAL_SERVER_ERROR,
            vec![],
            body("UNKNOWN", "internal server error", None),
        ),
        (
            ManifestError::DigestMismatch {
                reference: a.clone(),
                computed: b.clone(),
            }
            .into(),
            StatusCode::BAD_REQUEST,
            vec![],
            body(
                "DIGEST_INVALID",
                "manifest digest does not match the reference",
                Some(json!({ "reference": a.to_string(), "computed": b.to_string() })),
            ),
        ),
        (
            ManifestError::Invalid(crate::oci::InvalidManifest {
                reason: "why".into(),
            })
            .into(),
            StatusCode::BAD_REQUEST,
            vec![],
            body(
                "MANIFEST_INVALID",
                "manifest invalid",
                Some(json!({ "reason": "why" })),
            ),
        ),
        (
            ManifestError::BlobUnknown { digest: a.clone() }.into(),
            StatusCode::BAD_REQUEST,
            vec![],
            body(
                "MANIFEST_BLOB_UNKNOWN",
                "manifest references a manifest or blob unknown to this repository",
                Some(json!({ "digest": a.to_string() })),
            ),
        ),
        (
            ManifestError::SizeMismatch {
                digest: a.clone(),
                declared: 3,
                stored: 4,
            }
            .into(),
            StatusCode::BAD_REQUEST,
            vec![],
            body(
                "MANIFEST_INVALID",
                "manifest invalid",
                Some(json!({
                    "reason": format!("descriptor of {a} declares 3 bytes; the stored content has 4")
                })),
            ),
        ),
        (
            ManifestError::Unknown { reference: tag }.into(),
            StatusCode::NOT_FOUND,
            vec![],
            body(
                "MANIFEST_UNKNOWN",
                "manifest unknown to registry",
                Some(json!({ "reference": "v1" })),
            ),
        ),
        (
            ManifestError::NameUnknown { name }.into(),
            StatusCode::NOT_FOUND,
            vec![],
            body(
                "NAME_UNKNOWN",
                "repository name not known to registry",
                Some(json!({ "name": "p/app" })),
            ),
        ),
        (
            ManifestError::InUse.into(),
            StatusCode::CONFLICT,
            vec![],
            body(
                "UNSUPPORTED",
                "manifest is listed by an index of this repository; delete the index first",
                None,
            ),
        ),
        (
            ManifestError::Metadata(internal()).into(),
            StatusCode::INTERNAL_SERVER_ERROR,
            vec![],
            body("UNKNOWN", "internal server error", None),
        ),
    ];
    for (error, status, headers, expected) in table {
        let what = format!("{error:?}");
        let (got_status, got_headers, got_body) = answer(error).await;
        assert_eq!(got_status, status, "{what}");
        assert_eq!(got_headers, headers, "{what}");
        assert_eq!(got_body, expected, "{what}");
    }
}

#[test]
fn an_unavailable_store_is_a_retryable_503_and_other_failures_a_500() {
    use crate::storage::StorageError;
    let unavailable = RegistryError::from(StorageError::Unavailable {
        key: "blobs/x".into(),
        source: std::io::Error::other("SlowDown"),
    });
    assert_eq!(unavailable.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        unavailable
            .headers
            .iter()
            .any(|(name, value)| name == http::header::RETRY_AFTER && value == "1")
    );
    let broken = RegistryError::from(StorageError::Io {
        key: "blobs/x".into(),
        source: std::io::Error::other("disk"),
    });
    assert_eq!(broken.status, StatusCode::INTERNAL_SERVER_ERROR);
}

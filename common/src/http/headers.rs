//! The registry's own header names, defined once, and the request headers the domain needs
//! read into its types: `Range` into a [`RangeSpec`], `Content-Range` into a [`ContentRange`].
//! The domain never sees a header string.

use http::header::{CONTENT_RANGE, HeaderMap, HeaderName, RANGE};

use super::oci_error::{OciCode, RegistryError};
use crate::oci::{RepositoryName, UploadId};
use crate::services::{ContentRange, RangeSpec};

/// The digest of the content a response is about.
pub static DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
/// The id of the upload session a response is about.
pub static DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");

/// The single byte range a `Range` header asks for; `None` when there is none or it is not
/// one we serve (several ranges, other units, garbage), so that everything is sent.
pub fn range(headers: &HeaderMap) -> Option<RangeSpec> {
    parse_range(headers.get(RANGE)?.to_str().ok()?)
}

pub(crate) fn parse_range(header: &str) -> Option<RangeSpec> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.trim().split_once('-')?;
    let parse = |s: &str| s.trim().parse::<u64>().ok();
    match (start.trim().is_empty(), end.trim().is_empty()) {
        (true, false) => parse(end).map(|len| RangeSpec::Suffix { len }),
        (false, true) => parse(start).map(|start| RangeSpec::From { start }),
        (false, false) => match (parse(start), parse(end)) {
            (Some(start), Some(end)) if start <= end => Some(RangeSpec::Bounded { start, end }),
            _ => None,
        },
        (true, true) => None,
    }
}

/// The chunk a `Content-Range` header places, or `BLOB_UPLOAD_INVALID` when it is malformed.
pub fn content_range(headers: &HeaderMap) -> Result<Option<ContentRange>, RegistryError> {
    headers
        .get(CONTENT_RANGE)
        .map(|v| {
            let raw = v.to_str().unwrap_or("");
            parse_content_range(raw).ok_or_else(|| {
                RegistryError::new(OciCode::BlobUploadInvalid, "invalid Content-Range").with_detail(
                    serde_json::json!({ "Content-Range": crate::oci::truncate(raw, 100) }),
                )
            })
        })
        .transpose()
}

/// Accepts the spec's `<start>-<end>` and the HTTP forms `bytes=<start>-<end>` and
/// `bytes <start>-<end>/<total|*>`.
pub(crate) fn parse_content_range(raw: &str) -> Option<ContentRange> {
    let s = raw.trim();
    let s = s
        .strip_prefix("bytes=")
        .or_else(|| s.strip_prefix("bytes "))
        .unwrap_or(s);
    let (s, total) = match s.split_once('/') {
        Some((range, total)) => (range, Some(total.trim())),
        None => (s, None),
    };
    let (start, end) = s.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    // `end - start + 1` must fit: `0-18446744073709551615` names 2^64 bytes, which no chunk
    // has (and whose length would overflow where the body is checked against it).
    end.checked_sub(start)?.checked_add(1)?;
    // A complete length, when given, must be `*` or a number the range fits in.
    match total {
        None | Some("*") => {}
        Some(total) => match total.parse::<u64>() {
            Ok(total) if total > end => {}
            _ => return None,
        },
    }
    Some(ContentRange { start, end })
}

/// `Location` of an upload session.
pub fn upload_location(name: &RepositoryName, id: &UploadId) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

/// `Range` of a session at `offset` (distribution's form: `0-0` when empty).
pub fn upload_range(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_header_forms() {
        let b = |start, end| Some(RangeSpec::Bounded { start, end });
        assert_eq!(parse_range("bytes=0-9"), b(0, 9));
        assert_eq!(parse_range(" bytes= 5 - 9 "), b(5, 9));
        assert_eq!(
            parse_range("bytes=90-"),
            Some(RangeSpec::From { start: 90 })
        );
        assert_eq!(
            parse_range("bytes=-10"),
            Some(RangeSpec::Suffix { len: 10 })
        );
        assert_eq!(parse_range("bytes=-0"), Some(RangeSpec::Suffix { len: 0 }));
        for ignored in [
            "bytes=9-0",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=x-y",
            "bytes=-",
            "bytes=5",
            "",
        ] {
            assert_eq!(parse_range(ignored), None, "{ignored}");
        }
    }

    #[test]
    fn content_range_forms() {
        let c = |start, end| Some(ContentRange { start, end });
        assert_eq!(parse_content_range("0-99"), c(0, 99));
        assert_eq!(parse_content_range("bytes=5-9"), c(5, 9));
        assert_eq!(parse_content_range("bytes 5-9/100"), c(5, 9));
        assert_eq!(parse_content_range("bytes 5-9/*"), c(5, 9));
        assert_eq!(
            parse_content_range("1-18446744073709551615"),
            c(1, u64::MAX)
        );
        for bad in [
            "",
            "abc",
            "5",
            "9-5",
            "-5",
            "1-x",
            "bytes=1-",
            "bytes 5-9/9",
            "bytes 5-9/10x",
            // Found by the `upload_body` fuzz target: its length, 2^64, overflowed.
            "0-18446744073709551615",
            "bytes 0-18446744073709551615/*",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn malformed_content_range_is_blob_upload_invalid() {
        let mut headers = HeaderMap::new();
        assert!(content_range(&headers).unwrap().is_none());
        headers.insert(CONTENT_RANGE, "9-5".parse().unwrap());
        let e = content_range(&headers).unwrap_err();
        assert_eq!(e.code, OciCode::BlobUploadInvalid);
        assert_eq!(
            e.detail,
            Some(serde_json::json!({ "Content-Range": "9-5" }))
        );
    }

    #[test]
    fn session_headers() {
        let name = RepositoryName::parse("a/b").unwrap();
        let id = UploadId::parse("0b7e3a2e-8d1e-4b8e-9f0e-1a2b3c4d5e6f").unwrap();
        assert_eq!(
            upload_location(&name, &id),
            "/v2/a/b/blobs/uploads/0b7e3a2e-8d1e-4b8e-9f0e-1a2b3c4d5e6f"
        );
        assert_eq!(upload_range(0), "0-0");
        assert_eq!(upload_range(10), "0-9");
    }
}

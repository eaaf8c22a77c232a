//! `Content-Length` and `Content-Range` of upload bodies, and the body ends they declare.
//!
//! Input: `<Content-Length>\n<Content-Range>\n<flags><body>` (an empty line: no header). The
//! declared length the upload path derives from the two headers and the session's offset is
//! checked against them; the body then goes through the upload path's hashing stream bounded
//! by that length (it lets through at most the declared bytes, hashes exactly what it let
//! through, refuses only what goes past), and through `read_limited` (the management API's and
//! manifest bodies' reader: never more than its limit, nothing altered).
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http::header::{CONTENT_LENGTH, CONTENT_RANGE, HeaderValue};
use libfuzzer_sys::fuzz_target;
use registry_common::fuzzing;
use registry_common::oci::Digest;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime builds")
    })
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let (Some(length_raw), Some(range_raw), Some(rest)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    let Some((&flags, body)) = rest.split_first() else {
        return;
    };
    let mut headers = HeaderMap::new();
    for (name, raw) in [(CONTENT_LENGTH, length_raw), (CONTENT_RANGE, range_raw)] {
        if raw.is_empty() {
            continue;
        }
        let Ok(value) = HeaderValue::from_bytes(raw) else {
            return;
        };
        headers.insert(name, value);
    }

    let content_length = registry_common::http::content_length(&headers);
    if let Some(length) = content_length {
        let text = std::str::from_utf8(length_raw).expect("a numeric header is text");
        assert_eq!(text.trim().parse::<u64>().ok(), Some(length));
    }
    let Ok(range) = registry_common::http::headers::content_range(&headers) else {
        return;
    };
    // The session's offset: the range's start half the time (the chunk in order), else small.
    let offset = match (flags & 1, range) {
        (0, Some(r)) => r.start,
        _ => u64::from(flags >> 4),
    };
    let expected = match fuzzing::expected_length(offset, range, content_length) {
        Ok(expected) => expected,
        Err(_) => {
            // Refused only for a range elsewhere than the session, or two lengths disagreeing.
            let r = range.expect("without a Content-Range every length is accepted");
            let len = r.end - r.start + 1;
            assert!(r.start != offset || content_length.is_some_and(|l| l != len));
            return;
        }
    };
    match range {
        None => assert_eq!(expected, content_length),
        Some(r) => {
            assert_eq!(r.start, offset);
            assert_eq!(expected, Some(r.end - r.start + 1));
        }
    }

    // The body in chunks of 1 to 16 bytes, as a network delivers it.
    let step = usize::from(flags >> 4) + 1;
    let chunks: Vec<Bytes> = body.chunks(step).map(Bytes::copy_from_slice).collect();
    let hashed = fuzzing::hash_limited(chunks, expected);
    let through: Vec<u8> = hashed.passed.concat();
    assert!(body.starts_with(&through));
    assert_eq!(hashed.digest, Digest::sha256_of(&through));
    match expected {
        Some(limit) => {
            assert!(through.len() as u64 <= limit);
            assert_eq!(hashed.refused, body.len() as u64 > limit);
        }
        None => assert!(!hashed.refused && through.len() == body.len()),
    }
    if !hashed.refused {
        assert_eq!(through, body);
    }

    let limit = if flags & 2 == 0 {
        usize::from(flags)
    } else {
        64 * 1024
    };
    let read = runtime().block_on(registry_common::http::read_limited(
        &headers,
        axum::body::Body::from(body.to_vec()),
        limit,
        Duration::from_secs(5),
    ));
    match read {
        Ok(bytes) => {
            assert_eq!(&bytes[..], body);
            assert!(bytes.len() <= limit);
            assert!(content_length.is_none_or(|l| l <= limit as u64));
        }
        Err(_) => assert!(
            body.len() > limit || content_length.is_some_and(|l| l > limit as u64),
            "refused a body within its limit"
        ),
    }
});

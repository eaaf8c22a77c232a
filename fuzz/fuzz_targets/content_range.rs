//! The `Content-Range` header of an upload `PATCH`: what parses has start <= end, end < total
//! when the value gives a numeric total, and a length that fits a u64; the chunk printed in
//! the spec's form parses back to itself; the header reader answers the same as the parser,
//! or its 400 for garbage.
#![no_main]

use http::HeaderMap;
use http::header::{CONTENT_RANGE, HeaderValue};
use libfuzzer_sys::fuzz_target;
use registry_common::fuzzing;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_RANGE, value.clone());
    let read = registry_common::http::headers::content_range(&headers);
    let Ok(text) = value.to_str() else {
        assert!(read.is_err(), "a non-text Content-Range is refused");
        return;
    };
    let parsed = fuzzing::content_range(text);
    match (&read, parsed) {
        (Ok(Some(a)), Some(b)) => assert_eq!(*a, b),
        (Err(_), None) => {}
        other => panic!("header reader and parser disagree on {text:?}: {other:?}"),
    }
    let Some(range) = parsed else {
        return;
    };
    assert!(range.start <= range.end, "{text:?}: {range:?}");
    assert!(
        (range.end - range.start).checked_add(1).is_some(),
        "{text:?}: the length does not fit"
    );
    if let Some((_, total)) = text.split_once('/')
        && let Ok(total) = total.trim().parse::<u64>()
    {
        assert!(range.end < total, "{text:?}: {range:?}");
    }
    let spec_form = format!("{}-{}", range.start, range.end);
    assert_eq!(fuzzing::content_range(&spec_form), Some(range));
    let http_form = format!("bytes {}-{}/*", range.start, range.end);
    assert_eq!(fuzzing::content_range(&http_form), Some(range));
});

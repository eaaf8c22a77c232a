//! The `Range` header of a blob `GET`: the first 8 bytes are the blob's size, the rest the
//! header's value. A range that parses and resolves lies within the blob; one that does not
//! resolve names no byte of it.
#![no_main]

use http::HeaderMap;
use http::header::{HeaderValue, RANGE};
use libfuzzer_sys::fuzz_target;
use registry_common::fuzzing;
use registry_common::services::RangeSpec;

fuzz_target!(|data: &[u8]| {
    let Some((size, header)) = data.split_first_chunk::<8>() else {
        return;
    };
    // Small sizes as often as huge ones: the edges are at 0, 1 and the range's own numbers.
    let size = u64::from_le_bytes(*size) >> (size[0] % 64);
    let Ok(value) = HeaderValue::from_bytes(header) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(RANGE, value.clone());
    let spec = registry_common::http::headers::range(&headers);
    if let Ok(text) = value.to_str() {
        assert_eq!(spec, fuzzing::range(text));
    }
    let Some(spec) = spec else {
        return;
    };
    match spec.resolve(size) {
        Some(r) => {
            assert!(r.start <= r.end, "{spec:?} in {size}: {r:?}");
            assert!(r.end < size, "{spec:?} in {size}: {r:?}");
            match spec {
                RangeSpec::Bounded { start, end } => {
                    assert_eq!(r.start, start);
                    assert!(r.end <= end);
                }
                RangeSpec::From { start } => assert_eq!((r.start, r.end), (start, size - 1)),
                RangeSpec::Suffix { len } => {
                    assert_eq!(r.end, size - 1);
                    assert_eq!(r.end - r.start + 1, len.min(size));
                }
            }
        }
        None => match spec {
            RangeSpec::Bounded { start, .. } | RangeSpec::From { start } => {
                assert!(start >= size, "{spec:?} in {size}")
            }
            RangeSpec::Suffix { len } => assert!(len == 0 || size == 0, "{spec:?} in {size}"),
        },
    }
});

//! Manifest bodies of every media type (OCI manifest and index, Docker manifest and manifest
//! list, artifacts), as a `PUT` sends them. The first byte picks the `Content-Type` (none, one
//! of the four, `application/json`, or the bytes up to the first newline), the rest is the
//! body. Whatever parses: parsing is deterministic; the same value re-serialized (other
//! whitespace, so another digest) parses to the same manifest, under its own media type too;
//! every descriptor's digest prints back identical; the body's digest is stable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry_common::oci::manifest::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST,
};
use registry_common::oci::{Descriptor, Digest, ParsedManifest};

/// What a parse found, comparable.
fn summary(m: &ParsedManifest) -> String {
    let list = |ds: &[Descriptor]| {
        ds.iter()
            .map(|d| format!("{} {} {}", d.media_type, d.digest, d.size))
            .collect::<Vec<_>>()
    };
    format!(
        "{:?} {:?} {:?} {:?} {:?} {:?}",
        m.kind,
        list(&m.blobs),
        list(&m.children),
        m.subject.as_ref().map(ToString::to_string),
        m.artifact_type,
        m.annotations
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (content_type, body) = match selector % 8 {
        0 => (None, rest),
        1 => (Some(OCI_MANIFEST), rest),
        2 => (Some(OCI_INDEX), rest),
        3 => (Some(DOCKER_MANIFEST), rest),
        4 => (Some(DOCKER_MANIFEST_LIST), rest),
        5 => (Some("application/json"), rest),
        _ => {
            let (ct, body) = rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or((rest, &[][..]), |i| (&rest[..i], &rest[i + 1..]));
            let Ok(ct) = std::str::from_utf8(ct) else {
                return;
            };
            (Some(ct), body)
        }
    };
    let Ok(parsed) = ParsedManifest::parse(content_type, body) else {
        return;
    };
    let again = ParsedManifest::parse(content_type, body).expect("a manifest parses twice");
    assert_eq!(summary(&parsed), summary(&again));
    assert_eq!(Digest::sha256_of(body), Digest::sha256_of(body));

    if let Some(ct) = content_type.filter(|ct| !ct.is_empty()) {
        assert_eq!(ct, parsed.kind.media_type());
    }
    if parsed.kind.is_index() {
        assert!(parsed.blobs.is_empty());
    } else {
        assert!(parsed.children.is_empty());
        assert!(!parsed.blobs.is_empty(), "an image manifest has its config");
    }
    for d in parsed.blobs.iter().chain(&parsed.children) {
        assert_eq!(
            Digest::parse(&d.digest.to_string()).ok().as_ref(),
            Some(&d.digest)
        );
        assert!(!d.media_type.is_empty());
    }

    let value: serde_json::Value = serde_json::from_slice(body).expect("it parsed as JSON");
    let pretty = serde_json::to_vec_pretty(&value).expect("a JSON value serializes");
    let reparsed = ParsedManifest::parse(content_type, &pretty).expect("re-serialized parses");
    assert_eq!(summary(&parsed), summary(&reparsed));
    let typed = ParsedManifest::parse(Some(parsed.kind.media_type()), &pretty);
    match typed {
        Ok(typed) => assert_eq!(summary(&parsed), summary(&typed)),
        // Only a body whose own mediaType names another format than the one it parsed as.
        Err(e) => panic!("re-parse under its own media type failed: {e}"),
    }
});

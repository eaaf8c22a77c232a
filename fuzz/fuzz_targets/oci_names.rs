//! Repository names, tags, references, digests, upload ids and media types, as they arrive in
//! request paths and manifests: whatever parses prints back byte-identical (an upload id:
//! parses back to itself), and a name's project is its first component.
#![no_main]

use libfuzzer_sys::fuzz_target;
use registry_common::oci::{Digest, MediaType, Reference, RepositoryName, Tag, UploadId};

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(name) = RepositoryName::parse(raw) {
        assert_eq!(name.to_string(), raw);
        assert_eq!(name.as_str(), raw);
        assert!(raw.starts_with(name.project()));
        assert!(!name.project().contains('/'));
        assert!(raw.len() <= 255);
    }
    if let Ok(tag) = Tag::parse(raw) {
        assert_eq!(tag.to_string(), raw);
    }
    if let Ok(digest) = Digest::parse(raw) {
        assert_eq!(digest.to_string(), raw);
        assert_eq!(
            format!("{}:{}", digest.algorithm().as_str(), digest.hex()),
            raw
        );
        assert_eq!(Digest::parse(&digest.to_string()).ok(), Some(digest));
    }
    if let Ok(reference) = Reference::parse(raw) {
        assert_eq!(reference.to_string(), raw);
        assert_eq!(
            matches!(reference, Reference::Digest(_)),
            Digest::parse(raw).is_ok()
        );
    }
    if let Ok(id) = UploadId::parse(raw) {
        let shown = id.to_string();
        assert_eq!(UploadId::parse(&shown).ok(), Some(id));
        // Safe in storage keys: the hyphenated form only.
        assert!(shown.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'));
    }
    if let Some(media_type) = MediaType::parse(raw) {
        assert_eq!(media_type.to_string(), raw);
    }
});

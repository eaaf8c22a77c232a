//! Repository names, tags and manifest references, per the distribution spec's grammars.

use std::fmt;

use super::digest::Digest;
use crate::error::{OciCode, RegistryError};

/// Longest repository name accepted (the spec lets registries cap it; 255 matches distribution).
pub const MAX_NAME_LEN: usize = 255;

/// A repository name such as `project/app/web`: components of `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
/// joined by `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepositoryName(String);

impl RepositoryName {
    pub fn parse(raw: &str) -> Result<Self, RegistryError> {
        let invalid = |why: &str| {
            RegistryError::new(OciCode::NameInvalid, "invalid repository name")
                .with_detail(serde_json::json!({ "name": truncate(raw, 300), "reason": why }))
        };
        if raw.is_empty() {
            return Err(invalid("empty"));
        }
        if raw.len() > MAX_NAME_LEN {
            return Err(invalid("longer than 255 characters"));
        }
        if !raw.split('/').all(valid_component) {
            return Err(invalid(
                "each path component must match [a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*",
            ));
        }
        Ok(RepositoryName(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The project namespace: the first path component.
    pub fn project(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }
}

fn valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    // Separators between alphanumeric runs: one '.', one or two '_', or any number of '-'.
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

impl fmt::Display for RepositoryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn parse(raw: &str) -> Result<Self, RegistryError> {
        let bytes = raw.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= 128
            && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
            && bytes[1..]
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if ok {
            Ok(Tag(raw.to_owned()))
        } else {
            Err(RegistryError::new(OciCode::TagInvalid, "invalid tag")
                .with_detail(serde_json::json!({ "tag": truncate(raw, 200) })))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What follows `/manifests/`: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl Reference {
    /// A reference containing ':' is a digest, anything else a tag.
    pub fn parse(raw: &str) -> Result<Self, RegistryError> {
        if raw.contains(':') {
            Digest::parse(raw).map(Reference::Digest)
        } else {
            Tag::parse(raw).map(Reference::Tag)
        }
    }
}

impl Reference {
    /// A reference to look up (`GET`, `HEAD`, `DELETE`): one that cannot name a manifest
    /// names none, so it is `404 MANIFEST_UNKNOWN` like any reference the repository lacks.
    /// Only a `PUT`, which would create the tag, answers `400` ([`Reference::parse`]).
    pub fn parse_existing(raw: &str) -> Result<Self, RegistryError> {
        Reference::parse(raw).map_err(|_| RegistryError::manifest_unknown(&truncate(raw, 200)))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

/// Cuts untrusted input echoed in error details to a bounded length.
pub(crate) fn truncate(raw: &str, max: usize) -> String {
    if raw.len() <= max {
        return raw.to_owned();
    }
    let mut end = max;
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &raw[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_spec_grammar() {
        for ok in [
            "a",
            "library/ubuntu",
            "a/b/c/d/e",
            "my-app",
            "my--app",
            "a.b",
            "a_b",
            "a__b",
            "0x",
        ] {
            assert!(RepositoryName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "A", "a/", "/a", "a//b", "-a", "a-", "a..b", "a___b", "a/../b", "..", "a%2Fb",
            "a b", "a.-b", "a_.b",
        ] {
            assert!(RepositoryName::parse(bad).is_err(), "{bad}");
        }
        assert!(RepositoryName::parse(&"a".repeat(255)).is_ok());
        assert!(RepositoryName::parse(&"a".repeat(256)).is_err());
    }

    #[test]
    fn project_is_first_component() {
        assert_eq!(RepositoryName::parse("p/app/web").unwrap().project(), "p");
        assert_eq!(RepositoryName::parse("solo").unwrap().project(), "solo");
    }

    #[test]
    fn tags_follow_the_spec_grammar() {
        for ok in ["latest", "_x", "v1.2.3-rc_1", &"a".repeat(128)] {
            assert!(Tag::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", &"a".repeat(129), "ü"] {
            assert!(Tag::parse(bad).is_err(), "{bad}");
        }
    }
}

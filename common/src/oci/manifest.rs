//! Manifest parsing and validation: what a pushed manifest is, which blobs and child
//! manifests it references, and its subject, read once at push time.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::digest::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// A media type (`type/subtype`), as stored with a manifest and answered in `Content-Type`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MediaType(String);

impl MediaType {
    /// `None` for what is not a media type.
    pub fn parse(raw: &str) -> Option<Self> {
        is_valid_media_type(raw).then(|| MediaType(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for MediaType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A manifest body the registry refuses, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("manifest invalid: {reason}")]
pub struct InvalidManifest {
    pub reason: String,
}

fn invalid(reason: impl Into<String>) -> InvalidManifest {
    InvalidManifest {
        reason: reason.into(),
    }
}

/// The four manifest formats this registry stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    OciManifest,
    OciIndex,
    DockerManifest,
    DockerManifestList,
}

impl ManifestKind {
    fn from_media_type(media_type: &str) -> Option<Self> {
        match media_type {
            OCI_MANIFEST => Some(ManifestKind::OciManifest),
            OCI_INDEX => Some(ManifestKind::OciIndex),
            DOCKER_MANIFEST => Some(ManifestKind::DockerManifest),
            DOCKER_MANIFEST_LIST => Some(ManifestKind::DockerManifestList),
            _ => None,
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            ManifestKind::OciManifest => OCI_MANIFEST,
            ManifestKind::OciIndex => OCI_INDEX,
            ManifestKind::DockerManifest => DOCKER_MANIFEST,
            ManifestKind::DockerManifestList => DOCKER_MANIFEST_LIST,
        }
    }

    pub fn is_index(self) -> bool {
        matches!(
            self,
            ManifestKind::OciIndex | ManifestKind::DockerManifestList
        )
    }
}

/// A validated content descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// A manifest that passed validation, with what it references.
#[derive(Debug, Clone)]
pub struct ParsedManifest {
    pub kind: ManifestKind,
    /// Config and layers that must be present in the repository.
    pub blobs: Vec<Descriptor>,
    /// Manifests an index lists, which must be present in the repository.
    pub children: Vec<Descriptor>,
    pub subject: Option<Digest>,
    /// `artifactType`, or else the config's media type: what the referrers API reports.
    pub artifact_type: Option<String>,
    /// The `annotations` object as JSON text, when present.
    pub annotations: Option<String>,
}

/// Whether a string is a media type per RFC 6838: `type/subtype`, each part 1–127 characters
/// of the restricted-name alphabet, starting with a letter or digit (parameters not allowed).
pub fn is_valid_media_type(value: &str) -> bool {
    let part = |p: &str| {
        let bytes = p.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= 127
            && bytes[0].is_ascii_alphanumeric()
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(b))
    };
    matches!(value.split_once('/'), Some((t, s)) if part(t) && part(s))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<serde_json::Value>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawDescriptor>>,
    subject: Option<RawDescriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default)]
    urls: Vec<String>,
}

impl ParsedManifest {
    /// Parses and validates a manifest body sent with the given `Content-Type` (parameters
    /// already stripped).
    pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Self, InvalidManifest> {
        // serde_json bounds nesting depth (128), so hostile deeply nested JSON fails cleanly.
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(invalid("a manifest is a JSON object"));
        }
        let raw: RawManifest = serde_json::from_value(value)
            .map_err(|e| invalid(format!("unexpected manifest structure: {e}")))?;
        if raw.schema_version != Some(serde_json::Value::from(2)) {
            return Err(invalid("schemaVersion must be 2"));
        }
        // Without a Content-Type the body's mediaType decides; with one, both must agree
        // (`application/json` included: it names no manifest format this registry stores).
        let content_type = content_type.filter(|ct| !ct.is_empty());
        let media_type = match (content_type, raw.media_type.as_deref()) {
            (Some(ct), Some(mt)) if ct != mt => {
                return Err(invalid(format!(
                    "mediaType {mt:?} contradicts Content-Type {ct:?}"
                )));
            }
            (Some(ct), _) => ct.to_owned(),
            (None, Some(mt)) => mt.to_owned(),
            (None, None) if raw.manifests.is_some() => OCI_INDEX.to_owned(),
            (None, None) => OCI_MANIFEST.to_owned(),
        };
        let kind = ManifestKind::from_media_type(&media_type)
            .ok_or_else(|| invalid(format!("unsupported manifest media type {media_type:?}")))?;

        if let Some(artifact_type) = &raw.artifact_type
            && !is_valid_media_type(artifact_type)
        {
            return Err(invalid("artifactType is not a media type"));
        }
        let subject = raw.subject.map(|s| validate(s, "subject")).transpose()?;
        let annotations = raw
            .annotations
            .as_ref()
            .map(|a| serde_json::to_string(a).unwrap_or_default());
        let mut blobs = Vec::new();
        let mut children = Vec::new();
        let mut artifact_type = raw.artifact_type.clone();
        if kind.is_index() {
            let manifests = raw
                .manifests
                .ok_or_else(|| invalid("an index needs a manifests array"))?;
            for (i, child) in manifests.into_iter().enumerate() {
                children.push(validate(child, &format!("manifests[{i}]"))?);
            }
        } else {
            let config = raw
                .config
                .ok_or_else(|| invalid("an image manifest needs a config"))?;
            let layers = raw
                .layers
                .ok_or_else(|| invalid("an image manifest needs a layers array"))?;
            let config = validate(config, "config")?;
            if artifact_type.is_none() && kind == ManifestKind::OciManifest {
                artifact_type = Some(config.media_type.clone());
            }
            blobs.push(config);
            for (i, layer) in layers.into_iter().enumerate() {
                // Foreign (non-distributable) layers live at their URLs, not in this registry.
                let foreign = !layer.urls.is_empty()
                    && (layer.media_type.contains("foreign")
                        || layer.media_type.contains("nondistributable"));
                let layer = validate(layer, &format!("layers[{i}]"))?;
                if !foreign {
                    blobs.push(layer);
                }
            }
        }
        Ok(ParsedManifest {
            kind,
            blobs,
            children,
            subject: subject.map(|s| s.digest),
            artifact_type,
            annotations,
        })
    }
}

fn validate(raw: RawDescriptor, field: &str) -> Result<Descriptor, InvalidManifest> {
    let digest = Digest::parse(&raw.digest).map_err(|_| {
        invalid(format!(
            "{field}: digest is not a valid sha256/sha512 digest"
        ))
    })?;
    let size = u64::try_from(raw.size)
        .map_err(|_| invalid(format!("{field}: size must not be negative")))?;
    if raw.media_type.is_empty() {
        return Err(invalid(format!("{field}: mediaType is empty")));
    }
    Ok(Descriptor {
        media_type: raw.media_type,
        digest,
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    #[test]
    fn image_manifest_lists_config_and_layers() {
        let body = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d(1), "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d(2), "size": 3}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": d(3), "size": 4},
        });
        let m = ParsedManifest::parse(Some(OCI_MANIFEST), body.to_string().as_bytes()).unwrap();
        assert_eq!(m.kind, ManifestKind::OciManifest);
        assert_eq!(m.blobs.len(), 2);
        assert_eq!(m.subject.unwrap().to_string(), d(3));
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }

    #[test]
    fn media_types_follow_rfc_6838() {
        for ok in [OCI_MANIFEST, "application/spdx+json", "text/plain", "a/b"] {
            assert!(is_valid_media_type(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "/b",
            "a/",
            "a/b/c",
            "a\0/b",
            "a /b",
            "a/b; charset=x",
            "-a/b",
        ] {
            assert!(!is_valid_media_type(bad), "{bad:?}");
        }
    }

    #[test]
    fn rejects_contradictions_and_garbage() {
        let index =
            serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})
                .to_string();
        assert!(ParsedManifest::parse(Some(OCI_MANIFEST), index.as_bytes()).is_err());
        assert!(ParsedManifest::parse(Some(OCI_INDEX), index.as_bytes()).is_ok());
        assert!(ParsedManifest::parse(None, b"[]").is_err());
        assert!(ParsedManifest::parse(None, b"{\"schemaVersion\":1}").is_err());
        let deep = format!(
            "{{\"schemaVersion\":2,\"x\":{}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(ParsedManifest::parse(None, deep.as_bytes()).is_err());
        let negative = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "x", "digest": d(1), "size": -1}, "layers": [],
        });
        assert!(ParsedManifest::parse(None, negative.to_string().as_bytes()).is_err());
    }
}

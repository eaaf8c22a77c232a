//! Content pushed into a [`Distribution`] over HTTP with its flavour's credentials, as a
//! client pushes it: blobs by `POST` + `PUT ?digest=` (or a streamed `PATCH` for big ones),
//! then manifests. The images are [`oci_layout`]'s (valid tar layers, so docker and skopeo can
//! take them apart); the fixtures the cache suites need:
//! - a plain image ([`Distribution::push_image`]),
//! - a multi-platform OCI index over linux/amd64 and linux/arm64, each with layers of its own
//!   ([`Distribution::push_multi_arch`]),
//! - an image with a referrer, an artifact manifest whose `subject` is the image; distribution
//!   2.8 has no referrers API, so the tag-schema fallback index (`sha256-<hex>`) goes in too
//!   ([`Distribution::push_referrer`]),
//! - a big image of one tar layer of N MiB generated and hashed while it streams, never whole
//!   in memory ([`Distribution::push_big_image`]).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use reqwest::Method;
use sha2::{Digest as _, Sha256};

use super::Distribution;
use crate::oci_layout::{Blob, Image, MultiArch, OCI_LAYER_TAR, tar_with_one_file};
use crate::{EMPTY_JSON, OCI_CONFIG, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, send, sha256_digest};

/// The artifact type of the referrer fixture.
pub const SBOM_TYPE: &str = "application/vnd.example.sbom.v1+json";

/// A referrer pushed by [`Distribution::push_referrer`].
#[derive(Debug, Clone)]
pub struct Referrer {
    /// The artifact manifest (its `subject` is the image).
    pub manifest: Blob,
    /// Its config (the empty descriptor's `{}`) and its one layer.
    pub blobs: Vec<Blob>,
    /// The tag-schema fallback index listing the artifact, and its tag (`sha256-<hex>`).
    pub fallback_index: Blob,
    pub fallback_tag: String,
}

/// A big image pushed by [`Distribution::push_big_image`].
#[derive(Debug, Clone)]
pub struct BigImage {
    pub manifest: Blob,
    pub config: Blob,
    pub layer_digest: String,
    pub layer_size: u64,
}

/// Size of the chunks a big layer streams in.
const CHUNK: usize = 1 << 20;

impl Distribution {
    /// Pushes a blob in one `PUT` and returns its digest.
    pub async fn push_blob(&self, repository: &str, bytes: &[u8]) -> String {
        let digest = sha256_digest(bytes);
        let location = self.open_upload(repository).await;
        let url = crate::with_query(&location, &format!("digest={digest}"));
        let reply = send(
            self.request(Method::PUT, repository, &url)
                .await
                .header("Content-Type", "application/octet-stream")
                .body(bytes.to_vec()),
        )
        .await;
        assert_eq!(reply.status, 201, "push blob {digest}: {}", reply.text());
        digest
    }

    async fn open_upload(&self, repository: &str) -> String {
        let path = format!("/v2/{repository}/blobs/uploads/");
        let reply = send(
            self.request(Method::POST, repository, &path)
                .await
                .header("Content-Length", "0"),
        )
        .await;
        assert_eq!(reply.status, 202, "open upload: {}", reply.text());
        let location = reply.header("location").expect("Location of the upload");
        if location.starts_with("http") {
            location.to_owned()
        } else {
            self.url(location)
        }
    }

    /// Pushes a manifest under `reference` (tag or digest); returns its digest.
    pub async fn push_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> String {
        let path = format!("/v2/{repository}/manifests/{reference}");
        let reply = send(
            self.request(Method::PUT, repository, &path)
                .await
                .header("Content-Type", media_type)
                .body(bytes.to_vec()),
        )
        .await;
        assert_eq!(
            reply.status,
            201,
            "push manifest {repository}:{reference}: {}",
            reply.text()
        );
        let digest = sha256_digest(bytes);
        assert_eq!(reply.header("docker-content-digest"), Some(digest.as_str()));
        digest
    }

    /// Pushes the image's blobs and its manifest, tagged `tag` (by digest when `None`).
    pub async fn push_image(&self, repository: &str, tag: Option<&str>, image: &Image) {
        for blob in std::iter::once(&image.config).chain(&image.layers) {
            self.push_blob(repository, &blob.bytes).await;
        }
        let manifest = &image.manifest;
        let reference = tag.unwrap_or(&manifest.digest);
        self.push_manifest(repository, reference, OCI_MANIFEST, &manifest.bytes)
            .await;
    }

    /// Pushes every platform's image by digest, then the index tagged `tag`.
    pub async fn push_multi_arch(&self, repository: &str, tag: &str, multi: &MultiArch) {
        for image in &multi.images {
            self.push_image(repository, None, image).await;
        }
        self.push_manifest(repository, tag, OCI_INDEX, &multi.index.bytes)
            .await;
    }

    /// Pushes an artifact manifest whose `subject` is `image` (already pushed), and the
    /// tag-schema fallback index that lists it.
    pub async fn push_referrer(&self, repository: &str, image: &Image, seed: u64) -> Referrer {
        let config = Blob::new(OCI_EMPTY, EMPTY_JSON.to_vec());
        let sbom = format!(r#"{{"sbom":"of {}","seed":{seed}}}"#, image.manifest.digest);
        let layer = Blob::new(SBOM_TYPE, sbom.into_bytes());
        for blob in [&config, &layer] {
            self.push_blob(repository, &blob.bytes).await;
        }
        let manifest = json_blob(
            OCI_MANIFEST,
            &serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "artifactType": SBOM_TYPE,
                "config": config.descriptor(),
                "layers": [layer.descriptor()],
                "subject": image.manifest.descriptor(),
                "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
            }),
        );
        self.push_manifest(repository, &manifest.digest, OCI_MANIFEST, &manifest.bytes)
            .await;
        let mut listed = manifest.descriptor();
        listed["artifactType"] = SBOM_TYPE.into();
        let fallback_index = json_blob(
            OCI_INDEX,
            &serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [listed],
            }),
        );
        let fallback_tag = image.manifest.digest.replace(':', "-");
        self.push_manifest(repository, &fallback_tag, OCI_INDEX, &fallback_index.bytes)
            .await;
        Referrer {
            manifest,
            blobs: vec![config, layer],
            fallback_index,
            fallback_tag,
        }
    }

    /// Pushes an image of one uncompressed tar layer holding a file of `mib` MiB of
    /// pseudo-random bytes from `seed`, generated and hashed while it streams up in one
    /// `PATCH`.
    pub async fn push_big_image(
        &self,
        repository: &str,
        tag: &str,
        mib: u64,
        seed: u64,
    ) -> BigImage {
        let content = mib << 20;
        let hasher = Arc::new(Mutex::new(Sha256::new()));
        let stream = tar_stream(content, seed, hasher.clone());
        let location = self.open_upload(repository).await;
        let reply = send(
            self.request(Method::PATCH, repository, &location)
                .await
                .header("Content-Type", "application/octet-stream")
                .body(reqwest::Body::wrap_stream(stream)),
        )
        .await;
        assert_eq!(reply.status, 202, "stream the big layer: {}", reply.text());
        let location = reply.header("location").expect("Location after PATCH");
        let location = if location.starts_with("http") {
            location.to_owned()
        } else {
            self.url(location)
        };
        let hash = hasher.lock().expect("hasher").clone().finalize();
        let layer_digest = format!("sha256:{}", crate::hex(&hash));
        let layer_size = tar_size(content);
        let url = crate::with_query(&location, &format!("digest={layer_digest}"));
        let reply = send(self.request(Method::PUT, repository, &url).await).await;
        assert_eq!(reply.status, 201, "close the big layer: {}", reply.text());
        let config = json_blob(
            OCI_CONFIG,
            &serde_json::json!({
                "architecture": "amd64",
                "os": "linux",
                "created": "2026-01-01T00:00:00Z",
                "config": {"Env": [format!("SEED={seed}")]},
                "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
            }),
        );
        self.push_blob(repository, &config.bytes).await;
        let manifest = json_blob(
            OCI_MANIFEST,
            &serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": config.descriptor(),
                "layers": [{"mediaType": OCI_LAYER_TAR, "digest": layer_digest, "size": layer_size}],
            }),
        );
        self.push_manifest(repository, tag, OCI_MANIFEST, &manifest.bytes)
            .await;
        BigImage {
            manifest,
            config,
            layer_digest,
            layer_size,
        }
    }
}

fn json_blob(media_type: &'static str, value: &serde_json::Value) -> Blob {
    Blob::new(
        media_type,
        serde_json::to_vec(value).expect("serialize JSON"),
    )
}

/// Bytes of a one-file tar of `content` bytes (a multiple of 512): header, content, the two
/// zero blocks.
fn tar_size(content: u64) -> u64 {
    512 + content + 1024
}

/// The tar header of one file `big.bin` of `size` bytes.
fn tar_header(size: u64) -> Vec<u8> {
    // The header of an empty file, its size field rewritten and its checksum recomputed.
    let mut header = tar_with_one_file("big.bin", &[])[..512].to_vec();
    header[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    header[148..156].fill(b' ');
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    header
}

/// The tar of one file of `content` pseudo-random bytes (the same as
/// [`crate::pseudo_random_bytes`] gives for `seed`), in chunks, each fed to `hasher` as it
/// goes out.
fn tar_stream(
    content: u64,
    seed: u64,
    hasher: Arc<Mutex<Sha256>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    assert_eq!(content % 512, 0, "content fills whole tar blocks");
    let state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    // (xorshift state, content bytes left, header sent, trailer sent)
    let start = (state, content, false, false);
    futures_util::stream::unfold(start, move |(mut state, left, header, trailer)| {
        let hasher = hasher.clone();
        async move {
            let (chunk, next) = if !header {
                (tar_header(content), (state, left, true, false))
            } else if left > 0 {
                let len = (left as usize).min(CHUNK);
                let mut chunk = Vec::with_capacity(len + 8);
                while chunk.len() < len {
                    state ^= state >> 12;
                    state ^= state << 25;
                    state ^= state >> 27;
                    chunk.extend_from_slice(
                        &state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes(),
                    );
                }
                chunk.truncate(len);
                (chunk, (state, left - len as u64, true, false))
            } else if !trailer {
                (vec![0u8; 1024], (state, 0, true, true))
            } else {
                return None;
            };
            hasher.lock().expect("hasher").update(&chunk);
            Some((Ok(Bytes::from(chunk)), next))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt as _;

    #[tokio::test]
    async fn streamed_tar_is_the_one_file_tar_of_the_same_bytes() {
        let content = 3 * 512 + (1 << 20);
        let hasher = Arc::new(Mutex::new(Sha256::new()));
        let chunks: Vec<_> = tar_stream(content, 9, hasher.clone()).collect().await;
        let streamed: Vec<u8> = chunks
            .into_iter()
            .flat_map(|c| c.expect("chunk").to_vec())
            .collect();
        let whole = tar_with_one_file("big.bin", &crate::pseudo_random_bytes(content as usize, 9));
        assert_eq!(streamed.len() as u64, tar_size(content));
        assert!(streamed == whole, "streamed tar differs from the whole one");
        let hash = hasher.lock().expect("hasher").clone().finalize();
        assert_eq!(
            format!("sha256:{}", crate::hex(&hash)),
            sha256_digest(&whole)
        );
    }
}

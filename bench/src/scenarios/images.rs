//! `small-images`: `--images` small OCI images (a config and 1 to 3 layers of 0.5–4 KiB, all
//! distinct, and a manifest) pushed, then pulled by tag, then pulled by digest, at each
//! concurrency of `--levels`, as a client does it: `HEAD` each blob (404), `POST` + `PUT` it,
//! `PUT` the manifest under its tag; `GET` the manifest, then every blob, each checked
//! against its digest.
//!
//! Lines `image-push`, `image-pull-tag`, `image-pull-digest` per level: images/s (spread:
//! each image's latency in ms) and the server's resources.
//!
//! ```text
//! bench small-images --url URL [--pid PID] [--images 200] [--levels 1,8,32] [--repos 8]
//! ```

use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;

use super::concurrently;
use crate::cli::Flags;
use crate::client::{PushMode, Registry, Verify};
use crate::data::{random_bytes, seed_of, sha256_digest};
use crate::report::{Better, Line, Spread};

const FLAGS: [&str; 3] = ["images", "levels", "repos"];
pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// A blob with its digest.
#[derive(Debug, Clone)]
pub struct Blob {
    pub data: Bytes,
    pub digest: String,
}

impl Blob {
    fn new(data: Vec<u8>) -> Blob {
        let digest = sha256_digest(&data);
        Blob {
            data: Bytes::from(data),
            digest,
        }
    }
}

/// A small image: its blobs (config first) and manifest.
#[derive(Debug, Clone)]
pub struct Image {
    pub blobs: Vec<Blob>,
    pub manifest: Blob,
}

impl Image {
    /// The image named `id`: contents depend on `id` only.
    pub fn new(id: &str) -> Image {
        let seed = seed_of(id);
        let layers: Vec<Blob> = (0..1 + seed % 3)
            .map(|k| {
                let len = 512 + usize::try_from((seed >> (8 + k * 12)) % 3585).unwrap_or(0);
                Blob::new(random_bytes(seed.wrapping_add(k), len))
            })
            .collect();
        let diff_ids: Vec<&str> = layers.iter().map(|l| l.digest.as_str()).collect();
        let config = Blob::new(
            json!({
                "architecture": "amd64",
                "os": "linux",
                "config": { "Labels": { "bench": id } },
                "rootfs": { "type": "layers", "diff_ids": diff_ids },
            })
            .to_string()
            .into_bytes(),
        );
        let descriptor = |media_type: &str, blob: &Blob| json!({ "mediaType": media_type, "digest": blob.digest, "size": blob.data.len() });
        let manifest = Blob::new(
            json!({
                "schemaVersion": 2,
                "mediaType": MANIFEST_TYPE,
                "config": descriptor(CONFIG_TYPE, &config),
                "layers": layers.iter().map(|l| descriptor(LAYER_TYPE, l)).collect::<Vec<_>>(),
            })
            .to_string()
            .into_bytes(),
        );
        let mut blobs = vec![config];
        blobs.extend(layers);
        Image { blobs, manifest }
    }

    /// Pushes the blobs a `HEAD` says are missing, then the manifest under `reference`.
    pub async fn push(
        &self,
        registry: &Registry,
        repo: &str,
        reference: &str,
    ) -> anyhow::Result<()> {
        for blob in &self.blobs {
            if registry.blob_size(repo, &blob.digest).await?.is_none() {
                registry
                    .push_blob(repo, &blob.digest, blob.data.clone(), PushMode::Monolithic)
                    .await?;
            }
        }
        registry
            .put_manifest(
                repo,
                reference,
                MANIFEST_TYPE,
                self.manifest.data.clone(),
                &self.manifest.digest,
            )
            .await
    }

    /// Pulls the manifest by `reference` and every blob, checking each digest.
    pub async fn pull(
        &self,
        registry: &Registry,
        repo: &str,
        reference: &str,
    ) -> anyhow::Result<()> {
        registry
            .get_manifest(repo, reference, MANIFEST_TYPE, &self.manifest.digest)
            .await?;
        for blob in &self.blobs {
            registry
                .pull_blob(repo, &blob.digest, &blob.data, Verify::Digest)
                .await?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Push,
    PullTag,
    PullDigest,
}

pub async fn run(args: &[String]) -> anyhow::Result<Vec<String>> {
    let flags = Flags::parse(args, &FLAGS)?;
    let count = usize::try_from(flags.number("images", 200)?)?;
    let repos = usize::try_from(flags.number("repos", 8)?.max(1))?;
    let levels = flags.numbers("levels", &[1, 8, 32])?;
    let registry = Registry::new(&flags.url()?)?;
    registry.ping().await?;

    let mut lines = Vec::new();
    for level in levels {
        let level = usize::try_from(level.max(1))?;
        let images: Arc<Vec<Image>> = Arc::new(
            (0..count)
                .map(|i| Image::new(&format!("c{level}-{i}")))
                .collect(),
        );
        for (name, phase) in [
            ("image-push", Phase::Push),
            ("image-pull-tag", Phase::PullTag),
            ("image-pull-digest", Phase::PullDigest),
        ] {
            let (timed, usage) = crate::server::watched(flags.pid()?, {
                let (registry, images) = (registry.clone(), images.clone());
                concurrently(count, level, move |i| {
                    let (registry, images) = (registry.clone(), images.clone());
                    async move {
                        let image = &images[i];
                        let repo = format!("bench/img-c{level}-{}", i % repos);
                        let tag = format!("i{i}");
                        match phase {
                            Phase::Push => image.push(&registry, &repo, &tag).await,
                            Phase::PullTag => image.pull(&registry, &repo, &tag).await,
                            Phase::PullDigest => {
                                image.pull(&registry, &repo, &image.manifest.digest).await
                            }
                        }
                    }
                })
            })
            .await?;
            let mut line = Line::new(name, format!("c{level} ×{count}"));
            line.figure(
                "images",
                timed.rate(),
                "images/s",
                Better::Higher,
                Spread::of(&timed.millis()),
            )
            .usage(usage)
            .detail("latency_unit", "ms");
            lines.push(line.render(&flags));
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_small_distinct_and_self_consistent() {
        let a = Image::new("a");
        let b = Image::new("b");
        assert_ne!(a.manifest.digest, b.manifest.digest);
        assert!((2..=4).contains(&a.blobs.len()));
        let manifest: serde_json::Value = serde_json::from_slice(&a.manifest.data).unwrap();
        assert_eq!(manifest["config"]["digest"], a.blobs[0].digest.as_str());
        for (layer, blob) in manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .zip(&a.blobs[1..])
        {
            assert_eq!(layer["digest"], blob.digest.as_str());
            assert_eq!(layer["size"], blob.data.len());
            assert!((512..=4096).contains(&blob.data.len()));
        }
    }
}

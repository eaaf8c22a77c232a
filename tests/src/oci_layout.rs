//! Writes OCI image layouts (directories skopeo reads with `oci:`) from generated content, and
//! reads back what a client wrote into one.
//!
//! Layers are valid uncompressed tar archives (`application/vnd.oci.image.layer.v1.tar`) holding
//! one file of pseudo-random bytes, so a client that inspects or converts them finds real
//! archives, and their diff IDs are their digests.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use crate::{OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, pseudo_random_bytes, sha256_digest};

/// Media type of an uncompressed tar layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// Annotation naming an entry of `index.json`; `oci:<dir>:<name>` selects it.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Modification time of the generated files (2026-01-01), so the archives are reproducible.
const MTIME: u64 = 1_767_225_600;

/// Content-addressed bytes with their media type.
#[derive(Debug, Clone)]
pub struct Blob {
    pub media_type: &'static str,
    pub digest: String,
    pub bytes: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &'static str, bytes: Vec<u8>) -> Blob {
        Blob {
            media_type,
            digest: sha256_digest(&bytes),
            bytes,
        }
    }

    /// The OCI descriptor pointing at this blob.
    pub fn descriptor(&self) -> serde_json::Value {
        serde_json::json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.bytes.len(),
        })
    }

    fn from_json(media_type: &'static str, value: &serde_json::Value) -> Blob {
        let bytes = serde_json::to_vec(value).expect("serialize JSON");
        Blob::new(media_type, bytes)
    }
}

/// A single-platform image: manifest, config and layers.
#[derive(Debug, Clone)]
pub struct Image {
    pub architecture: String,
    pub manifest: Blob,
    pub config: Blob,
    pub layers: Vec<Blob>,
}

impl Image {
    /// A linux image for `architecture` with one tar layer per size (the size of the file
    /// inside), its content derived from `seed`.
    pub fn generate(architecture: &str, seed: u64, layer_sizes: &[usize]) -> Image {
        let layers: Vec<Blob> = layer_sizes
            .iter()
            .enumerate()
            .map(|(i, size)| {
                let seed = seed.wrapping_mul(1000).wrapping_add(i as u64);
                let content = pseudo_random_bytes(*size, seed);
                let tar = tar_with_one_file(&format!("layer-{seed}.bin"), &content);
                Blob::new(OCI_LAYER_TAR, tar)
            })
            .collect();
        let diff_ids: Vec<&str> = layers.iter().map(|l| l.digest.as_str()).collect();
        let config = Blob::from_json(
            OCI_CONFIG,
            &serde_json::json!({
                "architecture": architecture,
                "os": "linux",
                "created": "2026-01-01T00:00:00Z",
                "config": {"Env": [format!("SEED={seed}")]},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            }),
        );
        let manifest = Blob::from_json(
            OCI_MANIFEST,
            &serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": config.descriptor(),
                "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
            }),
        );
        Image {
            architecture: architecture.to_owned(),
            manifest,
            config,
            layers,
        }
    }

    /// Digests of every blob the image is made of, manifest included.
    pub fn digests(&self) -> BTreeSet<String> {
        self.blobs().map(|b| b.digest.clone()).collect()
    }

    fn blobs(&self) -> impl Iterator<Item = &Blob> {
        [&self.manifest, &self.config]
            .into_iter()
            .chain(&self.layers)
    }
}

/// A multi-platform image: an OCI index over one image per platform.
#[derive(Debug, Clone)]
pub struct MultiArch {
    pub index: Blob,
    pub images: Vec<Image>,
}

impl MultiArch {
    /// An index over a linux image for each architecture, each with two small layers.
    pub fn generate(architectures: &[&str], seed: u64) -> MultiArch {
        let images: Vec<Image> = architectures
            .iter()
            .enumerate()
            .map(|(i, arch)| {
                let seed = seed.wrapping_mul(100).wrapping_add(i as u64);
                Image::generate(arch, seed, &[96 << 10, 48 << 10])
            })
            .collect();
        let manifests: Vec<serde_json::Value> = images
            .iter()
            .map(|image| {
                let mut descriptor = image.manifest.descriptor();
                descriptor["platform"] =
                    serde_json::json!({"architecture": image.architecture, "os": "linux"});
                descriptor
            })
            .collect();
        let index = Blob::from_json(
            OCI_INDEX,
            &serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": manifests,
            }),
        );
        MultiArch { index, images }
    }

    /// Digests of the index and of every blob of every image.
    pub fn digests(&self) -> BTreeSet<String> {
        let mut digests: BTreeSet<String> = self.images.iter().flat_map(Image::digests).collect();
        digests.insert(self.index.digest.clone());
        digests
    }
}

/// An OCI image layout being written; `index.json` is rewritten after every addition.
#[derive(Debug)]
pub struct OciLayout {
    root: PathBuf,
    refs: Vec<serde_json::Value>,
}

impl OciLayout {
    /// Creates the layout skeleton (`oci-layout`, empty `index.json`, `blobs/sha256/`) in `root`.
    pub fn create(root: &Path) -> io::Result<OciLayout> {
        std::fs::create_dir_all(root.join("blobs/sha256"))?;
        std::fs::write(
            root.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        let layout = OciLayout {
            root: root.to_owned(),
            refs: Vec::new(),
        };
        layout.write_index()?;
        Ok(layout)
    }

    /// Writes the image's blobs and names its manifest `name`.
    pub fn add_image(&mut self, name: &str, image: &Image) -> io::Result<()> {
        for blob in image.blobs() {
            self.write_blob(blob)?;
        }
        self.add_ref(name, &image.manifest)
    }

    /// Writes every image and the index, and names the index `name`.
    pub fn add_multi_arch(&mut self, name: &str, multi: &MultiArch) -> io::Result<()> {
        for blob in multi.images.iter().flat_map(Image::blobs) {
            self.write_blob(blob)?;
        }
        self.write_blob(&multi.index)?;
        self.add_ref(name, &multi.index)
    }

    /// The skopeo image name of the entry `name`: `oci:<dir>:<name>`.
    pub fn reference(&self, name: &str) -> String {
        format!("oci:{}:{name}", self.root.display())
    }

    fn add_ref(&mut self, name: &str, blob: &Blob) -> io::Result<()> {
        let mut descriptor = blob.descriptor();
        descriptor["annotations"] = serde_json::json!({ REF_NAME: name });
        self.refs.push(descriptor);
        self.write_index()
    }

    fn write_blob(&self, blob: &Blob) -> io::Result<()> {
        let hex = blob.digest.strip_prefix("sha256:").expect("sha256 digest");
        std::fs::write(self.root.join("blobs/sha256").join(hex), &blob.bytes)
    }

    fn write_index(&self) -> io::Result<()> {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": self.refs,
        });
        std::fs::write(
            self.root.join("index.json"),
            serde_json::to_vec_pretty(&index)?,
        )
    }
}

/// The descriptor of `index.json` named `name` in the layout at `root`, if any.
pub fn read_ref(root: &Path, name: &str) -> io::Result<Option<serde_json::Value>> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("index.json"))?)?;
    let found = index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["annotations"][REF_NAME] == name)
        .cloned();
    Ok(found)
}

/// Digests of every blob stored in the layout at `root`, each checked against its content.
pub fn blob_digests(root: &Path) -> io::Result<BTreeSet<String>> {
    let mut digests = BTreeSet::new();
    for entry in std::fs::read_dir(root.join("blobs/sha256"))? {
        let entry = entry?;
        let digest = format!("sha256:{}", entry.file_name().to_string_lossy());
        let actual = sha256_digest(&std::fs::read(entry.path())?);
        if actual != digest {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blob {digest} holds content of digest {actual}"),
            ));
        }
        digests.insert(digest);
    }
    Ok(digests)
}

/// A ustar archive holding one regular file, ending with the two zero blocks.
pub fn tar_with_one_file(name: &str, content: &[u8]) -> Vec<u8> {
    assert!(name.len() < 100, "tar name too long: {name}");
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    put_octal(&mut header[100..108], 0o644); // mode
    put_octal(&mut header[108..116], 0); // uid
    put_octal(&mut header[116..124], 0); // gid
    put_octal(&mut header[124..136], content.len() as u64);
    put_octal(&mut header[136..148], MTIME);
    header[156] = b'0'; // regular file
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[265..269].copy_from_slice(b"root"); // uname
    header[297..301].copy_from_slice(b"root"); // gname
    // The checksum is computed with its own field read as spaces.
    header[148..156].fill(b' ');
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());

    let padding = (512 - content.len() % 512) % 512;
    let mut tar = Vec::with_capacity(512 + content.len() + padding + 1024);
    tar.extend_from_slice(&header);
    tar.extend_from_slice(content);
    tar.resize(tar.len() + padding + 1024, 0);
    tar
}

/// Writes `value` as zero-padded octal digits followed by a NUL, filling `field`.
fn put_octal(field: &mut [u8], value: u64) {
    let digits = format!("{value:0width$o}\0", width = field.len() - 1);
    assert_eq!(
        digits.len(),
        field.len(),
        "{value} does not fit the tar field"
    );
    field.copy_from_slice(digits.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Runs skopeo with no policy check and its temporary files under `dir`.
    fn skopeo(dir: &Path, args: &[&str]) -> Vec<u8> {
        let tmp = dir.join("skopeo-tmp");
        std::fs::create_dir_all(&tmp).expect("create skopeo tmpdir");
        let output = Command::new("skopeo")
            .arg("--insecure-policy")
            .arg("--tmpdir")
            .arg(&tmp)
            .args(args)
            .env("TMPDIR", &tmp)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run skopeo ({e}); install it: apt-get install skopeo")
            });
        assert!(
            output.status.success(),
            "skopeo {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    #[test]
    fn layers_are_tar_archives_that_tar_extracts() {
        let content = pseudo_random_bytes(1000, 3);
        let tar = tar_with_one_file("hello.bin", &content);
        assert_eq!(tar.len() % 512, 0);
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("layer.tar");
        std::fs::write(&path, &tar).expect("write tar");

        let list = Command::new("tar")
            .arg("-tvf")
            .arg(&path)
            .output()
            .expect("run tar");
        assert!(
            list.status.success(),
            "{}",
            String::from_utf8_lossy(&list.stderr)
        );
        let listing = String::from_utf8_lossy(&list.stdout);
        assert!(
            listing.contains("hello.bin") && listing.contains(" 1000 "),
            "{listing}"
        );
        assert!(
            list.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&list.stderr)
        );

        let extracted = Command::new("tar")
            .arg("-xOf")
            .arg(&path)
            .output()
            .expect("run tar");
        assert_eq!(extracted.stdout, content);
    }

    #[test]
    fn skopeo_copies_the_layout_without_changing_a_digest() {
        let dir = tempfile::tempdir().expect("temp dir");
        let image = Image::generate("amd64", 1, &[300 << 10, 200 << 10, 100 << 10]);
        let multi = MultiArch::generate(&["amd64", "arm64"], 2);
        let src = dir.path().join("src");
        let mut layout = OciLayout::create(&src).expect("create layout");
        layout.add_image("image", &image).expect("add image");
        layout.add_multi_arch("multi", &multi).expect("add index");

        let raw = skopeo(
            dir.path(),
            &["inspect", "--raw", &layout.reference("image")],
        );
        assert_eq!(raw, image.manifest.bytes);
        let raw = skopeo(
            dir.path(),
            &["inspect", "--raw", &layout.reference("multi")],
        );
        assert_eq!(raw, multi.index.bytes);

        let dst = dir.path().join("dst");
        let copy_to = |name: &str| {
            let dst = format!("oci:{}:{name}", dst.display());
            let src = layout.reference(name);
            skopeo(
                dir.path(),
                &[
                    "copy",
                    "--all",
                    "--preserve-digests",
                    "--dest-oci-accept-uncompressed-layers",
                    &src,
                    &dst,
                ],
            );
        };
        copy_to("image");
        copy_to("multi");

        let image_ref = read_ref(&dst, "image").expect("read index.json");
        assert_eq!(
            image_ref.expect("image entry")["digest"],
            image.manifest.digest
        );
        let multi_ref = read_ref(&dst, "multi").expect("read index.json");
        assert_eq!(
            multi_ref.expect("multi entry")["digest"],
            multi.index.digest
        );
        let mut expected = image.digests();
        expected.extend(multi.digests());
        assert_eq!(blob_digests(&dst).expect("read blobs"), expected);
    }
}

//! python-dxf (PyPI, in the test command's venv) against the registry, driven by
//! `tests/clients/dxf_client.py`: blobs pushed whole and in chunks, named by an alias (a
//! schema 2 manifest), read back, pulled, mounted into another repository, and the alias
//! deleted. What the SDK reports is checked against the registry's own answers.

use registry_tests::clients::{anonymous, blob, python, script};
use registry_tests::{DOCKER_MANIFEST, Registry, pseudo_random_bytes, send, sha256_digest};
use serde_json::{Value, json};

#[tokio::test]
async fn blobs_and_an_alias_go_in_and_out() {
    let reg = Registry::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let files = [
        ("first.bin", pseudo_random_bytes(40 << 10, 61)),
        ("chunked.bin", pseudo_random_bytes(300 << 10, 62)),
    ];
    for (name, bytes) in &files {
        std::fs::write(dir.path().join(name), bytes).expect("write blob file");
    }
    let script = script("dxf_client.py");
    let work = dir.path().display().to_string();
    let host = reg.host();
    let args = [
        script.to_str().expect("UTF-8 path"),
        "round-trip",
        &host,
        "dxf/blobs",
        "dxf/other",
        &work,
        files[0].0,
        files[1].0,
    ];
    let python = python().env("HOME", dir.path()).env("TMPDIR", dir.path());
    let out = python.ok(&reg, &args).await;
    let report: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("dxf_client.py: {e}: {out}"));

    let digests: Vec<String> = files.iter().map(|(_, b)| sha256_digest(b)).collect();
    for ((name, _), digest) in files.iter().zip(&digests) {
        assert_eq!(report["pushed"][name], digest.as_str(), "pushed {name}");
        assert_eq!(report["pulled"][name], digest.as_str(), "pulled {name}");
    }
    let manifest = report["manifest"].as_str().expect("manifest");
    assert_eq!(
        report["manifest_digest"],
        sha256_digest(manifest.as_bytes())
    );
    let manifest: Value = serde_json::from_str(manifest).expect("manifest JSON");
    assert_eq!(manifest["mediaType"], DOCKER_MANIFEST);
    let layers: Vec<&str> = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("layer digest"))
        .collect();
    assert_eq!(layers, digests);
    assert_eq!(report["aliases"], json!(["v1"]));
    let sizes: Vec<Value> = files
        .iter()
        .zip(&digests)
        .map(|((_, bytes), digest)| json!([digest, bytes.len()]))
        .collect();
    assert_eq!(report["alias_blobs"], json!(sizes));
    assert_eq!(report["mounted"], digests[0].as_str());
    assert_eq!(report["mounted_size"], files[0].1.len());
    assert_eq!(report["deleted"], json!(digests));
    assert_eq!(report["aliases_after_delete"], json!([]));

    // The alias is gone; the blobs and the mount stay.
    let client = anonymous(&reg);
    let manifest_digest = report["manifest_digest"].as_str().expect("manifest digest");
    let path = format!("/v2/dxf/blobs/manifests/{manifest_digest}");
    let reply = send(reg.client.get(reg.url(&path))).await;
    assert_eq!(reply.status, 404, "manifest still there after del_alias");
    for digest in &digests {
        let bytes = blob(&client, "dxf/blobs", digest).await;
        assert_eq!(sha256_digest(&bytes), *digest);
    }
    blob(&client, "dxf/other", &digests[0]).await;
}

//! The oras Python SDK (PyPI `oras`, in the test command's venv) against the registry,
//! driven by `tests/clients/oras_client.py`: an artifact of a custom type pushed and pulled
//! back, two referrers attached to it with `subject`, the referrers listed whole and filtered
//! by `artifactType`. What the SDK reports is checked against the registry's own answers.

use std::path::Path;

use registry_tests::clients::{Tool, anonymous, assert_complete, manifest, python, script};
use registry_tests::{OCI_INDEX, OCI_MANIFEST, Registry, pseudo_random_bytes, send, sha256_digest};
use serde_json::Value;

const SBOM: &str = "application/vnd.example.sbom.v1";
const SIGNATURE: &str = "application/vnd.example.signature.v1";
const ATTESTATION: &str = "application/vnd.example.attestation.v1";

/// Runs `oras_client.py` with `args`; returns the JSON object it prints.
async fn oras(python: &Tool, reg: &Registry, args: &[&str]) -> Value {
    let script = script("oras_client.py");
    let mut full = vec![script.to_str().expect("UTF-8 path")];
    full.extend(args);
    let out = python.ok(reg, &full).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("oras_client.py {args:?}: {e}: {out}"))
}

fn sdk(dir: &Path) -> Tool {
    python().env("HOME", dir).env("TMPDIR", dir)
}

#[tokio::test]
async fn artifact_referrers_and_artifact_type_filter() {
    let reg = Registry::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let python = sdk(dir.path());
    let work = dir.path().display().to_string();
    let sbom = pseudo_random_bytes(96 << 10, 51);
    let notes = b"release notes\n".to_vec();
    std::fs::write(dir.path().join("sbom.spdx"), &sbom).expect("write sbom");
    std::fs::write(dir.path().join("notes.txt"), &notes).expect("write notes");
    let host = reg.host();

    let pushed = oras(
        &python,
        &reg,
        &[
            "push-artifact",
            &host,
            "art/tool",
            "v1",
            SBOM,
            &work,
            "sbom.spdx",
            "notes.txt",
        ],
    )
    .await;
    let client = anonymous(&reg);
    let artifact = assert_complete(&client, "art/tool", "v1").await;
    assert_eq!(pushed["digest"], artifact.digest.as_str(), "{pushed}");
    assert_eq!(artifact.media_type, OCI_MANIFEST);
    assert_eq!(artifact.json["config"]["mediaType"], SBOM);
    let layers: Vec<String> = artifact.layers().into_iter().map(|(_, d)| d).collect();
    assert_eq!(layers, [sha256_digest(&sbom), sha256_digest(&notes)]);

    let mut referrers = Vec::new();
    for (artifact_type, name, bytes) in [
        (SIGNATURE, "sig.bin", pseudo_random_bytes(512, 52)),
        (
            ATTESTATION,
            "attest.json",
            br#"{"predicate":"test"}"#.to_vec(),
        ),
    ] {
        std::fs::write(dir.path().join(name), &bytes).expect("write referrer file");
        let attached = oras(
            &python,
            &reg,
            &[
                "attach",
                &host,
                "art/tool",
                "v1",
                artifact_type,
                &work,
                name,
            ],
        )
        .await;
        let digest = attached["digest"]
            .as_str()
            .expect("referrer digest")
            .to_owned();
        assert_eq!(attached["sent_digest"], digest.as_str(), "{attached}");
        assert_eq!(attached["subject"], artifact.digest.as_str());
        assert_eq!(
            attached["oci_subject"],
            artifact.digest.as_str(),
            "OCI-Subject"
        );
        let stored = assert_complete(&client, "art/tool", &digest).await;
        assert_eq!(stored.json["artifactType"], artifact_type);
        assert_eq!(stored.json["subject"]["digest"], artifact.digest.as_str());
        assert_eq!(stored.layers()[0].1, sha256_digest(&bytes));
        referrers.push((artifact_type, digest, stored.bytes.len()));
    }

    let all = oras(
        &python,
        &reg,
        &["referrers", &host, "art/tool", &artifact.digest],
    )
    .await;
    assert_eq!(all["content_type"], OCI_INDEX);
    let mut listed: Vec<(String, String, u64)> = all["index"]["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .map(|m| {
            assert_eq!(m["mediaType"], OCI_MANIFEST);
            (
                m["artifactType"].as_str().expect("artifactType").to_owned(),
                m["digest"].as_str().expect("digest").to_owned(),
                m["size"].as_u64().expect("size"),
            )
        })
        .collect();
    listed.sort();
    let mut expected: Vec<(String, String, u64)> = referrers
        .iter()
        .map(|(t, d, s)| ((*t).to_owned(), d.clone(), *s as u64))
        .collect();
    expected.sort();
    assert_eq!(listed, expected, "referrers of the artifact");

    let filtered = oras(
        &python,
        &reg,
        &["referrers", &host, "art/tool", &artifact.digest, SIGNATURE],
    )
    .await;
    assert_eq!(filtered["filters_applied"], "artifactType");
    let entries = filtered["index"]["manifests"]
        .as_array()
        .expect("manifests");
    assert_eq!(entries.len(), 1, "{filtered}");
    assert_eq!(entries[0]["artifactType"], SIGNATURE);
    assert_eq!(entries[0]["digest"], referrers[0].1.as_str());

    // The registry's own answer over HTTP is the one the SDK got.
    let path = format!(
        "/v2/art/tool/referrers/{}?artifactType={SIGNATURE}",
        artifact.digest
    );
    let reply = send(reg.client.get(reg.url(&path))).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), filtered["index"]);

    let out = dir.path().join("pulled").display().to_string();
    let pulled = oras(&python, &reg, &["pull", &host, "art/tool", "v1", &out]).await;
    assert_eq!(pulled["sbom.spdx"], sha256_digest(&sbom).as_str());
    assert_eq!(pulled["notes.txt"], sha256_digest(&notes).as_str());
    assert_eq!(
        std::fs::read(dir.path().join("pulled/sbom.spdx")).expect("pulled"),
        sbom
    );

    // The subject itself is unchanged by what refers to it.
    assert_eq!(
        manifest(&client, "art/tool", "v1").await.bytes,
        artifact.bytes
    );
}

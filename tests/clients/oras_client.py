"""The oras Python SDK against the registry, for tests/tests/clients_oras.rs.

Each command does what a user of the SDK does and prints, as one JSON object on standard
output, what the SDK sent and received, so that the Rust test can compare it with the
registry's own answers over HTTP.

    oras_client.py push-artifact HOST REPO TAG ARTIFACT_TYPE DIR FILE...
    oras_client.py attach HOST REPO SUBJECT_REFERENCE ARTIFACT_TYPE DIR FILE
    oras_client.py referrers HOST REPO DIGEST [ARTIFACT_TYPE]
    oras_client.py pull HOST REPO REFERENCE OUTDIR
"""

import hashlib
import json
import os
import sys

import oras.client
import oras.defaults
import oras.oci

MANIFEST_TYPES = ", ".join(oras.defaults.default_manifest_accepted_media_types)


def client(host):
    # The registry under test listens on plain HTTP on loopback.
    return oras.client.OrasClient(hostname=host, insecure=True)


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def fail(what, response):
    sys.exit(f"{what}: HTTP {response.status_code} {response.text}")


def push_artifact(host, repo, tag, artifact_type, directory, *files):
    """`oras push` with a config of the artifact's own media type (how the SDK names an
    artifact type), one layer per file."""
    os.chdir(directory)
    config = "config.json"
    with open(config, "w", encoding="utf-8") as out:
        out.write("{}")
    sdk = client(host)
    response = sdk.push(
        target=f"{host}/{repo}:{tag}",
        files=[f"{name}:application/vnd.test.file.v1" for name in files],
        manifest_config=f"{config}:{artifact_type}",
        manifest_annotations={"org.opencontainers.image.description": "test artifact"},
        quiet=True,
    )
    if response.status_code != 201:
        fail("push", response)
    print(
        json.dumps(
            {
                "status": response.status_code,
                "digest": response.headers.get("Docker-Content-Digest"),
                "location": response.headers.get("Location"),
                "files": {name: sha256(open(name, "rb").read()) for name in files},
            }
        )
    )


def attach(host, repo, subject_reference, artifact_type, directory, name):
    """`oras attach`: a manifest with `artifactType` and a `subject`, pushed through the SDK's
    blob and manifest uploads (its `push` cannot set `artifactType`)."""
    os.chdir(directory)
    sdk = client(host)
    container = sdk.get_container(f"{host}/{repo}:{subject_reference}")
    response = sdk.do_request(
        f"http://{container.manifest_url()}", "GET", headers={"Accept": MANIFEST_TYPES}
    )
    if response.status_code != 200:
        fail("get subject", response)
    subject = oras.oci.Subject(
        mediaType=response.headers["Content-Type"],
        digest=response.headers["Docker-Content-Digest"],
        size=len(response.content),
    )
    if subject.digest != sha256(response.content):
        sys.exit(f"subject digest {subject.digest} is not that of the bytes served")

    layer = oras.oci.NewLayer(name, media_type="application/vnd.test.file.v1")
    layer["annotations"] = {oras.defaults.annotation_title: name}
    uploaded = sdk.upload_blob(name, container, layer)
    if uploaded.status_code not in (200, 201, 202):
        fail("upload layer", uploaded)
    empty = "empty.json"
    with open(empty, "w", encoding="utf-8") as out:
        out.write("{}")
    config = oras.oci.NewLayer(empty, media_type="application/vnd.oci.empty.v1+json")
    uploaded = sdk.upload_blob(empty, container, config)
    if uploaded.status_code not in (200, 201, 202):
        fail("upload config", uploaded)

    manifest = oras.oci.NewManifest()
    manifest["artifactType"] = artifact_type
    manifest["config"] = config
    manifest["layers"] = [layer]
    manifest["subject"] = {
        "mediaType": subject.mediaType,
        "digest": subject.digest,
        "size": subject.size,
    }
    # The manifest is addressed by digest, as `oras attach` does: a referrer needs no tag.
    body = json.dumps(manifest).encode()
    target = sdk.get_container(f"{host}/{repo}@{sha256(body)}")
    response = sdk.upload_manifest(manifest, target)
    if response.status_code != 201:
        fail("put referrer", response)
    print(
        json.dumps(
            {
                "status": response.status_code,
                "digest": response.headers.get("Docker-Content-Digest"),
                "sent_digest": sha256(body),
                "sent_size": len(body),
                "oci_subject": response.headers.get("OCI-Subject"),
                "subject": subject.digest,
            }
        )
    )


def referrers(host, repo, digest, artifact_type=None):
    """The referrers API through the SDK's session (it has no call of its own for it)."""
    sdk = client(host)
    url = f"http://{host}/v2/{repo}/referrers/{digest}"
    if artifact_type:
        url += f"?artifactType={artifact_type}"
    response = sdk.do_request(url, "GET")
    if response.status_code != 200:
        fail("referrers", response)
    print(
        json.dumps(
            {
                "content_type": response.headers.get("Content-Type"),
                "filters_applied": response.headers.get("OCI-Filters-Applied"),
                "index": response.json(),
            }
        )
    )


def pull(host, repo, reference, outdir):
    sdk = client(host)
    files = sdk.pull(target=f"{host}/{repo}:{reference}", outdir=outdir)
    print(
        json.dumps(
            {os.path.basename(path): sha256(open(path, "rb").read()) for path in files}
        )
    )


COMMANDS = {
    "push-artifact": push_artifact,
    "attach": attach,
    "referrers": referrers,
    "pull": pull,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    COMMANDS[sys.argv[1]](*sys.argv[2:])

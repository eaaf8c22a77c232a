"""Helm's Go SDK (the PyPI wheel helm-python-sdk) against the registry, for
tests/tests/clients_helm.rs.

    helm_client.py push-pull HOST REPO NAME VERSION WORKDIR [USER PASSWORD]

Creates a chart, packages it, pushes it to oci://HOST/REPO (logging in first when
credentials are given), lists its tags, resolves it, pulls it back into WORKDIR/pulled and
prints, as one JSON object, what the SDK reported and the digests of the archives.
"""

import hashlib
import json
import os
import sys

import helm_python as helm


def sha256_file(path):
    with open(path, "rb") as f:
        return "sha256:" + hashlib.sha256(f.read()).hexdigest()


def push_pull(host, repo, name, version, workdir, user=None, password=None):
    for sub in ("src", "dist", "pulled"):
        os.makedirs(os.path.join(workdir, sub), exist_ok=True)
    chart = helm.Chart.create(name, os.path.join(workdir, "src"))
    archive = helm.package(
        os.path.join(workdir, "src", name),
        destination=os.path.join(workdir, "dist"),
        version=version,
    )
    client = helm.RegistryClient(
        plain_http=True, credentials_file=os.path.join(workdir, "registry.json")
    )
    with client:
        if user is not None:
            client.login(host, user, password, plain_http=True)
        pushed = client.push(archive, f"oci://{host}/{repo}")
        ref = f"oci://{host}/{repo}/{name}"
        tags = client.tags(ref)
        resolved = client.resolve(f"{ref}:{version}")
        pulled_dir = os.path.join(workdir, "pulled")
        pulled = client.pull(ref, version=version, destination=pulled_dir)
        shown = client.show(f"{ref}:{version}", output_format="chart", plain_http=True)
    pulled_archive = os.path.join(pulled_dir, f"{name}-{version}.tgz")
    print(
        json.dumps(
            {
                "chart": chart.name,
                "archive": sha256_file(archive),
                "archive_size": os.path.getsize(archive),
                "pushed": pushed,
                "tags": tags,
                "resolved": resolved,
                "pulled": pulled,
                "pulled_archive": sha256_file(pulled_archive),
                "shown": shown,
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) < 7 or sys.argv[1] != "push-pull":
        sys.exit(__doc__)
    push_pull(*sys.argv[2:])

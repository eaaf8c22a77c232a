"""python-dxf against the registry, for tests/tests/clients_dxf.rs.

    dxf_client.py round-trip HOST REPO OTHER_REPO DIR FILE...

Pushes each file as a blob (the last one in chunks from an iterator), names them all with an
alias (a schema 2 manifest), reads the alias back, pulls every blob, mounts the first into
OTHER_REPO, deletes the alias, and prints, as one JSON object, what the SDK reported.
"""

import hashlib
import json
import os
import sys

from dxf import DXF


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def round_trip(host, repo, other_repo, directory, *files):
    dxf = DXF(host, repo, insecure=True)
    pushed = {}
    for name in files[:-1]:
        pushed[name] = dxf.push_blob(os.path.join(directory, name))
    last = files[-1]
    with open(os.path.join(directory, last), "rb") as f:
        data = f.read()
    chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    pushed[last] = dxf.push_blob(data=iter(chunks), digest=sha256(data))
    digests = [pushed[name] for name in files]
    manifest = dxf.set_alias("v1", *digests)
    aliases = dxf.list_aliases()
    alias_blobs = dxf.get_alias("v1", sizes=True)
    _, response = dxf.head_manifest_and_response("v1")
    pulled = {}
    for name in files:
        pulled[name] = sha256(b"".join(dxf.pull_blob(pushed[name])))
    other = DXF(host, other_repo, insecure=True)
    mounted = other.mount_blob(repo, digests[0])
    mounted_size = other.blob_size(mounted)
    deleted = dxf.del_alias("v1")
    print(
        json.dumps(
            {
                "pushed": pushed,
                "manifest": manifest,
                "manifest_digest": response.headers.get("Docker-Content-Digest"),
                "aliases": aliases,
                "alias_blobs": alias_blobs,
                "pulled": pulled,
                "mounted": mounted,
                "mounted_size": mounted_size,
                "deleted": deleted,
                "aliases_after_delete": dxf.list_aliases(),
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) < 7 or sys.argv[1] != "round-trip":
        sys.exit(__doc__)
    round_trip(*sys.argv[2:])

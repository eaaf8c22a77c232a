#!/usr/bin/env python3
"""Writes the seed corpus (fuzz/corpus/<target>/) from the inputs of the test suites: the unit
tests of registry-common (names, tags, digests, headers, manifests, htpasswd and rules files,
the upstreams file) and the end-to-end suites (tests/: manifests, Range and Content-Range
values, management API bodies, request paths). Rerun after changing it; the files are kept in
the repository. Names are the sha1 of the content, as libFuzzer names what it adds."""
import base64, hashlib, json, os, shutil, sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def d(n, alg="sha256"):
    return f"{alg}:" + (f"{n:02x}" * (32 if alg == "sha256" else 64))


def write(target, data):
    if isinstance(data, str):
        data = data.encode()
    folder = os.path.join(ROOT, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def names():
    for s in ["a", "library/ubuntu", "a/b/c/d/e", "my-app", "my--app", "a.b", "a_b", "a__b",
              "0x", "A", "a/", "/a", "a//b", "-a", "a-", "a..b", "a___b", "a/../b", "..",
              "a%2Fb", "a b", "a.-b", "a_.b", "a" * 255, "a" * 256, "p/app/web", "latest", "_x",
              "v1.2.3-rc_1", "a" * 128, "a" * 129, ".x", "a:b", "ü", d(1), d(2, "sha512"),
              "sha256:abc", "sha384:" + "0" * 96, "SHA256:" + "0" * 64, "sha256:" + "A" * 64,
              "0b7e3a2e-8d1e-4b8e-9f0e-1a2b3c4d5e6f", "{0b7e3a2e-8d1e-4b8e-9f0e-1a2b3c4d5e6f}",
              "0b7e3a2e8d1e4b8e9f0e1a2b3c4d5e6f", OCI_MANIFEST, "application/spdx+json",
              "text/plain", "a/b", "a/b/c", "a/b; charset=x", "-a/b"]:
        write("oci_names", s)


def ranges():
    for size, header in [(10_000, "bytes=0-9"), (100, " bytes= 5 - 9 "), (100, "bytes=90-"),
                         (100, "bytes=-10"), (100, "bytes=-0"), (100, "bytes=9-0"),
                         (100, "bytes=0-1,5-6"), (100, "items=0-1"), (0, "bytes=0-0"),
                         (10_000, "bytes=5000-6000"), (4_000, "bytes=900-5000"),
                         (1, "bytes=-1000"), (2**64 - 1, "bytes=18446744073709551615-")]:
        write("range", size.to_bytes(8, "little") + header.encode())
    for v in ["0-99", "bytes=5-9", "bytes 5-9/100", "bytes 5-9/*", "", "9-5", "-5", "1-x",
              "bytes=1-", "bytes 5-9/9", "bytes 5-9/10x", "1000-2999", "0-18446744073709551615",
              "bytes 0-0/18446744073709551615"]:
        write("content_range", v)
        for length, body in [("", b"x" * 100), ("100", b"x" * 100), ("2000", b"y" * 64),
                             ("0", b""), (" 5 ", b"hello")]:
            write("upload_body", f"{length}\n{v}\n".encode() + bytes([0x31]) + body)
    for length in ["", "0", "10", "abc", "18446744073709551615", "99999999999999999999"]:
        write("upload_body", f"{length}\n\n".encode() + bytes([0x00]) + b"0123456789")


def manifest_bodies():
    image = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
             "config": {"mediaType": OCI_CONFIG, "digest": d(1), "size": 2},
             "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d(2),
                         "size": 3}],
             "subject": {"mediaType": OCI_MANIFEST, "digest": d(3), "size": 4}}
    artifact = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "artifactType": "application/vnd.example.sbom",
                "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                           "digest": d(4), "size": 2},
                "layers": [], "annotations": {"org.opencontainers.image.created": "2026"}}
    foreign = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
               "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                          "digest": d(5), "size": 7},
               "layers": [{"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                           "digest": d(6), "size": 9, "urls": ["https://example.com/l"]},
                          {"mediaType": OCI_LAYER, "digest": d(7, "sha512"), "size": 1}]}
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": [{"mediaType": OCI_MANIFEST, "digest": d(8), "size": 500,
                            "platform": {"architecture": "amd64", "os": "linux"}}]}
    docker_list = dict(index, mediaType=DOCKER_LIST)
    no_type_index = {"schemaVersion": 2, "manifests": []}
    negative = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "x", "digest": d(1), "size": -1}, "layers": []}
    bodies = [image, artifact, foreign, index, docker_list, no_type_index, negative,
              {"schemaVersion": 1}, [], {"schemaVersion": 2, "mediaType": "text/plain"}]
    for i, body in enumerate(bodies):
        text = json.dumps(body).encode()
        write("manifest", bytes([0]) + text)
        write("manifest", bytes([1 + i % 5]) + text)
    # Deeply nested (past serde_json's 128 levels) and huge (a thousand layers, big strings).
    write("manifest", bytes([0]) + b'{"schemaVersion":2,"x":' + b"[" * 20_000 + b"]" * 20_000 + b"}")
    write("manifest", bytes([0]) + b'{"schemaVersion":2,"annotations":' + b'{"a":' * 127 + b"1" + b"}" * 128)
    many = dict(image, layers=[{"mediaType": OCI_LAYER, "digest": d(i % 256), "size": i}
                               for i in range(1000)])
    write("manifest", bytes([1]) + json.dumps(many).encode())
    big = dict(artifact, annotations={"k": "v" * 200_000})
    write("manifest", bytes([0]) + json.dumps(big).encode())
    write("manifest", bytes([6]) + f"{OCI_INDEX}\n".encode() + json.dumps(index).encode())


def auth():
    b = lambda raw: "Basic " + base64.b64encode(raw.encode()).decode()
    for v in [b("alice:pa:ss"), b("alice:"), b(":x"), b("nocolon"), "Basic !!!",
              "bearer abc.def.ghi", "Bearer ", "Digest x", b("alice:hunter2"), "BASIC  " +
              base64.b64encode(b"u:p").decode() + "  "]:
        write("authorization", v)
    enc = lambda o: base64.urlsafe_b64encode(json.dumps(o).encode()).rstrip(b"=").decode()
    claims = {"iss": "registry-issuer", "sub": "alice", "aud": "registry.test",
              "exp": 4102444800, "nbf": 0, "iat": 0, "jti": "x",
              "access": [{"type": "repository", "name": "alpha/app", "actions": ["pull"]}]}
    header = {"alg": "HS256", "typ": "JWT"}
    write("jwt", b"\x00" + f"{enc(header)}.{enc(claims)}.c2lnbmF0dXJl".encode())
    write("jwt", b"\x00" + f"{enc({'alg': 'RS256', 'kid': 'k1'})}.{enc(claims)}.AAAA".encode())
    write("jwt", b"\x00" + f"{enc({'alg': 'none'})}.{enc(claims)}.".encode())
    for h, c in [(header, claims), ({"alg": "HS256"}, dict(claims, exp=1)),
                 ({"alg": "HS512", "kid": "x"}, dict(claims, aud=["registry.test", "b"])),
                 ({"alg": "HS256"}, dict(claims, nbf=2**63)),
                 ({"alg": "HS256"}, {"aud": "registry.test", "exp": 2**64 - 1, "access": 5})]:
        write("jwt", b"\x01" + json.dumps(h).encode() + b"\n" + json.dumps(c).encode())
    write("jwt", b"\x02alice\nalpha/app")
    write("jwt", b"\x02\nlibrary/ubuntu")


def files():
    hash_ = "$2y$04$" + "a" * 53
    for text in [f"# users\n\nalice:{hash_}\nbob:{hash_}\n", f"alice:{hash_}\ncarol:$apr1$xyz$abc\n",
                 "carol:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", "carol:$6$salt$hash\n",
                 "carol:plaintext\n", "nocolon\n", f"a:{hash_}\na:{hash_}\n", f":{hash_}\n"]:
        write("htpasswd", text)
    example = """{
      "groups": { "team-a": ["alice", "carol"] },
      "rules": [
        { "subjects": ["group:team-a", "user:bob"], "projects": ["alpha", "alpha-*"],
          "actions": ["pull", "push"] },
        { "subjects": ["user:carol"], "projects": ["alpha"], "actions": ["delete"] },
        { "subjects": ["authenticated"], "projects": ["{user}", "home-{user}-*"], "actions": ["*"] },
        { "subjects": ["anonymous"], "projects": ["public"], "actions": ["pull"] }
      ]
    }"""
    for who in ["alice\nalpha-tools", "carol\nalpha", "bob\nhome-bob-x", "\npublic"]:
        write("rules", f"{who}\n{example}")
    for text in ['{"rules":[{"subjects":["authenticated"],"projects":["{user}"],"actions":["pull"]}]}',
                 '{"rules":[{"subjects":["alice"],"projects":["a"],"actions":["pull"]}]}',
                 '{"rules":[{"subjects":["group:x"],"projects":["a"],"actions":["pull"]}]}',
                 '{"rules":[{"subjects":["anonymous"],"projects":["a"],"actions":["read"]}]}',
                 '{"rules":[{"subjects":["anonymous"],"projects":["a/b"],"actions":["pull"]}]}',
                 '{"rules":[],"users":{}}',
                 '{"rules":[{"subjects":["authenticated"],"projects":["*a*a*a*b"],"actions":["*"]}]}']:
        write("rules", f"alice\naaaaaaaaaaaaaaaa\n{text}")
    upstreams = [
        """{"upstreams": [
        {"name": "hub", "url": "https://registry-1.docker.io", "prefix": "cache/hub",
         "host": "Docker.io", "fallback": false, "username": "me", "password_env": "UPSTREAM_PASSWORD",
         "tag_ttl_secs": 60, "repositories": ["library/*", "grafana/*"], "max_bytes": 1000},
        {"name": "ghcr", "url": "https://ghcr.io/", "fallback": true}
    ]}""",
        '{"upstreams": [{"name": "hub", "url": "https://registry-1.docker.io/", "prefix": "cache/hub"}]}',
        '{"upstream": []}', "{}",
        '{"upstreams": [{"url": "https://a.io", "fallback": true}]}',
        '{"upstreams": [{"name": "a", "url": "https://a.io", "fallback": true}, {"name": "a", "url": "https://b.io", "fallback": true}]}',
        '{"upstreams": [{"name": "a", "url": "http://127.0.0.1:5000", "fallback": true}]}',
        '{"upstreams": [{"name": "hub", "url": "https://a.io", "prefix": "cache/Hub"}]}',
        '{"upstreams": [{"name": "a", "url": "https://a.io", "host": "registry.example.com:5000"}]}',
        '{"upstreams": [{"name": "a", "url": "https://user:pw@a.io", "fallback": true}]}',
        '{"upstreams": [{"name": "a", "url": "https://a.io", "fallback": true, "username": "me", "password_file": "missing"}]}',
    ]
    for i, text in enumerate(upstreams):
        repo = ["library/alpine", "grafana/loki", "x"][i % 3]
        write("upstreams", f"{repo}\n{text}")
    webhooks = [
        """{"endpoints": [
        {"name": "ci", "url": "https://ci.example.com/hooks/registry",
         "headers": {"Authorization": "Bearer abc123"}, "secret_env": "CI_HOOK_SECRET",
         "actions": ["push"], "repositories": ["team-a/*"], "timeout_secs": 5},
        {"name": "audit", "url": "http://audit.internal:8080/registry"}
    ]}""",
        '{"endpoints": [{"name": "a", "url": "ftp://a"}]}',
        '{"endpoints": [{"name": "a", "url": "http://a"}, {"name": "a", "url": "http://b"}]}',
        '{"endpoints": [{"name": "p", "url": "http://a", "actions": ["pull"]}]}',
        '{"endpoints": [{"name": "h", "url": "http://a", "headers": {"Content-Type": "x"}}]}',
        '{"endpoints": [{"name": "s", "url": "http://a", "secret_env": "MISSING"}]}',
        '{"endpoints": [{"name": "t", "url": "http://a", "timeout_secs": 0}]}',
        '{"endpoints": []}', "{}",
    ]
    for i, text in enumerate(webhooks):
        event = ["push team-a/app", "delete team-b/x", "pull team-a/y/z"][i % 3]
        write("webhooks", f"{event}\n{text}")


def management():
    for body in [{"project": "alpha"}, {"project": "alpha", "repository": "app"},
                 {"project": "alpha", "repository": "web/api", "cursor": "", "limit": 10},
                 {"project": "alpha", "repository": "app", "tag": "1"},
                 {"project": "alpha", "repository": "app", "digest": d(9)},
                 {"project": "shared", "cursor": base64.urlsafe_b64encode(b"r:shared/a").rstrip(b"=").decode()},
                 {"project": "a/b"}, {"project": "alpha", "limit": 0}, {"project": "alpha", "limit": 1001},
                 {"project": "alpha", "repository": "", "cursor": "!!"}, []]:
        write("management", json.dumps(body))


def routes():
    for path in ["/v2/", "/v2/_catalog", "/v2/a/b/tags/list", "/v2/x/tags/list/tags/list",
                 "/v2/a/blobs/uploads/", "/v2/a/blobs/uploads",
                 "/v2/a/blobs/uploads/0b7e3a2e-8d1e-4b8e-9f0e-1a2b3c4d5e6f",
                 f"/v2/a/manifests/latest", f"/v2/a/blobs/{d(1)}", f"/v2/a/referrers/{d(1)}",
                 "/_oci/manifests/x", "/healthz", "/v2//manifests/x",
                 "repository:alpha/app:pull,push&repository:beta/x:*&registry:catalog:*",
                 "repository(plugin):a:pull"]:
        write("route", path)


if __name__ == "__main__":
    shutil.rmtree(ROOT, ignore_errors=True)
    names(); ranges(); manifest_bodies(); auth(); files(); management(); routes()
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(ROOT) for f in fs)
    print(f"corpus: {total} bytes", file=sys.stderr)

// The npm @snyk/docker-registry-v2-client against the registry, for
// tests/tests/clients_npm.rs. Reads what is there as a scanner does and prints, as one JSON
// object, what the client returned.
//
//     node registry_v2_client.js HOST REPO TAG [USER PASSWORD]
"use strict";

const crypto = require("crypto");
const client = require("@snyk/docker-registry-v2-client");

async function main() {
  const [host, repo, tag, user, password] = process.argv.slice(2);
  if (!tag) {
    throw new Error("usage: registry_v2_client.js HOST REPO TAG [USER PASSWORD]");
  }
  // The registry under test listens on plain HTTP on loopback.
  const options = { protocol: "http:" };
  const sha256 = (buffer) => "sha256:" + crypto.createHash("sha256").update(buffer).digest("hex");
  await client.checkSupport(host, user, password, options);
  const tags = await client.getTags(host, repo, user, password, 1000, undefined, options);
  const paginated = await client.getTagsPaginated(host, repo, user, password, 1, options);
  const platforms = {};
  for (const architecture of ["amd64", "arm64"]) {
    const manifest = await client.getManifest(host, repo, tag, user, password, options, {
      os: "linux",
      architecture,
    });
    const config = await client.getImageConfig(
      host, repo, manifest.config.digest, user, password, options);
    const layers = [];
    for (const layer of manifest.layers) {
      const bytes = await client.getLayer(host, repo, layer.digest, user, password, options);
      layers.push(sha256(bytes));
    }
    platforms[architecture] = {
      indexDigest: manifest.indexDigest,
      manifestDigest: manifest.manifestDigest,
      configArchitecture: config.architecture,
      config: manifest.config.digest,
      layers,
    };
  }
  process.stdout.write(JSON.stringify({ tags, paginated, platforms }) + "\n");
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n${JSON.stringify(error)}\n`);
  process.exit(1);
});

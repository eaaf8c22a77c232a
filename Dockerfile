# syntax=docker/dockerfile:1
#
# Every image of the registry, from one build of the workspace:
#
#   docker build --target <name> -t <image> .
#
# Targets: blob, manifest, upload, api (the Cloud Run services), jobs (the scheduled jobs), and
# registry (the whole registry in one process, for self-hosting). The builder stage compiles
# the workspace once; each target copies one binary into a distroless image (glibc, CA
# certificates, no shell) and runs it as the unprivileged user `nonroot` (uid 65532).
#
# Dependency caching: the `skeleton` stage keeps the manifests and turns every Rust source
# into a stub, so the layer that compiles the dependencies is reused for as long as
# Cargo.toml/Cargo.lock and the set of source files do not change (also across machines, with
# --cache-from an image of the builder stage: see cloudbuild.yaml).
#
# scripts/check-deploy.sh --build runs the builder's cargo command outside Docker and checks
# that it produces every binary the targets copy.

# checkov:skip=CKV_DOCKER_2: no HEALTHCHECK: Cloud Run ignores it (it probes the port), and distroless has no client to run one; every binary serves /healthz.

# --- skeleton: manifests, and stubs in place of the sources -----------------------------------
FROM rust:1.95.0-slim-bookworm AS skeleton
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY . .
# Keep Cargo.toml, Cargo.lock, rust-toolchain.toml and *.rs (as stubs); drop everything else.
# A stub is `fn main() {}` where a binary or build script may start, empty elsewhere.
RUN find . -type f ! -name Cargo.toml ! -name Cargo.lock ! -name rust-toolchain.toml ! -name '*.rs' -delete \
    && find . -type f -name '*.rs' | while read -r f; do \
        case "$f" in \
            */main.rs|*/build.rs|*/src/bin/*) echo 'fn main() {}' > "$f" ;; \
            *) : > "$f" ;; \
        esac; \
    done \
    && find . -type d -empty -delete

# --- builder: the whole workspace, once ------------------------------------------------------
FROM rust:1.95.0-slim-bookworm AS builder
WORKDIR /src
ENV CARGO_TERM_COLOR=never
COPY --from=skeleton /src ./
# Dependencies only (the workspace's own crates are stubs here).
RUN cargo build --release --locked --workspace --bins
COPY . .
# The real sources must look newer than the stubs' build outputs.
RUN find . -name '*.rs' -not -path './target/*' -exec touch {} + \
    && cargo build --release --locked --workspace --bins \
    && mkdir -p /out/data \
    && cp target/release/blob target/release/manifest target/release/upload \
          target/release/api target/release/jobs target/release/registry /out/

# --- runtime images --------------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime-base
# Cloud Run sets PORT (8080 by default) and K_SERVICE; on Cloud Run the binaries listen on
# 0.0.0.0 and log JSON by themselves. HOST is set for other container platforms. A
# non-loopback HOST needs AUTH_MODE (basic, token, delegated) or ALLOW_ANONYMOUS_REMOTE=true:
# the process refuses to start otherwise, with a message saying so.
ENV HOST=0.0.0.0 \
    DATA_DIR=/tmp/registry
USER 65532:65532

FROM runtime-base AS blob
COPY --from=builder /out/blob /usr/local/bin/blob
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/blob"]

FROM runtime-base AS manifest
COPY --from=builder /out/manifest /usr/local/bin/manifest
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/manifest"]

FROM runtime-base AS upload
COPY --from=builder /out/upload /usr/local/bin/upload
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/upload"]

FROM runtime-base AS api
COPY --from=builder /out/api /usr/local/bin/api
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/api"]

# `docker run <image> run-all` (or migrate, blob-gc, ...): one job per run.
FROM runtime-base AS jobs
COPY --from=builder /out/jobs /usr/local/bin/jobs
ENTRYPOINT ["/usr/local/bin/jobs"]
CMD ["run-all"]

# Self-hosting: the whole registry on port 5000, data (SQLite, blobs) in the /data volume.
#   docker run -p 5000:5000 -v registry-data:/data \
#     -e AUTH_MODE=basic -e HTPASSWD_FILE=/auth/htpasswd -e AUTH_RULES_FILE=/auth/rules.json \
#     -v "$PWD/auth:/auth:ro" <image>
FROM gcr.io/distroless/cc-debian12:nonroot AS registry
COPY --from=builder /out/registry /usr/local/bin/registry
# An empty /data owned by nonroot: a new named volume takes its ownership from it.
COPY --from=builder --chown=65532:65532 /out/data /data
ENV HOST=0.0.0.0 \
    PORT=5000 \
    DATA_DIR=/data
WORKDIR /data
USER 65532:65532
VOLUME ["/data"]
EXPOSE 5000
ENTRYPOINT ["/usr/local/bin/registry"]

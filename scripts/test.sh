#!/usr/bin/env bash
# The project's test command: installs the tools the end-to-end tests need, checks formatting
# and lints (`cargo fmt --check`, clippy with warnings as errors), builds the registry binary
# and runs every test of the workspace (unit and integration).
#
# Usage: ./scripts/test.sh [extra arguments for `cargo test`]
# Meant for a Debian machine, as root or with sudo; installs only what is missing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() {
    printf '==> %s\n' "$*" >&2
}

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    else
        sudo "$@"
    fi
}

# Installs Debian packages, refreshing the package lists first (once per run).
APT_UPDATED=false
apt_install() {
    if [[ "$APT_UPDATED" == false ]]; then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
        APT_UPDATED=true
    fi
    log "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "$@"
}

# The Rust toolchain comes from rustup (rust-toolchain.toml pins it), not from Debian.
ensure_cargo() {
    if ! command -v cargo >/dev/null 2>&1; then
        log "cargo not found: install rustup (https://rustup.rs); rust-toolchain.toml pins the version"
        exit 1
    fi
}

# skopeo is the real client the end-to-end tests drive; openssl makes the test service-account
# key for signed URLs; python3 (with venv) runs the GCS emulator's installer and the deploy checks.
ensure_skopeo() {
    local missing=()
    command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-venv)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    if [[ ${#missing[@]} -gt 0 ]]; then
        apt_install "${missing[@]}"
    fi
    log "$(skopeo --version)"
}

# The cache suites (tests/tests/cache_*.rs) start distribution (Debian's docker-registry) as
# their upstream, each on a free port with a configuration of its own; the package's own
# service (on :5000, htpasswd from /etc/docker/registry) is stopped and disabled so nothing of
# the machine answers there.
disable_system_registry() {
    [[ -e /lib/systemd/system/docker-registry.service || -e /etc/init.d/docker-registry ]] ||
        return 0
    if command -v systemctl >/dev/null 2>&1; then
        # Apart: `--now` fails as a whole where systemd is not running (a container).
        as_root systemctl disable docker-registry >/dev/null 2>&1 || true
        as_root systemctl stop docker-registry >/dev/null 2>&1 || true
    fi
    if [[ -x /etc/init.d/docker-registry ]]; then
        as_root /etc/init.d/docker-registry stop >/dev/null 2>&1 || true
    fi
}

# The real clients of the client suites (tests/tests/clients_*.rs): Debian's docker.io
# (dockerd and its CLI), containerd (ctr), podman, buildah and docker-registry (distribution,
# the cache suites' upstream); the oras and Helm SDKs and python-dxf from PyPI in a venv under
# the target directory (CLIENTS_PYTHON names its python), the npm
# @snyk/docker-registry-v2-client beside it (CLIENTS_NODE_PATH), all at pinned versions.
# The suites start dockerd and containerd themselves, in temporary directories. Prints one line
# per client with its version. kaniko has no Debian or PyPI package, so no suite drives it.
CLIENTS_PIP=("oras==0.2.43" "helm-python-sdk==0.2.2" "python-dxf==12.1.1")
CLIENTS_NPM="@snyk/docker-registry-v2-client@4.0.5"
ensure_clients() {
    local missing=()
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    command -v containerd >/dev/null 2>&1 || missing+=(containerd)
    command -v podman >/dev/null 2>&1 || missing+=(podman)
    command -v buildah >/dev/null 2>&1 || missing+=(buildah)
    python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
    command -v docker-registry >/dev/null 2>&1 || missing+=(docker-registry)
    if [[ ${#missing[@]} -gt 0 ]]; then
        apt_install "${missing[@]}"
    fi
    disable_system_registry
    local venv="${CARGO_TARGET_DIR:-$PWD/target}/clients-venv"
    if [[ "$(cat "$venv/pins" 2>/dev/null)" != "${CLIENTS_PIP[*]}" ]]; then
        log "python venv $venv: ${CLIENTS_PIP[*]}"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check "${CLIENTS_PIP[@]}"
        printf '%s' "${CLIENTS_PIP[*]}" >"$venv/pins"
    fi
    export CLIENTS_PYTHON="$venv/bin/python"
    local node_dir="${CARGO_TARGET_DIR:-$PWD/target}/clients-node"
    if [[ "$(cat "$node_dir/pins" 2>/dev/null)" != "$CLIENTS_NPM" ]]; then
        log "npm install $CLIENTS_NPM in $node_dir"
        rm -rf "$node_dir"
        mkdir -p "$node_dir"
        (cd "$node_dir" && npm install --silent --no-audit --no-fund "$CLIENTS_NPM")
        printf '%s' "$CLIENTS_NPM" >"$node_dir/pins"
    fi
    export CLIENTS_NODE_PATH="$node_dir/node_modules"
    local version='s/.*version \([^ ,]*\).*/\1/'
    log "client: docker $(dockerd --version | sed "$version") (dockerd and its CLI)"
    log "client: ctr $(ctr --version | awk '{print $3}') (containerd $(containerd --version | awk '{print $3}'))"
    log "client: podman $(podman --version | sed "$version")"
    log "client: buildah $(buildah --version | sed "$version")"
    log "client: skopeo $(skopeo --version | sed "$version")"
    log "client: distribution $(docker-registry --version | awk '{print $3}') (Debian docker-registry, the cache suites' upstream)"
    log "client: oras (Python SDK) $("$CLIENTS_PYTHON" -c \
        'import importlib.metadata as m; print(m.version("oras"))')"
    log "client: helm-python-sdk $("$CLIENTS_PYTHON" -c \
        'import helm_python as h; print(h.__version__, "(Helm SDK", h.helm_sdk_version() + ")")')"
    log "client: python-dxf $("$CLIENTS_PYTHON" -c \
        'import importlib.metadata as m; print(m.version("python-dxf"))')"
    log "client: ${CLIENTS_NPM%@*} $(node -p \
        'require(process.argv[1] + "/package.json").version' \
        "$CLIENTS_NODE_PATH/@snyk/docker-registry-v2-client") (node $(node --version))"
    log "client: kaniko not tested (no Debian or PyPI package)"
}

# A throwaway PostgreSQL server for the metadata tests, unless TEST_DATABASE_URL names one:
# initdb into a temp dir, listen on 127.0.0.1 at a free port and on a unix socket in that dir,
# and remove it all on exit. Installs Debian's postgresql when its binaries are missing.
PG_DIR=""
PG_BIN=""
pg_bindir() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

start_postgres() {
    if [[ -n "${TEST_DATABASE_URL:-}" ]]; then
        log "PostgreSQL: using TEST_DATABASE_URL"
        return
    fi
    PG_BIN="$(pg_bindir)"
    if [[ -z "$PG_BIN" || ! -x "$PG_BIN/initdb" ]]; then
        apt_install postgresql
        PG_BIN="$(pg_bindir)"
    fi
    PG_DIR="$(mktemp -d /tmp/registry-pg.XXXXXX)"
    # PostgreSQL refuses to run as root: run it as the postgres user when we are root.
    local run_as=()
    if [[ "$(id -u)" -eq 0 ]]; then
        chown postgres: "$PG_DIR"
        run_as=(runuser -u postgres --)
    fi
    "${run_as[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -A trust --no-sync >/dev/null
    local port attempt
    for attempt in 1 2 3 4 5; do
        port=$((20000 + RANDOM % 30000))
        if "${run_as[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 30 \
            -o "-h 127.0.0.1 -p $port -k $PG_DIR -c fsync=off -c max_connections=400" \
            start >/dev/null; then
            export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
            export TEST_PG_SOCKET_DIR="$PG_DIR"
            log "PostgreSQL: throwaway server on 127.0.0.1:$port and $PG_DIR"
            return
        fi
        log "PostgreSQL did not start on port $port (attempt $attempt)"
    done
    cat "$PG_DIR/server.log" >&2
    exit 1
}

stop_postgres() {
    if [[ -n "$PG_DIR" ]]; then
        local run_as=()
        [[ "$(id -u)" -eq 0 ]] && run_as=(runuser -u postgres --)
        "${run_as[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
        rm -rf "$PG_DIR"
    fi
}

# The GCS emulator (fake-gcs-server from PyPI, see scripts/gcs-emulator.sh) on 127.0.0.2:80,
# shared by the GCS crate's tests and the end-to-end pass with GCS storage.
GCS_STARTED=false
start_gcs_emulator() {
    if [[ -n "${GCS_TEST_ENDPOINT:-}" ]]; then
        log "GCS: using GCS_TEST_ENDPOINT=$GCS_TEST_ENDPOINT"
        return
    fi
    GCS_TEST_ENDPOINT="$(scripts/gcs-emulator.sh start)"
    export GCS_TEST_ENDPOINT
    GCS_STARTED=true
    log "GCS: emulator at $GCS_TEST_ENDPOINT"
}

# The S3 server (moto from PyPI, see scripts/s3-server.sh for why) on 127.0.0.3:9000, shared
# by the S3 crate's tests and the end-to-end passes with S3 storage. It checks every signature
# against the access key it made at its start, exported here as S3_TEST_ACCESS_KEY_ID and
# S3_TEST_SECRET_ACCESS_KEY (with S3_TEST_ENDPOINT set, those must be set too).
S3_STARTED=false
start_s3_server() {
    if [[ -n "${S3_TEST_ENDPOINT:-}" ]]; then
        log "S3: using S3_TEST_ENDPOINT=$S3_TEST_ENDPOINT"
        return
    fi
    S3_TEST_ENDPOINT="$(scripts/s3-server.sh start)"
    export S3_TEST_ENDPOINT
    S3_STARTED=true
    local assignment
    while IFS= read -r assignment; do
        export "${assignment?}"
    done < <(scripts/s3-server.sh credentials)
    log "S3: server at $S3_TEST_ENDPOINT, access key $S3_TEST_ACCESS_KEY_ID"
}

# The NATS server of the event tests (TEST_NATS_URL), unless TEST_NATS_URL names one: the one
# on 127.0.0.1:4222 when it answers with JetStream on, else Debian's nats-server (installed
# when missing) on a free port with JetStream and a temp store directory, stopped on exit.
NATS_PID=""
NATS_DIR=""
# Whether the server at host $1, port $2 greets with JetStream on (its INFO line says so).
nats_has_jetstream() {
    local info=""
    { exec 3<>"/dev/tcp/$1/$2"; } 2>/dev/null || return 1
    read -r -t 2 info <&3 || true
    exec 3<&- 3>&-
    [[ "$info" == INFO* && "$info" == *'"jetstream":true'* ]]
}

start_nats() {
    if [[ -n "${TEST_NATS_URL:-}" ]]; then
        log "NATS: using TEST_NATS_URL=$TEST_NATS_URL"
        return
    fi
    if nats_has_jetstream 127.0.0.1 4222; then
        export TEST_NATS_URL="nats://127.0.0.1:4222"
        log "NATS: the server on 127.0.0.1:4222 (JetStream on)"
        return
    fi
    command -v nats-server >/dev/null 2>&1 || apt_install nats-server
    NATS_DIR="$(mktemp -d /tmp/registry-nats.XXXXXX)"
    local port attempt tries
    for attempt in 1 2 3 4 5; do
        port=$((20000 + RANDOM % 30000))
        nats-server -a 127.0.0.1 -p "$port" -js -sd "$NATS_DIR/store" \
            >"$NATS_DIR/server.log" 2>&1 &
        NATS_PID=$!
        for tries in $(seq 1 50); do
            if nats_has_jetstream 127.0.0.1 "$port"; then
                export TEST_NATS_URL="nats://127.0.0.1:$port"
                log "NATS: throwaway nats-server (JetStream on) on 127.0.0.1:$port"
                return
            fi
            kill -0 "$NATS_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill "$NATS_PID" 2>/dev/null || true
        wait "$NATS_PID" 2>/dev/null || true
        NATS_PID=""
        log "nats-server did not start on port $port (attempt $attempt)"
    done
    cat "$NATS_DIR/server.log" >&2
    exit 1
}

stop_nats() {
    if [[ -n "$NATS_PID" ]]; then
        kill "$NATS_PID" 2>/dev/null || true
        wait "$NATS_PID" 2>/dev/null || true
    fi
    if [[ -n "$NATS_DIR" ]]; then
        rm -rf "$NATS_DIR"
    fi
}

# Stops what this run started.
cleanup() {
    stop_postgres
    stop_nats
    if [[ "$GCS_STARTED" == true ]]; then
        scripts/gcs-emulator.sh stop >/dev/null 2>&1 || true
    fi
    if [[ "$S3_STARTED" == true ]]; then
        scripts/s3-server.sh stop >/dev/null 2>&1 || true
    fi
}

# Formatting and lints first: a run that would fail review fails here, before the long build.
# rustfmt and clippy are rust-toolchain.toml's components; rustup adds them when missing.
lint() {
    if command -v rustup >/dev/null 2>&1; then
        local installed
        installed="$(rustup component list --installed)"
        for component in rustfmt clippy; do
            if ! grep -q "^$component" <<<"$installed"; then
                log "rustup component add $component"
                rustup component add "$component"
            fi
        done
    fi
    log "cargo fmt --check"
    cargo fmt --all --check
    log "cargo clippy --workspace --all-targets -- -D warnings"
    cargo clippy --workspace --all-targets -- -D warnings
}

# Builds every binary (debug): the end-to-end tests start `registry`, the service binaries
# and `jobs`. Exports the registry's path; the others sit beside it.
build() {
    log "cargo build --workspace --bins"
    cargo build --workspace --bins
    local target_dir
    target_dir="${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')}"
    export REGISTRY_BIN="$target_dir/debug/registry"
    if [[ ! -x "$REGISTRY_BIN" ]]; then
        log "registry binary missing at $REGISTRY_BIN"
        exit 1
    fi
    export JOBS_BIN="$target_dir/debug/jobs"
    log "REGISTRY_BIN=$REGISTRY_BIN JOBS_BIN=$JOBS_BIN"
}

# Runs every test of the workspace (end-to-end suites on the embedded default, the metadata
# contract on both engines), then the end-to-end suites again with PostgreSQL metadata; the
# summary lines are repeated at the end.
run_tests() {
    log "cargo test --workspace $*"
    local output status=0
    output="$(mktemp)"
    cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$output" || status=$?
    log "cargo test -p registry-tests (TEST_METADATA=postgres) $*"
    TEST_METADATA=postgres cargo test -p registry-tests --no-fail-fast "$@" 2>&1 | tee -a "$output" || status=$?
    # The suites whose checks are about the API (not the filesystem) again, with the bytes in
    # GCS (the emulator) and the metadata in PostgreSQL: the production shape.
    log "cargo test -p registry-tests (TEST_STORAGE=gcs TEST_METADATA=postgres) $*"
    TEST_STORAGE=gcs TEST_METADATA=postgres cargo test -p registry-tests --no-fail-fast \
        --test conformance_pull --test conformance_push --test conformance_manifests \
        --test conformance_discovery --test conformance_errors --test robustness \
        --test robustness_http --test skopeo --test postgres --test chaos "$@" 2>&1 |
        tee -a "$output" || status=$?
    # Downloads redirected to GCS signed URLs (307), as in production: clients follow them.
    log "cargo test -p registry-tests (TEST_STORAGE=gcs TEST_GCS_REDIRECTS=on) $*"
    TEST_STORAGE=gcs TEST_GCS_REDIRECTS=on TEST_METADATA=postgres cargo test -p registry-tests \
        --no-fail-fast --test conformance_pull --test conformance_push \
        --test conformance_manifests --test conformance_discovery --test conformance_errors \
        --test skopeo "$@" 2>&1 | tee -a "$output" || status=$?
    # The same suites with the bytes in S3 (moto, checking every signature) and downloads by
    # 307 to presigned URLs (the backend's default), clients following them; `postgres` has the
    # two-instance uploads (PATCHes of 1 KiB, 3 MiB and 7 MiB alternating between instances).
    # Also the upstream client (blobs by redirect, as a cache follows an S3-backed upstream's)
    # and the cache itself (fills written to S3). The S3 crate's own tests and s3_checks (bad
    # credentials, bucket, endpoint) ran above.
    log "cargo test -p registry-tests (TEST_STORAGE=s3 TEST_METADATA=postgres) $*"
    TEST_STORAGE=s3 TEST_METADATA=postgres cargo test -p registry-tests --no-fail-fast \
        --test conformance_pull --test conformance_push --test conformance_manifests \
        --test conformance_discovery --test conformance_errors --test robustness \
        --test robustness_http --test skopeo --test postgres --test upstream_client \
        --test cache_registry --test cache_prefix "$@" 2>&1 |
        tee -a "$output" || status=$?
    # S3 with the embedded SQLite metadata (one instance): pushes, pulls and skopeo.
    log "cargo test -p registry-tests (TEST_STORAGE=s3, SQLite) $*"
    TEST_STORAGE=s3 cargo test -p registry-tests --no-fail-fast \
        --test conformance_pull --test conformance_push --test skopeo "$@" 2>&1 |
        tee -a "$output" || status=$?
    # The conformance and skopeo suites through the four service binaries (two `upload`
    # instances) behind a router applying the load balancer's route table (terraform/routes.json).
    log "cargo test -p registry-tests (TEST_TOPOLOGY=services TEST_METADATA=postgres) $*"
    TEST_TOPOLOGY=services TEST_METADATA=postgres cargo test -p registry-tests --no-fail-fast \
        --test conformance_pull --test conformance_push --test conformance_manifests \
        --test conformance_discovery --test conformance_errors --test skopeo --test cache_prefix \
        "$@" 2>&1 | tee -a "$output" || status=$?
    # Deployment files, offline: Terraform parsed and checked against the provider schema, the
    # URL map against the route table, env vars against the README, checkov, hadolint; and the
    # Dockerfile builder stage's cargo command run here (a release build of every binary).
    log "scripts/check-deploy.sh --build"
    scripts/check-deploy.sh --build 2>&1 | tee -a "$output" || status=$?
    # Every fuzz target for a few seconds (its own instrumented build, under
    # $CARGO_TARGET_DIR/fuzz); longer runs: scripts/fuzz.sh <seconds>.
    log "scripts/fuzz.sh 5"
    scripts/fuzz.sh 5 2>&1 | tee -a "$output" || status=$?
    log "summary"
    grep -E '^(     Running|   Doc-tests|test result:)|^error|FAILED|panicked|^deploy: |^fuzz: ' "$output" || true
    awk '/^test result:/ { passed += $4; failed += $6 }
         END { printf "total: %d passed, %d failed\n", passed, failed }' "$output"
    rm -f "$output"
    return "$status"
}

# A cold run's build (debug, every test binary, and the release build of the deploy check)
# takes about 12 GB under the target directory; stop early with a clear message when the disk
# cannot hold it, rather than an hour later with "No space left on device" from the linker.
NEEDED_GB=14
check_disk() {
    local target="${CARGO_TARGET_DIR:-$PWD/target}" free_gb
    mkdir -p "$target"
    free_gb=$(($(df -Pk "$target" | awk 'NR == 2 { print $4 }') / 1024 / 1024))
    log "disk: ${free_gb} GB free under $target"
    if [[ "$free_gb" -lt "$NEEDED_GB" ]]; then
        log "the build needs about $NEEDED_GB GB free under $target (the target directory); free some space or set CARGO_TARGET_DIR"
        exit 1
    fi
}

main() {
    ensure_cargo
    check_disk
    # A one-off build gains nothing from incremental compilation, whose state takes GBs.
    export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
    lint
    ensure_skopeo
    ensure_clients
    trap cleanup EXIT
    start_postgres
    start_gcs_emulator
    start_s3_server
    start_nats
    build
    run_tests "$@"
}

main "$@"

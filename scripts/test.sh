#!/usr/bin/env bash
# The project's test command: installs the tools the end-to-end tests need, builds the
# registry binary and runs every test of the workspace (unit and integration).
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

# skopeo is the real client the end-to-end tests drive.
ensure_skopeo() {
    if ! command -v skopeo >/dev/null 2>&1; then
        apt_install skopeo
    fi
    log "$(skopeo --version)"
}

# Builds the registry binary (debug) and exports its path for the tests.
build() {
    log "cargo build -p registry"
    cargo build -p registry
    local target_dir
    target_dir="${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')}"
    export REGISTRY_BIN="$target_dir/debug/registry"
    if [[ ! -x "$REGISTRY_BIN" ]]; then
        log "registry binary missing at $REGISTRY_BIN"
        exit 1
    fi
    log "REGISTRY_BIN=$REGISTRY_BIN"
}

# Runs every test of the workspace; the summary lines are repeated at the end.
run_tests() {
    log "cargo test --workspace $*"
    local output status=0
    output="$(mktemp)"
    cargo test --workspace "$@" 2>&1 | tee "$output" || status=$?
    log "summary"
    grep -E '^(     Running|   Doc-tests|test result:)|^error|FAILED|panicked' "$output" || true
    awk '/^test result:/ { passed += $4; failed += $6 }
         END { printf "==> total: %d passed, %d failed\n", passed, failed }' "$output"
    rm -f "$output"
    return "$status"
}

main() {
    ensure_cargo
    ensure_skopeo
    build
    run_tests "$@"
}

main "$@"

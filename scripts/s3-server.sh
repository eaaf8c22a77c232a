#!/usr/bin/env bash
# An S3 server for tests: the server mode of moto (PyPI `moto[server]`), on a loopback port.
#
# Why moto: of the servers installable from the registries this project may use, it
# implements everything the S3 backend sends (checked in its sources and by the contract
# tests): multipart uploads with ranged UploadPartCopy, ListMultipartUploads and
# AbortMultipartUpload, conditional writes (`If-None-Match: *` on PutObject and
# CompleteMultipartUpload, answering 412), DeleteObjects, ListObjectsV2, and presigned GETs,
# which skopeo and the other clients follow. It enforces S3's 5 MiB minimum part size, so a
# part plan that breaks it fails here as on AWS. It installs in seconds (a wheel), where
# s3s-fs (crates.io) must be compiled; s3s-fs checks SigV4 signatures, moto does not, so
# signature bugs are outside what these tests can show (the SDK signs; the code here only
# chooses operations and bytes). moto keeps a completed multipart object in memory while it
# concatenates it: large-blob tests cost the server RAM of the blob's size.
#
# Usage:
#   scripts/s3-server.sh start [ADDRESS [PORT]]  start in the background, create the bucket,
#                                               wait until it answers, print the endpoint
#   scripts/s3-server.sh stop [ADDRESS [PORT]]   stop what `start` started
#   scripts/s3-server.sh serve [ADDRESS [PORT]]  the same in the foreground for a test harness:
#                                               prints the endpoint when ready, stops when its
#                                               standard input closes (the harness exited)
#
# ADDRESS defaults to 127.0.0.3, PORT to 9000. Environment: S3_SERVER_BUCKET (default
# registry-test) is the bucket created; S3_SERVER_HOME (default ~/.cache/registry-s3-server)
# holds the Python venv and, under run/<ADDRESS>-<PORT>/, the pid file and log.
#
# The test command uses it as:
#   S3_TEST_ENDPOINT="$(scripts/s3-server.sh start)"; export S3_TEST_ENDPOINT
#   trap 'scripts/s3-server.sh stop' EXIT
set -euo pipefail

PACKAGE="moto[server]==5.2.5"
HOME_DIR="${S3_SERVER_HOME:-${HOME:-/tmp}/.cache/registry-s3-server}"
BUCKET="${S3_SERVER_BUCKET:-registry-test}"

log() {
    printf 's3-server: %s\n' "$*" >&2
}

# Installs moto into a venv of its own (once); prints the server's path.
binary() {
    local venv="$HOME_DIR/venv"
    if [[ ! -x "$venv/bin/moto_server" ]]; then
        log "installing $PACKAGE into $venv"
        mkdir -p "$HOME_DIR"
        if ! python3 -m venv "$venv" >&2; then
            log "python3 -m venv failed; installing python3-venv"
            rm -rf "$venv"
            DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
                python3-venv >&2
            python3 -m venv "$venv" >&2
        fi
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$PACKAGE" >&2
    fi
    echo "$venv/bin/moto_server"
}

# Answers 0 once the server lists buckets at $1.
ready() {
    python3 - "$1" <<'PY'
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1] + "/", timeout=1).read()
except Exception:
    sys.exit(1)
PY
}

create_bucket() {
    python3 - "$1" "$BUCKET" <<'PY'
import sys, urllib.error, urllib.request
endpoint, bucket = sys.argv[1], sys.argv[2]
request = urllib.request.Request(endpoint + "/" + bucket, data=b"", method="PUT")
try:
    urllib.request.urlopen(request, timeout=5).read()
except urllib.error.HTTPError as e:
    if e.code != 409:  # 409: it exists already
        raise
PY
}

launch() {
    local address="$1" port="$2" bin run endpoint="http://$1:$2"
    bin="$(binary)"
    run="$HOME_DIR/run/$address-$port"
    mkdir -p "$run"
    if [[ -f "$run/pid" ]] && kill -0 "$(cat "$run/pid")" 2>/dev/null; then
        log "already running on $address:$port (pid $(cat "$run/pid"))"
    else
        # Objects above 1 MiB spill from memory to temporary files.
        MOTO_S3_DEFAULT_KEY_BUFFER_SIZE=1048576 "$bin" -H "$address" -p "$port" \
            >"$run/log" 2>&1 &
        echo $! >"$run/pid"
    fi
    local tries=0
    until ready "$endpoint"; do
        if ! kill -0 "$(cat "$run/pid")" 2>/dev/null; then
            log "the server exited; its log ($run/log):"
            cat "$run/log" >&2
            return 1
        fi
        tries=$((tries + 1))
        if [[ $tries -gt 200 ]]; then
            log "no answer from $endpoint after 20 s; log in $run/log"
            return 1
        fi
        sleep 0.1
    done
    create_bucket "$endpoint"
    log "serving $endpoint, bucket $BUCKET"
    echo "$endpoint"
}

halt() {
    local run="$HOME_DIR/run/$1-$2" pid
    [[ -f "$run/pid" ]] || return 0
    pid="$(cat "$run/pid")"
    if kill "$pid" 2>/dev/null; then
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    rm -rf "$run"
}

command="${1:-}"
address="${2:-127.0.0.3}"
port="${3:-9000}"
case "$command" in
start) launch "$address" "$port" ;;
stop) halt "$address" "$port" ;;
serve)
    trap 'halt "$address" "$port"' EXIT
    launch "$address" "$port"
    cat >/dev/null
    ;;
binary) binary ;;
*)
    sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# The benchmark: this project's `registry` (release build, embedded default) and distribution
# (Debian's `docker-registry`, installed when missing) on loopback with filesystem storage,
# every scenario of the `bench` program against both in the same run, on disk and on tmpfs
# (/dev/shm), with the physical limits that bound them measured in the same run; then the
# GCS path (1 GiB blob through the emulator, peak RSS), the S3 path (a large blob through the
# S3 test server, pushed in one streamed PATCH and in 1 MiB chunks, pulled back digest-verified),
# the pull-through cache, the small-image push with events off and on (NATS and a webhook,
# answering or hanging) and the jobs over a seeded PostgreSQL database; then one table with the
# ratio project/distribution per figure (and for events, on/off).
#
# Usage: scripts/bench.sh [--quick] [--storage disk,tmpfs] [--only SCENARIOS] [--out DIR] [--no-build]
#   --quick      small sizes (a few minutes); without it, the issue's sizes
#   --storage    which variants to run (default disk,tmpfs)
#   --only       comma-separated subset of: limits,push,pull,images,tags,catalog,cold,gcs,s3,gc,cache,events,import
#   --out DIR    where results.jsonl, table.md and the server logs go (default a new temp dir)
#   --no-build   use the release binaries already in target/release ($CARGO_TARGET_DIR/release)
#
# Environment: BENCH_DISK_DIR (default /tmp), where the disk variant keeps the registries'
# data; BENCH_PG (default postgres://postgres@127.0.0.1:5432/postgres), the server on
# which the gc scenario creates and drops a throwaway database; BENCH_GCS_ADDRESS (default
# 127.0.0.3), the loopback address of the GCS emulator this script starts and stops (not
# 127.0.0.2, so that a test run's emulator there is left alone); BENCH_S3_ADDRESS (default
# 127.0.0.5), the loopback address of the S3 server (scripts/s3-server.sh, port 9000) this
# script starts and stops (not 127.0.0.3, a test run's); BENCH_S3_SIZES (default 256MiB,1GiB;
# --quick 32MiB,128MiB), the blob sizes of the S3 path; BENCH_S3_SERVER (default moto), which
# S3 server the S3 path runs on: `moto` (scripts/s3-server.sh; holds about 5x the blob in
# memory, so not for 6 GiB) or `s3s-fs` (crates.io, version pinned below, objects streamed to
# files under BENCH_DISK_DIR, every signature checked against a key made per run; installed
# with `cargo install` into BENCH_S3S_FS_ROOT, default ~/.cache/registry-s3s-fs, when missing;
# its bucket is emptied after each blob, so the disk holds one blob's objects at a time:
# about 2x the blob at the peak of an assembly; s3s-fs 0.14.1 reads a ranged copy's source
# to its end, so a blob over 5 GiB, assembled by ranged copies, takes hours there).
#
# Every server binds 127.0.0.1 only (checked after each start); every process started here is
# stopped on exit, and every data directory removed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BENCH="$TARGET_DIR/release/bench"
REGISTRY="$TARGET_DIR/release/registry"
JOBS="$TARGET_DIR/release/jobs"

QUICK=false
BUILD=true
STORAGES="disk,tmpfs"
ONLY="limits,push,pull,images,tags,catalog,cold,gcs,s3,gc,cache,events,import"
OUT=""
while [[ $# -gt 0 ]]; do
    case "$1" in
    --quick) QUICK=true ;;
    --storage) STORAGES="$2"; shift ;;
    --only) ONLY="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    --no-build) BUILD=false ;;
    *) sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    esac
    shift
done

if $QUICK; then
    SMALL=16MiB MANY=8 BIG=64MiB FEW=2 IMAGES=40 LEVELS=1,8,32 TAGS=1000 REPOS=500
    LIMIT_SIZE=256MiB GCS_SIZE=128MiB S3_SIZES="${BENCH_S3_SIZES:-32MiB,128MiB}" SEED_BLOBS=100000 SEED_MANIFESTS=10000 COLD_RUNS=5
    RANGES=200 LIST_REQUESTS=50 CACHE_SIZE=32MiB IMPORT_IMAGES=100 IMPORT_LAYER_MIB=128
else
    SMALL=16MiB MANY=64 BIG=512MiB FEW=3 IMAGES=200 LEVELS=1,8,32 TAGS=1000 REPOS=500
    LIMIT_SIZE=1GiB GCS_SIZE=1GiB S3_SIZES="${BENCH_S3_SIZES:-256MiB,1GiB}" SEED_BLOBS=1000000 SEED_MANIFESTS=100000 COLD_RUNS=20
    RANGES=400 LIST_REQUESTS=200 CACHE_SIZE=200MiB IMPORT_IMAGES=500 IMPORT_LAYER_MIB=2048
fi
PG="${BENCH_PG:-postgres://postgres@127.0.0.1:5432/postgres}"
GCS_ADDRESS="${BENCH_GCS_ADDRESS:-127.0.0.3}"
S3_ADDRESS="${BENCH_S3_ADDRESS:-127.0.0.5}"
S3_SERVER="${BENCH_S3_SERVER:-moto}"
S3S_FS_VERSION=0.14.1
S3S_FS_ROOT="${BENCH_S3S_FS_ROOT:-${HOME:-/tmp}/.cache/registry-s3s-fs}"
case "$S3_SERVER" in
moto | s3s-fs) ;;
*) printf 'BENCH_S3_SERVER: moto or s3s-fs, not %s\n' "$S3_SERVER" >&2; exit 2 ;;
esac

OUT="${OUT:-$(mktemp -d /tmp/registry-bench.XXXXXX)}"
mkdir -p "$OUT/logs"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"

log() { printf '==> %s\n' "$*" >&2; }
wants() { [[ ",$ONLY," == *",$1,"* ]]; }

# --- clean-up of everything started here -------------------------------------------------
PIDS=()
CLEANUP_DIRS=()
GCS_STARTED=false
S3_STARTED=false
GC_DB=""
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        if kill "$pid" 2>/dev/null; then wait "$pid" 2>/dev/null || true; fi
    done
    for dir in "${CLEANUP_DIRS[@]}"; do rm -rf "$dir"; done
    if $GCS_STARTED; then scripts/gcs-emulator.sh stop "$GCS_ADDRESS" || true; fi
    if $S3_STARTED; then scripts/s3-server.sh stop "$S3_ADDRESS" 9000 || true; fi
    if [[ -n "$GC_DB" ]]; then psql -q "$PG" -c "DROP DATABASE IF EXISTS $GC_DB" || true; fi
}
trap cleanup EXIT

machine_load() {
    printf '%s | cpus %s | load %s | busiest: %s\n' "$(date -u +%H:%M:%SZ)" "$(nproc)" \
        "$(cut -d' ' -f1-3 /proc/loadavg)" \
        "$(ps -eo pcpu=,comm= --sort=-pcpu | head -4 | awk '{printf "%s %s%%, ", $2, $1}')"
}

# --- servers -----------------------------------------------------------------------------
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits until $1 answers 200 on /v2/, then checks that process $2 listens on 127.0.0.1 only.
await_server() {
    local url="$1" pid="$2" tries=0
    until curl -fsS -o /dev/null "$url/v2/" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || { log "server $pid exited; see $OUT/logs"; return 1; }
        tries=$((tries + 1))
        [[ $tries -lt 300 ]] || { log "no answer from $url"; return 1; }
        sleep 0.05
    done
    local bad
    bad="$(ss -ltnpH | grep "pid=$pid," | awk '{print $4}' | grep -v '^127\.0\.0\.1:' || true)"
    if [[ -n "$bad" ]]; then
        log "server $pid listens beyond 127.0.0.1: $bad"
        return 1
    fi
}

# start_server TARGET DATA_DIR [ENV...]: starts it; sets SERVER_PID and SERVER_URL.
start_server() {
    local target="$1" data="$2" port
    shift 2
    port="$(free_port)"
    mkdir -p "$data"
    case "$target" in
    project)
        env "$@" HOST=127.0.0.1 PORT="$port" DATA_DIR="$data" LOG_LEVEL=warn JOBS_INTERVAL_SECS=0 \
            "$REGISTRY" >>"$OUT/logs/project.log" 2>&1 &
        ;;
    distribution)
        cat >"$data.yml" <<EOF
version: 0.1
# error is distribution's quietest level (it still logs each 404 there).
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$port
EOF
        docker-registry serve "$data.yml" >>"$OUT/logs/distribution.log" 2>&1 &
        ;;
    esac
    SERVER_PID=$!
    SERVER_URL="http://127.0.0.1:$port"
    PIDS+=("$SERVER_PID")
    await_server "$SERVER_URL" "$SERVER_PID"
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    rm -rf "$1" "$1.yml"
}

# scenario STORAGE BASE NAME ARGS...: runs `bench NAME ARGS` against a fresh server of each
# target in turn (same data, same sizes), appending the lines to the results.
scenario() {
    local storage="$1" base="$2" name="$3" target data
    shift 3
    for target in project distribution; do
        data="$base/$target-$name-$RANDOM"
        start_server "$target" "$data"
        log "$storage $target: bench $name $*"
        "$BENCH" "$name" --url "$SERVER_URL" --pid "$SERVER_PID" --label "$target" \
            --storage "$storage" "$@" | tee -a "$RESULTS" >&2
        stop_server "$data"
    done
}

# seed_database URL BLOBS MANIFESTS: 100 manifests per repository, repositories spread over
# 100 projects; 90% of the blobs linked (the same number per repository), each manifest
# referencing its share of its repository's links, except that every other manifest leaves
# out its last one. Garbage for blob-gc: MANIFESTS/2 unreferenced links, then the 10% of
# blobs never linked plus the blobs of those links. Every row is older than the grace period.
seed_database() {
    local url="$1" blobs="$2" manifests="$3"
    local repos=$((manifests / 100)) per_manifest per_repo
    per_repo=$((blobs * 9 / 10 / repos))
    per_manifest=$((per_repo / 100))
    per_repo=$((per_manifest * 100))
    local hex="lpad(to_hex(x), 64, '0')" mhex="lpad(to_hex(x + 100000000), 64, '0')"
    psql -q -v ON_ERROR_STOP=1 "$url" <<SQL
INSERT INTO repositories (id, name, created_at) OVERRIDING SYSTEM VALUE
    SELECT x, 'proj' || (x % 100) || '/repo' || x, 0 FROM generate_series(1, $repos) x;
INSERT INTO blobs (digest, size, created_at)
    SELECT 'sha256:' || $hex, (x % 1000) * 10000, 0 FROM generate_series(1, $blobs) x;
INSERT INTO repository_blobs (repository_id, digest, created_at)
    SELECT (x - 1) / $per_repo + 1, 'sha256:' || $hex, 0 FROM generate_series(1, $per_repo * $repos) x;
INSERT INTO manifests (repository_id, digest, media_type, size, payload, created_at)
    SELECT (x - 1) / 100 + 1, 'sha256:' || $mhex, 'application/vnd.oci.image.manifest.v1+json', 2,
        convert_to('{}', 'UTF8'), 0 FROM generate_series(1, $manifests) x;
INSERT INTO manifest_blobs (repository_id, manifest_digest, blob_digest)
    SELECT (x - 1) / 100 + 1, 'sha256:' || $mhex,
        'sha256:' || lpad(to_hex(((x - 1) / 100) * $per_repo + ((x - 1) % 100) * $per_manifest + k), 64, '0')
    FROM generate_series(1, $manifests) x, generate_series(1, $per_manifest) k
    WHERE NOT (k = $per_manifest AND x % 2 = 0);
INSERT INTO tags (repository_id, name, manifest_digest, created_at, updated_at)
    SELECT repository_id, 'v' || right(digest, 12), digest, 0, 0 FROM manifests;
ANALYZE;
SQL
}

# The S3 server of the S3 path. s3_start: starts one with the bucket `registry-test`; sets
# S3_ENDPOINT, S3_PID, S3_KEY_ID and S3_SECRET. s3_empty: removes every object (s3s-fs only;
# moto's are in its temporary files until it stops). s3_stop: stops it, removing its data.
s3_start() {
    case "$S3_SERVER" in
    moto)
        S3_STARTED=true
        S3_ENDPOINT="$(scripts/s3-server.sh start "$S3_ADDRESS" 9000)"
        while IFS='=' read -r name value; do
            case "$name" in
            S3_TEST_ACCESS_KEY_ID) S3_KEY_ID="$value" ;;
            S3_TEST_SECRET_ACCESS_KEY) S3_SECRET="$value" ;;
            esac
        done < <(scripts/s3-server.sh credentials "$S3_ADDRESS" 9000)
        S3_PID="$(cat "${S3_SERVER_HOME:-$HOME/.cache/registry-s3-server}/run/$S3_ADDRESS-9000/pid")"
        ;;
    s3s-fs)
        S3_DATA="$(mktemp -d "${BENCH_DISK_DIR:-/tmp}/registry-bench-s3s-fs.XXXXXX")"
        CLEANUP_DIRS+=("$S3_DATA")
        # s3s-fs serves each directory under its root as a bucket.
        mkdir "$S3_DATA/registry-test"
        S3_KEY_ID="bench$RANDOM$RANDOM"
        S3_SECRET="$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
        "$S3S_FS" --host "$S3_ADDRESS" --port 9000 --access-key "$S3_KEY_ID" \
            --secret-key "$S3_SECRET" "$S3_DATA" >>"$OUT/logs/s3s-fs.log" 2>&1 &
        S3_PID=$!
        PIDS+=("$S3_PID")
        S3_ENDPOINT="http://$S3_ADDRESS:9000"
        local tries=0
        # Any HTTP status is an answer (an unsigned request is refused); 000 is none yet.
        until [[ "$(curl -s -o /dev/null -w '%{http_code}' "$S3_ENDPOINT/" || true)" != 000 ]]; do
            kill -0 "$S3_PID" 2>/dev/null || { log "s3s-fs exited; see $OUT/logs/s3s-fs.log"; return 1; }
            tries=$((tries + 1))
            [[ $tries -lt 300 ]] || { log "no answer from s3s-fs at $S3_ENDPOINT"; return 1; }
            sleep 0.05
        done
        ;;
    esac
}

s3_empty() {
    if [[ "$S3_SERVER" == s3s-fs ]]; then
        rm -rf "$S3_DATA/registry-test"
        mkdir "$S3_DATA/registry-test"
    fi
}

s3_stop() {
    case "$S3_SERVER" in
    moto)
        scripts/s3-server.sh stop "$S3_ADDRESS" 9000
        S3_STARTED=false
        ;;
    s3s-fs)
        kill "$S3_PID" 2>/dev/null || true
        wait "$S3_PID" 2>/dev/null || true
        rm -rf "$S3_DATA"
        ;;
    esac
}

# --- set-up ------------------------------------------------------------------------------
if $BUILD; then
    log "building (release): registry, jobs, bench"
    cargo build --release -q -p registry -p registry-jobs -p registry-bench
fi
if ! command -v docker-registry >/dev/null 2>&1; then
    log "installing docker-registry (distribution)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker-registry >&2 ||
        { DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker-registry >&2; }
fi
# A copy of the binaries: a build in the shared target directory during the run must not
# change what is measured half-way.
# The copy sits in memory (/dev/shm), so that a full disk cannot stop it.
BIN="$(mktemp -d /dev/shm/registry-bench-bin.XXXXXX)"
CLEANUP_DIRS+=("$BIN")
cp "$BENCH" "$REGISTRY" "$JOBS" "$BIN/"
BENCH="$BIN/bench" REGISTRY="$BIN/registry" JOBS="$BIN/jobs"
log "project: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- common functions || echo ' + uncommitted changes')"
log "distribution: $(docker-registry --version 2>&1 | head -1)"
if wants s3 && [[ "$S3_SERVER" == s3s-fs ]]; then
    S3S_FS="$S3S_FS_ROOT/bin/s3s-fs"
    if [[ ! -x "$S3S_FS" ]]; then
        log "installing s3s-fs $S3S_FS_VERSION into $S3S_FS_ROOT"
        # Its own temporary target directory, not this workspace's.
        env -u CARGO_TARGET_DIR cargo install --quiet --locked "s3s-fs@$S3S_FS_VERSION" \
            --features binary --root "$S3S_FS_ROOT" >&2
    fi
fi
log "results in $OUT"
echo "start: $(machine_load)" >"$OUT/machine.txt"

# --- registries, on disk and on tmpfs ----------------------------------------------------
IFS=',' read -r -a STORAGE_LIST <<<"$STORAGES"
for storage in "${STORAGE_LIST[@]}"; do
    case "$storage" in
    disk) base="$(mktemp -d "${BENCH_DISK_DIR:-/tmp}/registry-bench-data.XXXXXX")" ;;
    tmpfs) base="$(mktemp -d /dev/shm/registry-bench.XXXXXX)" ;;
    *) log "unknown storage $storage"; exit 2 ;;
    esac
    mkdir -p "$base"
    CLEANUP_DIRS+=("$base")
    # The biggest push keeps FEW blobs of BIG bytes (twice, for chunked: parts + blob) until
    # its server stops; on a disk shared with other work, smaller blobs beat a full disk.
    big="$BIG"
    free_kib="$(df -Pk "$base" | awk 'NR == 2 {print $4}')"
    need_kib=$(($("$BENCH" size "$BIG") * FEW * 2 / 1024 + 1048576))
    if [[ "$free_kib" -lt "$need_kib" ]]; then
        big="$(((free_kib - 1048576) / 2 / FEW / 1024 / 16 * 16))MiB"
        log "$storage: only $((free_kib / 1024)) MiB free: big blobs of $big instead of $BIG"
        echo "$storage: big blobs of $big instead of $BIG (free space $((free_kib / 1024)) MiB)" >>"$OUT/machine.txt"
    fi
    echo "$storage: $(machine_load)" >>"$OUT/machine.txt"
    if wants limits; then
        "$BENCH" limits --size "$LIMIT_SIZE" --dir "$base" --storage "$storage" |
            tee -a "$RESULTS" >&2
    fi
    if wants push; then
        for mode in monolithic chunked streamed; do
            scenario "$storage" "$base" blob-push --size "$SMALL" --count "$MANY" --mode "$mode"
            scenario "$storage" "$base" blob-push --size "$big" --count "$FEW" --mode "$mode"
        done
    fi
    if wants pull; then
        scenario "$storage" "$base" blob-pull --size "$SMALL" --count "$MANY" --ranges "$RANGES"
        scenario "$storage" "$base" blob-pull --size "$big" --count "$FEW" --ranges 0
    fi
    if wants images; then
        scenario "$storage" "$base" small-images --images "$IMAGES" --levels "$LEVELS"
    fi
    if wants tags; then
        scenario "$storage" "$base" tags-list --tags "$TAGS" --requests "$LIST_REQUESTS"
    fi
    if wants catalog; then
        scenario "$storage" "$base" catalog --repos "$REPOS" --requests "$LIST_REQUESTS"
    fi
done

# --- exec -> first 200 on /v2/ ---------------------------------------------------------------
if wants cold; then
    log "cold start"
    "$BENCH" cold-start --binary "$REGISTRY" --runs "$COLD_RUNS" --path /v2/ --label project \
        --env JOBS_INTERVAL_SECS=0 | tee -a "$RESULTS" >&2
    printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: /nonexistent\nhttp:\n  addr: 127.0.0.1:1\n' \
        >"$OUT/cold.yml"
    "$BENCH" cold-start --binary "$(command -v docker-registry)" --runs "$COLD_RUNS" --path /v2/ \
        --label distribution --arg serve --arg "$OUT/cold.yml" \
        --env 'REGISTRY_HTTP_ADDR=127.0.0.1:{port}' \
        --env 'REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY={data}' | tee -a "$RESULTS" >&2
fi

# --- a blob through the GCS path (issue 4) ---------------------------------------------------
if wants gcs; then
    log "GCS emulator on $GCS_ADDRESS"
    GCS_STARTED=true
    endpoint="$(scripts/gcs-emulator.sh start "$GCS_ADDRESS")"
    data="$(mktemp -d "$OUT/gcs.XXXXXX")"
    start_server project "$data" STORAGE_BACKEND=gcs BUCKET_NAME=registry-test \
        GCS_ENDPOINT="$endpoint" GCS_ANONYMOUS=true GCS_REDIRECT_DOWNLOADS=false \
        GCS_PREFIX="bench-$RANDOM/"
    log "gcs: push and pull one $GCS_SIZE blob"
    "$BENCH" blob-push --url "$SERVER_URL" --pid "$SERVER_PID" --label project --storage gcs \
        --size "$GCS_SIZE" --count 1 --mode streamed | tee -a "$RESULTS" >&2
    "$BENCH" blob-pull --url "$SERVER_URL" --pid "$SERVER_PID" --label project --storage gcs \
        --size "$GCS_SIZE" --count 1 --verify digest --ranges 0 | tee -a "$RESULTS" >&2
    log "gcs: registry peak RSS over its whole life: $(grep VmHWM "/proc/$SERVER_PID/status")"
    stop_server "$data"
    scripts/gcs-emulator.sh stop "$GCS_ADDRESS"
    GCS_STARTED=false
fi

# --- large blobs through the S3 path (issue 15) ----------------------------------------------
# The registry on an S3 server checking signatures (BENCH_S3_SERVER: moto or s3s-fs),
# downloads streamed through it (no redirect). Per size: one blob pushed in one streamed
# PATCH, one in 1 MiB PATCHes, one pulled back digest-verified, each on a fresh registry so
# that each peak RSS is its own; two sizes show whether that peak grows with the blob. A fresh
# S3 server per size (moto holds every object in temporary files); its own peak RSS is logged,
# since moto holds a completed multipart object in memory several times over while it
# concatenates it.
if wants s3; then
    IFS=',' read -r -a S3_SIZE_LIST <<<"$S3_SIZES"
    for size in "${S3_SIZE_LIST[@]}"; do
        log "S3 server ($S3_SERVER) on $S3_ADDRESS:9000"
        s3_start
        s3_env=(STORAGE_BACKEND=s3 S3_BUCKET=registry-test S3_ENDPOINT="$S3_ENDPOINT"
            S3_REGION=us-east-1 S3_FORCE_PATH_STYLE=true S3_REDIRECT_DOWNLOADS=false
            S3_PREFIX="bench-$RANDOM/" AWS_ACCESS_KEY_ID="$S3_KEY_ID"
            AWS_SECRET_ACCESS_KEY="$S3_SECRET")
        for mode in streamed chunked pull; do
            data="$(mktemp -d "$OUT/s3.XXXXXX")"
            start_server project "$data" "${s3_env[@]}"
            if [[ "$mode" == pull ]]; then
                # The blob is pushed by a first registry (its pull discarded), then pulled
                # from a second on the same data directory and prefix, which finds it
                # present: the pull's peak RSS is not the push's retained heap.
                log "s3: push one $size blob for the pull (untimed), on a registry of its own"
                "$BENCH" blob-pull --url "$SERVER_URL" --pid "$SERVER_PID" --label project \
                    --storage s3 --size "$size" --count 1 --verify digest --ranges 0 \
                    --repo bench/s3-pull >/dev/null
                kill "$SERVER_PID" && wait "$SERVER_PID" 2>/dev/null || true
                start_server project "$data" "${s3_env[@]}"
                log "s3: pull one $size blob, digest-verified"
                "$BENCH" blob-pull --url "$SERVER_URL" --pid "$SERVER_PID" --label project \
                    --storage s3 --size "$size" --count 1 --verify digest --ranges 0 \
                    --repo bench/s3-pull | tee -a "$RESULTS" >&2
            else
                log "s3: push one $size blob, $mode"
                "$BENCH" blob-push --url "$SERVER_URL" --pid "$SERVER_PID" --label project \
                    --storage s3 --size "$size" --count 1 --mode "$mode" --chunk 1MiB \
                    --repo "bench/s3-$mode" | tee -a "$RESULTS" >&2
            fi
            hwm="$(grep VmHWM "/proc/$SERVER_PID/status" | tr -s ' \t' ' ')"
            log "s3 $size $mode: registry peak RSS over its whole life: $hwm"
            echo "s3 $size $mode: registry $hwm" >>"$OUT/machine.txt"
            stop_server "$data"
            s3_empty
        done
        hwm="$(grep VmHWM "/proc/$S3_PID/status" | tr -s ' \t' ' ')"
        log "s3 $size: S3 server ($S3_SERVER) peak RSS: $hwm"
        echo "s3 $size: S3 server ($S3_SERVER) $hwm" >>"$OUT/machine.txt"
        s3_stop
    done
fi

# --- the pull-through cache (issue 16) -------------------------------------------------------
# An upstream (this registry, embedded default) and two cache instances sharing one data
# directory and SQLite file with UPSTREAMS_FILE naming it under cache/origin; 20 concurrent
# first pulls of one uncached blob through both, then again from the cache. The upstream's
# request log tells how many times the blob was fetched from it.
if wants cache; then
    up_data="$(mktemp -d "$OUT/cache-upstream.XXXXXX")"
    cache_data="$(mktemp -d "$OUT/cache.XXXXXX")"
    up_port="$(free_port)"
    HOST=127.0.0.1 PORT="$up_port" DATA_DIR="$up_data" LOG_LEVEL=info JOBS_INTERVAL_SECS=0 \
        "$REGISTRY" >>"$OUT/logs/cache-upstream.log" 2>&1 &
    up_pid=$!
    PIDS+=("$up_pid")
    await_server "http://127.0.0.1:$up_port" "$up_pid"
    printf '{"upstreams":[{"name":"origin","url":"http://127.0.0.1:%s","prefix":"cache/origin"}]}' \
        "$up_port" >"$cache_data/upstreams.json"
    cache_pids=() cache_urls=()
    for instance in 1 2; do
        port="$(free_port)"
        HOST=127.0.0.1 PORT="$port" DATA_DIR="$cache_data" LOG_LEVEL=warn JOBS_INTERVAL_SECS=0 \
            UPSTREAMS_FILE="$cache_data/upstreams.json" \
            "$REGISTRY" >>"$OUT/logs/cache-$instance.log" 2>&1 &
        cache_pids+=("$!")
        PIDS+=("$!")
        cache_urls+=("http://127.0.0.1:$port")
        await_server "http://127.0.0.1:$port" "$!"
    done
    log "cache: 20 concurrent pulls of one $CACHE_SIZE blob through two instances"
    "$BENCH" cache-pull --upstream "http://127.0.0.1:$up_port" --url "${cache_urls[0]}" \
        --peer "${cache_urls[1]}" --pid "${cache_pids[0]}" --peer-pid "${cache_pids[1]}" \
        --size "$CACHE_SIZE" --clients 20 --label project --storage disk | tee -a "$RESULTS" >&2
    fetches="$(grep -c 'method=GET uri=/v2/bench/cache/blobs/sha256' "$OUT/logs/cache-upstream.log" || true)"
    log "cache: the upstream served the blob $fetches times (1 direct pull + the cache's fetches)"
    for pid in "$up_pid" "${cache_pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    rm -rf "$up_data" "$cache_data"
fi

# --- events on and off (issue 18) ------------------------------------------------------------
# The small-image push (c8 and c1, embedded default on disk) on three fresh registries: events
# off; NATS (JetStream, a stream made for the run) plus a webhook answering 200 at once; NATS
# plus a webhook that accepts and never answers (timeout_secs 5). The figure is images/s on
# against off (target: within 10%). After each events run: the events recorded (the outbox),
# and how many reached the stream and the receiver.
# events_helpers: writes the webhook receiver and the JetStream helper into $OUT.
events_helpers() {
    cat >"$OUT/events.py" <<'PY'
"""Helpers of bench.sh's events scenario.

hook PORT_FILE ok|hang: a webhook receiver on 127.0.0.1 (a free port, written to PORT_FILE);
  POST reads the body, counts it and answers 200 (ok) or never answers (hang); GET answers
  the count of POSTs received.
js HOST PORT create STREAM SUBJECT | messages STREAM | delete STREAM: the JetStream API over
  the NATS protocol (no client library needed).
"""
import http.server
import json
import os
import socket
import sys
import threading

def hook(port_file, mode):
    count = [0]
    lock = threading.Lock()
    forever = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        # Keep-alive, as a real receiver answers.
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                count[0] += 1
            if mode == "hang":
                forever.wait()
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):
            with lock:
                body = str(count[0]).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(port_file + ".tmp", port_file)
    server.serve_forever()

def js_request(host, port, subject, payload):
    sock = socket.create_connection((host, int(port)), timeout=10)
    f = sock.makefile("rb")
    f.readline()  # INFO
    body = json.dumps(payload).encode() if payload is not None else b""
    sock.sendall(b'CONNECT {"verbose":false,"pedantic":false,"protocol":1}\r\n'
                 b"SUB _INBOX.bench 1\r\n"
                 + b"PUB %s _INBOX.bench %d\r\n" % (subject.encode(), len(body)) + body + b"\r\n")
    while True:
        line = f.readline()
        if not line:
            raise SystemExit("NATS closed the connection")
        if line.startswith(b"PING"):
            sock.sendall(b"PONG\r\n")
        elif line.startswith(b"-ERR"):
            raise SystemExit(line.decode().strip())
        elif line.startswith(b"MSG"):
            size = int(line.split()[-1])
            answer = json.loads(f.read(size + 2)[:size])
            sock.close()
            if "error" in answer:
                raise SystemExit(f"{subject}: {answer['error']}")
            return answer

def js(host, port, op, stream, subject=None):
    if op == "create":
        js_request(host, port, f"$JS.API.STREAM.CREATE.{stream}", {
            "name": stream, "subjects": [subject], "storage": "file",
            "duplicate_window": 600 * 10**9})
    elif op == "messages":
        print(js_request(host, port, f"$JS.API.STREAM.INFO.{stream}", None)["state"]["messages"])
    elif op == "delete":
        js_request(host, port, f"$JS.API.STREAM.DELETE.{stream}", None)

if __name__ == "__main__":
    {"hook": hook, "js": js}[sys.argv[1]](*sys.argv[2:])
PY
}

# nats_has_jetstream HOST PORT: whether a NATS server there has JetStream on (its INFO line).
nats_has_jetstream() {
    local info=""
    { exec 3<>"/dev/tcp/$1/$2"; } 2>/dev/null || return 1
    read -r -t 2 info <&3 || true
    exec 3<&- 3>&-
    [[ "$info" == INFO* && "$info" == *'"jetstream":true'* ]]
}

# events_nats: the server at 127.0.0.1:4222 when it has JetStream, else a throwaway
# `nats-server -js` on a free port; sets NATS_PORT.
events_nats() {
    if nats_has_jetstream 127.0.0.1 4222; then
        NATS_PORT=4222
        log "events: NATS at 127.0.0.1:4222 (JetStream on)"
        return
    fi
    command -v nats-server >/dev/null 2>&1 ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nats-server >&2
    local store tries
    store="$(mktemp -d "$OUT/nats.XXXXXX")"
    NATS_PORT="$(free_port)"
    nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$store" >>"$OUT/logs/nats.log" 2>&1 &
    PIDS+=("$!")
    for tries in $(seq 1 50); do
        nats_has_jetstream 127.0.0.1 "$NATS_PORT" && break
        [[ $tries -lt 50 ]] || { log "nats-server did not start; see $OUT/logs/nats.log"; return 1; }
        sleep 0.1
    done
    log "events: throwaway nats-server (JetStream on) on 127.0.0.1:$NATS_PORT"
}

# events_hook ok|hang: starts a receiver; sets HOOK_PID and HOOK_URL.
events_hook() {
    local port_file="$OUT/hook-$1.port" tries=0
    rm -f "$port_file"
    python3 "$OUT/events.py" hook "$port_file" "$1" >>"$OUT/logs/hook.log" 2>&1 &
    HOOK_PID=$!
    PIDS+=("$HOOK_PID")
    until [[ -s "$port_file" ]]; do
        tries=$((tries + 1))
        [[ $tries -lt 100 ]] || { log "the webhook receiver did not start"; return 1; }
        sleep 0.05
    done
    HOOK_URL="http://127.0.0.1:$(cat "$port_file")"
}

# stop_pid PID: SIGTERM, then SIGKILL after 10 s (a registry may be mid-send to a hung hook).
stop_pid() {
    local tries=0
    kill "$1" 2>/dev/null || return 0
    while kill -0 "$1" 2>/dev/null && [[ $tries -lt 100 ]]; do
        sleep 0.1
        tries=$((tries + 1))
    done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# events_counts DATA STREAM: "E events; nats: N in the stream; webhook: R received", with
# the deliveries' states from the outbox.
events_counts() {
    local db="$1/registry.db" stream="$2"
    printf '%s events recorded; stream %s: %s messages; receiver: %s POSTs; deliveries: %s' \
        "$(sqlite3 "$db" 'SELECT count(*) FROM event_outbox')" "$stream" \
        "$(python3 "$OUT/events.py" js 127.0.0.1 "$NATS_PORT" messages "$stream")" \
        "$(curl -fsS "$HOOK_URL/")" \
        "$(sqlite3 "$db" "SELECT group_concat(destination || ' ' || state || ' ' || n, ', ') FROM
            (SELECT destination, state, count(*) AS n FROM event_deliveries GROUP BY 1, 2)")"
}

if wants events; then
    events_helpers
    events_nats
    EVENTS="$OUT/events.jsonl"
    : >"$EVENTS"
    base="$(mktemp -d "${BENCH_DISK_DIR:-/tmp}/registry-bench-events.XXXXXX")"
    CLEANUP_DIRS+=("$base")
    for run in off on hang; do
        data="$base/$run"
        env=()
        stream=""
        if [[ "$run" != off ]]; then
            # Unique per run: the shared server's other streams and this run's earlier ones
            # never see these subjects.
            prefix="benchev$$x$RANDOM$run"
            stream="BENCHEV_$$_${RANDOM}_$run"
            python3 "$OUT/events.py" js 127.0.0.1 "$NATS_PORT" create "$stream" "$prefix.>"
            events_hook "$([[ "$run" == on ]] && echo ok || echo hang)"
            printf '{"endpoints":[{"name":"bench","url":"%s/hook","timeout_secs":5}]}' \
                "$HOOK_URL" >"$OUT/webhooks-$run.json"
            env=(NATS_URL="nats://127.0.0.1:$NATS_PORT" NATS_SUBJECT_PREFIX="$prefix"
                NATS_JETSTREAM=true WEBHOOKS_FILE="$OUT/webhooks-$run.json")
        fi
        start_server project "$data" "${env[@]}"
        log "events $run: bench small-images --images $IMAGES --levels 8,1"
        echo "events $run: $(machine_load)" >>"$OUT/machine.txt"
        # Only the push is the figure; the pulls record nothing (EVENTS_PULLS is off).
        "$BENCH" small-images --url "$SERVER_URL" --pid "$SERVER_PID" --label "events-$run" \
            --storage disk --images "$IMAGES" --levels 8,1 |
            jq -c 'select(.scenario == "image-push") | .scenario = "events-push"' |
            tee -a "$EVENTS" >&2
        if [[ "$run" != off ]]; then
            # Delivery runs after each answer; give the stream and the receiver a moment
            # (a hung hook never counts as delivered).
            expected="$(sqlite3 "$data/registry.db" 'SELECT count(*) FROM event_outbox')"
            for tries in $(seq 1 100); do
                got="$(python3 "$OUT/events.py" js 127.0.0.1 "$NATS_PORT" messages "$stream")"
                # on: also every webhook delivery done (hang: those stay pending).
                pending=0
                [[ "$run" != on ]] || pending="$(sqlite3 "$data/registry.db" \
                    "SELECT count(*) FROM event_deliveries WHERE state = 'pending'")"
                [[ "$got" -lt "$expected" || "$pending" -gt 0 ]] || break
                sleep 0.1
            done
            counts="$(events_counts "$data" "$stream")"
            log "events $run: $counts"
            echo "events $run: $counts" >>"$OUT/machine.txt"
        fi
        # The server's whole CPU since its start (push, pulls, and the deliveries made after
        # the push phase, which its "server CPU" figure does not see); load-independent.
        total="$(awk '{print ($14 + $15) / '"$(getconf CLK_TCK)"'}' "/proc/$SERVER_PID/stat")"
        log "events $run: server CPU since start ${total} s"
        echo "events $run: server CPU since start (push, pulls, deliveries) ${total} s" >>"$OUT/machine.txt"
        stop_pid "$SERVER_PID"
        rm -rf "$data"
        if [[ "$run" != off ]]; then
            stop_pid "$HOOK_PID"
            python3 "$OUT/events.py" js 127.0.0.1 "$NATS_PORT" delete "$stream"
        fi
    done
fi

# --- jobs over a seeded PostgreSQL database (issue 7) ----------------------------------------
if wants gc; then
    GC_DB="registry_bench_$$"
    log "gc: seeding $GC_DB with $SEED_BLOBS blobs and $SEED_MANIFESTS manifests"
    psql -q "$PG" -c "CREATE DATABASE $GC_DB"
    db_url="${PG%/*}/$GC_DB"
    gc_data="$(mktemp -d "$OUT/gc.XXXXXX")"
    DATABASE_URL="$db_url" DATA_DIR="$gc_data" "$JOBS" migrate 2>>"$OUT/logs/jobs.log"
    seed_database "$db_url" "$SEED_BLOBS" "$SEED_MANIFESTS"
    for job in blob-gc blob-gc project-storage; do
        pass="first run"
        [[ "$job" == blob-gc && -n "${GC_DONE:-}" ]] && pass="rerun, nothing to collect"
        [[ "$job" == blob-gc ]] && GC_DONE=1
        log "gc: jobs $job ($pass)"
        DATABASE_URL="$db_url" DATA_DIR="$gc_data" LOG_LEVEL=info \
            /usr/bin/time -v -o "$OUT/time.txt" "$JOBS" "$job" 2>>"$OUT/logs/jobs.log"
        seconds="$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; print s}' "$OUT/time.txt")"
        rss_kib="$(awk -F': ' '/Maximum resident set size/ {print $2}' "$OUT/time.txt")"
        summary="$(grep -a "$job" "$OUT/logs/jobs.log" | grep -a examined | tail -1 | sed 's/.*INFO //' | cut -c1-200)"
        jq -cn --arg case "$job $pass ($SEED_BLOBS blobs, $SEED_MANIFESTS manifests)" \
            --argjson s "$seconds" --argjson r "$rss_kib" --arg summary "$summary" \
            --argjson load "$(cut -d' ' -f1 /proc/loadavg)" \
            '{scenario:"gc-seeded", case:$case, label:"project", storage:"postgres",
              figures:[{name:"time", value:$s, unit:"s", better:"lower"},
                       {name:"jobs peak RSS", value:(($r/1024*100|round)/100), unit:"MiB", better:"lower"}],
              summary:$summary, load:{load1:$load}}' | tee -a "$RESULTS" >&2
    done
    psql -q "$PG" -c "DROP DATABASE $GC_DB"
    GC_DB=""
fi

# --- jobs import from distribution (issue 17) ----------------------------------------------
# upload_file URL REPO FILE: the file as a blob of REPO, by POST then a monolithic PUT
# streamed from the file (curl -T; --data-binary would read it into memory). distribution
# 2.8 answers a POST with ?digest= by opening a session, so that is not used.
upload_file() {
    local url="$1" repo="$2" file="$3" digest location sep
    digest="sha256:$(sha256sum "$file" | cut -d' ' -f1)"
    location="$(curl -sS -f -o /dev/null -w '%header{location}' -X POST "$url/v2/$repo/blobs/uploads/")"
    [[ "$location" == http* ]] || location="$url$location"
    sep='?'
    [[ "$location" != *'?'* ]] || sep='&'
    curl -sS -f -o /dev/null -T "$file" -H 'Content-Type: application/octet-stream' \
        "$location${sep}digest=$digest"
    printf '%s' "$digest"
}

# push_big_image URL REPO TAG MIB: one image whose single layer is MIB MiB of random bytes.
push_big_image() {
    local url="$1" repo="$2" tag="$3" mib="$4" file config_file digest config_digest manifest
    file="$(mktemp "$BENCH_DISK/layer.XXXXXX")"
    config_file="$(mktemp "$BENCH_DISK/config.XXXXXX")"
    head -c "$((mib * 1024 * 1024))" /dev/urandom >"$file"
    printf '%s' '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' >"$config_file"
    digest="$(upload_file "$url" "$repo" "$file")"
    config_digest="$(upload_file "$url" "$repo" "$config_file")"
    manifest="$(jq -cn --arg c "$config_digest" --argjson cs "$(stat -c %s "$config_file")" \
        --arg l "$digest" --argjson ls "$((mib * 1024 * 1024))" \
        '{schemaVersion:2, mediaType:"application/vnd.oci.image.manifest.v1+json",
          config:{mediaType:"application/vnd.oci.image.config.v1+json", digest:$c, size:$cs},
          layers:[{mediaType:"application/vnd.oci.image.layer.v1.tar+gzip", digest:$l, size:$ls}]}')"
    curl -sS -f -o /dev/null -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
        --data-binary "$manifest" "$url/v2/$repo/manifests/$tag"
    rm -f "$file" "$config_file"
}

# import_run CASE SOURCE_URL: `jobs import --from SOURCE_URL` into a fresh embedded default on
# disk, timed; a results line with images/s, MiB/s, time and the jobs binary's peak RSS.
import_run() {
    local case="$1" source="$2" data seconds rss_kib images bytes
    data="$(mktemp -d "$BENCH_DISK/import.XXXXXX")"
    DATA_DIR="$data" LOG_LEVEL=warn /usr/bin/time -v -o "$OUT/time.txt" \
        "$JOBS" import --from "$source" --concurrency 4 >"$OUT/import-report.txt" \
        2>>"$OUT/logs/jobs.log"
    cat "$OUT/import-report.txt" >&2
    seconds="$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; print s}' "$OUT/time.txt")"
    rss_kib="$(awk -F': ' '/Maximum resident set size/ {print $2}' "$OUT/time.txt")"
    images="$(sed -n 's/^manifests: \([0-9]*\) stored.*/\1/p' "$OUT/import-report.txt")"
    bytes="$(sed -n 's/^blobs: [0-9]* copied (\([0-9]*\) bytes.*/\1/p' "$OUT/import-report.txt")"
    jq -cn --arg case "$case" --argjson s "$seconds" --argjson r "$rss_kib" \
        --argjson images "${images:-0}" --argjson bytes "${bytes:-0}" \
        --argjson load "$(cut -d' ' -f1 /proc/loadavg)" \
        '{scenario:"import", case:$case, label:"project", storage:"disk",
          figures:[{name:"images/s", value:(($images/$s*10|round)/10), unit:"images/s", better:"higher"},
                   {name:"throughput", value:(($bytes/1048576/$s*10|round)/10), unit:"MiB/s", better:"higher"},
                   {name:"time", value:$s, unit:"s", better:"lower"},
                   {name:"jobs peak RSS", value:(($r/1024*100|round)/100), unit:"MiB", better:"lower"}],
          load:{load1:$load}}' | tee -a "$RESULTS" >&2
    rm -rf "$data"
}

if wants import; then
    BENCH_DISK="$(mktemp -d "${BENCH_DISK_DIR:-/tmp}/registry-bench-import.XXXXXX")"
    CLEANUP_DIRS+=("$BENCH_DISK")
    start_server distribution "$BENCH_DISK/source-small"
    log "import: $IMPORT_IMAGES small images into distribution"
    "$BENCH" small-images --url "$SERVER_URL" --images "$IMPORT_IMAGES" --levels 8 --repos 10 \
        --label distribution --storage disk >/dev/null
    import_run "$IMPORT_IMAGES small images (10 repositories), from distribution" "$SERVER_URL"
    stop_server "$BENCH_DISK/source-small"
    start_server distribution "$BENCH_DISK/source-big"
    log "import: one image with a ${IMPORT_LAYER_MIB} MiB layer into distribution"
    push_big_image "$SERVER_URL" bench/big latest "$IMPORT_LAYER_MIB"
    import_run "one image, a ${IMPORT_LAYER_MIB} MiB layer, from distribution" "$SERVER_URL"
    stop_server "$BENCH_DISK/source-big"
fi

echo "end: $(machine_load)" >>"$OUT/machine.txt"
{
    echo "Machine: $(nproc) CPUs; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    sed 's/^/  /' "$OUT/machine.txt"
    echo
    "$BENCH" table "$RESULTS"
    if wants events; then
        for run in on hang; do
            echo
            echo "Events $run against off (small-image push, disk):"
            echo
            "$BENCH" table --a "events-$run" --b events-off "$EVENTS"
        done
    fi
} | tee "$OUT/table.md"
log "results: $RESULTS; table: $OUT/table.md"

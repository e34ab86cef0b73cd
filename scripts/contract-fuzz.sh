#!/usr/bin/env bash
# Contract fuzzing: schemathesis (a pinned version from PyPI, in a virtual environment under
# ~/.cache/sluice) against the OpenAPI document served by `sluice dev`. It starts `sluice dev` in
# a temporary directory on ports of its own, creates a fixed tenant, stream and pipeline through
# the REST API with the bootstrap admin token, and sends requests generated from the document
# to them (fixed seed, bounded examples, settings in scripts/contract-fuzz.toml). It fails on
# any server error or any disagreement between the document and the server: statuses, media
# types, response bodies, and requests the document allows that the server refuses (or the
# reverse). `sluice dev` is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# shellcheck source=scripts/lib/services.sh
. scripts/lib/services.sh

SCHEMATHESIS_VERSION=4.32.5
SCHEMATHESIS_VENV="$HOME/.cache/sluice/schemathesis-venv"
API_PORT="${SLUICE_FUZZ_API_PORT:-18480}"
KUBE_PORT="${SLUICE_FUZZ_KUBE_PORT:-18643}"
NATS_PORT="${SLUICE_FUZZ_NATS_PORT:-4222}"
export SLUICE_FUZZ_TENANT=fuzz SLUICE_FUZZ_STREAM=orders SLUICE_FUZZ_PIPELINE=large-orders
export SLUICE_FUZZ_URL="http://127.0.0.1:$API_PORT"
export SLUICE_FUZZ_HOOKS="$PWD/scripts/contract-fuzz-hooks.py"

ensure_schemathesis() {
  if [ "$("$SCHEMATHESIS_VENV/bin/schemathesis" --version 2>/dev/null)" = "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
    return
  fi
  log "installing schemathesis $SCHEMATHESIS_VERSION (PyPI)"
  python3 -m venv "$SCHEMATHESIS_VENV"
  "$SCHEMATHESIS_VENV/bin/pip" install --quiet --disable-pip-version-check \
    "schemathesis==$SCHEMATHESIS_VERSION"
}

ensure_tools
ensure_nats
ensure_schemathesis

log "cargo build -p sluice -p sluice-worker"
cargo build --locked --quiet -p sluice -p sluice-worker
SLUICE="$CARGO_TARGET_DIR/debug/sluice"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-contract-fuzz.XXXXXX")
DEV_PID=""
stop_dev() {
  if [ -n "$DEV_PID" ] && kill -0 "$DEV_PID" 2>/dev/null; then
    kill -TERM "$DEV_PID"
    wait "$DEV_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap stop_dev EXIT

log "starting sluice dev on 127.0.0.1:$API_PORT (state in $WORK)"
"$SLUICE" dev --data-dir "$WORK/data" --api-port "$API_PORT" --kube-port "$KUBE_PORT" \
  --nats-port "$NATS_PORT" --worker-bin "$CARGO_TARGET_DIR/debug/sluice-worker" \
  >"$WORK/dev.log" 2>&1 &
DEV_PID=$!
for _ in $(seq 1 120); do
  if [ -s "$WORK/data/admin-token" ] && curl -fsS "$SLUICE_FUZZ_URL/readyz" >/dev/null 2>&1; then
    break
  fi
  kill -0 "$DEV_PID" 2>/dev/null || { cat "$WORK/dev.log" >&2; die "sluice dev stopped"; }
  sleep 0.5
done
[ -s "$WORK/data/admin-token" ] || { cat "$WORK/dev.log" >&2; die "sluice dev did not start"; }
SLUICE_FUZZ_TOKEN=$(cat "$WORK/data/admin-token")
# The bootstrap token's id: the hooks keep the fuzzer from revoking it.
SLUICE_FUZZ_TOKEN_ID=$(curl -fsS "$SLUICE_FUZZ_URL/v1/platform/tokens?limit=500" \
  -H "Authorization: Bearer $SLUICE_FUZZ_TOKEN" | "$SCHEMATHESIS_VENV/bin/python" -c \
  'import json, sys; print(next(t["id"] for t in json.load(sys.stdin)["items"] if t["name"] == "bootstrap-admin"))')
export SLUICE_FUZZ_TOKEN SLUICE_FUZZ_TOKEN_ID

# POSTs $2 to $1 until it answers 201 (the tenant's namespace comes a moment after the tenant).
create() {
  local status
  for _ in $(seq 1 60); do
    status=$(curl -sS -o "$WORK/answer" -w '%{http_code}' -X POST "$SLUICE_FUZZ_URL$1" \
      -H "Authorization: Bearer $SLUICE_FUZZ_TOKEN" -H 'Content-Type: application/json' -d "$2")
    [ "$status" = 201 ] && return
    sleep 0.5
  done
  cat "$WORK/answer" >&2
  die "POST $1 answered $status"
}

log "creating tenant $SLUICE_FUZZ_TENANT, stream $SLUICE_FUZZ_STREAM, pipeline $SLUICE_FUZZ_PIPELINE"
create /v1/tenants "{\"name\": \"$SLUICE_FUZZ_TENANT\", \"spec\": {}}"
create "/v1/tenants/$SLUICE_FUZZ_TENANT/streams" "{\"name\": \"$SLUICE_FUZZ_STREAM\", \"spec\": {}}"
create "/v1/tenants/$SLUICE_FUZZ_TENANT/pipelines" "{\"name\": \"$SLUICE_FUZZ_PIPELINE\",
  \"spec\": {\"source\": {\"stream\": \"$SLUICE_FUZZ_STREAM\"}, \"parallelism\": 0,
  \"sinks\": [{\"name\": \"out\", \"file\": {\"stdout\": true}}]}}"

log "schemathesis run $SLUICE_FUZZ_URL/openapi.json"
CONFIG="$PWD/scripts/contract-fuzz.toml"
# In the temporary directory, where schemathesis keeps its cache.
(cd "$WORK" && "$SCHEMATHESIS_VENV/bin/schemathesis" --config-file "$CONFIG" run \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection,positive_data_acceptance \
  --no-color "$SLUICE_FUZZ_URL/openapi.json")

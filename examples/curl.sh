#!/usr/bin/env bash
# The same tenant, stream and pipeline as tenant.yaml, stream.yaml and pipeline.yaml, made
# through the REST API instead of kubectl, then a producer token and a few events.
#
#   examples/curl.sh           # tenant globex (acme is the kubectl walkthrough's)
#   examples/curl.sh initech
#
# ADMIN defaults to the bootstrap platform-admin token `sluice dev` writes to `admin-token` in its
# data dir (it never prints it). Needs `curl` and `jq`.
set -euo pipefail

TENANT=${1:-globex}
API=${API:-http://127.0.0.1:8080}
DATA_DIR=${DATA_DIR:-.sluice-dev}
ADMIN=${ADMIN:-$(cat "$DATA_DIR/admin-token")}

call() { # METHOD PATH TOKEN [BODY]: prints the answer, fails on an HTTP error
  local method=$1 path=$2 token=$3 body=${4:-}
  if [ -n "$body" ]; then
    curl -sS --fail-with-body -X "$method" "$API$path" -H "Authorization: Bearer $token" \
      -H 'Content-Type: application/json' -d "$body"
  else
    curl -sS --fail-with-body -X "$method" "$API$path" -H "Authorization: Bearer $token"
  fi
  echo
}

echo "== the tenant $TENANT (the operator creates its namespace sluice-$TENANT)"
call POST /v1/tenants "$ADMIN" '{"name": "'"$TENANT"'", "spec": {
  "displayName": "Example tenant",
  "quota": {"maxPipelines": 5, "maxStreams": 5, "maxParallelism": 4, "cpu": "2", "memory": "2Gi",
            "ingest": {"eventsPerSecond": 1000, "bytesPerSecond": 1048576, "burst": 5000}}}}'

echo "== the stream orders (retried while the namespace is being created)"
for _ in $(seq 1 30); do
  if call POST "/v1/tenants/$TENANT/streams" "$ADMIN" '{"name": "orders", "spec": {
      "retention": {"maxAge": "1d", "maxBytes": 104857600},
      "schema": {"type": "object", "required": ["id", "amount"],
                 "properties": {"id": {"type": "string"}, "amount": {"type": "number"}}}}}'; then
    break
  fi
  sleep 1
done

echo "== the pipeline large-orders: amount > 100, three fields, to a file and to stdout"
call POST "/v1/tenants/$TENANT/pipelines" "$ADMIN" '{"name": "large-orders", "spec": {
  "source": {"stream": "orders", "startFrom": "all"},
  "filter": "event.amount > 100.0",
  "projection": {"fields": [{"path": "id"}, {"path": "customer.id", "as": "customerId"}, {"path": "amount"}]},
  "sinks": [{"name": "archive", "file": {"path": "/tmp/large-orders.ndjson"}},
            {"name": "console", "file": {"stdout": true}}],
  "parallelism": 1,
  "batching": {"maxEvents": 100, "maxWaitMs": 200}}}'

echo "== a producer token (its secret is shown once)"
PRODUCER=$(call POST "/v1/tenants/$TENANT/tokens" "$ADMIN" '{"name": "producer", "role": "producer"}' | jq -r .token)

echo "== waiting for the pipeline to be Ready"
for _ in $(seq 1 60); do
  ready=$(call GET "/v1/tenants/$TENANT/pipelines/large-orders" "$ADMIN" \
    | jq -r '.status.conditions[]? | select(.type == "Ready") | .status')
  [ "$ready" = "True" ] && break
  sleep 1
done
echo "Ready=$ready"

echo "== three events with the producer token; two pass the filter"
call POST "/v1/tenants/$TENANT/streams/orders/events" "$PRODUCER" '[
  {"id": "o-1", "amount": 250, "customer": {"id": "c-7"}, "channel": "web"},
  {"id": "o-2", "amount": 20, "customer": {"id": "c-8"}},
  {"id": "o-3", "amount": 101.5, "customer": {"id": "c-9"}}]'

sleep 2
echo "== $DATA_DIR/files/sluice-$TENANT/tmp/large-orders.ndjson:"
cat "$DATA_DIR/files/sluice-$TENANT/tmp/large-orders.ndjson"

#!/usr/bin/env bash
# Sends orders to a tenant's `orders` stream through the REST API, two a second, with random
# amounts: those over 100 come out of the example pipeline. Ctrl-C stops it.
#
#   examples/produce.sh            # tenant acme, forever
#   examples/produce.sh globex 10  # tenant globex, 10 events
#
# TOKEN defaults to the bootstrap admin token that `sluice dev` keeps in its data dir; any
# token with the producer role (or above) in the tenant works.
set -euo pipefail

TENANT=${1:-acme}
COUNT=${2:-0}
API=${API:-http://127.0.0.1:8080}
DATA_DIR=${DATA_DIR:-.sluice-dev}
TOKEN=${TOKEN:-$(cat "$DATA_DIR/admin-token")}

i=0
while [ "$COUNT" -eq 0 ] || [ "$i" -lt "$COUNT" ]; do
  i=$((i + 1))
  amount=$((RANDOM % 300))
  event="{\"id\": \"o-$$-$i\", \"amount\": $amount, \"customer\": {\"id\": \"c-$((RANDOM % 20))\"}, \"channel\": \"web\"}"
  printf '%s -> ' "$event"
  curl -sS -X POST "$API/v1/tenants/$TENANT/streams/orders/events" \
    -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d "$event"
  echo
  sleep 0.5
done

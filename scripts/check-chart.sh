#!/usr/bin/env bash
# Checks the Helm chart (charts/sluice) without a cluster and without the network, once its
# Python tools are installed:
#   1. lints and renders it with Helm's engine (PyPI helm-python-sdk, Helm as a library) with the
#      default values and with charts/sluice/ci/production-values.yaml; checks its values schema
#      refuses bad values, and the chart's own rules (restricted security contexts, probes,
#      leader election, the migration hook, the tenant roles);
#   2. validates every rendered object, and the CRDs, against the Kubernetes schemas
#      (PyPI kubernetes-validate, strict);
#   3. applies both renderings with the real `kubectl apply` to kubesim started for the purpose
#      (with Sluice's CRDs, against which the example custom resources are applied too);
#   4. checks that the operator's ClusterRole kubesim holds equals `sluice-operator rbac`;
#   5. runs the operator with the flags and environment of the rendered Deployment against
#      kubesim, with a token of its ServiceAccount, under the rendered RBAC and admission
#      policies: it becomes ready, takes the leader Lease and reconciles an example Tenant;
#   6. checks that crates/sluice-testkit/chart-rbac.yaml, the RBAC the tests install into
#      kubesim, is the default rendering's;
#   7. runs the broker identities hook Job's command (platform.broker.identities.generate) as
#      its ServiceAccount: it creates the Secret once, keeps it on upgrade, and reads nothing.
# Called by scripts/test.sh; runs alone too. `scripts/check-chart.sh --write-rbac` only
# regenerates crates/sluice-testkit/chart-rbac.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

HELM_PYTHON_SDK_VERSION=0.2.2
KUBERNETES_VALIDATE_VERSION=1.37.0
VENV="$HOME/.cache/sluice/chart-venv"

log() { printf '== chart: %s\n' "$*"; }
fail() { printf 'FAIL chart: %s\n' "$*" >&2; exit 1; }

# --- tools ----------------------------------------------------------------------------------
venv_ready() {
  "$VENV/bin/python" - "$HELM_PYTHON_SDK_VERSION" "$KUBERNETES_VALIDATE_VERSION" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if (version("helm-python-sdk"), version("kubernetes-validate")) == tuple(sys.argv[1:3]) else 1)
EOF
}
if ! venv_ready; then
  log "installing helm-python-sdk $HELM_PYTHON_SDK_VERSION and kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "helm-python-sdk==$HELM_PYTHON_SDK_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi
if [ "${1:-}" = "--write-rbac" ]; then
  exec "$VENV/bin/python" scripts/chart-check/chart_check.py rbac crates/sluice-testkit/chart-rbac.yaml
fi
command -v kubectl >/dev/null || fail "kubectl is not on PATH (scripts/test.sh installs it)"

work="$(mktemp -d "${TMPDIR:-/tmp}/sluice-chart.XXXXXX")"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# --- 1, 2: offline ----------------------------------------------------------------------------
log "lint, render (default and production values), Kubernetes schemas, chart rules"
"$VENV/bin/python" scripts/chart-check/chart_check.py render "$work"

log "the tests' copy of the chart's RBAC (crates/sluice-testkit/chart-rbac.yaml) is current"
"$VENV/bin/python" scripts/chart-check/chart_check.py rbac "$work/chart-rbac.yaml" >/dev/null
cmp -s "$work/chart-rbac.yaml" crates/sluice-testkit/chart-rbac.yaml \
  || fail "crates/sluice-testkit/chart-rbac.yaml differs from the chart; regenerate it with: scripts/check-chart.sh --write-rbac"

# --- 3: kubesim -------------------------------------------------------------------------------
log "building kubesim and sluice-operator"
cargo build --quiet --locked -p kubesim -p sluice-operator
bin="$CARGO_TARGET_DIR/debug"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what="$2"; shift 2
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      printf 'FAIL chart: timed out waiting for %s\n' "$what" >&2
      return 1
    fi
    sleep 0.5
  done
}

# One fresh kubesim per rendering, as each would be installed into a cluster without Sluice.
start_kubesim() { # start_kubesim NAME: serves with Sluice's CRDs, KUBECONFIG points at it
  local port
  port="$(free_port)"
  export KUBECONFIG="$work/$1.kubeconfig"
  "$bin/kubesim" --port "$port" --kubeconfig "$KUBECONFIG" \
    --apply charts/sluice/crds/sluice.dev.yaml \
    --apply scripts/chart-check/servicemonitor-crd.yaml >"$work/kubesim-$1.log" 2>&1 &
  pids+=($!)
  wait_for 30 "kubesim on port $port" kubectl get namespaces \
    || { cat "$work/kubesim-$1.log" >&2; exit 1; }
}
same_operator_rules() {
  kubectl get clusterrole sluice-operator -o json >"$work/operator-clusterrole.json"
  "$VENV/bin/python" scripts/chart-check/chart_check.py same-rules \
    "$work/operator-clusterrole.json" "$work/operator-rules.yaml"
}
"$bin/sluice-operator" rbac >"$work/operator-rules.yaml"

log "kubectl apply: production values into sluice-production (existing Secrets first)"
start_kubesim production
kubectl create namespace sluice-production >/dev/null
kubectl -n sluice-production create secret generic sluice-postgres \
  --from-literal=url=postgres://sluice:secret@postgres.postgres.svc:5432/sluice >/dev/null
kubectl -n sluice-production create secret generic sluice-signing-key \
  --from-literal=key="$(head -c 48 /dev/urandom | base64 | tr -d '\n')" >/dev/null
# The broker identities as the docs make them, and TLS material (its content is not checked).
"$bin/sluice-operator" broker-bootstrap --dir "$work/broker" >/dev/null
kubectl -n sluice-production create secret generic sluice-broker-identities \
  --from-file="$work/broker/operator.seed" --from-file="$work/broker/admin.creds" \
  --from-file="$work/broker/ingest.seed" --from-file="$work/broker/ingest.pub" >/dev/null
kubectl -n sluice-production create secret generic sluice-kafka-credentials \
  --from-literal=properties='sasl.username=sluice;sasl.password=placeholder' >/dev/null
kubectl -n sluice-production create secret generic sluice-broker-ca \
  --from-literal=ca.crt=placeholder >/dev/null
kubectl -n sluice-production create secret generic sluice-broker-worker-tls --type=kubernetes.io/tls \
  --from-literal=tls.crt=placeholder --from-literal=tls.key=placeholder >/dev/null
kubectl apply -f "$work/production.yaml" >"$work/apply-production.log" \
  || { cat "$work/apply-production.log" >&2; fail "kubectl apply refused the production rendering"; }
echo "   $(wc -l <"$work/apply-production.log") objects applied"
log "production: the operator's ClusterRole equals \`sluice-operator rbac\`"
same_operator_rules

log "kubectl apply: default values into sluice-system"
start_kubesim default
kubectl create namespace sluice-system >/dev/null
kubectl apply -f "$work/default.yaml" >"$work/apply-default.log" \
  || { cat "$work/apply-default.log" >&2; fail "kubectl apply refused the default rendering"; }
echo "   $(wc -l <"$work/apply-default.log") objects applied"
log "default: the operator's ClusterRole equals \`sluice-operator rbac\`"
same_operator_rules

log "example custom resources against the CRDs"
kubectl apply -f crates/sluice-crd/tests/fixtures/tenant.yaml >/dev/null
# The tenant namespace as the operator labels what it creates: it adopts no other namespace.
kubectl create namespace sluice-acme >/dev/null
kubectl label namespace sluice-acme app.kubernetes.io/managed-by=sluice-operator \
  sluice.dev/tenant=acme >/dev/null
kubectl apply -f crates/sluice-crd/tests/fixtures/stream.yaml \
  -f crates/sluice-crd/tests/fixtures/pipeline.yaml >/dev/null
kubectl get tenants,streams,pipelines -A --no-headers | sed 's/^/   /'

# --- 5: the operator as the chart runs it -----------------------------------------------------
log "the operator with the rendered Deployment's flags and environment"
mapfile -t op_args < <("$VENV/bin/python" - "$work/default.yaml" <<'EOF'
import sys, yaml
for o in yaml.safe_load_all(open(sys.argv[1])):
    if o and o["kind"] == "Deployment" and o["metadata"]["labels"]["app.kubernetes.io/component"] == "operator":
        c = o["spec"]["template"]["spec"]["containers"][0]
        assert c["command"] == ["sluice-operator"], c["command"]
        for a in c["args"]:
            print(a)
EOF
)
metrics_port="$(free_port)"
# As in the pod: POD_NAME and POD_NAMESPACE from the downward API; the metrics address is moved
# to a free loopback port.
args=()
for a in "${op_args[@]}"; do
  case "$a" in --metrics-addr=*) args+=("--metrics-addr=127.0.0.1:$metrics_port") ;; *) args+=("$a") ;; esac
done
echo "   sluice-operator ${args[*]}"
# As in the pod: the operator's ServiceAccount token, so the rendered RBAC and admission
# policies decide what it may do.
token="$(kubectl -n sluice-system create token sluice-operator)"
sed "s|^  user: {}\$|  user:\n    token: $token|" "$KUBECONFIG" >"$work/operator.kubeconfig"
grep -q "token: $token" "$work/operator.kubeconfig" || fail "cannot write the operator's kubeconfig"
echo "   as system:serviceaccount:sluice-system:sluice-operator"
KUBECONFIG="$work/operator.kubeconfig" POD_NAME=sluice-operator-chart-check POD_NAMESPACE=sluice-system RUST_LOG=warn \
  "$bin/sluice-operator" "${args[@]}" >"$work/operator.log" 2>&1 &
pids+=($!)
ready() { python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$metrics_port/readyz', timeout=2)"; }
show_operator_log() { sed 's/^/   operator: /' "$work/operator.log" >&2; exit 1; }
wait_for 30 "the operator's /readyz" ready || show_operator_log
holder() { [ "$(kubectl -n sluice-system get lease sluice-operator -o jsonpath='{.spec.holderIdentity}')" = sluice-operator-chart-check ]; }
wait_for 30 "the operator to hold the Lease sluice-system/sluice-operator" holder || show_operator_log
quota() { kubectl -n sluice-acme get resourcequota sluice-quota; }
wait_for 30 "the operator to reconcile the example Tenant" quota || show_operator_log
echo "   ready, leader, and the Tenant acme reconciled (ResourceQuota sluice-acme/sluice-quota)"

# --- 7: the broker identities the hook Job generates ------------------------------------------
log "generated broker identities: the hook Job's command, as its ServiceAccount"
start_kubesim generated
kubectl create namespace sluice-generated >/dev/null
kubectl apply -f "$work/generated.yaml" >"$work/apply-generated.log" \
  || { cat "$work/apply-generated.log" >&2; fail "kubectl apply refused the generated rendering"; }
mapfile -t hook_args < <("$VENV/bin/python" - "$work/generated.yaml" <<'EOF'
import sys, yaml
for o in yaml.safe_load_all(open(sys.argv[1])):
    if o and o["kind"] == "Job" and o["metadata"]["labels"]["app.kubernetes.io/component"] == "broker-bootstrap":
        c = o["spec"]["template"]["spec"]["containers"][0]
        assert c["command"] == ["sluice-operator"], c["command"]
        for a in c["args"]:
            print(a)
EOF
)
echo "   sluice-operator ${hook_args[*]}"
token="$(kubectl -n sluice-generated create token sluice-broker-bootstrap)"
sed "s|^  user: {}\$|  user:\n    token: $token|" "$KUBECONFIG" >"$work/hook.kubeconfig"
grep -q "token: $token" "$work/hook.kubeconfig" || fail "cannot write the hook's kubeconfig"
first="$(KUBECONFIG="$work/hook.kubeconfig" "$bin/sluice-operator" "${hook_args[@]}")" \
  || fail "the hook Job's command failed"
echo "   $first"
case "$first" in *created*) ;; *) fail "the hook did not create the Secret: $first" ;; esac
keys="$(kubectl -n sluice-generated get secret sluice-broker-identities -o jsonpath='{.data}')"
for key in operator.seed admin.creds ingest.seed ingest.pub nats-server.conf; do
  case "$keys" in *"\"$key\""*) ;; *) fail "the generated Secret has no $key" ;; esac
done
again="$(KUBECONFIG="$work/hook.kubeconfig" "$bin/sluice-operator" "${hook_args[@]}")" \
  || fail "the hook Job's command failed on upgrade"
echo "   $again"
case "$again" in *kept*) ;; *) fail "an upgrade replaced the identities: $again" ;; esac
[ "$(kubectl -n sluice-generated get secret sluice-broker-identities -o jsonpath='{.data}')" = "$keys" ] \
  || fail "the identities changed on upgrade"
# kubectl sends no token over plain HTTP, so it asks as the hook's ServiceAccount with --as.
hook_sa=system:serviceaccount:sluice-generated:sluice-broker-bootstrap
if kubectl -n sluice-generated --as="$hook_sa" get secret sluice-broker-identities >"$work/hook-read.log" 2>&1; then
  fail "the hook's ServiceAccount can read Secrets"
fi
grep -q Forbidden "$work/hook-read.log" || { cat "$work/hook-read.log" >&2; fail "reading as the hook's ServiceAccount failed otherwise"; }
echo "   created once, kept on upgrade; the hook's ServiceAccount cannot read Secrets"

log "passed"

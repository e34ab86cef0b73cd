"""Offline checks of the Helm chart, run by scripts/check-chart.sh inside its virtualenv.

    python scripts/chart-check/chart_check.py render OUT_DIR     lint, render, validate, check policies
    python scripts/chart-check/chart_check.py same-rules A B     two PolicyRule lists (YAML/JSON) are equal
    python scripts/chart-check/chart_check.py rbac FILE          the default rendering's RBAC objects to FILE

`render` lints the chart and renders it with Helm's own engine (the helm-python-sdk package
bundles Helm as a library, so no `helm` binary and no network are needed) for each values set,
validates every rendered object against the Kubernetes OpenAPI schemas (kubernetes-validate,
strict: unknown fields are errors), checks the chart's own rules (security contexts, probes,
leader election, hooks, RBAC), and writes each set's manifests to OUT_DIR/<set>.yaml, in an
order `kubectl apply -f` accepts.

`rbac` writes what decides the rights of the chart's identities in the default rendering
(ServiceAccounts, roles, bindings and admission policies) to FILE. The committed copy,
crates/sluice-testkit/chart-rbac.yaml, is what the tests install into kubesim, so that the
operator and the API run there under exactly the chart's RBAC; scripts/check-chart.sh fails
when it is stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "sluice"
RULES_FILE = CHART / "files" / "operator-rules.yaml"

# Validated against the newest Kubernetes kubernetes-validate knows and the oldest the chart
# supports (Chart.yaml kubeVersion).
KUBERNETES_VERSIONS = ["1.37.0", "1.30.0"]

# Kinds with no schema in kubernetes-validate: checked by kubesim against a CRD instead.
CUSTOM_KINDS = {"ServiceMonitor"}

# Install order of `kubectl apply -f` (the file is applied top to bottom).
ORDER = [
    "Namespace",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "Service",
    "Job",
    "Deployment",
    "PodDisruptionBudget",
    "Ingress",
    "NetworkPolicy",
    "ServiceMonitor",
]

RELEASE = "sluice"

# What decides who may do what: the objects `rbac` writes, in this order.
RBAC_KINDS = [
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
]
RBAC_FIXTURE = ROOT / "crates" / "sluice-testkit" / "chart-rbac.yaml"


class Failures:
    """Collects failed checks, so one run reports all of them."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def check(self, ok: bool, message: str) -> None:
        if not ok:
            self.messages.append(message)


def values_sets() -> dict[str, tuple[str, dict[str, Any] | None]]:
    """The values sets to render: name -> (namespace, values)."""
    production = yaml.safe_load((CHART / "ci" / "production-values.yaml").read_text())
    return {
        "default": ("sluice-system", None),
        "production": ("sluice-production", production),
        # The broker identities generated at install by the hook Job.
        "generated": ("sluice-generated", {"platform": {"broker": {"identities": {"generate": True}}}}),
    }


def lint(values: dict[str, Any] | None, namespace: str, f: Failures, label: str) -> None:
    report = helm.lint(CHART, values, strict=True, namespace=namespace, kube_version="v1.37.0")
    for m in report.get("messages", []):
        # 1 = info (e.g. "icon is recommended"), 2 = warning, 3 = error.
        f.check(m["severity"] < 2, f"{label}: helm lint: {m['path']}: {m['error']}")
    for e in report.get("errors", []):
        f.check(False, f"{label}: helm lint: {e}")


def render(
    chart: helm.Chart, values: dict[str, Any] | None, namespace: str, release: str = RELEASE
) -> list[dict[str, Any]]:
    chart.validate_schema(values)
    rendered = chart.render(values, name=release, namespace=namespace, is_install=True)
    objects = []
    for path in sorted(rendered):
        if not path.endswith(".yaml"):
            continue  # NOTES.txt
        for doc in yaml.safe_load_all(rendered[path]):
            if doc:
                doc.setdefault("metadata", {}).setdefault("annotations", {})
                doc["metadata"]["annotations"].setdefault("sluice.dev/template", path)
                objects.append(doc)
    return objects


def source(obj: dict[str, Any]) -> str:
    return obj["metadata"]["annotations"]["sluice.dev/template"]


def strip_source(obj: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(obj))
    ann = out["metadata"]["annotations"]
    ann.pop("sluice.dev/template", None)
    if not ann:
        del out["metadata"]["annotations"]
    return out


def validate_schemas(objects: list[dict[str, Any]], f: Failures, label: str) -> int:
    checked = 0
    for obj in objects:
        if obj["kind"] in CUSTOM_KINDS:
            continue
        clean = strip_source(obj)
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(clean, version, strict=True)
                checked += 1
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                f.check(False, f"{label}: {source(obj)}: {obj['kind']}/{obj['metadata']['name']} "
                               f"is invalid for Kubernetes {version}: {path}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                f.check(False, f"{label}: {source(obj)}: {e.message}")
    return checked


def pod_specs(objects: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [
        (o, o["spec"]["template"]["spec"])
        for o in objects
        if o["kind"] in ("Deployment", "Job")
    ]


def one(objects: list[dict[str, Any]], kind: str, pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and pred(o)]
    if len(found) != 1:
        raise AssertionError(f"expected one {kind}, found {len(found)}")
    return found[0]


def by_component(component: str) -> Callable[[dict[str, Any]], bool]:
    return lambda o: o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component


def check_policies(objects: list[dict[str, Any]], f: Failures, label: str, namespace: str) -> None:
    """The chart's own rules, beyond what the Kubernetes schemas say."""
    # Restricted security contexts everywhere.
    for obj, pod in pod_specs(objects):
        name = f"{label}: {obj['kind']}/{obj['metadata']['name']}"
        psc = pod.get("securityContext", {})
        f.check(psc.get("runAsNonRoot") is True, f"{name}: pod runAsNonRoot")
        f.check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{name}: pod seccomp")
        for c in pod["containers"]:
            sc = c.get("securityContext", {})
            cname = f"{name}/{c['name']}"
            f.check(sc.get("readOnlyRootFilesystem") is True, f"{cname}: read-only root filesystem")
            f.check(sc.get("allowPrivilegeEscalation") is False, f"{cname}: no privilege escalation")
            f.check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{cname}: drops ALL capabilities")
            f.check("resources" in c and c["resources"].get("limits"), f"{cname}: has resource limits")
            f.check(not c["image"].endswith(":"), f"{cname}: image has a tag")

    # Everything namespaced lands in the release namespace.
    for o in objects:
        if "namespace" in o["metadata"]:
            f.check(o["metadata"]["namespace"] == namespace,
                    f"{label}: {o['kind']}/{o['metadata']['name']} not in {namespace}")

    # The operator: leader election, downward API, probes, metrics port.
    op = one(objects, "Deployment", by_component("operator"))
    c = op["spec"]["template"]["spec"]["containers"][0]
    args = c["args"]
    f.check(args[0] == "run", f"{label}: operator runs `sluice-operator run`")
    f.check("--leader-election" in args, f"{label}: operator elects a leader")
    f.check(f"--system-namespace={namespace}" in args, f"{label}: operator knows its namespace")
    env = {e["name"]: e for e in c["env"]}
    f.check(env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
            f"{label}: POD_NAME from the downward API")
    f.check(env.get("POD_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            == "metadata.namespace", f"{label}: POD_NAMESPACE from the downward API")
    f.check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", f"{label}: operator liveness /healthz")
    f.check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", f"{label}: operator readiness /readyz")
    f.check(any(p["containerPort"] == 8080 and p["name"] == "metrics" for p in c["ports"]),
            f"{label}: operator metrics port 8080")

    # The operator's ClusterRole is exactly the committed `sluice-operator rbac` output.
    rules = yaml.safe_load(RULES_FILE.read_text())
    role = one(objects, "ClusterRole", by_component("operator"))
    f.check(role["rules"] == rules["cluster"],
            f"{label}: the operator's ClusterRole differs from {RULES_FILE.relative_to(ROOT)}")
    ns_role = one(objects, "Role", by_component("operator"))
    f.check(ns_role["rules"] == rules["systemNamespace"] and ns_role["metadata"]["namespace"] == namespace,
            f"{label}: the operator's Role in {namespace} differs from {RULES_FILE.relative_to(ROOT)}")
    # Its writes are limited to tenant namespaces, for its ServiceAccount alone.
    policies = [o for o in objects if o["kind"] == "ValidatingAdmissionPolicy"]
    bindings = {o["spec"]["policyName"] for o in objects if o["kind"] == "ValidatingAdmissionPolicyBinding"}
    f.check(len(policies) == 2, f"{label}: two admission policies for the operator")
    sa = f"system:serviceaccount:{namespace}:{RELEASE}-operator"
    for p in policies:
        name = p["metadata"]["name"]
        f.check(name in bindings, f"{label}: admission policy {name} is bound")
        f.check(p["spec"]["failurePolicy"] == "Fail", f"{label}: admission policy {name} fails closed")
        f.check(sa in p["spec"]["matchConditions"][0]["expression"],
                f"{label}: admission policy {name} matches the operator's ServiceAccount {sa}")

    # The API: probes, and its secrets come from Secrets.
    api = one(objects, "Deployment", by_component("api"))
    c = api["spec"]["template"]["spec"]["containers"][0]
    f.check(c["args"][0] == "serve", f"{label}: API runs `sluice-api serve`")
    env = {e["name"]: e for e in c["env"]}
    for secret_env in ("SLUICE_DATABASE_URL", "SLUICE_JWT_SECRET"):
        f.check("secretKeyRef" in env.get(secret_env, {}).get("valueFrom", {}),
                f"{label}: API {secret_env} comes from a Secret")
    f.check(env.get("SLUICE_NATS_URL", {}).get("value", "").startswith("nats://"),
            f"{label}: API ingests into the platform's NATS")
    f.check(env.get("SLUICE_INGEST_REPLICAS", {}).get("value") == str(api["spec"]["replicas"]),
            f"{label}: each API replica enforces its share of the ingest rates")
    f.check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", f"{label}: API liveness /healthz")
    f.check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", f"{label}: API readiness /readyz")

    # The migration hook runs before install and upgrade.
    job = one(objects, "Job", by_component("migration"))
    ann = job["metadata"]["annotations"]
    f.check(ann.get("helm.sh/hook") == "pre-install,pre-upgrade", f"{label}: migration is a pre-install,pre-upgrade hook")
    f.check(job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"],
            f"{label}: migration runs `sluice-api migrate`")

    # The tenant roles the operator binds, by those names.
    names = {o["metadata"]["name"] for o in objects if o["kind"] == "ClusterRole"}
    for n in ("sluice-tenant-edit", "sluice-tenant-view"):
        f.check(n in names, f"{label}: ClusterRole {n}")
    edit = one(objects, "ClusterRole", lambda o: o["metadata"]["name"] == "sluice-tenant-edit")
    f.check("aggregationRule" in edit, f"{label}: sluice-tenant-edit is an aggregate")


def check_sets(out: Path) -> int:
    f = Failures()
    chart = helm.Chart.load(CHART)
    summary = []
    for label, (namespace, values) in values_sets().items():
        lint(values, namespace, f, label)
        objects = render(chart, values, namespace)
        checked = validate_schemas(objects, f, label)
        check_policies(objects, f, label, namespace)
        objects.sort(key=lambda o: (ORDER.index(o["kind"]) if o["kind"] in ORDER else len(ORDER)))
        (out / f"{label}.yaml").write_text(
            yaml.safe_dump_all([strip_source(o) for o in objects], sort_keys=False))
        kinds = sorted({o["kind"] for o in objects})
        summary.append(f"{label}: {len(objects)} objects ({', '.join(kinds)}), "
                       f"{checked} schema validations")

    # What production values turn on.
    prod = render(chart, values_sets()["production"][1], "sluice-production")
    op = one(prod, "Deployment", by_component("operator"))
    f.check(op["spec"]["replicas"] == 2, "production: two operator replicas")
    f.check(any(o["kind"] == "PodDisruptionBudget" and by_component("operator")(o) for o in prod),
            "production: the operator has a PodDisruptionBudget")
    f.check(any(o["kind"] == "Ingress" for o in prod), "production: an Ingress")
    f.check(sum(o["kind"] == "ServiceMonitor" for o in prod) == 3, "production: three ServiceMonitors")
    f.check(not any(o["kind"] == "Secret" for o in prod), "production: existing Secrets, none created")
    worker_image = [a for a in op["spec"]["template"]["spec"]["containers"][0]["args"]
                    if a.startswith("--worker-image=")]
    f.check(worker_image == ["--worker-image=registry.example.com/sluice/sluice-worker@sha256:"
                             + "0123456789abcdef" * 4], f"production: worker image by digest, got {worker_image}")
    op_args = op["spec"]["template"]["spec"]["containers"][0]["args"]
    f.check("--kafka-bootstrap-servers=kafka-0.kafka.kafka.svc:9093,kafka-1.kafka.kafka.svc:9093" in op_args
            and "--kafka-property=security.protocol=SASL_SSL" in op_args,
            f"production: the operator reaches Kafka, got {op_args}")
    op_env = {e["name"]: e for e in op["spec"]["template"]["spec"]["containers"][0]["env"]}
    f.check(op_env.get("SLUICE_KAFKA_SECRET_PROPERTIES", {}).get("valueFrom", {}).get("secretKeyRef", {})
            == {"name": "sluice-kafka-credentials", "key": "properties"},
            "production: the Kafka credentials come from a Secret")
    f.check("--kafka-namespace=kafka" in op_args and "--kafka-port=9093" in op_args,
            "production: the operator opens tenants' network policies to the Kafka brokers")
    api = one(prod, "Deployment", by_component("api"))
    api_args = api["spec"]["template"]["spec"]["containers"][0]["args"]
    f.check("--kafka-bootstrap-servers=kafka-0.kafka.kafka.svc:9093,kafka-1.kafka.kafka.svc:9093" in api_args
            and "--kafka-property=security.protocol=SASL_SSL" in api_args,
            f"production: the API ingests into Kafka, got {api_args}")
    api_env = {e["name"]: e for e in api["spec"]["template"]["spec"]["containers"][0]["env"]}
    f.check(api_env.get("SLUICE_KAFKA_SECRET_PROPERTIES", {}).get("valueFrom", {}).get("secretKeyRef", {})
            == {"name": "sluice-kafka-credentials", "key": "properties"},
            "production: the API's Kafka credentials come from a Secret")
    for component in ("operator", "api"):
        np = one(prod, "NetworkPolicy", by_component(component))
        f.check(any(p.get("port") == 9093 for rule in np["spec"]["egress"] for p in rule.get("ports", [])),
                f"production: the {component} may reach the Kafka brokers")
    default = render(chart, None, "sluice-system")
    f.check(not any(o["kind"] == "PodDisruptionBudget" and by_component("operator")(o) for o in default),
            "default: a single operator replica has no PodDisruptionBudget")
    f.check(not any(o["kind"] in ("Ingress", "ServiceMonitor") for o in default),
            "default: no Ingress, no ServiceMonitor")

    # Generated broker identities: a hook Job that may only create Secrets makes the one the
    # operator and the API mount.
    gen = render(chart, values_sets()["generated"][1], "sluice-generated")
    hook = one(gen, "Job", by_component("broker-bootstrap"))
    f.check(hook["metadata"]["annotations"].get("helm.sh/hook") == "pre-install,pre-upgrade",
            "generated: broker-bootstrap is a pre-install,pre-upgrade hook")
    hook_args = hook["spec"]["template"]["spec"]["containers"][0]["args"]
    f.check(hook_args[:2] == ["broker-bootstrap", "--secret=sluice-broker-identities"],
            f"generated: the hook Job creates the Secret sluice-broker-identities, got {hook_args}")
    hook_role = one(gen, "Role", by_component("broker-bootstrap"))
    f.check(hook_role["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}],
            f"generated: the hook may only create Secrets, got {hook_role['rules']}")
    for component in ("operator", "api"):
        d = one(gen, "Deployment", by_component(component))
        secrets = [v["secret"]["secretName"] for v in d["spec"]["template"]["spec"].get("volumes", [])
                   if "secret" in v]
        f.check("sluice-broker-identities" in secrets,
                f"generated: the {component} mounts the generated identities, got {secrets}")
    f.check(not any(by_component("broker-bootstrap")(o) for o in default + prod),
            "default and production: no broker-bootstrap hook")

    # The CRDs are valid CustomResourceDefinitions.
    crds = [d for d in yaml.safe_load_all((CHART / "crds" / "sluice.dev.yaml").read_text()) if d]
    for crd in crds:
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(crd, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                f.check(False, f"crds: {crd['metadata']['name']}: {'.'.join(map(str, e.path))}: {e.message}")

    # What must be refused.
    refusals = {
        "a misspelt key": {"operator": {"replicas": 2}},
        "two operators without leader election": {"operator": {"replicaCount": 2, "leaderElection": {"enabled": False}}},
        "no database": {"database": {"url": ""}},
        "a short signing key": {"signingKey": {"value": "too-short"}},
        "OIDC issuer without JWKS": {"api": {"oidc": {"issuer": "https://login.example.com"}}},
        "generated and existing broker identities": {
            "platform": {"broker": {"identities": {"generate": True, "existingSecret": "mine"}}}},
    }
    for what, values in refusals.items():
        try:
            render(chart, values, "sluice-system")
            f.check(False, f"the chart accepted {what}")
        except helm.HelmError:
            pass
    chart.close()

    for line in summary:
        print(f"   {line}")
    print(f"   CRDs: {len(crds)} valid CustomResourceDefinitions; {len(refusals)} bad values refused")
    for m in f.messages:
        print(f"FAIL {m}", file=sys.stderr)
    return 1 if f.messages else 0


def write_rbac(out: Path) -> int:
    chart = helm.Chart.load(CHART)
    namespace, values = values_sets()["default"]
    objects = [strip_source(o) for o in render(chart, values, namespace) if o["kind"] in RBAC_KINDS]
    chart.close()
    objects.sort(key=lambda o: RBAC_KINDS.index(o["kind"]))
    header = (
        "# The RBAC of the chart's default rendering (release sluice in sluice-system): what the\n"
        "# tests install into kubesim, so that the operator and the API run under it.\n"
        "# Generated, do not edit; regenerate with:\n"
        "#   scripts/check-chart.sh --write-rbac\n"
    )
    out.write_text(header + yaml.safe_dump_all(objects, sort_keys=False))
    print(f"   {len(objects)} RBAC objects written to {out}")
    return 0


def same_rules(a: Path, b: Path) -> int:
    granted = yaml.safe_load(a.read_text())
    wanted = yaml.safe_load(b.read_text())
    if isinstance(granted, dict):  # a whole ClusterRole
        granted = granted.get("rules", [])
    if isinstance(wanted, dict):  # `sluice-operator rbac`: the ClusterRole's rules
        wanted = wanted["cluster"]
    if granted != wanted:
        print(f"FAIL the rules differ:\n  granted: {json.dumps(granted)}\n  wanted:  {json.dumps(wanted)}",
              file=sys.stderr)
        return 1
    print(f"   {len(wanted)} rules, identical")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "render":
        out = Path(argv[2])
        out.mkdir(parents=True, exist_ok=True)
        return check_sets(out)
    if len(argv) == 3 and argv[1] == "rbac":
        return write_rbac(Path(argv[2]))
    if len(argv) == 4 and argv[1] == "same-rules":
        return same_rules(Path(argv[2]), Path(argv[3]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))

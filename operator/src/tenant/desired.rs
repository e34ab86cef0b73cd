//! What a Tenant should own, as objects (pure): its namespace (Pod Security `restricted`), a
//! ResourceQuota, a LimitRange, a default-deny NetworkPolicy with DNS and broker egress, the
//! workers' ServiceAccount (no token automount) and a RoleBinding of its owners.

use crate::config::OperatorConfig;
use serde_json::{Value, json};
use sluice_core::{egress, names, quota};
use sluice_crd::{SubjectKind, Tenant};

/// Name of the tenant's ResourceQuota.
pub const RESOURCE_QUOTA: &str = "sluice-quota";
/// Name of the tenant's LimitRange.
pub const LIMIT_RANGE: &str = "sluice-defaults";
/// Name of the tenant's default-deny NetworkPolicy.
pub const NETWORK_POLICY: &str = "sluice-default-deny";
/// Name of the workers' ServiceAccount in each tenant namespace.
pub const WORKER_SERVICE_ACCOUNT: &str = "sluice-worker";
/// Name of the RoleBinding of the tenant's owners.
pub const OWNERS_BINDING: &str = "sluice-owners";

fn labels(tenant: &str) -> Value {
    json!({
        names::LABEL_TENANT: tenant,
        names::LABEL_MANAGED_BY: names::MANAGED_BY,
    })
}

fn owner(t: &Tenant) -> Value {
    json!([{
        "apiVersion": sluice_crd::API_VERSION,
        "kind": "Tenant",
        "name": t.metadata.name,
        "uid": t.metadata.uid,
        "controller": true,
        "blockOwnerDeletion": true,
    }])
}

/// Whether a namespace with these labels is one the operator created for `tenant`: it carries
/// the operator's managed-by label and the tenant's label. Anything else is someone else's.
pub fn is_owned_namespace(
    labels: Option<&std::collections::BTreeMap<String, String>>,
    tenant: &str,
) -> bool {
    labels.is_some_and(|l| {
        l.get(names::LABEL_MANAGED_BY).map(String::as_str) == Some(names::MANAGED_BY)
            && l.get(names::LABEL_TENANT).map(String::as_str) == Some(tenant)
    })
}

/// The tenant namespace.
pub fn namespace(t: &Tenant) -> Value {
    let name = t.metadata.name.clone().unwrap_or_default();
    let mut labels = labels(&name);
    labels["pod-security.kubernetes.io/enforce"] = json!("restricted");
    labels["pod-security.kubernetes.io/enforce-version"] = json!("latest");
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": names::tenant_namespace(&name), "labels": labels, "ownerReferences": owner(t)},
    })
}

/// Everything inside the tenant namespace, in apply order. The ResourceQuota is present only
/// when the tenant has a quota Kubernetes can enforce (cpu, memory, pods).
pub fn namespaced(t: &Tenant, cfg: &OperatorConfig) -> Vec<Value> {
    let name = t.metadata.name.clone().unwrap_or_default();
    let ns = names::tenant_namespace(&name);
    let meta = |n: &str| json!({"name": n, "namespace": ns, "labels": labels(&name), "ownerReferences": owner(t)});
    let mut out = vec![];
    if let Some(hard) = quota_hard(t) {
        out.push(
            json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": meta(RESOURCE_QUOTA),
            "spec": {"hard": hard}}),
        );
    }
    out.push(json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": meta(LIMIT_RANGE),
        "spec": {"limits": [{"type": "Container",
            "defaultRequest": {"cpu": cfg.default_cpu_request, "memory": cfg.default_memory_request},
            "default": {"cpu": cfg.default_cpu_limit, "memory": cfg.default_memory_limit}}]}}));
    out.push(network_policy(t, cfg, meta(NETWORK_POLICY)));
    out.push(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(WORKER_SERVICE_ACCOUNT),
        "automountServiceAccountToken": false}));
    let subjects: Vec<Value> = t
        .spec
        .owners
        .iter()
        .map(|o| {
            let kind = match o.kind {
                SubjectKind::User => "User",
                SubjectKind::Group => "Group",
            };
            json!({"kind": kind, "apiGroup": "rbac.authorization.k8s.io", "name": o.name})
        })
        .collect();
    if !subjects.is_empty() {
        out.push(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": meta(OWNERS_BINDING),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cfg.tenant_edit_role},
            "subjects": subjects}));
    }
    out
}

fn quota_hard(t: &Tenant) -> Option<Value> {
    let q = &t.spec.quota;
    let mut hard = serde_json::Map::new();
    if let Some(cpu) = q
        .cpu
        .as_ref()
        .and_then(|c| quota::parse_cpu_millis(&c.0).ok())
    {
        hard.insert("requests.cpu".into(), json!(quota::format_cpu(cpu)));
    }
    if let Some(mem) = q
        .memory
        .as_ref()
        .and_then(|m| quota::parse_memory_bytes(&m.0).ok())
    {
        hard.insert("requests.memory".into(), json!(quota::format_memory(mem)));
    }
    if let Some(p) = q.max_parallelism {
        hard.insert("pods".into(), json!(p.max(0).to_string()));
    }
    (!hard.is_empty()).then_some(Value::Object(hard))
}

fn network_policy(t: &Tenant, cfg: &OperatorConfig, metadata: Value) -> Value {
    let mut egress = vec![
        json!({"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                       "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
               "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}),
        json!({"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": cfg.broker_namespace}}}],
               "ports": [{"protocol": "TCP", "port": cfg.broker_port}]}),
    ];
    if let Some(iso) = &t.spec.isolation {
        for rule in &iso.extra_egress {
            let ports: Vec<Value> = rule
                .ports
                .iter()
                .map(|p| json!({"protocol": format!("{:?}", p.protocol).to_uppercase(), "port": p.port}))
                .collect();
            // Validation refuses such rules; the policy never opens them either way.
            let Ok(cidr) = egress::Cidr::parse(&rule.cidr) else {
                continue;
            };
            if egress::inside_always_denied(&cidr).is_some() {
                continue;
            }
            let mut except: Vec<String> = rule.except.clone();
            except.extend(
                egress::network_policy_excepts(&cidr)
                    .iter()
                    .map(ToString::to_string),
            );
            let mut block = json!({"cidr": rule.cidr});
            if !except.is_empty() {
                block["except"] = json!(except);
            }
            let mut r = json!({"to": [{"ipBlock": block}]});
            if !ports.is_empty() {
                r["ports"] = json!(ports);
            }
            egress.push(r);
        }
    }
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": metadata,
    "spec": {
        "podSelector": {},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": cfg.system_namespace}}}],
                     "ports": [{"protocol": "TCP", "port": sluice_core::route::WORKER_METRICS_PORT}]}],
        "egress": egress,
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(yaml: &str) -> Tenant {
        let mut t: Tenant = serde_norway::from_str(yaml).unwrap();
        t.metadata.uid = Some("uid-1".into());
        t
    }

    #[test]
    fn fixture_tenant_gets_an_isolated_namespace() {
        let t = tenant(include_str!("../../tests/fixtures/tenant.yaml"));
        let ns = namespace(&t);
        assert_eq!(ns["metadata"]["name"], "sluice-acme");
        assert_eq!(
            ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
            "restricted"
        );
        assert_eq!(ns["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        let objs = namespaced(&t, &OperatorConfig::default());
        let kinds: Vec<&str> = objs.iter().map(|o| o["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "ResourceQuota",
                "LimitRange",
                "NetworkPolicy",
                "ServiceAccount",
                "RoleBinding"
            ]
        );
        let quota = &objs[0]["spec"]["hard"];
        assert_eq!(quota["requests.cpu"], "8");
        assert_eq!(quota["requests.memory"], "16Gi");
        assert_eq!(quota["pods"], "32");
        let np = &objs[2]["spec"];
        assert_eq!(np["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(
            np["egress"].as_array().unwrap().len(),
            3,
            "DNS, broker, one extra rule"
        );
        assert_eq!(objs[3]["automountServiceAccountToken"], false);
        assert_eq!(objs[4]["subjects"][0]["kind"], "Group");
        assert_eq!(objs[4]["subjects"][1]["name"], "alice@acme.example");
        assert_eq!(objs[4]["roleRef"]["name"], "sluice-tenant-edit");
        for o in &objs {
            assert_eq!(o["metadata"]["namespace"], "sluice-acme");
            assert_eq!(o["metadata"]["labels"]["sluice.dev/tenant"], "acme");
        }
    }

    #[test]
    fn extra_egress_always_excepts_link_local_and_metadata() {
        let t = tenant(
            "apiVersion: sluice.dev/v1alpha1\nkind: Tenant\nmetadata: {name: t}\nspec:\n  isolation:\n    extraEgress:\n    - {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}\n    - {cidr: 169.254.169.254/32}\n    - {cidr: 192.168.0.0/16}\n",
        );
        let objs = namespaced(&t, &OperatorConfig::default());
        let np = objs.iter().find(|o| o["kind"] == "NetworkPolicy").unwrap();
        let egress = np["spec"]["egress"].as_array().unwrap();
        assert_eq!(
            egress.len(),
            4,
            "DNS, broker, two rules: the metadata one is dropped"
        );
        assert_eq!(
            egress[2]["to"][0]["ipBlock"],
            json!({"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "169.254.0.0/16", "100.100.100.200/32"]})
        );
        assert_eq!(
            egress[3]["to"][0]["ipBlock"],
            json!({"cidr": "192.168.0.0/16"})
        );
        let owned = |pairs: &[(&str, &str)]| {
            let labels: std::collections::BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            is_owned_namespace(Some(&labels), "t")
        };
        assert!(owned(&[
            (names::LABEL_MANAGED_BY, names::MANAGED_BY),
            (names::LABEL_TENANT, "t")
        ]));
        assert!(!owned(&[(names::LABEL_TENANT, "t")]));
        assert!(!owned(&[
            (names::LABEL_MANAGED_BY, names::MANAGED_BY),
            (names::LABEL_TENANT, "u")
        ]));
        assert!(!is_owned_namespace(None, "t"));
    }

    #[test]
    fn no_enforceable_quota_means_no_resource_quota() {
        let t = tenant(
            "apiVersion: sluice.dev/v1alpha1\nkind: Tenant\nmetadata: {name: t}\nspec: {quota: {maxPipelines: 3}}\n",
        );
        let objs = namespaced(&t, &OperatorConfig::default());
        assert!(objs.iter().all(|o| o["kind"] != "ResourceQuota"));
        assert!(
            objs.iter().all(|o| o["kind"] != "RoleBinding"),
            "no owners, no binding"
        );
    }
}

//! What a Tenant should own, as objects (pure): its namespace (Pod Security `restricted`), a
//! ResourceQuota, a LimitRange, a default-deny NetworkPolicy with DNS and broker egress, the
//! workers' ServiceAccount (no token automount) and a RoleBinding of its owners.

use crate::config::OperatorConfig;
use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec,
    ServiceAccount,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sluice_core::{egress, names, quota};
use sluice_crd::{SubjectKind, Tenant};
use std::collections::BTreeMap;

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

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Everything a tenant owns, in apply order.
#[derive(Debug, Clone, PartialEq)]
pub struct Children {
    /// The tenant namespace.
    pub namespace: Namespace,
    /// Present only when the tenant has a quota Kubernetes can enforce (cpu, memory, pods).
    pub resource_quota: Option<ResourceQuota>,
    /// Default requests and limits of containers.
    pub limit_range: LimitRange,
    /// Default deny, with DNS, the broker and the tenant's extra egress.
    pub network_policy: NetworkPolicy,
    /// The workers' identity.
    pub service_account: ServiceAccount,
    /// The tenant's owners bound to the tenant role; present only when it has owners.
    pub owners_binding: Option<RoleBinding>,
}

/// The labels of everything a tenant owns.
pub fn labels(tenant: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (names::LABEL_TENANT.to_string(), tenant.to_string()),
        (
            names::LABEL_MANAGED_BY.to_string(),
            names::MANAGED_BY.to_string(),
        ),
    ])
}

/// The label selector of everything a tenant owns, in string form.
pub fn selector(tenant: &str) -> String {
    format!(
        "{}={tenant},{}={}",
        names::LABEL_TENANT,
        names::LABEL_MANAGED_BY,
        names::MANAGED_BY
    )
}

fn owner(t: &Tenant) -> OwnerReference {
    OwnerReference {
        api_version: sluice_crd::API_VERSION.into(),
        kind: "Tenant".into(),
        name: t.metadata.name.clone().unwrap_or_default(),
        uid: t.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether a namespace with these labels is one the operator created for `tenant`: it carries
/// the operator's managed-by label and the tenant's label. Anything else is someone else's.
pub fn is_owned_namespace(labels: Option<&BTreeMap<String, String>>, tenant: &str) -> bool {
    labels.is_some_and(|l| {
        l.get(names::LABEL_MANAGED_BY).map(String::as_str) == Some(names::MANAGED_BY)
            && l.get(names::LABEL_TENANT).map(String::as_str) == Some(tenant)
    })
}

/// Everything the tenant owns.
pub fn children(t: &Tenant, cfg: &OperatorConfig) -> Children {
    let name = t.metadata.name.clone().unwrap_or_default();
    let ns = names::tenant_namespace(&name);
    let meta = |n: &str| ObjectMeta {
        name: Some(n.to_string()),
        namespace: Some(ns.clone()),
        labels: Some(labels(&name)),
        owner_references: Some(vec![owner(t)]),
        ..Default::default()
    };
    Children {
        namespace: namespace(t),
        resource_quota: quota_hard(t).map(|hard| ResourceQuota {
            metadata: meta(RESOURCE_QUOTA),
            spec: Some(ResourceQuotaSpec {
                hard: Some(hard),
                ..Default::default()
            }),
            ..Default::default()
        }),
        limit_range: LimitRange {
            metadata: meta(LIMIT_RANGE),
            spec: Some(LimitRangeSpec {
                limits: vec![LimitRangeItem {
                    type_: "Container".into(),
                    default_request: Some(cpu_memory(
                        &cfg.default_cpu_request,
                        &cfg.default_memory_request,
                    )),
                    default: Some(cpu_memory(
                        &cfg.default_cpu_limit,
                        &cfg.default_memory_limit,
                    )),
                    ..Default::default()
                }],
            }),
        },
        network_policy: NetworkPolicy {
            metadata: meta(NETWORK_POLICY),
            spec: Some(network_policy(t, cfg)),
        },
        service_account: ServiceAccount {
            metadata: meta(WORKER_SERVICE_ACCOUNT),
            automount_service_account_token: Some(false),
            ..Default::default()
        },
        owners_binding: (!t.spec.owners.is_empty()).then(|| RoleBinding {
            metadata: meta(OWNERS_BINDING),
            role_ref: RoleRef {
                api_group: Some(RBAC_GROUP.into()),
                kind: "ClusterRole".into(),
                name: cfg.tenant_edit_role.clone(),
            },
            subjects: Some(t.spec.owners.iter().map(subject).collect()),
        }),
    }
}

/// The tenant namespace (Pod Security `restricted`).
pub fn namespace(t: &Tenant) -> Namespace {
    let name = t.metadata.name.clone().unwrap_or_default();
    let mut labels = labels(&name);
    labels.insert(
        "pod-security.kubernetes.io/enforce".into(),
        "restricted".into(),
    );
    labels.insert(
        "pod-security.kubernetes.io/enforce-version".into(),
        "latest".into(),
    );
    Namespace {
        metadata: ObjectMeta {
            name: Some(names::tenant_namespace(&name)),
            labels: Some(labels),
            owner_references: Some(vec![owner(t)]),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn cpu_memory(cpu: &str, memory: &str) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_string(), Quantity(cpu.to_string())),
        ("memory".to_string(), Quantity(memory.to_string())),
    ])
}

fn subject(owner: &sluice_crd::Subject) -> Subject {
    let kind = match owner.kind {
        SubjectKind::User => "User",
        SubjectKind::Group => "Group",
    };
    Subject {
        kind: kind.into(),
        api_group: Some(RBAC_GROUP.into()),
        name: owner.name.clone(),
        namespace: None,
    }
}

fn quota_hard(t: &Tenant) -> Option<BTreeMap<String, Quantity>> {
    let q = &t.spec.quota;
    let mut hard = BTreeMap::new();
    if let Some(cpu) = q
        .cpu
        .as_ref()
        .and_then(|c| quota::parse_cpu_millis(&c.0).ok())
    {
        hard.insert("requests.cpu".into(), Quantity(quota::format_cpu(cpu)));
    }
    if let Some(mem) = q
        .memory
        .as_ref()
        .and_then(|m| quota::parse_memory_bytes(&m.0).ok())
    {
        hard.insert(
            "requests.memory".into(),
            Quantity(quota::format_memory(mem)),
        );
    }
    if let Some(p) = q.max_parallelism {
        hard.insert("pods".into(), Quantity(p.max(0).to_string()));
    }
    (!hard.is_empty()).then_some(hard)
}

/// Pods of the namespace labelled `kubernetes.io/metadata.name: <namespace>`.
fn namespace_selector(namespace: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(
            "kubernetes.io/metadata.name".to_string(),
            namespace.to_string(),
        )])),
        ..Default::default()
    }
}

fn port(protocol: &str, port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol: Some(protocol.into()),
        port: Some(IntOrString::Int(port)),
        end_port: None,
    }
}

fn network_policy(t: &Tenant, cfg: &OperatorConfig) -> NetworkPolicySpec {
    let mut egress = vec![
        NetworkPolicyEgressRule {
            to: Some(vec![NetworkPolicyPeer {
                namespace_selector: Some(namespace_selector("kube-system")),
                pod_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(
                        "k8s-app".to_string(),
                        "kube-dns".to_string(),
                    )])),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ports: Some(vec![port("UDP", 53), port("TCP", 53)]),
        },
        NetworkPolicyEgressRule {
            to: Some(vec![NetworkPolicyPeer {
                namespace_selector: Some(namespace_selector(&cfg.broker_namespace)),
                ..Default::default()
            }]),
            ports: Some(vec![port("TCP", i32::from(cfg.broker_port))]),
        },
    ];
    if let Some(kafka) = &cfg.kafka {
        // Routes reading or writing Streams on Kafka.
        egress.push(NetworkPolicyEgressRule {
            to: Some(vec![NetworkPolicyPeer {
                namespace_selector: Some(namespace_selector(&kafka.namespace)),
                ..Default::default()
            }]),
            ports: Some(vec![port("TCP", i32::from(kafka.port))]),
        });
    }
    if let Some(iso) = &t.spec.isolation {
        egress.extend(iso.extra_egress.iter().filter_map(extra_egress));
    }
    NetworkPolicySpec {
        pod_selector: Some(LabelSelector::default()),
        policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
        ingress: Some(vec![NetworkPolicyIngressRule {
            from: Some(vec![NetworkPolicyPeer {
                namespace_selector: Some(namespace_selector(&cfg.system_namespace)),
                ..Default::default()
            }]),
            ports: Some(vec![port(
                "TCP",
                i32::from(sluice_core::route::WORKER_METRICS_PORT),
            )]),
        }]),
        egress: Some(egress),
    }
}

/// The egress rule of one of the tenant's `extraEgress` entries; none for a rule inside the
/// always-denied blocks (validation refuses such rules; the policy never opens them either way).
fn extra_egress(rule: &sluice_crd::EgressRule) -> Option<NetworkPolicyEgressRule> {
    let cidr = egress::Cidr::parse(&rule.cidr).ok()?;
    if egress::inside_always_denied(&cidr).is_some() {
        return None;
    }
    let mut except: Vec<String> = rule.except.clone();
    except.extend(
        egress::network_policy_excepts(&cidr)
            .iter()
            .map(ToString::to_string),
    );
    let ports: Vec<NetworkPolicyPort> = rule
        .ports
        .iter()
        .map(|p| port(&format!("{:?}", p.protocol).to_uppercase(), p.port))
        .collect();
    Some(NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: rule.cidr.clone(),
                except: (!except.is_empty()).then_some(except),
            }),
            ..Default::default()
        }]),
        ports: (!ports.is_empty()).then_some(ports),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn tenant(yaml: &str) -> Tenant {
        let mut t: Tenant = serde_norway::from_str(yaml).unwrap();
        t.metadata.uid = Some("uid-1".into());
        t
    }

    fn to_json(o: &impl serde::Serialize) -> Value {
        serde_json::to_value(o).unwrap()
    }

    #[test]
    fn fixture_tenant_gets_an_isolated_namespace() {
        let t = tenant(include_str!("../../tests/fixtures/tenant.yaml"));
        let c = children(&t, &OperatorConfig::default());
        let ns = to_json(&c.namespace);
        assert_eq!(ns["kind"], "Namespace");
        assert_eq!(ns["metadata"]["name"], "sluice-acme");
        assert_eq!(
            ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
            "restricted"
        );
        assert_eq!(ns["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        let objs: Vec<Value> = [
            to_json(&c.resource_quota.expect("a quota")),
            to_json(&c.limit_range),
            to_json(&c.network_policy),
            to_json(&c.service_account),
            to_json(&c.owners_binding.expect("owners")),
        ]
        .into();
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
    fn routes_may_reach_the_kafka_brokers_when_the_platform_has_them() {
        let t = tenant(
            "apiVersion: sluice.dev/v1alpha1\nkind: Tenant\nmetadata: {name: t}\nspec: {}\n",
        );
        let egress = |cfg: &OperatorConfig| {
            to_json(&children(&t, cfg).network_policy)["spec"]["egress"]
                .as_array()
                .unwrap()
                .clone()
        };
        assert_eq!(egress(&OperatorConfig::default()).len(), 2, "DNS, broker");
        let cfg = OperatorConfig {
            kafka: Some(crate::config::KafkaConfig {
                bootstrap_servers: "kafka-0.streaming:9093".into(),
                properties: vec![],
                worker_properties: vec![],
                namespace: "streaming".into(),
                port: 9093,
            }),
            ..Default::default()
        };
        let rules = egress(&cfg);
        assert_eq!(rules.len(), 3, "DNS, broker, Kafka");
        assert_eq!(
            rules[2],
            json!({
                "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "streaming"}}}],
                "ports": [{"protocol": "TCP", "port": 9093}]
            })
        );
    }

    #[test]
    fn extra_egress_always_excepts_link_local_and_metadata() {
        let t = tenant(
            "apiVersion: sluice.dev/v1alpha1\nkind: Tenant\nmetadata: {name: t}\nspec:\n  isolation:\n    extraEgress:\n    - {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}\n    - {cidr: 169.254.169.254/32}\n    - {cidr: 192.168.0.0/16}\n",
        );
        let np = to_json(&children(&t, &OperatorConfig::default()).network_policy);
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
            let labels: BTreeMap<String, String> = pairs
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
        let c = children(&t, &OperatorConfig::default());
        assert!(c.resource_quota.is_none());
        assert!(c.owners_binding.is_none(), "no owners, no binding");
    }
}

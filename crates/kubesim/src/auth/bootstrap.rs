//! The ClusterRoles and ClusterRoleBindings a real cluster starts with, as far as kubesim
//! needs them: `cluster-admin` for `system:masters`, and what every authenticated user may do
//! (discovery, `/version` and the health checks, and the self-reviews behind
//! `kubectl auth can-i` and `kubectl auth whoami`).

use super::rbac::{PolicyRule, RBAC_GROUP};
use super::{AUTHENTICATED, MASTERS, UNAUTHENTICATED};
use serde_json::{Value, json};

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn resource_rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: strings(verbs),
        api_groups: strings(groups),
        resources: strings(resources),
        ..Default::default()
    }
}

fn url_rule(urls: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: strings(verbs),
        non_resource_urls: strings(urls),
        ..Default::default()
    }
}

fn bootstrap_metadata(name: &str) -> Value {
    json!({
        "name": name,
        "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
    })
}

fn cluster_role(name: &str, rules: Vec<PolicyRule>) -> Value {
    json!({
        "apiVersion": format!("{RBAC_GROUP}/v1"),
        "kind": "ClusterRole",
        "metadata": bootstrap_metadata(name),
        "rules": rules,
    })
}

fn binding_to_groups(name: &str, groups: &[&str]) -> Value {
    let subjects: Vec<Value> = groups
        .iter()
        .map(|g| json!({"apiGroup": RBAC_GROUP, "kind": "Group", "name": g}))
        .collect();
    json!({
        "apiVersion": format!("{RBAC_GROUP}/v1"),
        "kind": "ClusterRoleBinding",
        "metadata": bootstrap_metadata(name),
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": name},
        "subjects": subjects,
    })
}

/// The bootstrap ClusterRoles, then their ClusterRoleBindings.
pub fn objects() -> Vec<Value> {
    let health = ["/healthz", "/livez", "/readyz", "/version", "/version/"];
    let mut discovery = strings(&[
        "/api",
        "/api/*",
        "/apis",
        "/apis/*",
        "/openapi",
        "/openapi/*",
    ]);
    discovery.extend(strings(&health));
    let discovery: Vec<&str> = discovery.iter().map(String::as_str).collect();
    vec![
        cluster_role(
            "cluster-admin",
            vec![
                resource_rule(&["*"], &["*"], &["*"]),
                url_rule(&["*"], &["*"]),
            ],
        ),
        cluster_role("system:discovery", vec![url_rule(&discovery, &["get"])]),
        cluster_role(
            "system:basic-user",
            vec![
                resource_rule(
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    &["create"],
                ),
                resource_rule(
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                    &["create"],
                ),
            ],
        ),
        cluster_role(
            "system:public-info-viewer",
            vec![url_rule(&health, &["get"])],
        ),
        binding_to_groups("cluster-admin", &[MASTERS]),
        binding_to_groups("system:discovery", &[AUTHENTICATED]),
        binding_to_groups("system:basic-user", &[AUTHENTICATED]),
        binding_to_groups(
            "system:public-info-viewer",
            &[AUTHENTICATED, UNAUTHENTICATED],
        ),
    ]
}

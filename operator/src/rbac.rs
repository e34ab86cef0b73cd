//! What the operator may do in the Kubernetes API: the rules of its ClusterRole and of its Role
//! in the system namespace (the Helm chart's copy is checked against [`rules_yaml`]).
//!
//! RBAC alone cannot say "only in the namespaces the operator created": the ClusterRole grants
//! writes of the kinds a tenant namespace holds everywhere, and the chart's
//! ValidatingAdmissionPolicies (`charts/sluice/templates/operator-admission-policy.yaml`)
//! refuse every such write by the operator outside a namespace labelled as its own, every
//! namespace it would create or change that is not a tenant namespace, and every RoleBinding
//! of a role other than the tenant roles. `docs/operator-rbac.md` explains the design.

use serde_json::{Value, json};

/// One RBAC rule: API groups, resources, verbs (and optionally resource names).
pub struct Rule {
    /// API groups.
    pub groups: &'static [&'static str],
    /// Resources (with `/subresource` where needed).
    pub resources: &'static [&'static str],
    /// Verbs.
    pub verbs: &'static [&'static str],
    /// Resource names the rule is limited to (empty: all).
    pub names: &'static [&'static str],
}

const READ_WRITE: &[&str] = &["get", "list", "watch", "create", "patch", "delete"];

/// Every permission the operator uses cluster-wide, and nothing more (its writes are further
/// limited to tenant namespaces by the chart's admission policies).
pub const RULES: &[Rule] = &[
    Rule {
        groups: &["sluice.dev"],
        resources: &["tenants", "pipelines", "streams"],
        verbs: &["get", "list", "watch", "patch", "update"],
        names: &[],
    },
    Rule {
        groups: &["sluice.dev"],
        resources: &["tenants/status", "pipelines/status", "streams/status"],
        verbs: &["get", "patch"],
        names: &[],
    },
    Rule {
        groups: &[""],
        resources: &["namespaces"],
        verbs: &["get", "list", "watch", "create", "patch"],
        names: &[],
    },
    Rule {
        groups: &[""],
        resources: &[
            "configmaps",
            "services",
            "serviceaccounts",
            "resourcequotas",
            "limitranges",
        ],
        verbs: READ_WRITE,
        names: &[],
    },
    // Route credentials: written, never read (no get, list or watch); the admission policy
    // lets the operator touch only Secrets labelled as broker credentials.
    Rule {
        groups: &[""],
        resources: &["secrets"],
        verbs: &["create", "patch", "delete"],
        names: &[],
    },
    Rule {
        groups: &["apps"],
        resources: &["deployments"],
        verbs: READ_WRITE,
        names: &[],
    },
    Rule {
        groups: &["policy"],
        resources: &["poddisruptionbudgets"],
        verbs: READ_WRITE,
        names: &[],
    },
    Rule {
        groups: &["networking.k8s.io"],
        resources: &["networkpolicies"],
        verbs: READ_WRITE,
        names: &[],
    },
    Rule {
        groups: &["rbac.authorization.k8s.io"],
        resources: &["rolebindings"],
        verbs: READ_WRITE,
        names: &[],
    },
    // Binding owners to the tenant role needs `bind` on it (the operator does not hold the
    // role's permissions itself).
    Rule {
        groups: &["rbac.authorization.k8s.io"],
        resources: &["clusterroles"],
        verbs: &["bind"],
        names: &["sluice-tenant-edit"],
    },
    Rule {
        groups: &["events.k8s.io"],
        resources: &["events"],
        verbs: &["create", "patch"],
        names: &[],
    },
];

/// What the operator may do in its own (the system) namespace only: leader election.
pub const SYSTEM_NAMESPACE_RULES: &[Rule] = &[Rule {
    groups: &["coordination.k8s.io"],
    resources: &["leases"],
    verbs: &["get", "create", "update"],
    names: &[],
}];

/// The cluster-wide rules as Kubernetes `PolicyRule` objects.
pub fn rules() -> Vec<Value> {
    policy_rules(RULES)
}

/// The system namespace's rules as Kubernetes `PolicyRule` objects.
pub fn system_namespace_rules() -> Vec<Value> {
    policy_rules(SYSTEM_NAMESPACE_RULES)
}

fn policy_rules(rules: &[Rule]) -> Vec<Value> {
    rules
        .iter()
        .map(|r| {
            let mut v = json!({"apiGroups": r.groups, "resources": r.resources, "verbs": r.verbs});
            if !r.names.is_empty() {
                v["resourceNames"] = json!(r.names);
            }
            v
        })
        .collect()
}

/// The file of the Helm chart that holds [`rules_yaml`], relative to the repository root.
pub const CHART_RULES_FILE: &str = "charts/sluice/files/operator-rules.yaml";

/// The command that regenerates [`CHART_RULES_FILE`].
pub const REGENERATE_CHART_RULES: &str =
    "cargo run -p sluice-operator -- rbac > charts/sluice/files/operator-rules.yaml";

/// The rules as YAML, as the Helm chart includes them (`sluice-operator rbac` prints this):
/// `cluster`, the `PolicyRule`s of the operator's ClusterRole, and `systemNamespace`, those of
/// its Role in the release namespace. The output is deterministic.
pub fn rules_yaml() -> String {
    let both = json!({"cluster": rules(), "systemNamespace": system_namespace_rules()});
    let body = serde_norway::to_string(&both)
        .expect("policy rules hold only strings and lists, which YAML always represents");
    format!(
        "# The operator's RBAC rules: sluice_operator::rbac::rules() (its ClusterRole) and\n\
         # system_namespace_rules() (its Role in the release namespace).\n\
         # Generated, do not edit; regenerate with:\n\
         #   {REGENERATE_CHART_RULES}\n{body}"
    )
}

/// Whether the cluster-wide rules allow `verb` on `group`/`resource` (named `name`, if given).
pub fn allows(group: &str, resource: &str, verb: &str, name: Option<&str>) -> bool {
    RULES.iter().any(|r| {
        r.groups.contains(&group)
            && r.resources.contains(&resource)
            && r.verbs.contains(&verb)
            && (r.names.is_empty() || name.is_some_and(|n| r.names.contains(&n)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operator_may_do_what_it_does_and_no_more() {
        // What the controllers do (see children.rs, pipeline/, tenant/, leader.rs).
        for (g, r, v) in [
            ("apps", "deployments", "patch"),
            ("", "configmaps", "delete"),
            ("", "namespaces", "create"),
            ("sluice.dev", "pipelines/status", "patch"),
            ("events.k8s.io", "events", "create"),
        ] {
            assert!(allows(g, r, v, None), "{g}/{r} {v}");
        }
        assert!(
            !allows("coordination.k8s.io", "leases", "update", None),
            "the Lease lives in the system namespace: a Role, not the ClusterRole"
        );
        assert_eq!(system_namespace_rules().len(), 1);
        for verb in ["get", "list", "watch", "update"] {
            assert!(
                !allows("", "secrets", verb, None),
                "workers read secrets, not the operator ({verb})"
            );
        }
        assert!(allows("", "secrets", "patch", None), "route credentials");
        assert!(
            !allows("", "namespaces", "delete", None),
            "namespaces go by garbage collection"
        );
        assert!(allows(
            "rbac.authorization.k8s.io",
            "clusterroles",
            "bind",
            Some("sluice-tenant-edit")
        ));
        assert!(!allows(
            "rbac.authorization.k8s.io",
            "clusterroles",
            "bind",
            Some("cluster-admin")
        ));
        assert_eq!(rules().len(), RULES.len());
        let parsed: Value = serde_norway::from_str(&rules_yaml()).expect("YAML");
        assert_eq!(
            parsed["cluster"],
            json!(rules()),
            "the YAML says what the rules say"
        );
        assert_eq!(parsed["systemNamespace"], json!(system_namespace_rules()));
    }
}

//! What the operator may do in the Kubernetes API: the rules of its ClusterRole (the Helm
//! chart's copy is checked against [`rules`]), and of the aggregated roles tenants' owners get.

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

/// Every permission the operator uses, and nothing more.
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
    Rule {
        groups: &["coordination.k8s.io"],
        resources: &["leases"],
        verbs: &["get", "create", "update"],
        names: &[],
    },
];

/// The rules as Kubernetes `PolicyRule` objects.
pub fn rules() -> Vec<Value> {
    RULES
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

/// The rules as a YAML list of `PolicyRule`s, as the Helm chart includes them in the operator's
/// ClusterRole (`sluice-operator rbac` prints this). The output is deterministic.
pub fn rules_yaml() -> String {
    let body = serde_norway::to_string(&rules())
        .expect("policy rules hold only strings and lists, which YAML always represents");
    format!(
        "# The operator's ClusterRole rules: sluice_operator::rbac::rules().\n\
         # Generated, do not edit; regenerate with:\n\
         #   {REGENERATE_CHART_RULES}\n{body}"
    )
}

/// Whether the rules allow `verb` on `group`/`resource` (named `name`, if given).
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
            ("coordination.k8s.io", "leases", "update"),
        ] {
            assert!(allows(g, r, v, None), "{g}/{r} {v}");
        }
        assert!(
            !allows("", "secrets", "get", None),
            "workers read secrets, not the operator"
        );
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
        let parsed: Vec<Value> = serde_norway::from_str(&rules_yaml()).expect("YAML");
        assert_eq!(parsed, rules(), "the YAML says what the rules say");
    }
}

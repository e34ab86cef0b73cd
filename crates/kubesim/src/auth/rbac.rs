//! The RBAC authorizer: Roles, ClusterRoles and their bindings, evaluated the way the real
//! server's `rbac` authorizer does (`system:masters` is let through before RBAC, as the real
//! server's privileged-group authorizer does).

use super::Identity;
use super::request_info::{RequestInfo, ResourceAttributes};
use crate::cluster::{Cluster, ListOptions};
use crate::error::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The API group of the RBAC kinds.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// One rule of a Role or ClusterRole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    /// Verbs, `*` for all.
    #[serde(default)]
    pub verbs: Vec<String>,
    /// API groups (`""` is the core group), `*` for all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    /// Resources, `resource/subresource`, `*/subresource` or `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Object names; empty for all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    /// Non-resource paths, with a trailing `*` matching any suffix.
    #[serde(
        default,
        rename = "nonResourceURLs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub non_resource_urls: Vec<String>,
}

/// The subject of a binding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Subject {
    /// `User`, `Group` or `ServiceAccount`.
    #[serde(default)]
    pub kind: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Namespace of a ServiceAccount (defaults to the binding's).
    #[serde(default)]
    pub namespace: String,
}

/// The role a binding grants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RoleRef {
    /// `Role` or `ClusterRole`.
    #[serde(default)]
    pub kind: String,
    /// Name.
    #[serde(default)]
    pub name: String,
}

/// A RoleBinding or ClusterRoleBinding, as far as authorization reads it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Binding {
    /// Name and namespace.
    #[serde(default)]
    pub metadata: BindingMeta,
    /// Subjects; `null` means none.
    #[serde(default)]
    pub subjects: Option<Vec<Subject>>,
    /// The granted role.
    #[serde(default)]
    pub role_ref: RoleRef,
}

/// The metadata of a binding that authorization reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BindingMeta {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Namespace, empty for a ClusterRoleBinding.
    #[serde(default)]
    pub namespace: String,
}

/// Whether `rule` allows `verb` on what `info` addresses (`RuleAllows`).
pub fn rule_allows(rule: &PolicyRule, info: &RequestInfo) -> bool {
    match &info.resource {
        Some(attrs) => {
            has_or_star(&rule.verbs, &info.verb)
                && has_or_star(&rule.api_groups, &attrs.group)
                && resource_matches(rule, attrs)
                && (rule.resource_names.is_empty() || rule.resource_names.contains(&attrs.name))
        }
        None => {
            has_or_star(&rule.verbs, &info.verb)
                && rule
                    .non_resource_urls
                    .iter()
                    .any(|url| non_resource_url_matches(url, &info.path))
        }
    }
}

fn has_or_star(items: &[String], want: &str) -> bool {
    items.iter().any(|i| i == "*" || i == want)
}

fn resource_matches(rule: &PolicyRule, attrs: &ResourceAttributes) -> bool {
    let combined = if attrs.subresource.is_empty() {
        attrs.resource.clone()
    } else {
        format!("{}/{}", attrs.resource, attrs.subresource)
    };
    rule.resources.iter().any(|r| {
        r == "*"
            || *r == combined
            || (!attrs.subresource.is_empty()
                && r.strip_prefix("*/") == Some(attrs.subresource.as_str()))
    })
}

/// Whether a rule's non-resource URL matches `path` (exactly, or by prefix before a `*`).
pub fn non_resource_url_matches(rule_url: &str, path: &str) -> bool {
    rule_url == "*"
        || rule_url == path
        || rule_url
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix))
}

/// Whether `subject` of a binding in `namespace` ("" for cluster bindings) is `who`.
fn applies_to(who: &Identity, subject: &Subject, namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => who.user == subject.name,
        "Group" => who.groups.contains(&subject.name),
        "ServiceAccount" => {
            let ns = if subject.namespace.is_empty() {
                namespace
            } else {
                &subject.namespace
            };
            !ns.is_empty() && who.user == super::service_account_user(ns, &subject.name)
        }
        _ => false,
    }
}

/// How a binding is described in an "allowed by" reason.
fn describe(binding: &Binding, subject: &Subject) -> String {
    let subject = match subject.kind.as_str() {
        "ServiceAccount" => {
            let ns = if subject.namespace.is_empty() {
                &binding.metadata.namespace
            } else {
                &subject.namespace
            };
            format!("ServiceAccount \"{}/{ns}\"", subject.name)
        }
        kind => format!("{kind} {:?}", subject.name),
    };
    let name = if binding.metadata.namespace.is_empty() {
        format!("ClusterRoleBinding {:?}", binding.metadata.name)
    } else {
        format!(
            "RoleBinding \"{}/{}\"",
            binding.metadata.name, binding.metadata.namespace
        )
    };
    format!(
        "{name} of {} {:?} to {subject}",
        binding.role_ref.kind, binding.role_ref.name
    )
}

/// The answer of the authorizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Why (`RBAC: allowed by ...`), or the role resolution errors met while denying.
    pub reason: String,
}

/// The rules that apply to a user, and the bindings whose role could not be found.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    /// Every rule granted by a binding the user is a subject of.
    pub rules: Vec<PolicyRule>,
    /// Resolution errors, e.g. `clusterrole.rbac.authorization.k8s.io "x" not found`.
    pub errors: Vec<String>,
}

/// Reads RBAC objects from a cluster and decides.
pub struct Authorizer<'a> {
    cluster: &'a Cluster,
}

impl<'a> Authorizer<'a> {
    /// An authorizer over `cluster`'s Roles, ClusterRoles and bindings.
    pub fn new(cluster: &'a Cluster) -> Self {
        Authorizer { cluster }
    }

    /// Whether `who` may do what `info` asks.
    pub fn authorize(&self, who: &Identity, info: &RequestInfo) -> Decision {
        if who.is_master() {
            return Decision {
                allowed: true,
                reason: String::new(),
            };
        }
        let namespace = info
            .resource
            .as_ref()
            .map(|r| r.namespace.as_str())
            .unwrap_or_default();
        let mut errors = vec![];
        for binding in self.bindings(namespace) {
            let Some(subject) = binding
                .subjects
                .iter()
                .flatten()
                .find(|s| applies_to(who, s, &binding.metadata.namespace))
            else {
                continue;
            };
            match self.role_rules(&binding) {
                Ok(rules) => {
                    if rules.iter().any(|r| rule_allows(r, info)) {
                        return Decision {
                            allowed: true,
                            reason: format!("RBAC: allowed by {}", describe(&binding, subject)),
                        };
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        Decision {
            allowed: false,
            reason: rbac_errors(&errors),
        }
    }

    /// The rules that apply to `who` in `namespace` (cluster-wide ones only when empty).
    pub fn rules_for(&self, who: &Identity, namespace: &str) -> RuleSet {
        let mut set = RuleSet::default();
        for binding in self.bindings(namespace) {
            if !binding
                .subjects
                .iter()
                .flatten()
                .any(|s| applies_to(who, s, &binding.metadata.namespace))
            {
                continue;
            }
            match self.role_rules(&binding) {
                Ok(rules) => set.rules.extend(rules),
                Err(e) => set.errors.push(e),
            }
        }
        set
    }

    /// The rules of the role a binding (in its namespace) refers to.
    pub fn role_rules(&self, binding: &Binding) -> Result<Vec<PolicyRule>, String> {
        let (plural, singular, ns) = match binding.role_ref.kind.as_str() {
            "Role" if !binding.metadata.namespace.is_empty() => {
                ("roles", "role", binding.metadata.namespace.as_str())
            }
            _ => ("clusterroles", "clusterrole", ""),
        };
        let role = self
            .cluster
            .resource_type(RBAC_GROUP, "v1", plural)
            .and_then(|rt| self.cluster.get(&rt, ns, &binding.role_ref.name).ok())
            .ok_or_else(|| {
                format!(
                    "{singular}.{RBAC_GROUP} {:?} not found",
                    binding.role_ref.name
                )
            })?;
        Ok(
            serde_json::from_value::<Option<Vec<PolicyRule>>>(role["rules"].clone())
                .ok()
                .flatten()
                .unwrap_or_default(),
        )
    }

    /// The ClusterRoleBindings, then the RoleBindings of `namespace`.
    fn bindings(&self, namespace: &str) -> Vec<Binding> {
        let mut out = self.list("clusterrolebindings", None);
        if !namespace.is_empty() {
            out.extend(self.list("rolebindings", Some(namespace)));
        }
        out
    }

    fn list(&self, plural: &str, namespace: Option<&str>) -> Vec<Binding> {
        let Some(rt) = self.cluster.resource_type(RBAC_GROUP, "v1", plural) else {
            return vec![];
        };
        self.cluster
            .list(&rt, namespace, &ListOptions::default())
            .map(|page| page.items)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|item: Value| serde_json::from_value(item).ok())
            .collect()
    }
}

/// `RBAC: <errors>` when there are resolution errors, empty otherwise.
fn rbac_errors(errors: &[String]) -> String {
    match errors {
        [] => String::new(),
        [one] => format!("RBAC: {one}"),
        many => format!("RBAC: [{}]", many.join(", ")),
    }
}

/// What the real server says when it forbids: `User "bob" cannot create resource "pipelines"
/// in API group "sluice.dev" in the namespace "acme"` (or `at the cluster scope`, or
/// `cannot get path "/x"`).
pub fn forbidden_message(user: &str, info: &RequestInfo) -> String {
    let Some(attrs) = &info.resource else {
        return format!("User {user:?} cannot {} path {:?}", info.verb, info.path);
    };
    let resource = if attrs.subresource.is_empty() {
        attrs.resource.clone()
    } else {
        format!("{}/{}", attrs.resource, attrs.subresource)
    };
    let scope = if attrs.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace {:?}", attrs.namespace)
    };
    format!(
        "User {user:?} cannot {} resource {resource:?} in API group {:?} {scope}",
        info.verb, attrs.group
    )
}

/// The `403 Forbidden` answer to a denied request; `reason` is the authorizer's (may be empty).
pub fn forbidden(user: &str, info: &RequestInfo, reason: &str) -> ApiError {
    let mut why = forbidden_message(user, info);
    if !reason.is_empty() {
        why = format!("{why}: {reason}");
    }
    match &info.resource {
        Some(a) => ApiError::forbidden_resource(&a.group, &a.resource, &a.name, &why),
        None => ApiError::forbidden_resource("", "", "", &why),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::auth::request_info::request_info;
    use std::collections::HashMap;

    /// A resource rule, for tests.
    pub(crate) fn rule(
        verbs: &[&str],
        groups: &[&str],
        resources: &[&str],
        names: &[&str],
    ) -> PolicyRule {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        PolicyRule {
            verbs: v(verbs),
            api_groups: v(groups),
            resources: v(resources),
            resource_names: v(names),
            non_resource_urls: vec![],
        }
    }

    fn info(method: &str, path: &str) -> RequestInfo {
        request_info(method, path, &HashMap::new())
    }

    #[test]
    fn rules_match_verbs_groups_resources_and_names() {
        let p = "/apis/sluice.dev/v1alpha1/namespaces/acme/pipelines";
        let r = rule(&["create"], &["sluice.dev"], &["pipelines"], &[]);
        assert!(rule_allows(&r, &info("POST", p)));
        assert!(!rule_allows(&r, &info("GET", p)));
        assert!(!rule_allows(
            &rule(&["create"], &[""], &["pipelines"], &[]),
            &info("POST", p)
        ));
        assert!(rule_allows(
            &rule(&["*"], &["*"], &["*"], &[]),
            &info("POST", p)
        ));
        let named = rule(&["get"], &[""], &["secrets"], &["s1"]);
        assert!(rule_allows(
            &named,
            &info("GET", "/api/v1/namespaces/a/secrets/s1")
        ));
        assert!(!rule_allows(
            &named,
            &info("GET", "/api/v1/namespaces/a/secrets/s2")
        ));
        assert!(!rule_allows(
            &named,
            &info("GET", "/api/v1/namespaces/a/secrets")
        ));
    }

    #[test]
    fn subresources_need_their_own_rule() {
        let scale = info("PATCH", "/apis/apps/v1/namespaces/a/deployments/d/scale");
        assert!(!rule_allows(
            &rule(&["patch"], &["apps"], &["deployments"], &[]),
            &scale
        ));
        assert!(rule_allows(
            &rule(&["patch"], &["apps"], &["deployments/scale"], &[]),
            &scale
        ));
        assert!(rule_allows(
            &rule(&["patch"], &["apps"], &["*/scale"], &[]),
            &scale
        ));
        assert!(!rule_allows(
            &rule(&["patch"], &["apps"], &["*/status"], &[]),
            &scale
        ));
        let main = info("PATCH", "/apis/apps/v1/namespaces/a/deployments/d");
        assert!(!rule_allows(
            &rule(&["patch"], &["apps"], &["*/scale"], &[]),
            &main
        ));
    }

    #[test]
    fn non_resource_urls_match_exactly_or_by_prefix() {
        let r = PolicyRule {
            verbs: vec!["get".into()],
            non_resource_urls: vec!["/version".into(), "/apis/*".into()],
            ..Default::default()
        };
        assert!(rule_allows(&r, &info("GET", "/version")));
        assert!(rule_allows(&r, &info("GET", "/apis/apps/v1")));
        assert!(!rule_allows(&r, &info("GET", "/apis")));
        assert!(!rule_allows(&r, &info("POST", "/version")));
        assert!(!rule_allows(
            &rule(&["*"], &["*"], &["*"], &[]),
            &info("GET", "/version")
        ));
    }

    #[test]
    fn forbidden_answers_are_worded_like_the_real_ones() {
        let s = forbidden(
            "bob",
            &info(
                "POST",
                "/apis/sluice.dev/v1alpha1/namespaces/sluice-acme/pipelines",
            ),
            "",
        )
        .to_status();
        assert_eq!(
            s["details"],
            serde_json::json!({"group": "sluice.dev", "kind": "pipelines"})
        );
        assert_eq!(
            (s["code"].as_u64(), s["reason"].as_str()),
            (Some(403), Some("Forbidden"))
        );
        let cases = [
            (
                "POST",
                "/apis/sluice.dev/v1alpha1/namespaces/sluice-acme/pipelines",
                "",
                "pipelines.sluice.dev is forbidden: User \"bob\" cannot create resource \"pipelines\" in API group \"sluice.dev\" in the namespace \"sluice-acme\"",
            ),
            (
                "GET",
                "/api/v1/namespaces/kube-system/secrets/x",
                "",
                "secrets \"x\" is forbidden: User \"bob\" cannot get resource \"secrets\" in API group \"\" in the namespace \"kube-system\"",
            ),
            (
                "GET",
                "/apis/rbac.authorization.k8s.io/v1/clusterroles",
                "",
                "clusterroles.rbac.authorization.k8s.io is forbidden: User \"bob\" cannot list resource \"clusterroles\" in API group \"rbac.authorization.k8s.io\" at the cluster scope",
            ),
            (
                "PUT",
                "/apis/apps/v1/namespaces/a/deployments/d/scale",
                "",
                "deployments.apps \"d\" is forbidden: User \"bob\" cannot update resource \"deployments/scale\" in API group \"apps\" in the namespace \"a\"",
            ),
            (
                "GET",
                "/metrics",
                "RBAC: clusterrole.rbac.authorization.k8s.io \"x\" not found",
                "forbidden: User \"bob\" cannot get path \"/metrics\": RBAC: clusterrole.rbac.authorization.k8s.io \"x\" not found",
            ),
        ];
        for (method, path, reason, want) in cases {
            assert_eq!(forbidden("bob", &info(method, path), reason).message, want);
        }
        let named = forbidden("bob", &info("GET", "/api/v1/namespaces/k/secrets/x"), "");
        assert_eq!(
            named.to_status()["details"],
            serde_json::json!({"kind": "secrets", "name": "x"})
        );
    }
}

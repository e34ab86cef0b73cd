//! The escalation and bind checks of RBAC writes, as the real server's RBAC storage does them:
//! a user may write a Role or ClusterRole only with every permission it grants (or the verb
//! `escalate` on it), and a RoleBinding or ClusterRoleBinding only with every permission of the
//! role it binds (or the verb `bind` on that role).

use super::Identity;
use super::rbac::{Authorizer, Binding, PolicyRule, RBAC_GROUP, non_resource_url_matches};
use super::request_info::{RequestInfo, ResourceAttributes};
use crate::error::{ApiError, ApiResult};
use serde_json::Value;
use std::collections::BTreeSet;

/// The RBAC kinds whose writes are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RbacKind {
    /// `roles`.
    Role,
    /// `clusterroles`.
    ClusterRole,
    /// `rolebindings`.
    RoleBinding,
    /// `clusterrolebindings`.
    ClusterRoleBinding,
}

impl RbacKind {
    /// The kind stored at `group/plural`, `None` for other resources.
    pub fn of(group: &str, plural: &str) -> Option<RbacKind> {
        match (group, plural) {
            (RBAC_GROUP, "roles") => Some(RbacKind::Role),
            (RBAC_GROUP, "clusterroles") => Some(RbacKind::ClusterRole),
            (RBAC_GROUP, "rolebindings") => Some(RbacKind::RoleBinding),
            (RBAC_GROUP, "clusterrolebindings") => Some(RbacKind::ClusterRoleBinding),
            _ => None,
        }
    }

    fn plural(self) -> &'static str {
        match self {
            RbacKind::Role => "roles",
            RbacKind::ClusterRole => "clusterroles",
            RbacKind::RoleBinding => "rolebindings",
            RbacKind::ClusterRoleBinding => "clusterrolebindings",
        }
    }
}

/// Whether `who` may store `obj` (the object as the write would leave it), a `kind` object in
/// `namespace` (empty for the cluster-scoped kinds).
pub fn confirm_write(
    authorizer: &Authorizer<'_>,
    who: &Identity,
    kind: RbacKind,
    namespace: &str,
    obj: &Value,
) -> ApiResult<()> {
    if who.is_master() {
        return Ok(());
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let forbidden =
        |why: String| ApiError::forbidden_resource(RBAC_GROUP, kind.plural(), name, &why);
    match kind {
        RbacKind::Role | RbacKind::ClusterRole => {
            if allowed(authorizer, who, "escalate", kind.plural(), namespace, name) {
                return Ok(());
            }
            if kind == RbacKind::ClusterRole
                && obj.get("aggregationRule").is_some_and(|a| !a.is_null())
            {
                return match uncovered(&authorizer.rules_for(who, "").rules, &full_authority()) {
                    missing if missing.is_empty() => Ok(()),
                    _ => Err(forbidden(
                        "must have cluster-admin privileges to use the aggregationRule".into(),
                    )),
                };
            }
            let rules: Vec<PolicyRule> =
                serde_json::from_value(obj["rules"].clone()).unwrap_or_default();
            confirm_held(authorizer, who, namespace, &rules).map_err(forbidden)
        }
        RbacKind::RoleBinding | RbacKind::ClusterRoleBinding => {
            let mut binding: Binding = serde_json::from_value(obj.clone())
                .map_err(|e| ApiError::bad_request(format!("invalid binding: {e}")))?;
            binding.metadata.namespace = namespace.to_string();
            let role_plural = match binding.role_ref.kind.as_str() {
                "Role" => "roles",
                _ => "clusterroles",
            };
            if allowed(
                authorizer,
                who,
                "bind",
                role_plural,
                namespace,
                &binding.role_ref.name,
            ) {
                return Ok(());
            }
            let rules = authorizer.role_rules(&binding).map_err(|_| {
                ApiError::not_found(
                    RBAC_GROUP,
                    role_plural.trim_end_matches('s'),
                    &binding.role_ref.name,
                )
            })?;
            confirm_held(authorizer, who, namespace, &rules).map_err(forbidden)
        }
    }
}

fn allowed(
    authorizer: &Authorizer<'_>,
    who: &Identity,
    verb: &str,
    plural: &str,
    namespace: &str,
    name: &str,
) -> bool {
    let info = RequestInfo {
        verb: verb.into(),
        path: String::new(),
        resource: Some(ResourceAttributes {
            namespace: namespace.into(),
            group: RBAC_GROUP.into(),
            resource: plural.into(),
            name: name.into(),
            ..Default::default()
        }),
    };
    authorizer.authorize(who, &info).allowed
}

/// `Ok` when `who` holds every one of `rules` in `namespace`; otherwise the real server's
/// message naming what is missing.
fn confirm_held(
    authorizer: &Authorizer<'_>,
    who: &Identity,
    namespace: &str,
    rules: &[PolicyRule],
) -> Result<(), String> {
    let held = authorizer.rules_for(who, namespace);
    let missing = uncovered(&held.rules, rules);
    if missing.is_empty() {
        return Ok(());
    }
    let lines: BTreeSet<String> = compact(missing).iter().map(compact_string).collect();
    let mut msg = format!(
        "user {:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        who.user,
        go_quoted(&who.groups),
        lines.into_iter().collect::<Vec<_>>().join("\n")
    );
    if !held.errors.is_empty() {
        msg.push_str(&format!("; resolution errors: [{}]", held.errors.join(" ")));
    }
    Err(msg)
}

/// `*` on everything and on every non-resource path.
fn full_authority() -> Vec<PolicyRule> {
    let star = || vec!["*".to_string()];
    vec![
        PolicyRule {
            verbs: star(),
            api_groups: star(),
            resources: star(),
            ..Default::default()
        },
        PolicyRule {
            verbs: star(),
            non_resource_urls: star(),
            ..Default::default()
        },
    ]
}

/// The single permissions of `wanted` that no rule of `owner` covers (`Covers`).
pub fn uncovered(owner: &[PolicyRule], wanted: &[PolicyRule]) -> Vec<PolicyRule> {
    wanted
        .iter()
        .flat_map(atoms)
        .filter(|atom| !owner.iter().any(|o| covers(o, atom)))
        .collect()
}

/// Breaks a rule into rules of one verb and one resource (and one name) or one path.
fn atoms(rule: &PolicyRule) -> Vec<PolicyRule> {
    let one = |s: &String| vec![s.clone()];
    let mut out = vec![];
    for verb in &rule.verbs {
        for url in &rule.non_resource_urls {
            out.push(PolicyRule {
                verbs: one(verb),
                non_resource_urls: one(url),
                ..Default::default()
            });
        }
        for group in &rule.api_groups {
            for resource in &rule.resources {
                let base = PolicyRule {
                    verbs: one(verb),
                    api_groups: one(group),
                    resources: one(resource),
                    ..Default::default()
                };
                if rule.resource_names.is_empty() {
                    out.push(base);
                } else {
                    out.extend(rule.resource_names.iter().map(|n| PolicyRule {
                        resource_names: one(n),
                        ..base.clone()
                    }));
                }
            }
        }
    }
    out
}

/// Whether `owner` grants everything `atom` (one verb, one resource or path) does.
fn covers(owner: &PolicyRule, atom: &PolicyRule) -> bool {
    let has = |items: &[String], want: &[String]| {
        items.iter().any(|i| i == "*") || want.iter().all(|w| items.contains(w))
    };
    if !has(&owner.verbs, &atom.verbs) {
        return false;
    }
    if !atom.non_resource_urls.is_empty() {
        return atom.non_resource_urls.iter().all(|u| {
            owner
                .non_resource_urls
                .iter()
                .any(|o| non_resource_url_matches(o, u))
        });
    }
    has(&owner.api_groups, &atom.api_groups)
        && atom.resources.iter().all(|r| {
            owner.resources.iter().any(|o| o == "*" || o == r)
                || r.split_once('/')
                    .is_some_and(|(_, sub)| owner.resources.contains(&format!("*/{sub}")))
        })
        && (owner.resource_names.is_empty()
            || (!atom.resource_names.is_empty()
                && atom
                    .resource_names
                    .iter()
                    .all(|n| owner.resource_names.contains(n))))
}

/// Merges the verbs of plain resource atoms that name the same group and resource.
fn compact(atoms: Vec<PolicyRule>) -> Vec<PolicyRule> {
    let mut out: Vec<PolicyRule> = vec![];
    for atom in atoms {
        let simple = atom.resource_names.is_empty() && atom.non_resource_urls.is_empty();
        let same = out.iter_mut().find(|r| {
            simple
                && r.resource_names.is_empty()
                && r.non_resource_urls.is_empty()
                && r.api_groups == atom.api_groups
                && r.resources == atom.resources
        });
        match same {
            Some(r) => {
                for v in atom.verbs {
                    if !r.verbs.contains(&v) {
                        r.verbs.push(v);
                    }
                }
            }
            None => out.push(atom),
        }
    }
    out
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_quoted(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

/// A rule as the real server prints it in escalation errors (`CompactString`):
/// `{APIGroups:[""], Resources:["secrets"], Verbs:["get" "list"]}`.
pub fn compact_string(rule: &PolicyRule) -> String {
    let parts: Vec<String> = [
        ("APIGroups", &rule.api_groups),
        ("Resources", &rule.resources),
        ("NonResourceURLs", &rule.non_resource_urls),
        ("ResourceNames", &rule.resource_names),
        ("Verbs", &rule.verbs),
    ]
    .into_iter()
    .filter(|(_, items)| !items.is_empty())
    .map(|(name, items)| format!("{name}:{}", go_quoted(items)))
    .collect();
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::rbac::tests::rule;

    #[test]
    fn owners_cover_what_they_hold() {
        let owner = vec![
            rule(&["get", "list"], &[""], &["configmaps"], &[]),
            rule(&["*"], &["apps"], &["*"], &[]),
            rule(&["get"], &[""], &["secrets"], &["s1"]),
            rule(&["patch"], &[""], &["*/status"], &[]),
        ];
        assert!(uncovered(&owner, &[rule(&["get"], &[""], &["configmaps"], &[])]).is_empty());
        assert!(
            uncovered(
                &owner,
                &[rule(&["delete"], &["apps"], &["deployments/scale"], &[])]
            )
            .is_empty()
        );
        assert!(uncovered(&owner, &[rule(&["get"], &[""], &["secrets"], &["s1"])]).is_empty());
        assert!(
            uncovered(
                &owner,
                &[rule(&["patch"], &[""], &["services/status"], &[])]
            )
            .is_empty()
        );
        let missing = uncovered(
            &owner,
            &[
                rule(&["get", "delete"], &[""], &["configmaps", "secrets"], &[]),
                rule(&["get"], &[""], &["secrets"], &["s2"]),
            ],
        );
        let lines: Vec<String> = compact(missing).iter().map(compact_string).collect();
        assert_eq!(
            lines,
            vec![
                r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get" "delete"]}"#,
                r#"{APIGroups:[""], Resources:["configmaps"], Verbs:["delete"]}"#,
                r#"{APIGroups:[""], Resources:["secrets"], ResourceNames:["s2"], Verbs:["get"]}"#,
            ]
        );
    }

    #[test]
    fn non_resource_urls_are_covered_by_prefix() {
        let owner = vec![PolicyRule {
            verbs: vec!["get".into()],
            non_resource_urls: vec!["/apis/*".into()],
            ..Default::default()
        }];
        let wanted = |url: &str| PolicyRule {
            verbs: vec!["get".into()],
            non_resource_urls: vec![url.into()],
            ..Default::default()
        };
        assert!(uncovered(&owner, &[wanted("/apis/apps")]).is_empty());
        assert_eq!(uncovered(&owner, &[wanted("/version")]).len(), 1);
        assert_eq!(
            compact_string(&wanted("/version")),
            r#"{NonResourceURLs:["/version"], Verbs:["get"]}"#
        );
    }
}

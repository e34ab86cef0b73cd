//! Impersonation: `Impersonate-User`, `Impersonate-Group` and `Impersonate-Uid` (`kubectl --as`,
//! `--as-group`, `--as-uid`), allowed when the requester may `impersonate` each of them, as the
//! real server's impersonation filter checks.

use super::rbac::{Authorizer, forbidden};
use super::request_info::{RequestInfo, ResourceAttributes};
use super::{AUTHENTICATED, Identity, UNAUTHENTICATED, parse_service_account_user};
use crate::error::{ApiError, ApiResult};
use http::HeaderMap;

/// The user of anonymous requests, who does not get `system:authenticated`.
const ANONYMOUS: &str = "system:anonymous";

/// What the impersonation headers of a request ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Impersonation {
    /// `Impersonate-User`.
    pub user: Option<String>,
    /// `Impersonate-Group`, in order.
    pub groups: Vec<String>,
    /// `Impersonate-Uid`.
    pub uid: Option<String>,
}

impl Impersonation {
    /// Reads the headers; `None` when the request impersonates nobody.
    pub fn from_headers(headers: &HeaderMap) -> ApiResult<Option<Impersonation>> {
        let values = |name: &str| -> Vec<String> {
            headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(String::from)
                .collect()
        };
        let users = values("impersonate-user");
        if users.len() > 1 {
            return Err(ApiError::bad_request(
                "only one Impersonate-User header may be given",
            ));
        }
        let asked = Impersonation {
            user: users.into_iter().next(),
            groups: values("impersonate-group"),
            uid: values("impersonate-uid").into_iter().next(),
        };
        if asked == Impersonation::default() {
            return Ok(None);
        }
        if asked.user.is_none() {
            return Err(ApiError::bad_request(
                "requested impersonation of groups or a uid without impersonating a user",
            ));
        }
        Ok(Some(asked))
    }

    /// The identity asked for: the given groups (a ServiceAccount's own groups when none are
    /// given), plus `system:authenticated` unless already given or anonymous.
    pub fn identity(&self) -> Identity {
        let user = self.user.clone().unwrap_or_default();
        let mut groups = self.groups.clone();
        if groups.is_empty()
            && let Some((ns, _)) = parse_service_account_user(&user)
        {
            groups = super::service_account_groups(ns);
        }
        let marked = groups
            .iter()
            .any(|g| g == AUTHENTICATED || g == UNAUTHENTICATED);
        if user != ANONYMOUS && !marked {
            groups.push(AUTHENTICATED.into());
        }
        Identity {
            user,
            uid: self.uid.clone(),
            groups,
        }
    }

    /// The authorization checks impersonating needs, each a verb `impersonate` on a resource.
    pub fn checks(&self, path: &str) -> Vec<RequestInfo> {
        let check = |group: &str, resource: &str, namespace: &str, name: &str| RequestInfo {
            verb: "impersonate".into(),
            path: path.to_string(),
            resource: Some(ResourceAttributes {
                namespace: namespace.into(),
                group: group.into(),
                resource: resource.into(),
                name: name.into(),
                ..Default::default()
            }),
        };
        let mut out = vec![];
        if let Some(user) = &self.user {
            out.push(match parse_service_account_user(user) {
                Some((ns, name)) => check("", "serviceaccounts", ns, name),
                None => check("", "users", "", user),
            });
        }
        out.extend(self.groups.iter().map(|g| check("", "groups", "", g)));
        if let Some(uid) = &self.uid {
            out.push(check("authentication.k8s.io", "uids", "", uid));
        }
        out
    }
}

/// The identity a request runs as: `requester`, or whom it impersonates when allowed to.
pub fn impersonate(
    authorizer: &Authorizer<'_>,
    requester: Identity,
    headers: &HeaderMap,
    path: &str,
) -> ApiResult<Identity> {
    let Some(asked) = Impersonation::from_headers(headers)? else {
        return Ok(requester);
    };
    for check in asked.checks(path) {
        let decision = authorizer.authorize(&requester, &check);
        if !decision.allowed {
            return Err(forbidden(&requester.user, &check, &decision.reason));
        }
    }
    Ok(asked.identity())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(user: &str, groups: &[&str]) -> Impersonation {
        Impersonation {
            user: Some(user.into()),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            uid: None,
        }
    }

    #[test]
    fn impersonated_identities_get_the_default_groups() {
        assert_eq!(asked("bob", &[]).identity().groups, vec![AUTHENTICATED]);
        assert_eq!(
            asked("bob", &["dev"]).identity().groups,
            vec!["dev", AUTHENTICATED]
        );
        assert_eq!(
            asked("system:serviceaccount:acme:robot", &[])
                .identity()
                .groups,
            vec![
                "system:serviceaccounts",
                "system:serviceaccounts:acme",
                AUTHENTICATED
            ]
        );
        assert_eq!(
            asked(ANONYMOUS, &[UNAUTHENTICATED]).identity().groups,
            vec![UNAUTHENTICATED]
        );
    }

    #[test]
    fn each_impersonated_part_is_checked() {
        let mut a = asked("system:serviceaccount:acme:robot", &["dev"]);
        a.uid = Some("u1".into());
        let checks = a.checks("/api");
        let described: Vec<(String, String, String, String)> = checks
            .iter()
            .map(|c| {
                let r = c.resource.clone().unwrap();
                (r.group, r.resource, r.namespace, r.name)
            })
            .collect();
        let s = |a: &str, b: &str, c: &str, d: &str| {
            (a.to_string(), b.to_string(), c.to_string(), d.to_string())
        };
        assert_eq!(
            described,
            vec![
                s("", "serviceaccounts", "acme", "robot"),
                s("", "groups", "", "dev"),
                s("authentication.k8s.io", "uids", "", "u1"),
            ]
        );
        assert!(checks.iter().all(|c| c.verb == "impersonate"));
    }
}

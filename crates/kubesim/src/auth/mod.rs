//! Who is asking, and whether they may: authentication, impersonation and RBAC authorization,
//! as the real API server does them.
//!
//! - `authn.rs`: bearer tokens (static user tokens and the ServiceAccount tokens this server
//!   issues through the TokenRequest subresource) become an [`Identity`];
//! - `request_info.rs`: a request becomes the attributes authorization decides on (verb,
//!   group, resource, subresource, namespace, name, or a non-resource path);
//! - `escalation.rs`: the escalate and bind checks of RBAC writes;
//! - `impersonate.rs`: the `Impersonate-*` headers (`kubectl --as`);
//! - `rbac.rs`: the RBAC authorizer and the real server's Forbidden wording;
//! - `review.rs`: the access, rules, self-subject and token reviews;
//! - `bootstrap.rs`: the default ClusterRoles and bindings every cluster starts with;
//! - `wire.rs`: the protobuf bodies of TokenRequests and reviews.
//!
//! # Identities
//!
//! A request with `Authorization: Bearer <token>` runs as the token's user:
//!
//! - static tokens come from [`AuthConfig::tokens`] (the `--token-auth-file` flag of the
//!   `kubesim` binary), a CSV file like the real server's: `token,user,uid,"group1,group2"`;
//! - ServiceAccount tokens are issued by `POST
//!   /api/v1/namespaces/{ns}/serviceaccounts/{name}/token` (a `authentication.k8s.io/v1`
//!   TokenRequest, as `kubectl create token` sends). Their user is
//!   `system:serviceaccount:<ns>:<name>`, with the groups `system:serviceaccounts` and
//!   `system:serviceaccounts:<ns>`. They live in memory, expire after `expirationSeconds`
//!   (default one hour), and stop working when the ServiceAccount is deleted.
//!
//! Every authenticated user also has the group `system:authenticated`. A token the server does
//! not know is answered `401 Unauthorized`. A request without a token runs as the administrator
//! `kubesim-admin` (group `system:masters`), unless [`AuthConfig::require_auth`] (the
//! `--require-auth` flag) is set: then it is `401 Unauthorized` too.
//!
//! kube-rs sends a kubeconfig's token over plain HTTP ([`crate::Server::kubeconfig_with_token`]
//! writes such a kubeconfig), but kubectl does not: client-go uses a kubeconfig's credentials
//! only over TLS. So kubectl always runs as the administrator here, and tries other identities
//! with `--as`; under `--require-auth` kubectl gets `401` ("You must be logged in").
//!
//! # Authorization
//!
//! Every request is authorized as the real server's RBAC authorizer does it, from the
//! Roles, ClusterRoles (aggregated ones included), RoleBindings and ClusterRoleBindings stored
//! in the cluster; members of `system:masters` may do anything. The cluster starts with the
//! real bootstrap roles `cluster-admin` (bound to `system:masters`), `system:discovery`,
//! `system:basic-user` and `system:public-info-viewer` (bound to `system:authenticated`), so
//! every authenticated user may read discovery, `/version`, `/openapi` and the health checks.
//! A denied request is answered `403 Forbidden`, worded as the real server words it.
//!
//! Writing RBAC objects is checked as the real server checks it: creating or updating a Role
//! or ClusterRole needs every permission it grants (in its namespace), or the verb `escalate`
//! on it; creating or updating a RoleBinding or ClusterRoleBinding needs every permission of
//! the role it refers to, or the verb `bind` on that role (`resourceNames` count). A ClusterRole
//! with an `aggregationRule` needs full authority (`*` on everything).
//!
//! The review APIs answer from the same authorizer: `selfsubjectaccessreviews`,
//! `subjectaccessreviews`, `localsubjectaccessreviews` and `selfsubjectrulesreviews`
//! (`authorization.k8s.io/v1`, so `kubectl auth can-i` and `kubectl auth can-i --list` work),
//! `selfsubjectreviews` (`kubectl auth whoami`) and `tokenreviews` (`authentication.k8s.io/v1`).
//!
//! # Impersonation
//!
//! `Impersonate-User`, `Impersonate-Group` (repeatable) and `Impersonate-Uid` (`kubectl --as`,
//! `--as-group`, `--as-uid`) make a request run as someone else when the requester may
//! `impersonate` the user (`users`, or `serviceaccounts` for a ServiceAccount user), each group
//! (`groups`) and the uid (`uids` in `authentication.k8s.io`). The impersonated user has the
//! given groups plus `system:authenticated` (a ServiceAccount without given groups has its own).
//! The administrator may impersonate anyone, so `kubectl --as=bob` tries things as `bob`.

mod authn;
pub mod bootstrap;
pub mod escalation;
pub mod impersonate;
pub mod rbac;
pub mod request_info;
pub mod review;
mod wire;

pub use authn::{
    AuthConfig, Authenticator, StaticToken, TokenFileError, parse_token_file, token_request,
};
pub use wire::decode as decode_protobuf;

/// The group whose members may do anything (the real server's privileged group).
pub const MASTERS: &str = "system:masters";
/// The group every authenticated user belongs to.
pub const AUTHENTICATED: &str = "system:authenticated";
/// The group of requests without credentials.
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
/// The user of requests without a token when authentication is not required.
pub const ADMIN_USER: &str = "kubesim-admin";
/// The prefix of ServiceAccount user names.
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// Who a request runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User name, e.g. `bob` or `system:serviceaccount:ns:name`.
    pub user: String,
    /// User uid, when the authenticator knows one.
    pub uid: Option<String>,
    /// Groups, e.g. `system:authenticated`.
    pub groups: Vec<String>,
}

impl Identity {
    /// The administrator that requests without a token run as by default.
    pub fn admin() -> Self {
        Identity {
            user: ADMIN_USER.into(),
            uid: None,
            groups: vec![MASTERS.into(), AUTHENTICATED.into()],
        }
    }

    /// The identity of a ServiceAccount's tokens.
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Identity {
            user: service_account_user(namespace, name),
            uid: None,
            groups: service_account_groups(namespace),
        }
    }

    /// Whether the identity belongs to `system:masters`, which every check lets through.
    pub fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == MASTERS)
    }
}

/// `system:serviceaccount:<ns>:<name>`.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}")
}

/// The groups of a ServiceAccount in `namespace`, `system:authenticated` included.
pub fn service_account_groups(namespace: &str) -> Vec<String> {
    vec![
        "system:serviceaccounts".into(),
        format!("system:serviceaccounts:{namespace}"),
        AUTHENTICATED.into(),
    ]
}

/// The namespace and name of a ServiceAccount user name, `None` for other users.
pub fn parse_service_account_user(user: &str) -> Option<(&str, &str)> {
    let rest = user.strip_prefix(SERVICE_ACCOUNT_PREFIX)?;
    let (ns, name) = rest.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some((ns, name))
}

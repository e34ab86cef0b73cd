//! Authentication, impersonation and RBAC authorization over HTTP, checked against what a real
//! kube-apiserver answers.

use kubesim::auth::{AuthConfig, parse_token_file};
use kubesim::{Cluster, Server, ServerConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Static tokens of the test users.
const TOKENS: &str = "admin-token,root,,system:masters\n\
                      alice-token,alice,alice-uid,\"dev,ops\"\n\
                      bob-token,bob,,\n";
const ADMIN: &str = "admin-token";

struct Sim {
    server: Server,
    http: reqwest::Client,
}

/// One request: method, path, optional bearer token, extra headers, optional JSON body.
struct Call<'a> {
    method: Method,
    path: &'a str,
    token: Option<&'a str>,
    headers: Vec<(&'a str, &'a str)>,
    body: Option<Value>,
}

impl<'a> Call<'a> {
    fn new(method: Method, path: &'a str) -> Self {
        Call {
            method,
            path,
            token: None,
            headers: vec![],
            body: None,
        }
    }

    fn token(mut self, token: &'a str) -> Self {
        self.token = Some(token);
        self
    }

    fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.headers.push((name, value));
        self
    }

    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }
}

impl Sim {
    async fn start(require_auth: bool) -> Sim {
        let server = Server::start_with(
            Cluster::new(),
            ServerConfig {
                auth: AuthConfig {
                    tokens: parse_token_file(TOKENS).expect("token file"),
                    require_auth,
                },
                ..Default::default()
            },
        )
        .await
        .expect("server starts");
        Sim {
            server,
            http: reqwest::Client::new(),
        }
    }

    async fn call(&self, call: Call<'_>) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(call.method, format!("{}{}", self.server.url(), call.path));
        if let Some(t) = call.token {
            req = req.bearer_auth(t);
        }
        for (k, v) in call.headers {
            req = req.header(k, v);
        }
        if let Some(b) = call.body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    /// Creates an object as the administrator.
    async fn admin_create(&self, path: &str, obj: Value) -> Value {
        let (status, body) = self
            .call(Call::new(Method::POST, path).token(ADMIN).body(obj))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    /// Issues a token for a ServiceAccount (created first) as the administrator.
    async fn service_account_token(&self, ns: &str, name: &str) -> String {
        self.admin_create(
            &format!("/api/v1/namespaces/{ns}/serviceaccounts"),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}),
        )
        .await;
        let (status, answer) = self
            .call(
                Call::new(
                    Method::POST,
                    &format!("/api/v1/namespaces/{ns}/serviceaccounts/{name}/token"),
                )
                .token(ADMIN)
                .body(
                    json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                              "spec": {"audiences": ["api"], "expirationSeconds": 1200}}),
                ),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        assert_eq!(answer["kind"], "TokenRequest");
        assert_eq!(answer["spec"]["expirationSeconds"], 1200);
        assert!(
            answer["status"]["expirationTimestamp"].is_string(),
            "{answer}"
        );
        answer["status"]["token"]
            .as_str()
            .expect("a token")
            .to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Authentication.

#[tokio::test]
async fn require_auth_refuses_missing_and_unknown_tokens() -> TestResult {
    let sim = Sim::start(true).await;
    let (status, body) = sim.call(Call::new(Method::GET, "/api/v1/namespaces")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
    );
    let (status, _) = sim
        .call(Call::new(Method::GET, "/api/v1/namespaces").token("nope"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = sim
        .call(Call::new(Method::GET, "/version").token("alice-token"))
        .await;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn without_require_auth_no_token_is_the_administrator() -> TestResult {
    let sim = Sim::start(false).await;
    let (status, _) = sim
        .call(Call::new(
            Method::GET,
            "/api/v1/namespaces/kube-system/secrets",
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = sim
        .call(Call::new(Method::GET, "/api/v1/namespaces").token("nope"))
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "an unknown token is never the admin"
    );
    Ok(())
}

#[tokio::test]
async fn service_account_tokens_die_with_their_service_account() -> TestResult {
    let sim = Sim::start(true).await;
    let token = sim.service_account_token("default", "robot").await;
    let (status, _) = sim
        .call(Call::new(Method::GET, "/version").token(&token))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = sim
        .call(
            Call::new(
                Method::POST,
                "/api/v1/namespaces/default/serviceaccounts/ghost/token",
            )
            .token("alice-token")
            .body(json!({"spec": {}})),
        )
        .await;
    assert!(
        status == StatusCode::NOT_FOUND || status == StatusCode::FORBIDDEN,
        "{status} {body}"
    );
    let (status, _) = sim
        .call(
            Call::new(
                Method::DELETE,
                "/api/v1/namespaces/default/serviceaccounts/robot",
            )
            .token(ADMIN),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = sim
        .call(Call::new(Method::GET, "/version").token(&token))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Authorization.

const RBAC: &str = "/apis/rbac.authorization.k8s.io/v1";

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

impl Sim {
    async fn namespace(&self, name: &str) {
        self.admin_create(
            "/api/v1/namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        )
        .await;
    }

    async fn role(&self, ns: &str, name: &str, rules: Value) {
        self.admin_create(
            &format!("{RBAC}/namespaces/{ns}/roles"),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                   "metadata": {"name": name}, "rules": rules}),
        )
        .await;
    }

    async fn cluster_role(&self, name: &str, rules: Value) {
        self.admin_create(
            &format!("{RBAC}/clusterroles"),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                   "metadata": {"name": name}, "rules": rules}),
        )
        .await;
    }

    /// Binds `role_kind/role` to `subject` in `ns` (a ClusterRoleBinding when `ns` is empty).
    async fn bind(&self, ns: &str, name: &str, role_kind: &str, role: &str, subject: Value) {
        let (path, kind) = if ns.is_empty() {
            (format!("{RBAC}/clusterrolebindings"), "ClusterRoleBinding")
        } else {
            (
                format!("{RBAC}/namespaces/{ns}/rolebindings"),
                "RoleBinding",
            )
        };
        self.admin_create(
            &path,
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
                   "metadata": {"name": name},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
                   "subjects": [subject]}),
        )
        .await;
    }

    async fn status_as(&self, token: &str, method: Method, path: &str) -> (StatusCode, Value) {
        self.call(Call::new(method, path).token(token)).await
    }
}

fn user(name: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name})
}

#[tokio::test]
async fn a_user_without_bindings_sees_discovery_and_nothing_else() -> TestResult {
    let sim = Sim::start(true).await;
    for path in [
        "/version",
        "/api",
        "/apis",
        "/api/v1",
        "/apis/apps/v1",
        "/openapi/v3",
        "/healthz",
    ] {
        let (status, body) = sim.status_as("bob-token", Method::GET, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let (status, body) = sim
        .status_as(
            "bob-token",
            Method::GET,
            "/api/v1/namespaces/kube-system/secrets",
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "secrets is forbidden: User \"bob\" cannot list resource \"secrets\" in API group \"\" in the namespace \"kube-system\"",
               "reason": "Forbidden", "details": {"kind": "secrets"}, "code": 403})
    );
    let (status, body) = sim
        .status_as("bob-token", Method::DELETE, "/api/v1/namespaces/default")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body["message"],
        "namespaces \"default\" is forbidden: User \"bob\" cannot delete resource \"namespaces\" in API group \"\" in the namespace \"default\""
    );
    let (status, body) = sim.status_as("bob-token", Method::GET, "/metrics").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body["message"],
        "forbidden: User \"bob\" cannot get path \"/metrics\""
    );
    Ok(())
}

#[tokio::test]
async fn a_role_binding_grants_in_its_namespace_only() -> TestResult {
    let sim = Sim::start(true).await;
    sim.namespace("acme").await;
    sim.namespace("other").await;
    sim.role(
        "acme",
        "cm-reader",
        json!([rule(&[""], &["configmaps"], &["get", "list"])]),
    )
    .await;
    sim.bind("acme", "bob-reads", "Role", "cm-reader", user("bob"))
        .await;
    let (status, _) = sim
        .status_as(
            "bob-token",
            Method::GET,
            "/api/v1/namespaces/acme/configmaps",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = sim
        .status_as(
            "bob-token",
            Method::GET,
            "/api/v1/namespaces/other/configmaps",
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = sim
        .status_as("bob-token", Method::GET, "/api/v1/configmaps")
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "all namespaces is the cluster scope"
    );
    let (status, body) = sim
        .call(
            Call::new(Method::POST, "/api/v1/namespaces/acme/configmaps")
                .token("bob-token")
                .body(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // A ClusterRole bound by a RoleBinding also grants in that namespace only.
    sim.cluster_role(
        "secret-reader",
        json!([rule(&[""], &["secrets"], &["list"])]),
    )
    .await;
    sim.bind(
        "acme",
        "bob-secrets",
        "ClusterRole",
        "secret-reader",
        user("bob"),
    )
    .await;
    let (status, _) = sim
        .status_as("bob-token", Method::GET, "/api/v1/namespaces/acme/secrets")
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = sim
        .status_as("bob-token", Method::GET, "/api/v1/namespaces/other/secrets")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    Ok(())
}

#[tokio::test]
async fn groups_service_accounts_and_resource_names() -> TestResult {
    let sim = Sim::start(true).await;
    sim.namespace("acme").await;
    sim.cluster_role("ns-reader", json!([rule(&[""], &["namespaces"], &["get"])]))
        .await;
    sim.bind(
        "",
        "dev-reads-ns",
        "ClusterRole",
        "ns-reader",
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "dev"}),
    )
    .await;
    let (status, _) = sim
        .status_as("alice-token", Method::GET, "/api/v1/namespaces/acme")
        .await;
    assert_eq!(status, StatusCode::OK, "alice is in the group dev");
    let (status, _) = sim
        .status_as("bob-token", Method::GET, "/api/v1/namespaces/acme")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let token = sim.service_account_token("acme", "robot").await;
    sim.role(
        "acme",
        "one-map",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["c1"], "verbs": ["get"]}]),
    )
    .await;
    sim.bind(
        "acme",
        "robot-one-map",
        "Role",
        "one-map",
        json!({"kind": "ServiceAccount", "name": "robot"}),
    )
    .await;
    let (status, body) = sim
        .status_as(&token, Method::GET, "/api/v1/namespaces/acme/configmaps/c1")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "allowed, and absent: {body}");
    let (status, body) = sim
        .status_as(&token, Method::GET, "/api/v1/namespaces/acme/configmaps/c2")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body["message"],
        "configmaps \"c2\" is forbidden: User \"system:serviceaccount:acme:robot\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"acme\""
    );
    Ok(())
}

#[tokio::test]
async fn a_binding_to_a_missing_role_says_so_when_denying() -> TestResult {
    let sim = Sim::start(true).await;
    sim.bind("", "bob-ghost", "ClusterRole", "ghost", user("bob"))
        .await;
    let (status, body) = sim
        .status_as("bob-token", Method::GET, "/api/v1/namespaces")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body["message"],
        "namespaces is forbidden: User \"bob\" cannot list resource \"namespaces\" in API group \"\" at the cluster scope: RBAC: clusterrole.rbac.authorization.k8s.io \"ghost\" not found"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Impersonation.

#[tokio::test]
async fn the_administrator_may_impersonate_anyone() -> TestResult {
    let sim = Sim::start(false).await;
    let secrets = "/api/v1/namespaces/kube-system/secrets";
    let (status, body) = sim
        .call(Call::new(Method::GET, secrets).header("Impersonate-User", "nobody"))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body["message"],
        "secrets is forbidden: User \"nobody\" cannot list resource \"secrets\" in API group \"\" in the namespace \"kube-system\""
    );
    let (status, _) = sim
        .call(
            Call::new(Method::GET, secrets)
                .header("Impersonate-User", "nobody")
                .header("Impersonate-Group", "system:masters"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "impersonated groups count");
    let (status, body) = sim
        .call(Call::new(Method::GET, secrets).header("Impersonate-Group", "dev"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    Ok(())
}

#[tokio::test]
async fn impersonating_needs_the_impersonate_verb_on_each_part() -> TestResult {
    let sim = Sim::start(true).await;
    let path = "/api/v1/namespaces/default/configmaps";
    let (status, body) = sim
        .call(
            Call::new(Method::GET, path)
                .token("alice-token")
                .header("Impersonate-User", "bob"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body["message"],
        "users \"bob\" is forbidden: User \"alice\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
    );
    sim.cluster_role(
        "impersonate-bob",
        json!([{"apiGroups": [""], "resources": ["users"], "resourceNames": ["bob"], "verbs": ["impersonate"]}]),
    )
    .await;
    sim.bind(
        "",
        "alice-as-bob",
        "ClusterRole",
        "impersonate-bob",
        user("alice"),
    )
    .await;
    sim.role(
        "default",
        "cm-reader",
        json!([rule(&[""], &["configmaps"], &["list"])]),
    )
    .await;
    sim.bind("default", "bob-reads", "Role", "cm-reader", user("bob"))
        .await;
    let (status, body) = sim
        .call(
            Call::new(Method::GET, path)
                .token("alice-token")
                .header("Impersonate-User", "bob"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = sim
        .call(
            Call::new(Method::GET, path)
                .token("alice-token")
                .header("Impersonate-User", "carol"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = sim
        .call(
            Call::new(Method::GET, path)
                .token("alice-token")
                .header("Impersonate-User", "bob")
                .header("Impersonate-Group", "system:masters"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body["message"],
        "groups \"system:masters\" is forbidden: User \"alice\" cannot impersonate resource \"groups\" in API group \"\" at the cluster scope"
    );
    Ok(())
}

#[tokio::test]
async fn impersonating_a_service_account_checks_serviceaccounts_in_its_namespace() -> TestResult {
    let sim = Sim::start(true).await;
    sim.namespace("acme").await;
    sim.role(
        "acme",
        "sa-impersonator",
        json!([rule(&[""], &["serviceaccounts"], &["impersonate"])]),
    )
    .await;
    sim.bind(
        "acme",
        "alice-as-sa",
        "Role",
        "sa-impersonator",
        user("alice"),
    )
    .await;
    sim.role(
        "acme",
        "cm-reader",
        json!([rule(&[""], &["configmaps"], &["list"])]),
    )
    .await;
    sim.bind(
        "acme",
        "sa-reads",
        "Role",
        "cm-reader",
        json!({"kind": "Group", "name": "system:serviceaccounts:acme"}),
    )
    .await;
    let (status, body) = sim
        .call(
            Call::new(Method::GET, "/api/v1/namespaces/acme/configmaps")
                .token("alice-token")
                .header("Impersonate-User", "system:serviceaccount:acme:robot"),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a ServiceAccount has its groups: {body}"
    );
    let (status, body) = sim
        .call(
            Call::new(Method::GET, "/api/v1/namespaces/acme/configmaps")
                .token("alice-token")
                .header("Impersonate-User", "system:serviceaccount:other:robot"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body["message"],
        "serviceaccounts \"robot\" is forbidden: User \"alice\" cannot impersonate resource \"serviceaccounts\" in API group \"\" in the namespace \"other\""
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Escalation and bind checks.

/// `bob` may manage ConfigMaps, Roles and RoleBindings in `acme`.
async fn bob_manages_acme(sim: &Sim) {
    sim.namespace("acme").await;
    sim.role(
        "acme",
        "acme-admin",
        json!([
            rule(&[""], &["configmaps"], &["*"]),
            rule(
                &["rbac.authorization.k8s.io"],
                &["roles", "rolebindings"],
                &["create", "update", "patch", "get"]
            ),
        ]),
    )
    .await;
    sim.bind("acme", "bob-admin", "Role", "acme-admin", user("bob"))
        .await;
}

async fn create_as(sim: &Sim, token: &str, path: &str, obj: Value) -> (StatusCode, Value) {
    sim.call(Call::new(Method::POST, path).token(token).body(obj))
        .await
}

fn role_object(name: &str, rules: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
           "metadata": {"name": name}, "rules": rules})
}

fn binding_object(name: &str, role_kind: &str, role: &str, subject: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
           "metadata": {"name": name},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
           "subjects": [subject]})
}

#[tokio::test]
async fn a_role_may_grant_only_what_its_writer_holds() -> TestResult {
    let sim = Sim::start(true).await;
    bob_manages_acme(&sim).await;
    let roles = format!("{RBAC}/namespaces/acme/roles");
    let (status, body) = create_as(
        &sim,
        "bob-token",
        &roles,
        role_object(
            "cm-reader",
            json!([rule(&[""], &["configmaps"], &["get", "list"])]),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = create_as(
        &sim,
        "bob-token",
        &roles,
        role_object(
            "sneaky",
            json!([rule(&[""], &["configmaps", "secrets"], &["get", "list"])]),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body["message"],
        "roles.rbac.authorization.k8s.io \"sneaky\" is forbidden: user \"bob\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"list\"]}"
    );
    assert_eq!(
        body["details"],
        json!({"group": "rbac.authorization.k8s.io", "kind": "roles", "name": "sneaky"})
    );
    let (status, body) = sim
        .call(
            Call::new(Method::PATCH, &format!("{roles}/cm-reader"))
                .token("bob-token")
                .header("Content-Type", "application/merge-patch+json")
                .body(json!({"rules": [rule(&[""], &["secrets"], &["get"])]})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a patch is checked too: {body}"
    );
    let (_, unchanged) = sim
        .call(Call::new(Method::GET, &format!("{roles}/cm-reader")).token(ADMIN))
        .await;
    assert_eq!(unchanged["rules"][0]["resources"], json!(["configmaps"]));
    // With `escalate` on roles, anything goes.
    sim.role(
        "acme",
        "escalator",
        json!([rule(
            &["rbac.authorization.k8s.io"],
            &["roles"],
            &["escalate"]
        )]),
    )
    .await;
    sim.bind("acme", "bob-escalates", "Role", "escalator", user("bob"))
        .await;
    let (status, body) = create_as(
        &sim,
        "bob-token",
        &roles,
        role_object("sneaky", json!([rule(&[""], &["secrets"], &["get"])])),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    Ok(())
}

#[tokio::test]
async fn a_binding_needs_the_roles_permissions_or_bind() -> TestResult {
    let sim = Sim::start(true).await;
    bob_manages_acme(&sim).await;
    sim.role(
        "acme",
        "cm-reader",
        json!([rule(&[""], &["configmaps"], &["get"])]),
    )
    .await;
    sim.cluster_role(
        "secret-reader",
        json!([rule(&[""], &["secrets"], &["get"])]),
    )
    .await;
    let bindings = format!("{RBAC}/namespaces/acme/rolebindings");
    let (status, body) = create_as(
        &sim,
        "bob-token",
        &bindings,
        binding_object("carol-reads", "Role", "cm-reader", user("carol")),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "bob holds what cm-reader grants: {body}"
    );
    let (status, body) = create_as(
        &sim,
        "bob-token",
        &bindings,
        binding_object(
            "carol-secrets",
            "ClusterRole",
            "secret-reader",
            user("carol"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["message"].as_str().unwrap_or_default().starts_with(
            "rolebindings.rbac.authorization.k8s.io \"carol-secrets\" is forbidden: user \"bob\""
        ),
        "{body}"
    );
    let (status, body) = create_as(
        &sim,
        "bob-token",
        &bindings,
        binding_object("carol-ghost", "ClusterRole", "ghost", user("carol")),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(
        body["message"],
        "clusterrole.rbac.authorization.k8s.io \"ghost\" not found"
    );
    // `bind` on that one ClusterRole, by name.
    sim.cluster_role(
        "bind-secret-reader",
        json!([{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"],
                "resourceNames": ["secret-reader"], "verbs": ["bind"]}]),
    )
    .await;
    sim.bind(
        "acme",
        "bob-binds",
        "ClusterRole",
        "bind-secret-reader",
        user("bob"),
    )
    .await;
    let (status, body) = create_as(
        &sim,
        "bob-token",
        &bindings,
        binding_object(
            "carol-secrets",
            "ClusterRole",
            "secret-reader",
            user("carol"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    sim.cluster_role(
        "other-secrets",
        json!([rule(&[""], &["secrets"], &["list"])]),
    )
    .await;
    let (status, _) = create_as(
        &sim,
        "bob-token",
        &bindings,
        binding_object("carol-list", "ClusterRole", "other-secrets", user("carol")),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "bind names one role only");
    Ok(())
}

#[tokio::test]
async fn an_aggregated_cluster_role_needs_full_authority() -> TestResult {
    let sim = Sim::start(true).await;
    sim.cluster_role(
        "role-writer",
        json!([
            rule(
                &["rbac.authorization.k8s.io"],
                &["clusterroles"],
                &["create"]
            ),
            rule(&[""], &["configmaps"], &["get"])
        ]),
    )
    .await;
    sim.bind(
        "",
        "bob-writes-roles",
        "ClusterRole",
        "role-writer",
        user("bob"),
    )
    .await;
    let (status, body) = create_as(
        &sim,
        "bob-token",
        &format!("{RBAC}/clusterroles"),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": "agg"},
               "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"x": "y"}}]}}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body["message"],
        "clusterroles.rbac.authorization.k8s.io \"agg\" is forbidden: must have cluster-admin privileges to use the aggregationRule"
    );
    let (status, body) = create_as(
        &sim,
        "bob-token",
        &format!("{RBAC}/clusterroles"),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": "cm-getter"}, "rules": [rule(&[""], &["configmaps"], &["get"])]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reviews.

const AUTHZ: &str = "/apis/authorization.k8s.io/v1";

#[tokio::test]
async fn access_reviews_answer_from_the_authorizer() -> TestResult {
    let sim = Sim::start(true).await;
    sim.namespace("acme").await;
    sim.role(
        "acme",
        "cm-reader",
        json!([rule(&[""], &["configmaps"], &["list"])]),
    )
    .await;
    sim.bind("acme", "bob-reads", "Role", "cm-reader", user("bob"))
        .await;
    let ssar = |ns: &str| {
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
               "spec": {"resourceAttributes": {"namespace": ns, "verb": "list", "resource": "configmaps"}}})
    };
    let path = format!("{AUTHZ}/selfsubjectaccessreviews");
    let (status, answer) = sim
        .call(
            Call::new(Method::POST, &path)
                .token("bob-token")
                .body(ssar("acme")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(
        answer["status"],
        json!({"allowed": true, "reason": "RBAC: allowed by RoleBinding \"bob-reads/acme\" of Role \"cm-reader\" to User \"bob\""})
    );
    assert_eq!(answer["spec"], ssar("acme")["spec"]);
    let (_, answer) = sim
        .call(
            Call::new(Method::POST, &path)
                .token("bob-token")
                .body(ssar("other")),
        )
        .await;
    assert_eq!(answer["status"], json!({"allowed": false}));
    let (status, _) = sim.call(Call::new(Method::GET, &path).token(ADMIN)).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

    // SubjectAccessReview: about someone else, and only for those who may create one.
    let sar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                     "spec": {"user": "bob", "resourceAttributes": {"namespace": "acme", "verb": "list", "resource": "configmaps"}}});
    let sar_path = format!("{AUTHZ}/subjectaccessreviews");
    let (status, _) = sim
        .call(
            Call::new(Method::POST, &sar_path)
                .token("bob-token")
                .body(sar.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, answer) = sim
        .call(Call::new(Method::POST, &sar_path).token(ADMIN).body(sar))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(answer["status"]["allowed"], true, "{answer}");
    let (status, answer) = sim
        .call(
            Call::new(Method::POST, &sar_path).token(ADMIN).body(
                json!({"spec": {"nonResourceAttributes": {"path": "/version", "verb": "get"}}}),
            ),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "no user nor group: {answer}"
    );
    Ok(())
}

#[tokio::test]
async fn a_protobuf_self_subject_access_review_is_decoded() -> TestResult {
    let sim = Sim::start(false).await;
    let field = |num: u8, bytes: &[u8]| {
        let mut out = vec![num << 3 | 2, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    };
    let attrs = [
        field(1, b"kube-system"),
        field(2, b"list"),
        field(5, b"secrets"),
    ]
    .concat();
    let object = field(2, &field(1, &attrs));
    let type_meta = [
        field(1, b"authorization.k8s.io/v1"),
        field(2, b"SelfSubjectAccessReview"),
    ]
    .concat();
    let body = [b"k8s\0".to_vec(), field(1, &type_meta), field(2, &object)].concat();
    let resp = sim
        .http
        .post(format!(
            "{}{AUTHZ}/selfsubjectaccessreviews",
            sim.server.url()
        ))
        .header("Content-Type", "application/vnd.kubernetes.protobuf")
        .header("Impersonate-User", "nobody")
        .body(body)
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let answer: Value = resp.json().await?;
    assert_eq!(
        answer["spec"]["resourceAttributes"],
        json!({"namespace": "kube-system", "verb": "list", "resource": "secrets"})
    );
    assert_eq!(answer["status"]["allowed"], false);
    Ok(())
}

#[tokio::test]
async fn rules_reviews_list_what_applies_in_a_namespace() -> TestResult {
    let sim = Sim::start(true).await;
    sim.namespace("acme").await;
    sim.role(
        "acme",
        "cm-reader",
        json!([rule(&[""], &["configmaps"], &["list"])]),
    )
    .await;
    sim.bind("acme", "bob-reads", "Role", "cm-reader", user("bob"))
        .await;
    let review = |ns: &str| {
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
               "spec": {"namespace": ns}})
    };
    let path = format!("{AUTHZ}/selfsubjectrulesreviews");
    let (status, answer) = sim
        .call(
            Call::new(Method::POST, &path)
                .token("bob-token")
                .body(review("acme")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let rules = answer["status"]["resourceRules"].as_array().expect("rules");
    assert!(
        rules.contains(&json!({"verbs": ["list"], "apiGroups": [""], "resources": ["configmaps"]})),
        "{answer}"
    );
    assert!(
        answer["status"]["nonResourceRules"]
            .as_array()
            .expect("non-resource rules")
            .iter()
            .any(|r| r["nonResourceURLs"]
                .as_array()
                .is_some_and(|u| u.contains(&json!("/version")))),
        "{answer}"
    );
    assert_eq!(answer["status"]["incomplete"], false);
    let (_, answer) = sim
        .call(
            Call::new(Method::POST, &path)
                .token("bob-token")
                .body(review("other")),
        )
        .await;
    assert!(!answer.to_string().contains("configmaps"), "{answer}");
    Ok(())
}

#[tokio::test]
async fn reviews_are_in_discovery_and_whoami_answers() -> TestResult {
    let sim = Sim::start(false).await;
    let (_, list) = sim.call(Call::new(Method::GET, AUTHZ)).await;
    let names: Vec<&str> = list["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    for want in [
        "selfsubjectaccessreviews",
        "selfsubjectrulesreviews",
        "subjectaccessreviews",
        "localsubjectaccessreviews",
    ] {
        assert!(names.contains(&want), "{names:?}");
    }
    assert_eq!(list["resources"][0]["verbs"], json!(["create"]));
    let (status, answer) = sim
        .call(
            Call::new(
                Method::POST,
                "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            )
            .token("alice-token")
            .body(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(
        answer["status"]["userInfo"],
        json!({"username": "alice", "uid": "alice-uid", "groups": ["dev", "ops", "system:authenticated"]})
    );
    let (_, answer) = sim
        .call(
            Call::new(Method::POST, "/apis/authentication.k8s.io/v1/tokenreviews")
                .body(json!({"spec": {"token": "bob-token"}})),
        )
        .await;
    assert_eq!(answer["status"]["authenticated"], true, "{answer}");
    assert_eq!(answer["status"]["user"]["username"], "bob");
    Ok(())
}

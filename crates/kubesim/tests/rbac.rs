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

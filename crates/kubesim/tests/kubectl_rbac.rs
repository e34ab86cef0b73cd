//! The real `kubectl` against kubesim's authentication and RBAC: `kubectl auth can-i`
//! (SelfSubjectAccessReview and SelfSubjectRulesReview, sent as protobuf), `--as`
//! impersonation, Forbidden answers, `kubectl create token` and `kubectl auth whoami`.
//! kubectl is `$KUBECTL`, or `kubectl` on `PATH`.

use kubesim::{Cluster, Server};
use serde_json::json;
use std::path::PathBuf;
use std::process::{Command, Output};

struct Sim {
    runtime: tokio::runtime::Runtime,
    server: Option<Server>,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Sim {
    fn start() -> Sim {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let server = runtime
            .block_on(Server::start(
                Cluster::new(),
                "127.0.0.1:0".parse().expect("addr"),
            ))
            .expect("kubesim starts");
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, server.kubeconfig()).expect("kubeconfig");
        Sim {
            runtime,
            server: Some(server),
            dir,
            kubeconfig,
        }
    }

    fn cluster(&self) -> &Cluster {
        self.server.as_ref().expect("running").cluster()
    }

    fn apply(&self, obj: serde_json::Value) {
        self.cluster()
            .apply_object(&obj, "test")
            .unwrap_or_else(|e| panic!("cannot apply {obj}: {e}"));
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into()))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .env_remove("KUBECONFIG")
            .output()
            .expect("kubectl runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command that must fail; its stdout and stderr.
    fn fails(&self, args: &[&str]) -> (String, String) {
        let out = self.kubectl(args);
        assert!(!out.status.success(), "kubectl {args:?} should have failed");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.shutdown());
        }
    }
}

/// A cluster with a `pipelines.sluice.dev` CRD, two namespaces, and `bob` bound to a Role that
/// reads pipelines in `sluice-acme` only.
fn setup() -> Sim {
    let sim = Sim::start();
    sim.apply(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "pipelines.sluice.dev"},
        "spec": {"group": "sluice.dev", "scope": "Namespaced",
                 "names": {"plural": "pipelines", "singular": "pipeline", "kind": "Pipeline", "listKind": "PipelineList"},
                 "versions": [{"name": "v1alpha1", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }));
    for ns in ["sluice-acme", "sluice-other"] {
        sim.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}));
    }
    sim.apply(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "pipeline-reader", "namespace": "sluice-acme"},
        "rules": [{"apiGroups": ["sluice.dev"], "resources": ["pipelines"], "verbs": ["get", "list", "watch"]}]
    }));
    sim.apply(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "bob-reads-pipelines", "namespace": "sluice-acme"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pipeline-reader"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}]
    }));
    sim
}

#[test]
fn kubectl_auth_can_i_answers_from_rbac() {
    let sim = setup();
    assert_eq!(
        sim.ok(&["auth", "can-i", "create", "pipelines", "-n", "sluice-acme"])
            .trim(),
        "yes"
    );
    assert_eq!(
        sim.ok(&[
            "auth",
            "can-i",
            "list",
            "pipelines",
            "-n",
            "sluice-acme",
            "--as=bob"
        ])
        .trim(),
        "yes"
    );
    let (out, _) = sim.fails(&[
        "auth",
        "can-i",
        "list",
        "pipelines",
        "-n",
        "sluice-other",
        "--as=bob",
    ]);
    assert_eq!(out.trim(), "no");
    let (out, _) = sim.fails(&[
        "auth",
        "can-i",
        "create",
        "pipelines",
        "-n",
        "sluice-acme",
        "--as=bob",
    ]);
    assert_eq!(out.trim(), "no");
    let list = sim.ok(&["auth", "can-i", "--list", "-n", "sluice-acme", "--as=bob"]);
    let line = list
        .lines()
        .find(|l| l.starts_with("pipelines.sluice.dev"))
        .unwrap_or_else(|| panic!("no pipelines rule in:\n{list}"));
    assert!(line.ends_with("[get list watch]"), "{line}");
    let other = sim.ok(&["auth", "can-i", "--list", "-n", "sluice-other", "--as=bob"]);
    assert!(!other.contains("pipelines"), "{other}");
}

#[test]
fn kubectl_as_is_forbidden_outside_its_grants() {
    let sim = setup();
    let (_, err) = sim.fails(&["get", "secrets", "-n", "kube-system", "--as=nobody"]);
    assert_eq!(
        err.trim(),
        "Error from server (Forbidden): secrets is forbidden: User \"nobody\" cannot list resource \"secrets\" in API group \"\" in the namespace \"kube-system\""
    );
    let out = sim.ok(&["get", "pipelines", "-n", "sluice-acme", "--as=bob"]);
    assert!(out.trim().is_empty(), "{out}");
    let (_, err) = sim.fails(&["get", "pipelines", "-n", "sluice-other", "--as=bob"]);
    assert_eq!(
        err.trim(),
        "Error from server (Forbidden): pipelines.sluice.dev is forbidden: User \"bob\" cannot list resource \"pipelines\" in API group \"sluice.dev\" in the namespace \"sluice-other\""
    );
    let whoami = sim.ok(&["auth", "whoami", "--as=bob", "--as-group=dev"]);
    assert!(whoami.contains("bob"), "{whoami}");
    assert!(whoami.contains("[dev system:authenticated]"), "{whoami}");
}

/// What the server says `token` is, through a SelfSubjectReview (kubectl itself sends no
/// credentials to a plain-HTTP server: client-go reads a kubeconfig's auth only for TLS).
fn whoami(sim: &Sim, token: &str) -> (u16, serde_json::Value) {
    let url = format!(
        "{}/apis/authentication.k8s.io/v1/selfsubjectreviews",
        sim.server.as_ref().expect("running").url()
    );
    sim.runtime.block_on(async {
        let resp = reqwest::Client::new()
            .post(url)
            .bearer_auth(token)
            .json(&json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}))
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("JSON"))
    })
}

#[test]
fn kubectl_create_token_issues_a_working_service_account_token() {
    let sim = setup();
    sim.ok(&["create", "serviceaccount", "robot", "-n", "sluice-acme"]);
    let token = sim.ok(&["create", "token", "robot", "-n", "sluice-acme"]);
    let token = token.trim();
    let (status, review) = whoami(&sim, token);
    assert_eq!(status, 201, "{review}");
    assert_eq!(
        review["status"]["userInfo"]["username"],
        "system:serviceaccount:sluice-acme:robot"
    );
    assert_eq!(
        review["status"]["userInfo"]["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:sluice-acme",
            "system:authenticated"
        ])
    );
    sim.ok(&["delete", "serviceaccount", "robot", "-n", "sluice-acme"]);
    let (status, answer) = whoami(&sim, token);
    assert_eq!(status, 401, "{answer}");
}

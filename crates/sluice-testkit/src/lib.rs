//! Test support shared by the operator's tests, the workspace tests and the benchmarks: a
//! kubesim server with Sluice's CRDs installed, running on its own runtime, and a way to run the
//! real `kubectl` against it.
//!
//! It depends only on kubesim and sluice-crd, so any crate may dev-depend on it without a cycle.

use kubesim::{Cluster, Server};
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

/// A kubesim server on a loopback port, with the Sluice CRDs installed.
pub struct SimCluster {
    runtime: tokio::runtime::Runtime,
    server: Option<Server>,
    dir: tempfile::TempDir,
    /// The kubeconfig file pointing at the server.
    pub kubeconfig: PathBuf,
}

impl SimCluster {
    /// Starts the server on its own (multi-threaded) runtime.
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let cluster = Cluster::new();
        install_crds(&cluster);
        let server = runtime
            .block_on(Server::start(cluster, "127.0.0.1:0".parse().expect("addr")))
            .expect("kubesim starts");
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, server.kubeconfig()).expect("write kubeconfig");
        SimCluster {
            runtime,
            server: Some(server),
            dir,
            kubeconfig,
        }
    }

    /// The cluster state behind the server.
    pub fn cluster(&self) -> &Arc<Cluster> {
        self.server.as_ref().expect("running").cluster()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.as_ref().expect("running").url()
    }

    /// Runs a future on the server's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// A `kubectl` command with this cluster's kubeconfig and a private cache directory.
    pub fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(kubectl_binary());
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .env_remove("KUBECONFIG");
        cmd
    }

    /// Runs kubectl with `stdin` as its standard input.
    pub fn kubectl_with_input(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .kubectl_command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs (is it installed? scripts/test.sh installs it)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("kubectl finishes")
    }

    /// Runs kubectl and returns its output.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_command(args)
            .output()
            .expect("kubectl runs (is it installed? scripts/test.sh installs it)")
    }

    /// Runs kubectl, asserts it succeeded and returns its standard output.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert_success(args, &out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl, asserts it failed and returns its standard error.
    pub fn kubectl_err(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should have failed; stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `kubectl apply -f -` (with extra arguments) of a YAML text; asserts success.
    pub fn apply(&self, yaml: &str, extra: &[&str]) -> String {
        let mut args = vec!["apply", "-f", "-"];
        args.extend_from_slice(extra);
        let out = self.kubectl_with_input(&args, yaml);
        assert_success(&args, &out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl get ... -o json` parsed.
    pub fn get_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.kubectl_ok(&all)).expect("kubectl prints JSON")
    }
}

impl Drop for SimCluster {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.shutdown());
        }
    }
}

/// Creates Sluice's CustomResourceDefinitions in a cluster.
pub fn install_crds(cluster: &Cluster) {
    for crd in sluice_crd::crds() {
        let obj = serde_json::to_value(&crd).expect("CRD serializes");
        cluster
            .apply_object(&obj, "sluice-tests")
            .expect("CRD installs");
    }
}

/// The kubectl to run: `$KUBECTL` or `kubectl` from `PATH`.
pub fn kubectl_binary() -> String {
    std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_string())
}

fn assert_success(args: &[&str], out: &Output) {
    assert!(
        out.status.success(),
        "kubectl {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

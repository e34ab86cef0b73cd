//! The real stack for end-to-end tests: workspace binaries, a fresh Postgres database, the
//! operator in-process, `sluice-api serve` as a process, `sluice-worker` processes running the
//! route configurations the operator rendered, and a small client for the REST API.

use serde_json::Value;
use sluice_operator::config::OperatorConfig;
use sluice_operator::run::{RunOptions, run};
use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The NATS server: `$SLUICE_TEST_NATS_URL`, by default `nats://127.0.0.1:4222`.
pub fn nats_url() -> String {
    std::env::var("SLUICE_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// The Postgres database the tests create their own databases from:
/// `$SLUICE_TEST_DATABASE_URL`, by default `postgres://root@127.0.0.1:5432/test`.
pub fn admin_database_url() -> String {
    std::env::var("SLUICE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into())
}

/// `url` with its database name replaced by `db` (any `?query` is kept).
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let server = match base.rfind('/') {
        Some(i) if i > base.find("//").map_or(0, |j| j + 1) => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{server}/{db}?{q}"),
        None => format!("{server}/{db}"),
    }
}

/// A workspace binary in the target directory's `debug` folder, built if missing. An existing
/// build is used as it is: build the binaries first (`cargo build -p <package>`) after changing
/// them.
pub fn binary(name: &str, package: &str) -> PathBuf {
    let path = profile_dir().join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", package, "--bin", name])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cannot build {name}");
    }
    path
}

/// Where cargo puts the workspace's binaries: `$CARGO_TARGET_DIR/debug` when that is set (a
/// separate `build-dir` keeps test executables elsewhere), else the folder above the test's
/// own executable.
fn profile_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        let dir = if dir.is_absolute() {
            dir
        } else {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir)
        };
        return dir.join("debug");
    }
    let exe = std::env::current_exe().expect("test executable");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// Runs one SQL statement with `psql` against the admin database; panics on failure.
pub fn psql(sql: &str) {
    let out = Command::new("psql")
        .args([&admin_database_url(), "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A database of its own for one test, dropped (with its connections) when this is dropped.
pub struct Database {
    name: String,
    /// URL of the database.
    pub url: String,
}

impl Database {
    /// Creates database `name`.
    pub fn create(name: &str) -> Self {
        psql(&format!("CREATE DATABASE {name}"));
        Database {
            name: name.to_string(),
            url: with_database(&admin_database_url(), name),
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        psql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// Child processes terminated (SIGTERM, then SIGKILL) when this is dropped.
#[derive(Default)]
pub struct Processes(pub Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            terminate(c);
        }
    }
}

/// Sends SIGTERM, waits up to 10 s, then kills; nothing when the process already ended.
pub fn terminate(c: &mut Child) {
    if !matches!(c.try_wait(), Ok(None)) {
        return;
    }
    signal(c.id(), "TERM");
    for _ in 0..100 {
        if matches!(c.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = c.kill();
    let _ = c.wait();
}

/// Sends signal `name` (`TERM`, `KILL`…) to process `pid`.
pub fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status();
}

/// Polls `check` every 100 ms until it holds; panics after 60 s.
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_within(what, Duration::from_secs(60), check).await;
}

/// Polls `check` every 100 ms until it holds; panics after `limit`.
pub async fn eventually_within<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return;
        }
        assert!(start.elapsed() < limit, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The operator, running in-process on the current runtime.
pub struct Operator {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), sluice_operator::Error>>,
}

impl Operator {
    /// Starts the operator against `sim` with `config`, as the chart runs it: with its
    /// ServiceAccount's token, so kubesim enforces the chart's RBAC and admission policies.
    pub fn start(sim: &sluice_testkit::SimCluster, config: OperatorConfig) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(
            client_with_token(sim, &sim.operator_token()),
            RunOptions {
                config,
                metrics_addr: None,
                leader_election: None,
            },
            async move {
                let _ = stopped.await;
            },
        ));
        Operator { stop, task }
    }

    /// Whether the operator is still running.
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Stops the operator and waits (up to 20 s) for it to finish.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(20), self.task).await;
    }
}

/// A kube client for `sim` that sends `token`.
pub fn client_with_token(sim: &sluice_testkit::SimCluster, token: &str) -> kube::Client {
    let mut config = kube::Config::new(sim.url().parse().expect("kubesim URL"));
    config.auth_info.token = Some(token.to_string().into());
    kube::Client::try_from(config).expect("client")
}

/// A kubeconfig for `sluice-api` as the chart runs it: its ServiceAccount's token.
pub fn api_kubeconfig(sim: &sluice_testkit::SimCluster) -> PathBuf {
    sim.kubeconfig_for(
        sluice_testkit::RELEASE_NAMESPACE,
        sluice_testkit::API_SERVICE_ACCOUNT,
    )
}

/// `sluice-api serve` as a process, with its standard output and error captured in files.
pub struct ApiProcess {
    child: Mutex<Child>,
    dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The bootstrap platform-admin token.
    pub admin_token: String,
    /// `http://127.0.0.1:PORT` of its metrics listener (`SLUICE_METRICS_LISTEN`).
    pub metrics_base: String,
}

impl ApiProcess {
    /// Starts `sluice-api serve --migrate` on a free loopback port (and its metrics listener on
    /// another) against `database_url` and the cluster of `kubeconfig`, with NATS at `nats_url`
    /// and the extra environment `env`, and waits until it answers `/readyz`.
    ///
    /// The bootstrap token is read from `--bootstrap-token-file` when the binary has that flag,
    /// else from the line of its standard output that holds it.
    pub async fn start(
        bin: &Path,
        database_url: &str,
        kubeconfig: &Path,
        nats_url: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let metrics_port = free_port();
        let token_file = dir.path().join("admin-token");
        let mut cmd = Command::new(bin);
        cmd.args(["serve", "--migrate", "--database-url", database_url])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--nats-url", nats_url, "--usage-flush-seconds", "1"])
            .env(
                "SLUICE_JWT_SECRET",
                "an-end-to-end-test-secret-of-enough-length",
            )
            .env("SLUICE_METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"))
            .envs(env.iter().copied())
            .stdout(File::create(dir.path().join("stdout")).expect("stdout file"))
            .stderr(File::create(dir.path().join("stderr")).expect("stderr file"));
        let token_flag = has_flag(bin, "--bootstrap-token-file");
        if token_flag {
            cmd.arg("--bootstrap-token-file").arg(&token_file);
        }
        let child = cmd.spawn().expect("sluice-api starts");
        let mut api = ApiProcess {
            child: Mutex::new(child),
            dir,
            base: format!("http://127.0.0.1:{port}"),
            admin_token: String::new(),
            metrics_base: format!("http://127.0.0.1:{metrics_port}"),
        };
        let start = Instant::now();
        while api.admin_token.is_empty() {
            assert!(api.is_running(), "sluice-api exited:\n{}", api.logs());
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "sluice-api gave no bootstrap token:\n{}",
                api.logs()
            );
            api.admin_token = if token_flag {
                std::fs::read_to_string(&token_file).unwrap_or_default()
            } else {
                std::fs::read_to_string(api.dir.path().join("stdout"))
                    .unwrap_or_default()
                    .lines()
                    .find(|l| l.starts_with("eyJ"))
                    .unwrap_or_default()
                    .to_string()
            }
            .trim()
            .to_string();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let http = reqwest::Client::new();
        let readyz = format!("{}/readyz", api.base);
        eventually("API ready", || async {
            http.get(&readyz)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        api
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.lock().expect("lock").id()
    }

    /// Whether the process is still running.
    pub fn is_running(&self) -> bool {
        matches!(self.child.lock().expect("lock").try_wait(), Ok(None))
    }

    /// Its resident set size in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("/proc/<pid>/status");
        parse_vm_rss_kib(&status).expect("VmRSS in /proc/<pid>/status")
    }

    /// Everything it wrote so far on its standard output and standard error.
    pub fn logs(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("{}{}", read("stdout"), read("stderr"))
    }
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        if let Ok(mut c) = self.child.lock() {
            terminate(&mut c);
        }
    }
}

/// The `VmRSS` figure (KiB) of a `/proc/<pid>/status` text.
pub fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Whether `bin serve --help` lists `flag`.
fn has_flag(bin: &Path, flag: &str) -> bool {
    Command::new(bin)
        .args(["serve", "--help"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(flag))
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Writes the configuration the operator rendered for route `route` (ConfigMap of that name in
/// `namespace`) into `dir` and starts a `sluice-worker` process on it.
pub async fn start_worker(
    bin: &Path,
    client: &kube::Client,
    namespace: &str,
    route: &str,
    dir: &Path,
) -> Child {
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client.clone(), namespace);
    let cm = cms.get(route).await.expect("the route's ConfigMap");
    let config = cm.data.expect("ConfigMap data")[sluice_core::route::CONFIG_KEY].clone();
    let path = dir.join(format!("{namespace}-{route}.json"));
    std::fs::write(&path, config).expect("write route config");
    Command::new(bin)
        .arg("--config")
        .arg(&path)
        .args(["--metrics-addr", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sluice-worker starts")
}

/// A client of the REST API.
#[derive(Clone)]
pub struct ApiClient {
    /// The HTTP client.
    pub http: reqwest::Client,
    /// `http://host:port`.
    pub base: String,
}

/// An answer of the API: status, `Retry-After`, the body's size and the body as JSON
/// (`null` when it is not JSON).
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The `Retry-After` header.
    pub retry_after: Option<String>,
    /// Size of the body in bytes.
    pub size: usize,
    /// The body, parsed.
    pub body: Value,
}

impl ApiClient {
    /// A client of the API at `base`, whose requests give up after 30 s.
    pub fn new(base: &str) -> Self {
        ApiClient {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("HTTP client"),
            base: base.to_string(),
        }
    }

    /// A JSON request; returns the status and the body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let r = match body {
            Some(b) => {
                self.send(method, path, token, "application/json", b.to_string())
                    .await
            }
            None => {
                self.send(method, path, token, "application/json", String::new())
                    .await
            }
        };
        (r.status, r.body)
    }

    /// An NDJSON ingest request; returns the status, the body and `Retry-After`.
    pub async fn ingest(
        &self,
        tenant: &str,
        stream: &str,
        token: &str,
        body: String,
    ) -> (u16, Value, Option<String>) {
        let path = format!("/v1/tenants/{tenant}/streams/{stream}/events");
        let r = self
            .send(
                reqwest::Method::POST,
                &path,
                token,
                "application/x-ndjson",
                body,
            )
            .await;
        (r.status, r.body, r.retry_after)
    }

    /// Any request; panics when the API does not answer.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        content_type: &str,
        body: String,
    ) -> Reply {
        self.try_send(method, path, token, content_type, body)
            .await
            .unwrap_or_else(|e| panic!("the API does not answer {path}: {e:?}"))
    }

    /// Any request; an error when the API does not answer.
    pub async fn try_send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        content_type: &str,
        body: String,
    ) -> Result<Reply, reqwest::Error> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if !body.is_empty() {
            req = req.header("content-type", content_type).body(body);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let bytes = resp.bytes().await?;
        Ok(Reply {
            status,
            retry_after,
            size: bytes.len(),
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_is_replaced() {
        assert_eq!(
            with_database("postgres://root@127.0.0.1:5432/test", "x"),
            "postgres://root@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@db/test?sslmode=disable", "x"),
            "postgres://u:p@db/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://db", "x"), "postgres://db/x");
    }

    #[test]
    fn vm_rss_is_read() {
        let status = "Name:\tsluice-api\nVmHWM:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss_kib(status), Some(12345));
        assert_eq!(parse_vm_rss_kib("Name: x\n"), None);
    }
}

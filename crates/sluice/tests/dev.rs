//! `sluice dev` driven as the README drives it: the process is started with a fresh data
//! directory, the real `kubectl` applies the examples with the kubeconfig it writes, events go
//! in through the REST API with the bootstrap token from `admin-token` (and a producer token made with it),
//! and come out of the example's `file` sink filtered and projected. SIGTERM stops everything
//! (exit 0, no worker left), and a restart on the same directory resumes: the pipeline is still
//! there and Ready, tokens still work, and no new bootstrap token is issued.
//!
//! `sluice dev` starts its own `nats-server` (on a free port), in operator mode as in
//! production: the route runs as its own broker user, from the credentials Secret the operator
//! wrote, and an anonymous client is refused. With `--kafka` at the test command's
//! Kafka-protocol broker, a Stream on Kafka gets its topic and ingest writes to it.
//!
//! Needs `kubectl` and `nats-server` on PATH; builds `sluice-worker` into the same target
//! directory first.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `sluice-worker` binary, built (or found fresh) next to `sluice`.
fn build_worker() -> PathBuf {
    let sluice = Path::new(env!("CARGO_BIN_EXE_sluice"));
    let profile_dir = sluice.parent().expect("the binary's directory");
    let target_dir = profile_dir.parent().expect("the target directory");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "sluice-worker", "--bin", "sluice-worker"])
        .current_dir(workspace)
        .env("CARGO_TARGET_DIR", target_dir);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("running cargo build -p sluice-worker");
    assert!(status.success(), "cargo build -p sluice-worker failed");
    let worker = profile_dir.join("sluice-worker");
    assert!(worker.is_file(), "{} was not built", worker.display());
    worker
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `sluice dev`.
struct Dev {
    child: Child,
    lines: mpsc::Receiver<String>,
    stdout: Vec<String>,
    stderr: PathBuf,
}

impl Dev {
    fn start(data: &Path, worker: &Path, ports: Ports, run: usize) -> Dev {
        let Ports {
            api: api_port,
            kube: kube_port,
            nats: nats_port,
        } = ports;
        let stderr = data.with_extension(format!("stderr-{run}.log"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("dev")
            .arg("--data-dir")
            .arg(data)
            .args(["--api-port", &api_port.to_string()])
            .args(["--kube-port", &kube_port.to_string()])
            .arg("--worker-bin")
            .arg(worker)
            .args(["--nats-port", &nats_port.to_string()])
            // The Kafka-protocol broker the test command starts.
            .arg("--kafka")
            .arg(
                std::env::var("SLUICE_TEST_KAFKA_BOOTSTRAP")
                    .unwrap_or_else(|_| "127.0.0.1:9092".into()),
            )
            .env_remove("NATS_URL")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("starting sluice dev");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Dev {
            child,
            lines: rx,
            stdout: Vec::new(),
            stderr,
        }
    }

    /// Reads standard output until a line satisfies `pred`.
    fn wait_line(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stdout.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => self.fail(&format!("no {what} within {timeout:?}")),
            }
        }
    }

    fn fail(&self, msg: &str) -> ! {
        let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let tail: Vec<&str> = err.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "{msg}\n--- sluice dev stdout ---\n{}\n--- stderr (tail) ---\n{}",
            self.stdout.join("\n"),
            tail.join("\n")
        );
    }

    /// SIGTERM, then waits for the exit.
    fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait()
            && self.terminate(Duration::from_secs(90)).is_none()
        {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The first line a NATS server sends a new client (`INFO {...}`).
fn nats_info(port: u16) -> String {
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the dev broker");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line
}

/// The ports one `sluice dev` listens on.
#[derive(Debug, Clone, Copy)]
struct Ports {
    api: u16,
    kube: u16,
    nats: u16,
}

fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl must be on PATH");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn apply(dev: &Dev, kubeconfig: &Path, yaml: &str) {
    let out = kubectl(kubeconfig, &["apply", "-f", "-"], Some(yaml));
    if !out.status.success() {
        dev.fail(&format!(
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
}

/// Polls `kubectl get ... -o jsonpath=...` until it prints `want`.
fn wait_jsonpath(
    dev: &Dev,
    kubeconfig: &Path,
    args: &[&str],
    path: &str,
    want: &str,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    let jsonpath = format!("jsonpath={path}");
    let mut last = String::new();
    while Instant::now() < deadline {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-o", &jsonpath]);
        let out = kubectl(kubeconfig, &all, None);
        last = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() && last.trim() == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    dev.fail(&format!(
        "kubectl get {args:?} {path}: want {want:?}, last {last:?}"
    ));
}

fn example(name: &str, tenant: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace("acme", tenant)
}

/// Worker processes (pid, command line) whose command line names `data`.
fn workers_of(data: &Path) -> Vec<(i32, String)> {
    let needle = data.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        let program = cmdline.split(' ').next().unwrap_or_default();
        if program.ends_with("sluice-worker") && cmdline.contains(&needle) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// Waits until `n` workers run, none of them in `not`.
fn wait_workers(dev: &Dev, data: &Path, n: usize, not: &[i32], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let now = workers_of(data);
        if now.len() == n && now.iter().all(|(p, _)| !not.contains(p)) {
            return;
        }
        if Instant::now() > deadline {
            dev.fail(&format!(
                "want {n} workers, none of {not:?}; running: {now:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn http(method: &str, url: &str, token: &str, body: Value) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let req = match method {
            "POST" => client.post(url).json(&body),
            _ => client.get(url),
        };
        let resp = req
            .bearer_auth(token)
            .send()
            .await
            .expect("the API answers");
        let status = resp.status().as_u16();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    })
}

/// Reads the sink file until the ids in it are `want`; returns its events.
fn wait_sink(dev: &Dev, file: &Path, want: &[&str], timeout: Duration) -> Vec<Value> {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let events: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("the sink writes JSON lines"))
            .collect();
        let ids: BTreeSet<String> = events
            .iter()
            .map(|e| e["id"].as_str().unwrap_or_default().to_string())
            .collect();
        if ids.is_superset(&want) {
            return events;
        }
        if Instant::now() > deadline {
            dev.fail(&format!("{} holds {ids:?}, want {want:?}", file.display()));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn sluice_dev_runs_the_examples_end_to_end_and_resumes_after_a_restart() {
    let worker = build_worker();
    let tmp = tempfile::tempdir().unwrap();
    let data = std::fs::canonicalize(tmp.path()).unwrap().join("state");
    let ports = Ports {
        api: free_port(),
        kube: free_port(),
        nats: free_port(),
    };
    let api_port = ports.api;
    let tenant = format!(
        "dev{:x}",
        (std::process::id() as u128
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos())
            & 0xffff_ffff
    );
    let ns = format!("sluice-{tenant}");
    let kubeconfig = data.join("kubeconfig");

    // First start: the banner, with the API URL and the bootstrap token.
    let mut dev = Dev::start(&data, &worker, ports, 1);
    dev.wait_line("banner", Duration::from_secs(120), |l| {
        l.contains("sluice dev is ready")
    });
    let api = dev
        .stdout
        .iter()
        .find_map(|l| {
            l.trim()
                .strip_prefix("REST API:")
                .map(|u| u.trim().to_string())
        })
        .unwrap_or_else(|| dev.fail("no REST API line"));
    assert_eq!(api, format!("http://127.0.0.1:{api_port}"));
    if !dev
        .stdout
        .iter()
        .any(|l| l.starts_with("a new bootstrap platform-admin token is in"))
    {
        dev.fail("no bootstrap token on the first start");
    }
    // The token is in the data directory (owner-only), never printed.
    let admin_file = data.join("admin-token");
    let admin = std::fs::read_to_string(&admin_file)
        .unwrap_or_else(|e| dev.fail(&format!("no {}: {e}", admin_file.display())))
        .trim()
        .to_string();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&admin_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(
        !dev.stdout.iter().any(|l| l.contains(&admin)),
        "the bootstrap token was printed"
    );
    assert!(kubeconfig.is_file());

    // kubectl applies the examples: tenant, stream (provisioned first), pipeline.
    apply(&dev, &kubeconfig, &example("tenant.yaml", &tenant));
    wait_jsonpath(
        &dev,
        &kubeconfig,
        &["get", "namespace", &ns],
        "{.metadata.name}",
        &ns,
        Duration::from_secs(60),
    );
    apply(&dev, &kubeconfig, &example("stream.yaml", &tenant));
    let ready = r#"{.status.conditions[?(@.type=="Ready")].status}"#;
    wait_jsonpath(
        &dev,
        &kubeconfig,
        &["get", "stream", "orders", "-n", &ns],
        ready,
        "True",
        Duration::from_secs(60),
    );
    apply(&dev, &kubeconfig, &example("pipeline.yaml", &tenant));
    wait_jsonpath(
        &dev,
        &kubeconfig,
        &["get", "pipeline", "large-orders", "-n", &ns],
        ready,
        "True",
        Duration::from_secs(120),
    );
    let running = workers_of(&data);
    assert_eq!(running.len(), 2, "one worker per route: {running:?}");

    // A producer token, made with the bootstrap token, sends events through the API.
    let (status, created) = http(
        "POST",
        &format!("{api}/v1/tenants/{tenant}/tokens"),
        &admin,
        json!({"name": "producer", "role": "producer"}),
    );
    assert_eq!(status, 201, "{created}");
    let producer = created["token"].as_str().unwrap().to_string();
    let events = json!([
        {"id": "o-1", "amount": 250, "customer": {"id": "c-7"}, "note": "dropped by the projection"},
        {"id": "o-2", "amount": 20, "customer": {"id": "c-8"}},
        {"id": "o-3", "amount": 101.5, "customer": {"id": "c-9"}},
        {"id": "o-4", "amount": 100},
    ]);
    let ingest = format!("{api}/v1/tenants/{tenant}/streams/orders/events");
    let (status, answer) = http("POST", &ingest, &producer, events);
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["accepted"], 4, "{answer}");

    // With --kafka, a Stream on Kafka gets its topic, and ingest writes to it.
    apply(
        &dev,
        &kubeconfig,
        &format!(
            "apiVersion: sluice.dev/v1alpha1\nkind: Stream\nmetadata: {{name: payments, namespace: {ns}}}\nspec: {{broker: kafka, partitions: 2}}\n"
        ),
    );
    wait_jsonpath(
        &dev,
        &kubeconfig,
        &["get", "stream", "payments", "-n", &ns],
        "{.status.topic}",
        &format!("sluice.{tenant}.payments"),
        Duration::from_secs(60),
    );
    let (status, answer) = http(
        "POST",
        &format!("{api}/v1/tenants/{tenant}/streams/payments/events"),
        &producer,
        json!({"id": "p-1"}),
    );
    assert_eq!(status, 202, "ingest into the Kafka stream: {answer}");
    assert_eq!(answer["accepted"], 1, "{answer}");

    // Filtered (amount > 100) and projected (id, customerId, amount) into the file sink.
    let sink = data.join(format!("files/{ns}/tmp/large-orders.ndjson"));
    let got = wait_sink(&dev, &sink, &["o-1", "o-3"], Duration::from_secs(60));
    for e in &got {
        match e["id"].as_str() {
            Some("o-1") => assert_eq!(e, &json!({"id": "o-1", "customerId": "c-7", "amount": 250})),
            Some("o-3") => assert_eq!(
                e,
                &json!({"id": "o-3", "customerId": "c-9", "amount": 101.5})
            ),
            other => panic!("event {other:?} should have been filtered out: {e}"),
        }
    }

    // The broker sluice dev started runs in operator mode: it asks every client to
    // authenticate, and each route connects as its own user, from the credentials Secret the
    // operator wrote for it (labelled as broker credentials), named in its pods' template.
    assert!(
        nats_info(ports.nats).contains(r#""auth_required":true"#),
        "the dev broker asks for credentials"
    );
    for route in ["large-orders-archive", "large-orders-console"] {
        let secret = kubectl(
            &kubeconfig,
            &[
                "get",
                "secret",
                &format!("{route}-broker"),
                "-n",
                &ns,
                "-o",
                "json",
            ],
            None,
        );
        assert!(
            secret.status.success(),
            "{}",
            String::from_utf8_lossy(&secret.stderr)
        );
        let secret: Value = serde_json::from_slice(&secret.stdout).unwrap();
        assert_eq!(
            secret["metadata"]["labels"]["sluice.dev/credentials"],
            "broker"
        );
        assert!(secret["data"]["user.creds"].is_string(), "{secret}");
        let user = kubectl(
            &kubeconfig,
            &[
                "get",
                "deployment",
                route,
                "-n",
                &ns,
                "-o",
                r#"jsonpath={.spec.template.metadata.annotations.sluice\.dev/broker-user}"#,
            ],
            None,
        );
        assert!(
            String::from_utf8_lossy(&user.stdout).starts_with('U'),
            "{route}: {}",
            String::from_utf8_lossy(&user.stderr)
        );
    }

    // A file sink path climbing out of the data directory is refused: its route fails with
    // the reason, which reaches the pipeline's status, and no worker runs it.
    let escape = format!(
        "apiVersion: sluice.dev/v1alpha1
kind: Pipeline
metadata:
  name: escape
  namespace: {ns}
spec:
  source:
    stream: orders
  sinks:
    - name: out
      file:
        path: ../../../escaped.ndjson
"
    );
    apply(&dev, &kubeconfig, &escape);
    wait_jsonpath(
        &dev,
        &kubeconfig,
        &["get", "pipeline", "escape", "-n", &ns],
        r#"{.status.conditions[?(@.type=="Degraded")].reason}"#,
        "RouteFailing",
        Duration::from_secs(60),
    );
    let out = kubectl(
        &kubeconfig,
        &[
            "get",
            "pipeline",
            "escape",
            "-n",
            &ns,
            "-o",
            r#"jsonpath={.status.conditions[?(@.type=="Degraded")].message}"#,
        ],
        None,
    );
    let message = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        message.contains("sink.path") && message.contains("'..' is not allowed"),
        "{message}"
    );
    assert_eq!(
        workers_of(&data).len(),
        2,
        "no worker runs the refused route"
    );
    assert!(!tmp.path().join("escaped.ndjson").exists());
    let out = kubectl(
        &kubeconfig,
        &["delete", "pipeline", "escape", "-n", &ns],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The runner plays the kubelet: a killed worker is restarted, and scaling the pipeline
    // (the operator sets the Deployments' replicas) runs more workers, all reported ready.
    let victim = running[0].0;
    kill(Pid::from_raw(victim), Signal::SIGKILL).unwrap();
    wait_workers(&dev, &data, 2, &[victim], Duration::from_secs(60));
    let out = kubectl(
        &kubeconfig,
        &[
            "scale",
            "pipeline",
            "large-orders",
            "-n",
            &ns,
            "--replicas=2",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_workers(&dev, &data, 4, &[], Duration::from_secs(60));
    wait_jsonpath(
        &dev,
        &kubeconfig,
        &["get", "pipeline", "large-orders", "-n", &ns],
        "{.status.readyReplicas}",
        "2",
        Duration::from_secs(60),
    );
    wait_jsonpath(
        &dev,
        &kubeconfig,
        &["get", "deployment", "large-orders-archive", "-n", &ns],
        "{.status.readyReplicas}",
        "2",
        Duration::from_secs(30),
    );

    // SIGTERM: workers drained, everything stopped, exit 0.
    let status = dev
        .terminate(Duration::from_secs(120))
        .unwrap_or_else(|| dev.fail("no exit within 120 s of SIGTERM"));
    assert!(status.success(), "sluice dev exited with {status}");
    assert_eq!(
        workers_of(&data),
        Vec::<(i32, String)>::new(),
        "workers left behind"
    );
    drop(dev);

    // A restart on the same data dir resumes: no new bootstrap token, the pipeline is still
    // there and becomes Ready again, the producer token still works.
    let mut dev = Dev::start(&data, &worker, ports, 2);
    dev.wait_line("banner", Duration::from_secs(120), |l| {
        l.contains("sluice dev is ready")
    });
    assert!(
        !dev.stdout
            .iter()
            .any(|l| l.starts_with("a new bootstrap platform-admin token") || l.contains(&admin)),
        "a bootstrap token was printed again: {:?}",
        dev.stdout
    );
    assert_eq!(
        std::fs::read_to_string(data.join("admin-token"))
            .unwrap()
            .trim(),
        admin,
        "the live bootstrap token was replaced"
    );
    wait_jsonpath(
        &dev,
        &kubeconfig,
        &["get", "pipeline", "large-orders", "-n", &ns],
        "{.metadata.name}",
        "large-orders",
        Duration::from_secs(30),
    );
    wait_jsonpath(
        &dev,
        &kubeconfig,
        &["get", "pipeline", "large-orders", "-n", &ns],
        ready,
        "True",
        Duration::from_secs(120),
    );
    let (status, answer) = http(
        "POST",
        &ingest,
        &producer,
        json!({"id": "o-5", "amount": 500, "customer": {"id": "c-1"}}),
    );
    assert_eq!(status, 202, "{answer}");
    wait_sink(&dev, &sink, &["o-1", "o-3", "o-5"], Duration::from_secs(60));

    // Killed without a chance to drain (SIGKILL), `sluice dev` leaves its workers running;
    // the next start stops them before running new ones (and takes over the stale lock).
    let orphans: Vec<i32> = workers_of(&data).into_iter().map(|(p, _)| p).collect();
    assert_eq!(orphans.len(), 4, "{orphans:?}");
    dev.child.kill().unwrap();
    dev.child.wait().unwrap();
    drop(dev);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        workers_of(&data).len(),
        4,
        "the workers outlive a SIGKILLed sluice dev"
    );
    let mut dev = Dev::start(&data, &worker, ports, 3);
    dev.wait_line("banner", Duration::from_secs(180), |l| {
        l.contains("sluice dev is ready")
    });
    wait_workers(&dev, &data, 4, &orphans, Duration::from_secs(60));

    // Clean up the shared broker: deleting the tenant removes its JetStream stream.
    let out = kubectl(
        &kubeconfig,
        &["delete", "tenant", &tenant, "--wait=false"],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline
        && kubectl(&kubeconfig, &["get", "stream", "orders", "-n", &ns], None)
            .status
            .success()
    {
        std::thread::sleep(Duration::from_millis(500));
    }
    let status = dev
        .terminate(Duration::from_secs(120))
        .unwrap_or_else(|| dev.fail("no exit within 120 s of SIGTERM"));
    assert!(status.success(), "sluice dev exited with {status}");
    assert_eq!(
        workers_of(&data),
        Vec::<(i32, String)>::new(),
        "workers left behind"
    );
}

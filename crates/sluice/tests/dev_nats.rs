//! `sluice dev` without `NATS_URL` and with a NATS server already listening on its NATS port:
//! it uses that server when it has JetStream (and leaves it running when it stops), and refuses
//! to start, saying why, when it has none.
//!
//! Needs `nats-server` on PATH: each test starts its own on a free port.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `nats-server` of the test's own, killed on drop.
struct NatsServer {
    child: Child,
    port: u16,
}

impl NatsServer {
    fn start(jetstream: bool, store: &Path) -> NatsServer {
        let port = free_port();
        let mut cmd = Command::new("nats-server");
        cmd.args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if jetstream {
            cmd.arg("-js").arg("-sd").arg(store);
        }
        let child = cmd.spawn().expect("nats-server on PATH");
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        NatsServer { child, port }
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sluice dev` with free API and Kubernetes ports, NATS on `nats_port` and no `NATS_URL`.
/// No pipeline is applied, so no worker runs: any executable will do as `--worker-bin`.
fn sluice_dev(data: &Path, nats_port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("dev")
        .arg("--data-dir")
        .arg(data)
        .args(["--api-port", &free_port().to_string()])
        .args(["--kube-port", &free_port().to_string()])
        .args(["--nats-port", &nats_port.to_string()])
        .args(["--worker-bin", "/bin/true"])
        .env_remove("NATS_URL")
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting sluice dev")
}

#[test]
fn sluice_dev_uses_a_nats_server_with_jetstream_already_on_its_port() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = NatsServer::start(true, &dir.path().join("js"));
    let mut dev = sluice_dev(&dir.path().join("dev"), nats.port);

    let mut out = BufReader::new(dev.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let mut nats_line = None;
    for line in out.by_ref().map_while(Result::ok) {
        seen.push(line.clone());
        if line.trim_start().starts_with("NATS:") {
            nats_line = Some(line);
            break;
        }
    }
    // Keep reading what it prints after, so that it never writes into a closed pipe.
    std::thread::spawn(move || out.for_each(drop));
    let Some(nats_line) = nats_line else {
        let status = dev.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(&mut dev.stderr.take().unwrap(), &mut err).unwrap();
        panic!(
            "sluice dev printed no NATS line ({status})\n--- stdout ---\n{}\n--- stderr ---\n{err}",
            seen.join("\n")
        );
    };
    assert!(
        nats_line.contains(&format!("nats://127.0.0.1:{}", nats.port))
            && nats_line.contains("already running"),
        "{nats_line}"
    );

    kill(Pid::from_raw(dev.id() as i32), Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = dev.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "sluice dev did not stop");
        std::thread::sleep(Duration::from_millis(200));
    };
    if !status.success() {
        let mut err = String::new();
        std::io::Read::read_to_string(&mut dev.stderr.take().unwrap(), &mut err).unwrap();
        panic!("sluice dev exited with {status}\n--- stderr ---\n{err}");
    }
    assert!(
        nats.running(),
        "sluice dev stopped a server it did not start"
    );
}

#[test]
fn sluice_dev_refuses_a_nats_server_without_jetstream_on_its_port() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(false, &dir.path().join("js"));
    let dev = sluice_dev(&dir.path().join("dev"), nats.port);

    let out = dev.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "sluice dev started: {stderr}");
    assert!(
        stderr.contains(&format!(
            "the NATS server on 127.0.0.1:{} has no JetStream",
            nats.port
        )),
        "{stderr}"
    );
}

//! A real nats-server in operator mode, started per test from `PATH`: a new operator, system
//! account and administrator ([`sluice_broker::Bootstrap`]), the full account resolver and
//! JetStream, all in a temporary directory; the process is killed on drop.

use sluice_broker::Bootstrap;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A nats-server in operator mode.
pub struct OperatorModeNats {
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    /// What the server was configured from: the operator key, the administrator's creds.
    pub bootstrap: Bootstrap,
    child: Child,
    log: PathBuf,
    dir: tempfile::TempDir,
}

fn find_on_path(binary: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(binary))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free local port")
        .port()
}

impl OperatorModeNats {
    /// Starts the server and waits until it listens.
    pub fn start() -> Self {
        let binary = find_on_path("nats-server").expect(
            "these tests need nats-server (2.9 or later) on PATH; scripts/test.sh installs it",
        );
        let bootstrap = Bootstrap::generate(sluice_broker::jwt::now()).expect("a broker bootstrap");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        let config = dir.path().join("nats.conf");
        std::fs::write(
            &config,
            bootstrap
                .server_config("127.0.0.1", port, dir.path())
                .render(),
        )
        .expect("write the server configuration");
        let log = dir.path().join("nats.log");
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("the log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut server = OperatorModeNats {
            url: format!("nats://127.0.0.1:{port}"),
            bootstrap,
            child,
            log,
            dir,
        };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("nats-server exited ({status}):\n{}", server.log_text());
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "nats-server does not listen on {port} after 10 s:\n{}",
                server.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// What the server wrote to stderr.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Writes the operator seed and the administrator's creds to files, as the operator's
    /// `--broker-operator-seed-file` and `--broker-admin-creds-file` read them.
    pub fn write_operator_files(&self) -> (PathBuf, PathBuf) {
        let seed = self.dir.path().join("operator.seed");
        let creds = self.dir.path().join("admin.creds");
        std::fs::write(&seed, self.bootstrap.operator_seed()).expect("write the seed");
        std::fs::write(&creds, &self.bootstrap.admin_creds).expect("write the creds");
        (seed, creds)
    }
}

impl Drop for OperatorModeNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! The broker: the NATS server at `NATS_URL`, or a `nats-server -js` started from `PATH` with
//! its JetStream data under the data directory.

use super::DevError;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// What to tell someone who has no NATS server.
pub const INSTALL_HINT: &str = "sluice dev needs a NATS server with JetStream. Either set \
NATS_URL to one (for example NATS_URL=nats://127.0.0.1:4222), or install the `nats-server` \
binary so that it is on PATH: download it from https://github.com/nats-io/nats-server/releases, \
or `go install github.com/nats-io/nats-server/v2@latest`, or your package manager's \
`nats-server` package (Homebrew, Debian/Ubuntu, Arch).";

/// The broker `sluice dev` uses.
#[derive(Debug)]
pub struct Nats {
    /// Its URL, given to the operator, the Web API and (through route configs) the workers.
    pub url: String,
    /// The server process, when `sluice dev` started it.
    child: Option<Child>,
}

impl Nats {
    /// Uses `url` when given; otherwise starts `nats-server` on `127.0.0.1:port`.
    pub async fn start(
        url: Option<String>,
        port: u16,
        data: &Path,
        logs: &Path,
    ) -> Result<Nats, DevError> {
        if let Some(url) = url {
            return Ok(Nats { url, child: None });
        }
        let Some(binary) = find_on_path("nats-server") else {
            return Err(DevError::NoNats(format!(
                "no NATS_URL is set and `nats-server` is not on PATH. {INSTALL_HINT}"
            )));
        };
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Err(DevError::Nats(format!(
                "something already listens on {addr}: if it is a NATS server with JetStream, use \
                 it with NATS_URL=nats://{addr}; otherwise pick another port with --nats-port"
            )));
        }
        std::fs::create_dir_all(data).map_err(DevError::io(data))?;
        std::fs::create_dir_all(logs).map_err(DevError::io(logs))?;
        let log_path = logs.join("nats-server.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(DevError::io(&log_path))?;
        let log2 = log.try_clone().map_err(DevError::io(&log_path))?;
        let mut child = Command::new(&binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(data)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            // Its own process group: a Ctrl-C in the terminal reaches `sluice dev` only, which
            // stops the server last, after the workers have drained.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| DevError::Nats(format!("cannot start {}: {e}", binary.display())))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(DevError::Nats(format!(
                    "nats-server exited at start ({status}); see {}",
                    log_path.display()
                )));
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(DevError::Nats(format!(
                    "nats-server does not answer on {addr}; see {}",
                    log_path.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Nats {
            url: format!("nats://{addr}"),
            child: Some(child),
        })
    }

    /// Whether `sluice dev` runs the server itself.
    pub fn started_here(&self) -> bool {
        self.child.is_some()
    }

    /// Stops the server `sluice dev` started (SIGTERM, then SIGKILL after 10 s).
    pub async fn stop(mut self) {
        if let Some(child) = self.child.as_mut() {
            super::process::terminate(child, Duration::from_secs(10)).await;
        }
    }
}

/// The first executable file named `name` in the directories of `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

/// Whether `path` is a file someone may execute.
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

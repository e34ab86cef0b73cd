//! The broker: the NATS server at `NATS_URL`; else the NATS server with JetStream already
//! listening on the port; else a `nats-server` started from `PATH` in operator mode, as the
//! chart expects it in production (`docs/broker.md`): every tenant gets its own account, every
//! route its own user, and anonymous clients are refused. Its identities (the operator and
//! ingest seeds) and its account JWTs and JetStream data are kept under the data directory.

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

/// How long `sluice dev` waits for a server already on the port to answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the broker `sluice dev` uses comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The server at `NATS_URL`.
    FromUrl,
    /// A NATS server with JetStream that already listened on the port.
    AlreadyRunning,
    /// A `nats-server` that `sluice dev` started.
    Started,
}

/// The broker `sluice dev` uses.
#[derive(Debug)]
pub struct Nats {
    /// Its URL, given to the operator, the Web API and (through route configs) the workers.
    pub url: String,
    /// Where it comes from.
    pub origin: Origin,
    /// The broker identities, when `sluice dev` started the server in operator mode.
    pub bootstrap: Option<sluice_broker::Bootstrap>,
    /// The server process, when `sluice dev` started it.
    child: Option<Child>,
}

/// What answers on the port `sluice dev` would start `nats-server` on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Existing {
    /// A NATS server with JetStream: `sluice dev` uses it.
    JetStream,
    /// A NATS server without JetStream (the reason the JetStream API gave).
    NoJetStream(String),
    /// Not a NATS server, or one that does not answer (the reason).
    NotNats(String),
}

/// Asks the server at `url` whether it is a NATS server with JetStream (the `$JS.API.INFO`
/// request).
pub async fn probe(url: &str) -> Existing {
    let connect = async_nats::ConnectOptions::new()
        .connection_timeout(PROBE_TIMEOUT)
        .request_timeout(Some(PROBE_TIMEOUT));
    let client = match tokio::time::timeout(PROBE_TIMEOUT, connect.connect(url)).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => return Existing::NotNats(e.to_string()),
        Err(_) => return Existing::NotNats(format!("no NATS handshake within {PROBE_TIMEOUT:?}")),
    };
    let answer = tokio::time::timeout(PROBE_TIMEOUT, client.request(JS_API_INFO, "".into())).await;
    match answer {
        Ok(Ok(message)) => account_info_verdict(&message.payload),
        Ok(Err(e)) => Existing::NoJetStream(e.to_string()),
        Err(_) => Existing::NoJetStream(format!("no JetStream answer within {PROBE_TIMEOUT:?}")),
    }
}

/// The JetStream API request that answers with the account's JetStream usage.
const JS_API_INFO: &str = "$JS.API.INFO";

/// The parts of a `$JS.API.INFO` answer the probe reads.
#[derive(Debug, serde::Deserialize)]
struct AccountInfoAnswer {
    /// `io.nats.jetstream.api.v1.account_info_response` from a JetStream server.
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Set when JetStream refuses (for example, not enabled for this account).
    error: Option<ApiError>,
}

/// A JetStream API error.
#[derive(Debug, serde::Deserialize)]
struct ApiError {
    description: Option<String>,
}

/// Whether the answer to `$JS.API.INFO` comes from a working JetStream.
fn account_info_verdict(payload: &[u8]) -> Existing {
    match serde_json::from_slice::<AccountInfoAnswer>(payload) {
        Ok(AccountInfoAnswer { error: Some(e), .. }) => Existing::NoJetStream(
            e.description
                .unwrap_or_else(|| "the JetStream API answered with an error".into()),
        ),
        Ok(AccountInfoAnswer { kind: Some(k), .. })
            if k == "io.nats.jetstream.api.v1.account_info_response" =>
        {
            Existing::JetStream
        }
        Ok(_) | Err(_) => Existing::NoJetStream(format!(
            "unexpected answer to {JS_API_INFO}: {}",
            String::from_utf8_lossy(payload)
        )),
    }
}

impl Nats {
    /// Uses `url` when given; otherwise the NATS server with JetStream already listening on
    /// `127.0.0.1:port`; otherwise starts `nats-server` there. Something else on the port (a
    /// NATS server without JetStream, or not NATS at all) is an error saying so.
    pub async fn start(
        url: Option<String>,
        port: u16,
        data: &Path,
        logs: &Path,
    ) -> Result<Nats, DevError> {
        if let Some(url) = url {
            return Ok(Nats {
                url,
                origin: Origin::FromUrl,
                bootstrap: None,
                child: None,
            });
        }
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            let url = format!("nats://{addr}");
            return match probe(&url).await {
                Existing::JetStream => Ok(Nats {
                    url,
                    origin: Origin::AlreadyRunning,
                    bootstrap: None,
                    child: None,
                }),
                Existing::NoJetStream(why) => Err(DevError::Nats(format!(
                    "the NATS server on {addr} has no JetStream ({why}): restart it with \
                     JetStream enabled (nats-server -js), or pick another port with --nats-port"
                ))),
                Existing::NotNats(why) => Err(DevError::Nats(format!(
                    "something that is not a NATS server listens on {addr} ({why}): stop it, \
                     or pick another port with --nats-port, or set NATS_URL"
                ))),
            };
        }
        let Some(binary) = find_on_path("nats-server") else {
            return Err(DevError::NoNats(format!(
                "no NATS_URL is set, nothing listens on {addr} and `nats-server` is not on \
                 PATH. {INSTALL_HINT}"
            )));
        };
        std::fs::create_dir_all(data).map_err(DevError::io(data))?;
        std::fs::create_dir_all(logs).map_err(DevError::io(logs))?;
        let bootstrap = identities(&data.join("identities"))?;
        let config_path = data.join("nats-server.conf");
        super::paths::write_private(
            &config_path,
            bootstrap
                .server_config("127.0.0.1", port, data)
                .render()
                .as_bytes(),
        )?;
        let log_path = logs.join("nats-server.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(DevError::io(&log_path))?;
        let log2 = log.try_clone().map_err(DevError::io(&log_path))?;
        let mut child = Command::new(&binary)
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            // Its own process group: a Ctrl-C in the terminal reaches `sluice dev` only, which
            // stops the server last, after the workers have drained.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| DevError::Nats(format!("cannot start {}: {e}", binary.display())))?;
        if let Some(pid) = child.id() {
            let file = super::stale::broker_pid_file(data);
            std::fs::write(&file, pid.to_string()).map_err(DevError::io(&file))?;
        }
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
            origin: Origin::Started,
            bootstrap: Some(bootstrap),
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

/// The broker identities kept in `dir` (`operator.seed`, `ingest.seed`, owner-only), made on
/// the first run: the same seeds give the same operator, system account and administrator, so
/// the server keeps the tenant accounts it was given across restarts.
fn identities(dir: &Path) -> Result<sluice_broker::Bootstrap, DevError> {
    let operator_path = dir.join("operator.seed");
    let ingest_path = dir.join("ingest.seed");
    let now = sluice_broker::jwt::now();
    let broken = |e: sluice_broker::bootstrap::BootstrapError| {
        DevError::Nats(format!(
            "the broker identities in {} are not usable ({e}); delete the directory to make new \
             ones (the tenants' accounts are made again by the operator)",
            dir.display()
        ))
    };
    if let (Ok(operator), Ok(ingest)) = (
        std::fs::read_to_string(&operator_path),
        std::fs::read_to_string(&ingest_path),
    ) {
        return sluice_broker::Bootstrap::from_seeds(&operator, &ingest, now).map_err(broken);
    }
    let fresh = sluice_broker::Bootstrap::generate(now).map_err(broken)?;
    super::paths::write_private(&operator_path, fresh.operator_seed().as_bytes())?;
    super::paths::write_private(&ingest_path, fresh.ingest_seed().as_bytes())?;
    sluice_broker::Bootstrap::from_seeds(&fresh.operator_seed(), &fresh.ingest_seed(), now)
        .map_err(broken)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_info_answer_is_jetstream() {
        let ok = br#"{"type":"io.nats.jetstream.api.v1.account_info_response","memory":0}"#;
        assert_eq!(account_info_verdict(ok), Existing::JetStream);
    }

    #[test]
    fn an_error_or_anything_else_is_no_jetstream() {
        let err = br#"{"type":"io.nats.jetstream.api.v1.account_info_response",
            "error":{"code":503,"err_code":10039,"description":"jetstream not enabled for account"}}"#;
        assert_eq!(
            account_info_verdict(err),
            Existing::NoJetStream("jetstream not enabled for account".into())
        );
        assert!(matches!(
            account_info_verdict(b"hello"),
            Existing::NoJetStream(_)
        ));
    }
}

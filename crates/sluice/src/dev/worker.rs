//! One `sluice-worker` process: started with a route config file and a free metrics port,
//! its standard error appended to a log file, its readiness read from `/readyz`.

use super::DevError;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// How long a worker may take to drain after SIGTERM (the pods' termination grace period).
pub const DRAIN_GRACE: Duration = Duration::from_secs(60);

/// The line prefix with which the worker announces its metrics address on standard error.
const LISTENING: &str = "metrics listening on ";

/// A running worker process.
#[derive(Debug)]
pub struct Worker {
    child: Child,
    log: PathBuf,
    /// Where this process' lines start in the log.
    log_offset: u64,
    addr: OnceLock<SocketAddr>,
    /// When it started.
    pub started: Instant,
    /// The config hash it runs.
    pub hash: String,
    /// Holds its process id while it runs, for [`super::stale`] after a crash of `sluice dev`.
    pid_file: PathBuf,
}

impl Worker {
    /// Starts `binary --config <config> --metrics-addr 127.0.0.1:0`, its standard error appended
    /// to `log` (a file, not a pipe: a worker outlives a `sluice dev` killed without warning
    /// and must still drain when told to). Standard output is inherited, so `file` sinks
    /// writing to stdout show in the terminal of `sluice dev`.
    pub fn spawn(
        binary: &Path,
        config: &Path,
        log: PathBuf,
        hash: &str,
        pid_file: PathBuf,
    ) -> Result<Worker, DevError> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).map_err(DevError::io(dir))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(DevError::io(&log))?;
        let log_offset = file.metadata().map(|m| m.len()).unwrap_or(0);
        let child = Command::new(binary)
            .arg("--config")
            .arg(config)
            .args(["--metrics-addr", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(file)
            // Its own process group: Ctrl-C reaches `sluice dev` only, which then drains each
            // worker with exactly one SIGTERM (a second one would stop it at once).
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(DevError::io(binary))?;
        if let Some(pid) = child.id() {
            super::paths::write_private(&pid_file, pid.to_string().as_bytes())?;
        }
        Ok(Worker {
            child,
            log,
            log_offset,
            addr: OnceLock::new(),
            started: Instant::now(),
            hash: hash.to_string(),
            pid_file,
        })
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.try_wait().ok().flatten();
        if status.is_some() {
            let _ = std::fs::remove_file(&self.pid_file);
        }
        status
    }

    /// Its process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The metrics address it announced in its log, once it has.
    fn addr(&self) -> Option<SocketAddr> {
        if let Some(a) = self.addr.get() {
            return Some(*a);
        }
        let mut f = std::fs::File::open(&self.log).ok()?;
        f.seek(SeekFrom::Start(self.log_offset)).ok()?;
        let mut text = String::new();
        f.take(64 * 1024).read_to_string(&mut text).ok()?;
        let a = text.lines().find_map(parse_listening)?;
        Some(*self.addr.get_or_init(|| a))
    }

    /// Whether `/readyz` answers 200.
    pub async fn ready(&self, http: &reqwest::Client) -> bool {
        let Some(addr) = self.addr() else {
            return false;
        };
        match http.get(format!("http://{addr}/readyz")).send().await {
            Ok(r) => r.status().is_success(),
            Err(_) => false,
        }
    }

    /// Drains it: SIGTERM, then waits up to [`DRAIN_GRACE`].
    pub async fn stop(mut self) -> Option<ExitStatus> {
        let status = super::process::terminate(&mut self.child, DRAIN_GRACE).await;
        let _ = std::fs::remove_file(&self.pid_file);
        status
    }
}

/// The address in a `metrics listening on 127.0.0.1:PORT` line.
pub fn parse_listening(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(LISTENING)? + LISTENING.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_metrics_address() {
        assert_eq!(
            parse_listening("metrics listening on 127.0.0.1:4567"),
            Some("127.0.0.1:4567".parse().unwrap())
        );
        assert_eq!(
            parse_listening("2025 INFO x: metrics listening on 127.0.0.1:80 more"),
            Some("127.0.0.1:80".parse().unwrap())
        );
        assert_eq!(parse_listening("listening"), None);
    }
}

//! Workers left running by a `sluice dev` that was killed without a chance to drain them
//! (SIGKILL, a crash): each worker's pid is kept in `routes/<ns>/<route>/pids/<replica>` while
//! it runs, and the next start stops those processes before running new ones. The same goes
//! for the `nats-server` it started (its pid in `nats/nats-server.pid`).

use super::paths::DataDir;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Stops the workers of an earlier run that are still alive: SIGTERM, then SIGKILL after
/// `grace`. A pid is only signalled when its command line is a `sluice-worker` reading a config
/// under `data`, so a pid reused by another process is left alone.
pub async fn stop_leftovers(data: &DataDir, grace: Duration) {
    let mut alive = Vec::new();
    for file in pid_files(&data.root().join("routes")) {
        let pid = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok());
        let _ = std::fs::remove_file(&file);
        if let Some(pid) = pid.filter(|p| is_our_worker(*p, data.root())) {
            tracing::warn!(
                pid,
                "stopping a worker left running by an earlier sluice dev"
            );
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            alive.push(pid);
        }
    }
    let deadline = Instant::now() + grace;
    while !alive.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        // An exited worker may linger as a zombie nobody reaps; its command line is empty.
        alive.retain(|p| is_our_worker(*p, data.root()));
    }
    for pid in alive {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// The file holding the pid of the `nats-server` that `sluice dev` started, in `nats_dir`.
pub fn broker_pid_file(nats_dir: &Path) -> PathBuf {
    nats_dir.join("nats-server.pid")
}

/// Stops the `nats-server` an earlier run started and left running (SIGTERM, then SIGKILL
/// after `grace`): only a `nats-server` whose command line names a configuration under
/// `nats_dir`.
pub async fn stop_leftover_broker(nats_dir: &Path, grace: Duration) {
    let file = broker_pid_file(nats_dir);
    let pid = std::fs::read_to_string(&file)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok());
    let _ = std::fs::remove_file(&file);
    let ours = |pid: i32| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|raw| {
            let cmdline = String::from_utf8_lossy(&raw);
            cmdline
                .split('\0')
                .next()
                .unwrap_or_default()
                .ends_with("nats-server")
                && cmdline.contains(&*nats_dir.to_string_lossy())
        })
    };
    let Some(pid) = pid.filter(|p| ours(*p)) else {
        return;
    };
    tracing::warn!(
        pid,
        "stopping the nats-server left running by an earlier sluice dev"
    );
    let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while ours(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if ours(pid) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

fn pid_files(routes: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let dirs = |p: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(p)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    for ns in dirs(routes) {
        for route in dirs(&ns) {
            out.extend(dirs(&route.join("pids")));
        }
    }
    out
}

fn is_our_worker(pid: i32, root: &Path) -> bool {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let cmdline = String::from_utf8_lossy(&raw);
    let mut args = cmdline.split('\0');
    let program = args.next().unwrap_or_default();
    program.ends_with(super::WORKER_BIN) && cmdline.contains(&*root.to_string_lossy())
}

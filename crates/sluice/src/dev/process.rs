//! Stopping child processes the way Kubernetes stops containers: SIGTERM, a grace period, then
//! SIGKILL.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::process::ExitStatus;
use std::time::Duration;
use tokio::process::Child;

/// Sends SIGTERM to `child` and waits up to `grace` for it to exit, then kills it. Returns its
/// exit status (`None` when it could not be waited for).
pub async fn terminate(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            tracing::warn!(pid = ?child.id(), "did not stop within {grace:?}: killing it");
            let _ = child.kill().await;
            child.wait().await.ok()
        }
    }
}

//! Where `sluice dev` keeps its state: everything lives under one data directory, so that a
//! restart resumes where the last run stopped and `rm -rf` starts afresh.

use std::path::{Path, PathBuf};

/// The layout of the data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Creates the directory if needed; paths are made absolute (worker configs point into it).
    pub fn open(root: &Path) -> Result<DataDir, super::DevError> {
        std::fs::create_dir_all(root).map_err(super::DevError::io(root))?;
        let root = std::fs::canonicalize(root).map_err(super::DevError::io(root))?;
        Ok(DataDir { root })
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// kubesim's objects, one JSON file each.
    pub fn kube(&self) -> PathBuf {
        self.root.join("kube")
    }

    /// The kubeconfig for `kubectl`.
    pub fn kubeconfig(&self) -> PathBuf {
        self.root.join("kubeconfig")
    }

    /// The Web API's SQLite database and signing key.
    pub fn api(&self) -> PathBuf {
        self.root.join("api")
    }

    /// A copy of the bootstrap platform-admin token, readable by its owner only.
    pub fn admin_token(&self) -> PathBuf {
        self.root.join("admin-token")
    }

    /// JetStream storage of the NATS server `sluice dev` starts.
    pub fn nats(&self) -> PathBuf {
        self.root.join("nats")
    }

    /// Logs of the worker processes and of the NATS server.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// The local files of one route Deployment: `route.json` and its Secrets.
    pub fn route(&self, namespace: &str, name: &str) -> PathBuf {
        self.root.join("routes").join(namespace).join(name)
    }

    /// What the workers of a namespace see as their file system root for `file` sinks.
    pub fn files(&self, namespace: &str) -> PathBuf {
        self.root.join("files").join(namespace)
    }
}

/// Writes `bytes` to `path` (creating parent directories) readable by the owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), super::DevError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(super::DevError::io(parent))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(super::DevError::io(&tmp))?;
    f.write_all(bytes).map_err(super::DevError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(super::DevError::io(path))
}

/// Keeps a second `sluice dev` off the same data directory while this one runs; the lock file
/// goes when the guard is dropped.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
}

impl Lock {
    /// Takes `<data dir>/lock`, or says which live process holds it. A lock left by a process
    /// that is gone is taken over.
    pub fn take(data: &DataDir) -> Result<Lock, super::DevError> {
        let path = data.root().join("lock");
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(pid) = text.trim().parse::<u32>()
            && pid != std::process::id()
            && is_sluice(pid)
        {
            return Err(super::DevError::Locked(format!(
                "{} is in use by another sluice dev (pid {pid}); stop it or choose another \
                 --data-dir",
                data.root().display()
            )));
        }
        std::fs::write(&path, std::process::id().to_string())
            .map_err(super::DevError::io(&path))?;
        Ok(Lock { path })
    }
}

/// Whether process `pid` is alive (not a zombie, whose command line is empty) and runs a
/// `sluice` binary (the pid was not reused by something else).
fn is_sluice(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|raw| {
        let program = raw.split(|b| *b == 0).next().unwrap_or_default();
        let program = String::from_utf8_lossy(program);
        Path::new(program.as_ref())
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains("sluice"))
    })
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

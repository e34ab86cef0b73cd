//! Where the objects live between restarts. The server keeps everything in memory and tells a
//! [`Persistence`] about each change; [`DirStore`] writes them to a directory so a restarted
//! server resumes where it stopped.

use serde_json::Value;
use std::path::{Path, PathBuf};

/// Receives every stored change; `load` returns the objects to start with.
pub trait Persistence: Send {
    /// The objects saved earlier (each with its `resourceVersion`), in any order.
    fn load(&self) -> std::io::Result<Vec<Value>>;
    /// An object was created or changed. `path` identifies it uniquely.
    fn put(&mut self, path: &str, object: &Value) -> std::io::Result<()>;
    /// An object was removed.
    fn remove(&mut self, path: &str) -> std::io::Result<()>;
    /// The cluster's resource version moved to `rv` without a stored object carrying it (a
    /// removal). Keeping it lets a restarted server continue above every version a client has
    /// seen, instead of handing out a version twice. The default keeps nothing.
    fn put_resource_version(&mut self, rv: u64) -> std::io::Result<()> {
        let _ = rv;
        Ok(())
    }
    /// The last version given to [`Persistence::put_resource_version`] (0 when none).
    fn load_resource_version(&self) -> std::io::Result<u64> {
        Ok(0)
    }
}

/// Keeps nothing: state lives as long as the process.
#[derive(Debug, Default)]
pub struct MemoryOnly;

impl Persistence for MemoryOnly {
    fn load(&self) -> std::io::Result<Vec<Value>> {
        Ok(vec![])
    }
    fn put(&mut self, _path: &str, _object: &Value) -> std::io::Result<()> {
        Ok(())
    }
    fn remove(&mut self, _path: &str) -> std::io::Result<()> {
        Ok(())
    }
}

/// One JSON file per object under a directory, written atomically (write then rename).
#[derive(Debug)]
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    /// Uses (and creates) `root`.
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(DirStore { root })
    }

    fn file(&self, path: &str) -> PathBuf {
        // Object paths are made of DNS names and '/', so they are safe file names once '/' is
        // replaced; '~' cannot appear in a Kubernetes name.
        self.root.join(format!("{}.json", path.replace('/', "~")))
    }
}

impl Persistence for DirStore {
    fn load(&self) -> std::io::Result<Vec<Value>> {
        let mut out = vec![];
        for entry in std::fs::read_dir(&self.root)? {
            let p = entry?.path();
            if p.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let text = std::fs::read(&p)?;
            let v: Value = serde_json::from_slice(&text).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", p.display()),
                )
            })?;
            out.push(v);
        }
        Ok(out)
    }

    fn put(&mut self, path: &str, object: &Value) -> std::io::Result<()> {
        let file = self.file(path);
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(object)?)?;
        std::fs::rename(&tmp, &file)
    }

    fn remove(&mut self, path: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.file(path)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn put_resource_version(&mut self, rv: u64) -> std::io::Result<()> {
        // Not a `.json` file, so `load` does not take it for an object.
        let file = self.root.join(RESOURCE_VERSION_FILE);
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, rv.to_string())?;
        std::fs::rename(&tmp, &file)
    }

    fn load_resource_version(&self) -> std::io::Result<u64> {
        match std::fs::read_to_string(self.root.join(RESOURCE_VERSION_FILE)) {
            Ok(text) => text.trim().parse().map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{RESOURCE_VERSION_FILE}: not a number: {text:?}"),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }
}

/// The file of a [`DirStore`] that keeps the resource version counter.
const RESOURCE_VERSION_FILE: &str = "resource-version";

/// Whether a directory holds saved state.
pub fn has_state(root: &Path) -> bool {
    std::fs::read_dir(root)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dir_store_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = DirStore::new(dir.path()).unwrap();
        s.put("apps/deployments/t1/d", &json!({"a": 1})).unwrap();
        s.put("core/namespaces//t1", &json!({"b": 2})).unwrap();
        s.remove("core/namespaces//t1").unwrap();
        s.remove("never/existed").unwrap();
        assert_eq!(s.load_resource_version().unwrap(), 0);
        s.put_resource_version(42).unwrap();
        let loaded = s.load().unwrap();
        assert_eq!(loaded, vec![json!({"a": 1})]);
        assert_eq!(s.load_resource_version().unwrap(), 42);
        assert!(has_state(dir.path()));
    }
}

//! What a pod would find mounted, made local: the Secrets a route Deployment mounts are written
//! under the route's directory, and the route config's mounted paths are rewritten to point
//! there (`/var/run/sluice/secrets/<name>/<key>` → `<route dir>/secrets/<name>/<key>`).
//! Paths of `file` sinks are rooted in the namespace's files directory, which plays the
//! worker's file system. No path of a route config leads outside the data directory: `..`,
//! paths outside the mounted Secrets and symbolic links out are refused ([`Escape`]), and the
//! route's Deployment reports the refusal as its failure.

use super::DevError;
use super::paths::write_private;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use serde_json::Value;
use sluice_core::route::SECRETS_MOUNT_DIR;
use std::path::{Component, Path, PathBuf};

/// Writes each key of each named Secret of `namespace` to `<dir>/<secret>/<key>` (mode 0600).
/// A Secret that does not exist is an error, as it keeps a real pod from starting.
pub async fn materialise(
    client: &Client,
    namespace: &str,
    names: &[String],
    dir: &Path,
) -> Result<(), DevError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for name in names {
        let secret = api.get_opt(name).await?.ok_or_else(|| {
            DevError::Kube(format!("secret {namespace}/{name} does not exist (yet)"))
        })?;
        for (key, value) in secret.data.unwrap_or_default() {
            if key.is_empty() || key.contains('/') || key == "." || key == ".." {
                continue;
            }
            write_private(&dir.join(name).join(&key), &value.0)?;
        }
    }
    Ok(())
}

/// Rewrites a route config (the JSON of `sluice_core::route::RouteConfig`) for a local worker,
/// confining every path it names to the data directory:
///
/// - mounted Secret paths (fields named `...File` or `...Dir`) must lie under
///   `/var/run/sluice/secrets` and are rewritten into `secrets_dir`;
/// - a `file` sink's path, and an object-store sink's `file://` URL, are rooted at
///   `files_root` (the worker's file system, as in a pod).
///
/// `..` components are refused, and so is any path that resolves outside its root through a
/// symbolic link (checked on what exists now: nothing but the worker writes there, and
/// tenants cannot make links). Returns the local path of the `file` sink, if any.
pub fn localize(
    config: &mut Value,
    secrets_dir: &Path,
    files_root: &Path,
) -> Result<Option<PathBuf>, Escape> {
    rewrite_secret_paths(config, "", secrets_dir)?;
    let Some(sink) = config.get_mut("sink") else {
        return Ok(None);
    };
    match sink.get("kind").and_then(Value::as_str) {
        Some("file") => {
            let Some(path) = sink.get("path").and_then(Value::as_str) else {
                return Ok(None);
            };
            let local = confine(files_root, path).map_err(|why| Escape::new("sink.path", why))?;
            sink["path"] = Value::String(local.to_string_lossy().into_owned());
            Ok(Some(local))
        }
        Some("objectStore") => {
            let Some(url) = sink.get("url").and_then(Value::as_str) else {
                return Ok(None);
            };
            if let Some(path) = url.strip_prefix("file://") {
                let local =
                    confine(files_root, path).map_err(|why| Escape::new("sink.url", why))?;
                sink["url"] = Value::String(format!("file://{}", local.to_string_lossy()));
            }
            Ok(None)
        }
        _ => Ok(None),
    }
}

/// A path of a route config that would leave the data directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {why}")]
pub struct Escape {
    /// The field of the route config, e.g. `sink.path`.
    pub field: String,
    /// Why the path is refused.
    pub why: String,
}

impl Escape {
    fn new(field: &str, why: String) -> Self {
        Escape {
            field: field.to_string(),
            why,
        }
    }
}

/// `path` (absolute or relative) rooted at `root`, or why it is refused: a `..` component,
/// nothing but the root itself, or a symbolic link on the way that leads out of `root`.
pub fn confine(root: &Path, path: &str) -> Result<PathBuf, String> {
    let mut local = root.to_path_buf();
    let mut depth = 0;
    for part in Path::new(path).components() {
        match part {
            Component::Normal(p) => {
                local.push(p);
                depth += 1;
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                return Err(format!("{path:?}: '..' is not allowed in a path"));
            }
        }
    }
    if depth == 0 {
        return Err(format!("{path:?} names no file"));
    }
    // The deepest part that exists, from the root down, must resolve inside the root
    // (symbolic links included; a link that resolves nowhere is refused too).
    let real_root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let existing = local
        .ancestors()
        .take_while(|p| p.starts_with(root))
        .find(|p| p.symlink_metadata().is_ok());
    if let Some(existing) = existing {
        let inside = std::fs::canonicalize(existing).is_ok_and(|real| real.starts_with(&real_root));
        if !inside {
            return Err(format!(
                "{path:?} leads outside the data directory through a symbolic link"
            ));
        }
    }
    Ok(local)
}

/// Whether a route config field holds the path of a mounted file or directory.
fn is_path_field(key: &str) -> bool {
    key.ends_with("File") || key.ends_with("Dir")
}

fn rewrite_secret_paths(v: &mut Value, field: &str, secrets_dir: &Path) -> Result<(), Escape> {
    match v {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                let name = if field.is_empty() {
                    key.clone()
                } else {
                    format!("{field}.{key}")
                };
                match value {
                    Value::String(s) if is_path_field(key) => {
                        let rest = s
                            .strip_prefix(SECRETS_MOUNT_DIR)
                            .filter(|r| r.starts_with('/'))
                            .ok_or_else(|| {
                                Escape::new(
                                    &name,
                                    format!(
                                        "{s:?} is not a mounted Secret path (under {SECRETS_MOUNT_DIR}/)"
                                    ),
                                )
                            })?;
                        let local =
                            confine(secrets_dir, rest).map_err(|why| Escape::new(&name, why))?;
                        *s = local.to_string_lossy().into_owned();
                    }
                    other => rewrite_secret_paths(other, &name, secrets_dir)?,
                }
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter_mut()
            .try_for_each(|i| rewrite_secret_paths(i, field, secrets_dir)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mounted_paths_become_local() {
        let mut c = json!({
            "sink": {"kind": "http", "url": "http://x",
                     "authorizationFile": "/var/run/sluice/secrets/hook/token"},
            "source": {"kind": "jetstream"},
        });
        assert_eq!(
            localize(&mut c, Path::new("/d/secrets"), Path::new("/d/files")),
            Ok(None)
        );
        assert_eq!(c["sink"]["authorizationFile"], "/d/secrets/hook/token");
    }

    #[test]
    fn secret_keys_cannot_climb_out() {
        let mut c = json!({"sink": {"kind": "postgres", "table": "t",
            "urlFile": "/var/run/sluice/secrets/db/../../../../etc/passwd"}});
        let err = localize(&mut c, Path::new("/d/secrets"), Path::new("/d/files")).unwrap_err();
        assert_eq!(err.field, "sink.urlFile");
        assert!(err.why.contains("'..'"), "{err}");
        // A path outside the mounted Secrets is refused, whatever its field.
        for (field, value) in [
            ("credentialsFile", "/etc/passwd"),
            ("credentialsDir", "/var/run/sluice/secretsX/a"),
        ] {
            let mut c = json!({"source": {"kind": "jetstream", field: value}});
            let err = localize(&mut c, Path::new("/d/secrets"), Path::new("/d/files")).unwrap_err();
            assert_eq!(err.field, format!("source.{field}"));
            assert!(err.why.contains("not a mounted Secret path"), "{err}");
        }
    }

    #[test]
    fn file_sinks_write_under_the_files_root() {
        let mut c = json!({"sink": {"kind": "file", "path": "/tmp/out.ndjson"}});
        let local = localize(&mut c, Path::new("/d/s"), Path::new("/d/files/ns")).unwrap();
        assert_eq!(local, Some(PathBuf::from("/d/files/ns/tmp/out.ndjson")));
        assert_eq!(c["sink"]["path"], "/d/files/ns/tmp/out.ndjson");
        let mut relative = json!({"sink": {"kind": "file", "path": "./out/a.ndjson"}});
        let local = localize(&mut relative, Path::new("/d/s"), Path::new("/f")).unwrap();
        assert_eq!(local, Some(PathBuf::from("/f/out/a.ndjson")));
        let mut stdout = json!({"sink": {"kind": "file"}});
        assert_eq!(
            localize(&mut stdout, Path::new("/d/s"), Path::new("/f")),
            Ok(None)
        );
        assert!(stdout["sink"].get("path").is_none());
    }

    #[test]
    fn file_sinks_cannot_climb_out() {
        for path in ["../../../etc/cron.d/x", "/tmp/../../../../home/x", "a/.."] {
            let mut c = json!({"sink": {"kind": "file", "path": path}});
            let err = localize(&mut c, Path::new("/d/s"), Path::new("/d/files/ns")).unwrap_err();
            assert_eq!(err.field, "sink.path");
            assert!(err.why.contains("'..'"), "{path}: {err}");
        }
        let mut root = json!({"sink": {"kind": "file", "path": "/"}});
        let err = localize(&mut root, Path::new("/d/s"), Path::new("/d/files/ns")).unwrap_err();
        assert!(err.why.contains("names no file"), "{err}");
        let mut store = json!({"sink": {"kind": "objectStore", "url": "file:///../../etc"}});
        let err = localize(&mut store, Path::new("/d/s"), Path::new("/d/files/ns")).unwrap_err();
        assert_eq!(err.field, "sink.url");
        let mut store = json!({"sink": {"kind": "objectStore", "url": "file:///bucket"}});
        localize(&mut store, Path::new("/d/s"), Path::new("/d/files/ns")).unwrap();
        assert_eq!(store["sink"]["url"], "file:///d/files/ns/bucket");
    }

    #[test]
    fn symbolic_links_out_of_the_root_are_refused() {
        let data = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = data.path().join("files/ns");
        std::fs::create_dir_all(&root).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("escape")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("f"), root.join("file-link")).unwrap();
        std::fs::create_dir_all(root.join("inside")).unwrap();
        std::os::unix::fs::symlink(root.join("inside"), root.join("ok-link")).unwrap();
        for path in ["/escape/out.ndjson", "/escape", "file-link"] {
            let err = confine(&root, path).unwrap_err();
            assert!(err.contains("symbolic link"), "{path}: {err}");
        }
        assert_eq!(
            confine(&root, "/ok-link/out.ndjson").unwrap(),
            root.join("ok-link/out.ndjson")
        );
        // Secrets too.
        let secrets = data.path().join("routes/ns/r/secrets");
        std::fs::create_dir_all(secrets.join("db")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", secrets.join("db/url")).unwrap();
        let mut c = json!({"sink": {"kind": "postgres", "table": "t",
            "urlFile": "/var/run/sluice/secrets/db/url"}});
        let err = localize(&mut c, &secrets, &root).unwrap_err();
        assert!(err.why.contains("symbolic link"), "{err}");
    }
}

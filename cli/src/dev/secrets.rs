//! What a pod would find mounted, made local: the Secrets a route Deployment mounts are written
//! under the route's directory, and the route config's mounted paths are rewritten to point
//! there (`/var/run/sluice/secrets/<name>/<key>` → `<route dir>/secrets/<name>/<key>`).
//! Paths of `file` sinks are rooted in the namespace's files directory, which plays the
//! worker's file system.

use super::DevError;
use super::paths::write_private;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use serde_json::Value;
use sluice_core::route::SECRETS_MOUNT_DIR;
use std::path::{Path, PathBuf};

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
            if key.contains('/') || key == ".." {
                continue;
            }
            write_private(&dir.join(name).join(&key), &value.0)?;
        }
    }
    Ok(())
}

/// Rewrites a route config (the JSON of `sluice_core::route::RouteConfig`) for a local worker:
/// mounted Secret paths point into `secrets_dir`, a `file` sink's path is rooted at
/// `files_root`. Returns the local path of the `file` sink, if any.
pub fn localize(config: &mut Value, secrets_dir: &Path, files_root: &Path) -> Option<PathBuf> {
    rewrite_secret_paths(config, secrets_dir);
    let sink = config.get_mut("sink")?;
    if sink.get("kind").and_then(Value::as_str) != Some("file") {
        return None;
    }
    let path = sink.get("path").and_then(Value::as_str)?;
    let local = files_root.join(path.trim_start_matches('/'));
    sink["path"] = Value::String(local.to_string_lossy().into_owned());
    Some(local)
}

fn rewrite_secret_paths(v: &mut Value, secrets_dir: &Path) {
    match v {
        Value::String(s) => {
            if let Some(rest) = s.strip_prefix(SECRETS_MOUNT_DIR) {
                let rest = rest.trim_start_matches('/');
                *s = secrets_dir.join(rest).to_string_lossy().into_owned();
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|i| rewrite_secret_paths(i, secrets_dir)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|i| rewrite_secret_paths(i, secrets_dir)),
        _ => {}
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
            "source": {"kind": "jetstream", "credentialsFile": "/etc/other"},
        });
        assert_eq!(
            localize(&mut c, Path::new("/d/secrets"), Path::new("/d/files")),
            None
        );
        assert_eq!(c["sink"]["authorizationFile"], "/d/secrets/hook/token");
        assert_eq!(c["source"]["credentialsFile"], "/etc/other");
    }

    #[test]
    fn file_sinks_write_under_the_files_root() {
        let mut c = json!({"sink": {"kind": "file", "path": "/tmp/out.ndjson"}});
        let local = localize(&mut c, Path::new("/d/s"), Path::new("/d/files/ns"));
        assert_eq!(local, Some(PathBuf::from("/d/files/ns/tmp/out.ndjson")));
        assert_eq!(c["sink"]["path"], "/d/files/ns/tmp/out.ndjson");
        let mut stdout = json!({"sink": {"kind": "file"}});
        assert_eq!(
            localize(&mut stdout, Path::new("/d/s"), Path::new("/f")),
            None
        );
        assert!(stdout["sink"].get("path").is_none());
    }
}

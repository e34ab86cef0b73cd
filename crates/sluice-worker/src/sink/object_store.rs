//! Object storage sink: each batch becomes one gzip-compressed NDJSON object,
//! `<prefix><yyyy>/<mm>/<dd>/<HH>/<worker>-<unix ms>-<uuid>.ndjson.gz`, written through the
//! `object_store` crate to a local directory (`file:///path`) or an S3-compatible bucket
//! (`s3://bucket`, with region, endpoint and credentials from `credentialsDir`).
//!
//! Requests to the bucket go through the platform's egress policy (see [`super::egress`]),
//! and without `credentialsDir` they are unsigned unless the platform allows ambient cloud
//! credentials: a tenant never acts with the node's or the pod's identity by default.

use super::{SetupError, Sink, SinkError, egress, ndjson};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;
use object_store::aws::AmazonS3Builder;
use object_store::client::{HttpClient, HttpConnector};
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore};
use sluice_core::egress::{Egress, SinkPolicy};
use sluice_core::route::Sink as SinkConfig;
use std::io::Write;
use std::sync::Arc;

/// Writes batches as objects.
pub struct ObjectStoreSink {
    store: Arc<dyn ObjectStore>,
    base: String,
    writer: String,
}

/// The key of the object holding a batch written at `now`.
pub fn object_key(base: &str, writer: &str, now: DateTime<Utc>, unique: &str) -> String {
    format!(
        "{base}{}/{writer}-{}-{unique}.ndjson.gz",
        now.format("%Y/%m/%d/%H"),
        now.timestamp_millis()
    )
}

/// Gzip-compresses NDJSON lines.
pub fn gzip_ndjson(events: &[Bytes]) -> std::io::Result<Vec<u8>> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(&ndjson(events))?;
    gz.finish()
}

impl ObjectStoreSink {
    /// A sink for an `objectStore` sink configuration, within the platform's `policy`
    /// (`egress` is the same, parsed); `writer` names this worker in keys.
    pub fn new(
        config: &SinkConfig,
        policy: &SinkPolicy,
        egress: Arc<Egress>,
        writer: &str,
    ) -> Result<Self, SetupError> {
        let SinkConfig::ObjectStore {
            url,
            prefix,
            region,
            endpoint,
            credentials_dir,
        } = config
        else {
            return Err(SetupError("not an objectStore sink".into()));
        };
        let parsed = url::Url::parse(url).map_err(|e| SetupError(format!("sink.url: {e}")))?;
        let mut options: Vec<(String, String)> = vec![];
        if let Some(r) = region {
            options.push(("aws_region".into(), r.clone()));
        }
        if let Some(e) = endpoint {
            egress::check_url(&egress, e).map_err(|d| SetupError(format!("sink.endpoint: {d}")))?;
            options.push(("aws_endpoint".into(), e.clone()));
            if e.starts_with("http://") {
                options.push(("aws_allow_http".into(), "true".into()));
            }
        }
        if let Some(dir) = credentials_dir {
            for (file, key) in [
                ("accessKeyId", "aws_access_key_id"),
                ("secretAccessKey", "aws_secret_access_key"),
            ] {
                let path = format!("{}/{file}", dir.trim_end_matches('/'));
                let value = crate::config::read_secret(&path)
                    .map_err(|e| SetupError(format!("sink.credentialsDir {path}: {e}")))?;
                options.push((key.into(), value));
            }
        }
        let (store, path) = if parsed.scheme() == "file" {
            // Keys are relative to the directory, which is created when missing.
            let dir = parsed
                .to_file_path()
                .map_err(|_| SetupError(format!("sink.url: {url} is not a local path")))?;
            std::fs::create_dir_all(&dir).map_err(|e| {
                SetupError(format!("sink.url: cannot create {}: {e}", dir.display()))
            })?;
            let fs = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| SetupError(format!("sink.url: {e}")))?;
            (Arc::new(fs) as Arc<dyn ObjectStore>, Path::default())
        } else {
            if credentials_dir.is_none() && !policy.allow_ambient_credentials {
                options.push(("aws_skip_signature".into(), "true".into()));
            }
            // Ambient credentials include those in the environment: read it only when allowed.
            let mut builder = if policy.allow_ambient_credentials {
                AmazonS3Builder::from_env()
            } else {
                AmazonS3Builder::new()
            };
            builder = builder
                .with_url(url.as_str())
                .with_http_connector(PolicyConnector { egress });
            for (key, value) in options {
                let key = key
                    .parse()
                    .map_err(|e| SetupError(format!("sink: {key}: {e}")))?;
                builder = builder.with_config(key, value);
            }
            let store = builder
                .build()
                .map_err(|e| SetupError(format!("sink.url: {e}")))?;
            (
                Arc::new(store) as Arc<dyn ObjectStore>,
                Path::from_url_path(parsed.path())
                    .map_err(|e| SetupError(format!("sink.url: {e}")))?,
            )
        };
        let mut base = path.to_string();
        if !base.is_empty() {
            base.push('/');
        }
        base.push_str(prefix);
        Ok(ObjectStoreSink {
            store,
            base,
            writer: writer.to_owned(),
        })
    }
}

/// Builds the object store's HTTP clients with the egress policy's resolver, no redirects
/// and no proxy (the store's own timeouts and retries apply on top).
#[derive(Debug)]
struct PolicyConnector {
    egress: Arc<Egress>,
}

impl HttpConnector for PolicyConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = egress::client_builder(self.egress.clone())
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: Box::new(e),
            })?;
        Ok(HttpClient::new(client))
    }
}

impl Sink for ObjectStoreSink {
    async fn deliver(&mut self, events: &[Bytes]) -> Result<(), SinkError> {
        let body = gzip_ndjson(events).map_err(|e| SinkError::Transient(format!("gzip: {e}")))?;
        let key = object_key(
            &self.base,
            &self.writer,
            Utc::now(),
            &uuid::Uuid::new_v4().simple().to_string(),
        );
        let path = Path::parse(&key).map_err(|e| SinkError::Rejected(format!("key {key}: {e}")))?;
        self.store
            .put(&path, Bytes::from(body).into())
            .await
            .map(|_| ())
            .map_err(|e| SinkError::Transient(format!("object store put {key}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read;

    #[test]
    fn keys_are_partitioned_by_hour() {
        let t = DateTime::parse_from_rfc3339("2026-03-04T05:06:07Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            object_key("events/", "w", t, "u"),
            format!(
                "events/2026/03/04/05/w-{}-u.ndjson.gz",
                t.timestamp_millis()
            )
        );
    }

    #[tokio::test]
    async fn writes_gzip_ndjson_to_a_local_directory() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/out", dir.path().display());
        let config = SinkConfig::ObjectStore {
            url,
            prefix: "p/".into(),
            region: None,
            endpoint: None,
            credentials_dir: None,
        };
        let policy = SinkPolicy::default();
        let egress = Arc::new(Egress::new(&policy).unwrap());
        let mut sink = ObjectStoreSink::new(&config, &policy, egress, "route-a").unwrap();
        sink.deliver(&[
            Bytes::from_static(b"{\"a\":1}"),
            Bytes::from_static(b"{\"a\":2}"),
        ])
        .await
        .unwrap();
        let files: Vec<_> = walk(&dir.path().join("out/p"));
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(files[0].to_string_lossy().ends_with(".ndjson.gz"));
        let mut text = String::new();
        GzDecoder::new(std::fs::File::open(&files[0]).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"a\":2}\n");
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = vec![];
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}

//! `sluice-operator broker-bootstrap`: the broker identities of a new installation (NATS
//! operator mode, `docs/broker.md`), written as files into a directory, or into a Secret (what
//! the chart's hook Job does when `platform.broker.identities.generate` is set).
//!
//! A Secret that exists already is kept as it is: the identities of an installation never
//! change under it (a new operator key would orphan every tenant account the broker holds).

use crate::Error;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The files (or Secret keys) of a bootstrap, and what each is for.
pub const FILES: [(&str, &str); 5] = [
    (
        "operator.seed",
        "--broker-operator-seed-file of sluice-operator (secret)",
    ),
    (
        "admin.creds",
        "--broker-admin-creds-file of sluice-operator (secret)",
    ),
    (
        "ingest.seed",
        "--nats-ingest-seed-file of sluice-api (secret)",
    ),
    ("ingest.pub", "--broker-ingest-key of sluice-operator"),
    (
        "nats-server.conf",
        "the nats-server configuration (operator mode, full resolver)",
    ),
];

/// Where the nats-server of the configuration listens and keeps its data.
#[derive(Debug, Clone)]
pub struct ServerPlace {
    /// Address of the client port.
    pub host: String,
    /// The client port.
    pub port: u16,
    /// Where the server keeps its account JWTs and JetStream data.
    pub data_dir: PathBuf,
}

/// A new bootstrap: the contents of [`FILES`], in that order (pure but for the key
/// generation).
pub fn generate(place: &ServerPlace) -> Result<Vec<(&'static str, String)>, Error> {
    let b = sluice_broker::Bootstrap::generate(sluice_broker::jwt::now())
        .map_err(|e| Error::Broker(e.to_string()))?;
    let contents = [
        b.operator_seed(),
        b.admin_creds.clone(),
        b.ingest_seed(),
        b.ingest.public_key(),
        b.server_config(&place.host, place.port, &place.data_dir)
            .render(),
    ];
    Ok(FILES.iter().map(|(name, _)| *name).zip(contents).collect())
}

/// Writes `files` into `dir` (created), owner-only; an existing file is an error, never
/// overwritten. Answers the paths written.
pub fn write_dir(dir: &Path, files: &[(&str, String)]) -> Result<Vec<PathBuf>, Error> {
    let io = |what: &Path, e: std::io::Error| Error::Broker(format!("{}: {e}", what.display()));
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut written = vec![];
    for (name, text) in files {
        let path = dir.join(name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path).map_err(|e| io(&path, e))?;
        file.write_all(text.as_bytes()).map_err(|e| io(&path, e))?;
        written.push(path);
    }
    Ok(written)
}

/// The Secret `namespace/name` holding `files` (pure).
pub fn secret(namespace: &str, name: &str, files: &[(&str, String)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([
                (
                    "app.kubernetes.io/part-of".to_string(),
                    "sluice".to_string(),
                ),
                (
                    "app.kubernetes.io/component".to_string(),
                    "broker-identities".to_string(),
                ),
            ])),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(
            files
                .iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

/// What [`create_secret`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretOutcome {
    /// The Secret was created with new identities.
    Created,
    /// The Secret existed already and was left as it is.
    Kept,
}

/// Creates the Secret `namespace/name` with new identities, unless it exists. Needs only the
/// right to create Secrets: an existing one is detected by the conflict, never read.
pub async fn create_secret(
    client: kube::Client,
    namespace: &str,
    name: &str,
    place: &ServerPlace,
) -> Result<SecretOutcome, Error> {
    let files = generate(place)?;
    let api = Api::<Secret>::namespaced(client, namespace);
    match api
        .create(&PostParams::default(), &secret(namespace, name, &files))
        .await
    {
        Ok(_) => Ok(SecretOutcome::Created),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(SecretOutcome::Kept),
        Err(e) => Err(Error::Kube(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_holds_every_file_and_nothing_else() {
        let place = ServerPlace {
            host: "0.0.0.0".into(),
            port: 4222,
            data_dir: "/data".into(),
        };
        let files = generate(&place).unwrap();
        let s = secret("sluice-system", "sluice-broker-identities", &files);
        let data = s.data.unwrap();
        let keys: Vec<&str> = data.keys().map(String::as_str).collect();
        let mut expected: Vec<&str> = FILES.iter().map(|(n, _)| *n).collect();
        expected.sort();
        assert_eq!(keys, expected);
        let seed = String::from_utf8(data["operator.seed"].0.clone()).unwrap();
        assert!(seed.starts_with("SO"), "an operator seed");
        let conf = String::from_utf8(data["nats-server.conf"].0.clone()).unwrap();
        assert!(conf.contains("port: 4222"), "{conf}");
    }
}

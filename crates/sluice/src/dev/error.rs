//! What can stop `sluice dev`.

use std::path::PathBuf;

/// Errors of `sluice dev`. Each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// A file or directory under the data dir could not be used.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another `sluice dev` uses the data directory.
    #[error("{0}")]
    Locked(String),
    /// No NATS server is configured and none can be started.
    #[error("{0}")]
    NoNats(String),
    /// The NATS server could not be started or reached, or the one on the port is unusable.
    #[error("NATS: {0}")]
    Nats(String),
    /// The `sluice-worker` binary is nowhere to be found.
    #[error("{0}")]
    NoWorker(String),
    /// A port is taken.
    #[error("cannot listen on {addr}: {source} (choose another port with {flag})")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The flag choosing it.
        flag: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The embedded Kubernetes API failed.
    #[error("Kubernetes API: {0}")]
    Kube(String),
    /// The Web API's store failed.
    #[error("the Web API's database: {0}")]
    Store(#[from] sluice_api::store::StoreError),
    /// The Web API failed.
    #[error("the Web API: {0}")]
    Api(String),
    /// A route config names a path outside the data directory.
    #[error("the route configuration is refused: {0}")]
    Escape(#[from] super::secrets::Escape),
    /// The operator stopped with an error.
    #[error("the operator: {0}")]
    Operator(#[from] sluice_operator::Error),
}

impl DevError {
    /// An I/O error about `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DevError {
        let path = path.into();
        move |source| DevError::Io { path, source }
    }
}

impl From<kube::Error> for DevError {
    fn from(e: kube::Error) -> Self {
        DevError::Kube(e.to_string())
    }
}

//! The operator's one error type: what fails a reconcile (retried with backoff), and what
//! stops a command or the operator itself. Variant names become the `reason` label of the
//! error metric.

use std::net::SocketAddr;

/// An error of the operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or failed a request.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// An object could not be (de)serialized.
    #[error("serialization: {0}")]
    Serialization(#[from] serde_json::Error),
    /// The object has no namespace or name (cannot happen for objects from the API).
    #[error("the object lacks {0}")]
    MissingField(&'static str),
    /// The broker failed (the reconcile is retried).
    #[error("broker: {0}")]
    Broker(String),
    /// Adding or removing a Stream's finalizer failed, or the cleanup it guards did.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// No Kubernetes client could be configured.
    #[error("cannot configure a Kubernetes client (KUBECONFIG or in-cluster): {0}")]
    Client(#[source] kube::Error),
    /// Writing a command's output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// A sink CIDR flag does not parse.
    #[error("--sink-allow-cidrs / --sink-deny-cidrs: {0}")]
    SinkCidr(#[from] sluice_core::egress::CidrError),
    /// The metrics endpoint could not listen.
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, #[source] std::io::Error),
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The object a child was about to be written for is gone, being deleted, or was replaced
    /// by a new one of the same name (another uid) since it was read: nothing is written, and
    /// the reconcile of what is there now follows from the watch.
    #[error("{kind} {name:?} is gone or being deleted (uid {uid}); its children are not written")]
    OwnerGone {
        /// The owner's kind.
        kind: String,
        /// The owner's name.
        name: String,
        /// The uid the children would have pointed at.
        uid: String,
    },
    /// This replica lost the leader lease; it must stop (and be restarted) so that only one
    /// replica acts.
    #[error("lost the leader lease")]
    LostLease,
}

impl Error {
    /// The label of this error in metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(s)) if s.code == 404 => "not_found",
            Error::Kube(_) => "kube",
            Error::Serialization(_) => "serialization",
            Error::MissingField(_) => "missing_field",
            Error::Broker(_) => "broker",
            Error::Finalizer(_) => "finalizer",
            Error::Client(_) => "client",
            Error::Output(_) => "output",
            Error::SinkCidr(_) => "sink_cidr",
            Error::Listen(..) => "listen",
            Error::Metrics(_) => "metrics",
            Error::OwnerGone { .. } => "owner_gone",
            Error::LostLease => "lost_lease",
        }
    }
}

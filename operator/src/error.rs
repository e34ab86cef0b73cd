//! Errors of the reconcilers. Variant names become the `reason` label of the error metric.

/// A reconcile that could not finish; it is retried with backoff.
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
    /// Adding or removing a finalizer failed, or the cleanup it guards did.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
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
        }
    }
}

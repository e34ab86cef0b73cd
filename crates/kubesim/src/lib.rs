//! kubesim: an in-process Kubernetes API server for tests and local development.
//!
//! It speaks the Kubernetes REST protocol over plain HTTP on a loopback port, so the real
//! `kubectl` and kube-rs clients, watchers and controllers work against it as against a real
//! cluster. State lives in memory (optionally mirrored to a directory); there are no nodes and
//! no pods: a pluggable [`kubelet::Kubelet`] decides what a Deployment's pods do.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let server = kubesim::Server::start(kubesim::Cluster::new(), "127.0.0.1:0".parse().unwrap()).await?;
//! println!("{}", server.kubeconfig());
//! # Ok(()) }
//! ```
//!
//! Where things are: `auth/` decides who a request runs as and whether it may (bearer tokens,
//! impersonation, RBAC, the review APIs; its module docs list the options); `cluster/` holds the state and the API semantics (get, list, watch,
//! create, update, patch, delete, garbage collection); `http/` maps the REST protocol onto it;
//! `validation/` checks custom resources against their CRD's schema and CEL rules; `merge/`
//! implements server-side apply, managed fields and strategic merge patch; `table.rs`,
//! `jsonpath.rs`, `selector.rs` and `protobuf.rs` are the smaller pieces of the protocol.

pub mod admission;
pub mod auth;
pub mod cluster;
pub mod error;
pub mod http;
pub mod jsonpath;
pub mod kubelet;
pub mod merge;
pub mod meta;
pub mod persist;
pub mod protobuf;
pub mod resources;
pub mod selector;
mod server;
pub mod table;
pub mod validation;

pub use cluster::{Cluster, ClusterConfig};
pub use error::ApiError;
pub use kubelet::{Kubelet, PodBehaviour};
pub use server::{Server, ServerConfig, kubeconfig};

/// The Kubernetes version the server reports at `/version` (and in OpenAPI documents).
pub const KUBERNETES_VERSION: &str = "v1.32.0";

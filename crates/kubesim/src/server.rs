//! Running the HTTP server on a loopback port.

use crate::auth::{AuthConfig, Authenticator};
use crate::cluster::Cluster;
use crate::http::{Shared, handle};
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Settings of the HTTP server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub bind: SocketAddr,
    /// How often watches that allow bookmarks receive one.
    pub bookmark_interval: Duration,
    /// Static tokens, and whether requests without a token are refused (see [`crate::auth`]).
    pub auth: AuthConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            bookmark_interval: Duration::from_secs(5),
            auth: AuthConfig::default(),
        }
    }
}

/// A running API server.
pub struct Server {
    cluster: Arc<Cluster>,
    addr: SocketAddr,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<()>,
    authenticator: Arc<Authenticator>,
}

impl Server {
    /// Serves `cluster` on `bind`.
    pub async fn start(cluster: Arc<Cluster>, bind: SocketAddr) -> std::io::Result<Server> {
        Self::start_with(
            cluster,
            ServerConfig {
                bind,
                ..Default::default()
            },
        )
        .await
    }

    /// Serves `cluster` with explicit settings.
    pub async fn start_with(
        cluster: Arc<Cluster>,
        config: ServerConfig,
    ) -> std::io::Result<Server> {
        let listener = tokio::net::TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let (shutdown, rx) = tokio::sync::watch::channel(false);
        let authenticator = Arc::new(Authenticator::new(config.auth));
        let shared = Arc::new(Shared {
            cluster: cluster.clone(),
            address: addr.to_string(),
            bookmark_interval: config.bookmark_interval,
            shutdown: rx.clone(),
            authenticator: authenticator.clone(),
        });
        let app = Router::new().fallback(handle).with_state(shared);
        let mut stop = rx;
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "kubesim server stopped");
            }
        });
        Ok(Server {
            cluster,
            addr,
            shutdown,
            task,
            authenticator,
        })
    }

    /// The cluster behind the server.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig (YAML) that points kubectl and kube-rs at this server, with no credentials.
    pub fn kubeconfig(&self) -> String {
        kubeconfig(&self.url())
    }

    /// A kubeconfig like [`Server::kubeconfig`] whose user sends `token`.
    pub fn kubeconfig_with_token(&self, token: &str) -> String {
        kubeconfig(&self.url()).replace(
            "  user: {}\n",
            &format!("  user:\n    token: {}\n", serde_json::Value::from(token)),
        )
    }

    /// Issues a token of the ServiceAccount `namespace/name` valid for `lifetime`, as a
    /// TokenRequest would (`kubectl create token`): requests with it run as that account.
    pub fn issue_token(
        &self,
        namespace: &str,
        name: &str,
        lifetime: Duration,
    ) -> Result<String, crate::ApiError> {
        self.authenticator
            .issue(
                &self.cluster,
                namespace,
                name,
                chrono::TimeDelta::from_std(lifetime).unwrap_or(chrono::TimeDelta::MAX),
            )
            .map(|(token, _)| token)
    }

    /// Stops serving: open watches end, then the listener closes.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// A kubeconfig for a server at `url`, context `kubesim`, namespace `default`.
pub fn kubeconfig(url: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: kubesim
  cluster:
    server: {url}
contexts:
- name: kubesim
  context:
    cluster: kubesim
    user: kubesim
    namespace: default
current-context: kubesim
users:
- name: kubesim
  user: {{}}
"
    )
}

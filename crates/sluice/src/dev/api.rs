//! The Web API, in-process: an SQLite file under the data directory (or `DATABASE_URL`), a
//! signing key generated once and kept there, ingest into the dev NATS, the bootstrap admin
//! token written to `admin-token` in the data directory (mode 0600) whenever a new one is
//! issued (on the first start, and once the previous one expired or was revoked), and the
//! metrics on a free loopback port of their own.

use super::DevError;
use super::paths::{DataDir, write_private};
use base64::Engine;
use rand::RngCore;
use sluice_api::k8s::Kube;
use sluice_api::server::ApiServer;
use sluice_api::store::Store;
use sluice_api::{AppState, Config};
use std::net::SocketAddr;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The running API.
#[derive(Debug)]
pub struct WebApi {
    /// Its base URL.
    pub url: String,
    /// Whether a new bootstrap platform-admin token was issued (and written to the data
    /// directory's `admin-token`) by this start.
    pub bootstrap_token_issued: bool,
    /// The metrics URL (`/metrics`, not served on the API port).
    pub metrics_url: String,
    /// Its state (the store, the registry of tenants).
    pub state: AppState,
    stop: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
}

impl WebApi {
    /// Migrates the store, issues the bootstrap token if no live one exists (writing it to the
    /// data directory), and serves on `listener`.
    pub async fn start(
        data: &DataDir,
        database_url: Option<String>,
        listener: tokio::net::TcpListener,
        client: kube::Client,
        nats_url: &str,
        ingest_seed: Option<String>,
        kafka: Option<&str>,
    ) -> Result<WebApi, DevError> {
        let dir = data.api();
        std::fs::create_dir_all(&dir).map_err(DevError::io(&dir))?;
        let secret = signing_key(&dir.join("jwt-secret"))?;
        let url =
            database_url.unwrap_or_else(|| format!("sqlite:{}", dir.join("sluice.db").display()));
        let store = Store::connect(&url, 4).await?;
        sluice_api::migrate(&store).await?;
        // With tenant accounts, each tenant's events go into its own account; else one
        // connection serves every tenant.
        let (jetstream, accounts) = match ingest_seed {
            Some(seed) => (
                None,
                Some(
                    sluice_api::ingest::broker::TenantAccounts::new(nats_url, &seed)
                        .map_err(|e| DevError::Nats(e.to_string()))?,
                ),
            ),
            None => (
                Some(
                    sluice_api::server::connect_jetstream(nats_url, None)
                        .await
                        .map_err(|e| DevError::Nats(format!("{nats_url}: {e}")))?,
                ),
                None,
            ),
        };
        let state = ApiServer::new(
            Config::default(),
            store,
            Kube::new(client),
            secret.as_bytes(),
        )
        .jetstream(jetstream)
        .tenant_accounts(accounts)
        .kafka(
            kafka
                .map(|k| sluice_api::ingest::kafka::KafkaIngest::new(k, &[]))
                .transpose()
                .map_err(DevError::Api)?,
        )
        .build()
        .map_err(|e| DevError::Api(e.to_string()))?;
        let bootstrap_token = sluice_api::bootstrap_token(&state)
            .await
            .map_err(|e| DevError::Api(format!("cannot issue the bootstrap token: {e}")))?;
        if let Some(token) = &bootstrap_token {
            let path = data.admin_token();
            sluice_api::write_bootstrap_token_file(&path, token).map_err(DevError::io(&path))?;
        }
        let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| DevError::Api(format!("cannot listen for metrics: {e}")))?;
        let metrics_addr: SocketAddr = metrics_listener
            .local_addr()
            .map_err(|e| DevError::Api(e.to_string()))?;
        let addr: SocketAddr = listener
            .local_addr()
            .map_err(|e| DevError::Api(e.to_string()))?;
        let stop = CancellationToken::new();
        let server = tokio::spawn(sluice_api::server::run(
            state.clone(),
            listener,
            metrics_listener,
            stop.clone().cancelled_owned(),
        ));
        Ok(WebApi {
            url: format!("http://{addr}"),
            bootstrap_token_issued: bootstrap_token.is_some(),
            metrics_url: format!("http://{metrics_addr}/metrics"),
            state,
            stop,
            server,
        })
    }

    /// Stops serving (in-flight requests finish), writes the last ingest counts, closes the store.
    pub async fn stop(self) {
        self.stop.cancel();
        match self.server.await {
            Ok(Err(e)) => tracing::warn!(error = %e, "the Web API stopped with an error"),
            Err(e) => tracing::warn!(error = %e, "the Web API task failed"),
            Ok(Ok(())) => {}
        }
    }
}

/// The HS256 key of API tokens: read from `path`, or generated and written there once, so
/// tokens stay valid across restarts.
fn signing_key(path: &std::path::Path) -> Result<String, DevError> {
    match std::fs::read_to_string(path) {
        Ok(s) if s.trim().len() >= 32 => Ok(s.trim().to_string()),
        Ok(_) | Err(_) => {
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            let key = base64::engine::general_purpose::STANDARD.encode(bytes);
            write_private(path, key.as_bytes())?;
            Ok(key)
        }
    }
}

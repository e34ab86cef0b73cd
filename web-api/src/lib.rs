//! Sluice's Web API: the self-service front door for tenancy, API tokens and roles, quotas,
//! streams and pipelines, and the ingest route producers send events to.
//!
//! Tenants, Streams and Pipelines are Kubernetes objects, read and written through the
//! Kubernetes API ([`k8s`]); the [`store`] (PostgreSQL, or an embedded SQLite file) keeps only
//! the tenant registry, API token hashes, the audit log, idempotency keys and ingest metering.
//! Ingested events go to NATS JetStream ([`ingest`]). [`config`] holds the settings and every
//! default; [`server::ApiServer`] assembles the state and [`server::run`] serves it (for the
//! `sluice-api` binary, `sluice dev` and the tests alike); [`app`] builds the router.

pub mod audit;
pub mod auth;
pub mod body;
pub mod config;
pub mod idempotency;
pub mod ingest;
pub mod k8s;
pub mod metrics;
pub mod openapi;
pub mod pagination;
pub mod path;
pub mod problem;
pub mod quota;
pub mod routes;
pub mod server;
pub mod store;
pub mod tenant_name;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

pub use config::{
    Config, DEFAULT_INGEST_ACK_WINDOW, DEFAULT_INGEST_MAX_BODY_BYTES, DEFAULT_INGEST_MAX_EVENTS,
    DEFAULT_INGEST_MAX_REJECTIONS, DEFAULT_INGEST_PERMIT_TIMEOUT_MILLIS,
    DEFAULT_INGEST_TIMEOUT_SECS, DEFAULT_RESERVED_TENANT_NAMES, INGEST_MAX_ACK_INFLIGHT,
};
pub use tenant_name::TenantName;

use axum::Router;
use axum::extract::DefaultBodyLimit;

use crate::auth::Role;
use crate::auth::tokens::Authenticator;
use crate::ingest::Ingest;
use crate::k8s::Kube;
use crate::metrics::Metrics;
use crate::store::{Store, TenantRow};

/// Everything handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Settings.
    pub config: Arc<Config>,
    /// The store.
    pub store: Store,
    /// The Kubernetes API.
    pub kube: Kube,
    /// Token verification and issuing.
    pub auth: Arc<Authenticator>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Ingest: broker, rate limits, metering.
    pub ingest: Arc<Ingest>,
    /// The store used to authenticate callers: a small pool of its own, so that writes holding
    /// the main pool cannot starve authentication (the main store when not set).
    pub auth_store: Store,
    /// Readiness bookkeeping of `/readyz`.
    pub readiness: Arc<routes::health::Readiness>,
    tenants: Arc<RwLock<HashMap<TenantName, (TenantRow, Instant)>>>,
    gates: Arc<quota::Gates>,
}

impl AppState {
    /// Assembles the state.
    pub fn new(
        config: Config,
        store: Store,
        kube: Kube,
        auth: Authenticator,
        metrics: Metrics,
    ) -> Self {
        let ingest = Ingest::new(None, &config);
        AppState {
            config: Arc::new(config),
            auth_store: store.clone(),
            readiness: Default::default(),
            gates: Default::default(),
            store,
            kube,
            auth: Arc::new(auth),
            metrics: Arc::new(metrics),
            ingest: Arc::new(ingest),
            tenants: Default::default(),
        }
    }

    /// The state with events ingested to this JetStream (without one, ingest answers 503).
    pub fn with_jetstream(mut self, jetstream: async_nats::jetstream::Context) -> Self {
        self.ingest = Arc::new(Ingest::new(
            Some(ingest::broker::IngestBroker::Shared(Box::new(jetstream))),
            &self.config,
        ));
        self
    }

    /// The state with Kafka streams' events written by `kafka`. Call it before the state is
    /// shared (cloned), as the builder does.
    pub fn with_kafka(mut self, kafka: ingest::kafka::KafkaIngest) -> Self {
        let ingest = Arc::get_mut(&mut self.ingest).expect("with_kafka before the state is shared");
        ingest.kafka = Some(kafka);
        self
    }

    /// The state with each tenant's events ingested into its own broker account.
    pub fn with_tenant_accounts(mut self, accounts: ingest::broker::TenantAccounts) -> Self {
        self.ingest = Arc::new(Ingest::new(
            Some(ingest::broker::IngestBroker::TenantAccounts(Box::new(
                accounts,
            ))),
            &self.config,
        ));
        self
    }

    /// The state authenticating callers with `auth_store` (see [`AppState::auth_store`]).
    pub fn with_auth_store(mut self, auth_store: Store) -> Self {
        self.auth_store = auth_store;
        self
    }

    /// Takes the tenant's quota lock: first a gate in this process (so a burst of one tenant's
    /// writes waits in memory, not on database connections), then the tenant's lease in the
    /// store (across replicas). Neither holds a database connection while the caller talks to
    /// the Kubernetes API. [`store::StoreError::Busy`] after [`Config::quota_lock_wait`].
    pub async fn lock_tenant(
        &self,
        tenant_id: &str,
    ) -> Result<store::TenantLock, store::StoreError> {
        let wait = self.config.quota_lock_wait;
        let started = Instant::now();
        let guard = self.gates.enter(tenant_id, wait).await?;
        // The lease outlives the longest request, so it only expires for crashed holders.
        let lease = self.config.request_timeout + Duration::from_secs(30);
        let lock = self
            .store
            .lock_tenant(tenant_id, lease, wait.saturating_sub(started.elapsed()))
            .await?;
        Ok(lock.with_local_guard(guard))
    }

    /// Writes the pending ingest counts to the store (see [`ingest::meter`]).
    pub async fn flush_usage(&self) -> Result<usize, store::StoreError> {
        self.ingest.meter.flush(&self.store).await
    }

    /// Flushes the ingest counts every [`Config::usage_flush_interval`], forever; abort the
    /// task and call [`AppState::flush_usage`] once more on shutdown.
    pub fn spawn_usage_flusher(&self) -> tokio::task::JoinHandle<()> {
        let state = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(state.config.usage_flush_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = state.flush_usage().await {
                    tracing::warn!(error = %e, "cannot write ingest usage; kept for the next try");
                }
            }
        })
    }

    /// A tenant's registry row, cached for [`Config::token_cache_ttl`].
    pub async fn tenant_row(
        &self,
        name: &TenantName,
    ) -> Result<Option<TenantRow>, problem::ApiError> {
        {
            let cache = self.tenants.read().unwrap_or_else(|e| e.into_inner());
            if let Some((row, at)) = cache.get(name)
                && at.elapsed() < self.config.token_cache_ttl
            {
                return Ok(Some(row.clone()));
            }
        }
        let row = self.auth_store.tenant_by_name(name).await?;
        let mut cache = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        match &row {
            Some(r) => {
                if cache.len() > 100_000 {
                    cache.clear();
                }
                cache.insert(name.clone(), (r.clone(), Instant::now()));
            }
            None => {
                cache.remove(name);
            }
        }
        Ok(row)
    }

    /// Forgets a cached tenant (after its deletion).
    pub fn forget_tenant(&self, name: &str) {
        self.tenants
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        self.auth.forget_tenant(name);
        self.ingest.forget_tenant(name);
        self.ingest.limiter.forget(name);
    }
}

/// Formats milliseconds since the epoch as RFC 3339.
pub fn format_ms(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The API's router, every route under `/v1` plus `/healthz`, `/readyz` and `/openapi.json`.
/// `/metrics` is not here: it has its own listener ([`metrics_app`]), which the Ingress does
/// not route. Every request answers within [`Config::request_timeout`].
pub fn app(state: AppState) -> Router {
    let (router, _) = routes::router().split_for_parts();
    let limit = state.config.max_body_bytes;
    router
        .fallback(routes::fallback)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routes::deadline,
        ))
        .layer(axum::middleware::from_fn(routes::problem_for_bare_errors))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// The metrics router: `GET /metrics` (Prometheus text) and nothing else, for the metrics
/// listener (`--metrics-listen`), which only the monitoring system reaches.
pub fn metrics_app(state: AppState) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(metrics::serve))
        .with_state(state)
}

/// The bootstrap admin token's name.
pub const BOOTSTRAP_TOKEN_NAME: &str = "bootstrap-admin";

/// Issues the bootstrap platform-admin token unless a live one exists (one that expired or
/// was revoked is replaced); returns it, to hand over once through
/// [`write_bootstrap_token_file`] or a Secret, never the log. Replicas starting together race
/// on a unique key: only one wins.
pub async fn bootstrap_token(state: &AppState) -> Result<Option<String>, auth::tokens::IssueError> {
    let now = chrono::Utc::now().timestamp_millis();
    state
        .store
        .delete_dead_platform_token(BOOTSTRAP_TOKEN_NAME, now)
        .await
        .map_err(auth::tokens::IssueError::Store)?;
    match state
        .auth
        .issue(
            &state.store,
            &auth::tokens::TokenRequest {
                tenant: None,
                name: BOOTSTRAP_TOKEN_NAME,
                role: Role::PlatformAdmin,
                ttl: state.config.bootstrap_token_ttl,
                created_by: "bootstrap",
                description: Some("bootstrap platform-admin token"),
            },
        )
        .await
    {
        Ok(issued) => Ok(Some(issued.secret)),
        Err(auth::tokens::IssueError::Duplicate) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes the bootstrap token to `path`, readable and writable by its owner only (0600),
/// replacing the file.
pub fn write_bootstrap_token_file(path: &std::path::Path, token: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Applies the store's pending migrations.
pub async fn migrate(store: &Store) -> Result<(), store::StoreError> {
    store.migrate().await
}

/// Serves `router` on `listener` until `shutdown` resolves, with client addresses available to
/// the audit log and the default header-read timeout (see [`server::serve`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(
        listener,
        router,
        shutdown,
        Config::default().header_read_timeout,
    )
    .await
}

//! Assembling and serving the API, the one way `sluice-api serve`, `sluice dev` and the tests
//! do it: [`ApiServer`] builds the [`AppState`] from the settings and the connections, [`run`]
//! serves it with its metrics listener until shutdown and then writes the last ingest counts.
//!
//! The HTTP server loop ([`serve`]) accepts connections, serves a router on each (HTTP/1.1 and
//! HTTP/2), closes connections whose request head does not arrive within the header-read timeout
//! (so slow clients cannot hold connections open for ever), and drains in-flight requests on
//! shutdown. The client's address reaches handlers as axum's `ConnectInfo<SocketAddr>`.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tower::ServiceExt;

use crate::auth::oidc::Oidc;
use crate::auth::tokens::Authenticator;
use crate::k8s::Kube;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::{AppState, Config, INGEST_MAX_ACK_INFLIGHT};

/// What the API is built from: its settings, its store, the Kubernetes API, the key that signs
/// its tokens, and optionally an OIDC issuer, a separate authentication pool and a broker.
pub struct ApiServer {
    config: Config,
    store: Store,
    kube: Kube,
    signing_key: Vec<u8>,
    auth_store: Option<Store>,
    oidc: Option<Oidc>,
    jetstream: Option<async_nats::jetstream::Context>,
    tenant_accounts: Option<crate::ingest::broker::TenantAccounts>,
    kafka: Option<crate::ingest::kafka::KafkaIngest>,
}

impl ApiServer {
    /// An API with these settings, store, Kubernetes API and HS256 signing key; no OIDC, no
    /// broker (ingest answers 503), and authentication on the main store.
    pub fn new(config: Config, store: Store, kube: Kube, signing_key: &[u8]) -> Self {
        ApiServer {
            config,
            store,
            kube,
            signing_key: signing_key.to_vec(),
            auth_store: None,
            oidc: None,
            jetstream: None,
            tenant_accounts: None,
            kafka: None,
        }
    }

    /// Authenticates callers with this store (a small pool of its own; see
    /// [`AppState::auth_store`]).
    pub fn auth_store(mut self, store: Store) -> Self {
        self.auth_store = Some(store);
        self
    }

    /// Also accepts this OIDC issuer's tokens, when given.
    pub fn oidc(mut self, oidc: Option<Oidc>) -> Self {
        self.oidc = oidc;
        self
    }

    /// Ingests events into this JetStream, when given.
    pub fn jetstream(mut self, jetstream: Option<async_nats::jetstream::Context>) -> Self {
        self.jetstream = jetstream;
        self
    }

    /// Ingests each tenant's events into its own account of a broker in operator mode (this
    /// replaces [`ApiServer::jetstream`]).
    pub fn tenant_accounts(
        mut self,
        accounts: Option<crate::ingest::broker::TenantAccounts>,
    ) -> Self {
        self.tenant_accounts = accounts;
        self
    }

    /// Ingests Kafka streams' events with this producer, when given.
    pub fn kafka(mut self, kafka: Option<crate::ingest::kafka::KafkaIngest>) -> Self {
        self.kafka = kafka;
        self
    }

    /// The state handlers share, with a fresh metrics registry.
    pub fn build(self) -> Result<AppState, prometheus::Error> {
        let auth = Authenticator::new(
            &self.signing_key,
            &self.config.issuer,
            &self.config.audience,
            self.oidc,
            self.config.token_cache_ttl,
        );
        let metrics = Metrics::new(prometheus::Registry::new())?;
        let mut state = AppState::new(self.config, self.store, self.kube, auth, metrics);
        if let Some(auth_store) = self.auth_store {
            state = state.with_auth_store(auth_store);
        }
        if let Some(jetstream) = self.jetstream {
            state = state.with_jetstream(jetstream);
        }
        if let Some(accounts) = self.tenant_accounts {
            state = state.with_tenant_accounts(accounts);
        }
        if let Some(kafka) = self.kafka {
            state = state.with_kafka(kafka);
        }
        Ok(state)
    }
}

/// A JetStream context on the NATS server at `url`, for ingest: the client connects in the
/// background and reconnects for ever (the API serves meanwhile, and ingest answers 503 while
/// the broker cannot be reached), with [`INGEST_MAX_ACK_INFLIGHT`] publish permits.
pub async fn connect_jetstream(
    url: &str,
    tls: Option<&sluice_core::route::BrokerTls>,
) -> Result<async_nats::jetstream::Context, async_nats::ConnectError> {
    let client = sluice_broker::client::with_tls(async_nats::ConnectOptions::new(), tls)
        .name("sluice-api")
        .retry_on_initial_connect()
        .connect(url)
        .await?;
    Ok(async_nats::jetstream::context::ContextBuilder::new()
        .max_ack_inflight(INGEST_MAX_ACK_INFLIGHT)
        .build(client))
}

/// Serves the API on `listener` and `GET /metrics` on `metrics_listener` until `shutdown`
/// resolves, flushing ingest counts every [`Config::usage_flush_interval`]; then drains
/// in-flight requests, writes the last ingest counts and closes the store.
pub async fn run(
    state: AppState,
    listener: tokio::net::TcpListener,
    metrics_listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let header_read_timeout = state.config.header_read_timeout;
    let flusher = state.spawn_usage_flusher();
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics_server = tokio::spawn(serve(
        metrics_listener,
        crate::metrics_app(state.clone()),
        async {
            let _ = metrics_stopped.await;
        },
        header_read_timeout,
    ));
    let served = serve(
        listener,
        crate::app(state.clone()),
        shutdown,
        header_read_timeout,
    )
    .await;
    let _ = stop_metrics.send(());
    let _ = metrics_server.await;
    // The counts of the last seconds, before the store closes.
    flusher.abort();
    if let Err(e) = state.flush_usage().await {
        tracing::error!(error = %e, "cannot write the last ingest counts");
    }
    state.store.close().await;
    served
}

/// Longest wait for in-flight requests once shutdown began.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until `shutdown` resolves, then waits (at most
/// [`DRAIN_TIMEOUT`]) for in-flight requests. A connection whose request head takes longer than
/// `header_read_timeout` to arrive is closed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    header_read_timeout: Duration,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(addr));
            let router = router.clone();
            async move {
                let res = router.oneshot(req.map(axum::body::Body::new)).await;
                Ok::<_, Infallible>(res.unwrap_or_else(|never| match never {}))
            }
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(30)));
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, client = %addr, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish in time; closing");
    }
    Ok(())
}

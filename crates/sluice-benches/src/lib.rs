//! What the API benchmarks share: kubesim with Sluice's CRDs, and a store of their own (a fresh
//! PostgreSQL database dropped at the end, or an SQLite file).

use anyhow::{Context, bail};
use sluice_api::Config;
use sluice_api::k8s::Kube;
use sluice_api::server::ApiServer;
use sluice_api::store::Store;

/// kubesim on a loopback port with Sluice's CRDs installed, and a client for it.
pub struct Kubernetes {
    /// The server; [`Kubernetes::shutdown`] stops it.
    pub server: kubesim::Server,
    /// A client of the server.
    pub client: kube::Client,
}

impl Kubernetes {
    /// Starts kubesim and installs the CRDs; `manager` is the field manager of that apply.
    pub async fn start(manager: &str) -> anyhow::Result<Self> {
        let cluster = kubesim::Cluster::new();
        for crd in sluice_crd::crds() {
            cluster
                .apply_object(&serde_json::to_value(&crd)?, manager)
                .map_err(|e| anyhow::anyhow!("installing CRDs: {e:?}"))?;
        }
        let server = kubesim::Server::start(cluster, "127.0.0.1:0".parse()?).await?;
        let client = kube::Client::try_from(kube::Config::new(server.url().parse()?))?;
        Ok(Kubernetes { server, client })
    }

    /// Stops the server.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

/// kubesim with the CRDs (`manager` applies them) and the benchmark's own store.
pub async fn kubernetes_and_store(
    manager: &str,
    sqlite: bool,
    postgres_url: &str,
) -> anyhow::Result<(Kubernetes, BenchStore)> {
    let kubernetes = Kubernetes::start(manager).await?;
    let store = BenchStore::create(sqlite, postgres_url).await?;
    Ok((kubernetes, store))
}

/// The benchmark's own store, migrated.
pub struct BenchStore {
    /// The store the API uses.
    pub store: Store,
    /// For PostgreSQL: the admin connection and the database to drop at the end.
    dropper: Option<(Store, String)>,
    _dir: tempfile::TempDir,
}

impl BenchStore {
    /// An SQLite file in a temporary directory when `sqlite`, else a fresh database on the
    /// PostgreSQL server of `postgres_url` (a `postgres://` URL whose database may create
    /// others).
    pub async fn create(sqlite: bool, postgres_url: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let (url, dropper) = if sqlite {
            let url = format!("sqlite:{}", dir.path().join("bench.db").display());
            (url, None)
        } else {
            let admin = Store::connect(postgres_url, 1).await?;
            let Store::Postgres(pool) = &admin else {
                bail!("--postgres must be a postgres:// URL")
            };
            let name = format!("sluice_bench_{}", uuid::Uuid::new_v4().simple());
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(pool)
                .await?;
            let base = postgres_url.rsplit_once('/').map(|(b, _)| b).unwrap_or("");
            (format!("{base}/{name}"), Some((admin, name)))
        };
        let store = Store::connect(&url, 16).await?;
        store.migrate().await?;
        Ok(BenchStore {
            store,
            dropper,
            _dir: dir,
        })
    }

    /// Drops the PostgreSQL database (the API server closed the store already).
    pub async fn drop_database(self) -> anyhow::Result<()> {
        if let Some((admin, name)) = self.dropper {
            if let Store::Postgres(pool) = &admin {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(pool)
                .await?;
            }
            admin.close().await;
        }
        Ok(())
    }
}

/// The API served on loopback (with its metrics on another port) until [`RunningApi::stop`].
pub struct RunningApi {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The bootstrap administrator's token.
    pub admin_token: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningApi {
    /// Builds the API as `sluice-api serve` does (a random signing key, `jetstream` for
    /// ingest) and serves it with `sluice_api::server::run`.
    pub async fn start(
        config: Config,
        store: Store,
        client: kube::Client,
        jetstream: Option<async_nats::jetstream::Context>,
    ) -> anyhow::Result<Self> {
        Self::start_with(config, store, client, jetstream, None, None).await
    }

    /// [`RunningApi::start`], ingesting into tenant accounts when `tenant_accounts` is given,
    /// and into Kafka streams with `kafka`.
    pub async fn start_with(
        config: Config,
        store: Store,
        client: kube::Client,
        jetstream: Option<async_nats::jetstream::Context>,
        tenant_accounts: Option<sluice_api::ingest::broker::TenantAccounts>,
        kafka: Option<sluice_api::ingest::kafka::KafkaIngest>,
    ) -> anyhow::Result<Self> {
        let secret = uuid::Uuid::new_v4().to_string() + &uuid::Uuid::new_v4().to_string();
        let state = ApiServer::new(config, store, Kube::new(client), secret.as_bytes())
            .jetstream(jetstream)
            .tenant_accounts(tenant_accounts)
            .kafka(kafka)
            .build()?;
        let admin_token = sluice_api::bootstrap_token(&state)
            .await?
            .context("no bootstrap token: the store already has tenants")?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(sluice_api::server::run(
            state,
            listener,
            metrics_listener,
            async move {
                let _ = stopped.await;
            },
        ));
        Ok(RunningApi {
            base,
            admin_token,
            stop,
            server,
        })
    }

    /// Stops serving; the server writes the last ingest counts and closes the store.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.server.await??;
        Ok(())
    }
}

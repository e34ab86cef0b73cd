//! What the API benchmarks share: kubesim with Sluice's CRDs, and a store of their own (a fresh
//! PostgreSQL database dropped at the end, or an SQLite file).

use anyhow::bail;
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

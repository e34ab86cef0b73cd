//! The store: what Kubernetes should not hold. The tenant registry, API tokens (hashes only),
//! the audit log, idempotency keys and ingest metering, on PostgreSQL (production) or an
//! embedded SQLite file (one machine, no database server). Both run the same queries;
//! migrations live in `migrations/postgres` and `migrations/sqlite` at the workspace root.
//!
//! One [`Store`] is the interface; its methods are written in one module per table:
//! `tenants`, `leases`, `tokens`, `platform_tokens`, `audit`, `usage` and `idempotency`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{PgPool, SqlitePool};

/// Migrations of the PostgreSQL store.
pub static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");
/// Migrations of the SQLite store.
pub static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is neither `postgres://` nor `sqlite:`.
    #[error("unsupported database URL {0:?}: use postgres://... or sqlite:PATH")]
    UnsupportedUrl(String),
    /// A query failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A unique constraint refused the write.
    #[error("already exists")]
    Duplicate,
    /// The row is gone.
    #[error("not found")]
    NotFound,
    /// The tenant's quota lease is held by another request for longer than the wait allowed,
    /// or no connection of the pool freed up in time.
    #[error("busy: {0}")]
    Busy(String),
}

impl StoreError {
    /// Whether the error means "too busy now, retry shortly" (a full pool or a held lease).
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            StoreError::Busy(_) | StoreError::Database(sqlx::Error::PoolTimedOut)
        )
    }
}

fn map_unique(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Duplicate,
        _ => StoreError::Database(e),
    }
}

/// A connection pool to one of the supported databases.
#[derive(Clone, Debug)]
pub enum Store {
    /// PostgreSQL.
    Postgres(PgPool),
    /// An embedded SQLite file.
    Sqlite(SqlitePool),
}

/// Runs the same expression on whichever pool the store has.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match $store {
            Store::Postgres($pool) => $body,
            Store::Sqlite($pool) => $body,
        }
    };
}

/// Runs one statement with these values bound to `$1`, `$2`, ... on whichever pool the store
/// has; the number of rows it touched.
macro_rules! execute {
    ($store:expr, $sql:expr $(, $value:expr)* $(,)?) => {
        on_pool!($store, |p| sqlx::query($sql)
            $(.bind($value))*
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
    };
}

mod audit;
mod idempotency;
mod leases;
mod platform_tokens;
mod tenants;
mod tokens;
mod usage;

pub use audit::{AuditFilter, AuditRow, NewAudit};
pub use idempotency::{IDEMPOTENCY_TTL_MS, Idempotency};
pub use leases::TenantLock;
pub use tenants::TenantRow;
pub use tokens::{NewToken, TokenRow};
pub use usage::{IngestUsageRow, IngestUsageTotals};

impl Store {
    /// Connects to `postgres://...` or `sqlite:PATH` (the file is created if missing).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await?;
            Ok(Store::Postgres(pool))
        } else if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(15));
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(15))
                .connect_with(opts)
                .await?;
            Ok(Store::Sqlite(pool))
        } else {
            Err(StoreError::UnsupportedUrl(url.to_string()))
        }
    }

    /// A PostgreSQL pool that connects on first use (so the API can start, and report itself
    /// not ready, while the database is down), waiting at most `acquire_timeout` for a
    /// connection.
    pub fn connect_lazy_postgres(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> Result<Store, StoreError> {
        let opts = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .connect_lazy_with(opts);
        Ok(Store::Postgres(pool))
    }

    /// Applies the pending migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Store::Postgres(p) => PG_MIGRATOR.run(p).await?,
            Store::Sqlite(p) => SQLITE_MIGRATOR.run(p).await?,
        }
        Ok(())
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, |p| sqlx::query("SELECT 1")
            .execute(p)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// Closes the pool.
    pub async fn close(&self) {
        on_pool!(self, |p| p.close().await)
    }
}

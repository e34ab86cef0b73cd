//! The store: what Kubernetes should not hold. The tenant registry, API tokens (hashes only),
//! the audit log, idempotency keys and ingest metering, on PostgreSQL (production) or an embedded SQLite file
//! (one machine, no database server). Both run the same queries; migrations live in
//! `migrations/postgres` and `migrations/sqlite` at the workspace root.

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

/// A registered tenant.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TenantRow {
    /// Stable id (a UUID); tokens refer to it.
    pub id: String,
    /// The tenant's name, also the name of its `Tenant` object.
    pub name: String,
    /// Registration time (ms since the epoch).
    pub created_at: i64,
    /// Who registered it.
    pub created_by: String,
}

/// An API token's record. The token itself is never stored, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TokenRow {
    /// The token's `jti`.
    pub id: String,
    /// The tenant it acts in; `None` for platform tokens.
    pub tenant_id: Option<String>,
    /// That tenant's name.
    pub tenant_name: Option<String>,
    /// Name, unique per tenant.
    pub name: String,
    /// Role (`platform-admin`, `tenant-admin`, `developer`, `viewer`, `producer`).
    pub role: String,
    /// Hex SHA-256 of the whole token.
    pub token_hash: String,
    /// Creation time (ms).
    pub created_at: i64,
    /// Who created it.
    pub created_by: String,
    /// Expiry (ms).
    pub expires_at: i64,
    /// Last time it authenticated a request (ms), updated at most once a minute.
    pub last_used_at: Option<i64>,
    /// When it was revoked (ms).
    pub revoked_at: Option<i64>,
    /// Free-text description.
    pub description: Option<String>,
}

/// A token to insert.
#[derive(Debug, Clone)]
pub struct NewToken<'a> {
    /// The `jti`.
    pub id: &'a str,
    /// Tenant id, `None` for a platform token.
    pub tenant_id: Option<&'a str>,
    /// Name.
    pub name: &'a str,
    /// Role.
    pub role: &'a str,
    /// Hex SHA-256 of the token.
    pub token_hash: &'a str,
    /// Creation time (ms).
    pub created_at: i64,
    /// Creator.
    pub created_by: &'a str,
    /// Expiry (ms).
    pub expires_at: i64,
    /// Free-text description.
    pub description: Option<&'a str>,
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditRow {
    /// Sequence number.
    pub id: i64,
    /// When (ms).
    pub at: i64,
    /// Who: `token:<id>` or `oidc:<subject>`.
    pub actor: String,
    /// The tenant concerned, if any.
    pub tenant: Option<String>,
    /// What, e.g. `pipeline.create`.
    pub action: String,
    /// Which object, e.g. `pipelines/orders`.
    pub object: String,
    /// From where (client address), when known.
    pub source: Option<String>,
    /// HTTP status of the answer.
    pub status: i32,
    /// `success`, or the problem type's last segment.
    pub outcome: String,
}

/// An audit record to insert.
#[derive(Debug, Clone)]
pub struct NewAudit {
    /// When (ms).
    pub at: i64,
    /// Who.
    pub actor: String,
    /// Tenant concerned.
    pub tenant: Option<String>,
    /// What.
    pub action: String,
    /// Which object.
    pub object: String,
    /// From where.
    pub source: Option<String>,
    /// HTTP status.
    pub status: i32,
    /// Outcome.
    pub outcome: String,
}

/// Filter of the audit log; newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this tenant's records.
    pub tenant: Option<String>,
    /// Only this actor's records.
    pub actor: Option<String>,
    /// Records at or after (ms).
    pub since: Option<i64>,
    /// Records before (ms).
    pub until: Option<i64>,
    /// Records with an id below this (the cursor).
    pub before_id: Option<i64>,
    /// At most this many.
    pub limit: i64,
}

/// What an `Idempotency-Key` says about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Idempotency {
    /// First use: process the request, then [`Store::idempotency_finish`].
    Fresh,
    /// Used before with the same request: answer this again.
    Replay {
        /// HTTP status of the first answer.
        status: u16,
        /// Its JSON body.
        body: String,
    },
    /// Used before with a different request.
    Mismatch,
    /// The first request is still being processed.
    InProgress,
}

/// Ingest counted for one tenant, stream and minute.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct IngestUsageRow {
    /// The tenant's id.
    pub tenant_id: String,
    /// The stream's name.
    pub stream: String,
    /// Start of the minute (ms since the epoch).
    pub minute: i64,
    /// Events ingested.
    pub events: i64,
    /// Bytes ingested.
    pub bytes: i64,
}

/// Ingest totals of one stream of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct IngestUsageTotals {
    /// The stream's name.
    pub stream: String,
    /// Events since the first record.
    pub events: i64,
    /// Bytes since the first record.
    pub bytes: i64,
    /// Events in the minutes starting at or after the `since` asked for.
    pub recent_events: i64,
    /// Bytes in those minutes.
    pub recent_bytes: i64,
}

/// A tenant's quota lease, held while checking quota and writing to Kubernetes: a row of
/// `tenant_leases` naming this holder until an expiry, so it works across API replicas sharing
/// the database without holding a connection or a transaction during the Kubernetes calls.
/// [`TenantLock::release`] deletes the row; dropping the lock without releasing it deletes the
/// row in the background, and a lease left by a crashed replica expires by itself.
#[derive(Debug)]
pub struct TenantLock {
    store: Store,
    tenant_id: String,
    holder: String,
    released: bool,
    _local: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl TenantLock {
    /// Keeps `guard` (a process-local gate of the same tenant) until the lock is released.
    pub fn with_local_guard(mut self, guard: tokio::sync::OwnedMutexGuard<()>) -> Self {
        self._local = Some(guard);
        self
    }

    /// Releases the lease.
    pub async fn release(mut self) -> Result<(), StoreError> {
        self.released = true;
        self.store.drop_lease(&self.tenant_id, &self.holder).await
    }
}

impl Drop for TenantLock {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // Cancelled (e.g. by the request timeout) or failed: free the lease in the background.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let store = self.store.clone();
            let tenant_id = std::mem::take(&mut self.tenant_id);
            let holder = std::mem::take(&mut self.holder);
            rt.spawn(async move {
                if let Err(e) = store.drop_lease(&tenant_id, &holder).await {
                    tracing::warn!(error = %e, "cannot free a tenant lease; it expires by itself");
                }
            });
        }
    }
}

const TOKEN_COLUMNS: &str = "t.id, t.tenant_id, n.name AS tenant_name, t.name, t.role, \
     t.token_hash, t.created_at, t.created_by, t.expires_at, t.last_used_at, t.revoked_at, \
     t.description";

/// How long an idempotency key is remembered (ms).
pub const IDEMPOTENCY_TTL_MS: i64 = 24 * 3600 * 1000;

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

    // ---- tenants ----

    /// Registers a tenant; [`StoreError::Duplicate`] if the name is taken.
    pub async fn insert_tenant(&self, row: &TenantRow) -> Result<(), StoreError> {
        on_pool!(self, |p| sqlx::query(
            "INSERT INTO tenants (id, name, created_at, created_by) VALUES ($1, $2, $3, $4)"
        )
        .bind(&row.id)
        .bind(&row.name)
        .bind(row.created_at)
        .bind(&row.created_by)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(map_unique)?;
        Ok(())
    }

    /// A tenant by name.
    pub async fn tenant_by_name(&self, name: &str) -> Result<Option<TenantRow>, StoreError> {
        Ok(on_pool!(self, |p| sqlx::query_as::<_, TenantRow>(
            "SELECT id, name, created_at, created_by FROM tenants WHERE name = $1"
        )
        .bind(name)
        .fetch_optional(p)
        .await)?)
    }

    /// Tenants in name order, after `after`.
    pub async fn list_tenants(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<TenantRow>, StoreError> {
        Ok(on_pool!(self, |p| sqlx::query_as::<_, TenantRow>(
            "SELECT id, name, created_at, created_by FROM tenants \
             WHERE ($1 IS NULL OR name > $1) ORDER BY name LIMIT $2"
        )
        .bind(after)
        .bind(limit)
        .fetch_all(p)
        .await)?)
    }

    /// Removes a tenant from the registry, with its tokens.
    pub async fn delete_tenant(&self, id: &str) -> Result<bool, StoreError> {
        // Tokens go explicitly too, so that SQLite files opened without foreign keys agree.
        on_pool!(self, |p| sqlx::query(
            "DELETE FROM api_tokens WHERE tenant_id = $1"
        )
        .bind(id)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        on_pool!(self, |p| sqlx::query(
            "DELETE FROM tenant_leases WHERE tenant_id = $1"
        )
        .bind(id)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        let done = on_pool!(self, |p| sqlx::query("DELETE FROM tenants WHERE id = $1")
            .bind(id)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    /// Takes the tenant's quota lease for `lease` (see [`TenantLock`]), polling while another
    /// holder has it; [`StoreError::Busy`] after `wait`, [`StoreError::NotFound`] when the tenant
    /// is not registered. Each attempt is one short statement: no connection is held between
    /// attempts nor while the lease is held.
    pub async fn lock_tenant(
        &self,
        tenant_id: &str,
        lease: Duration,
        wait: Duration,
    ) -> Result<TenantLock, StoreError> {
        let holder = uuid::Uuid::new_v4().to_string();
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(10);
        loop {
            let now = chrono::Utc::now().timestamp_millis();
            let until = now + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
            let taken = on_pool!(self, |p| sqlx::query(
                "INSERT INTO tenant_leases (tenant_id, holder, expires_at) \
                 SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $1) \
                 ON CONFLICT (tenant_id) DO UPDATE \
                 SET holder = excluded.holder, expires_at = excluded.expires_at \
                 WHERE tenant_leases.expires_at < $4"
            )
            .bind(tenant_id)
            .bind(&holder)
            .bind(until)
            .bind(now)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))?;
            if taken == 1 {
                return Ok(TenantLock {
                    store: self.clone(),
                    tenant_id: tenant_id.to_string(),
                    holder,
                    released: false,
                    _local: None,
                });
            }
            let exists: Option<(String,)> = on_pool!(self, |p| sqlx::query_as(
                "SELECT id FROM tenants WHERE id = $1"
            )
            .bind(tenant_id)
            .fetch_optional(p)
            .await)?;
            if exists.is_none() {
                return Err(StoreError::NotFound);
            }
            if started.elapsed() + pause > wait {
                return Err(StoreError::Busy(
                    "another change of this tenant's quota-counted objects is in progress".into(),
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    async fn drop_lease(&self, tenant_id: &str, holder: &str) -> Result<(), StoreError> {
        on_pool!(self, |p| sqlx::query(
            "DELETE FROM tenant_leases WHERE tenant_id = $1 AND holder = $2"
        )
        .bind(tenant_id)
        .bind(holder)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    // ---- tokens ----

    /// Inserts a token; [`StoreError::Duplicate`] when its name is taken in its tenant.
    /// Returns whether it was inserted.
    pub async fn insert_token(&self, t: &NewToken<'_>) -> Result<(), StoreError> {
        on_pool!(self, |p| sqlx::query(
            "INSERT INTO api_tokens (id, scope, tenant_id, name, role, token_hash, created_at, \
             created_by, expires_at, description) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        )
        .bind(t.id)
        .bind(t.tenant_id.unwrap_or(""))
        .bind(t.tenant_id)
        .bind(t.name)
        .bind(t.role)
        .bind(t.token_hash)
        .bind(t.created_at)
        .bind(t.created_by)
        .bind(t.expires_at)
        .bind(t.description)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(map_unique)?;
        Ok(())
    }

    /// A token by its `jti`.
    pub async fn token(&self, id: &str) -> Result<Option<TokenRow>, StoreError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens t LEFT JOIN tenants n ON n.id = t.tenant_id \
             WHERE t.id = $1"
        );
        Ok(on_pool!(self, |p| sqlx::query_as::<_, TokenRow>(
            sqlx::AssertSqlSafe(sql.clone())
        )
        .bind(id)
        .fetch_optional(p)
        .await)?)
    }

    /// A tenant's tokens in id order, after `after`.
    pub async fn list_tokens(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<TokenRow>, StoreError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens t LEFT JOIN tenants n ON n.id = t.tenant_id \
             WHERE t.tenant_id = $1 AND ($2 IS NULL OR t.id > $2) ORDER BY t.id LIMIT $3"
        );
        Ok(on_pool!(self, |p| sqlx::query_as::<_, TokenRow>(
            sqlx::AssertSqlSafe(sql.clone())
        )
        .bind(tenant_id)
        .bind(after)
        .bind(limit)
        .fetch_all(p)
        .await)?)
    }

    /// Revokes a tenant's token; whether it existed (in that tenant).
    pub async fn revoke_token(
        &self,
        tenant_id: &str,
        id: &str,
        now: i64,
    ) -> Result<Option<TokenRow>, StoreError> {
        on_pool!(self, |p| sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 \
             WHERE tenant_id = $2 AND id = $3 AND revoked_at IS NULL"
        )
        .bind(now)
        .bind(tenant_id)
        .bind(id)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        match self.token(id).await? {
            Some(t) if t.tenant_id.as_deref() == Some(tenant_id) => Ok(Some(t)),
            _ => Ok(None),
        }
    }

    /// Platform tokens (no tenant) in id order, after `after`.
    pub async fn list_platform_tokens(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<TokenRow>, StoreError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens t LEFT JOIN tenants n ON n.id = t.tenant_id \
             WHERE t.scope = '' AND ($1 IS NULL OR t.id > $1) ORDER BY t.id LIMIT $2"
        );
        Ok(on_pool!(self, |p| sqlx::query_as::<_, TokenRow>(
            sqlx::AssertSqlSafe(sql.clone())
        )
        .bind(after)
        .bind(limit)
        .fetch_all(p)
        .await)?)
    }

    /// Revokes a platform token; the row, or `None` when no platform token has that id.
    pub async fn revoke_platform_token(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Option<TokenRow>, StoreError> {
        on_pool!(self, |p| sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 \
             WHERE scope = '' AND id = $2 AND revoked_at IS NULL"
        )
        .bind(now)
        .bind(id)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        match self.token(id).await? {
            Some(t) if t.tenant_id.is_none() => Ok(Some(t)),
            _ => Ok(None),
        }
    }

    /// Revokes the live platform token called `name`; whether there was one.
    pub async fn revoke_platform_token_named(
        &self,
        name: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, |p| sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 \
             WHERE scope = '' AND name = $2 AND revoked_at IS NULL"
        )
        .bind(now)
        .bind(name)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    /// Deletes the platform token called `name` if it expired or was revoked before `now`, so
    /// that the name can be issued again; whether a row was deleted.
    pub async fn delete_dead_platform_token(
        &self,
        name: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = on_pool!(self, |p| sqlx::query(
            "DELETE FROM api_tokens WHERE scope = '' AND name = $1 \
             AND (expires_at <= $2 OR revoked_at IS NOT NULL)"
        )
        .bind(name)
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    /// Records that a token was used.
    pub async fn touch_token(&self, id: &str, now: i64) -> Result<(), StoreError> {
        on_pool!(self, |p| sqlx::query(
            "UPDATE api_tokens SET last_used_at = $1 WHERE id = $2"
        )
        .bind(now)
        .bind(id)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    // ---- audit ----

    /// Appends an audit record.
    pub async fn insert_audit(&self, a: &NewAudit) -> Result<(), StoreError> {
        on_pool!(self, |p| sqlx::query(
            "INSERT INTO audit_log (at, actor, tenant, action, object, source, status, outcome) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )
        .bind(a.at)
        .bind(&a.actor)
        .bind(&a.tenant)
        .bind(&a.action)
        .bind(&a.object)
        .bind(&a.source)
        .bind(a.status)
        .bind(&a.outcome)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Audit records matching `f`, newest first.
    pub async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditRow>, StoreError> {
        Ok(on_pool!(self, |p| sqlx::query_as::<_, AuditRow>(
            "SELECT id, at, actor, tenant, action, object, source, status, outcome \
             FROM audit_log \
             WHERE ($1 IS NULL OR tenant = $1) AND ($2 IS NULL OR actor = $2) \
               AND ($3 IS NULL OR at >= $3) AND ($4 IS NULL OR at < $4) \
               AND ($5 IS NULL OR id < $5) \
             ORDER BY id DESC LIMIT $6"
        )
        .bind(&f.tenant)
        .bind(&f.actor)
        .bind(f.since)
        .bind(f.until)
        .bind(f.before_id)
        .bind(f.limit)
        .fetch_all(p)
        .await)?)
    }

    // ---- ingest metering ----

    /// Adds ingest counts (one transaction; counts for an existing tenant, stream and minute
    /// add up).
    pub async fn add_ingest_usage(&self, rows: &[IngestUsageRow]) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO ingest_usage (tenant_id, stream, minute, events, bytes) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, stream, minute) DO UPDATE \
             SET events = ingest_usage.events + excluded.events, \
                 bytes = ingest_usage.bytes + excluded.bytes";
        match self {
            Store::Postgres(p) => {
                let mut tx = p.begin().await?;
                for r in rows {
                    sqlx::query(SQL)
                        .bind(&r.tenant_id)
                        .bind(&r.stream)
                        .bind(r.minute)
                        .bind(r.events)
                        .bind(r.bytes)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
            Store::Sqlite(p) => {
                let mut tx = p.begin().await?;
                for r in rows {
                    sqlx::query(SQL)
                        .bind(&r.tenant_id)
                        .bind(&r.stream)
                        .bind(r.minute)
                        .bind(r.events)
                        .bind(r.bytes)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// A tenant's ingest rows, oldest first (for tests and exports).
    pub async fn ingest_usage(&self, tenant_id: &str) -> Result<Vec<IngestUsageRow>, StoreError> {
        Ok(on_pool!(self, |p| sqlx::query_as::<_, IngestUsageRow>(
            "SELECT tenant_id, stream, minute, events, bytes FROM ingest_usage \
             WHERE tenant_id = $1 ORDER BY minute, stream"
        )
        .bind(tenant_id)
        .fetch_all(p)
        .await)?)
    }

    /// A tenant's ingest totals per stream: all time, and from the minute `since` (ms) on.
    pub async fn ingest_totals(
        &self,
        tenant_id: &str,
        since: i64,
    ) -> Result<Vec<IngestUsageTotals>, StoreError> {
        Ok(on_pool!(self, |p| sqlx::query_as::<_, IngestUsageTotals>(
            "SELECT stream, CAST(SUM(events) AS BIGINT) AS events, \
                CAST(SUM(bytes) AS BIGINT) AS bytes, \
                CAST(SUM(CASE WHEN minute >= $2 THEN events ELSE 0 END) AS BIGINT) \
                    AS recent_events, \
                CAST(SUM(CASE WHEN minute >= $2 THEN bytes ELSE 0 END) AS BIGINT) \
                    AS recent_bytes \
             FROM ingest_usage WHERE tenant_id = $1 GROUP BY stream ORDER BY stream"
        )
        .bind(tenant_id)
        .bind(since)
        .fetch_all(p)
        .await)?)
    }

    // ---- idempotency ----

    /// Claims `key` in `scope` for a request hashing to `hash`, or says what became of it.
    pub async fn idempotency_begin(
        &self,
        scope: &str,
        key: &str,
        hash: &str,
        now: i64,
    ) -> Result<Idempotency, StoreError> {
        on_pool!(self, |p| sqlx::query(
            "DELETE FROM idempotency_keys WHERE created_at < $1"
        )
        .bind(now - IDEMPOTENCY_TTL_MS)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        let inserted = on_pool!(self, |p| sqlx::query(
            "INSERT INTO idempotency_keys (scope, idem_key, request_hash, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (scope, idem_key) DO NOTHING"
        )
        .bind(scope)
        .bind(key)
        .bind(hash)
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        if inserted == 1 {
            return Ok(Idempotency::Fresh);
        }
        let row: Option<(String, Option<i32>, Option<String>)> =
            on_pool!(self, |p| sqlx::query_as(
                "SELECT request_hash, status, body FROM idempotency_keys \
                 WHERE scope = $1 AND idem_key = $2"
            )
            .bind(scope)
            .bind(key)
            .fetch_optional(p)
            .await)?;
        Ok(match row {
            // Expired and purged between the two statements: treat as in progress; a retry
            // claims it.
            None => Idempotency::InProgress,
            Some((h, _, _)) if h != hash => Idempotency::Mismatch,
            Some((_, Some(status), Some(body))) => Idempotency::Replay {
                status: status as u16,
                body,
            },
            Some(_) => Idempotency::InProgress,
        })
    }

    /// Stores the answer to a request claimed with [`Store::idempotency_begin`].
    pub async fn idempotency_finish(
        &self,
        scope: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<(), StoreError> {
        on_pool!(self, |p| sqlx::query(
            "UPDATE idempotency_keys SET status = $1, body = $2 WHERE scope = $3 AND idem_key = $4"
        )
        .bind(i32::from(status))
        .bind(body)
        .bind(scope)
        .bind(key)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Forgets a claimed key (the request failed in a way a retry may fix).
    pub async fn idempotency_abort(&self, scope: &str, key: &str) -> Result<(), StoreError> {
        on_pool!(self, |p| sqlx::query(
            "DELETE FROM idempotency_keys WHERE scope = $1 AND idem_key = $2 AND status IS NULL"
        )
        .bind(scope)
        .bind(key)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
        Ok(())
    }
}

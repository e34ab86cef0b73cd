//! Ingest metering (`ingest_usage`): counts per tenant, stream and minute.

use super::{Store, StoreError};

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

impl Store {
    /// Adds ingest counts (one transaction; counts for an existing tenant, stream and minute
    /// add up).
    pub async fn add_ingest_usage(&self, rows: &[IngestUsageRow]) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO ingest_usage (tenant_id, stream, minute, events, bytes) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, stream, minute) DO UPDATE \
             SET events = ingest_usage.events + excluded.events, \
                 bytes = ingest_usage.bytes + excluded.bytes";
        on_pool!(self, |p| {
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
        });
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
}

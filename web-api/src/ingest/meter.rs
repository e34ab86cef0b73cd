//! Metering of ingest: events and bytes per tenant, stream and minute, added up in memory and
//! written to the store's `ingest_usage` table every few seconds (and on shutdown) in one
//! transaction, not once per request. Rows of several replicas for the same minute add up.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::store::{IngestUsageRow, Store, StoreError};

/// One minute in milliseconds.
pub const MINUTE_MS: i64 = 60_000;

type Key = (String, String, i64);

/// Pending counts, not yet in the store.
#[derive(Debug, Default)]
pub struct UsageMeter {
    pending: Mutex<HashMap<Key, (i64, i64)>>,
}

impl UsageMeter {
    /// An empty meter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts `events` and `bytes` ingested into `stream` of tenant `tenant_id` at `at_ms`.
    pub fn add(&self, tenant_id: &str, stream: &str, at_ms: i64, events: u64, bytes: u64) {
        let minute = at_ms - at_ms.rem_euclid(MINUTE_MS);
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let key = (tenant_id.to_string(), stream.to_string(), minute);
        let slot = pending.entry(key).or_default();
        slot.0 += events as i64;
        slot.1 += bytes as i64;
    }

    /// The pending rows of one tenant (counted on this replica, not yet flushed).
    pub fn pending_of(&self, tenant_id: &str) -> Vec<IngestUsageRow> {
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending
            .iter()
            .filter(|((t, _, _), _)| t == tenant_id)
            .map(|((t, s, m), (e, b))| IngestUsageRow {
                tenant_id: t.clone(),
                stream: s.clone(),
                minute: *m,
                events: *e,
                bytes: *b,
            })
            .collect()
    }

    fn take(&self) -> Vec<IngestUsageRow> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *pending)
            .into_iter()
            .map(
                |((tenant_id, stream, minute), (events, bytes))| IngestUsageRow {
                    tenant_id,
                    stream,
                    minute,
                    events,
                    bytes,
                },
            )
            .collect()
    }

    fn restore(&self, rows: Vec<IngestUsageRow>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for r in rows {
            let slot = pending
                .entry((r.tenant_id, r.stream, r.minute))
                .or_default();
            slot.0 += r.events;
            slot.1 += r.bytes;
        }
    }

    /// Writes the pending counts to the store; on failure they stay pending for the next
    /// flush. Returns the number of rows written.
    pub async fn flush(&self, store: &Store) -> Result<usize, StoreError> {
        let rows = self.take();
        if rows.is_empty() {
            return Ok(0);
        }
        match store.add_ingest_usage(&rows).await {
            Ok(()) => Ok(rows.len()),
            Err(e) => {
                self.restore(rows);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_per_tenant_stream_and_minute() {
        let m = UsageMeter::new();
        m.add("t1", "orders", 120_500, 3, 30);
        m.add("t1", "orders", 179_999, 2, 20);
        m.add("t1", "orders", 180_000, 1, 10);
        m.add("t2", "orders", 120_000, 7, 70);
        let mut rows = m.pending_of("t1");
        rows.sort_by_key(|r| r.minute);
        let got: Vec<_> = rows.iter().map(|r| (r.minute, r.events, r.bytes)).collect();
        assert_eq!(got, [(120_000, 5, 50), (180_000, 1, 10)]);
        let taken = m.take();
        assert_eq!(taken.len(), 3);
        assert!(m.pending_of("t1").is_empty());
        m.restore(taken);
        assert_eq!(m.pending_of("t2")[0].events, 7);
    }
}

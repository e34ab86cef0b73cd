//! `Idempotency-Key` records (`idempotency_keys`): claim, answer, forget.

use super::{Store, StoreError};

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

/// How long an idempotency key is remembered (ms).
pub const IDEMPOTENCY_TTL_MS: i64 = 24 * 3600 * 1000;

impl Store {
    /// Claims `key` in `scope` for a request hashing to `hash`, or says what became of it.
    pub async fn idempotency_begin(
        &self,
        scope: &str,
        key: &str,
        hash: &str,
        now: i64,
    ) -> Result<Idempotency, StoreError> {
        execute!(
            self,
            "DELETE FROM idempotency_keys WHERE created_at < $1",
            now - IDEMPOTENCY_TTL_MS
        )?;
        let inserted = execute!(
            self,
            "INSERT INTO idempotency_keys (scope, idem_key, request_hash, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (scope, idem_key) DO NOTHING",
            scope,
            key,
            hash,
            now
        )?;
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
        execute!(
            self,
            "UPDATE idempotency_keys SET status = $1, body = $2 WHERE scope = $3 AND idem_key = $4",
            i32::from(status),
            body,
            scope,
            key
        )?;
        Ok(())
    }

    /// Forgets a claimed key (the request failed in a way a retry may fix).
    pub async fn idempotency_abort(&self, scope: &str, key: &str) -> Result<(), StoreError> {
        execute!(
            self,
            "DELETE FROM idempotency_keys WHERE scope = $1 AND idem_key = $2 AND status IS NULL",
            scope,
            key
        )?;
        Ok(())
    }
}

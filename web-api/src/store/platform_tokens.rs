//! Platform tokens (`api_tokens` rows without a tenant): list, revoke, and the bootstrap
//! token's replacement by name.

use super::tokens::TOKEN_COLUMNS;
use super::{Store, StoreError, TokenRow};

impl Store {
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
}

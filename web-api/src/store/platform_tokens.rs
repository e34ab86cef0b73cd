//! Platform tokens (`api_tokens` rows without a tenant): list, revoke, and the bootstrap
//! token's replacement by name.

use super::tokens::select_tokens;
use super::{Store, StoreError, TokenRow};

impl Store {
    /// Platform tokens (no tenant) in id order, after `after`.
    pub async fn list_platform_tokens(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<TokenRow>, StoreError> {
        let sql =
            select_tokens("t.scope = '' AND ($1 IS NULL OR t.id > $1) ORDER BY t.id LIMIT $2");
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
        self.revoke_live_platform_tokens(By::Id, id, now).await?;
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
        Ok(self
            .revoke_live_platform_tokens(By::Name, name, now)
            .await?
            > 0)
    }

    /// Marks the live platform tokens whose `by` column is `value` revoked at `now`; how many.
    async fn revoke_live_platform_tokens(
        &self,
        by: By,
        value: &str,
        now: i64,
    ) -> Result<u64, StoreError> {
        let column = match by {
            By::Id => "id",
            By::Name => "name",
        };
        let sql = format!(
            "UPDATE api_tokens SET revoked_at = $1 \
             WHERE scope = '' AND {column} = $2 AND revoked_at IS NULL"
        );
        Ok(execute!(
            self,
            sqlx::AssertSqlSafe(sql.clone()),
            now,
            value
        )?)
    }

    /// Deletes the platform token called `name` if it expired or was revoked before `now`, so
    /// that the name can be issued again; whether a row was deleted.
    pub async fn delete_dead_platform_token(
        &self,
        name: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = execute!(
            self,
            "DELETE FROM api_tokens WHERE scope = '' AND name = $1 \
             AND (expires_at <= $2 OR revoked_at IS NOT NULL)",
            name,
            now
        )?;
        Ok(n > 0)
    }
}

/// Which column names the platform token to revoke.
#[derive(Debug, Clone, Copy)]
enum By {
    Id,
    Name,
}

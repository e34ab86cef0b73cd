//! API tokens of tenants (`api_tokens`, hashes only): insert, read, list, revoke and the
//! last-use time shared with platform tokens.

use super::{Store, StoreError, map_unique};

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

/// The columns of a [`TokenRow`], with its tenant's name.
const TOKEN_COLUMNS: &str = "t.id, t.tenant_id, n.name AS tenant_name, t.name, t.role, \
     t.token_hash, t.created_at, t.created_by, t.expires_at, t.last_used_at, t.revoked_at, \
     t.description";

/// The query of the token rows (with their tenant's name) matching `condition`, which may
/// order and limit them too.
pub(super) fn select_tokens(condition: &str) -> String {
    format!(
        "SELECT {TOKEN_COLUMNS} FROM api_tokens t LEFT JOIN tenants n ON n.id = t.tenant_id \
         WHERE {condition}"
    )
}

impl Store {
    /// Inserts a token; [`StoreError::Duplicate`] when its name is taken in its tenant.
    /// Returns whether it was inserted.
    pub async fn insert_token(&self, t: &NewToken<'_>) -> Result<(), StoreError> {
        execute!(
            self,
            "INSERT INTO api_tokens (id, scope, tenant_id, name, role, token_hash, created_at, \
             created_by, expires_at, description) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            t.id,
            t.tenant_id.unwrap_or(""),
            t.tenant_id,
            t.name,
            t.role,
            t.token_hash,
            t.created_at,
            t.created_by,
            t.expires_at,
            t.description
        )
        .map_err(map_unique)?;
        Ok(())
    }

    /// A token by its `jti`.
    pub async fn token(&self, id: &str) -> Result<Option<TokenRow>, StoreError> {
        let sql = select_tokens("t.id = $1");
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
        let sql =
            select_tokens("t.tenant_id = $1 AND ($2 IS NULL OR t.id > $2) ORDER BY t.id LIMIT $3");
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
        execute!(
            self,
            "UPDATE api_tokens SET revoked_at = $1 \
             WHERE tenant_id = $2 AND id = $3 AND revoked_at IS NULL",
            now,
            tenant_id,
            id
        )?;
        match self.token(id).await? {
            Some(t) if t.tenant_id.as_deref() == Some(tenant_id) => Ok(Some(t)),
            _ => Ok(None),
        }
    }

    /// Records that a token was used.
    pub async fn touch_token(&self, id: &str, now: i64) -> Result<(), StoreError> {
        execute!(
            self,
            "UPDATE api_tokens SET last_used_at = $1 WHERE id = $2",
            now,
            id
        )?;
        Ok(())
    }
}

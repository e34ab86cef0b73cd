//! The tenant registry (`tenants`): the stable id each tenant's tokens refer to.

use super::{Store, StoreError, map_unique};
use crate::TenantName;

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

impl Store {
    /// Registers a tenant; [`StoreError::Duplicate`] if the name is taken.
    pub async fn insert_tenant(&self, row: &TenantRow) -> Result<(), StoreError> {
        execute!(
            self,
            "INSERT INTO tenants (id, name, created_at, created_by) VALUES ($1, $2, $3, $4)",
            &row.id,
            &row.name,
            row.created_at,
            &row.created_by
        )
        .map_err(map_unique)?;
        Ok(())
    }

    /// A tenant by name.
    pub async fn tenant_by_name(&self, name: &TenantName) -> Result<Option<TenantRow>, StoreError> {
        Ok(on_pool!(self, |p| sqlx::query_as::<_, TenantRow>(
            "SELECT id, name, created_at, created_by FROM tenants WHERE name = $1"
        )
        .bind(name.as_str())
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
        execute!(self, "DELETE FROM api_tokens WHERE tenant_id = $1", id)?;
        execute!(self, "DELETE FROM tenant_leases WHERE tenant_id = $1", id)?;
        let done = execute!(self, "DELETE FROM tenants WHERE id = $1", id)?;
        Ok(done > 0)
    }
}

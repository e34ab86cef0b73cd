//! Tenants' quota leases (`tenant_leases`): one writer of a tenant's quota-counted objects at
//! a time, across API replicas.

use std::time::Duration;

use super::{Store, StoreError};

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

impl Store {
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
            let taken = execute!(
                self,
                "INSERT INTO tenant_leases (tenant_id, holder, expires_at) \
                 SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $1) \
                 ON CONFLICT (tenant_id) DO UPDATE \
                 SET holder = excluded.holder, expires_at = excluded.expires_at \
                 WHERE tenant_leases.expires_at < $4",
                tenant_id,
                &holder,
                until,
                now
            )?;
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

    pub(super) async fn drop_lease(&self, tenant_id: &str, holder: &str) -> Result<(), StoreError> {
        execute!(
            self,
            "DELETE FROM tenant_leases WHERE tenant_id = $1 AND holder = $2",
            tenant_id,
            holder
        )?;
        Ok(())
    }
}

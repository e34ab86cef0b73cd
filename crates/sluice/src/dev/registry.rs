//! Tenants created with `kubectl` join the Web API's tenant registry, so that tokens and ingest
//! work for them as for tenants created through the API. (In a cluster the API is the only
//! door that registers tenants; on one machine both doors lead to the same place.)

use futures::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use sluice_api::AppState;
use sluice_api::TenantName;
use sluice_api::store::{StoreError, TenantRow};
use sluice_crd::Tenant;
use tokio_util::sync::CancellationToken;

/// `created_by` of the registry rows made here.
pub const ADOPTED_BY: &str = "sluice-dev:kubectl";

/// Watches Tenants until `stop` is cancelled.
pub async fn run(client: Client, state: AppState, stop: CancellationToken) {
    let api: Api<Tenant> = Api::all(client);
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            e = events.next() => e,
        };
        match event {
            None => return,
            Some(Ok(Event::Apply(t) | Event::InitApply(t))) => adopt(&state, &t).await,
            Some(Ok(Event::Delete(t))) => forget(&state, &t.name_any()).await,
            Some(Ok(_)) => {}
            Some(Err(e)) => tracing::debug!(error = %e, "tenant watch (retrying)"),
        }
    }
}

async fn adopt(state: &AppState, t: &Tenant) {
    if t.metadata.deletion_timestamp.is_some() {
        return;
    }
    let name = t.name_any();
    let Ok(tenant) = TenantName::parse(&name) else {
        // The API never serves a tenant whose name it would refuse.
        return;
    };
    match state.store.tenant_by_name(&tenant).await {
        Ok(Some(_)) => return,
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(tenant = %name, error = %e, "cannot read the tenant registry");
            return;
        }
    }
    let created_at = t
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|ts| ts.0.as_millisecond())
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    let row = TenantRow {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.clone(),
        created_at,
        created_by: ADOPTED_BY.into(),
    };
    match state.store.insert_tenant(&row).await {
        Ok(()) => {
            tracing::info!(tenant = %name, "tenant created with kubectl joined the API's registry")
        }
        Err(StoreError::Duplicate) => {}
        Err(e) => tracing::warn!(tenant = %name, error = %e, "cannot register the tenant"),
    }
}

async fn forget(state: &AppState, name: &str) {
    let Ok(tenant) = TenantName::parse(name) else {
        return;
    };
    if let Ok(Some(row)) = state.store.tenant_by_name(&tenant).await
        && row.created_by == ADOPTED_BY
    {
        if let Err(e) = state.store.delete_tenant(&row.id).await {
            tracing::warn!(tenant = %name, error = %e, "cannot unregister the tenant");
        }
        state.forget_tenant(name);
    }
}

//! A tenant's quota, its current use against each limit, and its metered ingest.

use axum::extract::State;
use sluice_crd::TenantQuota;
use sluice_crd::validate::tenant_limits;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Read, TenantAccess};
use crate::ingest::meter::MINUTE_MS;
use crate::problem::{ApiError, Problem};
use crate::quota::{IngestCount, IngestUsage, StreamIngest, UsageView, usage_of};
use crate::{AppState, auth};

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_quota))
        .routes(routes!(get_usage))
}

/// Documents [`TenantQuota`] (whose schema comes from the CRD types) in OpenAPI.
struct QuotaDoc;

impl utoipa::PartialSchema for QuotaDoc {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::openapi::tenant_quota_ref()
    }
}

impl utoipa::ToSchema for QuotaDoc {}

/// The tenant's quota, as set on its `Tenant`.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/quota", tag = "quota",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant name")),
    responses(
        (status = 200, description = "The quota", body = inline(QuotaDoc)),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn get_quota(
    State(state): State<AppState>,
    access: TenantAccess<Read>,
) -> Result<axum::Json<TenantQuota>, ApiError> {
    let t = state
        .kube
        .tenant(&access.tenant.name)
        .await?
        .ok_or_else(|| auth::tenant_not_found(&access.tenant.name))?;
    Ok(axum::Json(t.spec.quota))
}

/// The tenant's current use against each limit, counted from its objects as the operator
/// counts them, and the events it ingested (last hour and all time, per stream).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/usage", tag = "quota",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant name")),
    responses(
        (status = 200, description = "The usage", body = UsageView),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn get_usage(
    State(state): State<AppState>,
    access: TenantAccess<Read>,
) -> Result<axum::Json<UsageView>, ApiError> {
    let name = &access.tenant.name;
    let t = state
        .kube
        .tenant(name)
        .await?
        .ok_or_else(|| auth::tenant_not_found(name))?;
    let (pipelines, streams) = if state.kube.namespace_ready(name).await? {
        (
            state.kube.all_pipelines(name).await?,
            state.kube.count_streams(name).await?,
        )
    } else {
        (vec![], 0)
    };
    let mut usage = usage_of(&pipelines, t.spec.suspend, None);
    usage.streams = streams;
    let mut view = UsageView::new(&tenant_limits(&t.spec), usage, t.spec.suspend);
    view.ingest = ingest_usage(&state, &access.tenant.id).await?;
    Ok(axum::Json(view))
}

/// The tenant's metered ingest: the store's rows plus what this replica has not flushed yet.
async fn ingest_usage(state: &AppState, tenant_id: &str) -> Result<IngestUsage, ApiError> {
    let now = chrono::Utc::now().timestamp_millis();
    // The last hour: the current minute and the 59 before it.
    let since = now - now.rem_euclid(MINUTE_MS) - 59 * MINUTE_MS;
    let mut per_stream = std::collections::BTreeMap::<String, (IngestCount, IngestCount)>::new();
    for r in state.store.ingest_totals(tenant_id, since).await? {
        let e = per_stream.entry(r.stream).or_default();
        e.0 += IngestCount {
            events: r.recent_events,
            bytes: r.recent_bytes,
        };
        e.1 += IngestCount {
            events: r.events,
            bytes: r.bytes,
        };
    }
    for r in state.ingest.meter.pending_of(tenant_id) {
        let c = IngestCount {
            events: r.events,
            bytes: r.bytes,
        };
        let e = per_stream.entry(r.stream).or_default();
        if r.minute >= since {
            e.0 += c;
        }
        e.1 += c;
    }
    let mut out = IngestUsage::default();
    for (stream, (last_hour, total)) in per_stream {
        out.last_hour += last_hour;
        out.total += total;
        out.streams.push(StreamIngest {
            stream,
            last_hour,
            total,
        });
    }
    Ok(out)
}

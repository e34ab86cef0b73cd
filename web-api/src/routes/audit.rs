//! The audit log: platform admins read all of it, filtered by tenant, actor and time; tenant
//! admins read their tenant's.

use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::audit::AuditEntry;
use crate::auth::{Administer, PlatformAdmin, TenantAccess};
use crate::pagination::{PageParams, Query, decode_cursor, page_of, page_type};
use crate::problem::{ApiError, Problem};
use crate::store::AuditFilter;

page_type!(
    AuditPage,
    AuditEntry,
    "A page of audit records, newest first."
);

/// Filters of the audit log.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only this tenant's records (platform-wide list only).
    pub tenant: Option<String>,
    /// Only this actor's records, e.g. `token:<id>`.
    pub actor: Option<String>,
    /// Records at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Records before this time (RFC 3339).
    pub until: Option<String>,
    /// Most items to return (1 to 500, default 50).
    pub limit: Option<u32>,
    /// Where to continue: the `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_audit))
        .routes(routes!(list_tenant_audit))
}

fn time(field: &str, v: &Option<String>) -> Result<Option<i64>, ApiError> {
    v.as_deref()
        .map(|s| {
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| t.timestamp_millis())
                .map_err(|_| ApiError::bad_param(field, "must be an RFC 3339 time"))
        })
        .transpose()
}

async fn list(
    state: &AppState,
    tenant: Option<String>,
    p: &AuditParams,
) -> Result<axum::Json<AuditPage>, ApiError> {
    let page = PageParams {
        limit: p.limit,
        cursor: None,
    };
    let limit = page.limit()?;
    let before_id =
        match &p.cursor {
            Some(c) => Some(decode_cursor(c)?.parse::<i64>().map_err(|_| {
                ApiError::bad_param("cursor", "is not a cursor returned by this API")
            })?),
            None => None,
        };
    let filter = AuditFilter {
        tenant,
        actor: p.actor.clone(),
        since: time("since", &p.since)?,
        until: time("until", &p.until)?,
        before_id,
        limit: i64::from(limit) + 1,
    };
    let rows = state.store.list_audit(&filter).await?;
    let (items, next_cursor) = page_of(rows, limit, AuditEntry::from, |e| e.id.to_string());
    Ok(axum::Json(AuditPage { items, next_cursor }))
}

/// The whole audit log (platform admins), newest first.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", security(("bearer" = [])),
    params(AuditParams),
    responses(
        (status = 200, description = "A page of audit records", body = AuditPage),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn list_audit(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
    Query(p): Query<AuditParams>,
) -> Result<axum::Json<AuditPage>, ApiError> {
    list(&state, p.tenant.clone(), &p).await
}

/// A tenant's audit log (tenant admins and platform admins), newest first.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/audit", tag = "audit",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant name"), AuditParams),
    responses(
        (status = 200, description = "A page of audit records", body = AuditPage),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn list_tenant_audit(
    State(state): State<AppState>,
    access: TenantAccess<Administer>,
    Query(p): Query<AuditParams>,
) -> Result<axum::Json<AuditPage>, ApiError> {
    if p.tenant.as_deref().is_some_and(|t| t != access.tenant.name) {
        return Err(ApiError::bad_param(
            "tenant",
            "must be omitted or equal the tenant of the path",
        ));
    }
    list(&state, Some(access.tenant.name.clone()), &p).await
}

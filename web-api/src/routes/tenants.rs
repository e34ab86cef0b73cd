//! Tenants: platform admins create, list, update (quota, isolation, owners), suspend, resume and
//! delete them; any role in a tenant may read it. The `Tenant` object in Kubernetes is the
//! source of truth; the store's registry row gives it the stable id tokens refer to.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sluice_core::names;
use sluice_crd::{Tenant, TenantSpec, TenantStatus, validate};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{ManageTenant, PlatformAdmin, Read, TenantAccess};
use crate::body::{self, Json, MergePatch};
use crate::pagination::{PageParams, Query, encode_cursor, page_type};
use crate::path::ValidPath;
use crate::problem::{ApiError, FieldProblem, Problem};
use crate::store::{StoreError, TenantRow};
use crate::{AppState, TenantName, audit, format_ms, idempotency};

/// Body of `POST /v1/tenants`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateTenant {
    /// Name of the tenant: a DNS-1123 label of at most 56 characters (its namespace is
    /// `sluice-<name>`), not a reserved name (`system`, `kube`, `default`, `admin`, `platform`
    /// by default, and the one whose namespace is Sluice's own).
    pub name: String,
    /// Desired state: display name, owners, quota, isolation, suspension.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::tenant_spec_ref)]
    pub spec: TenantSpec,
}

/// Body of `PATCH /v1/tenants/{tenant}` once the merge patch is applied.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TenantUpdate {
    spec: TenantSpec,
}

/// A tenant as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantView {
    /// Name.
    pub name: String,
    /// Stable id in the registry.
    pub id: String,
    /// The tenant's namespace.
    pub namespace: String,
    /// Desired state.
    #[schema(schema_with = crate::openapi::tenant_spec_ref)]
    pub spec: TenantSpec,
    /// Observed state, as the operator reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::openapi::tenant_status_ref)]
    pub status: Option<TenantStatus>,
    /// Registration time (RFC 3339).
    pub created_at: String,
    /// Whether the tenant is marked for deletion.
    pub deleting: bool,
    /// Version of the object, for optimistic concurrency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
}

impl TenantView {
    fn new(row: &TenantRow, t: Tenant) -> Self {
        TenantView {
            name: row.name.clone(),
            id: row.id.clone(),
            namespace: names::tenant_namespace(&row.name),
            deleting: t.metadata.deletion_timestamp.is_some(),
            resource_version: t.metadata.resource_version.clone(),
            spec: t.spec,
            status: t.status,
            created_at: format_ms(row.created_at),
        }
    }
}

page_type!(TenantPage, TenantView, "A page of tenants.");

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_tenant, list_tenants))
        .routes(routes!(get_tenant, patch_tenant, delete_tenant))
        .routes(routes!(suspend_tenant))
        .routes(routes!(resume_tenant))
}

fn validate_spec(name: &str, spec: &TenantSpec) -> Result<(), ApiError> {
    let errors: Vec<FieldProblem> = validate::tenant(name, spec)
        .into_iter()
        .map(|mut e| {
            if e.field == "metadata.name" {
                e.field = "name".into();
            }
            e.into()
        })
        .collect();
    ApiError::check_fields(errors)
}

/// Why `name` may not be a tenant's name, if it is reserved: listed in
/// [`crate::Config::reserved_tenant_names`], or its namespace `sluice-<name>` is the namespace
/// Sluice is installed in.
pub fn reserved_name_problem(name: &TenantName, config: &crate::Config) -> Option<String> {
    if config
        .reserved_tenant_names
        .iter()
        .any(|r| r == name.as_str())
    {
        return Some(format!("{name:?} is a reserved tenant name"));
    }
    let namespace = names::tenant_namespace(name);
    if config.install_namespace.as_deref() == Some(namespace.as_str()) {
        return Some(format!(
            "{name:?} is reserved: its namespace {namespace:?} is the one Sluice is installed in"
        ));
    }
    None
}

async fn kube_tenant(state: &AppState, name: &str) -> Result<Tenant, ApiError> {
    state
        .kube
        .tenant(name)
        .await?
        .ok_or_else(|| crate::auth::tenant_not_found(name))
}

/// Registers a tenant and creates its `Tenant` object; the operator then creates its namespace.
#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", security(("bearer" = [])),
    request_body = CreateTenant,
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Returns the first answer again when retried with the same body")),
    responses(
        (status = 201, description = "Created", body = TenantView),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn create_tenant(
    State(state): State<AppState>,
    PlatformAdmin(caller): PlatformAdmin,
    headers: HeaderMap,
    Json(req): Json<CreateTenant>,
) -> Result<Response, ApiError> {
    let fingerprint = serde_json::to_vec(&json!(["tenant.create", &req])).unwrap_or_default();
    let name = req.name.clone();
    let result = idempotency::run(&state, "", &headers, &fingerprint, || async {
        validate_spec(&req.name, &req.spec)?;
        let name = TenantName::parse(&req.name).map_err(|e| ApiError::field("name", e.0))?;
        if let Some(m) = reserved_name_problem(&name, &state.config) {
            return Err(ApiError::field("name", m));
        }
        let row = TenantRow {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_string(),
            created_at: chrono::Utc::now().timestamp_millis(),
            created_by: caller.principal.actor.clone(),
        };
        state.store.insert_tenant(&row).await.map_err(|e| match e {
            StoreError::Duplicate => {
                ApiError::AlreadyExists(format!("tenant {:?} already exists", row.name))
            }
            e => e.into(),
        })?;
        let created = match state.kube.create_tenant(&row.name, req.spec.clone()).await {
            Ok(t) => t,
            Err(e) => {
                // Keep the registry and Kubernetes in step: undo the registration.
                state.store.delete_tenant(&row.id).await?;
                state.forget_tenant(&row.name);
                return Err(match ApiError::from(e) {
                    ApiError::AlreadyExists(_) => ApiError::AlreadyExists(format!(
                        "a Tenant object {:?} already exists in Kubernetes",
                        row.name
                    )),
                    e => e,
                });
            }
        };
        let view = serde_json::to_value(TenantView::new(&row, created))
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(idempotency::Created {
            status: StatusCode::CREATED,
            body: view.clone(),
            stored: view,
        })
    })
    .await;
    audit::recorded(
        &state,
        &caller,
        Some(&name),
        "tenant.create",
        &format!("tenants/{name}"),
        result,
    )
    .await
}

/// Lists tenants (platform admins), in name order.
#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", security(("bearer" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "A page of tenants", body = TenantPage),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn list_tenants(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<TenantPage>, ApiError> {
    let limit = page.limit()?;
    let after = page.cursor()?;
    let rows = state
        .store
        .list_tenants(after.as_deref(), i64::from(limit) + 1)
        .await?;
    let more = rows.len() > limit as usize;
    let rows: Vec<TenantRow> = rows.into_iter().take(limit as usize).collect();
    let objects =
        futures::future::try_join_all(rows.iter().map(|r| state.kube.tenant(&r.name))).await?;
    let next_cursor = more
        .then(|| rows.last().map(|r| encode_cursor(&r.name)))
        .flatten();
    let items = rows
        .iter()
        .zip(objects)
        .filter_map(|(r, t)| t.map(|t| TenantView::new(r, t)))
        .collect();
    Ok(axum::Json(TenantPage { items, next_cursor }))
}

/// A tenant: its spec and the operator's status.
#[utoipa::path(get, path = "/v1/tenants/{tenant}", tag = "tenants", security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant name")),
    responses(
        (status = 200, description = "The tenant", body = TenantView),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn get_tenant(
    State(state): State<AppState>,
    access: TenantAccess<Read>,
) -> Result<axum::Json<TenantView>, ApiError> {
    let t = kube_tenant(&state, &access.tenant.name).await?;
    Ok(axum::Json(TenantView::new(&access.tenant, t)))
}

async fn update_spec(
    state: &AppState,
    access: &TenantAccess<ManageTenant>,
    action: &str,
    change: impl FnOnce(&Tenant) -> Result<TenantSpec, ApiError>,
) -> Result<axum::Json<TenantView>, ApiError> {
    let name = access.tenant.name.clone();
    let result = async {
        let current = kube_tenant(state, &name).await?;
        if current.metadata.deletion_timestamp.is_some() {
            return Err(ApiError::Conflict(format!(
                "tenant {name:?} is being deleted"
            )));
        }
        let spec = change(&current)?;
        validate_spec(&name, &spec)?;
        let updated = state.kube.replace_tenant(&current, spec).await?;
        // Quota and suspension reach ingest on this replica at once.
        state.ingest.forget_tenant(&name);
        Ok(axum::Json(TenantView::new(&access.tenant, updated)))
    }
    .await;
    audit::recorded(
        state,
        &access.caller,
        Some(&name),
        action,
        &format!("tenants/{name}"),
        result,
    )
    .await
}

/// Changes a tenant with a JSON merge patch (RFC 7396) of `{"spec": {...}}`: quota, isolation,
/// owners, display name, suspension.
#[utoipa::path(patch, path = "/v1/tenants/{tenant}", tag = "tenants", security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant name")),
    request_body(content = Object, content_type = "application/merge-patch+json",
        description = "A merge patch of `{\"spec\": TenantSpec}`"),
    responses(
        (status = 200, description = "The updated tenant", body = TenantView),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn patch_tenant(
    State(state): State<AppState>,
    access: TenantAccess<ManageTenant>,
    MergePatch(patch): MergePatch,
) -> Result<axum::Json<TenantView>, ApiError> {
    update_spec(&state, &access, "tenant.update", |current| {
        let mut doc = json!({ "spec": current.spec });
        json_patch::merge(&mut doc, &patch);
        Ok(body::from_value::<TenantUpdate>(doc)?.spec)
    })
    .await
}

/// Suspends a tenant: every pipeline scales to zero and ingest is refused.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/suspend", tag = "tenants",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant name")),
    responses(
        (status = 200, description = "The suspended tenant", body = TenantView),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn suspend_tenant(
    State(state): State<AppState>,
    access: TenantAccess<ManageTenant>,
) -> Result<axum::Json<TenantView>, ApiError> {
    update_spec(&state, &access, "tenant.suspend", |t| {
        Ok(TenantSpec {
            suspend: true,
            ..t.spec.clone()
        })
    })
    .await
}

/// Resumes a suspended tenant.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/resume", tag = "tenants",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant name")),
    responses(
        (status = 200, description = "The resumed tenant", body = TenantView),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn resume_tenant(
    State(state): State<AppState>,
    access: TenantAccess<ManageTenant>,
) -> Result<axum::Json<TenantView>, ApiError> {
    update_spec(&state, &access, "tenant.resume", |t| {
        Ok(TenantSpec {
            suspend: false,
            ..t.spec.clone()
        })
    })
    .await
}

/// Deletes a tenant. Answers once the `Tenant` is marked for deletion (202, the operator then
/// removes its namespace and everything in it) or gone (204). Its API tokens stop working.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}", tag = "tenants",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant name")),
    responses(
        (status = 202, description = "Marked for deletion", body = TenantView),
        (status = 204, description = "Deleted"),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn delete_tenant(
    State(state): State<AppState>,
    access: TenantAccess<ManageTenant>,
    ValidPath(_tenant): ValidPath<String>,
) -> Result<Response, ApiError> {
    let name = access.tenant.name.clone();
    let result = async {
        let remaining = state.kube.delete_tenant(&name).await?;
        state.store.delete_tenant(&access.tenant.id).await?;
        state.forget_tenant(&name);
        Ok(match remaining {
            Some(t) => (
                StatusCode::ACCEPTED,
                axum::Json(TenantView::new(&access.tenant, t)),
            )
                .into_response(),
            None => StatusCode::NO_CONTENT.into_response(),
        })
    }
    .await;
    audit::recorded(
        &state,
        &access.caller,
        Some(&name),
        "tenant.delete",
        &format!("tenants/{name}"),
        result,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_names_are_refused() {
        let config = crate::Config {
            install_namespace: Some("sluice-ops".into()),
            ..crate::Config::default()
        };
        let problem =
            |name: &str| reserved_name_problem(&TenantName::parse(name).unwrap(), &config);
        for name in ["system", "kube", "default", "admin", "platform", "ops"] {
            assert!(problem(name).is_some(), "{name}");
        }
        assert_eq!(problem("acme"), None);
        assert_eq!(problem("systems"), None);
    }
}

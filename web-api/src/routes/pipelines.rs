//! Pipelines of a tenant: create, list, get (spec and the operator's status), replace, JSON
//! merge patch, delete, suspend and resume. Specs are validated (names, CEL that compiles, sinks
//! known, no unknown fields, so no inline secrets) before anything is written, and every write
//! that can raise the tenant's use is checked against its quota under the tenant's lock.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sluice_crd::validate::{self, tenant_limits};
use sluice_crd::{Pipeline, PipelineSpec, PipelineStatus, Tenant};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Read, TenantAccess, WritePipelines};
use crate::body::{self, Json, MergePatch};
use crate::pagination::{PageParams, Query, encode_cursor, page_type};
use crate::path::ValidPath;
use crate::problem::{ApiError, FieldProblem, Problem};
use crate::quota::{check_change, usage_of};
use crate::routes::check_name;
use crate::store::StoreError;
use crate::{AppState, audit, auth, idempotency};

/// Body of `POST /v1/tenants/{tenant}/pipelines`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreatePipeline {
    /// Name, a DNS-1123 label, unique in the tenant.
    pub name: String,
    /// What the pipeline reads, keeps and where it delivers.
    #[schema(schema_with = crate::openapi::pipeline_spec_ref)]
    pub spec: PipelineSpec,
}

/// Body of `PUT /v1/tenants/{tenant}/pipelines/{pipeline}` (and the document a merge patch
/// applies to).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplacePipeline {
    /// The new spec. `source.stream` cannot change.
    #[schema(schema_with = crate::openapi::pipeline_spec_ref)]
    pub spec: PipelineSpec,
    /// When set, the replace fails with 409 if the pipeline changed since this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
}

/// A pipeline as the API shows it: its spec and the operator's status.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineView {
    /// Name.
    pub name: String,
    /// Tenant.
    pub tenant: String,
    /// Desired state.
    #[schema(schema_with = crate::openapi::pipeline_spec_ref)]
    pub spec: PipelineSpec,
    /// Observed state (phase, routes, conditions), once the operator has seen the pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::openapi::pipeline_status_ref)]
    pub status: Option<PipelineStatus>,
    /// Creation time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Generation of the spec (the status' `observedGeneration` catches up with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Version of the object, for optimistic concurrency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Whether the pipeline is marked for deletion.
    pub deleting: bool,
}

impl PipelineView {
    fn new(tenant: &str, p: Pipeline) -> Self {
        PipelineView {
            name: p.metadata.name.clone().unwrap_or_default(),
            tenant: tenant.to_string(),
            created_at: p
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string()),
            generation: p.metadata.generation,
            resource_version: p.metadata.resource_version.clone(),
            deleting: p.metadata.deletion_timestamp.is_some(),
            spec: p.spec,
            status: p.status,
        }
    }
}

page_type!(PipelinePage, PipelineView, "A page of pipelines.");

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_pipeline, list_pipelines))
        .routes(routes!(
            get_pipeline,
            replace_pipeline,
            patch_pipeline,
            delete_pipeline
        ))
        .routes(routes!(suspend_pipeline))
        .routes(routes!(resume_pipeline))
}

fn validate_spec(spec: &PipelineSpec) -> Result<(), ApiError> {
    let errors: Vec<FieldProblem> = validate::pipeline(spec)
        .into_iter()
        .map(FieldProblem::from)
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(errors))
    }
}

/// The tenant's `Tenant`, when it is ready to hold pipelines: the object exists, is not being
/// deleted, and the operator has created its namespace.
async fn ready_tenant(state: &AppState, tenant: &str) -> Result<Tenant, ApiError> {
    let t = state.kube.tenant(tenant).await?.ok_or_else(|| {
        ApiError::TenantNotReady(format!("tenant {tenant:?} has no Tenant object yet"))
    })?;
    if t.metadata.deletion_timestamp.is_some() {
        return Err(ApiError::Conflict(format!(
            "tenant {tenant:?} is being deleted"
        )));
    }
    if !state.kube.namespace_ready(tenant).await? {
        return Err(ApiError::TenantNotReady(format!(
            "the namespace of tenant {tenant:?} does not exist yet; the operator creates it \
             shortly after the tenant; retry in a few seconds"
        )));
    }
    Ok(t)
}

async fn lock(
    state: &AppState,
    access: &TenantAccess<WritePipelines>,
) -> Result<crate::store::TenantLock, ApiError> {
    state
        .lock_tenant(&access.tenant.id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => auth::tenant_not_found(&access.tenant.name),
            e => e.into(),
        })
}

fn pipeline_not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("pipeline {name:?} not found"))
}

/// Creates a pipeline. 409 `quota-exceeded` when it does not fit in the tenant's quota, 409
/// `tenant-not-ready` while the operator has not yet created the tenant's namespace.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/pipelines", tag = "pipelines",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant name"),
        ("Idempotency-Key" = Option<String>, Header,
            description = "Returns the first answer again when retried with the same body")),
    request_body = CreatePipeline,
    responses(
        (status = 201, description = "Created", body = PipelineView),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn create_pipeline(
    State(state): State<AppState>,
    access: TenantAccess<WritePipelines>,
    headers: HeaderMap,
    Json(req): Json<CreatePipeline>,
) -> Result<Response, ApiError> {
    let tenant = access.tenant.name.clone();
    let fingerprint = serde_json::to_vec(&json!(["pipeline.create", &req])).unwrap_or_default();
    let result = idempotency::run(
        &state,
        &access.tenant.id,
        &headers,
        &fingerprint,
        || async {
            check_name("name", &req.name, 63)?;
            validate_spec(&req.spec)?;
            let t = ready_tenant(&state, &tenant).await?;
            let lock = lock(&state, &access).await?;
            let all = state.kube.all_pipelines(&tenant).await?;
            if all
                .iter()
                .any(|p| p.metadata.name.as_deref() == Some(&req.name))
            {
                return Err(ApiError::AlreadyExists(format!(
                    "pipeline {:?} already exists",
                    req.name
                )));
            }
            let used = usage_of(&all, t.spec.suspend, None);
            check_change(
                &tenant_limits(&t.spec),
                used,
                None,
                &req.spec,
                t.spec.suspend,
            )?;
            let created = state
                .kube
                .create_pipeline(&tenant, &req.name, req.spec.clone())
                .await?;
            lock.release().await?;
            let view = serde_json::to_value(PipelineView::new(&tenant, created))
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            Ok(idempotency::Created {
                status: StatusCode::CREATED,
                body: view.clone(),
                stored: view,
            })
        },
    )
    .await;
    audit::record(
        &state,
        &access.caller,
        Some(&tenant),
        "pipeline.create",
        &format!("pipelines/{}", req.name),
        audit::Outcome::of_response(&result),
    )
    .await;
    result
}

/// Lists the tenant's pipelines, with their status.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/pipelines", tag = "pipelines",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant name"), PageParams),
    responses(
        (status = 200, description = "A page of pipelines", body = PipelinePage),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn list_pipelines(
    State(state): State<AppState>,
    access: TenantAccess<Read>,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<PipelinePage>, ApiError> {
    let limit = page.limit()?;
    let cursor = page.cursor()?;
    let tenant = &access.tenant.name;
    if !state.kube.namespace_ready(tenant).await? {
        return Ok(axum::Json(PipelinePage {
            items: vec![],
            next_cursor: None,
        }));
    }
    let list = state
        .kube
        .list_pipelines(tenant, limit, cursor.as_deref())
        .await
        .map_err(|e| match &e {
            kube::Error::Api(s) if s.code == 410 || s.code == 400 => {
                ApiError::bad_param("cursor", "has expired or is not valid; list again")
            }
            _ => e.into(),
        })?;
    let next_cursor = list
        .metadata
        .continue_
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(encode_cursor);
    let items = list
        .items
        .into_iter()
        .map(|p| PipelineView::new(tenant, p))
        .collect();
    Ok(axum::Json(PipelinePage { items, next_cursor }))
}

/// A pipeline: its spec and the operator's status.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/pipelines/{pipeline}", tag = "pipelines",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant name"),
        ("pipeline" = String, Path, description = "Pipeline name")),
    responses(
        (status = 200, description = "The pipeline", body = PipelineView),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn get_pipeline(
    State(state): State<AppState>,
    access: TenantAccess<Read>,
    ValidPath((_tenant, name)): ValidPath<(String, String)>,
) -> Result<axum::Json<PipelineView>, ApiError> {
    let tenant = &access.tenant.name;
    let p = state
        .kube
        .pipeline(tenant, &name)
        .await?
        .ok_or_else(|| pipeline_not_found(&name))?;
    Ok(axum::Json(PipelineView::new(tenant, p)))
}

/// Changes a pipeline's spec under the tenant's lock: validation, immutable source, optimistic
/// concurrency, quota (a change asking for no more than before always passes), then the write.
async fn change(
    state: &AppState,
    access: &TenantAccess<WritePipelines>,
    name: &str,
    action: &str,
    make: impl FnOnce(&Pipeline) -> Result<(PipelineSpec, Option<String>), ApiError>,
) -> Result<axum::Json<PipelineView>, ApiError> {
    let tenant = access.tenant.name.clone();
    let result = async {
        let t = ready_tenant(state, &tenant).await?;
        let lock = lock(state, access).await?;
        let all = state.kube.all_pipelines(&tenant).await?;
        let current = all
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .ok_or_else(|| pipeline_not_found(name))?;
        if current.metadata.deletion_timestamp.is_some() {
            return Err(ApiError::Conflict(format!(
                "pipeline {name:?} is being deleted"
            )));
        }
        let (spec, expected_version) = make(current)?;
        if let Some(v) = expected_version
            && current.metadata.resource_version.as_deref() != Some(v.as_str())
        {
            return Err(ApiError::Conflict(format!(
                "pipeline {name:?} changed since version {v}; read it again"
            )));
        }
        validate_spec(&spec)?;
        if spec.source.stream != current.spec.source.stream {
            return Err(ApiError::field(
                "spec.source.stream",
                "is immutable: a pipeline never changes source; create another pipeline",
            ));
        }
        let used = usage_of(&all, t.spec.suspend, Some(name));
        check_change(
            &tenant_limits(&t.spec),
            used,
            Some(&current.spec),
            &spec,
            t.spec.suspend,
        )?;
        let updated = state.kube.replace_pipeline(&tenant, current, spec).await?;
        lock.release().await?;
        Ok(axum::Json(PipelineView::new(&tenant, updated)))
    }
    .await;
    audit::record(
        state,
        &access.caller,
        Some(&tenant),
        action,
        &format!("pipelines/{name}"),
        audit::Outcome::of(&result, 200),
    )
    .await;
    result
}

/// Replaces a pipeline's spec.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/pipelines/{pipeline}", tag = "pipelines",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant name"),
        ("pipeline" = String, Path, description = "Pipeline name")),
    request_body = ReplacePipeline,
    responses(
        (status = 200, description = "The updated pipeline", body = PipelineView),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn replace_pipeline(
    State(state): State<AppState>,
    access: TenantAccess<WritePipelines>,
    ValidPath((_tenant, name)): ValidPath<(String, String)>,
    Json(req): Json<ReplacePipeline>,
) -> Result<axum::Json<PipelineView>, ApiError> {
    change(&state, &access, &name, "pipeline.replace", |_| {
        Ok((req.spec, req.resource_version))
    })
    .await
}

/// Changes a pipeline with a JSON merge patch (RFC 7396) of `{"spec": {...}}`, e.g.
/// `{"spec": {"parallelism": 3}}` to scale it.
#[utoipa::path(patch, path = "/v1/tenants/{tenant}/pipelines/{pipeline}", tag = "pipelines",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant name"),
        ("pipeline" = String, Path, description = "Pipeline name")),
    request_body(content = Object, content_type = "application/merge-patch+json",
        description = "A merge patch of `{\"spec\": PipelineSpec, \"resourceVersion\": ...}`"),
    responses(
        (status = 200, description = "The updated pipeline", body = PipelineView),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn patch_pipeline(
    State(state): State<AppState>,
    access: TenantAccess<WritePipelines>,
    ValidPath((_tenant, name)): ValidPath<(String, String)>,
    MergePatch(patch): MergePatch,
) -> Result<axum::Json<PipelineView>, ApiError> {
    change(&state, &access, &name, "pipeline.patch", |current| {
        let mut doc = json!({ "spec": current.spec });
        json_patch::merge(&mut doc, &patch);
        let r = body::from_value::<ReplacePipeline>(doc)?;
        Ok((r.spec, r.resource_version))
    })
    .await
}

/// Suspends a pipeline: its routes scale to zero, keeping their positions in the stream.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/pipelines/{pipeline}/suspend",
    tag = "pipelines", security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant name"),
        ("pipeline" = String, Path, description = "Pipeline name")),
    responses(
        (status = 200, description = "The suspended pipeline", body = PipelineView),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn suspend_pipeline(
    State(state): State<AppState>,
    access: TenantAccess<WritePipelines>,
    ValidPath((_tenant, name)): ValidPath<(String, String)>,
) -> Result<axum::Json<PipelineView>, ApiError> {
    change(&state, &access, &name, "pipeline.suspend", |p| {
        Ok((
            PipelineSpec {
                suspend: true,
                ..p.spec.clone()
            },
            None,
        ))
    })
    .await
}

/// Resumes a suspended pipeline (checked against the quota: its workers count again).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/pipelines/{pipeline}/resume",
    tag = "pipelines", security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant name"),
        ("pipeline" = String, Path, description = "Pipeline name")),
    responses(
        (status = 200, description = "The resumed pipeline", body = PipelineView),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn resume_pipeline(
    State(state): State<AppState>,
    access: TenantAccess<WritePipelines>,
    ValidPath((_tenant, name)): ValidPath<(String, String)>,
) -> Result<axum::Json<PipelineView>, ApiError> {
    change(&state, &access, &name, "pipeline.resume", |p| {
        Ok((
            PipelineSpec {
                suspend: false,
                ..p.spec.clone()
            },
            None,
        ))
    })
    .await
}

/// Deletes a pipeline: 202 while the operator's finalizer removes its routes, 204 once gone.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/pipelines/{pipeline}", tag = "pipelines",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant name"),
        ("pipeline" = String, Path, description = "Pipeline name")),
    responses(
        (status = 202, description = "Marked for deletion", body = PipelineView),
        (status = 204, description = "Deleted"),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn delete_pipeline(
    State(state): State<AppState>,
    access: TenantAccess<WritePipelines>,
    ValidPath((_tenant, name)): ValidPath<(String, String)>,
) -> Result<Response, ApiError> {
    let tenant = access.tenant.name.clone();
    let result = async {
        if state.kube.pipeline(&tenant, &name).await?.is_none() {
            return Err(pipeline_not_found(&name));
        }
        let remaining = state
            .kube
            .delete_pipeline(&tenant, &name)
            .await
            .map_err(crate::k8s::not_found("pipeline"))?;
        Ok(match remaining {
            Some(p) => (
                StatusCode::ACCEPTED,
                axum::Json(PipelineView::new(&tenant, p)),
            )
                .into_response(),
            None => StatusCode::NO_CONTENT.into_response(),
        })
    }
    .await;
    audit::record(
        &state,
        &access.caller,
        Some(&tenant),
        "pipeline.delete",
        &format!("pipelines/{name}"),
        audit::Outcome::of_response(&result),
    )
    .await;
    result
}

//! Pipelines of a tenant: create, list, get (spec and the operator's status), replace, JSON
//! merge patch, delete, suspend and resume. Specs are validated (names, CEL that compiles, sinks
//! known, no unknown fields, so no inline secrets) before anything is written, and every write
//! that can raise the tenant's use is checked against its quota under the tenant's lock.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sluice_core::quota::{Limits, Usage};
use sluice_crd::validate::{self, tenant_limits};
use sluice_crd::{Pipeline, PipelineSpec, PipelineStatus, Tenant};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::{Read, TenantAccess, WritePipelines};
use crate::body::{self, Json, MergePatch};
use crate::pagination::{PageParams, Query, page_type};
use crate::path::ValidPath;
use crate::problem::{ApiError, FieldProblem, Problem};
use crate::quota::{check_change, usage_of};
use crate::routes::resource::ObjectInfo;
use crate::routes::resource::{self, Resource, Site, lock, not_found, ready_tenant};
use crate::store::TenantLock;

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
    /// Name, tenant and the object's metadata.
    #[serde(flatten)]
    pub object: ObjectInfo,
    /// Desired state.
    #[schema(schema_with = crate::openapi::pipeline_spec_ref)]
    pub spec: PipelineSpec,
    /// Observed state (phase, routes, conditions), once the operator has seen the pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::openapi::pipeline_status_ref)]
    pub status: Option<PipelineStatus>,
}

impl PipelineView {
    fn new(tenant: &str, p: Pipeline) -> Self {
        PipelineView {
            object: ObjectInfo::of(tenant, &p.metadata),
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
    ApiError::check_fields(errors)
}

/// What a change of a pipeline holds from its quota check to its write: the tenant's lease,
/// its limits, and what its other pipelines use.
pub struct PipelineHold {
    lock: TenantLock,
    limits: Limits,
    used_by_others: Usage,
    tenant_suspended: bool,
}

impl Resource for Pipeline {
    const KIND: &'static str = "pipeline";
    const PLURAL: &'static str = "pipelines";
    type Write = WritePipelines;
    type View = PipelineView;
    type Hold = PipelineHold;

    fn view(tenant: &str, object: Self) -> PipelineView {
        PipelineView::new(tenant, object)
    }

    fn validate(spec: &PipelineSpec) -> Result<(), ApiError> {
        validate_spec(spec)
    }

    fn check_new_name(name: &str) -> Result<(), ApiError> {
        match validate::pipeline_name(name) {
            Some(e) => Err(ApiError::field("name", e.message)),
            None => Ok(()),
        }
    }

    fn check_immutable(current: &PipelineSpec, new: &PipelineSpec) -> Result<(), ApiError> {
        if new.source.stream != current.source.stream {
            return Err(ApiError::field(
                "spec.source.stream",
                "is immutable: a pipeline never changes source; create another pipeline",
            ));
        }
        Ok(())
    }

    async fn admit_create(site: Site<'_>, t: &Tenant, spec: &PipelineSpec) -> Result<(), ApiError> {
        let Site {
            state,
            tenant,
            name,
        } = site;
        let all = state.kube.all_pipelines(&tenant.name).await?;
        if all.iter().any(|p| p.metadata.name.as_deref() == Some(name)) {
            return Err(ApiError::AlreadyExists(format!(
                "pipeline {name:?} already exists"
            )));
        }
        let used = usage_of(&all, t.spec.suspend, None);
        check_change(&tenant_limits(&t.spec), used, None, spec, t.spec.suspend)
    }

    async fn begin_change(site: Site<'_>) -> Result<(Pipeline, PipelineHold), ApiError> {
        let Site {
            state,
            tenant,
            name,
        } = site;
        let t = ready_tenant(state, &tenant.name).await?;
        let lock = lock(state, tenant).await?;
        let all = state.kube.all_pipelines(&tenant.name).await?;
        let current = all
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .ok_or_else(|| not_found::<Pipeline>(name))?
            .clone();
        let hold = PipelineHold {
            lock,
            limits: tenant_limits(&t.spec),
            used_by_others: usage_of(&all, t.spec.suspend, Some(name)),
            tenant_suspended: t.spec.suspend,
        };
        Ok((current, hold))
    }

    fn admit_change(
        hold: &PipelineHold,
        current: &Pipeline,
        spec: &PipelineSpec,
    ) -> Result<(), ApiError> {
        check_change(
            &hold.limits,
            hold.used_by_others,
            Some(&current.spec),
            spec,
            hold.tenant_suspended,
        )
    }

    async fn end_change(hold: PipelineHold) -> Result<(), ApiError> {
        Ok(hold.lock.release().await?)
    }

    fn forget(_state: &AppState, _tenant: &str, _name: &str) {}
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
    resource::create::<Pipeline>(&state, &access, &headers, &req, &req.name, &req.spec).await
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
    let (items, next_cursor) = resource::list::<Pipeline, _>(&state, &access, &page).await?;
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
    resource::get::<Pipeline, _>(&state, &access, &name).await
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
    resource::change::<Pipeline>(&state, &access, &name, "pipeline.replace", |_| {
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
    resource::change::<Pipeline>(&state, &access, &name, "pipeline.patch", |current| {
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
    resource::change::<Pipeline>(&state, &access, &name, "pipeline.suspend", |p| {
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
    resource::change::<Pipeline>(&state, &access, &name, "pipeline.resume", |p| {
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
    resource::delete::<Pipeline>(&state, &access, &name).await
}

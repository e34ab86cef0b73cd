//! Streams of a tenant: create, list, get (spec and the operator's status: broker subject,
//! message and byte counts, conditions), replace, JSON merge patch (e.g. retention) and delete.
//! Specs are validated (names, retention, a schema that is a valid JSON Schema, no unknown
//! fields) before anything is written, and creates are checked against the tenant's
//! `maxStreams` under the tenant's lock, like pipelines.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sluice_core::quota::{self, Usage};
use sluice_crd::validate::{self, tenant_limits};
use sluice_crd::{Stream, StreamSpec, StreamStatus, Tenant};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::{Read, TenantAccess, WriteStreams};
use crate::body::{self, Json, MergePatch};
use crate::pagination::{PageParams, Query, page_type};
use crate::path::ValidPath;
use crate::problem::{ApiError, FieldProblem, Problem};
use crate::routes::resource::ObjectInfo;
use crate::routes::resource::{self, Resource, Site, not_found};

/// Body of `POST /v1/tenants/{tenant}/streams`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateStream {
    /// Name, a DNS-1123 label, unique in the tenant.
    pub name: String,
    /// Retention, partitions, replicas and the optional JSON Schema of events.
    #[schema(schema_with = crate::openapi::stream_spec_ref)]
    pub spec: StreamSpec,
}

/// Body of `PUT /v1/tenants/{tenant}/streams/{stream}` (and the document a merge patch
/// applies to).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplaceStream {
    /// The new spec. `partitions` may grow but never shrink; `broker` cannot change once set.
    #[schema(schema_with = crate::openapi::stream_spec_ref)]
    pub spec: StreamSpec,
    /// When set, the replace fails with 409 if the stream changed since this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
}

/// A stream as the API shows it: its spec and the operator's status.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StreamView {
    /// Name, tenant and the object's metadata.
    #[serde(flatten)]
    pub object: ObjectInfo,
    /// Desired state.
    #[schema(schema_with = crate::openapi::stream_spec_ref)]
    pub spec: StreamSpec,
    /// Observed state (broker subject, counts, conditions), once the operator has provisioned
    /// the stream. Events can be ingested once `status.subject` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::openapi::stream_status_ref)]
    pub status: Option<StreamStatus>,
}

impl StreamView {
    fn new(tenant: &str, s: Stream) -> Self {
        StreamView {
            object: ObjectInfo::of(tenant, &s.metadata),
            spec: s.spec,
            status: s.status,
        }
    }
}

page_type!(StreamPage, StreamView, "A page of streams.");

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_stream, list_streams))
        .routes(routes!(
            get_stream,
            replace_stream,
            patch_stream,
            delete_stream
        ))
}

/// Checks a stream spec: retention, partitions, replicas, and a schema that compiles as a JSON
/// Schema (422 `validation-failed` naming each field).
pub fn validate_spec(spec: &StreamSpec) -> Result<(), ApiError> {
    let mut errors: Vec<FieldProblem> = validate::stream(spec)
        .into_iter()
        .map(FieldProblem::from)
        .collect();
    if let Some(schema) = &spec.schema
        && let Err(e) = crate::ingest::compile_schema(schema)
    {
        errors.push(FieldProblem::new(
            "spec.schema",
            format!("is not a valid JSON Schema: {e}"),
        ));
    }
    ApiError::check_fields(errors)
}

impl Resource for Stream {
    const KIND: &'static str = "stream";
    const PLURAL: &'static str = "streams";
    type Write = WriteStreams;
    type View = StreamView;
    /// A change never adds a stream, so it needs neither the tenant's lock nor a quota check.
    type Hold = ();

    fn view(tenant: &str, object: Self) -> StreamView {
        StreamView::new(tenant, object)
    }

    fn validate(spec: &StreamSpec) -> Result<(), ApiError> {
        validate_spec(spec)
    }

    fn check_immutable(current: &StreamSpec, new: &StreamSpec) -> Result<(), ApiError> {
        if new.partitions < current.partitions {
            return Err(ApiError::field(
                "spec.partitions",
                "may grow but never shrink: events are already spread over the partitions; \
                 create another stream",
            ));
        }
        if current.broker.is_some() && new.broker != current.broker {
            return Err(ApiError::field(
                "spec.broker",
                "is immutable: a stream never moves between brokers; create another stream",
            ));
        }
        Ok(())
    }

    async fn admit_create(site: Site<'_>, t: &Tenant, _spec: &StreamSpec) -> Result<(), ApiError> {
        let Site {
            state,
            tenant,
            name,
        } = site;
        if state.kube.stream(&tenant.name, name).await?.is_some() {
            return Err(ApiError::AlreadyExists(format!(
                "stream {name:?} already exists"
            )));
        }
        let used = Usage {
            streams: state.kube.count_streams(&tenant.name).await?,
            ..Default::default()
        };
        let request = Usage {
            streams: 1,
            ..Default::default()
        };
        quota::check(&tenant_limits(&t.spec), used, request).map_err(ApiError::QuotaExceeded)
    }

    async fn begin_change(site: Site<'_>) -> Result<(Stream, ()), ApiError> {
        let current = site
            .state
            .kube
            .stream(&site.tenant.name, site.name)
            .await?
            .ok_or_else(|| not_found::<Stream>(site.name))?;
        Ok((current, ()))
    }

    fn admit_change(_hold: &(), _current: &Stream, _spec: &StreamSpec) -> Result<(), ApiError> {
        Ok(())
    }

    async fn end_change(_hold: ()) -> Result<(), ApiError> {
        Ok(())
    }

    fn forget(state: &AppState, tenant: &str, name: &str) {
        state.ingest.forget_stream(tenant, name);
    }
}

/// Creates a stream; the operator then provisions its broker side and sets `status.subject`.
/// 409 `quota-exceeded` over `maxStreams`, 409 `tenant-not-ready` while the operator has not
/// yet created the tenant's namespace.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/streams", tag = "streams",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant name"),
        ("Idempotency-Key" = Option<String>, Header,
            description = "Returns the first answer again when retried with the same body")),
    request_body = CreateStream,
    responses(
        (status = 201, description = "Created", body = StreamView),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn create_stream(
    State(state): State<AppState>,
    access: TenantAccess<WriteStreams>,
    headers: HeaderMap,
    Json(req): Json<CreateStream>,
) -> Result<Response, ApiError> {
    resource::create::<Stream>(&state, &access, &headers, &req, &req.name, &req.spec).await
}

/// Lists the tenant's streams, with their status.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/streams", tag = "streams",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant name"), PageParams),
    responses(
        (status = 200, description = "A page of streams", body = StreamPage),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn list_streams(
    State(state): State<AppState>,
    access: TenantAccess<Read>,
    Query(page): Query<PageParams>,
) -> Result<axum::Json<StreamPage>, ApiError> {
    let (items, next_cursor) = resource::list::<Stream, _>(&state, &access, &page).await?;
    Ok(axum::Json(StreamPage { items, next_cursor }))
}

/// A stream: its spec and the operator's status.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/streams/{stream}", tag = "streams",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant name"),
        ("stream" = String, Path, description = "Stream name")),
    responses(
        (status = 200, description = "The stream", body = StreamView),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn get_stream(
    State(state): State<AppState>,
    access: TenantAccess<Read>,
    ValidPath((_tenant, name)): ValidPath<(String, String)>,
) -> Result<axum::Json<StreamView>, ApiError> {
    resource::get::<Stream, _>(&state, &access, &name).await
}

/// Replaces a stream's spec (retention, replicas, schema).
#[utoipa::path(put, path = "/v1/tenants/{tenant}/streams/{stream}", tag = "streams",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant name"),
        ("stream" = String, Path, description = "Stream name")),
    request_body = ReplaceStream,
    responses(
        (status = 200, description = "The updated stream", body = StreamView),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn replace_stream(
    State(state): State<AppState>,
    access: TenantAccess<WriteStreams>,
    ValidPath((_tenant, name)): ValidPath<(String, String)>,
    Json(req): Json<ReplaceStream>,
) -> Result<axum::Json<StreamView>, ApiError> {
    resource::change::<Stream>(&state, &access, &name, "stream.replace", |_| {
        Ok((req.spec, req.resource_version))
    })
    .await
}

/// Changes a stream with a JSON merge patch (RFC 7396) of `{"spec": {...}}`, e.g.
/// `{"spec": {"retention": {"maxAge": "7d"}}}`.
#[utoipa::path(patch, path = "/v1/tenants/{tenant}/streams/{stream}", tag = "streams",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant name"),
        ("stream" = String, Path, description = "Stream name")),
    request_body(content = Object, content_type = "application/merge-patch+json",
        description = "A merge patch of `{\"spec\": StreamSpec, \"resourceVersion\": ...}`"),
    responses(
        (status = 200, description = "The updated stream", body = StreamView),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn patch_stream(
    State(state): State<AppState>,
    access: TenantAccess<WriteStreams>,
    ValidPath((_tenant, name)): ValidPath<(String, String)>,
    MergePatch(patch): MergePatch,
) -> Result<axum::Json<StreamView>, ApiError> {
    resource::change::<Stream>(&state, &access, &name, "stream.patch", |current| {
        let mut doc = json!({ "spec": current.spec });
        json_patch::merge(&mut doc, &patch);
        let r = body::from_value::<ReplaceStream>(doc)?;
        Ok((r.spec, r.resource_version))
    })
    .await
}

/// Deletes a stream: 202 while the operator's finalizer removes its broker side (and its
/// events), 204 once gone.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/streams/{stream}", tag = "streams",
    security(("bearer" = [])),
    params(("tenant" = String, Path, description = "Tenant name"),
        ("stream" = String, Path, description = "Stream name")),
    responses(
        (status = 202, description = "Marked for deletion", body = StreamView),
        (status = 204, description = "Deleted"),
        (status = "4XX", description = "Refused", body = Problem,
            content_type = "application/problem+json"),
    ))]
pub async fn delete_stream(
    State(state): State<AppState>,
    access: TenantAccess<WriteStreams>,
    ValidPath((_tenant, name)): ValidPath<(String, String)>,
) -> Result<Response, ApiError> {
    resource::delete::<Stream>(&state, &access, &name).await
}

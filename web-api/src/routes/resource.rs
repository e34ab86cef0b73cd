//! What the handlers of a tenant's Streams and Pipelines share, written once over [`Resource`]:
//! get, list, create, change (replace, merge patch, suspend, resume) and delete. A kind's module
//! keeps thin handlers that carry its OpenAPI annotations (utoipa's path macro cannot sit on a
//! generic function) and says only what differs: its view, its validation, its immutable
//! fields, and how a create or a change is checked against the tenant's quota.

use std::future::Future;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use sluice_crd::Tenant;

use crate::auth::{self, Permission, TenantAccess};
use crate::k8s::SpecObject;
use crate::pagination::{PageParams, encode_cursor};
use crate::problem::ApiError;
use crate::routes::check_name;
use crate::store::{StoreError, TenantLock, TenantRow};
use crate::{AppState, audit, idempotency};

/// What the API shows of a stream's or a pipeline's metadata.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectInfo {
    /// Name.
    pub name: String,
    /// Tenant.
    pub tenant: String,
    /// Creation time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Generation of the spec (the status' `observedGeneration` catches up with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Version of the object, for optimistic concurrency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Whether the object is marked for deletion.
    pub deleting: bool,
}

impl ObjectInfo {
    /// The info of an object of `tenant` with metadata `meta`.
    pub fn of(
        tenant: &str,
        meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    ) -> Self {
        ObjectInfo {
            name: meta.name.clone().unwrap_or_default(),
            tenant: tenant.to_string(),
            created_at: meta.creation_timestamp.as_ref().map(|t| t.0.to_string()),
            generation: meta.generation,
            resource_version: meta.resource_version.clone(),
            deleting: meta.deletion_timestamp.is_some(),
        }
    }
}
/// A kind of tenant object the API creates, changes and deletes.
pub trait Resource:
    SpecObject<Spec: Clone + Serialize + Send + Sync> + Send + Sync + 'static
{
    /// Its name in messages and audit actions, e.g. `pipeline`.
    const KIND: &'static str;
    /// Its plural, the prefix of audit objects, e.g. `pipelines`.
    const PLURAL: &'static str;
    /// The permission that creates, changes and deletes it.
    type Write: Permission;
    /// How the API shows it.
    type View: Serialize + Send;
    /// What a change holds from its quota check to its write (the tenant's lease, and what the
    /// check needs), or nothing.
    type Hold: Send;

    /// The API's view of `object`, in `tenant`.
    fn view(tenant: &str, object: Self) -> Self::View;

    /// Checks a spec (422 `validation-failed` naming each field).
    fn validate(spec: &Self::Spec) -> Result<(), ApiError>;

    /// Checks the name of a new object beyond the DNS-1123 label every name is (422 naming
    /// `name`).
    fn check_new_name(_name: &str) -> Result<(), ApiError> {
        Ok(())
    }

    /// Refuses a change of a field that cannot change (422 naming it).
    fn check_immutable(current: &Self::Spec, new: &Self::Spec) -> Result<(), ApiError>;

    /// Checks, under the tenant's lock, that no object of the site's name exists yet and that
    /// a new one with `spec` fits the quota of the tenant's object `t`.
    fn admit_create(
        site: Site<'_>,
        t: &Tenant,
        spec: &Self::Spec,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// Reads the object at `site` to change (404 when absent), with what the change holds
    /// until it is written.
    fn begin_change(
        site: Site<'_>,
    ) -> impl Future<Output = Result<(Self, Self::Hold), ApiError>> + Send;

    /// Checks the new spec of a change against the quota.
    fn admit_change(hold: &Self::Hold, current: &Self, spec: &Self::Spec) -> Result<(), ApiError>;

    /// Ends a change once it is written (releases what [`Resource::begin_change`] took).
    fn end_change(hold: Self::Hold) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// Forgets what this replica cached about the object after a change or delete.
    fn forget(state: &AppState, tenant: &str, name: &str);
}

/// Where a write goes: the tenant (its registry row) and the object's name, with the state
/// that reaches them.
#[derive(Debug, Clone, Copy)]
pub struct Site<'a> {
    /// Everything handlers share.
    pub state: &'a AppState,
    /// The tenant.
    pub tenant: &'a TenantRow,
    /// The object's name.
    pub name: &'a str,
}

/// The 404 of an object of kind `K` that does not exist.
pub fn not_found<K: Resource>(name: &str) -> ApiError {
    ApiError::NotFound(format!("{} {name:?} not found", K::KIND))
}

/// The tenant's `Tenant`, when it is ready to hold streams and pipelines: the object exists, is
/// not being deleted, and the operator has created its namespace.
pub async fn ready_tenant(state: &AppState, tenant: &str) -> Result<Tenant, ApiError> {
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

/// Takes the tenant's quota lock (404 when the tenant is gone meanwhile).
pub async fn lock(state: &AppState, tenant: &TenantRow) -> Result<TenantLock, ApiError> {
    state.lock_tenant(&tenant.id).await.map_err(|e| match e {
        StoreError::NotFound => auth::tenant_not_found(&tenant.name),
        e => e.into(),
    })
}

/// Records `action` on the object `name` in the audit log and hands `result` back.
async fn audited<K: Resource, T: audit::Answer>(
    state: &AppState,
    access: &TenantAccess<K::Write>,
    action: &str,
    name: &str,
    result: Result<T, ApiError>,
) -> Result<T, ApiError> {
    let object = format!("{}/{name}", K::PLURAL);
    let tenant = Some(access.tenant.name.as_str());
    audit::recorded(state, &access.caller, tenant, action, &object, result).await
}

fn to_json(view: impl Serialize) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(view).map_err(|e| ApiError::Internal(e.to_string()))
}

/// Creates the object `name` with `spec` (`request` is the body, which identifies the request
/// for `Idempotency-Key`), under the tenant's lock and within its quota; audited.
pub async fn create<K: Resource>(
    state: &AppState,
    access: &TenantAccess<K::Write>,
    headers: &HeaderMap,
    request: &impl Serialize,
    name: &str,
    spec: &K::Spec,
) -> Result<Response, ApiError> {
    let tenant = access.tenant.name.as_str();
    let action = format!("{}.create", K::KIND);
    let fingerprint = serde_json::to_vec(&json!([action, request])).unwrap_or_default();
    let result = idempotency::run(state, &access.tenant.id, headers, &fingerprint, || async {
        check_name("name", name, 63)?;
        K::check_new_name(name)?;
        K::validate(spec)?;
        let t = ready_tenant(state, tenant).await?;
        let lock = lock(state, &access.tenant).await?;
        let site = Site {
            state,
            tenant: &access.tenant,
            name,
        };
        K::admit_create(site, &t, spec).await?;
        let created = state
            .kube
            .create_object::<K>(tenant, name, spec.clone())
            .await?;
        lock.release().await?;
        let view = to_json(K::view(tenant, created))?;
        Ok(idempotency::Created {
            status: StatusCode::CREATED,
            body: view.clone(),
            stored: view,
        })
    })
    .await;
    audited::<K, _>(state, access, &action, name, result).await
}

/// One page of the tenant's objects, with its next cursor (an empty page while the tenant's
/// namespace does not exist).
pub async fn list<K: Resource, P: Permission>(
    state: &AppState,
    access: &TenantAccess<P>,
    page: &PageParams,
) -> Result<(Vec<K::View>, Option<String>), ApiError> {
    let limit = page.limit()?;
    let cursor = page.cursor()?;
    let tenant = access.tenant.name.as_str();
    if !state.kube.namespace_ready(tenant).await? {
        return Ok((vec![], None));
    }
    let list = state
        .kube
        .list_page::<K>(tenant, limit, cursor.as_deref())
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
    let items = list.items.into_iter().map(|o| K::view(tenant, o)).collect();
    Ok((items, next_cursor))
}

/// The object `name` (404 when absent).
pub async fn get<K: Resource, P: Permission>(
    state: &AppState,
    access: &TenantAccess<P>,
    name: &str,
) -> Result<axum::Json<K::View>, ApiError> {
    let tenant = access.tenant.name.as_str();
    let object = state
        .kube
        .object::<K>(tenant, name)
        .await?
        .ok_or_else(|| not_found::<K>(name))?;
    Ok(axum::Json(K::view(tenant, object)))
}

/// Changes the spec of the object `name` to what `make` derives from the current object (with
/// the `resourceVersion` the change expects, if any): not while it is being deleted, validated,
/// immutable fields kept, optimistic concurrency, the quota, then the write; audited as
/// `action`.
pub async fn change<K: Resource>(
    state: &AppState,
    access: &TenantAccess<K::Write>,
    name: &str,
    action: &str,
    make: impl FnOnce(&K) -> Result<(K::Spec, Option<String>), ApiError>,
) -> Result<axum::Json<K::View>, ApiError> {
    let tenant = access.tenant.name.as_str();
    let result = async {
        let site = Site {
            state,
            tenant: &access.tenant,
            name,
        };
        let (current, hold) = K::begin_change(site).await?;
        if current.meta().deletion_timestamp.is_some() {
            return Err(ApiError::Conflict(format!(
                "{} {name:?} is being deleted",
                K::KIND
            )));
        }
        let (spec, expected_version) = make(&current)?;
        if let Some(v) = expected_version
            && current.meta().resource_version.as_deref() != Some(v.as_str())
        {
            return Err(ApiError::Conflict(format!(
                "{} {name:?} changed since version {v}; read it again",
                K::KIND
            )));
        }
        K::validate(&spec)?;
        K::check_immutable(current.spec(), &spec)?;
        K::admit_change(&hold, &current, &spec)?;
        let updated = state.kube.replace_object(tenant, &current, spec).await?;
        K::end_change(hold).await?;
        K::forget(state, tenant, name);
        Ok(axum::Json(K::view(tenant, updated)))
    }
    .await;
    audited::<K, _>(state, access, action, name, result).await
}

/// Deletes the object `name`: 202 with the object while the operator's finalizer cleans up,
/// 204 once it is gone; audited.
pub async fn delete<K: Resource>(
    state: &AppState,
    access: &TenantAccess<K::Write>,
    name: &str,
) -> Result<Response, ApiError> {
    let tenant = access.tenant.name.as_str();
    let result = async {
        if state.kube.object::<K>(tenant, name).await?.is_none() {
            return Err(not_found::<K>(name));
        }
        let remaining = state
            .kube
            .delete_object::<K>(tenant, name)
            .await
            .map_err(crate::k8s::not_found(K::KIND))?;
        K::forget(state, tenant, name);
        Ok(match remaining {
            Some(o) => (StatusCode::ACCEPTED, axum::Json(K::view(tenant, o))).into_response(),
            None => StatusCode::NO_CONTENT.into_response(),
        })
    }
    .await;
    audited::<K, _>(state, access, &format!("{}.delete", K::KIND), name, result).await
}

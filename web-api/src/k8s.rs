//! The Kubernetes API, the source of truth for Tenants, Streams and Pipelines: the API reads and
//! writes them here and keeps no copy of a spec.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams, ObjectList, PostParams};
use kube::{Client, core::ObjectMeta};
use sluice_core::names;
use sluice_crd::{Pipeline, PipelineSpec, Stream, StreamSpec, Tenant, TenantSpec};

use crate::problem::ApiError;

/// Field manager and `app.kubernetes.io/managed-by` value of what the API writes.
pub const MANAGER: &str = "sluice-api";

/// Client of the Kubernetes API.
#[derive(Clone)]
pub struct Kube {
    client: Client,
}

impl std::fmt::Debug for Kube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kube").finish_non_exhaustive()
    }
}

fn post_params() -> PostParams {
    PostParams {
        dry_run: false,
        field_manager: Some(MANAGER.to_string()),
    }
}

/// A tenant-namespaced object whose spec the API writes (Streams and Pipelines): the one way
/// to build it, read its spec and swap it, so get, list, create, replace and delete are
/// written once.
pub trait SpecObject:
    kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + serde::Serialize
    + serde::de::DeserializeOwned
{
    /// The spec type.
    type Spec;
    /// The spec.
    fn spec(&self) -> &Self::Spec;
    /// A new object with no status.
    fn build(metadata: ObjectMeta, spec: Self::Spec) -> Self;
    /// Replaces the spec and drops the status (the status subresource owns it).
    fn set_spec(&mut self, spec: Self::Spec);
}

impl SpecObject for Stream {
    type Spec = StreamSpec;
    fn spec(&self) -> &StreamSpec {
        &self.spec
    }
    fn build(metadata: ObjectMeta, spec: StreamSpec) -> Self {
        Stream {
            metadata,
            spec,
            status: None,
        }
    }
    fn set_spec(&mut self, spec: StreamSpec) {
        self.spec = spec;
        self.status = None;
    }
}

impl SpecObject for Pipeline {
    type Spec = PipelineSpec;
    fn spec(&self) -> &PipelineSpec {
        &self.spec
    }
    fn build(metadata: ObjectMeta, spec: PipelineSpec) -> Self {
        Pipeline {
            metadata,
            spec,
            status: None,
        }
    }
    fn set_spec(&mut self, spec: PipelineSpec) {
        self.spec = spec;
        self.status = None;
    }
}

fn labels(tenant: &str) -> std::collections::BTreeMap<String, String> {
    [
        (names::LABEL_TENANT.to_string(), tenant.to_string()),
        (names::LABEL_MANAGED_BY.to_string(), MANAGER.to_string()),
    ]
    .into()
}

impl Kube {
    /// Wraps a client.
    pub fn new(client: Client) -> Self {
        Kube { client }
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn tenants(&self) -> Api<Tenant> {
        Api::all(self.client.clone())
    }

    /// Checks the API server answers.
    pub async fn ping(&self) -> Result<(), kube::Error> {
        self.client.apiserver_version().await.map(|_| ())
    }

    /// Writes `value` under `key` of the Secret `namespace/name` (created if missing, its data
    /// replaced otherwise).
    pub async fn write_secret(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
        value: &str,
    ) -> Result<(), kube::Error> {
        use k8s_openapi::ByteString;
        use k8s_openapi::api::core::v1::Secret;
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let data = std::collections::BTreeMap::from([(
            key.to_string(),
            ByteString(value.as_bytes().to_vec()),
        )]);
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some(std::collections::BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_string(),
                    MANAGER.to_string(),
                )])),
                ..Default::default()
            },
            data: Some(data.clone()),
            type_: Some("Opaque".into()),
            ..Default::default()
        };
        match api.create(&post_params(), &secret).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let mut current = api.get(name).await?;
                current.data = Some(data);
                current.string_data = None;
                api.replace(name, &post_params(), &current)
                    .await
                    .map(|_| ())
            }
            Err(e) => Err(e),
        }
    }

    /// A tenant object.
    pub async fn tenant(&self, name: &str) -> Result<Option<Tenant>, kube::Error> {
        self.tenants().get_opt(name).await
    }

    /// Creates a tenant object.
    pub async fn create_tenant(&self, name: &str, spec: TenantSpec) -> Result<Tenant, kube::Error> {
        let t = Tenant {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some(labels(name)),
                ..Default::default()
            },
            spec,
            status: None,
        };
        self.tenants().create(&post_params(), &t).await
    }

    /// Replaces a tenant's spec, failing with a conflict if it changed since `current` was read.
    pub async fn replace_tenant(
        &self,
        current: &Tenant,
        spec: TenantSpec,
    ) -> Result<Tenant, kube::Error> {
        let mut t = current.clone();
        t.spec = spec;
        t.status = None;
        let name = current.metadata.name.clone().unwrap_or_default();
        self.tenants().replace(&name, &post_params(), &t).await
    }

    /// Deletes a tenant (the operator's finalizer cascades). Returns the object when it is still
    /// there, marked for deletion.
    pub async fn delete_tenant(&self, name: &str) -> Result<Option<Tenant>, kube::Error> {
        match self.tenants().delete(name, &DeleteParams::default()).await {
            Ok(either) => Ok(either.left()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the tenant's namespace exists (the operator creates it).
    pub async fn namespace_ready(&self, tenant: &str) -> Result<bool, kube::Error> {
        let ns = Api::<Namespace>::all(self.client.clone())
            .get_opt(&names::tenant_namespace(tenant))
            .await?;
        Ok(ns.is_some_and(|n| n.metadata.deletion_timestamp.is_none()))
    }

    /// Every pipeline of a tenant (for quota arithmetic).
    pub async fn all_pipelines(&self, tenant: &str) -> Result<Vec<Pipeline>, kube::Error> {
        Ok(self
            .namespaced::<Pipeline>(tenant)
            .list(&ListParams::default())
            .await?
            .items)
    }

    /// Number of streams of a tenant that are not being deleted (as quota counts them).
    pub async fn count_streams(&self, tenant: &str) -> Result<u64, kube::Error> {
        let list = self
            .namespaced::<Stream>(tenant)
            .list_metadata(&ListParams::default())
            .await?;
        Ok(list
            .items
            .iter()
            .filter(|s| s.metadata.deletion_timestamp.is_none())
            .count() as u64)
    }

    fn namespaced<K: SpecObject>(&self, tenant: &str) -> Api<K> {
        Api::namespaced(self.client.clone(), &names::tenant_namespace(tenant))
    }

    /// An object of a tenant; `None` when it (or the tenant's namespace) does not exist.
    pub async fn object<K: SpecObject>(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<K>, kube::Error> {
        match self.namespaced::<K>(tenant).get_opt(name).await {
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            other => other,
        }
    }

    /// A stream of a tenant.
    pub async fn stream(&self, tenant: &str, name: &str) -> Result<Option<Stream>, kube::Error> {
        self.object(tenant, name).await
    }

    /// One page of a tenant's objects of kind `K`.
    pub async fn list_page<K: SpecObject>(
        &self,
        tenant: &str,
        limit: u32,
        continue_token: Option<&str>,
    ) -> Result<ObjectList<K>, kube::Error> {
        let mut lp = ListParams::default().limit(limit);
        if let Some(c) = continue_token {
            lp = lp.continue_token(c);
        }
        self.namespaced::<K>(tenant).list(&lp).await
    }

    /// Creates an object in the tenant's namespace, labelled as the tenant's and the API's.
    pub async fn create_object<K: SpecObject>(
        &self,
        tenant: &str,
        name: &str,
        spec: K::Spec,
    ) -> Result<K, kube::Error> {
        let metadata = ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(names::tenant_namespace(tenant)),
            labels: Some(labels(tenant)),
            ..Default::default()
        };
        self.namespaced::<K>(tenant)
            .create(&post_params(), &K::build(metadata, spec))
            .await
    }

    /// Replaces an object's spec, failing with a conflict if it changed since `current` was
    /// read.
    pub async fn replace_object<K: SpecObject>(
        &self,
        tenant: &str,
        current: &K,
        spec: K::Spec,
    ) -> Result<K, kube::Error> {
        let mut obj = current.clone();
        obj.set_spec(spec);
        let name = current.meta().name.clone().unwrap_or_default();
        self.namespaced::<K>(tenant)
            .replace(&name, &post_params(), &obj)
            .await
    }

    /// Deletes an object; the object when still there (the operator's finalizers pending).
    pub async fn delete_object<K: SpecObject>(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<K>, kube::Error> {
        Ok(self
            .namespaced::<K>(tenant)
            .delete(name, &DeleteParams::default())
            .await?
            .left())
    }
}

/// Maps "not found" from Kubernetes to the API's 404 for `what`.
pub fn not_found(what: &str) -> impl FnOnce(kube::Error) -> ApiError + '_ {
    move |e| match &e {
        kube::Error::Api(s) if s.code == 404 => ApiError::NotFound(format!("{what} not found")),
        _ => e.into(),
    }
}

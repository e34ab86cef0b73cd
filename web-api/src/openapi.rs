//! The OpenAPI document, generated from the code: paths and the API's own types come from the
//! `#[utoipa::path]` annotations of the routes (registered with `utoipa_axum`, so the router and
//! the document cannot disagree); the custom resource types (`PipelineSpec`, `TenantSpec`, ...)
//! come from their JSON schemas, the same ones the CRDs are built from.
//!
//! The committed copy is `web-api/openapi.json`; regenerate it with
//! `cargo run -p sluice-api -- openapi > web-api/openapi.json`.

mod cel;
mod constraints;
mod crd;
mod merge_patch;
mod quantity;

use std::sync::OnceLock;

use schemars::generate::SchemaSettings;
use serde_json::Value;
use utoipa::Modify;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{OpenApi as Doc, Ref, RefOr, schema::Schema};

/// Document-level settings.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Sluice API",
        description = "Self-service API of Sluice, a multi-tenant streaming control plane: \
            tenants, API tokens, quotas, streams, pipelines and the ingest of events. Every \
            error is an RFC 7807 `application/problem+json` document.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "tenants", description = "Tenants (platform admins)"),
        (name = "tokens", description = "API tokens of a tenant, and platform tokens"),
        (name = "streams", description = "Streams of a tenant"),
        (name = "ingest", description = "Events into a stream"),
        (name = "pipelines", description = "Pipelines of a tenant"),
        (name = "quota", description = "Quota and usage of a tenant"),
        (name = "audit", description = "Audit log"),
        (name = "health", description = "Health and this document"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut Doc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A Sluice API token, or a token of the configured OIDC issuer",
                    ))
                    .build(),
            ),
        );
    }
}

/// A reference to a component schema by name.
fn schema_ref(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

/// Reference to the `PipelineSpec` schema.
pub fn pipeline_spec_ref() -> RefOr<Schema> {
    schema_ref("PipelineSpec")
}
/// Reference to the `PipelineStatus` schema.
pub fn pipeline_status_ref() -> RefOr<Schema> {
    schema_ref("PipelineStatus")
}
/// Reference to the `StreamSpec` schema.
pub fn stream_spec_ref() -> RefOr<Schema> {
    schema_ref("StreamSpec")
}
/// Reference to the `StreamStatus` schema.
pub fn stream_status_ref() -> RefOr<Schema> {
    schema_ref("StreamStatus")
}
/// Reference to the `TenantSpec` schema.
pub fn tenant_spec_ref() -> RefOr<Schema> {
    schema_ref("TenantSpec")
}
/// Reference to the `TenantStatus` schema.
pub fn tenant_status_ref() -> RefOr<Schema> {
    schema_ref("TenantStatus")
}
/// Reference to the `TenantQuota` schema.
pub fn tenant_quota_ref() -> RefOr<Schema> {
    schema_ref("TenantQuota")
}

/// The schemas of the custom resource types, as OpenAPI components.
fn crd_schemas() -> serde_json::Map<String, Value> {
    // The document is OpenAPI 3.1, whose schemas are JSON Schema 2020-12: an optional field is
    // `"type": ["string", "null"]` (OpenAPI 3.0's `nullable` means nothing there), as the API
    // accepts `null` for it.
    let settings = SchemaSettings::draft2020_12().with(|s| {
        s.definitions_path = "/components/schemas".into();
        s.meta_schema = None;
    });
    let mut generator = settings.into_generator();
    // Types the generator inlines (the CRD's top-level types) are named here; the others
    // become definitions on their own.
    let named = [
        (
            "PipelineSpec",
            generator.subschema_for::<sluice_crd::PipelineSpec>(),
        ),
        (
            "PipelineStatus",
            generator.subschema_for::<sluice_crd::PipelineStatus>(),
        ),
        (
            "StreamSpec",
            generator.subschema_for::<sluice_crd::StreamSpec>(),
        ),
        (
            "StreamStatus",
            generator.subschema_for::<sluice_crd::StreamStatus>(),
        ),
        (
            "TenantSpec",
            generator.subschema_for::<sluice_crd::TenantSpec>(),
        ),
        (
            "TenantStatus",
            generator.subschema_for::<sluice_crd::TenantStatus>(),
        ),
        (
            "TenantQuota",
            generator.subschema_for::<sluice_crd::TenantQuota>(),
        ),
    ];
    let mut out = generator.take_definitions(true);
    for (name, schema) in named {
        let value = schema.to_value();
        if value.get("$ref").is_none() {
            out.insert(name.to_string(), value);
        }
    }
    crd::as_the_api_reads_them(&mut out);
    out
}

/// Gives the body of each `PATCH` route the schema of its merge patches, as a component.
fn declare_merge_patches(doc: &mut Value) {
    for (route, name, target) in merge_patch::targets() {
        let Some(schemas) = doc
            .pointer("/components/schemas")
            .and_then(Value::as_object)
        else {
            return;
        };
        let patch = merge_patch::patch_of(&target, schemas);
        if let Some(schemas) = doc
            .pointer_mut("/components/schemas")
            .and_then(Value::as_object_mut)
        {
            schemas.insert(name.into(), patch);
            schemas.sort_keys();
        }
        let pointer = format!(
            "/paths/{}/patch/requestBody/content/application~1merge-patch+json/schema",
            route.replace('~', "~0").replace('/', "~1")
        );
        if let Some(slot) = doc.pointer_mut(&pointer) {
            *slot = serde_json::json!({ "$ref": format!("#/components/schemas/{name}") });
        }
    }
}

/// The OpenAPI document (built once).
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let (_, mut api) = crate::routes::router().split_for_parts();
        constraints::Constraints.modify(&mut api);
        let mut doc = serde_json::to_value(&api).unwrap_or(Value::Null);
        if let Some(schemas) = doc
            .pointer_mut("/components/schemas")
            .and_then(Value::as_object_mut)
        {
            for (name, schema) in crd_schemas() {
                schemas.entry(name).or_insert(schema);
            }
            schemas.sort_keys();
        }
        declare_merge_patches(&mut doc);
        if let Some(info) = doc.get_mut("info").and_then(Value::as_object_mut) {
            info.insert("version".into(), Value::String("v1".into()));
        }
        doc
    })
}

/// The document as committed: pretty JSON with a final newline.
pub fn document_text() -> String {
    let mut s = serde_json::to_string_pretty(document()).unwrap_or_default();
    s.push('\n');
    s
}

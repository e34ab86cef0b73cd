//! The constraints the server enforces on parameters, declared in the document from the same
//! constants the server checks them with, so that the two cannot drift:
//!
//! - every path parameter is a DNS-1123 label ([`path::check_param`]): `tenant` of at most
//!   [`sluice_core::names::MAX_TENANT_NAME`] characters, the others [`path::MAX_NAME`]; a
//!   platform token's id is a UUID;
//! - `limit` is 1 to [`pagination::MAX_LIMIT`] (default [`pagination::DEFAULT_LIMIT`]), and
//!   `cursor` is non-empty URL-safe base64 ([`pagination::CURSOR_PATTERN`]);
//! - `Idempotency-Key` is 1 to [`idempotency::MAX_KEY_LEN`] visible ASCII characters;
//! - `since` and `until` are RFC 3339 times;
//! - the names in create bodies are DNS-1123 labels (tenants at most
//!   [`sluice_core::names::MAX_TENANT_NAME`] characters, the others [`path::MAX_NAME`]);
//!   a tenant token's role is not `platform-admin`; token lifetimes are at least one second and
//!   at most the default maximum; a platform token's description is not blank and at most
//!   [`MAX_DESCRIPTION`] characters;
//! - a request body, where an operation has one, is required;
//! - every operation may answer a server error (5XX) as a problem document.
//!
//! The annotations of the routes name the parameters and fields; [`Constraints`] gives them
//! their schemas.

use std::collections::BTreeMap;

use utoipa::Modify;
use utoipa::openapi::Required;
use utoipa::openapi::path::{Operation, Parameter, ParameterIn, PathItem};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, SchemaType, Type};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, ResponseBuilder, Schema};

use crate::auth::Role;
use crate::problem::PROBLEM_JSON;
use crate::routes::platform_tokens::MAX_DESCRIPTION;
use crate::{idempotency, pagination, path};

/// Gives every parameter of every operation the schema the server enforces, and declares the
/// 5XX answer of every operation.
pub struct Constraints;

impl Modify for Constraints {
    fn modify(&self, doc: &mut OpenApi) {
        if let Some(components) = doc.components.as_mut() {
            for (schema, field, constrained) in body_fields() {
                constrain_field(&mut components.schemas, schema, field, constrained);
            }
        }
        for (route, item) in doc.paths.paths.iter_mut() {
            for op in operations_mut(item) {
                if let Some(params) = op.parameters.as_mut() {
                    params.retain(|p| !redundant(route, p));
                    for p in params.iter_mut() {
                        if let Some(schema) = schema_of(route, &p.parameter_in, &p.name) {
                            p.schema = Some(RefOr::T(schema));
                        }
                    }
                }
                // Every route that reads a body refuses a request without one.
                if let Some(body) = op.request_body.as_mut() {
                    body.required = Some(Required::True);
                }
                op.responses
                    .responses
                    .entry("5XX".into())
                    .or_insert_with(server_error);
            }
        }
    }
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// Whether `p` repeats a path parameter as a query parameter (the `tenant` filter of the audit
/// log, on the tenant's own audit log): the path already says it, so it is not documented there.
fn redundant(route: &str, p: &Parameter) -> bool {
    p.parameter_in == ParameterIn::Query && route.contains(&format!("{{{}}}", p.name))
}

/// A platform token id as the server reads it (`uuid::Uuid::parse_str`, after the name check):
/// a UUID in lower case, hyphenated or not.
const PLATFORM_TOKEN_ID_PATTERN: &str =
    "^([0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$";

/// The schema of the parameter `name` in `location` of `route`, when the server constrains it.
fn schema_of(route: &str, location: &ParameterIn, name: &str) -> Option<Schema> {
    match (location, name) {
        (ParameterIn::Path, "id") if route == "/v1/platform/tokens/{id}" => Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(PLATFORM_TOKEN_ID_PATTERN))
                .into(),
        ),
        (ParameterIn::Path, "tenant") => Some(name_schema(sluice_core::names::MAX_TENANT_NAME)),
        (ParameterIn::Path, _) => Some(name_schema(path::MAX_NAME)),
        (ParameterIn::Query, "limit") => Some(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
                .minimum(Some(1))
                .maximum(Some(pagination::MAX_LIMIT))
                .default(Some(pagination::DEFAULT_LIMIT.into()))
                .into(),
        ),
        (ParameterIn::Query, "cursor") => Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(2))
                .pattern(Some(pagination::CURSOR_PATTERN))
                .into(),
        ),
        (ParameterIn::Query, "since" | "until") => Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                .into(),
        ),
        (ParameterIn::Header, n) if n.eq_ignore_ascii_case(idempotency::HEADER) => Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(idempotency::MAX_KEY_LEN))
                .pattern(Some(idempotency::KEY_PATTERN))
                .into(),
        ),
        _ => None,
    }
}

/// A DNS-1123 label of at most `max` characters.
fn name_schema(max: usize) -> Schema {
    label_schema(max, sluice_crd::schema::DNS1123_LABEL_PATTERN)
}

/// A label of at most `max` characters matching `pattern`.
fn label_schema(max: usize, pattern: &str) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(pattern))
        .into()
}

/// The constrained fields of the API's own request bodies: (schema, field, its schema).
fn body_fields() -> Vec<(&'static str, &'static str, Schema)> {
    let max_ttl = crate::Config::default().max_token_ttl.as_secs();
    let ttl = || {
        ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(1))
            .maximum(Some(max_ttl))
            .into()
    };
    let tenant_roles: Vec<serde_json::Value> = [
        Role::TenantAdmin,
        Role::Developer,
        Role::Viewer,
        Role::Producer,
    ]
    .map(|r| r.as_str().into())
    .into();
    vec![
        (
            "CreateTenant",
            "name",
            name_schema(sluice_core::names::MAX_TENANT_NAME),
        ),
        ("CreateStream", "name", name_schema(path::MAX_NAME)),
        (
            "CreatePipeline",
            "name",
            label_schema(path::MAX_NAME, sluice_crd::schema::DNS1035_LABEL_PATTERN),
        ),
        ("CreateToken", "name", name_schema(path::MAX_NAME)),
        (
            "CreateToken",
            "role",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(tenant_roles))
                .into(),
        ),
        ("CreateToken", "expiresInSeconds", ttl()),
        ("CreatePlatformToken", "ttlSeconds", ttl()),
        (
            "CreatePlatformToken",
            "description",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(MAX_DESCRIPTION))
                .pattern(Some(r"\S"))
                .into(),
        ),
    ]
}

/// Replaces the schema of `field` of the object schema `schema`, keeping its description.
fn constrain_field(
    schemas: &mut BTreeMap<String, RefOr<Schema>>,
    schema: &str,
    field: &str,
    constrained: Schema,
) {
    let Some(RefOr::T(Schema::Object(object))) = schemas.get_mut(schema) else {
        return;
    };
    let Some(slot) = object.properties.get_mut(field) else {
        return;
    };
    let description = match &*slot {
        RefOr::T(Schema::Object(o)) => o.description.clone(),
        _ => None,
    };
    let mut constrained = constrained;
    if let Schema::Object(o) = &mut constrained {
        o.description = description;
    }
    *slot = RefOr::T(constrained);
}

fn server_error() -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description("The server failed or is busy")
            .content(
                PROBLEM_JSON,
                Content::new(Some(RefOr::Ref(Ref::from_schema_name("Problem")))),
            )
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_get_the_limits_the_server_checks() {
        let Some(Schema::Object(tenant)) =
            schema_of("/v1/tenants/{tenant}", &ParameterIn::Path, "tenant")
        else {
            panic!()
        };
        assert_eq!(tenant.max_length, Some(sluice_core::names::MAX_TENANT_NAME));
        let Some(Schema::Object(stream)) = schema_of(
            "/v1/tenants/{tenant}/streams/{stream}",
            &ParameterIn::Path,
            "stream",
        ) else {
            panic!()
        };
        assert_eq!(stream.max_length, Some(path::MAX_NAME));
        assert!(schema_of("/v1/tenants", &ParameterIn::Header, "Idempotency-Key").is_some());
        assert!(schema_of("/v1/audit", &ParameterIn::Query, "actor").is_none());
    }
}

//! OpenAPI v3 documents: the index at `/openapi/v3` and one document per group version, with
//! the custom resources' schemas (what `kubectl explain` shows) and the operations kubectl
//! inspects to learn that the server validates fields itself (`fieldValidation`).

use crate::resources::{Registry, ResourceType};
use serde_json::{Map, Value, json};
use std::hash::{DefaultHasher, Hash, Hasher};

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The schema name of a kind, as the real server names them (`io.k8s.api.apps.v1.Deployment`,
/// `dev.sluice.v1alpha1.Pipeline`).
pub fn schema_name(t: &ResourceType) -> String {
    if t.custom {
        let reversed: Vec<&str> = t.group.split('.').rev().collect();
        format!("{}.{}.{}", reversed.join("."), t.version, t.kind)
    } else {
        let group = match t.group.as_str() {
            "" => "core",
            "apiextensions.k8s.io" => {
                return format!(
                    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.{}.{}",
                    t.version, t.kind
                );
            }
            g => g.split('.').next().unwrap_or(g),
        };
        format!("io.k8s.api.{group}.{}.{}", t.version, t.kind)
    }
}

/// The index at `/openapi/v3`.
pub fn index(registry: &Registry) -> Value {
    let mut paths = Map::new();
    for (group, versions) in registry.groups() {
        for v in versions {
            let doc = document(registry, &group, &v);
            let mut h = DefaultHasher::new();
            doc.to_string().hash(&mut h);
            let path = gv_path(&group, &v);
            paths.insert(
                path.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={:016X}", h.finish())}),
            );
        }
    }
    json!({"paths": paths})
}

fn gvk(t: &ResourceType) -> Value {
    json!({"group": t.group, "version": t.version, "kind": t.kind})
}

fn object_meta_schema() -> Value {
    json!({
        "description": "ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create.",
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "Name must be unique within a namespace."},
            "generateName": {"type": "string", "description": "GenerateName is an optional prefix, used by the server, to generate a unique name ONLY IF the Name field has not been provided."},
            "namespace": {"type": "string", "description": "Namespace defines the space within which each name must be unique."},
            "labels": {"type": "object", "additionalProperties": {"type": "string", "default": ""}, "description": "Map of string keys and values that can be used to organize and categorize (scope and select) objects."},
            "annotations": {"type": "object", "additionalProperties": {"type": "string", "default": ""}, "description": "Annotations is an unstructured key value map stored with a resource that may be set by external tools to store and retrieve arbitrary metadata."},
            "uid": {"type": "string", "description": "UID is the unique in time and space value for this object."},
            "resourceVersion": {"type": "string", "description": "An opaque value that represents the internal version of this object."},
            "generation": {"type": "integer", "format": "int64", "description": "A sequence number representing a specific generation of the desired state."},
            "creationTimestamp": {"type": "string", "format": "date-time", "description": "CreationTimestamp is a timestamp representing the server time when this object was created."},
            "deletionTimestamp": {"type": "string", "format": "date-time", "description": "DeletionTimestamp is RFC 3339 date and time at which this resource will be deleted."},
            "finalizers": {"type": "array", "items": {"type": "string", "default": ""}, "description": "Must be empty before the object is deleted from the registry."},
            "ownerReferences": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}, "description": "List of objects depended by this object."},
            "managedFields": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}, "description": "ManagedFields maps workflow-id and version to the set of fields that are managed by that workflow."}
        }
    })
}

fn kind_schema(t: &ResourceType) -> Value {
    let mut schema = match &t.schema {
        Some(s) => s.clone(),
        None => json!({
            "type": "object",
            "description": format!("{} (a built-in kind; this server does not publish its full schema).", t.kind),
            "x-kubernetes-preserve-unknown-fields": true,
            "properties": {
                "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."},
                "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."}
            }
        }),
    };
    schema["properties"]["metadata"] = json!({
        "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
        "allOf": [{"$ref": format!("#/components/schemas/{OBJECT_META}")}],
        "default": {}
    });
    schema["x-kubernetes-group-version-kind"] = json!([gvk(t)]);
    schema
}

fn parameter(name: &str, location: &str, description: &str) -> Value {
    json!({"name": name, "in": location, "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(
    t: &ResourceType,
    action: &str,
    op_id: &str,
    write: bool,
    body_types: &[&str],
) -> Value {
    let reference = json!({"$ref": format!("#/components/schemas/{}", schema_name(t))});
    let mut op = json!({
        "operationId": op_id,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(t),
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}},
    });
    let mut params = vec![];
    if write {
        params.push(parameter(
            "dryRun",
            "query",
            "When present, indicates that modifications should not be persisted.",
        ));
        params.push(parameter("fieldManager", "query", "fieldManager is a name associated with the actor or entity that is making these changes."));
        params.push(parameter("fieldValidation", "query", "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields: Ignore, Warn or Strict."));
    }
    if !params.is_empty() {
        op["parameters"] = json!(params);
    }
    if !body_types.is_empty() {
        let mut content = Map::new();
        for ct in body_types {
            content.insert(ct.to_string(), json!({"schema": reference}));
        }
        op["requestBody"] = json!({"content": content, "required": true});
    }
    op
}

/// The document of one group version, `None`-like empty paths when nothing is served there.
pub fn document(registry: &Registry, group: &str, version: &str) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert(OBJECT_META.to_string(), object_meta_schema());
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    for t in registry
        .in_group_version(group, version)
        .filter(|t| !t.review)
    {
        schemas.insert(schema_name(t), kind_schema(t));
        let collection = if t.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", t.plural)
        } else {
            format!("{prefix}/{}", t.plural)
        };
        let mut patch_types = vec![
            "application/json-patch+json",
            "application/merge-patch+json",
            "application/apply-patch+yaml",
        ];
        if !t.custom {
            patch_types.push("application/strategic-merge-patch+json");
        }
        let k = &t.kind;
        let ns = if t.namespaced { "Namespaced" } else { "" };
        paths.insert(
            collection.clone(),
            json!({
                "get": operation(t, "list", &format!("list{ns}{k}"), false, &[]),
                "post": operation(t, "post", &format!("create{ns}{k}"), true, &["application/json"]),
                "delete": operation(t, "deletecollection", &format!("deletecollection{ns}{k}"), false, &[]),
            }),
        );
        paths.insert(
            format!("{collection}/{{name}}"),
            json!({
                "get": operation(t, "get", &format!("read{ns}{k}"), false, &[]),
                "put": operation(t, "put", &format!("replace{ns}{k}"), true, &["application/json"]),
                "patch": operation(t, "patch", &format!("patch{ns}{k}"), true, &patch_types),
                "delete": operation(t, "delete", &format!("delete{ns}{k}"), false, &[]),
            }),
        );
        if t.status_subresource {
            paths.insert(
                format!("{collection}/{{name}}/status"),
                json!({
                    "get": operation(t, "get", &format!("read{ns}{k}Status"), false, &[]),
                    "put": operation(t, "put", &format!("replace{ns}{k}Status"), true, &["application/json"]),
                    "patch": operation(t, "patch", &format!("patch{ns}{k}Status"), true, &patch_types),
                }),
            );
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": crate::KUBERNETES_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_carry_gvk_and_field_validation() {
        let mut r = Registry::builtin();
        r.install_crd(&json!({"spec": {"group": "sluice.dev", "scope": "Namespaced",
            "names": {"plural": "pipelines", "kind": "Pipeline"},
            "versions": [{"name": "v1alpha1", "served": true, "storage": true,
              "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "description": "the spec"}}}}}]}}));
        let doc = document(&r, "sluice.dev", "v1alpha1");
        let s = &doc["components"]["schemas"]["dev.sluice.v1alpha1.Pipeline"];
        assert_eq!(s["x-kubernetes-group-version-kind"][0]["kind"], "Pipeline");
        assert_eq!(s["properties"]["spec"]["description"], "the spec");
        let patch = &doc["paths"]["/apis/sluice.dev/v1alpha1/namespaces/{namespace}/pipelines/{name}"]
            ["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Pipeline");
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        assert!(
            patch["requestBody"]["content"]
                .get("application/strategic-merge-patch+json")
                .is_none()
        );
        let idx = index(&r);
        assert!(
            idx["paths"]["apis/sluice.dev/v1alpha1"]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .contains("hash=")
        );
        assert!(idx["paths"]["api/v1"].is_object());
    }
}

//! Request bodies: [`Json`] reads JSON into a request type, refusing what is not JSON (400),
//! too large (413), of the wrong media type (415), or of the wrong shape (422: unknown fields,
//! wrong types, missing fields), each with the offending field. [`MergePatch`] reads an RFC 7396
//! JSON merge patch.
//!
//! Unknown fields are found by walking the body against the request type's JSON schema, so the
//! custom resource types (which, as Kubernetes objects, do not deny unknown fields themselves)
//! refuse them too: a sink with an inline `password` is refused, not silently dropped.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::{FromRequest, Request};
use axum::http::header;
use bytes::Bytes;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::AppState;
use crate::problem::{ApiError, FieldProblem};

/// A JSON request body of type `T`, checked against `T`'s schema for unknown fields.
#[derive(Debug, Clone)]
pub struct Json<T>(pub T);

/// A JSON merge patch (RFC 7396) body: a JSON object, sent as
/// `application/merge-patch+json` (or `application/json`).
#[derive(Debug, Clone)]
pub struct MergePatch(pub Value);

/// The media type of a request's `Content-Type` (lower case, without parameters), if any.
pub fn media_type(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
}

async fn read_json(req: Request, state: &AppState, accepted: &[&str]) -> Result<Value, ApiError> {
    match media_type(req.headers()) {
        Some(m) if accepted.contains(&m.as_str()) => {}
        Some(m) => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Type {m:?} is not accepted here; send {}",
                accepted.join(" or ")
            )));
        }
        None => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "missing Content-Type; send {}",
                accepted.join(" or ")
            )));
        }
    }
    let bytes = Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge {
                limit: state.config.max_body_bytes,
            }
        } else {
            ApiError::MalformedJson {
                detail: format!("cannot read the request body: {e}"),
            }
        }
    })?;
    serde_json::from_slice::<Value>(&bytes).map_err(|e| ApiError::MalformedJson {
        detail: format!("request body is not valid JSON: {e}"),
    })
}

/// Deserializes `value` into `T`, reporting unknown fields, wrong types and missing fields with
/// their path.
pub fn from_value<T: DeserializeOwned + JsonSchema + 'static>(value: Value) -> Result<T, ApiError> {
    let schema = schema_of::<T>();
    let mut errors = vec![];
    let defs = schema
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    unknown_fields(&value, &schema, &defs, "", &mut errors);
    if !errors.is_empty() {
        let detail = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(ApiError::InvalidBody { detail, errors });
    }
    serde_path_to_error::deserialize::<_, T>(integral_numbers(value)).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." || path.is_empty() {
            "(body)".to_string()
        } else {
            path
        };
        let message = e.into_inner().to_string();
        ApiError::InvalidBody {
            detail: format!("{field}: {message}"),
            errors: vec![FieldProblem::new(field, message)],
        }
    })
}

/// `value` with every number that has no fractional part (`3.0`, `1e3`) written as an integer:
/// JSON does not tell `3.0` from `3`, and a schema's `integer` allows both, but Rust's integer
/// fields only read the second.
fn integral_numbers(value: Value) -> Value {
    match value {
        Value::Number(n) => match n.as_f64() {
            // Below 2^53, where every integer is exactly a float.
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
                if f < 0.0 {
                    Value::from(f as i64)
                } else {
                    Value::from(f as u64)
                }
            }
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(integral_numbers).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, integral_numbers(v)))
                .collect(),
        ),
        other => other,
    }
}

impl<T> FromRequest<AppState> for Json<T>
where
    T: DeserializeOwned + JsonSchema + 'static,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let value = read_json(req, state, &["application/json"]).await?;
        from_value(value).map(Json)
    }
}

impl FromRequest<AppState> for MergePatch {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let value = read_json(
            req,
            state,
            &["application/merge-patch+json", "application/json"],
        )
        .await?;
        if !value.is_object() {
            return Err(ApiError::InvalidBody {
                detail: "a merge patch must be a JSON object".into(),
                errors: vec![FieldProblem::new("(body)", "must be a JSON object")],
            });
        }
        Ok(MergePatch(value))
    }
}

/// The JSON schema of `T` (with its `$defs`), generated once per type.
fn schema_of<T: JsonSchema + 'static>() -> Arc<Value> {
    static CACHE: OnceLock<Mutex<HashMap<TypeId, Arc<Value>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(TypeId::of::<T>())
        .or_insert_with(|| Arc::new(schemars::schema_for!(T).to_value()))
        .clone()
}

fn resolve<'a>(schema: &'a Value, defs: &'a Map<String, Value>) -> &'a Value {
    let mut s = schema;
    for _ in 0..32 {
        match s.get("$ref").and_then(Value::as_str) {
            Some(r) => match r.rsplit('/').next().and_then(|name| defs.get(name)) {
                Some(target) => s = target,
                None => return s,
            },
            None => return s,
        }
    }
    s
}

/// What an object schema allows: named properties, and whether other keys are allowed (with
/// the schema of their values, when there is one).
#[derive(Default)]
struct ObjectShape<'a> {
    properties: Vec<(&'a str, &'a Value)>,
    open: bool,
    additional: Vec<&'a Value>,
    items: Vec<&'a Value>,
}

fn shape<'a>(schema: &'a Value, defs: &'a Map<String, Value>, out: &mut ObjectShape<'a>) {
    let s = resolve(schema, defs);
    let Some(obj) = s.as_object() else {
        // `true` (anything) or a malformed schema: do not constrain.
        out.open = true;
        return;
    };
    let mut composite = false;
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(branches) = obj.get(key).and_then(Value::as_array) {
            composite = true;
            for b in branches {
                shape(b, defs, out);
            }
        }
    }
    if obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        out.open = true;
    }
    if let Some(items) = obj.get("items") {
        out.items.push(items);
    }
    let props = obj.get("properties").and_then(Value::as_object);
    if let Some(props) = props {
        out.properties
            .extend(props.iter().map(|(k, v)| (k.as_str(), v)));
    }
    match obj.get("additionalProperties") {
        Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => out.open = true,
        Some(additional) => {
            out.open = true;
            out.additional.push(additional);
        }
        None => {
            let is_object = match obj.get("type") {
                Some(Value::String(t)) => t == "object",
                Some(Value::Array(ts)) => ts.iter().any(|t| t == "object"),
                _ => false,
            };
            if props.is_none() && !composite && (is_object || obj.get("type").is_none()) {
                out.open = true;
            }
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn unknown_fields(
    value: &Value,
    schema: &Value,
    defs: &Map<String, Value>,
    path: &str,
    out: &mut Vec<FieldProblem>,
) {
    let mut s = ObjectShape::default();
    shape(schema, defs, &mut s);
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let known: Vec<&Value> = s
                    .properties
                    .iter()
                    .filter(|(name, _)| *name == k)
                    .map(|(_, schema)| *schema)
                    .collect();
                let here = join(path, k);
                if let Some(first) = known.first() {
                    unknown_fields(v, first, defs, &here, out);
                } else if s.open {
                    if let Some(additional) = s.additional.first() {
                        unknown_fields(v, additional, defs, &here, out);
                    }
                } else {
                    out.push(FieldProblem::new(
                        here,
                        "unknown field (credentials belong in a Secret referenced by name)",
                    ));
                }
            }
        }
        // serde reads a struct from an array of its field values too: refuse that here.
        Value::Array(_) if s.items.is_empty() && !s.open && !s.properties.is_empty() => {
            out.push(FieldProblem::new(
                if path.is_empty() { "(body)" } else { path },
                "invalid type: array, expected an object",
            ));
        }
        Value::Array(items) => {
            if let Some(item_schema) = s.items.first() {
                for (i, v) in items.iter().enumerate() {
                    unknown_fields(v, item_schema, defs, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sluice_crd::PipelineSpec;

    #[test]
    fn unknown_fields_are_found_at_any_depth() {
        let body = json!({
            "source": {"stream": "orders", "bogus": 1},
            "sinks": [{"name": "a", "postgres": {"table": "t",
                "connectionSecretRef": {"name": "s", "key": "k"}, "password": "hunter2"}}],
            "resources": {"requests": {"cpu": "1"}},
        });
        let err = from_value::<PipelineSpec>(body).unwrap_err();
        let ApiError::InvalidBody { errors, .. } = err else {
            panic!("{err:?}")
        };
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["sinks[0].postgres.password", "source.bogus"]);
    }

    #[test]
    fn wrong_types_name_their_field() {
        let body = json!({"source": {"stream": "orders"}, "sinks": [], "parallelism": "two"});
        let ApiError::InvalidBody { errors, .. } = from_value::<PipelineSpec>(body).unwrap_err()
        else {
            panic!()
        };
        assert_eq!(errors[0].field, "parallelism");
        assert!(errors[0].message.contains("invalid type"), "{errors:?}");
    }

    #[test]
    fn arrays_are_not_objects() {
        let body = json!({"quota": [null, null]});
        let ApiError::InvalidBody { errors, .. } =
            from_value::<sluice_crd::TenantSpec>(body).unwrap_err()
        else {
            panic!()
        };
        assert_eq!(errors[0].field, "quota");
    }

    #[test]
    fn integral_floats_read_as_integers() {
        let body = json!({"source": {"stream": "orders"}, "sinks": [], "parallelism": 3.0});
        assert_eq!(from_value::<PipelineSpec>(body).unwrap().parallelism, 3);
        let fractional = json!({"source": {"stream": "orders"}, "sinks": [], "parallelism": 2.5});
        assert!(from_value::<PipelineSpec>(fractional).is_err());
        assert_eq!(integral_numbers(json!([-2.0, 1.5])), json!([-2, 1.5]));
    }

    #[test]
    fn maps_and_free_form_values_are_open() {
        let body = json!({"quota": {"maxPipelines": 1},
            "isolation": {"nodeSelector": {"any-key": "v"},
                "tolerations": [{"key": "k", "operator": "Exists"}]}});
        assert!(from_value::<sluice_crd::TenantSpec>(body).is_ok());
        let bad = json!({"isolation": {"tolerations": [{"key": "k", "colour": "red"}]}});
        assert!(from_value::<sluice_crd::TenantSpec>(bad).is_err());
    }
}

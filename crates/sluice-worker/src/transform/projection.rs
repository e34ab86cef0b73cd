//! Projections: keep some fields (nested paths, each under its output name at the top level)
//! or build the new event with a CEL map expression.

use super::{BuildError, json};
use cel::objects::Key;
use cel::{Context, Program, Value};
use sluice_core::expr::Shape;
use sluice_core::route::Projection;
use std::sync::Arc;

/// One kept field, ready to look up.
#[derive(Debug)]
pub struct FieldPath {
    /// The output name, as a JSON string literal.
    pub name: Vec<u8>,
    /// The path's segments.
    pub segments: Vec<String>,
    /// The same, as CEL map keys.
    pub keys: Vec<Key>,
}

/// A projection ready to apply.
#[derive(Debug)]
pub enum CompiledProjection {
    /// The event is delivered whole.
    Whole,
    /// Keep these fields.
    Fields(Vec<FieldPath>),
    /// Evaluate this expression; it must return a map.
    Expression(Box<Program>),
}

impl CompiledProjection {
    /// Compiles a route's projection, with the shape of its expression if it has one.
    pub fn new(projection: Option<&Projection>) -> Result<(Self, Option<Shape>), BuildError> {
        Ok(match projection {
            None => (CompiledProjection::Whole, None),
            Some(Projection::Fields(fields)) => (
                CompiledProjection::Fields(
                    fields
                        .iter()
                        .map(|f| {
                            let mut name = Vec::new();
                            json::write_str(f.output_name(), &mut name);
                            let segments: Vec<String> =
                                f.path.split('.').map(String::from).collect();
                            let keys = segments
                                .iter()
                                .map(|s| Key::String(Arc::new(s.clone())))
                                .collect();
                            FieldPath {
                                name,
                                segments,
                                keys,
                            }
                        })
                        .collect(),
                ),
                None,
            ),
            Some(Projection::Expression(e)) => {
                let (program, shape) =
                    sluice_core::expr::compile_with_shape(e).map_err(|message| BuildError {
                        field: "projection.expression",
                        message,
                    })?;
                (
                    CompiledProjection::Expression(Box::new(program)),
                    Some(shape),
                )
            }
        })
    }

    /// Writes the projected event as JSON to `out`. Fields whose path is missing from the
    /// event are left out.
    pub fn apply(&self, scope: &Context, event: &Value, out: &mut Vec<u8>) -> Result<(), String> {
        match self {
            CompiledProjection::Whole => json::encode(event, out).map_err(|e| e.to_string()),
            CompiledProjection::Fields(fields) => write_object(
                fields.iter().map(|f| (&f.name[..], lookup(event, &f.keys))),
                out,
                |v, out| json::encode(v, out).map_err(|e| e.to_string()),
            ),
            CompiledProjection::Expression(program) => match program.execute(scope) {
                Ok(v @ Value::Map(_)) => json::encode(&v, out).map_err(|e| e.to_string()),
                Ok(other) => Err(format!(
                    "the projection returned a {}, not a map",
                    other.type_of()
                )),
                Err(e) => Err(format!("the projection failed: {e}")),
            },
        }
    }
}

/// Writes the kept fields of an event read as raw members (no value is decoded: nested
/// objects on a path are scanned, the kept values copied verbatim).
pub fn write_fields(fields: &[FieldPath], members: &json::Members<'_>, out: &mut Vec<u8>) {
    let copied: Result<(), std::convert::Infallible> = write_object(
        fields
            .iter()
            .map(|f| (&f.name[..], raw_lookup(members, &f.segments))),
        out,
        |raw, out| {
            out.extend_from_slice(raw.get().as_bytes());
            Ok(())
        },
    );
    let Ok(()) = copied;
}

/// Writes a JSON object of the `(quoted name, value)` pairs whose value is found, each value
/// written by `write_value`. `name` is the already quoted and escaped key.
fn write_object<'a, V, E>(
    members: impl Iterator<Item = (&'a [u8], Option<V>)>,
    out: &mut Vec<u8>,
    mut write_value: impl FnMut(V, &mut Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
    out.push(b'{');
    let mut first = true;
    for (name, value) in members {
        let Some(value) = value else {
            continue;
        };
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(name);
        out.push(b':');
        write_value(value, out)?;
    }
    out.push(b'}');
    Ok(())
}

fn raw_lookup<'a>(
    members: &json::Members<'a>,
    segments: &[String],
) -> Option<&'a serde_json::value::RawValue> {
    let (first, rest) = segments.split_first()?;
    let mut raw = json::member(members, first)?;
    for seg in rest {
        let nested = json::members(raw.get().as_bytes()).ok()?;
        raw = json::member(&nested, seg)?;
    }
    Some(raw)
}

/// Follows a path of map keys.
fn lookup<'v>(mut value: &'v Value, path: &[Key]) -> Option<&'v Value> {
    for key in path {
        match value {
            Value::Map(m) => value = m.map.get(key)?,
            _ => return None,
        }
    }
    Some(value)
}

//! Validation of custom resources against a CRD's structural schema and its
//! CEL rules (`x-kubernetes-validations`), producing the same results as a
//! real kube-apiserver: the pruned and defaulted object, the dotted paths of
//! pruned unknown fields, and the causes of a `422 Invalid`.
//!
//! The pipeline mirrors the apiextensions-apiserver:
//! 1. structural pruning of unknown fields (`apiVersion`, `kind` and
//!    `metadata` are always kept at the root and in embedded resources);
//! 2. removal of `null`s where the schema is neither `nullable` nor defaulted;
//! 3. defaulting (`default`), recursively, also inside applied defaults;
//! 4. OpenAPI value validation (kube-openapi semantics and messages), with
//!    validation ratcheting on update (an unchanged value is not re-validated);
//! 5. `x-kubernetes-list-type` `set`/`map` uniqueness;
//! 6. CEL rules, skipped (with the server's "some validation rules were not
//!    checked" cause) when a blocking error (type, required, enum, too long,
//!    too many) was found.
//!
//! # CEL support
//! Rules are run by the `cel` crate, which interprets CEL without a type
//! checker. Supported: the standard library and macros (`has`, `all`,
//! `exists`, `exists_one`, `map`, `filter`, `size`, `matches`, `startsWith`,
//! `endsWith`, `contains`, `in`, `int`, `string`, `duration`, `timestamp`,
//! optionals), the cel strings extension (`lowerAscii`, `upperAscii`, `split`,
//! `join`, `replace`, `trim`, `substring`, `indexOf`, `lastIndexOf`,
//! `charAt`, `format`...), the cel lists extension (`slice`, `flatten`,
//! `distinct`, `reverse`, `sort`, `sortBy`), and Kubernetes' list functions
//! `isSorted`, `sum`, `min`, `max`, and regex `find`/`findAll`.
//! Property names are escaped as Kubernetes does (`foo-bar` →
//! `foo__dash__bar`, reserved words → `__namespace__`...). Strings with
//! `format: date-time`/`date` become timestamps.
//!
//! Not supported: static type checking (so type errors show up at evaluation
//! time, not in [`check_schema`]), cost estimation and budgets, Kubernetes'
//! `url`, `quantity`, `ip`, `cidr`, `semver` and `authz` libraries, the list
//! `indexOf`/`lastIndexOf` overloads, `format: duration`/`byte` conversion,
//! and exact cel-go parse-error texts.
//!
//! Schema keywords not supported: `patternProperties`, `uniqueItems`
//! (forbidden in structural schemas anyway), `x-kubernetes-map-type`
//! checks, validation of `metadata` beyond what the schema says.

pub(crate) mod celrules;
mod gofmt;
mod openapi;
mod prune;
mod schema;
mod structural;

#[cfg(test)]
mod tests;

use serde_json::Value;

/// One reason an object is invalid, as in a Kubernetes Status's
/// `details.causes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// The cause type, e.g. `FieldValueRequired`, `FieldValueInvalid`,
    /// `FieldValueNotSupported`, `FieldValueTypeInvalid`, `FieldValueTooLong`,
    /// `FieldValueTooMany`, `FieldValueDuplicate`, `FieldValueForbidden`.
    pub reason: String,
    /// The error body without the field path, e.g.
    /// `Invalid value: -1: spec.parallelism in body should be greater than or equal to 0`.
    pub message: String,
    /// The field path, e.g. `spec.sinks[0].name` (or `<nil>` when the server
    /// reports no path).
    pub field: String,
}

impl Cause {
    /// The whole error as the server prints it: `field: message`.
    pub fn full(&self) -> String {
        format!("{}: {}", self.field, self.message)
    }

    fn new(reason: &str, field: &str, message: String) -> Cause {
        Cause {
            reason: reason.to_string(),
            message,
            field: if field.is_empty() {
                "<nil>".to_string()
            } else {
                field.to_string()
            },
        }
    }

    fn with_detail(body: String, detail: &str) -> String {
        if detail.is_empty() {
            body
        } else {
            format!("{body}: {detail}")
        }
    }

    /// `field.Required`.
    pub(crate) fn required(field: &str, detail: &str) -> Cause {
        Cause::new(
            "FieldValueRequired",
            field,
            Cause::with_detail("Required value".into(), detail),
        )
    }

    /// `field.Invalid`.
    pub(crate) fn invalid(field: &str, value: &Value, detail: &str) -> Cause {
        Cause::new(
            "FieldValueInvalid",
            field,
            Cause::with_detail(
                format!("Invalid value: {}", gofmt::bad_value(value)),
                detail,
            ),
        )
    }

    /// `field.Invalid` whose bad value is printed verbatim (e.g. a Go struct).
    pub(crate) fn invalid_raw(field: &str, value: &str, detail: &str) -> Cause {
        Cause::new(
            "FieldValueInvalid",
            field,
            Cause::with_detail(format!("Invalid value: {value}"), detail),
        )
    }

    /// `field.TypeInvalid`.
    pub(crate) fn type_invalid(field: &str, value: &Value, detail: &str) -> Cause {
        Cause::new(
            "FieldValueTypeInvalid",
            field,
            Cause::with_detail(
                format!("Invalid value: {}", gofmt::bad_value(value)),
                detail,
            ),
        )
    }

    /// `field.NotSupported`.
    pub(crate) fn not_supported(field: &str, value: &Value, supported: &[String]) -> Cause {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let q: Vec<String> = supported.iter().map(|s| gofmt::quote(s)).collect();
            format!("supported values: {}", q.join(", "))
        };
        Cause::new(
            "FieldValueNotSupported",
            field,
            Cause::with_detail(
                format!("Unsupported value: {}", gofmt::bad_value(value)),
                &detail,
            ),
        )
    }

    /// `field.Duplicate`.
    pub(crate) fn duplicate(field: &str, value: &Value) -> Cause {
        Cause::new(
            "FieldValueDuplicate",
            field,
            format!("Duplicate value: {}", gofmt::bad_value(value)),
        )
    }

    /// `field.Forbidden`.
    pub(crate) fn forbidden(field: &str, detail: &str) -> Cause {
        Cause::new(
            "FieldValueForbidden",
            field,
            Cause::with_detail("Forbidden".into(), detail),
        )
    }

    /// `field.TooLong` with a known maximum.
    pub(crate) fn too_long(field: &str, max: i64) -> Cause {
        let unit = if max == 1 { "byte" } else { "bytes" };
        Cause::new(
            "FieldValueTooLong",
            field,
            format!("Too long: may not be more than {max} {unit}"),
        )
    }

    /// `field.TooMany`.
    pub(crate) fn too_many(field: &str, actual: i64, max: i64) -> Cause {
        let unit = if max == 1 { "item" } else { "items" };
        Cause::new(
            "FieldValueTooMany",
            field,
            format!("Too many: {actual}: must have at most {max} {unit}"),
        )
    }
}

/// The result of [`validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The object after pruning unknown fields and applying schema defaults.
    pub object: Value,
    /// Dotted paths of unknown fields that were pruned, e.g. `spec.foo` or
    /// `spec.sinks[0].foo` (the server turns these into a 400 with
    /// `fieldValidation=Strict` or Warning headers with `=Warn`).
    pub unknown_fields: Vec<String>,
    /// Empty when valid.
    pub causes: Vec<Cause>,
}

impl Outcome {
    /// Whether the object passed validation.
    pub fn is_valid(&self) -> bool {
        self.causes.is_empty()
    }
}

/// Prunes, defaults and validates a custom resource.
///
/// `schema` is the CRD version's `schema.openAPIV3Schema`; `obj` the whole
/// custom resource (apiVersion, kind, metadata, spec, status...); `old` the
/// stored object on update (for transition rules with `oldSelf` and for
/// validation ratcheting), `None` on create.
///
/// `old` is used as given: pass the stored object (already pruned and
/// defaulted when it was stored).
pub fn validate(schema: &Value, obj: &Value, old: Option<&Value>) -> Outcome {
    let mut object = obj.clone();
    let mut unknown_fields = Vec::new();
    prune::prune(&mut object, schema, &mut unknown_fields);
    prune::prune_nulls(&mut object, Some(schema));
    prune::apply_defaults(&mut object, schema);

    let mut causes = Vec::new();
    openapi::validate_value(schema, &object, old, "", &mut causes);
    openapi::validate_lists(schema, &object, "", &mut causes);

    let blocking = causes.iter().any(|c| {
        matches!(
            c.reason.as_str(),
            "FieldValueNotSupported"
                | "FieldValueRequired"
                | "FieldValueTooLong"
                | "FieldValueTooMany"
                | "FieldValueTypeInvalid"
        )
    });
    if celrules::has_rules(schema) {
        if blocking {
            causes.push(Cause::invalid(
                "",
                &Value::Null,
                "some validation rules were not checked because the object was invalid; \
                 correct the existing errors to complete validation",
            ));
        } else {
            celrules::validate(schema, &object, old, &mut causes);
        }
    }

    Outcome {
        object,
        unknown_fields,
        causes,
    }
}

/// Checks that a CRD version's schema is structural and that its CEL rules
/// compile; returns causes like the real server's CRD validation, with paths
/// under `field_prefix` (e.g. `spec.versions[0].schema.openAPIV3Schema`),
/// such as
/// `spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule`.
pub fn check_schema(schema: &Value, field_prefix: &str) -> Vec<Cause> {
    structural::check(schema, field_prefix)
}

/// Builds the overall message of a `422 Invalid` status as the real server
/// does: `Pipeline.sluice.dev "p1" is invalid: spec.x: Invalid value: ...`;
/// several causes are joined as `[cause1, cause2]` (identical ones once).
pub fn invalid_message(kind_group: &str, name: &str, causes: &[Cause]) -> String {
    let mut seen = std::collections::HashSet::new();
    let msgs: Vec<String> = causes
        .iter()
        .map(Cause::full)
        .filter(|m| seen.insert(m.clone()))
        .collect();
    let head = format!("{kind_group} {} is invalid", gofmt::quote(name));
    match msgs.len() {
        0 => head,
        1 => format!("{head}: {}", msgs[0]),
        _ => format!("{head}: [{}]", msgs.join(", ")),
    }
}

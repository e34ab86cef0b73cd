//! CRD schema checks: structural-schema rules and CEL compilation.

use super::Cause;
use super::celrules;
use super::gofmt;
use super::schema;
use serde_json::Value;

/// Checks the schema at `prefix`.
pub fn check(s: &Value, prefix: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    let env = celrules::env();
    if schema::ty(s).is_some_and(|t| t != "object") {
        out.push(Cause::invalid(
            &format!("{prefix}.type"),
            &Value::String(schema::ty(s).unwrap_or_default().to_string()),
            "must be object at the root",
        ));
    }
    if let Some(meta) = schema::props(s).and_then(|p| p.get("metadata")) {
        check_root_metadata(meta, &format!("{prefix}.properties[metadata]"), &mut out);
    }
    node(&env, s, prefix, true, &mut out);
    out
}

fn check_root_metadata(meta: &Value, path: &str, out: &mut Vec<Cause>) {
    if let Some(props) = schema::props(meta) {
        for k in props.keys() {
            if k != "name" && k != "generateName" {
                out.push(Cause::forbidden(
                    &format!("{path}.properties[{k}]"),
                    "must not be specified",
                ));
            }
        }
    }
}

fn node(env: &cel::Env, s: &Value, path: &str, root: bool, out: &mut Vec<Cause>) {
    let Some(m) = s.as_object() else {
        out.push(Cause::invalid(path, s, "must be a schema object"));
        return;
    };
    let has_type = schema::ty(s).is_some_and(|t| !t.is_empty());
    if let Some(t) = schema::ty(s)
        && !["object", "array", "string", "integer", "number", "boolean"].contains(&t)
    {
        out.push(Cause::not_supported(
            &format!("{path}.type"),
            &Value::String(t.to_string()),
            &[
                "array".into(),
                "boolean".into(),
                "integer".into(),
                "number".into(),
                "object".into(),
                "string".into(),
            ],
        ));
    }
    if !has_type && !schema::embedded(s) && !schema::int_or_string(s) {
        if root {
            out.push(Cause::required(
                &format!("{path}.type"),
                "must not be empty at the root",
            ));
        } else if !schema::preserve(s) {
            out.push(Cause::required(
                &format!("{path}.type"),
                "must not be empty for specified object fields",
            ));
        }
    }
    if schema::embedded(s) && schema::ty(s).is_some_and(|t| t != "object") {
        out.push(Cause::invalid(
            &format!("{path}.type"),
            &Value::String(schema::ty(s).unwrap_or_default().to_string()),
            "must be object if x-kubernetes-embedded-resource is true",
        ));
    }
    if schema::int_or_string(s) && has_type {
        out.push(Cause::invalid(
            &format!("{path}.type"),
            &Value::String(schema::ty(s).unwrap_or_default().to_string()),
            "must be empty if x-kubernetes-int-or-string is true",
        ));
    }
    if m.contains_key("properties") && m.contains_key("additionalProperties") {
        out.push(Cause::forbidden(
            &format!("{path}.additionalProperties"),
            "additionalProperties and properties are mutual exclusive",
        ));
    }
    if m.get("additionalProperties") == Some(&Value::Bool(false)) {
        out.push(Cause::forbidden(
            &format!("{path}.additionalProperties"),
            "must not be false",
        ));
    }
    if m.get("uniqueItems") == Some(&Value::Bool(true)) {
        out.push(Cause::forbidden(
            &format!("{path}.uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    if schema::ty(s) == Some("array") && schema::items(s).is_none() {
        out.push(Cause::required(
            &format!("{path}.items"),
            "must be specified",
        ));
    }
    if let Some(p) = m.get("pattern").and_then(Value::as_str)
        && let Err(e) = regex::Regex::new(p)
    {
        out.push(Cause::invalid(
            &format!("{path}.pattern"),
            &Value::String(p.to_string()),
            &format!("must be a valid regular expression, but isn't: {e}"),
        ));
    }
    match schema::list_type(s) {
        None | Some("atomic") | Some("set") => {}
        Some("map") => {
            if schema::list_map_keys(s).is_empty() {
                out.push(Cause::required(
                    &format!("{path}.x-kubernetes-list-map-keys"),
                    "must not be empty if x-kubernetes-list-type is map",
                ));
            }
        }
        Some(other) => out.push(Cause::not_supported(
            &format!("{path}.x-kubernetes-list-type"),
            &Value::String(other.to_string()),
            &["atomic".into(), "set".into(), "map".into()],
        )),
    }
    if let Some(rules) = m.get("x-kubernetes-validations").and_then(Value::as_array) {
        for (i, rule) in rules.iter().enumerate() {
            check_rule(
                env,
                rule,
                &format!("{path}.x-kubernetes-validations[{i}]"),
                out,
            );
        }
    }
    if let Some(props) = schema::props(s) {
        for (k, ps) in props {
            node(env, ps, &format!("{path}.properties[{k}]"), false, out);
        }
    }
    if let Some(a) = schema::addl(s) {
        node(env, a, &format!("{path}.additionalProperties"), false, out);
    }
    if let Some(is) = schema::items(s) {
        node(env, is, &format!("{path}.items"), false, out);
    }
}

/// Go's `%#v` of an `apiextensions.ValidationRule`.
fn rule_repr(rule: &Value) -> String {
    let st = |k: &str| gofmt::quote(rule.get(k).and_then(Value::as_str).unwrap_or_default());
    let reason = match rule.get("reason").and_then(Value::as_str) {
        Some(_) => "(*apiextensions.FieldValueErrorReason)(0xc000000000)".to_string(),
        None => "(*apiextensions.FieldValueErrorReason)(nil)".to_string(),
    };
    let oos = match rule.get("optionalOldSelf").and_then(Value::as_bool) {
        Some(_) => "(*bool)(0xc000000000)".to_string(),
        None => "(*bool)(nil)".to_string(),
    };
    format!(
        "apiextensions.ValidationRule{{Rule:{}, Message:{}, MessageExpression:{}, Reason:{reason}, FieldPath:{}, OptionalOldSelf:{oos}}}",
        st("rule"),
        st("message"),
        st("messageExpression"),
        st("fieldPath"),
    )
}

fn check_rule(env: &cel::Env, rule: &Value, path: &str, out: &mut Vec<Cause>) {
    let repr = rule_repr(rule);
    match rule.get("rule").and_then(Value::as_str) {
        None | Some("") => out.push(Cause::required(&format!("{path}.rule"), "")),
        Some(src) => {
            if let Err(e) = celrules::compile(env, src) {
                out.push(Cause::invalid_raw(
                    &format!("{path}.rule"),
                    &repr,
                    &format!("compilation failed: {e}"),
                ));
            }
        }
    }
    if let Some(me) = rule.get("messageExpression").and_then(Value::as_str) {
        if me.trim().is_empty() {
            out.push(Cause::required(
                &format!("{path}.messageExpression"),
                "messageExpression must be non-empty if specified",
            ));
        } else if let Err(e) = celrules::compile(env, me) {
            out.push(Cause::invalid_raw(
                &format!("{path}.messageExpression"),
                &repr,
                &format!("messageExpression compilation failed: {e}"),
            ));
        }
    }
    if let Some(r) = rule.get("reason").and_then(Value::as_str)
        && ![
            "FieldValueInvalid",
            "FieldValueForbidden",
            "FieldValueRequired",
            "FieldValueDuplicate",
        ]
        .contains(&r)
    {
        out.push(Cause::not_supported(
            &format!("{path}.reason"),
            &Value::String(r.to_string()),
            &[
                "FieldValueDuplicate".into(),
                "FieldValueForbidden".into(),
                "FieldValueInvalid".into(),
                "FieldValueRequired".into(),
            ],
        ));
    }
}

//! OpenAPI value validation with kube-openapi's semantics and messages, as
//! converted to field errors by the apiextensions-apiserver, plus the
//! `x-kubernetes-list-type` checks.

use super::Cause;
use super::gofmt;
use super::schema::{self, join};
use serde_json::Value;

fn data_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn allowed_types(s: &Value) -> Vec<&str> {
    if schema::int_or_string(s) {
        vec!["integer", "string"]
    } else if let Some(t) = schema::ty(s) {
        vec![t]
    } else {
        vec![]
    }
}

fn type_ok(types: &[&str], v: &Value) -> bool {
    let dt = data_type(v);
    if types.contains(&dt) {
        return true;
    }
    match v {
        Value::Number(n) if dt == "number" => {
            types.contains(&"integer")
                && n.as_f64().is_some_and(|f| f == f.trunc() && f.is_finite())
        }
        Value::Number(_) => types.contains(&"number"),
        _ => false,
    }
}

/// Validates `v` against the schema node `s` at `path`. `old` is the
/// correlated old value on update: when it equals `v`, the subtree is not
/// validated (validation ratcheting).
pub fn validate_value(s: &Value, v: &Value, old: Option<&Value>, path: &str, out: &mut Vec<Cause>) {
    if old == Some(v) {
        return;
    }
    let types = allowed_types(s);
    if v.is_null() {
        if !types.is_empty() && !schema::flag(s, "nullable") {
            out.push(type_mismatch(path, &types, "null"));
        }
        check_enum(s, v, path, out);
        return;
    }
    if !types.is_empty() && !type_ok(&types, v) {
        out.push(type_mismatch(path, &types, data_type(v)));
    }
    check_combinators(s, v, path, out);
    if let Value::String(st) = v {
        check_string(s, st, v, path, out);
    }
    if let Value::Number(n) = v {
        check_number(s, n, v, path, out);
    }
    if let Value::Array(a) = v {
        check_array(s, a, old, path, out);
    }
    check_enum(s, v, path, out);
    if let Value::Object(m) = v {
        check_object(s, m, old, path, out);
    }
}

fn type_mismatch(path: &str, types: &[&str], got: &str) -> Cause {
    Cause::type_invalid(
        path,
        &Value::String(got.to_string()),
        &format!(
            "{path} in body must be of type {}: {}",
            types.join(","),
            gofmt::quote(got)
        ),
    )
}

fn sub_schemas<'a>(s: &'a Value, key: &str) -> Vec<&'a Value> {
    s.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn run(s: &Value, v: &Value, path: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    validate_value(s, v, None, path, &mut out);
    out
}

fn check_combinators(s: &Value, v: &Value, path: &str, out: &mut Vec<Cause>) {
    let all_of = sub_schemas(s, "allOf");
    if !all_of.is_empty() {
        let mut validated = 0;
        for sub in &all_of {
            let r = run(sub, v, path);
            if r.is_empty() {
                validated += 1;
            }
            out.extend(r);
        }
        if validated != all_of.len() {
            let extra = if validated == 0 {
                ". None validated"
            } else {
                ""
            };
            out.push(Cause::invalid(
                "",
                &Value::String(String::new()),
                &format!(
                    "{} must validate all the schemas (allOf){extra}",
                    gofmt::quote(path)
                ),
            ));
        }
    }
    let any_of = sub_schemas(s, "anyOf");
    if !any_of.is_empty() {
        let mut best: Option<Vec<Cause>> = None;
        let mut ok = false;
        for sub in &any_of {
            let r = run(sub, v, path);
            if r.is_empty() {
                ok = true;
                best = None;
                break;
            }
            if best.as_ref().is_none_or(|b| r.len() < b.len()) {
                best = Some(r);
            }
        }
        if !ok {
            out.push(Cause::invalid(
                "",
                &Value::String(String::new()),
                &format!(
                    "{} must validate at least one schema (anyOf)",
                    gofmt::quote(path)
                ),
            ));
        }
        if let Some(b) = best {
            out.extend(b);
        }
    }
    let one_of = sub_schemas(s, "oneOf");
    if !one_of.is_empty() {
        let mut best: Option<Vec<Cause>> = None;
        let mut validated = 0;
        for sub in &one_of {
            let r = run(sub, v, path);
            if r.is_empty() {
                validated += 1;
                best = None;
                continue;
            }
            if validated == 0 && best.as_ref().is_none_or(|b| r.len() < b.len()) {
                best = Some(r);
            }
        }
        if validated != 1 {
            let extra = if validated == 0 {
                "Found none valid".to_string()
            } else {
                format!("Found {validated} valid alternatives")
            };
            out.push(Cause::invalid(
                "",
                &Value::String(String::new()),
                &format!(
                    "{} must validate one and only one schema (oneOf). {extra}",
                    gofmt::quote(path)
                ),
            ));
            if let Some(b) = best {
                out.extend(b);
            }
        }
    }
    if let Some(not) = s.get("not").filter(|n| n.is_object())
        && run(not, v, path).is_empty()
    {
        out.push(Cause::invalid(
            "",
            &Value::String(String::new()),
            &format!("{} must not validate the schema (not)", gofmt::quote(path)),
        ));
    }
}

fn check_string(s: &Value, st: &str, v: &Value, path: &str, out: &mut Vec<Cause>) {
    let len = st.chars().count() as i64;
    if let Some(max) = s.get("maxLength").and_then(Value::as_i64)
        && len > max
    {
        out.push(Cause::too_long(path, max));
    }
    if let Some(min) = s.get("minLength").and_then(Value::as_i64)
        && len < min
    {
        out.push(Cause::invalid(
            path,
            v,
            &format!("{path} in body should be at least {min} chars long"),
        ));
    }
    if let Some(p) = s.get("pattern").and_then(Value::as_str) {
        // An invalid pattern is a CRD validation error; ignore it here.
        if let Ok(re) = regex::Regex::new(p)
            && !re.is_match(st)
        {
            out.push(Cause::invalid(
                path,
                v,
                &format!("{path} in body should match '{p}'"),
            ));
        }
    }
    if let Some(f) = s.get("format").and_then(Value::as_str)
        && !format_ok(f, st)
    {
        out.push(Cause::type_invalid(
            path,
            v,
            &format!("{path} in body must be of type {f}: {}", gofmt::quote(st)),
        ));
    }
}

/// Checks the cheap string formats; unknown formats pass.
pub fn format_ok(f: &str, st: &str) -> bool {
    match f {
        "date-time" | "datetime" => parse_date_time(st).is_some(),
        "date" => chrono::NaiveDate::parse_from_str(st, "%Y-%m-%d").is_ok(),
        "uuid" => {
            let b = st.as_bytes();
            b.len() == 36
                && b.iter().enumerate().all(|(i, c)| match i {
                    8 | 13 | 18 | 23 => *c == b'-',
                    _ => c.is_ascii_hexdigit(),
                })
        }
        "ipv4" => st.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => st.parse::<std::net::Ipv6Addr>().is_ok(),
        _ => true,
    }
}

/// Parses an RFC 3339 date-time (also without a zone, as kube-openapi does).
pub fn parse_date_time(st: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(st) {
        return Some(t);
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(n) = chrono::NaiveDateTime::parse_from_str(st, f) {
            return Some(n.and_utc().fixed_offset());
        }
    }
    None
}

fn check_number(s: &Value, n: &serde_json::Number, v: &Value, path: &str, out: &mut Vec<Cause>) {
    let x = n.as_f64().unwrap_or(0.0);
    let bound = |k: &str| s.get(k).and_then(Value::as_f64);
    let bound_str = |k: &str| match s.get(k) {
        Some(Value::Number(b)) => gofmt::number(b),
        _ => String::new(),
    };
    if let Some(m) = bound("multipleOf")
        && m > 0.0
    {
        let q = x / m;
        if (q - q.round()).abs() > 1e-9 {
            out.push(Cause::invalid(
                path,
                v,
                &format!(
                    "{path} in body should be a multiple of {}",
                    bound_str("multipleOf")
                ),
            ));
        }
    }
    if let Some(max) = bound("maximum") {
        let excl = schema::flag(s, "exclusiveMaximum");
        if (excl && x >= max) || (!excl && x > max) {
            let rel = if excl {
                "less than"
            } else {
                "less than or equal to"
            };
            out.push(Cause::invalid(
                path,
                v,
                &format!("{path} in body should be {rel} {}", bound_str("maximum")),
            ));
        }
    }
    if let Some(min) = bound("minimum") {
        let excl = schema::flag(s, "exclusiveMinimum");
        if (excl && x <= min) || (!excl && x < min) {
            let rel = if excl {
                "greater than"
            } else {
                "greater than or equal to"
            };
            out.push(Cause::invalid(
                path,
                v,
                &format!("{path} in body should be {rel} {}", bound_str("minimum")),
            ));
        }
    }
}

fn check_array(s: &Value, a: &[Value], old: Option<&Value>, path: &str, out: &mut Vec<Cause>) {
    if let Some(is) = schema::items(s) {
        for (i, item) in a.iter().enumerate() {
            let old_item = schema::correlate(s, item, old);
            validate_value(is, item, old_item, &schema::index(path, i), out);
        }
    }
    let size = a.len() as i64;
    if let Some(min) = s.get("minItems").and_then(Value::as_i64)
        && size < min
    {
        out.push(Cause::invalid(
            path,
            &Value::from(size),
            &format!("{path} in body should have at least {min} items"),
        ));
    }
    if let Some(max) = s.get("maxItems").and_then(Value::as_i64)
        && size > max
    {
        out.push(Cause::too_many(path, size, max));
    }
}

fn check_enum(s: &Value, v: &Value, path: &str, out: &mut Vec<Cause>) {
    let Some(values) = s.get("enum").and_then(Value::as_array) else {
        return;
    };
    if values.iter().any(|e| json_eq(e, v)) {
        return;
    }
    let supported: Vec<String> = values
        .iter()
        .map(|e| match e {
            Value::String(st) => st.clone(),
            other => other.to_string(),
        })
        .collect();
    out.push(Cause::not_supported(path, v, &supported));
}

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn check_object(
    s: &Value,
    m: &serde_json::Map<String, Value>,
    old: Option<&Value>,
    path: &str,
    out: &mut Vec<Cause>,
) {
    let n = m.len() as i64;
    if let Some(min) = s.get("minProperties").and_then(Value::as_i64)
        && n < min
    {
        out.push(Cause::invalid(
            path,
            &Value::from(n),
            &format!("{path} in body should have at least {min} properties"),
        ));
        return;
    }
    if let Some(max) = s.get("maxProperties").and_then(Value::as_i64)
        && n > max
    {
        out.push(Cause::too_many(path, n, max));
        return;
    }
    let props = schema::props(s);
    let old_map = old.and_then(Value::as_object);
    if let Some(a) = schema::addl(s) {
        for (k, child) in m {
            if props.is_some_and(|p| p.contains_key(k)) {
                continue;
            }
            let old_child = old_map.and_then(|o| o.get(k));
            validate_value(a, child, old_child, &join(path, k), out);
        }
    }
    if let Some(p) = props {
        for (k, ps) in p {
            if let Some(child) = m.get(k) {
                let old_child = old_map.and_then(|o| o.get(k));
                validate_value(ps, child, old_child, &join(path, k), out);
            }
        }
    }
    if let Some(req) = s.get("required").and_then(Value::as_array) {
        for k in req.iter().filter_map(Value::as_str) {
            if !m.contains_key(k) {
                out.push(Cause::required(&join(path, k), ""));
            }
        }
    }
}

/// Validates `x-kubernetes-list-type: set` and `map` uniqueness everywhere
/// in the object.
pub fn validate_lists(s: &Value, v: &Value, path: &str, out: &mut Vec<Cause>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                if let Some(cs) = schema::child(s, k) {
                    let p = if schema::props(s).is_some_and(|p| p.contains_key(k)) {
                        join(path, k)
                    } else {
                        format!("{path}[{k}]")
                    };
                    validate_lists(cs, child, &p, out);
                }
            }
        }
        Value::Array(a) => {
            match schema::list_type(s) {
                Some("set") => check_set(a, path, out),
                Some("map") => check_map_list(s, a, path, out),
                _ => {}
            }
            if let Some(is) = schema::items(s) {
                for (i, item) in a.iter().enumerate() {
                    validate_lists(is, item, &schema::index(path, i), out);
                }
            }
        }
        _ => {}
    }
}

fn check_set(a: &[Value], path: &str, out: &mut Vec<Cause>) {
    let mut seen: Vec<(&Value, usize)> = Vec::new();
    for (i, x) in a.iter().enumerate() {
        if let Some(entry) = seen.iter_mut().find(|(y, _)| json_eq(y, x)) {
            entry.1 += 1;
            if entry.1 == 2 {
                out.push(Cause::duplicate(&schema::index(path, i), x));
            }
        } else {
            seen.push((x, 1));
        }
    }
}

fn check_map_list(s: &Value, a: &[Value], path: &str, out: &mut Vec<Cause>) {
    let mut seen: Vec<Value> = Vec::new();
    for (i, x) in a.iter().enumerate() {
        if !x.is_object() {
            out.push(Cause::invalid(
                &schema::index(path, i),
                x,
                "must be an object for an array of list-type map",
            ));
            continue;
        }
        let Some(key) = schema::map_key(s, x) else {
            continue;
        };
        if seen.contains(&key) {
            out.push(Cause::duplicate(&schema::index(path, i), &key));
        } else {
            seen.push(key);
        }
    }
}

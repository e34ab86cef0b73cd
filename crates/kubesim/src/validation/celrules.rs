//! `x-kubernetes-validations`: CEL rules evaluated with the `cel` crate.

use super::Cause;
use super::openapi::parse_date_time;
use super::schema::{self, join};
use cel::extractors::This;
use cel::objects::{Key, Map as CelMap, OptionalValue};
use cel::{Context, Env, ExecutionError, Program, Value as Cel};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// Words that CEL reserves, escaped as `__word__` in property names.
const RESERVED: [&str; 21] = [
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// Escapes a property name as Kubernetes does for CEL access.
pub fn escape(name: &str) -> String {
    if RESERVED.contains(&name) {
        return format!("__{name}__");
    }
    let mut out = String::new();
    let mut rest = name;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("__") {
            out.push_str("__underscores__");
            rest = r;
            continue;
        }
        let c = rest.chars().next().unwrap_or_default();
        match c {
            '.' => out.push_str("__dot__"),
            '-' => out.push_str("__dash__"),
            '/' => out.push_str("__slash__"),
            c => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The CEL environment: standard library, strings and lists extensions.
pub fn env() -> Arc<Env> {
    let mut env = Env::stdlib();
    // Extensions that fail to register (name clashes) are left out.
    let _ = env.add_extension(cel::extensions::strings);
    let _ = env.add_extension(cel::extensions::lists);
    Arc::new(env)
}

/// Compiles a rule or message expression.
pub fn compile(env: &Env, src: &str) -> Result<Program, String> {
    env.compile(src).map_err(|e| e.to_string())
}

fn list_of(v: &Cel, f: &str) -> Result<Arc<Vec<Cel>>, ExecutionError> {
    match v {
        Cel::List(l) => Ok(l.clone()),
        other => Err(ExecutionError::function_error(
            f,
            format!("expected a list, got {}", other.type_of()),
        )),
    }
}

fn cmp(a: &Cel, b: &Cel) -> Option<std::cmp::Ordering> {
    a.partial_cmp(b)
}

fn is_sorted(This(this): This<Cel>) -> Result<Cel, ExecutionError> {
    let l = list_of(&this, "isSorted")?;
    for w in l.windows(2) {
        match cmp(&w[0], &w[1]) {
            Some(std::cmp::Ordering::Greater) => return Ok(Cel::Bool(false)),
            Some(_) => {}
            None => {
                return Err(ExecutionError::function_error(
                    "isSorted",
                    "list elements are not comparable",
                ));
            }
        }
    }
    Ok(Cel::Bool(true))
}

fn sum(This(this): This<Cel>) -> Result<Cel, ExecutionError> {
    let l = list_of(&this, "sum")?;
    let mut int: i64 = 0;
    let mut float: f64 = 0.0;
    let mut is_float = false;
    for x in l.iter() {
        match x {
            Cel::Int(i) => {
                int = int
                    .checked_add(*i)
                    .ok_or_else(|| ExecutionError::function_error("sum", "integer overflow"))?;
            }
            Cel::UInt(u) => int = int.saturating_add(*u as i64),
            Cel::Float(f) => {
                is_float = true;
                float += f;
            }
            other => {
                return Err(ExecutionError::function_error(
                    "sum",
                    format!("cannot sum {}", other.type_of()),
                ));
            }
        }
    }
    Ok(if is_float {
        Cel::Float(float + int as f64)
    } else {
        Cel::Int(int)
    })
}

fn extreme(this: &Cel, f: &str, want: std::cmp::Ordering) -> Result<Cel, ExecutionError> {
    let l = list_of(this, f)?;
    let mut best: Option<&Cel> = None;
    for x in l.iter() {
        best = match best {
            None => Some(x),
            Some(b) => match cmp(x, b) {
                Some(o) if o == want => Some(x),
                Some(_) => Some(b),
                None => {
                    return Err(ExecutionError::function_error(f, "elements not comparable"));
                }
            },
        };
    }
    best.cloned()
        .ok_or_else(|| ExecutionError::function_error(f, "list is empty"))
}

fn list_min(This(this): This<Cel>) -> Result<Cel, ExecutionError> {
    extreme(&this, "min", std::cmp::Ordering::Less)
}

fn list_max(This(this): This<Cel>) -> Result<Cel, ExecutionError> {
    extreme(&this, "max", std::cmp::Ordering::Greater)
}

fn find(This(this): This<Arc<String>>, re: Arc<String>) -> Result<Cel, ExecutionError> {
    let r = regex::Regex::new(&re).map_err(|e| ExecutionError::function_error("find", e))?;
    Ok(Cel::String(Arc::new(
        r.find(&this)
            .map(|m| m.as_str().to_string())
            .unwrap_or_default(),
    )))
}

fn find_all(This(this): This<Arc<String>>, re: Arc<String>) -> Result<Cel, ExecutionError> {
    let r = regex::Regex::new(&re).map_err(|e| ExecutionError::function_error("findAll", e))?;
    let all: Vec<Cel> = r
        .find_iter(&this)
        .map(|m| Cel::String(Arc::new(m.as_str().to_string())))
        .collect();
    Ok(Cel::List(Arc::new(all)))
}

/// A root context with the Kubernetes functions the `cel` crate lacks.
pub fn root_context(env: Arc<Env>) -> Context<'static, 'static> {
    let mut ctx = Context::with_env(env);
    // A name the environment already declares is kept as declared.
    let _ = ctx.add_function("isSorted", is_sorted);
    let _ = ctx.add_function("sum", sum);
    let _ = ctx.add_function("min", list_min);
    let _ = ctx.add_function("max", list_max);
    let _ = ctx.add_function("find", find);
    let _ = ctx.add_function("findAll", find_all);
    ctx
}

/// Converts a JSON value to CEL following the schema (integer → Int,
/// number → Double, date-time strings → timestamps, escaped property names).
pub fn to_cel(v: &Value, s: Option<&Value>, is_resource: bool) -> Cel {
    let ty = s.and_then(schema::ty);
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match ty {
            Some("number") => Cel::Float(n.as_f64().unwrap_or(0.0)),
            Some("integer") => match n.as_i64() {
                Some(i) => Cel::Int(i),
                None => match n.as_u64() {
                    Some(u) => Cel::UInt(u),
                    None => Cel::Int(n.as_f64().unwrap_or(0.0) as i64),
                },
            },
            _ => {
                if let Some(i) = n.as_i64() {
                    Cel::Int(i)
                } else if let Some(u) = n.as_u64() {
                    Cel::UInt(u)
                } else {
                    Cel::Float(n.as_f64().unwrap_or(0.0))
                }
            }
        },
        Value::String(st) => {
            let format = s.and_then(|s| s.get("format")).and_then(Value::as_str);
            if ty == Some("string") {
                match format {
                    Some("date-time") => {
                        if let Some(t) = parse_date_time(st) {
                            return Cel::Timestamp(t);
                        }
                    }
                    Some("date") => {
                        if let Ok(d) = chrono::NaiveDate::parse_from_str(st, "%Y-%m-%d")
                            && let Some(dt) = d.and_hms_opt(0, 0, 0)
                        {
                            return Cel::Timestamp(dt.and_utc().fixed_offset());
                        }
                    }
                    _ => {}
                }
            }
            Cel::String(Arc::new(st.clone()))
        }
        Value::Array(a) => {
            let is = s.and_then(schema::items);
            Cel::List(Arc::new(a.iter().map(|x| to_cel(x, is, false)).collect()))
        }
        Value::Object(m) => {
            let is_resource = is_resource || s.is_some_and(schema::embedded);
            let props = s.and_then(schema::props);
            let mut out: HashMap<Key, Cel> = HashMap::new();
            for (k, child) in m {
                if is_resource && k == "metadata" {
                    out.insert(Key::from(k.as_str()), metadata_to_cel(child));
                    continue;
                }
                if let Some(ps) = props.and_then(|p| p.get(k)) {
                    out.insert(Key::from(escape(k)), to_cel(child, Some(ps), false));
                } else {
                    let cs = s.and_then(schema::addl);
                    out.insert(Key::from(k.as_str()), to_cel(child, cs, false));
                }
            }
            Cel::Map(CelMap { map: Arc::new(out) })
        }
    }
}

/// Only `name` and `generateName` of an object's metadata are visible to CEL.
fn metadata_to_cel(v: &Value) -> Cel {
    let mut out: HashMap<Key, Cel> = HashMap::new();
    if let Some(m) = v.as_object() {
        for k in ["name", "generateName"] {
            if let Some(Value::String(st)) = m.get(k) {
                out.insert(Key::from(k), Cel::String(Arc::new(st.clone())));
            }
        }
    }
    Cel::Map(CelMap { map: Arc::new(out) })
}

/// Whether any node of the schema has `x-kubernetes-validations`.
pub fn has_rules(s: &Value) -> bool {
    match s {
        Value::Object(m) => {
            m.get("x-kubernetes-validations")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
                || schema::props(s).is_some_and(|p| p.values().any(has_rules))
                || schema::addl(s).is_some_and(has_rules)
                || schema::items(s).is_some_and(has_rules)
        }
        _ => false,
    }
}

struct Runner {
    env: Arc<Env>,
    ctx: Context<'static, 'static>,
    programs: HashMap<String, Result<Program, String>>,
}

impl Runner {
    fn program(&mut self, src: &str) -> &Result<Program, String> {
        if !self.programs.contains_key(src) {
            let p = compile(&self.env, src);
            self.programs.insert(src.to_string(), p);
        }
        &self.programs[src]
    }
}

/// Evaluates every rule of the schema against the object.
pub fn validate(s: &Value, obj: &Value, old: Option<&Value>, out: &mut Vec<Cause>) {
    let env = env();
    let ctx = root_context(env.clone());
    let mut r = Runner {
        env,
        ctx,
        programs: HashMap::new(),
    };
    walk(&mut r, s, obj, old, "", true, out);
}

fn walk(
    r: &mut Runner,
    s: &Value,
    v: &Value,
    old: Option<&Value>,
    path: &str,
    is_resource: bool,
    out: &mut Vec<Cause>,
) {
    if v.is_null() {
        return;
    }
    if let Some(rules) = s.get("x-kubernetes-validations").and_then(Value::as_array) {
        for rule in rules {
            eval_rule(r, s, rule, v, old, path, is_resource, out);
        }
    }
    match v {
        Value::Object(m) => {
            let props = schema::props(s);
            let old_map = old.and_then(Value::as_object);
            for (k, child) in m {
                let old_child = old_map.and_then(|o| o.get(k));
                if let Some(ps) = props.and_then(|p| p.get(k)) {
                    walk(r, ps, child, old_child, &join(path, k), false, out);
                } else if let Some(a) = schema::addl(s) {
                    walk(r, a, child, old_child, &format!("{path}[{k}]"), false, out);
                }
            }
        }
        Value::Array(a) => {
            if let Some(is) = schema::items(s) {
                for (i, item) in a.iter().enumerate() {
                    let old_item = schema::correlate(s, item, old);
                    walk(r, is, item, old_item, &schema::index(path, i), false, out);
                }
            }
        }
        _ => {}
    }
}

fn type_name(s: &Value) -> String {
    schema::ty(s).unwrap_or_default().to_string()
}

/// Formats a CEL evaluation error like cel-go does.
fn eval_error(e: &ExecutionError) -> String {
    match e {
        ExecutionError::NoSuchKey(k) => format!("no such key: {k}"),
        ExecutionError::NoSuchOverload(_) => "no such overload".to_string(),
        ExecutionError::DivisionByZero(_) => "division by zero".to_string(),
        ExecutionError::RemainderByZero(_) => "modulus by zero".to_string(),
        ExecutionError::Overflow(..) => "integer overflow".to_string(),
        ExecutionError::IndexOutOfBounds(i) => format!("index out of bounds: {}", cel_scalar(i)),
        other => other.to_string(),
    }
}

fn cel_scalar(v: &Cel) -> String {
    match v {
        Cel::Int(i) => i.to_string(),
        Cel::UInt(u) => u.to_string(),
        Cel::String(s) => s.to_string(),
        other => format!("{other:?}"),
    }
}

/// Normalizes a rule's `fieldPath` (`.foo['bar']` → `foo[bar]`).
fn normalize_field_path(fp: &str) -> String {
    let fp = fp.strip_prefix('.').unwrap_or(fp);
    fp.replace("['", "[").replace("']", "]")
}

#[allow(clippy::too_many_arguments)]
fn eval_rule(
    r: &mut Runner,
    s: &Value,
    rule: &Value,
    v: &Value,
    old: Option<&Value>,
    path: &str,
    is_resource: bool,
    out: &mut Vec<Cause>,
) {
    let Some(src) = rule.get("rule").and_then(Value::as_str) else {
        return;
    };
    let message = rule
        .get("message")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|m| !m.is_empty());
    let rule_text = message.unwrap_or(src.trim()).to_string();
    let optional_old = rule
        .get("optionalOldSelf")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let sv_type = Value::String(type_name(s));

    let uses_old = match r.program(src) {
        Ok(p) => p.references().has_variable("oldSelf"),
        Err(e) => {
            out.push(Cause::invalid(
                path,
                &sv_type,
                &format!("compilation failed: {e}"),
            ));
            return;
        }
    };
    if uses_old && old.is_none() && !optional_old {
        return;
    }
    let message_expr = rule
        .get("messageExpression")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty());
    if let Some(me) = message_expr {
        let _ = r.program(me);
    }
    let r = &*r;
    let self_val = to_cel(v, Some(s), is_resource);
    let mut scope = r.ctx.new_inner_scope();
    scope.add_variable_from_value("self", self_val);
    if uses_old {
        let old_val = old.map(|o| to_cel(o, Some(s), is_resource));
        if optional_old {
            let opt = match old_val {
                Some(o) => OptionalValue::of(o),
                None => OptionalValue::none(),
            };
            scope.add_variable_from_value("oldSelf", Cel::Opaque(Arc::new(opt)));
        } else if let Some(o) = old_val {
            scope.add_variable_from_value("oldSelf", o);
        }
    }
    let Ok(program) = &r.programs[src] else {
        return;
    };
    let result = program.execute(&scope);
    let passed = match result {
        Ok(Cel::Bool(b)) => b,
        Ok(_) => {
            out.push(Cause::invalid(
                path,
                &sv_type,
                &format!("rule did not evaluate to a boolean evaluating rule: {rule_text}"),
            ));
            return;
        }
        Err(e) => {
            let detail = if matches!(e, ExecutionError::NoSuchOverload(_)) {
                format!(
                    "'{}': call arguments did not match a supported operator, function or macro signature for rule: {rule_text}",
                    eval_error(&e)
                )
            } else {
                format!("{} evaluating rule: {rule_text}", eval_error(&e))
            };
            out.push(Cause::invalid(path, &sv_type, &detail));
            return;
        }
    };
    if passed {
        return;
    }
    // Ratcheting: an unchanged value's failing non-transition rule is let through.
    if !uses_old && old == Some(v) {
        return;
    }
    let field = match rule.get("fieldPath").and_then(Value::as_str) {
        Some(fp) if !fp.is_empty() => join(path, &normalize_field_path(fp)),
        _ => path.to_string(),
    };
    let default_detail = match message {
        Some(m) => m.to_string(),
        None => format!("failed rule: {}", src.trim()),
    };
    let mut detail = default_detail;
    if let Some(me) = message_expr {
        let msg = match &r.programs[me] {
            Ok(p) => p.execute(&scope).ok(),
            Err(_) => None,
        };
        match msg {
            Some(Cel::String(m)) if !m.trim().is_empty() && !m.contains('\n') => {
                detail = m.to_string();
            }
            // empty or multi-line messages fall back to the rule's message
            Some(Cel::String(_)) => {}
            Some(_) => {
                out.push(Cause::invalid(
                    path,
                    &sv_type,
                    "messageExpression must evaluate to a string",
                ));
                return;
            }
            None => {}
        }
    }
    let cause = match rule.get("reason").and_then(Value::as_str) {
        Some("FieldValueForbidden") => Cause::forbidden(&field, &detail),
        Some("FieldValueRequired") => Cause::required(&field, &detail),
        Some("FieldValueDuplicate") => Cause::duplicate(&field, &sv_type),
        _ => Cause::invalid(&field, &sv_type, &detail),
    };
    out.push(cause);
}

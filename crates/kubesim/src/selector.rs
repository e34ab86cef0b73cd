//! Kubernetes label and field selectors, as accepted by the API server's
//! `labelSelector=` and `fieldSelector=` list/watch query parameters.
//!
//! The label selector grammar and its error messages follow
//! `k8s.io/apimachinery/pkg/labels` (v1.32 era wording); the field selector
//! follows `k8s.io/apimachinery/pkg/fields`.

use serde_json::{Map, Value};
use std::fmt;

/// An error from parsing a label or field selector. The message is the text
/// the real API server puts in its `400 BadRequest` Status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SelectorError {
    /// Human-readable message, worded like the Kubernetes API server's.
    pub message: String,
}

impl SelectorError {
    fn new(message: impl Into<String>) -> Self {
        SelectorError {
            message: message.into(),
        }
    }
}

/// Operator of one label selector requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelOperator {
    /// `key=value`
    Equals,
    /// `key==value`
    DoubleEquals,
    /// `key!=value` (also matches when the label is absent)
    NotEquals,
    /// `key in (a,b)`
    In,
    /// `key notin (a,b)` (also matches when the label is absent)
    NotIn,
    /// `key`
    Exists,
    /// `!key`
    DoesNotExist,
    /// `key>N` (integer comparison)
    GreaterThan,
    /// `key<N` (integer comparison)
    LessThan,
}

/// One requirement of a label selector, e.g. `tier in (web,api)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRequirement {
    /// The label key.
    pub key: String,
    /// The operator.
    pub operator: LabelOperator,
    /// The values, sorted and de-duplicated (empty for `Exists`/`DoesNotExist`).
    pub values: Vec<String>,
}

impl LabelRequirement {
    fn matches(&self, labels: &Map<String, Value>) -> bool {
        let value = labels.get(&self.key).map(label_value_text);
        let has = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            LabelOperator::Equals | LabelOperator::DoubleEquals | LabelOperator::In => {
                value.is_some_and(|v| has(&v))
            }
            LabelOperator::NotEquals | LabelOperator::NotIn => value.is_none_or(|v| !has(&v)),
            LabelOperator::Exists => value.is_some(),
            LabelOperator::DoesNotExist => value.is_none(),
            LabelOperator::GreaterThan | LabelOperator::LessThan => {
                let Some(actual) = value.and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let Some(wanted) = self.values.first().and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                if self.operator == LabelOperator::GreaterThan {
                    actual > wanted
                } else {
                    actual < wanted
                }
            }
        }
    }
}

impl fmt::Display for LabelRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let joined = self.values.join(",");
        match self.operator {
            LabelOperator::Exists => write!(f, "{}", self.key),
            LabelOperator::DoesNotExist => write!(f, "!{}", self.key),
            LabelOperator::Equals => write!(f, "{}={}", self.key, joined),
            LabelOperator::DoubleEquals => write!(f, "{}=={}", self.key, joined),
            LabelOperator::NotEquals => write!(f, "{}!={}", self.key, joined),
            LabelOperator::GreaterThan => write!(f, "{}>{}", self.key, joined),
            LabelOperator::LessThan => write!(f, "{}<{}", self.key, joined),
            LabelOperator::In => write!(f, "{} in ({})", self.key, joined),
            LabelOperator::NotIn => write!(f, "{} notin ({})", self.key, joined),
        }
    }
}

fn label_value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A parsed label selector: a conjunction of requirements. The empty
/// selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    /// Requirements, sorted by key like the Go implementation does.
    pub requirements: Vec<LabelRequirement>,
}

impl LabelSelector {
    /// Parses the Kubernetes label selector string syntax (`a=b`, `a==b`,
    /// `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`, `a>1`, `a<1`,
    /// comma-separated, whitespace tolerant), validating keys and values.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let tokens = lex(s);
        let mut p = Parser { tokens, pos: 0 };
        let mut requirements = p.parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
    }

    /// Converts a `metav1.LabelSelector` object (`matchLabels`, and `matchExpressions` with
    /// `In`, `NotIn`, `Exists` and `DoesNotExist`). `None` when it is malformed. As with
    /// `LabelSelectorAsSelector`, the empty selector `{}` matches everything.
    pub fn from_object(selector: &Value) -> Option<LabelSelector> {
        let mut requirements = Vec::new();
        if let Some(labels) = selector.get("matchLabels").filter(|m| !m.is_null()) {
            for (key, value) in labels.as_object()? {
                requirements.push(LabelRequirement {
                    key: key.clone(),
                    operator: LabelOperator::Equals,
                    values: vec![value.as_str()?.to_string()],
                });
            }
        }
        let expressions = selector.get("matchExpressions").and_then(Value::as_array);
        for e in expressions.into_iter().flatten() {
            let operator = match e["operator"].as_str()? {
                "In" => LabelOperator::In,
                "NotIn" => LabelOperator::NotIn,
                "Exists" => LabelOperator::Exists,
                "DoesNotExist" => LabelOperator::DoesNotExist,
                _ => return None,
            };
            let mut values = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| v.as_str().map(String::from))
                .collect::<Option<Vec<String>>>()?;
            values.sort();
            values.dedup();
            let needs_values = matches!(operator, LabelOperator::In | LabelOperator::NotIn);
            if needs_values == values.is_empty() {
                return None;
            }
            requirements.push(LabelRequirement {
                key: e["key"].as_str()?.to_string(),
                operator,
                values,
            });
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Some(LabelSelector { requirements })
    }

    /// Whether the selector has no requirements (and so matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether the given `metadata.labels` map satisfies every requirement.
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Convenience: matches against an object's `metadata.labels` (absent
    /// labels count as an empty map).
    pub fn matches_object(&self, obj: &Value) -> bool {
        static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
        let labels = obj
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .unwrap_or_else(|| EMPTY.get_or_init(Map::new));
        self.matches(labels)
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Error,
    End,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn keyword(s: &str) -> Option<Tok> {
    Some(match s {
        ")" => Tok::ClosedPar,
        "," => Tok::Comma,
        "!" => Tok::DoesNotExist,
        "==" => Tok::DoubleEquals,
        "=" => Tok::Equals,
        ">" => Tok::GreaterThan,
        "in" => Tok::In,
        "<" => Tok::LessThan,
        "!=" => Tok::NotEquals,
        "notin" => Tok::NotIn,
        "(" => Tok::OpenPar,
        _ => return None,
    })
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Tokenises the whole selector; the last token is always `End`.
fn lex(s: &str) -> Vec<(Tok, String)> {
    let bytes = s.as_bytes();
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        while pos < bytes.len() && is_ws(bytes[pos]) {
            pos += 1;
        }
        if pos >= bytes.len() {
            out.push((Tok::End, String::new()));
            return out;
        }
        if is_special(bytes[pos]) {
            let start = pos;
            let mut last: Option<(Tok, usize)> = None;
            while pos < bytes.len() && is_special(bytes[pos]) {
                pos += 1;
                if let Some(t) = keyword(&s[start..pos]) {
                    last = Some((t, pos));
                } else if last.is_some() {
                    pos -= 1;
                    break;
                }
            }
            match last {
                Some((t, end)) => {
                    pos = end;
                    out.push((t, s[start..end].to_string()));
                }
                None => out.push((
                    Tok::Error,
                    format!("error expected: keyword found '{}'", &s[start..pos]),
                )),
            }
        } else {
            let start = pos;
            while pos < bytes.len() && !is_special(bytes[pos]) && !is_ws(bytes[pos]) {
                pos += 1;
            }
            let lit = &s[start..pos];
            out.push((keyword(lit).unwrap_or(Tok::Identifier), lit.to_string()));
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    KeyAndOperator,
    Values,
}

struct Parser {
    tokens: Vec<(Tok, String)>,
    pos: usize,
}

impl Parser {
    fn adjust(tok: Tok, ctx: Ctx) -> Tok {
        if ctx == Ctx::Values && matches!(tok, Tok::In | Tok::NotIn) {
            Tok::Identifier
        } else {
            tok
        }
    }

    fn lookahead(&self, ctx: Ctx) -> (Tok, String) {
        let i = self.pos.min(self.tokens.len() - 1);
        let (t, l) = &self.tokens[i];
        (Self::adjust(*t, ctx), l.clone())
    }

    fn consume(&mut self, ctx: Ctx) -> (Tok, String) {
        let r = self.lookahead(ctx);
        self.pos += 1;
        r
    }

    fn parse(&mut self) -> Result<Vec<LabelRequirement>, SelectorError> {
        let mut reqs = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Ctx::Values);
            match tok {
                Tok::Identifier | Tok::DoesNotExist => {
                    let r = self.parse_requirement().map_err(|e| {
                        SelectorError::new(format!("unable to parse requirement: {e}"))
                    })?;
                    reqs.push(r);
                    let (t, l) = self.consume(Ctx::Values);
                    match t {
                        Tok::End => return Ok(reqs),
                        Tok::Comma => {
                            let (t2, l2) = self.lookahead(Ctx::Values);
                            if t2 != Tok::Identifier && t2 != Tok::DoesNotExist {
                                return Err(SelectorError::new(format!(
                                    "found '{l2}', expected: identifier after ','"
                                )));
                            }
                        }
                        _ => {
                            return Err(SelectorError::new(format!(
                                "found '{l}', expected: ',' or 'end of string'"
                            )));
                        }
                    }
                }
                Tok::End => return Ok(reqs),
                _ => {
                    return Err(SelectorError::new(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    )));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<LabelRequirement, String> {
        let (key, op) = self.parse_key_and_infer_operator()?;
        if let Some(op @ (LabelOperator::Exists | LabelOperator::DoesNotExist)) = op {
            return new_requirement(key, op, Vec::new());
        }
        let op = self.parse_operator()?;
        let values = match op {
            LabelOperator::In | LabelOperator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        new_requirement(key, op, values)
    }

    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<LabelOperator>), String> {
        let mut op = None;
        let (mut tok, mut lit) = self.consume(Ctx::Values);
        if tok == Tok::DoesNotExist {
            op = Some(LabelOperator::DoesNotExist);
            (tok, lit) = self.consume(Ctx::Values);
        }
        if tok != Tok::Identifier {
            return Err(format!("found '{lit}', expected: identifier"));
        }
        if let Some(msg) = validate_label_key(&lit) {
            return Err(invalid("<nil>", &lit, &msg));
        }
        let (t, _) = self.lookahead(Ctx::Values);
        if (t == Tok::End || t == Tok::Comma) && op.is_none() {
            op = Some(LabelOperator::Exists);
        }
        Ok((lit, op))
    }

    fn parse_operator(&mut self) -> Result<LabelOperator, String> {
        let (tok, lit) = self.consume(Ctx::KeyAndOperator);
        Ok(match tok {
            Tok::In => LabelOperator::In,
            Tok::Equals => LabelOperator::Equals,
            Tok::DoubleEquals => LabelOperator::DoubleEquals,
            Tok::GreaterThan => LabelOperator::GreaterThan,
            Tok::LessThan => LabelOperator::LessThan,
            Tok::NotIn => LabelOperator::NotIn,
            Tok::NotEquals => LabelOperator::NotEquals,
            _ => {
                return Err(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                ));
            }
        })
    }

    fn parse_values(&mut self) -> Result<Vec<String>, String> {
        let (tok, lit) = self.consume(Ctx::Values);
        if tok != Tok::OpenPar {
            return Err(format!("found '{lit}' expected: '('"));
        }
        let (tok, lit) = self.lookahead(Ctx::Values);
        match tok {
            Tok::Identifier | Tok::Comma => {
                let s = self.parse_identifiers_list()?;
                let (t, _) = self.consume(Ctx::Values);
                if t != Tok::ClosedPar {
                    return Err(format!("found '{lit}', expected: ')'"));
                }
                Ok(s)
            }
            Tok::ClosedPar => {
                self.consume(Ctx::Values);
                Ok(vec![String::new()])
            }
            _ => Err(format!("found '{lit}', expected: ',', ')' or identifier")),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, String> {
        let mut set: Vec<String> = Vec::new();
        let insert = |set: &mut Vec<String>, v: String| {
            if !set.contains(&v) {
                set.push(v);
            }
        };
        loop {
            let (tok, lit) = self.consume(Ctx::Values);
            match tok {
                Tok::Identifier => {
                    insert(&mut set, lit);
                    let (t2, l2) = self.lookahead(Ctx::Values);
                    match t2 {
                        Tok::Comma => continue,
                        Tok::ClosedPar => return Ok(set),
                        _ => return Err(format!("found '{l2}', expected: ',' or ')'")),
                    }
                }
                Tok::Comma => {
                    if set.is_empty() {
                        insert(&mut set, String::new());
                    }
                    let (t2, _) = self.lookahead(Ctx::Values);
                    if t2 == Tok::ClosedPar {
                        insert(&mut set, String::new());
                        return Ok(set);
                    }
                    if t2 == Tok::Comma {
                        self.consume(Ctx::Values);
                        insert(&mut set, String::new());
                    }
                }
                _ => return Err(format!("found '{lit}', expected: ',', or identifier")),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<Vec<String>, String> {
        let (tok, _) = self.lookahead(Ctx::Values);
        if tok == Tok::End || tok == Tok::Comma {
            return Ok(vec![String::new()]);
        }
        let (tok, lit) = self.consume(Ctx::Values);
        if tok == Tok::Identifier {
            Ok(vec![lit])
        } else {
            Err(format!("found '{lit}', expected: identifier"))
        }
    }
}

/// Formats a `field.Invalid` error the way apimachinery does.
fn invalid(path: &str, value: &str, detail: &str) -> String {
    format!("{path}: Invalid value: {value:?}: {detail}")
}

fn new_requirement(
    key: String,
    op: LabelOperator,
    mut values: Vec<String>,
) -> Result<LabelRequirement, String> {
    values.sort();
    values.dedup();
    let mut errs: Vec<String> = Vec::new();
    if let Some(msg) = validate_label_key(&key) {
        errs.push(invalid("key", &key, &msg));
    }
    if matches!(op, LabelOperator::GreaterThan | LabelOperator::LessThan) {
        for (i, v) in values.iter().enumerate() {
            if v.parse::<i64>().is_err() {
                errs.push(invalid(
                    &format!("values[{i}]"),
                    v,
                    "for 'Gt', 'Lt' operators, the value must be an integer",
                ));
            }
        }
    }
    for (i, v) in values.iter().enumerate() {
        if let Some(msg) = validate_label_value(v) {
            errs.push(invalid(&format!("values[{i}][{key}]"), v, &msg));
        }
    }
    match errs.len() {
        0 => Ok(LabelRequirement {
            key,
            operator: op,
            values,
        }),
        1 => Err(errs.remove(0)),
        _ => {
            errs.dedup();
            Err(format!("[{}]", errs.join(", ")))
        }
    }
}

fn regex_error(msg: &str, re: &str, examples: &[&str]) -> String {
    let mut out = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&format!("'{e}', "));
    }
    out.push_str(&format!("regex used for validation is '{re}')"));
    out
}

const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*`
fn is_dns1123_subdomain_shape(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && is_lower_alnum(b[0])
                && is_lower_alnum(b[b.len() - 1])
                && b.iter().all(|c| is_lower_alnum(*c) || *c == b'-')
        })
}

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Validates a label key (`IsQualifiedName`); returns the joined messages.
fn validate_label_key(key: &str) -> Option<String> {
    let mut errs: Vec<String> = Vec::new();
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                if prefix.len() > 253 {
                    errs.push("prefix part must be no more than 253 characters".to_string());
                }
                if !is_dns1123_subdomain_shape(prefix) {
                    errs.push(format!(
                        "prefix part {}",
                        regex_error(
                            DNS1123_SUBDOMAIN_MSG,
                            DNS1123_SUBDOMAIN_FMT,
                            &["example.com"]
                        )
                    ));
                }
            }
            *name
        }
        _ => {
            return Some(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_MSG,
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            ));
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push("name part must be no more than 63 characters".to_string());
    }
    if !is_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_MSG,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    (!errs.is_empty()).then(|| errs.join("; "))
}

/// Validates a label value (`IsValidLabelValue`); returns the joined messages.
fn validate_label_value(value: &str) -> Option<String> {
    let mut errs: Vec<String> = Vec::new();
    if value.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        errs.push(regex_error(
            LABEL_VALUE_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    (!errs.is_empty()).then(|| errs.join("; "))
}

/// One term of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// Dotted field path, e.g. `metadata.name`.
    pub field: String,
    /// `true` for `!=`, `false` for `=`/`==`.
    pub negated: bool,
    /// The unescaped value to compare with.
    pub value: String,
}

/// A parsed field selector (`a=b`, `a==b`, `a!=b`, comma-separated; values
/// may contain the escapes `\,` `\=` `\\`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    /// Terms, sorted by their source text like the Go implementation.
    pub requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses a field selector string. Empty terms are ignored.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut parts = split_terms(s);
        parts.sort();
        let mut requirements = Vec::new();
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let Some((lhs, op, rhs)) = split_term(part) else {
                return Err(SelectorError::new(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            let value = unescape_field_value(rhs)?;
            requirements.push(FieldRequirement {
                field: lhs.to_string(),
                negated: op == "!=",
                value,
            });
        }
        Ok(FieldSelector { requirements })
    }

    /// The field paths this selector refers to, in term order (a caller may
    /// check them against the fields a resource supports).
    pub fn fields(&self) -> Vec<&str> {
        self.requirements.iter().map(|r| r.field.as_str()).collect()
    }

    /// Whether the selector has no terms.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The value an `=`/`==` term requires for `field`, if any.
    pub fn exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && !r.negated)
            .map(|r| r.value.as_str())
    }

    /// Whether `obj` satisfies every term. Fields are resolved as dotted
    /// paths into the object; a missing field (or a non-scalar one) compares
    /// as the empty string; numbers and booleans compare as their JSON text.
    pub fn matches(&self, obj: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let actual = resolve_field(obj, &r.field);
            (actual == r.value) != r.negated
        })
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = if r.negated { "!=" } else { "=" };
            write!(f, "{}{}{}", r.field, op, escape_field_value(&r.value))?;
        }
        Ok(())
    }
}

/// Escapes `\`, `,` and `=` in a field selector value.
pub fn escape_field_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn resolve_field(obj: &Value, path: &str) -> String {
    let mut cur = obj;
    for seg in path.split('.') {
        match cur.get(seg) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// Splits on commas that are not escaped by a backslash.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            out.push(&s[start..i]);
            start = i + 1;
        }
    }
    out.push(&s[start..]);
    out
}

fn split_term(term: &str) -> Option<(&str, &'static str, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for op in ["!=", "==", "="] {
            if rest.starts_with(op) {
                return Some((&term[..i], op, &term[i + op.len()..]));
            }
        }
    }
    None
}

fn unescape_field_value(s: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            if matches!(c, '\\' | ',' | '=') {
                out.push(c);
            } else {
                return Err(SelectorError::new(format!(
                    "invalid field selector: invalid escape sequence: \\{c}"
                )));
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => {
                return Err(SelectorError::new(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                )));
            }
            _ => out.push(c),
        }
    }
    if in_slash {
        return Err(SelectorError::new(
            "invalid field selector: invalid escape sequence: \\",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn m(sel: &str, l: Value) -> bool {
        LabelSelector::parse(sel).unwrap().matches(&labels(l))
    }

    #[test]
    fn label_selector_objects() {
        let sel = |v: Value| LabelSelector::from_object(&v);
        let s = sel(json!({"matchLabels": {"a": "b"},
                           "matchExpressions": [{"key": "t", "operator": "In", "values": ["y", "x"]},
                                                {"key": "gone", "operator": "DoesNotExist"}]}))
        .unwrap();
        assert_eq!(s.to_string(), "a=b,!gone,t in (x,y)");
        assert!(s.matches(&labels(json!({"a": "b", "t": "x"}))));
        assert!(!s.matches(&labels(json!({"a": "b", "t": "x", "gone": ""}))));
        assert!(!s.matches(&labels(json!({"a": "b"}))));
        assert!(
            sel(json!({}))
                .unwrap()
                .matches(&labels(json!({"any": "thing"})))
        );
        assert!(sel(json!({"matchExpressions": [{"key": "t", "operator": "In"}]})).is_none());
        assert!(
            sel(json!({"matchExpressions": [{"key": "t", "operator": "Exists", "values": ["v"]}]}))
                .is_none()
        );
        assert!(
            sel(json!({"matchExpressions": [{"key": "t", "operator": "Gt", "values": ["1"]}]}))
                .is_none()
        );
    }

    #[test]
    fn equality_forms() {
        assert!(m("a=b", json!({"a":"b"})));
        assert!(m("a==b", json!({"a":"b"})));
        assert!(!m("a=b", json!({"a":"c"})));
        assert!(!m("a=b", json!({})));
        assert!(m("a!=b", json!({"a":"c"})));
        assert!(m("a!=b", json!({})), "!= matches when absent");
        assert!(!m("a!=b", json!({"a":"b"})));
    }

    #[test]
    fn set_forms() {
        assert!(m("env in (prod, dev)", json!({"env":"dev"})));
        assert!(!m("env in (prod,dev)", json!({"env":"qa"})));
        assert!(!m("env in (prod,dev)", json!({})));
        assert!(m("env notin (prod,dev)", json!({"env":"qa"})));
        assert!(m("env notin (prod,dev)", json!({})), "notin matches absent");
        assert!(!m("env notin (prod, dev)", json!({"env":"prod"})));
    }

    #[test]
    fn existence_and_combination() {
        assert!(m("a", json!({"a":""})));
        assert!(!m("a", json!({"b":"x"})));
        assert!(m("!a", json!({"b":"x"})));
        assert!(!m("!a", json!({"a":"x"})));
        let sel = "  app = web ,tier in (fe,be),  !legacy, x.io/owner  ";
        assert!(m(sel, json!({"app":"web","tier":"be","x.io/owner":"me"})));
        assert!(!m(
            sel,
            json!({"app":"web","tier":"be","x.io/owner":"me","legacy":"1"})
        ));
        assert!(!m(sel, json!({"app":"web","tier":"be"})));
    }

    #[test]
    fn empty_selector_matches_everything() {
        let s = LabelSelector::parse("").unwrap();
        assert!(s.is_empty());
        assert!(s.matches(&labels(json!({"x":"y"}))));
        assert!(LabelSelector::parse("   ").unwrap().is_empty());
    }

    #[test]
    fn keywords_as_values_and_empty_values() {
        assert!(m("x in (in,notin)", json!({"x":"notin"})));
        assert!(m("x=", json!({"x":""})));
        assert!(m("x in (,a)", json!({"x":""})));
        assert!(m("x notin ()", json!({"x":"a"})));
        let s = LabelSelector::parse("x in (b,a,b)").unwrap();
        assert_eq!(s.requirements[0].values, vec!["a", "b"]);
    }

    #[test]
    fn gt_lt() {
        assert!(m("n>3", json!({"n":"4"})));
        assert!(!m("n>3", json!({"n":"3"})));
        assert!(m("n<3", json!({"n":"-1"})));
        assert!(!m("n<3", json!({"n":"x"})));
        assert!(!m("n<3", json!({})));
        let e = LabelSelector::parse("n>x").unwrap_err();
        assert_eq!(
            e.message,
            "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer"
        );
    }

    #[test]
    fn display_round_trip_sorted() {
        let s = LabelSelector::parse("b in (y,x),a!=1,!c,d").unwrap();
        assert_eq!(s.to_string(), "a!=1,b in (x,y),!c,d");
        assert_eq!(LabelSelector::parse(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn syntax_errors_match_server_wording() {
        let err = |s: &str| LabelSelector::parse(s).unwrap_err().message;
        assert_eq!(
            err("a b"),
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"
        );
        assert_eq!(err("a=b,"), "found '', expected: identifier after ','");
        assert_eq!(
            err(",a"),
            "found ',', expected: !, identifier, or 'end of string'"
        );
        assert_eq!(
            err("a in b"),
            "unable to parse requirement: found 'b' expected: '('"
        );
        assert_eq!(
            err("a in (b"),
            "unable to parse requirement: found '', expected: ',' or ')'"
        );
        assert_eq!(err("a=b c"), "found 'c', expected: ',' or 'end of string'");
        assert_eq!(err("!a=b"), "found '=', expected: ',' or 'end of string'");
        assert_eq!(
            err("a=(b)"),
            "unable to parse requirement: found '(', expected: identifier"
        );
    }

    #[test]
    fn key_and_value_validation() {
        let e = LabelSelector::parse("-a=b").unwrap_err().message;
        assert_eq!(
            e,
            "unable to parse requirement: <nil>: Invalid value: \"-a\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        );
        let e = LabelSelector::parse("Bad_Prefix/a").unwrap_err().message;
        assert!(
            e.contains("prefix part a lowercase RFC 1123 subdomain"),
            "{e}"
        );
        let e = LabelSelector::parse("a/b/c").unwrap_err().message;
        assert!(e.contains("a qualified name must consist"), "{e}");
        let e = LabelSelector::parse("app=-x").unwrap_err().message;
        assert!(
            e.starts_with("unable to parse requirement: values[0][app]: Invalid value: \"-x\": a valid label must be an empty string"),
            "{e}"
        );
        let long = "v".repeat(64);
        let e = LabelSelector::parse(&format!("a={long}"))
            .unwrap_err()
            .message;
        assert!(e.contains("must be no more than 63 characters"), "{e}");
        let e = LabelSelector::parse(&format!("{long}=a"))
            .unwrap_err()
            .message;
        assert!(
            e.contains("name part must be no more than 63 characters"),
            "{e}"
        );
        assert!(LabelSelector::parse("example.com/My_name.1=Val-2").is_ok());
    }

    #[test]
    fn matches_object_uses_metadata_labels() {
        let s = LabelSelector::parse("a=b").unwrap();
        assert!(s.matches_object(&json!({"metadata":{"labels":{"a":"b"}}})));
        assert!(!s.matches_object(&json!({"metadata":{}})));
        assert!(
            LabelSelector::parse("!a")
                .unwrap()
                .matches_object(&json!({}))
        );
    }

    #[test]
    fn field_selector_basic() {
        let ev = json!({
            "metadata": {"name": "e1", "namespace": "t1"},
            "involvedObject": {"kind": "Pipeline", "name": "p1", "uid": "u-1"},
            "count": 3, "status": {"ready": true}
        });
        let s = FieldSelector::parse(
            "involvedObject.name=p1,involvedObject.namespace=,involvedObject.kind==Pipeline,involvedObject.uid=u-1",
        )
        .unwrap();
        assert!(
            s.matches(&ev),
            "missing involvedObject.namespace compares as empty"
        );
        assert_eq!(
            s.fields(),
            vec![
                "involvedObject.kind",
                "involvedObject.name",
                "involvedObject.namespace",
                "involvedObject.uid"
            ]
        );
        assert!(
            !FieldSelector::parse("metadata.name=e2")
                .unwrap()
                .matches(&ev)
        );
        assert!(
            FieldSelector::parse("metadata.name!=e2")
                .unwrap()
                .matches(&ev)
        );
        assert!(
            !FieldSelector::parse("metadata.namespace!=t1")
                .unwrap()
                .matches(&ev)
        );
        assert!(FieldSelector::parse("count=3").unwrap().matches(&ev));
        assert!(
            FieldSelector::parse("status.ready=true")
                .unwrap()
                .matches(&ev)
        );
        assert!(FieldSelector::parse("spec.nodeName=").unwrap().matches(&ev));
        assert!(FieldSelector::parse("").unwrap().matches(&ev));
        assert_eq!(
            FieldSelector::parse("metadata.name=e1")
                .unwrap()
                .exact_match("metadata.name"),
            Some("e1")
        );
    }

    #[test]
    fn field_selector_escapes() {
        let s = FieldSelector::parse(r"metadata.name=a\,b\=c\\d,x=y").unwrap();
        assert_eq!(s.requirements.len(), 2);
        assert_eq!(s.requirements[0].value, r"a,b=c\d");
        assert!(s.matches(&json!({"metadata":{"name":"a,b=c\\d"}, "x":"y"})));
        assert_eq!(s.to_string(), r"metadata.name=a\,b\=c\\d,x=y");
    }

    #[test]
    fn field_selector_errors() {
        let e = FieldSelector::parse("metadata.name").unwrap_err().message;
        assert_eq!(
            e,
            "invalid selector: 'metadata.name'; can't understand 'metadata.name'"
        );
        let e = FieldSelector::parse(r"a=b\x").unwrap_err().message;
        assert_eq!(e, "invalid field selector: invalid escape sequence: \\x");
        let e = FieldSelector::parse("a=b=c").unwrap_err().message;
        assert_eq!(
            e,
            "invalid field selector: unescaped character in value: 61"
        );
        let e = FieldSelector::parse("a=b\\").unwrap_err().message;
        assert_eq!(e, "invalid field selector: invalid escape sequence: \\");
    }
}

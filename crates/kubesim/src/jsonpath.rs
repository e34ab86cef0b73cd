//! The subset of kubectl/client-go JSONPath used by CRD
//! `additionalPrinterColumns[].jsonPath` (and handy for other server-side
//! lookups).
//!
//! Supported: `.a.b`, `$.a`, `{.a}` (one enclosing brace pair), escaped dots
//! in names (`.labels.app\.kubernetes\.io/name`), `['key.with.dots']` /
//! `["k"]`, `[0]`, `[-1]`, `[1:3]`, `[*]`, `.*`, `..name` (recursive
//! descent), and filters `[?(@.type=="Ready")]`, `[?(@.x!='y')]`,
//! `[?(@.n>3)]` (`==` `!=` `<` `>` `<=` `>=`) and `[?(@.x)]` (exists).
//!
//! Semantics follow client-go's JSONPath with `AllowMissingKeys(true)`, as
//! the API server's CRD table convertor uses it: a missing key yields no
//! match rather than an error; indexing or filtering something that is not an
//! array is an error; a filter skips items whose operand is missing.

use serde_json::Value;
use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Field(String),
    Wildcard,
    Recursive,
    Index(i64),
    Slice(Option<i64>, Option<i64>, Option<i64>),
    Filter(Box<Filter>),
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Path(Vec<Seg>),
    Literal(Value),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
struct Filter {
    left: Operand,
    cmp: Option<(CmpOp, Operand)>,
}

/// Evaluates `path` against `obj`, returning every matched value in order.
/// No match is `Ok(vec![])`; a syntax error or a type error (indexing a
/// non-array, comparing incompatible types) is `Err`.
pub fn eval(path: &str, obj: &Value) -> Result<Vec<Value>, String> {
    let segs = parse(path)?;
    let found = eval_segs(&segs, vec![obj])?;
    Ok(found.into_iter().cloned().collect())
}

/// Checks a CRD `additionalPrinterColumns[].jsonPath` the way the API server
/// does: non-empty, starts with `.`, and parses.
pub fn validate(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("must not be empty".to_string());
    }
    if !path.starts_with('.') {
        return Err("must be a simple json path starting with .".to_string());
    }
    parse(path)
        .map(|_| ())
        .map_err(|e| format!("unrecognized column definition {path:?}: {e}"))
}

fn parse(path: &str) -> Result<Vec<Seg>, String> {
    let trimmed = path.trim();
    let inner = match trimmed.strip_prefix('{') {
        Some(rest) => rest
            .strip_suffix('}')
            .ok_or_else(|| format!("unclosed action in {path:?}"))?,
        None => trimmed,
    };
    let chars: Vec<char> = inner.chars().collect();
    let mut p = PathParser { s: &chars, pos: 0 };
    if p.peek() == Some('$') {
        p.pos += 1;
    }
    let segs = p.segments()?;
    if p.pos < chars.len() {
        return Err(format!(
            "unexpected {:?} at position {} in {path:?}",
            chars[p.pos], p.pos
        ));
    }
    Ok(segs)
}

struct PathParser<'a> {
    s: &'a [char],
    pos: usize,
}

impl PathParser<'_> {
    fn peek(&self) -> Option<char> {
        self.s.get(self.pos).copied()
    }

    fn peek_at(&self, off: usize) -> Option<char> {
        self.s.get(self.pos + off).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    /// Parses `.x`, `[..]` segments until something else comes.
    fn segments(&mut self) -> Result<Vec<Seg>, String> {
        let mut segs = Vec::new();
        loop {
            match self.peek() {
                Some('.') => {
                    self.pos += 1;
                    if self.peek() == Some('.') {
                        self.pos += 1;
                        segs.push(Seg::Recursive);
                    }
                    match self.peek() {
                        Some('*') => {
                            self.pos += 1;
                            segs.push(Seg::Wildcard);
                        }
                        Some('[') => {}
                        Some(c) if is_name_char(c) || c == '\\' => {
                            segs.push(Seg::Field(self.name()))
                        }
                        // A lone trailing "." (or "." before an operator) is the current value.
                        _ => {}
                    }
                }
                Some('[') => {
                    self.pos += 1;
                    segs.push(self.bracket()?);
                }
                _ => return Ok(segs),
            }
        }
    }

    fn name(&mut self) -> String {
        let mut out = String::new();
        while let Some(c) = self.peek() {
            if let ('\\', Some(n)) = (c, self.peek_at(1)) {
                out.push(n);
                self.pos += 2;
                continue;
            }
            if !is_name_char(c) {
                break;
            }
            out.push(c);
            self.pos += 1;
        }
        out
    }

    fn bracket(&mut self) -> Result<Seg, String> {
        self.skip_ws();
        match self.peek() {
            Some('?') => {
                self.pos += 1;
                self.skip_ws();
                if self.peek() != Some('(') {
                    return Err("filter must be written as [?(...)]".to_string());
                }
                self.pos += 1;
                let f = self.filter()?;
                self.skip_ws();
                if self.peek() != Some(')') {
                    return Err("unclosed filter: expected ')'".to_string());
                }
                self.pos += 1;
                self.close_bracket()?;
                Ok(Seg::Filter(Box::new(f)))
            }
            Some(q @ ('\'' | '"')) => {
                self.pos += 1;
                let key = self.quoted(q)?;
                self.close_bracket()?;
                Ok(Seg::Field(key))
            }
            Some('*') => {
                self.pos += 1;
                self.close_bracket()?;
                Ok(Seg::Slice(None, None, None))
            }
            _ => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c != ']') {
                    self.pos += 1;
                }
                let text: String = self.s[start..self.pos].iter().collect();
                self.close_bracket()?;
                parse_index(text.trim())
            }
        }
    }

    fn close_bracket(&mut self) -> Result<(), String> {
        self.skip_ws();
        if self.peek() == Some(']') {
            self.pos += 1;
            Ok(())
        } else {
            Err("unterminated array: expected ']'".to_string())
        }
    }

    fn quoted(&mut self, q: char) -> Result<String, String> {
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err("unterminated quoted string".to_string()),
                Some('\\') => {
                    let n = self
                        .peek_at(1)
                        .ok_or_else(|| "unterminated quoted string".to_string())?;
                    out.push(match n {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    });
                    self.pos += 2;
                }
                Some(c) if c == q => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn filter(&mut self) -> Result<Filter, String> {
        self.skip_ws();
        let left = self.operand()?;
        self.skip_ws();
        let op = match (self.peek(), self.peek_at(1)) {
            (Some('='), Some('=')) => Some((CmpOp::Eq, 2)),
            (Some('!'), Some('=')) => Some((CmpOp::Ne, 2)),
            (Some('<'), Some('=')) => Some((CmpOp::Le, 2)),
            (Some('>'), Some('=')) => Some((CmpOp::Ge, 2)),
            (Some('<'), _) => Some((CmpOp::Lt, 1)),
            (Some('>'), _) => Some((CmpOp::Gt, 1)),
            (Some(')'), _) => None,
            (Some(c), _) => return Err(format!("unrecognized filter operator at {c:?}")),
            (None, _) => return Err("unclosed filter".to_string()),
        };
        let cmp = match op {
            None => None,
            Some((op, len)) => {
                self.pos += len;
                self.skip_ws();
                Some((op, self.operand()?))
            }
        };
        Ok(Filter { left, cmp })
    }

    fn operand(&mut self) -> Result<Operand, String> {
        match self.peek() {
            Some('@') => {
                self.pos += 1;
                Ok(Operand::Path(self.segments()?))
            }
            Some(q @ ('\'' | '"')) => {
                self.pos += 1;
                Ok(Operand::Literal(Value::String(self.quoted(q)?)))
            }
            Some(_) => {
                let start = self.pos;
                while self
                    .peek()
                    .is_some_and(|c| !c.is_whitespace() && !"=!<>)".contains(c))
                {
                    self.pos += 1;
                }
                let text: String = self.s[start..self.pos].iter().collect();
                literal(&text)
            }
            None => Err("missing filter operand".to_string()),
        }
    }
}

fn is_name_char(c: char) -> bool {
    !c.is_whitespace() && !".[](){}=!<>,'\"@$\\".contains(c)
}

fn literal(text: &str) -> Result<Operand, String> {
    let v = match text {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        "null" => Value::Null,
        _ => {
            if let Ok(i) = text.parse::<i64>() {
                Value::from(i)
            } else if let Ok(f) = text.parse::<f64>() {
                Value::from(f)
            } else {
                return Err(format!("unrecognized filter operand {text:?}"));
            }
        }
    };
    Ok(Operand::Literal(v))
}

fn parse_index(text: &str) -> Result<Seg, String> {
    let num = |s: &str| -> Result<Option<i64>, String> {
        let s = s.trim();
        if s.is_empty() {
            Ok(None)
        } else {
            s.parse::<i64>()
                .map(Some)
                .map_err(|_| format!("invalid array index {s:?}"))
        }
    };
    if text.contains(':') {
        let parts: Vec<&str> = text.split(':').collect();
        if parts.len() > 3 {
            return Err(format!("invalid array slice {text:?}"));
        }
        let step = match parts.get(2) {
            Some(s) => num(s)?,
            None => None,
        };
        if step == Some(0) {
            return Err("slice step cannot be 0".to_string());
        }
        return Ok(Seg::Slice(num(parts[0])?, num(parts[1])?, step));
    }
    match num(text)? {
        Some(i) => Ok(Seg::Index(i)),
        None => Err("empty array index".to_string()),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn eval_segs<'a>(segs: &[Seg], mut cur: Vec<&'a Value>) -> Result<Vec<&'a Value>, String> {
    for seg in segs {
        let mut next = Vec::new();
        match seg {
            Seg::Field(name) => {
                for v in &cur {
                    if let Some(x) = v.as_object().and_then(|m| m.get(name)) {
                        next.push(x);
                    }
                }
            }
            Seg::Wildcard => {
                for v in &cur {
                    match v {
                        Value::Object(m) => next.extend(m.values()),
                        Value::Array(a) => next.extend(a.iter()),
                        _ => {}
                    }
                }
            }
            Seg::Recursive => {
                for v in &cur {
                    collect_descendants(v, &mut next);
                }
            }
            Seg::Index(i) => {
                for v in &cur {
                    let arr = as_array(v)?;
                    let Some(arr) = arr else { continue };
                    let len = arr.len() as i64;
                    let idx = if *i < 0 { i + len } else { *i };
                    if (0..len).contains(&idx) {
                        next.push(&arr[idx as usize]);
                    }
                }
            }
            Seg::Slice(start, end, step) => {
                for v in &cur {
                    let Some(arr) = as_array(v)? else { continue };
                    slice(arr, *start, *end, *step, &mut next);
                }
            }
            Seg::Filter(f) => {
                for v in &cur {
                    let Some(arr) = (match v {
                        Value::Null => None,
                        Value::Array(a) => Some(a),
                        other => {
                            return Err(format!(
                                "{} is not array or slice and cannot be filtered",
                                type_name(other)
                            ));
                        }
                    }) else {
                        continue;
                    };
                    for item in arr {
                        if filter_passes(f, item)? {
                            next.push(item);
                        }
                    }
                }
            }
        }
        cur = next;
    }
    Ok(cur)
}

fn as_array(v: &Value) -> Result<Option<&Vec<Value>>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Array(a) => Ok(Some(a)),
        other => Err(format!("{} is not array or slice", type_name(other))),
    }
}

fn slice<'a>(
    arr: &'a [Value],
    start: Option<i64>,
    end: Option<i64>,
    step: Option<i64>,
    out: &mut Vec<&'a Value>,
) {
    let len = arr.len() as i64;
    let norm = |i: i64| if i < 0 { (i + len).max(0) } else { i.min(len) };
    let step = step.unwrap_or(1);
    if step > 0 {
        let (s, e) = (norm(start.unwrap_or(0)), norm(end.unwrap_or(len)));
        let mut i = s;
        while i < e {
            out.push(&arr[i as usize]);
            i += step;
        }
    } else {
        let s = start.map(norm).unwrap_or(len).min(len - 1);
        let e = end.map(norm).unwrap_or(-1);
        let mut i = s;
        while i > e && i >= 0 {
            out.push(&arr[i as usize]);
            i += step;
        }
    }
}

fn collect_descendants<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(v);
    match v {
        Value::Object(m) => m.values().for_each(|x| collect_descendants(x, out)),
        Value::Array(a) => a.iter().for_each(|x| collect_descendants(x, out)),
        _ => {}
    }
}

fn operand_values<'a>(op: &'a Operand, item: &'a Value) -> Result<Vec<&'a Value>, String> {
    match op {
        Operand::Path(segs) => eval_segs(segs, vec![item]),
        Operand::Literal(v) => Ok(vec![v]),
    }
}

fn single(vals: Vec<&Value>) -> Result<Option<&Value>, String> {
    match vals.len() {
        0 => Ok(None),
        1 => Ok(Some(vals[0])),
        _ => Err("can only compare one element at a time".to_string()),
    }
}

fn filter_passes(f: &Filter, item: &Value) -> Result<bool, String> {
    let lefts = operand_values(&f.left, item)?;
    let Some((op, right)) = &f.cmp else {
        return Ok(!lefts.is_empty());
    };
    let Some(l) = single(lefts)? else {
        return Ok(false);
    };
    let Some(r) = single(operand_values(right, item)?)? else {
        return Ok(false);
    };
    compare(l, *op, r)
}

fn compare(l: &Value, op: CmpOp, r: &Value) -> Result<bool, String> {
    let ord: Option<Ordering> = match (l, r) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (
                a.as_f64().unwrap_or(f64::NAN),
                b.as_f64().unwrap_or(f64::NAN),
            );
            a.partial_cmp(&b)
        }
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => {
            if matches!(op, CmpOp::Eq | CmpOp::Ne) {
                Some(a.cmp(b))
            } else {
                return Err("invalid type for comparison".to_string());
            }
        }
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => return Err("incompatible types for comparison".to_string()),
    };
    let Some(ord) = ord else {
        return Ok(matches!(op, CmpOp::Ne));
    };
    Ok(match op {
        CmpOp::Eq => ord == Ordering::Equal,
        CmpOp::Ne => ord != Ordering::Equal,
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::Le => ord != Ordering::Greater,
        CmpOp::Ge => ord != Ordering::Less,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj() -> Value {
        json!({
            "metadata": {
                "name": "p1",
                "labels": {"app.kubernetes.io/name": "sluice", "tier": "web"},
                "annotations": {"a.b/c": "dotted"}
            },
            "spec": {"replicas": 3, "paused": false, "ratio": 0.5,
                     "containers": [{"name": "a", "image": "img:a"}, {"name": "b", "image": "img:b"}]},
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "Ok"},
                    {"type": "Synced", "status": "False"},
                    {"type": "Other", "status": "Unknown", "n": 5}
                ],
                "empty": null
            }
        })
    }

    fn ev(p: &str) -> Vec<Value> {
        eval(p, &obj()).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    #[test]
    fn dotted_fields() {
        assert_eq!(ev(".metadata.name"), vec![json!("p1")]);
        assert_eq!(ev("$.spec.replicas"), vec![json!(3)]);
        assert_eq!(ev("{.spec.paused}"), vec![json!(false)]);
        assert_eq!(ev(".metadata.missing"), Vec::<Value>::new());
        assert_eq!(ev(".metadata.name.deeper"), Vec::<Value>::new());
        assert_eq!(ev(".status.empty"), vec![Value::Null]);
        assert_eq!(ev(".status.empty.x"), Vec::<Value>::new());
        assert_eq!(ev(".").len(), 1);
        assert_eq!(ev(".")[0], obj());
    }

    #[test]
    fn indexes_and_wildcards() {
        assert_eq!(ev(".spec.containers[0].name"), vec![json!("a")]);
        assert_eq!(ev(".spec.containers[-1].image"), vec![json!("img:b")]);
        assert_eq!(ev(".spec.containers[5].name"), Vec::<Value>::new());
        assert_eq!(ev(".spec.containers[*].name"), vec![json!("a"), json!("b")]);
        assert_eq!(
            ev(".status.conditions[0:2].type"),
            vec![json!("Ready"), json!("Synced")]
        );
        assert_eq!(
            ev(".status.conditions[1:].type"),
            vec![json!("Synced"), json!("Other")]
        );
        assert_eq!(ev(".metadata.labels.*").len(), 2);
        assert_eq!(ev("..image"), vec![json!("img:a"), json!("img:b")]);
    }

    #[test]
    fn quoted_and_escaped_keys() {
        assert_eq!(
            ev(".metadata.labels['app.kubernetes.io/name']"),
            vec![json!("sluice")]
        );
        assert_eq!(
            ev(".metadata.annotations[\"a.b/c\"]"),
            vec![json!("dotted")]
        );
        assert_eq!(
            ev(r".metadata.labels.app\.kubernetes\.io/name"),
            vec![json!("sluice")]
        );
        let o = json!({"a.b": {"c": 1}});
        assert_eq!(eval(r".a\.b.c", &o).unwrap(), vec![json!(1)]);
        assert_eq!(eval(r".\a\.b", &o).unwrap(), vec![json!({"c": 1})]);
    }

    #[test]
    fn filters() {
        assert_eq!(
            ev(r#".status.conditions[?(@.type=="Ready")].status"#),
            vec![json!("True")]
        );
        assert_eq!(
            ev(r#".status.conditions[?(@.type!="Ready")].type"#),
            vec![json!("Synced"), json!("Other")]
        );
        assert_eq!(
            ev(".status.conditions[?(@.type == 'Synced')].status"),
            vec![json!("False")]
        );
        assert_eq!(
            ev(".status.conditions[?(@.reason)].type"),
            vec![json!("Ready")]
        );
        assert_eq!(
            ev(".status.conditions[?(@.n>4)].type"),
            vec![json!("Other")]
        );
        assert_eq!(
            ev(".status.conditions[?(@.n<=4)].type"),
            Vec::<Value>::new()
        );
        // Missing operand: item skipped even for !=.
        assert_eq!(
            ev(".status.conditions[?(@.reason!='x')].type"),
            vec![json!("Ready")]
        );
        assert_eq!(ev(r#".missing[?(@.type=="Ready")]"#), Vec::<Value>::new());
    }

    #[test]
    fn type_errors() {
        assert!(
            eval(".metadata[0]", &obj())
                .unwrap_err()
                .contains("not array")
        );
        assert!(
            eval(".metadata[?(@.x=='y')]", &obj())
                .unwrap_err()
                .contains("cannot be filtered")
        );
        assert!(
            eval(".status.conditions[?(@.type==3)]", &obj())
                .unwrap_err()
                .contains("incompatible")
        );
    }

    #[test]
    fn syntax_errors() {
        for bad in [
            ".a[",
            ".a[x]",
            ".a[?(@.b=='c']",
            ".a['b]",
            "{.a",
            ".a[?(@.b ~ 1)]",
            ".a b",
        ] {
            assert!(eval(bad, &obj()).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn validate_like_crd_validation() {
        assert_eq!(validate(""), Err("must not be empty".to_string()));
        assert_eq!(
            validate("spec.replicas"),
            Err("must be a simple json path starting with .".to_string())
        );
        assert!(validate(".spec.replicas").is_ok());
        assert!(validate(r#".status.conditions[?(@.type=="Ready")].status"#).is_ok());
        assert!(
            validate(".spec[")
                .unwrap_err()
                .starts_with("unrecognized column definition")
        );
    }
}

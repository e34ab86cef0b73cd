//! Limits on the size and shape of tenant-written CEL expressions, checked by a lexical scan
//! before the CEL parser runs. The parser, the program's checks, its evaluation and even the
//! drop of its syntax tree recurse over the expression, so an expression of unbounded size or
//! nesting could overflow a thread's stack and abort the whole process. The scan itself is a
//! loop with an explicit stack: it cannot overflow, whatever it is given.
//!
//! Counted:
//! - length in bytes;
//! - nodes: every token (identifier, literal, operator such as `+` or `&&`, bracket, `.` and
//!   `,`);
//! - nesting depth: each open `(`, `[` or `{` counts one, and each `?` of a conditional
//!   counts one until the bracket it was written in closes (a chain of conditionals nests
//!   in its else branches).
//!
//! The scan also reports what an evaluation cost estimate needs: how deeply comprehension
//! macros (`all`, `exists`, `exists_one`, `map`, `filter`) nest and the longest literal list
//! or map.

/// Longest expression, in bytes.
pub const MAX_EXPRESSION_BYTES: usize = 4096;
/// Deepest nesting of brackets and conditionals.
pub const MAX_NESTING_DEPTH: usize = 32;
/// Most nodes (tokens) in one expression.
pub const MAX_NODES: usize = 1000;

/// Default budget of one evaluation, in estimated steps: nodes × (longest collection + 1) ^
/// (comprehension nesting). The worker dead-letters an event whose estimate is over its
/// route's budget instead of evaluating it.
pub const DEFAULT_MAX_EVALUATION_COST: u64 = 1_000_000;

/// The names of CEL's comprehension macros: calls of these on a receiver iterate over it.
const COMPREHENSIONS: [&str; 5] = ["all", "exists", "exists_one", "map", "filter"];

/// What the scan learnt about an expression within the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shape {
    /// Number of tokens.
    pub nodes: usize,
    /// Deepest nesting of brackets and conditionals.
    pub depth: usize,
    /// Deepest nesting of comprehension macros (0 when there is none).
    pub comprehension_depth: usize,
    /// Most elements of one literal list or map.
    pub largest_literal: usize,
}

/// An expression over one of the limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Longer than [`MAX_EXPRESSION_BYTES`].
    #[error("is {0} bytes long; the limit is {MAX_EXPRESSION_BYTES}")]
    TooLong(usize),
    /// More than [`MAX_NODES`] tokens.
    #[error("has more than {MAX_NODES} nodes (operators, operands, brackets); simplify it")]
    TooManyNodes,
    /// Nested deeper than [`MAX_NESTING_DEPTH`].
    #[error("nests brackets and conditionals deeper than {MAX_NESTING_DEPTH} levels")]
    TooDeep,
}

/// One open bracket.
struct Open {
    /// Depth added by conditionals written directly inside it.
    conditionals: usize,
    /// Whether it is the argument list of a comprehension macro.
    comprehension: bool,
    /// Elements seen so far (commas + 1 once something was written).
    elements: usize,
    /// Whether it is a literal list or map (`[` after an operator, or `{`).
    literal: bool,
}

/// Scans `expression` and checks it against the limits, before any parser sees it.
pub fn scan(expression: &str) -> Result<Shape, LimitError> {
    if expression.len() > MAX_EXPRESSION_BYTES {
        return Err(LimitError::TooLong(expression.len()));
    }
    let bytes = expression.as_bytes();
    let mut shape = Shape::default();
    // The outermost level is a bracket that never closes.
    let mut stack: Vec<Open> = vec![Open {
        conditionals: 0,
        comprehension: false,
        elements: 0,
        literal: false,
    }];
    let mut depth = 0usize;
    let mut comprehensions = 0usize;
    // The previous token, to tell a call from a grouping and an index from a literal list.
    let mut previous = Token::Operator;
    // Whether the previous token was a `.`, and whether it was a comprehension macro's name
    // written after one (`list.map`), so that a `(` now opens that macro's arguments.
    let mut after_dot = false;
    let mut macro_name = false;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'/' && bytes.get(i + 1) == Some(&b'/') {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        shape.nodes += 1;
        if shape.nodes > MAX_NODES {
            return Err(LimitError::TooManyNodes);
        }
        if let Some(top) = stack.last_mut()
            && top.elements == 0
            && !matches!(c, b')' | b']' | b'}')
        {
            top.elements = 1;
        }
        let (was_dot, was_macro) = (after_dot, macro_name);
        after_dot = false;
        macro_name = false;
        let token = if let Some(end) = string_end(bytes, i) {
            i = end;
            Token::Operand
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let word = &bytes[start..i];
            macro_name = was_dot && COMPREHENSIONS.iter().any(|m| m.as_bytes() == word);
            // `in` is an operator; the others are operands (identifiers, true, null…).
            if word == b"in" {
                Token::Operator
            } else {
                Token::Operand
            }
        } else if c.is_ascii_digit() {
            // `1.5`, `0x1F`, `3u`, `1e9`.
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                i += 1;
            }
            Token::Operand
        } else {
            // Two-character operators are one node.
            let pair = bytes.get(i..i + 2).unwrap_or_default();
            i += if matches!(pair, b"&&" | b"||" | b"==" | b"!=" | b"<=" | b">=") {
                2
            } else {
                1
            };
            match c {
                b'(' | b'[' | b'{' => {
                    let comprehension = c == b'(' && was_macro;
                    let literal = c == b'{' || (c == b'[' && previous != Token::Operand);
                    stack.push(Open {
                        conditionals: 0,
                        comprehension,
                        elements: 0,
                        literal,
                    });
                    depth += 1;
                    if comprehension {
                        comprehensions += 1;
                        shape.comprehension_depth = shape.comprehension_depth.max(comprehensions);
                    }
                }
                // An unbalanced closer (at the outermost level) is the parser's to report.
                b')' | b']' | b'}' if stack.len() > 1 => {
                    let open = stack.pop().expect("more than one level");
                    depth -= 1 + open.conditionals;
                    if open.comprehension {
                        comprehensions -= 1;
                    }
                    if open.literal {
                        shape.largest_literal = shape.largest_literal.max(open.elements);
                    }
                }
                b'?' => {
                    if let Some(top) = stack.last_mut() {
                        top.conditionals += 1;
                    }
                    depth += 1;
                }
                b',' => {
                    if let Some(top) = stack.last_mut() {
                        top.elements += 1;
                    }
                }
                b'.' => after_dot = true,
                _ => {}
            }
            shape.depth = shape.depth.max(depth);
            if shape.depth > MAX_NESTING_DEPTH {
                return Err(LimitError::TooDeep);
            }
            match c {
                b')' | b']' | b'}' => Token::Operand,
                _ => Token::Operator,
            }
        };
        previous = token;
    }
    Ok(shape)
}

/// Whether the previous token can end an operand (so `(` after it is a call and `[` an index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Operand,
    Operator,
}

/// When a string or bytes literal starts at `i` (with its optional `r`/`b` prefixes), the
/// index just past its end (or the end of the input when it is unterminated).
fn string_end(bytes: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    let mut raw = false;
    while j < bytes.len() && j < i + 2 && matches!(bytes[j], b'r' | b'R' | b'b' | b'B') {
        raw |= matches!(bytes[j], b'r' | b'R');
        j += 1;
    }
    let quote = *bytes.get(j)?;
    if quote != b'\'' && quote != b'"' {
        return None;
    }
    let triple = bytes.get(j..j + 3) == Some(&[quote, quote, quote][..]);
    j += if triple { 3 } else { 1 };
    while j < bytes.len() {
        let c = bytes[j];
        if c == b'\\' && !raw {
            j += 2;
            continue;
        }
        if triple {
            if bytes.get(j..j + 3) == Some(&[quote, quote, quote][..]) {
                return Some(j + 3);
            }
        } else if c == quote {
            return Some(j + 1);
        }
        j += 1;
    }
    Some(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cel::objects::{Key, Map};
    use cel::{Context, Program, Value};
    use std::collections::HashMap;
    use std::sync::Arc;

    /// The stack of a tokio worker thread (and of a spawned std thread): 2 MiB.
    const WORKER_STACK: usize = 2 * 1024 * 1024;

    fn member_chain(members: usize) -> String {
        format!("event.a{}", ".b".repeat(members))
    }

    fn nested(open: &str, inner: &str, close: &str, levels: usize) -> String {
        format!("{}{inner}{}", open.repeat(levels), close.repeat(levels))
    }

    /// `{"a": {"b": {"b": … 1}}}` with `members` levels of `b`.
    fn deep_event(members: usize) -> Value {
        let mut v = Value::Int(1);
        for _ in 0..members {
            v = map("b", v);
        }
        map("a", v)
    }

    fn map(key: &str, v: Value) -> Value {
        let mut m = HashMap::new();
        m.insert(Key::String(Arc::new(key.into())), v);
        Value::Map(Map { map: Arc::new(m) })
    }

    /// The worst shapes that pass the limits, each as large as the limits allow.
    fn worst_shapes_within_limits() -> Vec<(&'static str, String)> {
        // Each `.b` is two nodes; `event.a` three.
        let members = (MAX_NODES - 3) / 2;
        let ones = MAX_NODES.div_ceil(2);
        let depth = MAX_NESTING_DEPTH;
        // `false ? 0 : ` is four nodes and one level.
        let ternaries = format!("{}1", "false ? 0 : ".repeat(depth));
        vec![
            ("member chain", member_chain(members)),
            ("parentheses", nested("(", "event.a", ")", depth)),
            ("brackets", nested("[", "1", "]", depth)),
            ("braces", nested("{'a': ", "1", "}", depth)),
            (
                "indexes",
                format!("event.a{}", "['b']".repeat((MAX_NODES - 3) / 3)),
            ),
            ("not run", format!("{}true", "!".repeat(MAX_NODES - 2))),
            ("negation run", format!("{}1", "-".repeat(MAX_NODES - 2))),
            ("plus chain", vec!["1"; ones].join(" + ")),
            ("and chain", vec!["true"; ones].join(" && ")),
            ("comparison chain", vec!["1"; ones].join(" == ")),
            ("nested ternaries", ternaries),
            (
                "parentheses around a plus chain",
                nested(
                    "(",
                    &vec!["1"; (MAX_NODES - 2 * depth).div_ceil(2)].join("+"),
                    ")",
                    depth,
                ),
            ),
            (
                "ternaries then a member chain",
                format!(
                    "{}{}",
                    "false ? 0 : ".repeat(depth),
                    member_chain((MAX_NODES - 4 * depth - 3) / 2)
                ),
            ),
            ("nested calls", nested("size(", "'x'", ")", depth)),
            (
                "nested comprehensions",
                nested("[1].map(x, ", "x", ")", depth),
            ),
        ]
    }

    #[test]
    fn the_worst_shapes_within_the_limits_pass_the_scan() {
        for (name, e) in worst_shapes_within_limits() {
            let shape = scan(&e).unwrap_or_else(|err| panic!("{name}: {err}"));
            assert!(shape.nodes <= MAX_NODES, "{name}");
            assert!(
                shape.nodes > MAX_NODES / 2 || shape.depth == MAX_NESTING_DEPTH,
                "{name} is not near a limit: {shape:?}"
            );
        }
    }

    /// Compiles, checks, evaluates and drops each worst shape on a thread with a worker's
    /// stack, as the API, the operator and the worker do (evaluation on the expression stack,
    /// as the worker's transforms run it): none of it may overflow.
    #[test]
    fn the_worst_shapes_within_the_limits_do_not_overflow_a_worker_stack() {
        let shapes = worst_shapes_within_limits();
        let members = (MAX_NODES - 3) / 2;
        std::thread::Builder::new()
            .stack_size(WORKER_STACK)
            .spawn(move || {
                for (name, e) in shapes {
                    let program: Program =
                        super::super::compile(&e).unwrap_or_else(|err| panic!("{name}: {err}"));
                    let _ = super::super::check(&e);
                    super::super::on_expression_stack(|| {
                        let mut context = Context::default();
                        context.add_variable_from_value(
                            super::super::EVENT_VARIABLE,
                            deep_event(members),
                        );
                        let _ = program.execute(&context);
                    });
                    drop(program);
                }
            })
            .unwrap()
            .join()
            .expect("no overflow");
    }

    #[test]
    fn just_past_each_limit_is_refused() {
        let depth = MAX_NESTING_DEPTH + 1;
        for (name, e, want) in [
            (
                "long",
                format!("'{}'", "x".repeat(MAX_EXPRESSION_BYTES - 1)),
                LimitError::TooLong(MAX_EXPRESSION_BYTES + 1),
            ),
            (
                "member chain",
                member_chain((MAX_NODES - 3) / 2 + 1),
                LimitError::TooManyNodes,
            ),
            (
                "parentheses",
                nested("(", "1", ")", depth),
                LimitError::TooDeep,
            ),
            (
                "brackets",
                nested("[", "1", "]", depth),
                LimitError::TooDeep,
            ),
            (
                "braces",
                nested("{'a': ", "1", "}", depth),
                LimitError::TooDeep,
            ),
            (
                "ternaries",
                format!("{}1", "false ? 0 : ".repeat(depth)),
                LimitError::TooDeep,
            ),
            (
                "nots",
                format!("{}true", "!".repeat(MAX_NODES)),
                LimitError::TooManyNodes,
            ),
            (
                "plus chain",
                vec!["1"; MAX_NODES / 2 + 1].join("+"),
                LimitError::TooManyNodes,
            ),
        ] {
            assert_eq!(scan(&e), Err(want), "{name}");
        }
        // The expression of the report: 2,000 member accesses.
        assert_eq!(scan(&member_chain(2000)), Err(LimitError::TooManyNodes));
        let err = super::super::compile(&member_chain(2000)).unwrap_err();
        assert!(err.contains("nodes"), "{err}");
    }

    #[test]
    fn strings_and_comments_do_not_count_as_structure() {
        let s = scan("event.s == '((((([[[[{{{{' && event.t == \"]]]\" // ((((\n").unwrap();
        assert_eq!((s.nodes, s.depth), (11, 0));
        let s = scan(r#"event.s == r'\' + '''a'b''' + "\"(" + b'\x00'"#).unwrap();
        assert_eq!((s.nodes, s.depth), (11, 0));
        // An unterminated string swallows the rest, which the parser then refuses.
        assert!(scan("'abc").is_ok());
        assert!(super::super::compile("'abc").is_err());
    }

    #[test]
    fn the_shape_reports_comprehensions_and_literals() {
        let s = scan("event.items.map(i, i.tags.exists(t, t == 'a'))").unwrap();
        assert_eq!(s.comprehension_depth, 2);
        let s = scan("event.items.all(i, i > 0) && event.x.exists(t, t)").unwrap();
        assert_eq!(s.comprehension_depth, 1);
        let s = scan("size(event.items) > 0 && map(1) == 1").unwrap();
        assert_eq!(s.comprehension_depth, 0);
        let s = scan("[1, 2, 3].map(x, {'a': 1, 'b': 2})").unwrap();
        assert_eq!(s.largest_literal, 3);
        assert_eq!(scan("event.a[0]").unwrap().largest_literal, 0);
        assert_eq!(scan("[]").unwrap().largest_literal, 0);
    }
}

//! CEL expressions of pipelines: the filter (a boolean over `event`) and the projection
//! expression (a map over `event`). Both are compiled here once to refuse bad ones before
//! anything is stored or run; the worker evaluates them.
//!
//! Every compilation goes through [`compile`], which first checks the expression against the
//! limits of [`limits`] with a lexical scan, so no caller (the API, the operator, the worker)
//! can hand the recursive parser an expression that would overflow its stack. The parser and
//! the interpreter recurse deeply per level of an expression (the parser's frames, generated
//! from a grammar, are large), so the recursive work runs on a stack of its own of
//! [`EXPRESSION_STACK_BYTES`] ([`on_expression_stack`]), whatever thread calls it: within the
//! limits the need is bounded, and the tests show it fits.

pub mod limits;

pub use limits::{LimitError, Shape};

/// The variable holding the event in filter and projection expressions.
pub const EVENT_VARIABLE: &str = "event";

/// Size of the stack CEL parsing, checking and evaluation run on. Only the pages used are
/// committed; within the limits of [`limits`] the deepest use is a small part of it.
pub const EXPRESSION_STACK_BYTES: usize = 64 * 1024 * 1024;

/// Runs `f` (parsing, checking or evaluating CEL) on a stack of [`EXPRESSION_STACK_BYTES`]:
/// a new stack segment is switched to when less than half of that remains on the current
/// one, so a tokio worker (2 MiB) never runs the recursion on its own stack.
pub fn on_expression_stack<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(EXPRESSION_STACK_BYTES / 2, EXPRESSION_STACK_BYTES, f)
}

/// Compiles a CEL expression within the limits; the error says which limit or is the
/// parser's message.
pub fn compile(expression: &str) -> Result<cel::Program, String> {
    compile_with_shape(expression).map(|(program, _)| program)
}

/// Compiles a CEL expression within the limits, with what the limit scan learnt about it.
pub fn compile_with_shape(expression: &str) -> Result<(cel::Program, Shape), String> {
    if expression.trim().is_empty() {
        return Err("must not be empty".into());
    }
    let shape = limits::scan(expression).map_err(|e| e.to_string())?;
    let program = on_expression_stack(|| cel::Program::compile(expression)).map_err(|e| {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or("invalid expression");
        format!("is not a valid CEL expression: {first}")
    })?;
    Ok((program, shape))
}

/// Checks that an expression compiles and refers to no variable other than `event`.
pub fn check(expression: &str) -> Result<(), String> {
    let program = compile(expression)?;
    let references = on_expression_stack(|| program.references());
    let unknown: Vec<String> = references
        .variables()
        .into_iter()
        .filter(|v| *v != EVENT_VARIABLE && !is_macro_variable(expression, v))
        .map(String::from)
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "refers to unknown variable(s) {}; the event is `{EVENT_VARIABLE}`",
            unknown.join(", ")
        ));
    }
    Ok(())
}

/// Whether `name` is the iteration variable of a macro (`list.exists(name, ...)`).
fn is_macro_variable(expression: &str, name: &str) -> bool {
    ["exists", "all", "exists_one", "map", "filter"]
        .iter()
        .any(|m| {
            expression.match_indices(&format!(".{m}(")).any(|(i, pat)| {
                let rest = expression[i + pat.len()..].trim_start();
                rest.strip_prefix(name)
                    .is_some_and(|after| after.trim_start().starts_with(','))
            })
        })
}

/// Checks a projection field path (`a.b.c`: non-empty segments separated by dots).
pub fn check_field_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("must not be empty".into());
    }
    if path.split('.').any(|s| s.is_empty()) {
        return Err("must be dot-separated field names with no empty segment".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_compile_or_explain() {
        assert!(check("event.amount > 100").is_ok());
        assert!(check("has(event.customer) && event.customer.tier == 'gold'").is_ok());
        assert!(check("event.items.exists(i, i.price > 1)").is_ok());
        assert!(check("event.items.map(i, i.sku)").is_ok());
        let err = check("event.amount >").unwrap_err();
        assert!(err.starts_with("is not a valid CEL expression"), "{err}");
        let err = check("amount > 1").unwrap_err();
        assert!(err.contains("amount"), "{err}");
        assert_eq!(check("  ").unwrap_err(), "must not be empty");
        assert!(check_field_path("customer.id").is_ok());
        assert!(check_field_path("a..b").is_err());
    }
}

//! CEL expressions of pipelines: the filter (a boolean over `event`) and the projection
//! expression (a map over `event`). Both are compiled here once to refuse bad ones before
//! anything is stored or run; the worker evaluates them.

/// The variable holding the event in filter and projection expressions.
pub const EVENT_VARIABLE: &str = "event";

/// Compiles a CEL expression; the error is the parser's message.
pub fn compile(expression: &str) -> Result<cel::Program, String> {
    if expression.trim().is_empty() {
        return Err("must not be empty".into());
    }
    cel::Program::compile(expression).map_err(|e| {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or("invalid expression");
        format!("is not a valid CEL expression: {first}")
    })
}

/// Checks that an expression compiles and refers to no variable other than `event`.
pub fn check(expression: &str) -> Result<(), String> {
    let program = compile(expression)?;
    let unknown: Vec<String> = program
        .references()
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

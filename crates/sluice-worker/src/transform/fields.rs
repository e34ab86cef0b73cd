//! Which top-level fields of the event an expression reads. Decoding only those (instead of
//! the whole event) is most of the worker's CPU saving; when an expression uses `event` in
//! any other way than `event.<field>` (`event['x']`, `size(event)`, a macro variable named
//! `event`), the whole event is decoded.

use cel::IdedExpr;
use cel::common::ast::{EntryExpr, Expr};
use sluice_core::expr::EVENT_VARIABLE;
use std::collections::BTreeSet;

/// The top-level fields of `event` that `expr` reads, or `None` when it may read any.
pub fn event_fields(expr: &IdedExpr) -> Option<BTreeSet<String>> {
    let mut fields = BTreeSet::new();
    walk(expr, &mut fields).then_some(fields)
}

/// Adds the fields `e` reads; false when it may read the whole event.
fn walk(e: &IdedExpr, out: &mut BTreeSet<String>) -> bool {
    match &e.expr {
        Expr::Select(s) => match &s.operand.expr {
            Expr::Ident(name) if name == EVENT_VARIABLE => {
                out.insert(s.field.clone());
                true
            }
            _ => walk(&s.operand, out),
        },
        Expr::Ident(name) => name != EVENT_VARIABLE,
        Expr::Call(c) => {
            c.target.as_deref().is_none_or(|t| walk(t, out)) && c.args.iter().all(|a| walk(a, out))
        }
        Expr::Comprehension(c) => {
            let shadows = c.iter_var == EVENT_VARIABLE
                || c.iter_var2.as_deref() == Some(EVENT_VARIABLE)
                || c.accu_var == EVENT_VARIABLE;
            !shadows
                && [
                    &c.iter_range,
                    &c.accu_init,
                    &c.loop_cond,
                    &c.loop_step,
                    &c.result,
                ]
                .into_iter()
                .all(|x| walk(x, out))
        }
        Expr::List(l) => l.elements.iter().all(|x| walk(x, out)),
        Expr::Map(m) => m.entries.iter().all(|x| entry(&x.expr, out)),
        Expr::Struct(s) => s.entries.iter().all(|x| entry(&x.expr, out)),
        Expr::Literal(_) | Expr::Unspecified => true,
    }
}

fn entry(e: &EntryExpr, out: &mut BTreeSet<String>) -> bool {
    match e {
        EntryExpr::MapEntry(m) => walk(&m.key, out) && walk(&m.value, out),
        EntryExpr::StructField(f) => walk(&f.value, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(e: &str) -> Option<Vec<String>> {
        let p = cel::Program::compile(e).unwrap();
        event_fields(p.expression()).map(|s| s.into_iter().collect())
    }

    #[test]
    fn field_reads_are_found() {
        assert_eq!(
            fields("event.amount > 100 && event.customer.tier == 'gold'").unwrap(),
            ["amount", "customer"]
        );
        assert_eq!(fields("has(event.x) ? event.y : 1").unwrap(), ["x", "y"]);
        assert_eq!(
            fields("event.items.exists(i, i.price > event.min)").unwrap(),
            ["items", "min"]
        );
        assert_eq!(
            fields("{'a': event.a, 'n': [event.b]}").unwrap(),
            ["a", "b"]
        );
        assert_eq!(fields("true").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn other_uses_of_the_event_need_all_of_it() {
        assert_eq!(fields("size(event) > 2"), None);
        assert_eq!(fields("event['amount'] > 1"), None);
        assert_eq!(fields("'x' in event"), None);
        assert_eq!(fields("event.items.map(event, event.a)"), None);
    }
}

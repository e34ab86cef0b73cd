//! The route's transforms: the CEL filter and the projection, compiled once at start and
//! applied to every event. A transform never fails the worker: an event it cannot handle
//! becomes an [`Outcome::Dead`] carrying the stage and the error, for the dead-letter subject.

pub mod cost;
pub mod fields;
pub mod json;
pub mod projection;

use bytes::Bytes;
use cel::{Context, Env, Program, Value};
use projection::CompiledProjection;
use sluice_core::expr::{EVENT_VARIABLE, Shape, on_expression_stack};
use sluice_core::route::RouteConfig;
use std::sync::Arc;

/// The stage of processing where an event failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The event is not JSON.
    Decode,
    /// The filter failed or did not return a boolean.
    Filter,
    /// The projection failed or did not return a map.
    Projection,
    /// The sink refused the event for good.
    Sink,
}

impl Stage {
    /// The stage's name, used in dead-letter headers and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Filter => "filter",
            Stage::Projection => "projection",
            Stage::Sink => "sink",
        }
    }
}

/// Why an event cannot be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventError {
    /// Where it failed.
    pub stage: Stage,
    /// What went wrong.
    pub message: String,
}

/// What happens to one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Deliver these bytes (JSON) to the sink.
    Deliver(Bytes),
    /// The filter rejected the event: acknowledge it, deliver nothing.
    Filtered,
    /// Send the original event to the dead-letter subject.
    Dead(EventError),
}

/// Why the transforms of a configuration cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct BuildError {
    /// The configuration field at fault.
    pub field: &'static str,
    /// The compiler's message.
    pub message: String,
}

/// How much of each event must be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decode {
    /// Nothing: only check that it is JSON.
    Nothing,
    /// These top-level fields, for the expressions.
    Fields(Vec<String>),
    /// The whole event.
    Whole,
}

/// The compiled filter and projection of a route.
pub struct Transform {
    env: Arc<Env>,
    filter: Option<Program>,
    projection: CompiledProjection,
    decode: Decode,
    /// Shapes of the expressions that iterate (comprehensions), whose cost depends on the
    /// event, with their stage.
    costly: Vec<(Stage, Shape)>,
    /// Most estimated steps of one evaluation.
    max_cost: u64,
}

impl std::fmt::Debug for Transform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transform")
            .field("filter", &self.filter.is_some())
            .field("projection", &self.projection)
            .field("decode", &self.decode)
            .finish()
    }
}

impl Transform {
    /// Compiles the filter and projection of a route.
    pub fn new(config: &RouteConfig) -> Result<Self, BuildError> {
        let mut costly = vec![];
        let filter = match config.filter.as_deref() {
            Some(f) => {
                let (program, shape) =
                    sluice_core::expr::compile_with_shape(f).map_err(|message| BuildError {
                        field: "filter",
                        message,
                    })?;
                costly.push((Stage::Filter, shape));
                Some(program)
            }
            None => None,
        };
        let (projection, shape) = CompiledProjection::new(config.projection.as_ref())?;
        if let Some(shape) = shape {
            costly.push((Stage::Projection, shape));
        }
        costly.retain(|(_, shape)| shape.comprehension_depth > 0);
        let mut programs: Vec<&Program> = filter.iter().collect();
        if let CompiledProjection::Expression(p) = &projection {
            programs.push(p);
        }
        let decode = if programs.is_empty() {
            Decode::Nothing
        } else {
            let mut all = std::collections::BTreeSet::new();
            let mut whole = false;
            for p in programs {
                match fields::event_fields(p.expression()) {
                    Some(f) => all.extend(f),
                    None => whole = true,
                }
            }
            if whole {
                Decode::Whole
            } else {
                Decode::Fields(all.into_iter().collect())
            }
        };
        Ok(Transform {
            env: Arc::new(Env::stdlib()),
            filter,
            projection,
            decode,
            costly,
            max_cost: config.max_evaluation_cost,
        })
    }

    /// When evaluating the expressions on `payload` is estimated to cost more than the
    /// budget, the dead outcome saying so.
    fn over_budget(&self, payload: &[u8]) -> Option<Outcome> {
        if self.costly.is_empty() {
            return None;
        }
        let longest = cost::longest_collection(payload);
        self.costly.iter().find_map(|(stage, shape)| {
            let estimate = cost::estimate(shape, longest);
            (estimate > self.max_cost).then(|| {
                dead(
                    *stage,
                    format!(
                        "evaluation cost over budget: an estimated {estimate} steps (the \
                         expression nests {} comprehension(s) over collections of up to \
                         {longest} elements); the budget is {}",
                        shape.comprehension_depth, self.max_cost
                    ),
                )
            })
        })
    }

    /// How much of each event is decoded.
    pub fn decode(&self) -> &Decode {
        &self.decode
    }

    /// Applies the transforms to a run of events, reusing one evaluation context and one
    /// output buffer (projected events share its allocations). The evaluation recurses over
    /// the expressions, so it runs on the expression stack (one switch per run of events).
    pub fn apply_all<'a>(
        &self,
        payloads: impl IntoIterator<Item = &'a Bytes>,
        mut each: impl FnMut(Outcome),
    ) {
        on_expression_stack(|| {
            let root = Context::with_env(self.env.clone());
            let mut scratch = Out::default();
            for p in payloads {
                each(self.apply_in(&root, p, &mut scratch));
            }
        })
    }

    /// Applies the transforms to one event (on the expression stack).
    pub fn apply(&self, payload: &Bytes) -> Outcome {
        on_expression_stack(|| {
            let root = Context::with_env(self.env.clone());
            self.apply_in(&root, payload, &mut Out::default())
        })
    }

    fn apply_in<'a>(&self, root: &Context<'_, 'a>, payload: &'a Bytes, out: &mut Out) -> Outcome {
        if let Some(outcome) = self.over_budget(payload) {
            return outcome;
        }
        match &self.decode {
            Decode::Whole => self.apply_decoded(root, payload, out),
            Decode::Nothing | Decode::Fields(_) => self.apply_members(root, payload, out),
        }
    }

    /// The event is decoded whole into a CEL value.
    fn apply_decoded(&self, root: &Context, payload: &Bytes, out: &mut Out) -> Outcome {
        let event = match json::decode(payload) {
            Ok(v) => v,
            Err(e) => return dead(Stage::Decode, format!("the event is not JSON: {e}")),
        };
        let mut scope = root.new_inner_scope();
        scope.add_variable_from_value(EVENT_VARIABLE, event.clone());
        if let Some(outcome) = self.filter(&scope) {
            return outcome;
        }
        if matches!(self.projection, CompiledProjection::Whole) {
            return Outcome::Deliver(payload.clone());
        }
        out.scratch.clear();
        match self.projection.apply(&scope, &event, &mut out.scratch) {
            Ok(()) => Outcome::Deliver(out.take()),
            Err(message) => dead(Stage::Projection, message),
        }
    }

    /// The event is read as raw top-level members; only the fields the expressions read are
    /// decoded, and kept fields are copied verbatim.
    fn apply_members<'a>(
        &self,
        root: &Context<'_, 'a>,
        payload: &'a Bytes,
        out: &mut Out,
    ) -> Outcome {
        if self.decode == Decode::Nothing && matches!(self.projection, CompiledProjection::Whole) {
            // Delivered as is: any JSON document will do.
            return match json::validate(payload) {
                Ok(()) => Outcome::Deliver(payload.clone()),
                Err(e) => dead(Stage::Decode, format!("the event is not JSON: {e}")),
            };
        }
        let members = match json::members(payload) {
            Ok(m) => m,
            Err(e) => {
                return dead(
                    Stage::Decode,
                    format!("the event is not a JSON object: {e}"),
                );
            }
        };
        let mut scope = None;
        if let Decode::Fields(names) = &self.decode {
            let event = match json::event_val(&members, names) {
                Ok(v) => v,
                Err((name, e)) => return dead(Stage::Decode, format!("field {name}: {e}")),
            };
            let mut s = root.new_inner_scope();
            s.add_variable_as_val(EVENT_VARIABLE, event);
            scope = Some(s);
        }
        if let Some(scope) = &scope
            && let Some(outcome) = self.filter(scope)
        {
            return outcome;
        }
        out.scratch.clear();
        match &self.projection {
            CompiledProjection::Whole => Outcome::Deliver(payload.clone()),
            CompiledProjection::Fields(fields) => {
                projection::write_fields(fields, &members, &mut out.scratch);
                Outcome::Deliver(out.take())
            }
            CompiledProjection::Expression(_) => {
                let scope = scope.expect("an expression projection decodes its fields");
                match self
                    .projection
                    .apply(&scope, &Value::Null, &mut out.scratch)
                {
                    Ok(()) => Outcome::Deliver(out.take()),
                    Err(message) => dead(Stage::Projection, message),
                }
            }
        }
    }

    /// Runs the filter: `None` when the event passes, the outcome otherwise.
    fn filter(&self, scope: &Context) -> Option<Outcome> {
        let filter = self.filter.as_ref()?;
        match filter.execute(scope) {
            Ok(Value::Bool(true)) => None,
            Ok(Value::Bool(false)) => Some(Outcome::Filtered),
            Ok(other) => Some(dead(
                Stage::Filter,
                format!("the filter returned a {}, not a bool", other.type_of()),
            )),
            Err(e) => Some(dead(Stage::Filter, format!("the filter failed: {e}"))),
        }
    }
}

/// Output buffers: projected events are written to `scratch`, then moved into `shared`,
/// whose allocation the events of a run share (one allocation per few hundred events
/// instead of one per event).
#[derive(Default)]
struct Out {
    scratch: Vec<u8>,
    shared: bytes::BytesMut,
}

impl Out {
    fn take(&mut self) -> Bytes {
        if self.shared.capacity() - self.shared.len() < self.scratch.len() {
            self.shared.reserve(self.scratch.len().max(64 * 1024));
        }
        self.shared.extend_from_slice(&self.scratch);
        self.shared.split().freeze()
    }
}

fn dead(stage: Stage, message: String) -> Outcome {
    Outcome::Dead(EventError { stage, message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::route::{FieldProjection, Projection};

    fn config(filter: Option<&str>, projection: Option<Projection>) -> RouteConfig {
        let mut c = crate::config::parse(
            r#"{
          "tenant": "acme", "pipeline": "orders", "route": "audit",
          "source": {"kind": "jetstream", "url": "nats://127.0.0.1:4222", "stream": "s",
                     "subject": "s.events", "durable": "orders_audit"},
          "sink": {"kind": "file"},
          "deadLetter": {"url": "nats://127.0.0.1:4222", "subject": "s.dead"}
        }"#,
        )
        .unwrap();
        c.filter = filter.map(String::from);
        c.projection = projection;
        c
    }

    fn run(t: &Transform, event: &str) -> Outcome {
        t.apply(&Bytes::copy_from_slice(event.as_bytes()))
    }

    fn delivered(o: Outcome) -> serde_json::Value {
        match o {
            Outcome::Deliver(b) => serde_json::from_slice(&b).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    fn field(path: &str, as_: Option<&str>) -> FieldProjection {
        FieldProjection {
            path: path.into(),
            as_: as_.map(String::from),
        }
    }

    #[test]
    fn filter_keeps_and_drops() {
        let t = Transform::new(&config(Some("event.amount > 100"), None)).unwrap();
        let e = r#"{"amount": 150, "x": "y"}"#;
        match run(&t, e) {
            Outcome::Deliver(b) => assert_eq!(&b[..], e.as_bytes(), "delivered unchanged"),
            other => panic!("{other:?}"),
        }
        assert_eq!(run(&t, r#"{"amount": 50}"#), Outcome::Filtered);
    }

    #[test]
    fn filter_errors_and_non_bools_are_dead() {
        let t = Transform::new(&config(Some("event.amount > 100"), None)).unwrap();
        let Outcome::Dead(e) = run(&t, r#"{"other": 1}"#) else {
            panic!()
        };
        assert_eq!(e.stage, Stage::Filter);
        assert!(e.message.contains("amount"), "{}", e.message);
        let t = Transform::new(&config(Some("event.amount"), None)).unwrap();
        let Outcome::Dead(e) = run(&t, r#"{"amount": 1}"#) else {
            panic!()
        };
        assert_eq!(e.stage, Stage::Filter);
        assert!(e.message.contains("not a bool"), "{}", e.message);
    }

    #[test]
    fn bad_json_is_dead_with_or_without_transforms() {
        for t in [
            Transform::new(&config(None, None)).unwrap(),
            Transform::new(&config(Some("true"), None)).unwrap(),
        ] {
            let Outcome::Dead(e) = run(&t, "{not json") else {
                panic!()
            };
            assert_eq!(e.stage, Stage::Decode);
        }
    }

    #[test]
    fn field_projection_keeps_nested_paths_under_their_names() {
        let t = Transform::new(&config(
            None,
            Some(Projection::Fields(vec![
                field("customer.id", Some("customerId")),
                field("amount", None),
                field("customer.address.city", None),
                field("missing.path", None),
            ])),
        ))
        .unwrap();
        let out = delivered(run(
            &t,
            r#"{"amount": 3.5, "customer": {"id": "c1", "address": {"city": "Oslo"}}, "noise": [1]}"#,
        ));
        assert_eq!(
            out,
            serde_json::json!({"customerId": "c1", "amount": 3.5, "city": "Oslo"})
        );
    }

    #[test]
    fn expression_projection_builds_the_new_event() {
        let t = Transform::new(&config(
            Some("event.kind == 'order'"),
            Some(Projection::Expression(
                "{'id': event.id, 'total': event.qty * event.price, 'tags': event.tags.map(t, t + '!')}".into(),
            )),
        ))
        .unwrap();
        let out = delivered(run(
            &t,
            r#"{"kind": "order", "id": 7, "qty": 3, "price": 4, "tags": ["a"]}"#,
        ));
        assert_eq!(
            out,
            serde_json::json!({"id": 7, "total": 12, "tags": ["a!"]})
        );
        assert_eq!(run(&t, r#"{"kind": "refund"}"#), Outcome::Filtered);
    }

    #[test]
    fn projection_that_is_not_a_map_or_fails_is_dead() {
        let t = Transform::new(&config(
            None,
            Some(Projection::Expression("event.id".into())),
        ))
        .unwrap();
        let Outcome::Dead(e) = run(&t, r#"{"id": 1}"#) else {
            panic!()
        };
        assert_eq!(e.stage, Stage::Projection);
        assert!(e.message.contains("map"), "{}", e.message);
        let t = Transform::new(&config(
            None,
            Some(Projection::Expression("{'x': 1 / event.zero}".into())),
        ))
        .unwrap();
        let Outcome::Dead(e) = run(&t, r#"{"zero": 0}"#) else {
            panic!()
        };
        assert_eq!(e.stage, Stage::Projection);
    }

    #[test]
    fn only_the_fields_the_expressions_read_are_decoded() {
        let t = Transform::new(&config(
            Some("event.kind == 'a'"),
            Some(Projection::Expression("{'n': event.n}".into())),
        ))
        .unwrap();
        assert_eq!(t.decode(), &Decode::Fields(vec!["kind".into(), "n".into()]));
        // Other fields are not decoded, so odd values there do not matter.
        let out = delivered(run(&t, r#"{"kind": "a", "n": 1, "big": 1e999}"#));
        assert_eq!(out, serde_json::json!({"n": 1}));
        let t = Transform::new(&config(Some("size(event) > 1"), None)).unwrap();
        assert_eq!(t.decode(), &Decode::Whole);
        assert_eq!(run(&t, r#"{"a": 1}"#), Outcome::Filtered);
        let t = Transform::new(&config(
            None,
            Some(Projection::Fields(vec![field("a.b", None)])),
        ))
        .unwrap();
        assert_eq!(t.decode(), &Decode::Nothing);
        assert_eq!(
            delivered(run(&t, r#"{"a": {"b": [1, {"c": 2}]}}"#)),
            serde_json::json!({"b": [1, {"c": 2}]})
        );
    }

    #[test]
    fn whole_and_field_decoding_agree() {
        let projection = Some(Projection::Fields(vec![
            field("customer.id", Some("c")),
            field("amount", None),
        ]));
        let by_fields =
            Transform::new(&config(Some("event.amount > 1"), projection.clone())).unwrap();
        let whole = Transform::new(&config(Some("event['amount'] > 1"), projection)).unwrap();
        assert_eq!(whole.decode(), &Decode::Whole);
        for e in [
            r#"{"amount": 5, "customer": {"id": "x"}}"#,
            r#"{"amount": 0, "customer": {"id": "x"}}"#,
            r#"{"customer": {"id": "x"}}"#,
            r#"{"amount": 2}"#,
        ] {
            let (a, b) = (run(&by_fields, e), run(&whole, e));
            match (&a, &b) {
                (Outcome::Deliver(x), Outcome::Deliver(y)) => assert_eq!(
                    serde_json::from_slice::<serde_json::Value>(x).unwrap(),
                    serde_json::from_slice::<serde_json::Value>(y).unwrap()
                ),
                (Outcome::Dead(x), Outcome::Dead(y)) => assert_eq!(x.stage, y.stage, "{e}"),
                _ => assert_eq!(a, b, "{e}"),
            }
        }
        // An event that is not an object is dead either way (as not an object, or in the
        // filter).
        assert!(matches!(run(&by_fields, "[1]"), Outcome::Dead(_)));
        assert!(matches!(run(&whole, "[1]"), Outcome::Dead(_)));
    }

    #[test]
    fn events_over_the_evaluation_budget_are_dead_with_the_reason() {
        let mut c = config(
            Some("event.items.exists(a, event.items.exists(b, a + b == -1))"),
            None,
        );
        c.max_evaluation_cost = 100_000;
        let t = Transform::new(&c).unwrap();
        let small = format!(r#"{{"items": [{}]}}"#, ["1"; 10].join(","));
        assert_eq!(run(&t, &small), Outcome::Filtered);
        let big = format!(r#"{{"items": [{}]}}"#, vec!["1"; 1_000].join(","));
        let Outcome::Dead(e) = run(&t, &big) else {
            panic!("evaluated")
        };
        assert_eq!(e.stage, Stage::Filter);
        assert!(e.message.contains("over budget"), "{}", e.message);
        // Without comprehensions the cost does not depend on the event.
        let mut c = config(Some("size(event.items) > 1"), None);
        c.max_evaluation_cost = 1;
        let t = Transform::new(&c).unwrap();
        assert!(matches!(run(&t, &big), Outcome::Deliver(_)));
    }

    #[test]
    fn the_deepest_expressions_within_the_limits_run_on_a_worker_stack() {
        // 248 additions (997 nodes): an evaluation 248 calls deep, on a thread with tokio's 2 MiB stack.
        let sum = vec!["event.n"; 249].join(" + ");
        let t = Transform::new(&config(Some(&format!("{sum} > 0")), None)).unwrap();
        let outcome = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || run(&t, r#"{"n": 1}"#))
            .unwrap()
            .join()
            .expect("no overflow");
        assert!(matches!(outcome, Outcome::Deliver(_)), "{outcome:?}");
    }

    #[test]
    fn expressions_over_the_limits_are_refused_at_build() {
        let deep = format!("event.a{}", ".b".repeat(2000));
        let err = Transform::new(&config(Some(&deep), None)).unwrap_err();
        assert_eq!(err.field, "filter");
        assert!(err.message.contains("nodes"), "{}", err.message);
        let err = Transform::new(&config(
            None,
            Some(Projection::Expression(format!(
                "{}1{}",
                "[".repeat(40),
                "]".repeat(40)
            ))),
        ))
        .unwrap_err();
        assert_eq!(err.field, "projection.expression");
    }

    #[test]
    fn invalid_expressions_are_refused_at_build() {
        let err = Transform::new(&config(Some("event.a >"), None)).unwrap_err();
        assert_eq!(err.field, "filter");
    }
}

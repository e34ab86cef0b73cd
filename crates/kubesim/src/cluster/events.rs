//! The two Event APIs share one storage: `events.k8s.io/v1` objects are core `v1` Events seen
//! through this conversion (what the real server does), so events recorded by a controller
//! through the new API show in `kubectl describe`, which reads the core API.

use serde_json::{Map, Value, json};

fn moved(from: &mut Map<String, Value>, to: &mut Map<String, Value>, src: &str, dst: &str) {
    if let Some(v) = from.remove(src)
        && !v.is_null()
    {
        to.insert(dst.to_string(), v);
    }
}

/// The fields both APIs have, as (core `v1` name, `events.k8s.io/v1` name).
const FIELDS: &[(&str, &str)] = &[
    ("metadata", "metadata"),
    ("eventTime", "eventTime"),
    ("action", "action"),
    ("reason", "reason"),
    ("related", "related"),
    ("type", "type"),
    ("reportingInstance", "reportingInstance"),
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

/// A new Event of `api_version` with the fields of `from` that [`FIELDS`] maps; `to_v1` says
/// which way.
fn converted(from: &mut Map<String, Value>, api_version: &str, to_v1: bool) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!("Event"));
    for (core, v1) in FIELDS {
        let (src, dst) = if to_v1 { (core, v1) } else { (v1, core) };
        moved(from, &mut out, src, dst);
    }
    out
}

/// A core `v1` Event as an `events.k8s.io/v1` Event.
pub(crate) fn core_to_v1(obj: Value) -> Value {
    let Value::Object(mut core) = obj else {
        return obj;
    };
    let mut out = converted(&mut core, "events.k8s.io/v1", true);
    moved(
        &mut core,
        &mut out,
        "reportingComponent",
        "reportingController",
    );
    if let Some(Value::Object(series)) = core.remove("series") {
        out.insert(
            "series".into(),
            json!({"count": series.get("count").cloned().unwrap_or(json!(1)),
                   "lastObservedTime": series.get("lastObservedTime").cloned().unwrap_or(Value::Null)}),
        );
    }
    Value::Object(out)
}

/// An `events.k8s.io/v1` Event as a core `v1` Event.
pub(crate) fn v1_to_core(obj: Value) -> Value {
    let Value::Object(mut v1) = obj else {
        return obj;
    };
    let mut out = converted(&mut v1, "v1", false);
    if let Some(controller) = v1.remove("reportingController").filter(|c| !c.is_null()) {
        if out.get("source").is_none_or(|s| s["component"].is_null()) {
            out.insert("source".into(), json!({"component": controller.clone()}));
        }
        out.insert("reportingComponent".into(), controller);
    }
    if let Some(Value::Object(series)) = v1.remove("series") {
        out.insert("series".into(), Value::Object(series));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_round_trips_the_fields_describe_reads() {
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "p1.abc", "namespace": "t1"},
            "eventTime": "2026-01-01T00:00:00.000000Z", "action": "Reconcile", "reason": "Accepted",
            "note": "pipeline accepted", "type": "Normal", "reportingController": "sluice-operator",
            "reportingInstance": "op-1",
            "regarding": {"kind": "Pipeline", "name": "p1", "namespace": "t1", "uid": "u"},
            "series": {"count": 3, "lastObservedTime": "2026-01-01T00:01:00.000000Z"}});
        let core = v1_to_core(v1.clone());
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "p1");
        assert_eq!(core["message"], "pipeline accepted");
        assert_eq!(core["source"]["component"], "sluice-operator");
        assert_eq!(core_to_v1(core)["note"], "pipeline accepted");
    }
}

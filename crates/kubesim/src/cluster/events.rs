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

/// A core `v1` Event as an `events.k8s.io/v1` Event.
pub(crate) fn core_to_v1(obj: Value) -> Value {
    let Value::Object(mut core) = obj else {
        return obj;
    };
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    out.insert("kind".into(), json!("Event"));
    for same in [
        "metadata",
        "eventTime",
        "action",
        "reason",
        "related",
        "type",
        "reportingInstance",
    ] {
        moved(&mut core, &mut out, same, same);
    }
    moved(&mut core, &mut out, "involvedObject", "regarding");
    moved(&mut core, &mut out, "message", "note");
    moved(
        &mut core,
        &mut out,
        "reportingComponent",
        "reportingController",
    );
    moved(&mut core, &mut out, "source", "deprecatedSource");
    moved(
        &mut core,
        &mut out,
        "firstTimestamp",
        "deprecatedFirstTimestamp",
    );
    moved(
        &mut core,
        &mut out,
        "lastTimestamp",
        "deprecatedLastTimestamp",
    );
    moved(&mut core, &mut out, "count", "deprecatedCount");
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
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!("v1"));
    out.insert("kind".into(), json!("Event"));
    for same in [
        "metadata",
        "eventTime",
        "action",
        "reason",
        "related",
        "type",
        "reportingInstance",
    ] {
        moved(&mut v1, &mut out, same, same);
    }
    moved(&mut v1, &mut out, "regarding", "involvedObject");
    moved(&mut v1, &mut out, "note", "message");
    moved(
        &mut v1,
        &mut out,
        "deprecatedFirstTimestamp",
        "firstTimestamp",
    );
    moved(
        &mut v1,
        &mut out,
        "deprecatedLastTimestamp",
        "lastTimestamp",
    );
    moved(&mut v1, &mut out, "deprecatedCount", "count");
    moved(&mut v1, &mut out, "deprecatedSource", "source");
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

use serde_json::{Value, json};

use super::*;

const T1: &str = "2024-01-01T00:00:01Z";
const T2: &str = "2024-01-01T00:00:02Z";
const T3: &str = "2024-01-01T00:00:03Z";
const T4: &str = "2024-01-01T00:00:04Z";

fn b() -> &'static BuiltinHints {
    &BuiltinHints
}

fn deploy(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": image}]}
            }
        }
    })
}

/// A minimal apply configuration for the Deployment `web` with only `spec`.
fn partial(spec: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": spec})
}

fn entries(obj: &Value) -> Vec<Value> {
    obj["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn entry(obj: &Value, manager: &str, operation: &str) -> Value {
    entries(obj)
        .into_iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
        .unwrap_or_else(|| panic!("no entry {manager}/{operation} in {obj:#}"))
}

fn has_entry(obj: &Value, manager: &str) -> bool {
    entries(obj).iter().any(|e| e["manager"] == manager)
}

fn conflicts(r: Result<Value, ApplyError>) -> Vec<Conflict> {
    match r {
        Err(ApplyError::Conflicts(c)) => c,
        other => panic!("expected conflicts, got {other:?}"),
    }
}

fn ok(r: Result<Value, ApplyError>) -> Value {
    match r {
        Ok(v) => v,
        Err(e) => panic!("apply failed: {e}"),
    }
}

// ---------------------------------------------------------------- apply

#[test]
fn create_via_apply_records_apply_entry() {
    let obj = ok(apply(
        None,
        &deploy(3, "nginx:1"),
        "kubectl",
        None,
        false,
        b(),
        T1,
    ));
    assert_eq!(obj["spec"]["replicas"], 3);
    assert_eq!(obj["metadata"]["name"], "web");
    let es = entries(&obj);
    assert_eq!(es.len(), 1);
    let e = &es[0];
    assert_eq!(e["manager"], "kubectl");
    assert_eq!(e["operation"], "Apply");
    assert_eq!(e["apiVersion"], "apps/v1");
    assert_eq!(e["time"], T1);
    assert_eq!(e["fieldsType"], "FieldsV1");
    assert!(e.get("subresource").is_none());
    let expected = json!({
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:image": {}, "f:name": {}}}}
            }
        }
    });
    assert_eq!(e["fieldsV1"], expected);
}

#[test]
fn reapply_same_config_is_identical() {
    let cfg = deploy(3, "nginx:1");
    let o1 = ok(apply(None, &cfg, "kubectl", None, false, b(), T1));
    let o2 = ok(apply(Some(&o1), &cfg, "kubectl", None, false, b(), T2));
    assert_eq!(o1, o2);
    assert_eq!(entry(&o2, "kubectl", "Apply")["time"], T1);
}

#[test]
fn reapply_with_change_updates_value_and_time() {
    let o1 = ok(apply(
        None,
        &deploy(3, "nginx:1"),
        "kubectl",
        None,
        false,
        b(),
        T1,
    ));
    let o2 = ok(apply(
        Some(&o1),
        &deploy(3, "nginx:2"),
        "kubectl",
        None,
        false,
        b(),
        T2,
    ));
    assert_eq!(
        o2["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:2"
    );
    assert_eq!(entry(&o2, "kubectl", "Apply")["time"], T2);
    assert_eq!(entries(&o2).len(), 1);
}

#[test]
fn dropping_a_field_removes_it() {
    let mut cfg = deploy(3, "nginx:1");
    cfg["metadata"]["labels"]["tier"] = json!("frontend");
    let o1 = ok(apply(None, &cfg, "kubectl", None, false, b(), T1));
    assert_eq!(o1["metadata"]["labels"]["tier"], "frontend");
    let o2 = ok(apply(
        Some(&o1),
        &deploy(3, "nginx:1"),
        "kubectl",
        None,
        false,
        b(),
        T2,
    ));
    assert!(o2["metadata"]["labels"].get("tier").is_none(), "{o2:#}");
    assert_eq!(o2["metadata"]["labels"]["app"], "web");
    let fs = &entry(&o2, "kubectl", "Apply")["fieldsV1"]["f:metadata"]["f:labels"];
    assert!(fs.get("f:tier").is_none());
    assert_eq!(entry(&o2, "kubectl", "Apply")["time"], T2);
}

#[test]
fn dropping_a_field_another_manager_owns_keeps_it() {
    let o1 = ok(apply(
        None,
        &deploy(3, "nginx:1"),
        "a",
        None,
        false,
        b(),
        T1,
    ));
    // "b" applies the same value: shared ownership, no conflict.
    let o2 = ok(apply(
        Some(&o1),
        &partial(json!({"replicas": 3})),
        "b",
        None,
        false,
        b(),
        T2,
    ));
    assert!(
        entry(&o2, "b", "Apply")["fieldsV1"]["f:spec"]
            .get("f:replicas")
            .is_some()
    );
    assert!(
        entry(&o2, "a", "Apply")["fieldsV1"]["f:spec"]
            .get("f:replicas")
            .is_some()
    );
    // "a" stops applying replicas: b still owns it, so it stays.
    let mut cfg = deploy(3, "nginx:1");
    cfg["spec"].as_object_mut().unwrap().remove("replicas");
    let o3 = ok(apply(Some(&o2), &cfg, "a", None, false, b(), T3));
    assert_eq!(o3["spec"]["replicas"], 3);
    assert!(
        entry(&o3, "a", "Apply")["fieldsV1"]["f:spec"]
            .get("f:replicas")
            .is_none()
    );
    // Then b drops it too: now it goes.
    let bare = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}});
    let o4 = ok(apply(Some(&o3), &bare, "b", None, false, b(), T4));
    assert!(o4["spec"].get("replicas").is_none(), "{o4:#}");
    assert!(!has_entry(&o4, "b"));
}

#[test]
fn conflict_with_update_manager_has_real_message() {
    let o1 = ok(apply(
        None,
        &deploy(3, "nginx:1"),
        "kubectl",
        None,
        false,
        b(),
        T1,
    ));
    let mut edited = o1.clone();
    edited["spec"]["replicas"] = json!(5);
    let o2 = record_update(Some(&o1), &edited, "kubectl-edit", "Update", None, b(), T2);
    assert_eq!(
        entry(&o2, "kubectl-edit", "Update")["fieldsV1"],
        json!({"f:spec": {"f:replicas": {}}})
    );
    assert!(
        entry(&o2, "kubectl", "Apply")["fieldsV1"]["f:spec"]
            .get("f:replicas")
            .is_none()
    );

    let err = apply(
        Some(&o2),
        &deploy(3, "nginx:1"),
        "kubectl",
        None,
        false,
        b(),
        T3,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using apps/v1: .spec.replicas"
    );
    let cs = conflicts(Err(err));
    assert_eq!(cs.len(), 1);
    assert_eq!(cs[0].manager, "kubectl-edit");
    assert_eq!(cs[0].field, ".spec.replicas");
    assert_eq!(cs[0].api_version, "apps/v1");

    // Applying the live value is not a conflict.
    let o3 = ok(apply(
        Some(&o2),
        &deploy(5, "nginx:1"),
        "kubectl",
        None,
        false,
        b(),
        T3,
    ));
    assert_eq!(o3["spec"]["replicas"], 5);
    assert!(has_entry(&o3, "kubectl-edit"));
}

#[test]
fn several_conflicts_are_grouped_by_manager() {
    let o1 = ok(apply(
        None,
        &deploy(3, "nginx:1"),
        "a",
        None,
        false,
        b(),
        T1,
    ));
    let err = apply(
        Some(&o1),
        &partial(json!({"replicas": 4, "template": {"spec": {"containers": [{"name": "app", "image": "nginx:9"}]}}})),
        "b",
        None,
        false,
        b(),
        T2,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"a\":\n- .spec.replicas\n- .spec.template.spec.containers[name=\"app\"].image"
    );
    let msg = conflict_message(&[
        Conflict {
            manager: "m".into(),
            field: ".spec.a".into(),
            operation: "Update".into(),
            api_version: "v1".into(),
            subresource: String::new(),
        },
        Conflict {
            manager: "m".into(),
            field: ".spec.b".into(),
            operation: "Update".into(),
            api_version: "v1".into(),
            subresource: String::new(),
        },
    ]);
    assert_eq!(
        msg,
        "Apply failed with 2 conflicts: conflicts with \"m\" using v1:\n- .spec.a\n- .spec.b"
    );
}

#[test]
fn force_takes_ownership() {
    let o1 = ok(apply(
        None,
        &deploy(3, "nginx:1"),
        "kubectl",
        None,
        false,
        b(),
        T1,
    ));
    let mut edited = o1.clone();
    edited["spec"]["replicas"] = json!(5);
    let o2 = record_update(Some(&o1), &edited, "kubectl-edit", "Update", None, b(), T2);
    let o3 = ok(apply(
        Some(&o2),
        &deploy(3, "nginx:1"),
        "kubectl",
        None,
        true,
        b(),
        T3,
    ));
    assert_eq!(o3["spec"]["replicas"], 3);
    assert!(
        !has_entry(&o3, "kubectl-edit"),
        "edit owned only replicas: {o3:#}"
    );
    let e = entry(&o3, "kubectl", "Apply");
    assert!(e["fieldsV1"]["f:spec"].get("f:replicas").is_some());
    assert_eq!(e["time"], T3);
    // And now a plain re-apply is a no-op.
    let o4 = ok(apply(
        Some(&o3),
        &deploy(3, "nginx:1"),
        "kubectl",
        None,
        false,
        b(),
        T4,
    ));
    assert_eq!(o3, o4);
}

#[test]
fn associative_list_merges_by_key_across_managers() {
    let o1 = ok(apply(None, &deploy(1, "app:1"), "a", None, false, b(), T1));
    let sidecar = partial(
        json!({"template": {"spec": {"containers": [{"name": "side", "image": "side:1"}]}}}),
    );
    let o2 = ok(apply(Some(&o1), &sidecar, "b", None, false, b(), T2));
    let cs = &o2["spec"]["template"]["spec"]["containers"];
    assert_eq!(cs.as_array().unwrap().len(), 2);
    assert_eq!(cs[0]["name"], "app");
    assert_eq!(cs[1]["name"], "side");
    let bset =
        &entry(&o2, "b", "Apply")["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"];
    assert_eq!(
        bset,
        &json!({"k:{\"name\":\"side\"}": {".": {}, "f:image": {}, "f:name": {}}})
    );
    // a re-applies with a new image: only its container changes.
    let o3 = ok(apply(
        Some(&o2),
        &deploy(1, "app:2"),
        "a",
        None,
        false,
        b(),
        T3,
    ));
    let cs = &o3["spec"]["template"]["spec"]["containers"];
    assert_eq!(cs.as_array().unwrap().len(), 2);
    assert_eq!(cs[0]["image"], "app:2");
    assert_eq!(cs[1]["image"], "side:1");
    // b drops its container: only a's remains.
    let o4 = ok(apply(
        Some(&o3),
        &partial(json!({"template": {"spec": {"containers": []}}})),
        "b",
        None,
        false,
        b(),
        T4,
    ));
    let cs = o4["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(cs.len(), 1);
    assert_eq!(cs[0]["name"], "app");
}

#[test]
fn set_list_merges_by_value() {
    let cm = |fins: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": fins}});
    let o1 = ok(apply(
        None,
        &cm(json!(["x.io/a"])),
        "a",
        None,
        false,
        b(),
        T1,
    ));
    let o2 = ok(apply(
        Some(&o1),
        &cm(json!(["x.io/b"])),
        "b",
        None,
        false,
        b(),
        T2,
    ));
    assert_eq!(o2["metadata"]["finalizers"], json!(["x.io/a", "x.io/b"]));
    assert_eq!(
        entry(&o2, "b", "Apply")["fieldsV1"],
        json!({"f:metadata": {"f:finalizers": {"v:\"x.io/b\"": {}}}})
    );
    let o3 = ok(apply(Some(&o2), &cm(json!([])), "a", None, false, b(), T3));
    assert_eq!(o3["metadata"]["finalizers"], json!(["x.io/b"]));
    assert!(!has_entry(&o3, "a"));
}

#[test]
fn atomic_list_is_replaced_whole() {
    let pod = |tols: Value| json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"tolerations": tols}});
    let o1 = ok(apply(
        None,
        &pod(json!([{"key": "a"}, {"key": "b"}])),
        "a",
        None,
        false,
        b(),
        T1,
    ));
    assert_eq!(
        entry(&o1, "a", "Apply")["fieldsV1"],
        json!({"f:spec": {"f:tolerations": {}}})
    );
    let cs = conflicts(apply(
        Some(&o1),
        &pod(json!([{"key": "c"}])),
        "b",
        None,
        false,
        b(),
        T2,
    ));
    assert_eq!(cs[0].field, ".spec.tolerations");
    let o2 = ok(apply(
        Some(&o1),
        &pod(json!([{"key": "c"}])),
        "b",
        None,
        true,
        b(),
        T2,
    ));
    assert_eq!(o2["spec"]["tolerations"], json!([{"key": "c"}]));
    assert!(!has_entry(&o2, "a"));
    // The same manager replacing its own atomic list is no conflict.
    let o3 = ok(apply(
        Some(&o2),
        &pod(json!([{"key": "d"}])),
        "b",
        None,
        false,
        b(),
        T3,
    ));
    assert_eq!(o3["spec"]["tolerations"], json!([{"key": "d"}]));
}

#[test]
fn explicit_null_removes_field_and_is_not_owned() {
    let o1 = ok(apply(
        None,
        &deploy(3, "nginx:1"),
        "a",
        None,
        false,
        b(),
        T1,
    ));
    let mut cfg = deploy(3, "nginx:1");
    cfg["metadata"]["labels"]["app"] = Value::Null;
    let o2 = ok(apply(Some(&o1), &cfg, "a", None, false, b(), T2));
    assert!(o2["metadata"]["labels"].get("app").is_none(), "{o2:#}");
    assert!(
        entry(&o2, "a", "Apply")["fieldsV1"]["f:metadata"]
            .get("f:labels")
            .is_none()
    );
    // Another manager nulling a's field is a conflict.
    let cs = conflicts(apply(
        Some(&o1),
        &partial(json!({"replicas": null})),
        "b",
        None,
        false,
        b(),
        T2,
    ));
    assert_eq!(cs[0].field, ".spec.replicas");
    assert_eq!(cs[0].manager, "a");
}

#[test]
fn status_subresource_entries_are_separate() {
    let o1 = ok(apply(
        None,
        &deploy(3, "nginx:1"),
        "ctl",
        None,
        false,
        b(),
        T1,
    ));
    let st = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "status": {"readyReplicas": 2}});
    let o2 = ok(apply(Some(&o1), &st, "ctl", Some("status"), false, b(), T2));
    assert_eq!(o2["status"]["readyReplicas"], 2);
    assert_eq!(
        o2["spec"]["replicas"], 3,
        "status apply must not prune spec"
    );
    let es = entries(&o2);
    assert_eq!(es.len(), 2);
    let s = es.iter().find(|e| e["subresource"] == "status").unwrap();
    assert_eq!(s["fieldsV1"], json!({"f:status": {"f:readyReplicas": {}}}));
    // The main-resource entry is another manager: conflicts name the subresource.
    let mut cfg = deploy(3, "nginx:1");
    cfg["status"] = json!({"readyReplicas": 9});
    let cs = conflicts(apply(Some(&o2), &cfg, "other", None, false, b(), T3));
    assert_eq!(
        conflict_message(&cs),
        "Apply failed with 1 conflict: conflict with \"ctl\" with subresource \"status\": .status.readyReplicas"
    );
}

#[test]
fn entries_sorted_apply_first_then_time() {
    let o1 = record_update(None, &deploy(1, "x"), "creator", "Update", None, b(), T1);
    let o2 = ok(apply(
        Some(&o1),
        &partial(json!({"paused": true})),
        "zeta",
        None,
        false,
        b(),
        T3,
    ));
    let o3 = ok(apply(
        Some(&o2),
        &partial(json!({"minReadySeconds": 5})),
        "alpha",
        None,
        false,
        b(),
        T4,
    ));
    let names: Vec<String> = entries(&o3)
        .iter()
        .map(|e| e["manager"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["zeta", "alpha", "creator"]);
}

#[test]
fn first_apply_to_untracked_object_conflicts_with_before_first_apply() {
    let live = deploy(3, "nginx:1");
    let cs = conflicts(apply(
        Some(&live),
        &deploy(4, "nginx:1"),
        "kubectl",
        None,
        false,
        b(),
        T1,
    ));
    assert_eq!(cs[0].manager, BEFORE_FIRST_APPLY);
    assert_eq!(cs[0].field, ".spec.replicas");
    let o = ok(apply(
        Some(&live),
        &deploy(3, "nginx:1"),
        "kubectl",
        None,
        false,
        b(),
        T1,
    ));
    assert!(has_entry(&o, BEFORE_FIRST_APPLY));
    assert!(has_entry(&o, "kubectl"));
}

#[test]
fn apply_rejects_bad_input() {
    assert!(matches!(
        apply(None, &json!({"kind": "X"}), "m", None, false, b(), T1),
        Err(ApplyError::Invalid(_))
    ));
    let mut cfg = deploy(1, "x");
    cfg["metadata"]["managedFields"] = json!([{"manager": "x"}]);
    assert_eq!(
        apply(None, &cfg, "m", None, false, b(), T1),
        Err(ApplyError::Invalid(
            "metadata.managedFields must be nil".into()
        ))
    );
    let dup =
        partial(json!({"template": {"spec": {"containers": [{"name": "a"}, {"name": "a"}]}}}));
    let err = apply(None, &dup, "m", None, false, b(), T1).unwrap_err();
    assert!(
        err.to_string()
            .contains("duplicate entries for key [name=\"a\"]"),
        "{err}"
    );
}

// ---------------------------------------------------------------- updates

#[test]
fn record_update_on_create_owns_everything() {
    let o = record_update(
        None,
        &deploy(2, "x"),
        "kubectl-create",
        "Update",
        None,
        b(),
        T1,
    );
    let e = entry(&o, "kubectl-create", "Update");
    assert_eq!(e["apiVersion"], "apps/v1");
    assert_eq!(e["time"], T1);
    let fs = &e["fieldsV1"];
    assert!(fs["f:spec"].get("f:replicas").is_some());
    // Newly created maps are members themselves in an Update set.
    assert!(fs["f:metadata"]["f:labels"].get(".").is_some());
    assert!(fs.get("f:apiVersion").is_none() && fs["f:metadata"].get("f:name").is_none());
}

#[test]
fn record_update_transfers_ownership() {
    let o1 = ok(apply(
        None,
        &deploy(3, "nginx:1"),
        "kubectl",
        None,
        false,
        b(),
        T1,
    ));
    let mut edited = o1.clone();
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
    edited["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("app");
    let o2 = record_update(Some(&o1), &edited, "kubectl-set", "Update", None, b(), T2);
    let set = entry(&o2, "kubectl-set", "Update");
    assert_eq!(
        set["fieldsV1"],
        json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {"f:image": {}}}}}}})
    );
    let a = &entry(&o2, "kubectl", "Apply")["fieldsV1"];
    assert!(
        a["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"]
            .get("f:image")
            .is_none()
    );
    assert!(
        a.get("f:metadata").is_none(),
        "removed label dropped from applier: {a:#}"
    );
    // The applier's entry keeps its time; only the writer's is new.
    assert_eq!(entry(&o2, "kubectl", "Apply")["time"], T1);
    // A no-op update changes nothing.
    let o3 = record_update(Some(&o2), &o2, "kubectl-set", "Update", None, b(), T3);
    assert_eq!(o2, o3);
    // A second update by the same manager merges into its entry.
    let mut again = o2.clone();
    again["spec"]["replicas"] = json!(7);
    let o4 = record_update(Some(&o2), &again, "kubectl-set", "Update", None, b(), T4);
    let e = entry(&o4, "kubectl-set", "Update");
    assert_eq!(e["time"], T4);
    assert!(e["fieldsV1"]["f:spec"].get("f:replicas").is_some());
    assert!(e["fieldsV1"]["f:spec"].get("f:template").is_some());
    assert_eq!(entries(&o4).len(), 2);
}

#[test]
fn record_update_drops_empty_managers() {
    let o0 = record_update(
        None,
        &partial(json!({"replicas": 1})),
        "creator",
        "Update",
        None,
        b(),
        T1,
    );
    // The creator owns the new `spec` map itself as well as its field.
    assert_eq!(
        entry(&o0, "creator", "Update")["fieldsV1"],
        json!({"f:spec": {".": {}, "f:replicas": {}}})
    );
    let mut n = o0.clone();
    n["spec"]["replicas"] = json!(2);
    let o1 = record_update(Some(&o0), &n, "a", "Update", None, b(), T2);
    assert_eq!(
        entry(&o1, "creator", "Update")["fieldsV1"],
        json!({"f:spec": {}})
    );
    let mut n = o1.clone();
    n["spec"]["replicas"] = json!(3);
    let o2 = record_update(Some(&o1), &n, "b", "Update", None, b(), T3);
    assert!(!has_entry(&o2, "a"));
    assert!(has_entry(&o2, "creator"));
    assert_eq!(
        entry(&o2, "b", "Update")["fieldsV1"],
        json!({"f:spec": {"f:replicas": {}}})
    );
}

#[test]
fn record_update_managed_fields_from_client() {
    let o1 = record_update(None, &deploy(1, "x"), "a", "Update", None, b(), T1);
    // Client replaces managedFields explicitly (as kubectl's migration does).
    let mut n = o1.clone();
    n["metadata"]["managedFields"] = json!([{
        "manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1",
        "time": T1, "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}
    }]);
    let o2 = record_update(Some(&o1), &n, "kubectl", "Update", None, b(), T2);
    assert_eq!(
        o2["metadata"]["managedFields"],
        n["metadata"]["managedFields"]
    );
    // Client omits managedFields: the old ones stay.
    let mut n = o1.clone();
    n["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    let o3 = record_update(Some(&o1), &n, "x", "Update", None, b(), T2);
    assert_eq!(o3, o1);
    // `[{}]` resets them and an existing object is then untracked.
    let mut n = o1.clone();
    n["metadata"]["managedFields"] = json!([{}]);
    n["spec"]["replicas"] = json!(9);
    let o4 = record_update(Some(&o1), &n, "x", "Update", None, b(), T2);
    assert!(o4["metadata"].get("managedFields").is_none());
    assert_eq!(o4["spec"]["replicas"], 9);
}

#[test]
fn update_entries_per_subresource() {
    let o1 = record_update(None, &deploy(1, "x"), "ctl", "Update", None, b(), T1);
    let mut n = o1.clone();
    n["status"] = json!({"replicas": 1});
    let o2 = record_update(Some(&o1), &n, "ctl", "Update", Some("status"), b(), T2);
    let es = entries(&o2);
    assert_eq!(es.len(), 2);
    let s = es.iter().find(|e| e["subresource"] == "status").unwrap();
    assert_eq!(
        s["fieldsV1"],
        json!({"f:status": {".": {}, "f:replicas": {}}})
    );
    assert_eq!(s["time"], T2);
}

// ---------------------------------------------------------------- field sets & hints

#[test]
fn field_set_ignores_server_fields_and_keeps_nulls() {
    let obj = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "d", "uid": "u", "resourceVersion": "1",
                     "creationTimestamp": "x", "annotations": {"a": "1"}},
        "data": {"k": "v", "n": null},
        "extra": {}
    });
    assert_eq!(
        field_set(&obj, b()),
        json!({"f:metadata": {"f:annotations": {"f:a": {}}}, "f:data": {"f:k": {}, "f:n": {}}, "f:extra": {}})
    );
}

#[test]
fn container_ports_keyed_with_defaulted_protocol() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}]}]}});
    let fs = field_set(&pod, b());
    let ports = &fs["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"]["f:ports"];
    assert_eq!(
        ports,
        &json!({"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}})
    );
}

#[test]
fn schema_hints_drive_crd_merges() {
    let schema = json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"],
                      "items": {"type": "object", "properties": {"id": {"type": "string"}, "v": {"type": "integer"}}}},
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "args": {"type": "array", "items": {"type": "string"}},
            "env": {"type": "object", "additionalProperties": {"type": "string"}},
            "sel": {"type": "object", "x-kubernetes-map-type": "atomic", "properties": {"a": {"type": "string"}}}
        }}
    }});
    let h = SchemaHints(&schema);
    assert_eq!(
        h.list_type(&["spec", "items"]),
        ListType::Map(vec!["id".into()])
    );
    assert_eq!(h.list_type(&["spec", "tags"]), ListType::Set);
    assert_eq!(h.list_type(&["spec", "args"]), ListType::Atomic);
    assert_eq!(h.list_type(&["metadata", "finalizers"]), ListType::Set);
    assert!(h.is_atomic_map(&["spec", "sel"]));
    assert!(h.is_granular_map(&["spec", "env"]));

    let cr = |spec: Value| json!({"apiVersion": "x.io/v1", "kind": "W", "metadata": {"name": "w"}, "spec": spec});
    let o1 = ok(apply(
        None,
        &cr(json!({"items": [{"id": "a", "v": 1}], "tags": ["t1"], "env": {"A": "1"}})),
        "m1",
        None,
        false,
        &h,
        T1,
    ));
    let o2 = ok(apply(
        Some(&o1),
        &cr(json!({"items": [{"id": "b", "v": 2}], "tags": ["t2"], "env": {"B": "2"}})),
        "m2",
        None,
        false,
        &h,
        T2,
    ));
    assert_eq!(
        o2["spec"]["items"],
        json!([{"id": "a", "v": 1}, {"id": "b", "v": 2}])
    );
    assert_eq!(o2["spec"]["tags"], json!(["t1", "t2"]));
    assert_eq!(o2["spec"]["env"], json!({"A": "1", "B": "2"}));
    assert_eq!(
        entry(&o2, "m2", "Apply")["fieldsV1"],
        json!({"f:spec": {"f:env": {"f:B": {}}, "f:items": {"k:{\"id\":\"b\"}": {".": {}, "f:id": {}, "f:v": {}}}, "f:tags": {"v:\"t2\"": {}}}})
    );
    let cs = conflicts(apply(
        Some(&o2),
        &cr(json!({"items": [{"id": "a", "v": 5}]})),
        "m2",
        None,
        false,
        &h,
        T3,
    ));
    assert_eq!(cs[0].field, ".spec.items[id=\"a\"].v");
}

// ---------------------------------------------------------------- strategic merge patch

#[test]
fn smp_changes_container_image_by_name() {
    let mut d = deploy(1, "app:1");
    d["spec"]["template"]["spec"]["containers"] = json!([
        {"name": "app", "image": "app:1", "args": ["a"]},
        {"name": "side", "image": "side:1"}
    ]);
    let p = json!({"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "side:2"}]}}}});
    let r = strategic_merge(&d, &p, b()).unwrap();
    let cs = &r["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        cs,
        &json!([
            {"name": "app", "image": "app:1", "args": ["a"]},
            {"name": "side", "image": "side:2"}
        ])
    );
    // New container appended.
    let p =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "new", "image": "n"}]}}}});
    let r = strategic_merge(&d, &p, b()).unwrap();
    assert_eq!(
        r["spec"]["template"]["spec"]["containers"][2]["name"],
        "new"
    );
}

#[test]
fn smp_patch_delete_removes_container() {
    let mut d = deploy(1, "app:1");
    d["spec"]["template"]["spec"]["containers"] =
        json!([{"name": "app", "image": "a"}, {"name": "side", "image": "s"}]);
    let p = json!({"spec": {"template": {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}}});
    let r = strategic_merge(&d, &p, b()).unwrap();
    assert_eq!(
        r["spec"]["template"]["spec"]["containers"],
        json!([{"name": "app", "image": "a"}])
    );
}

#[test]
fn smp_null_removes_label_and_maps_merge() {
    let mut d = deploy(1, "x");
    d["metadata"]["labels"]["tier"] = json!("web");
    let p = json!({"metadata": {"labels": {"app": null, "new": "1"}}, "spec": {"replicas": 4}});
    let r = strategic_merge(&d, &p, b()).unwrap();
    assert_eq!(r["metadata"]["labels"], json!({"tier": "web", "new": "1"}));
    assert_eq!(r["spec"]["replicas"], 4);
    assert_eq!(r["spec"]["selector"], d["spec"]["selector"]);
}

#[test]
fn smp_retain_keys() {
    let mut d = deploy(1, "x");
    d["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}});
    let p = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
    let r = strategic_merge(&d, &p, b()).unwrap();
    assert_eq!(r["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn smp_list_without_merge_key_is_replaced() {
    let mut d = deploy(1, "x");
    d["spec"]["template"]["spec"]["containers"][0]["args"] = json!(["a", "b"]);
    d["spec"]["template"]["spec"]["tolerations"] = json!([{"key": "k1"}, {"key": "k2"}]);
    let p = json!({"spec": {"template": {"spec": {
        "containers": [{"name": "app", "args": ["c"]}],
        "tolerations": [{"key": "k3"}]
    }}}});
    let r = strategic_merge(&d, &p, b()).unwrap();
    assert_eq!(
        r["spec"]["template"]["spec"]["containers"][0]["args"],
        json!(["c"])
    );
    assert_eq!(r["spec"]["template"]["spec"]["containers"][0]["image"], "x");
    assert_eq!(
        r["spec"]["template"]["spec"]["tolerations"],
        json!([{"key": "k3"}])
    );
}

#[test]
fn smp_directives_on_lists_and_maps() {
    let obj = json!({"metadata": {"finalizers": ["a", "b"], "labels": {"x": "1", "y": "2"}},
        "spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}});
    // Set lists merge, $deleteFromPrimitiveList removes.
    let p =
        json!({"metadata": {"finalizers": ["c"], "$deleteFromPrimitiveList/finalizers": ["a"]}});
    let r = strategic_merge(&obj, &p, b()).unwrap();
    assert_eq!(r["metadata"]["finalizers"], json!(["b", "c"]));
    // $patch: replace on a map.
    let p = json!({"metadata": {"labels": {"$patch": "replace", "z": "3"}}});
    let r = strategic_merge(&obj, &p, b()).unwrap();
    assert_eq!(r["metadata"]["labels"], json!({"z": "3"}));
    // $patch: replace inside a merge-key list.
    let p = json!({"spec": {"containers": [{"name": "z"}, {"$patch": "replace"}]}});
    let r = strategic_merge(&obj, &p, b()).unwrap();
    assert_eq!(r["spec"]["containers"], json!([{"name": "z"}]));
    // $setElementOrder.
    let p = json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}],
        "containers": [{"name": "c", "image": "i"}]}});
    let r = strategic_merge(&obj, &p, b()).unwrap();
    assert_eq!(
        r["spec"]["containers"],
        json!([{"name": "c", "image": "i"}, {"name": "a"}, {"name": "b"}])
    );
    // Missing merge key is an error; unknown $patch too.
    let p = json!({"spec": {"containers": [{"image": "i"}]}});
    assert!(
        strategic_merge(&obj, &p, b())
            .unwrap_err()
            .contains("merge key: name")
    );
    let p = json!({"spec": {"$patch": "bogus"}});
    assert!(strategic_merge(&obj, &p, b()).is_err());
    // $patch: delete on a map removes it.
    let p = json!({"metadata": {"labels": {"$patch": "delete"}}});
    let r = strategic_merge(&obj, &p, b()).unwrap();
    assert!(r["metadata"].get("labels").is_none());
}

#[test]
fn pruning_an_emptied_map_removes_it() {
    let cm = |labels: Option<Value>| {
        let mut v = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}});
        if let Some(l) = labels {
            v["metadata"]["labels"] = l;
        }
        v
    };
    let o1 = ok(apply(
        None,
        &cm(Some(json!({"tier": "x"}))),
        "a",
        None,
        false,
        b(),
        T1,
    ));
    let o2 = ok(apply(Some(&o1), &cm(None), "a", None, false, b(), T2));
    assert!(o2["metadata"].get("labels").is_none(), "{o2:#}");
    assert_eq!(o2["data"], json!({"k": "v"}));
    assert_eq!(
        entry(&o2, "a", "Apply")["fieldsV1"],
        json!({"f:data": {"f:k": {}}})
    );
}

#[test]
fn associative_list_merge_keeps_live_only_items_in_place() {
    let pod = |cs: Value| json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": cs}});
    let o1 = ok(apply(
        None,
        &pod(json!([{"name": "a"}, {"name": "b"}])),
        "m1",
        None,
        false,
        b(),
        T1,
    ));
    let o2 = ok(apply(
        Some(&o1),
        &pod(json!([{"name": "c"}, {"name": "a"}])),
        "m2",
        None,
        false,
        b(),
        T2,
    ));
    let names: Vec<&str> = o2["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["c", "a", "b"]);
    // "a" is shared: m1 dropping it keeps it, m1 dropping "b" removes it.
    let o3 = ok(apply(
        Some(&o2),
        &pod(json!([])),
        "m1",
        None,
        false,
        b(),
        T3,
    ));
    let names: Vec<&str> = o3["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["c", "a"]);
}

//! Checks of the generated CustomResourceDefinitions: documentation, structure, printer columns,
//! subresources, CEL rules (evaluated with the `cel` crate) and the YAML fixtures.

use std::path::PathBuf;

use serde_json::{Value, json};
use sluice_crd::{
    API_VERSION, CustomResourceDefinition, Pipeline, PipelinePhase, StartFrom, Stream, SubjectKind,
    Tenant, crds, crds_yaml,
};

fn crd(kind: &str) -> CustomResourceDefinition {
    crds()
        .into_iter()
        .find(|crd| crd.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD of kind {kind}"))
}

fn schema(kind: &str) -> Value {
    let crd = crd(kind);
    assert_eq!(crd.spec.versions.len(), 1, "{kind} serves one version");
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .unwrap_or_else(|| panic!("{kind} has no openAPIV3Schema"));
    serde_json::to_value(schema).expect("schema serializes")
}

/// The schema node at `path`: property names, `[]` for the items of an array.
fn node<'a>(schema: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(schema, |node, segment| {
        let next = if *segment == "[]" {
            node.get("items")
        } else {
            node.get("properties").and_then(|p| p.get(*segment))
        };
        next.unwrap_or_else(|| panic!("no schema at {path:?} (stuck at {segment})"))
    })
}

fn rules(node: &Value) -> Vec<String> {
    node.get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|rule| rule["rule"].as_str().expect("rule is a string").to_owned())
        .collect()
}

/// Calls `visit(path, node)` on every schema node below `schema` (properties, items and
/// additionalProperties), skipping the root `metadata`.
fn walk(schema: &Value, path: &str, visit: &mut dyn FnMut(&str, &Value)) {
    visit(path, schema);
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            if path.is_empty() && name == "metadata" {
                continue;
            }
            walk(property, &format!("{path}.{name}"), visit);
        }
    }
    if let Some(items) = schema.get("items") {
        walk(items, &format!("{path}[]"), visit);
    }
    if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        walk(additional, &format!("{path}{{}}"), visit);
    }
}

const KINDS: [&str; 3] = ["Tenant", "Stream", "Pipeline"];

#[test]
fn every_property_has_a_description() {
    for kind in KINDS {
        let schema = schema(kind);
        let mut missing = Vec::new();
        walk(&schema, "", &mut |path, node| {
            for (name, property) in node
                .get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                if path.is_empty() && name == "metadata" {
                    continue;
                }
                let described = property
                    .get("description")
                    .and_then(Value::as_str)
                    .is_some_and(|d| !d.trim().is_empty());
                if !described {
                    missing.push(format!("{path}.{name}"));
                }
            }
        });
        assert!(
            missing.is_empty(),
            "{kind}: properties without a description: {missing:?}"
        );
        assert!(
            schema["description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{kind}: the root schema has no description"
        );
    }
}

#[test]
fn descriptions_are_plain_text() {
    for kind in KINDS {
        let mut bad = Vec::new();
        walk(&schema(kind), "", &mut |path, node| {
            if let Some(description) = node.get("description").and_then(Value::as_str) {
                let rustdoc_link = description.contains("[`") || description.contains("](");
                let soft_wrapped = description.split("\n\n").any(|p| p.contains('\n'));
                if rustdoc_link || soft_wrapped || description.contains("Auto-generated") {
                    bad.push(format!("{path}: {description:?}"));
                }
            }
        });
        assert!(
            bad.is_empty(),
            "{kind}: descriptions with rustdoc markup: {bad:#?}"
        );
    }
}

#[test]
fn schemas_are_structural() {
    for kind in KINDS {
        let schema = schema(kind);
        assert_eq!(schema["type"], "object", "{kind}: root is an object");
        let mut violations = Vec::new();
        walk(&schema, "", &mut |path, node| {
            for keyword in [
                "$ref",
                "$defs",
                "definitions",
                "oneOf",
                "anyOf",
                "allOf",
                "not",
            ] {
                if node.get(keyword).is_some() {
                    violations.push(format!("{path}: has {keyword}"));
                }
            }
            let typed = node.get("type").is_some()
                || node.get("x-kubernetes-int-or-string") == Some(&json!(true))
                || node.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true));
            if !typed {
                violations.push(format!("{path}: no type"));
            }
            if node.get("properties").is_some() && node.get("additionalProperties").is_some() {
                violations.push(format!("{path}: both properties and additionalProperties"));
            }
            if node.get("uniqueItems") == Some(&json!(true)) {
                violations.push(format!("{path}: uniqueItems"));
            }
            if node.get("x-kubernetes-list-type") == Some(&json!("map")) {
                let required = &node["items"]["required"];
                for key in node["x-kubernetes-list-map-keys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    if !required.as_array().is_some_and(|r| r.contains(key)) {
                        violations.push(format!("{path}: list map key {key} is not required"));
                    }
                }
            }
        });
        assert!(
            violations.is_empty(),
            "{kind}: not structural: {violations:#?}"
        );
    }
}

#[test]
fn names_scope_and_categories() {
    let expected = [
        ("Tenant", "tenants", "Cluster", "tn"),
        ("Stream", "streams", "Namespaced", "sst"),
        ("Pipeline", "pipelines", "Namespaced", "pl"),
    ];
    for (kind, plural, scope, short) in expected {
        let crd = crd(kind);
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some(format!("{plural}.sluice.dev").as_str())
        );
        assert_eq!(crd.spec.group, "sluice.dev");
        assert_eq!(crd.spec.scope, scope, "{kind} scope");
        assert_eq!(crd.spec.names.plural, plural);
        assert_eq!(
            crd.spec.names.short_names,
            Some(vec![short.to_owned()]),
            "{kind}"
        );
        assert_eq!(
            crd.spec.names.categories,
            Some(vec!["sluice".to_owned()]),
            "{kind}"
        );
        assert_eq!(crd.spec.versions[0].name, "v1alpha1");
        assert!(crd.spec.versions[0].served && crd.spec.versions[0].storage);
    }
}

#[test]
fn printer_columns() {
    let ready = r#".status.conditions[?(@.type=="Ready")].status"#;
    /// Name, type and JSON path of a printer column.
    type Column = (&'static str, &'static str, &'static str);
    let expected: [(&str, &[Column]); 3] = [
        (
            "Pipeline",
            &[
                ("Ready", "string", ready),
                ("Phase", "string", ".status.phase"),
                ("Source", "string", ".spec.source.stream"),
                ("Parallelism", "integer", ".spec.parallelism"),
                ("Age", "date", ".metadata.creationTimestamp"),
            ],
        ),
        (
            "Tenant",
            &[
                ("Namespace", "string", ".status.namespace"),
                ("Ready", "string", ready),
                ("Pipelines", "integer", ".status.usage.pipelines"),
                ("Suspended", "boolean", ".spec.suspend"),
                ("Age", "date", ".metadata.creationTimestamp"),
            ],
        ),
        (
            "Stream",
            &[
                ("Subject", "string", ".status.subject"),
                ("Ready", "string", ready),
                ("Age", "date", ".metadata.creationTimestamp"),
            ],
        ),
    ];
    for (kind, columns) in expected {
        let crd = crd(kind);
        let actual: Vec<(String, String, String)> = crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| (c.name.clone(), c.type_.clone(), c.json_path.clone()))
            .collect();
        let expected: Vec<(String, String, String)> = columns
            .iter()
            .map(|(n, t, p)| (n.to_string(), t.to_string(), p.to_string()))
            .collect();
        assert_eq!(actual, expected, "{kind} printer columns");
    }
}

#[test]
fn subresources() {
    for kind in KINDS {
        let crd = crd(kind);
        let subresources = crd.spec.versions[0].subresources.as_ref();
        assert!(
            subresources.and_then(|s| s.status.as_ref()).is_some(),
            "{kind} has /status"
        );
    }
    let pipeline = crd("Pipeline");
    let scale = pipeline.spec.versions[0]
        .subresources
        .as_ref()
        .and_then(|s| s.scale.as_ref())
        .expect("Pipeline has /scale");
    assert_eq!(scale.spec_replicas_path, ".spec.parallelism");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
    for kind in ["Tenant", "Stream"] {
        let crd = crd(kind);
        assert!(
            crd.spec.versions[0]
                .subresources
                .as_ref()
                .unwrap()
                .scale
                .is_none(),
            "{kind}"
        );
    }
    // The scale paths point at integer fields that exist.
    let schema = schema("Pipeline");
    assert_eq!(node(&schema, &["spec", "parallelism"])["type"], "integer");
    assert_eq!(
        node(&schema, &["spec", "parallelism"])["minimum"],
        json!(0.0)
    );
    assert_eq!(node(&schema, &["spec", "parallelism"])["default"], json!(1));
    assert_eq!(node(&schema, &["status", "replicas"])["type"], "integer");
    assert_eq!(node(&schema, &["status", "selector"])["type"], "string");
}

#[test]
fn list_maps() {
    for kind in KINDS {
        let conditions = node(&schema(kind), &["status", "conditions"]).clone();
        assert_eq!(conditions["x-kubernetes-list-type"], "map", "{kind}");
        assert_eq!(
            conditions["x-kubernetes-list-map-keys"],
            json!(["type"]),
            "{kind}"
        );
        assert_eq!(
            conditions["items"]["properties"]["status"]["enum"],
            json!(["True", "False", "Unknown"])
        );
    }
    let pipeline = schema("Pipeline");
    let sinks = node(&pipeline, &["spec", "sinks"]);
    assert_eq!(sinks["x-kubernetes-list-type"], "map");
    assert_eq!(sinks["x-kubernetes-list-map-keys"], json!(["name"]));
    assert_eq!(sinks["minItems"], json!(1));
    let name = node(&pipeline, &["spec", "sinks", "[]", "name"]);
    assert_eq!(name["pattern"], sluice_crd::schema::DNS1123_LABEL_PATTERN);
    assert_eq!(name["maxLength"], json!(63));
    let routes = node(&pipeline, &["status", "routes"]);
    assert_eq!(routes["x-kubernetes-list-map-keys"], json!(["sink"]));
    let owners = node(&schema("Tenant"), &["spec", "owners"]).clone();
    assert_eq!(
        owners["x-kubernetes-list-map-keys"],
        json!(["kind", "name"])
    );
}

#[test]
fn cel_rules_are_where_the_schema_cannot_say_it() {
    let pipeline = schema("Pipeline");
    let at = |path: &[&str]| rules(node(&pipeline, path));
    assert_eq!(
        at(&["spec", "sinks", "[]"]),
        [sluice_crd::pipeline::SINK_ONE_OF_RULE]
    );
    assert_eq!(
        at(&["spec", "projection"]),
        [sluice_crd::pipeline::PROJECTION_ONE_OF_RULE]
    );
    assert_eq!(
        at(&["spec", "sinks", "[]", "file"]),
        [sluice_crd::pipeline::FILE_SINK_ONE_OF_RULE]
    );
    assert_eq!(
        at(&["spec", "source", "stream"]),
        [sluice_crd::pipeline::SOURCE_STREAM_IMMUTABLE_RULE]
    );
    assert_eq!(
        at(&["spec", "source"]),
        [sluice_crd::pipeline::START_TIME_RULE]
    );
    // Every sink kind is named in the one-of rule.
    let sink = node(&pipeline, &["spec", "sinks", "[]"]);
    for kind in sink["properties"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "name")
    {
        assert!(
            sluice_crd::pipeline::SINK_ONE_OF_RULE.contains(&format!("has(self.{kind})")),
            "sink kind {kind} is missing from the one-of rule"
        );
    }
    // Rules come with a message, and every rule of every CRD compiles.
    for kind in KINDS {
        walk(&schema(kind), "", &mut |path, node| {
            for rule in node["x-kubernetes-validations"]
                .as_array()
                .into_iter()
                .flatten()
            {
                assert!(
                    rule["message"].as_str().is_some_and(|m| !m.is_empty()),
                    "{path}"
                );
                let text = rule["rule"].as_str().unwrap();
                if let Err(e) = cel::Program::compile(text) {
                    panic!("{kind}{path}: rule {text:?} does not compile: {e}");
                }
            }
        });
    }
}

/// Evaluates a CEL rule the way the API server does: `self` is the value at the rule's node,
/// `oldSelf` the previous value (transition rules only).
fn eval(rule: &str, this: &Value, old: Option<&Value>) -> bool {
    let program = cel::Program::compile(rule).expect("rule compiles");
    let mut context = cel::Context::default();
    context
        .add_variable("self", this.clone())
        .expect("self converts");
    if let Some(old) = old {
        context
            .add_variable("oldSelf", old.clone())
            .expect("oldSelf converts");
    }
    match program.execute(&context) {
        Ok(cel::Value::Bool(result)) => result,
        other => panic!("rule {rule:?} on {this} gave {other:?}"),
    }
}

/// Paths and rules of the CEL rules `value` breaks; transition rules are checked against `old`
/// (by property; list items are checked as created).
fn cel_failures(schema: &Value, value: &Value, old: Option<&Value>) -> Vec<String> {
    fn check(
        schema: &Value,
        value: &Value,
        old: Option<&Value>,
        path: &str,
        out: &mut Vec<String>,
    ) {
        for rule in rules(schema) {
            let transition = rule.contains("oldSelf");
            match (transition, old) {
                (true, None) => {}
                (true, Some(old)) if !eval(&rule, value, Some(old)) => {
                    out.push(format!("{path}: {rule}"))
                }
                (false, _) if !eval(&rule, value, None) => out.push(format!("{path}: {rule}")),
                _ => {}
            }
        }
        if let (Some(properties), Some(object)) = (schema.get("properties"), value.as_object()) {
            for (name, child) in object {
                if let Some(child_schema) = properties.get(name) {
                    let child_old = old.and_then(|o| o.get(name));
                    check(
                        child_schema,
                        child,
                        child_old,
                        &format!("{path}.{name}"),
                        out,
                    );
                }
            }
        }
        if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
            for (i, item) in array.iter().enumerate() {
                check(items, item, None, &format!("{path}[{i}]"), out);
            }
        }
    }
    let mut out = Vec::new();
    check(schema, value, old, "", &mut out);
    out
}

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture_json(name: &str) -> Value {
    serde_norway::from_str(&fixture(name)).expect("fixture is YAML")
}

/// Keys of `value` that its schema does not declare (serde would silently drop them).
fn unknown_fields(schema: &Value, value: &Value, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&json!(true)) {
        return out;
    }
    if let (Some(properties), Some(object)) = (schema.get("properties"), value.as_object()) {
        for (name, child) in object {
            let child_path = format!("{path}.{name}");
            match properties.get(name) {
                Some(child_schema) => out.extend(unknown_fields(child_schema, child, &child_path)),
                None if path.is_empty()
                    && ["apiVersion", "kind", "metadata"].contains(&&**name) => {}
                None => out.push(child_path),
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, item) in array.iter().enumerate() {
            out.extend(unknown_fields(items, item, &format!("{path}[{i}]")));
        }
    }
    out
}

#[test]
fn fixtures_match_the_schemas_and_pass_the_cel_rules() {
    for (kind, file) in [
        ("Tenant", "tenant.yaml"),
        ("Stream", "stream.yaml"),
        ("Pipeline", "pipeline.yaml"),
    ] {
        let schema = schema(kind);
        let value = fixture_json(file);
        assert_eq!(value["apiVersion"], API_VERSION, "{file}");
        assert_eq!(value["kind"], kind, "{file}");
        let unknown = unknown_fields(&schema, &value, "");
        assert!(
            unknown.is_empty(),
            "{file}: fields not in the {kind} schema: {unknown:?}"
        );
        let failures = cel_failures(&schema, &value, None);
        assert!(failures.is_empty(), "{file}: CEL rules fail: {failures:?}");
        let failures = cel_failures(&schema, &value, Some(&value));
        assert!(
            failures.is_empty(),
            "{file}: transition rules fail on no change: {failures:?}"
        );
    }
}

#[test]
fn tenant_fixture_deserializes() {
    let tenant: Tenant = serde_norway::from_str(&fixture("tenant.yaml")).unwrap();
    assert_eq!(tenant.metadata.name.as_deref(), Some("acme"));
    assert_eq!(tenant.spec.display_name.as_deref(), Some("ACME Payments"));
    assert_eq!(tenant.spec.owners.len(), 2);
    assert_eq!(tenant.spec.owners[0].kind, SubjectKind::Group);
    assert_eq!(tenant.spec.quota.max_pipelines, Some(10));
    assert_eq!(
        tenant.spec.quota.memory.as_ref().map(|q| q.0.as_str()),
        Some("16Gi")
    );
    assert_eq!(
        tenant.spec.quota.ingest.as_ref().and_then(|i| i.burst),
        Some(10000)
    );
    let isolation = tenant.spec.isolation.as_ref().unwrap();
    assert_eq!(isolation.tolerations[0].value.as_deref(), Some("acme"));
    assert_eq!(isolation.extra_egress[0].ports[1].port, 443);
    assert!(!tenant.spec.suspend);
    roundtrip(&tenant);
}

#[test]
fn stream_fixture_deserializes() {
    let stream: Stream = serde_norway::from_str(&fixture("stream.yaml")).unwrap();
    assert_eq!(stream.metadata.namespace.as_deref(), Some("sluice-acme"));
    let retention = stream.spec.retention.as_ref().unwrap();
    assert_eq!(retention.max_age.as_deref(), Some("7d"));
    assert_eq!(stream.spec.partitions, 3);
    assert_eq!(
        stream.spec.schema.as_ref().unwrap()["required"],
        json!(["id", "amount"])
    );
    roundtrip(&stream);
}

#[test]
fn pipeline_fixture_deserializes() {
    let pipeline: Pipeline = serde_norway::from_str(&fixture("pipeline.yaml")).unwrap();
    let spec = &pipeline.spec;
    assert_eq!(spec.source.stream, "orders");
    assert_eq!(spec.source.start_from, StartFrom::All);
    assert_eq!(spec.filter.as_deref(), Some("event.amount > 100.0"));
    let fields = spec.projection.as_ref().unwrap().fields.as_ref().unwrap();
    assert_eq!(fields[1].as_.as_deref(), Some("customerId"));
    let names: Vec<&str> = spec.sinks.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["alerts", "webhook", "warehouse", "archive", "debug"]
    );
    assert_eq!(
        spec.sinks[1]
            .http
            .as_ref()
            .unwrap()
            .secret_ref
            .as_ref()
            .unwrap()
            .key,
        "authorization"
    );
    assert_eq!(
        spec.sinks[2]
            .postgres
            .as_ref()
            .unwrap()
            .connection_secret_ref
            .name,
        "warehouse-db"
    );
    assert_eq!(spec.sinks[4].file.as_ref().unwrap().stdout, Some(true));
    assert_eq!(spec.parallelism, 2);
    assert_eq!(spec.batching.as_ref().unwrap().max_events, Some(500));
    assert_eq!(
        spec.dead_letter.as_ref().unwrap().stream,
        "orders-dead-letter"
    );
    roundtrip(&pipeline);
}

#[test]
fn defaults_apply_when_fields_are_omitted() {
    let pipeline: Pipeline = serde_norway::from_str(
        "apiVersion: sluice.dev/v1alpha1\nkind: Pipeline\nmetadata: {name: p}\n\
         spec: {source: {stream: s}, sinks: [{name: out, file: {stdout: true}}]}\n",
    )
    .unwrap();
    assert_eq!(pipeline.spec.parallelism, 1);
    assert_eq!(pipeline.spec.source.start_from, StartFrom::New);
    assert!(!pipeline.spec.suspend);
    let stream: Stream = serde_norway::from_str(
        "apiVersion: sluice.dev/v1alpha1\nkind: Stream\nmetadata: {name: s}\nspec: {}\n",
    )
    .unwrap();
    assert_eq!((stream.spec.partitions, stream.spec.replicas), (1, 1));
    let status: sluice_crd::PipelineStatus =
        serde_json::from_value(json!({"phase": "Degraded", "replicas": 2})).unwrap();
    assert_eq!(status.phase, Some(PipelinePhase::Degraded));
    assert_eq!(status.ready_replicas, 0);
}

fn roundtrip<T>(object: &T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let yaml = serde_norway::to_string(object).unwrap();
    let back: T = serde_norway::from_str(&yaml).unwrap();
    assert_eq!(&back, object, "YAML round trip changes the object");
}

/// The pipeline fixture as JSON, changed by `edit`.
fn pipeline_with(edit: impl FnOnce(&mut Value)) -> Value {
    let mut value = fixture_json("pipeline.yaml");
    edit(&mut value);
    value
}

#[test]
fn a_sink_needs_exactly_one_kind() {
    let schema = schema("Pipeline");
    let two = pipeline_with(|p| p["spec"]["sinks"][0]["file"] = json!({"stdout": true}));
    let failures = cel_failures(&schema, &two, None);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].starts_with(".spec.sinks[0]:"), "{failures:?}");
    let none = pipeline_with(|p| p["spec"]["sinks"][3] = json!({"name": "nothing"}));
    let failures = cel_failures(&schema, &none, None);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].starts_with(".spec.sinks[3]:"), "{failures:?}");
}

#[test]
fn a_projection_needs_exactly_one_of_fields_and_expression() {
    let schema = schema("Pipeline");
    let both = pipeline_with(|p| p["spec"]["projection"]["expression"] = json!("{'id': event.id}"));
    assert_eq!(cel_failures(&schema, &both, None).len(), 1);
    let neither = pipeline_with(|p| p["spec"]["projection"] = json!({}));
    assert_eq!(cel_failures(&schema, &neither, None).len(), 1);
    let expression = pipeline_with(|p| p["spec"]["projection"] = json!({"expression": "{}"}));
    assert_eq!(
        cel_failures(&schema, &expression, None),
        Vec::<String>::new()
    );
}

#[test]
fn a_file_sink_is_a_path_or_stdout() {
    let schema = schema("Pipeline");
    let file = |file: Value| pipeline_with(|p| p["spec"]["sinks"][4]["file"] = file);
    assert!(cel_failures(&schema, &file(json!({"path": "/tmp/out.jsonl"})), None).is_empty());
    for bad in [
        json!({}),
        json!({"stdout": false}),
        json!({"path": "/x", "stdout": true}),
    ] {
        assert_eq!(
            cel_failures(&schema, &file(bad.clone()), None).len(),
            1,
            "{bad}"
        );
    }
}

#[test]
fn start_time_goes_with_start_from_time() {
    let schema = schema("Pipeline");
    let source = |source: Value| pipeline_with(|p| p["spec"]["source"] = source);
    let good = [
        json!({"stream": "orders"}),
        json!({"stream": "orders", "startFrom": "new"}),
        json!({"stream": "orders", "startFrom": "time", "startTime": "2025-01-01T00:00:00Z"}),
    ];
    for source_value in good {
        assert!(
            cel_failures(&schema, &source(source_value.clone()), None).is_empty(),
            "{source_value}"
        );
    }
    let bad = [
        json!({"stream": "orders", "startFrom": "time"}),
        json!({"stream": "orders", "startFrom": "all", "startTime": "2025-01-01T00:00:00Z"}),
    ];
    for source_value in bad {
        assert_eq!(
            cel_failures(&schema, &source(source_value.clone()), None).len(),
            1,
            "{source_value}"
        );
    }
}

#[test]
fn the_source_stream_is_immutable() {
    let schema = schema("Pipeline");
    let old = fixture_json("pipeline.yaml");
    let moved = pipeline_with(|p| p["spec"]["source"]["stream"] = json!("payments"));
    let failures = cel_failures(&schema, &moved, Some(&old));
    assert_eq!(failures, [".spec.source.stream: self == oldSelf"]);
    // Everything else may change.
    let scaled = pipeline_with(|p| {
        p["spec"]["parallelism"] = json!(5);
        p["spec"]["source"]["startFrom"] = json!("new");
    });
    assert!(cel_failures(&schema, &scaled, Some(&old)).is_empty());
    // Creation does not evaluate transition rules.
    assert!(cel_failures(&schema, &moved, None).is_empty());
}

#[test]
fn crds_yaml_is_deterministic_multi_document_yaml() {
    let yaml = crds_yaml();
    assert_eq!(yaml, crds_yaml(), "two renderings differ");
    assert!(yaml.starts_with("---\n"));
    let documents: Vec<&str> = yaml
        .split("---\n")
        .filter(|d| !d.trim().is_empty())
        .collect();
    assert_eq!(documents.len(), 3);
    let parsed: Vec<CustomResourceDefinition> = documents
        .iter()
        .map(|d| serde_norway::from_str(d).expect("each document is a CRD"))
        .collect();
    assert_eq!(parsed, crds(), "the YAML does not parse back into crds()");
    let kinds: Vec<&str> = parsed.iter().map(|c| c.spec.names.kind.as_str()).collect();
    assert_eq!(kinds, ["Tenant", "Stream", "Pipeline"]);
}

#[test]
fn credentials_are_only_secret_references() {
    // No sink field may carry a credential inline: anything named like one is a Secret reference.
    let pipeline = schema("Pipeline");
    let mut inline = Vec::new();
    walk(
        node(&pipeline, &["spec", "sinks", "[]"]),
        "",
        &mut |path, node| {
            let name = path
                .rsplit('.')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let suspicious = [
                "password",
                "token",
                "credential",
                "secret",
                "connection",
                "auth",
            ]
            .iter()
            .any(|word| name.contains(word));
            let is_secret_ref =
                node["properties"]["name"].is_object() && name.ends_with("secretref");
            if suspicious && !is_secret_ref {
                inline.push(path.to_owned());
            }
        },
    );
    assert!(inline.is_empty(), "inline credential fields: {inline:?}");
}

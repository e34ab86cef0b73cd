use super::*;
use serde_json::json;

fn cr(spec: Value) -> Value {
    json!({"apiVersion": "sluice.dev/v1", "kind": "Pipeline", "metadata": {"name": "p1"}, "spec": spec})
}

fn root(spec_schema: Value) -> Value {
    json!({"type": "object", "properties": {"spec": spec_schema}})
}

fn msgs(o: &Outcome) -> Vec<String> {
    o.causes.iter().map(Cause::full).collect()
}

fn one(o: &Outcome) -> &Cause {
    assert_eq!(o.causes.len(), 1, "causes: {:?}", o.causes);
    &o.causes[0]
}

// ---------- pruning ----------

#[test]
fn prunes_unknown_fields_recursively() {
    let s = root(json!({"type": "object", "properties": {
        "a": {"type": "string"},
        "nested": {"type": "object", "properties": {"x": {"type": "integer"}}},
        "list": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "string"}}}}
    }}));
    let obj = cr(json!({"a": "1", "foo": 1, "nested": {"x": 1, "y": 2},
        "list": [{"n": "a", "bad": true}]}));
    let o = validate(&s, &obj, None);
    assert!(o.is_valid(), "{:?}", o.causes);
    assert_eq!(
        o.object["spec"],
        json!({"a": "1", "nested": {"x": 1}, "list": [{"n": "a"}]})
    );
    let mut u = o.unknown_fields.clone();
    u.sort();
    assert_eq!(u, vec!["spec.foo", "spec.list[0].bad", "spec.nested.y"]);
}

#[test]
fn keeps_root_meta_and_prunes_unknown_root_fields() {
    let s = root(json!({"type": "object"}));
    let mut obj = cr(json!({}));
    obj["metadata"]["labels"] = json!({"a": "b"});
    obj["extra"] = json!(1);
    let o = validate(&s, &obj, None);
    assert_eq!(o.object["metadata"]["labels"], json!({"a": "b"}));
    assert_eq!(o.object["apiVersion"], json!("sluice.dev/v1"));
    assert!(o.object.get("extra").is_none());
    assert_eq!(o.unknown_fields, vec!["extra"]);
}

#[test]
fn preserve_unknown_fields_keeps_everything_below() {
    let s = root(json!({"type": "object", "properties": {
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        "half": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                 "properties": {"k": {"type": "object", "properties": {"z": {"type": "string"}}}}}
    }}));
    let obj = cr(
        json!({"free": {"any": {"deep": [1, 2]}}, "half": {"other": 1, "k": {"z": "a", "drop": 1}}}),
    );
    let o = validate(&s, &obj, None);
    assert_eq!(o.object["spec"]["free"], json!({"any": {"deep": [1, 2]}}));
    assert_eq!(
        o.object["spec"]["half"],
        json!({"other": 1, "k": {"z": "a"}})
    );
    assert_eq!(o.unknown_fields, vec!["spec.half.k.drop"]);
}

#[test]
fn embedded_resource_keeps_type_meta() {
    let s = root(json!({"type": "object", "properties": {
        "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                     "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}
    }}));
    let obj = cr(json!({"template": {"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "x"}, "spec": {"c": 1}, "junk": 1}}));
    let o = validate(&s, &obj, None);
    assert_eq!(
        o.object["spec"]["template"],
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"c": 1}})
    );
    assert_eq!(o.unknown_fields, vec!["spec.template.junk"]);
}

#[test]
fn additional_properties_schema_prunes_inside_values() {
    let s = root(json!({"type": "object", "properties": {
        "m": {"type": "object", "additionalProperties": {"type": "object", "properties": {"v": {"type": "string"}}}}
    }}));
    let o = validate(&s, &cr(json!({"m": {"a": {"v": "1", "w": 2}}})), None);
    assert_eq!(o.object["spec"]["m"], json!({"a": {"v": "1"}}));
    assert_eq!(o.unknown_fields, vec!["spec.m.a.w"]);
}

#[test]
fn root_preserve_unknown_fields_prunes_nothing() {
    let s = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    let o = validate(&s, &cr(json!({"x": 1})), None);
    assert_eq!(o.object["spec"], json!({"x": 1}));
    assert!(o.unknown_fields.is_empty());
}

// ---------- defaulting and nulls ----------

#[test]
fn applies_defaults_including_nested() {
    let s = root(json!({"type": "object", "properties": {
        "parallelism": {"type": "integer", "default": 1},
        "opts": {"type": "object", "default": {}, "properties": {
            "mode": {"type": "string", "default": "fast"}}},
        "present": {"type": "object", "properties": {"d": {"type": "boolean", "default": true}}},
        "absent": {"type": "object", "properties": {"d": {"type": "boolean", "default": true}}},
        "items": {"type": "array", "items": {"type": "object", "properties": {
            "w": {"type": "integer", "default": 5}}}}
    }}));
    let obj = cr(json!({"present": {}, "items": [{}, {"w": 2}]}));
    let o = validate(&s, &obj, None);
    assert!(o.is_valid(), "{:?}", o.causes);
    assert_eq!(
        o.object["spec"],
        json!({"parallelism": 1, "opts": {"mode": "fast"}, "present": {"d": true},
               "items": [{"w": 5}, {"w": 2}]})
    );
}

#[test]
fn defaults_do_not_override_values() {
    let s = root(json!({"type": "object", "properties": {"p": {"type": "integer", "default": 1}}}));
    let o = validate(&s, &cr(json!({"p": 7})), None);
    assert_eq!(o.object["spec"]["p"], json!(7));
}

#[test]
fn non_nullable_null_is_pruned_or_defaulted() {
    let s = root(json!({"type": "object", "properties": {
        "x": {"type": "string"},
        "y": {"type": "string", "default": "d"},
        "z": {"type": "string", "nullable": true},
        "zd": {"type": "string", "nullable": true, "default": "d"}
    }}));
    let o = validate(
        &s,
        &cr(json!({"x": null, "y": null, "z": null, "zd": null})),
        None,
    );
    assert!(o.is_valid(), "{:?}", o.causes);
    assert_eq!(o.object["spec"], json!({"y": "d", "z": null, "zd": null}));
}

#[test]
fn null_array_item_is_a_type_error() {
    let s = root(json!({"type": "object", "properties": {
        "l": {"type": "array", "items": {"type": "string"}}}}));
    let o = validate(&s, &cr(json!({"l": ["a", null]})), None);
    let c = one(&o);
    assert_eq!(c.field, "spec.l[1]");
    assert_eq!(c.reason, "FieldValueTypeInvalid");
    assert_eq!(
        c.message,
        "Invalid value: \"null\": spec.l[1] in body must be of type string: \"null\""
    );
}

// ---------- types ----------

#[test]
fn wrong_type() {
    let s = root(json!({"type": "object", "properties": {"replicas": {"type": "integer"}}}));
    let o = validate(&s, &cr(json!({"replicas": "3"})), None);
    let c = one(&o);
    assert_eq!(c.reason, "FieldValueTypeInvalid");
    assert_eq!(
        c.full(),
        "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\""
    );
}

#[test]
fn integer_accepted_for_number_and_integral_float_for_integer() {
    let s = root(json!({"type": "object", "properties": {
        "n": {"type": "number"}, "i": {"type": "integer"}}}));
    assert!(validate(&s, &cr(json!({"n": 3, "i": 2.0})), None).is_valid());
    let o = validate(&s, &cr(json!({"i": 2.5})), None);
    assert_eq!(
        one(&o).message,
        "Invalid value: \"number\": spec.i in body must be of type integer: \"number\""
    );
}

#[test]
fn booleans_objects_arrays_type_checked() {
    let s = root(json!({"type": "object", "properties": {
        "b": {"type": "boolean"}, "o": {"type": "object"}, "a": {"type": "array", "items": {"type": "string"}}}}));
    let o = validate(&s, &cr(json!({"b": "true", "o": [], "a": {}})), None);
    let m = msgs(&o);
    assert!(m.contains(&"spec.b: Invalid value: \"string\": spec.b in body must be of type boolean: \"string\"".to_string()), "{m:?}");
    assert!(
        m.contains(
            &"spec.o: Invalid value: \"array\": spec.o in body must be of type object: \"array\""
                .to_string()
        ),
        "{m:?}"
    );
    assert!(
        m.contains(
            &"spec.a: Invalid value: \"object\": spec.a in body must be of type array: \"object\""
                .to_string()
        ),
        "{m:?}"
    );
}

#[test]
fn int_or_string() {
    let s = root(
        json!({"type": "object", "properties": {"port": {"x-kubernetes-int-or-string": true}}}),
    );
    assert!(validate(&s, &cr(json!({"port": 80})), None).is_valid());
    assert!(validate(&s, &cr(json!({"port": "http"})), None).is_valid());
    let o = validate(&s, &cr(json!({"port": true})), None);
    assert_eq!(
        one(&o).message,
        "Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\""
    );
}

#[test]
fn date_time_format() {
    let s = root(
        json!({"type": "object", "properties": {"t": {"type": "string", "format": "date-time"}}}),
    );
    assert!(validate(&s, &cr(json!({"t": "2024-01-02T03:04:05Z"})), None).is_valid());
    let o = validate(&s, &cr(json!({"t": "yesterday"})), None);
    assert_eq!(
        one(&o).full(),
        "spec.t: Invalid value: \"yesterday\": spec.t in body must be of type date-time: \"yesterday\""
    );
}

// ---------- keywords ----------

#[test]
fn required() {
    let s = root(
        json!({"type": "object", "required": ["sinks"], "properties": {"sinks": {"type": "array", "items": {"type": "string"}}}}),
    );
    let o = validate(&s, &cr(json!({})), None);
    let c = one(&o);
    assert_eq!(c.reason, "FieldValueRequired");
    assert_eq!(c.full(), "spec.sinks: Required value");
}

#[test]
fn required_at_root() {
    let s =
        json!({"type": "object", "required": ["spec"], "properties": {"spec": {"type": "object"}}});
    let o = validate(
        &s,
        &json!({"apiVersion": "a/v1", "kind": "K", "metadata": {}}),
        None,
    );
    assert_eq!(one(&o).full(), "spec: Required value");
}

#[test]
fn enum_values() {
    let s = root(
        json!({"type": "object", "properties": {"kind": {"type": "string", "enum": ["a", "b"]},
        "n": {"type": "integer", "enum": [1, 2]}}}),
    );
    let o = validate(&s, &cr(json!({"kind": "x"})), None);
    let c = one(&o);
    assert_eq!(c.reason, "FieldValueNotSupported");
    assert_eq!(
        c.full(),
        "spec.kind: Unsupported value: \"x\": supported values: \"a\", \"b\""
    );
    let o = validate(&s, &cr(json!({"n": 3})), None);
    assert_eq!(
        one(&o).message,
        "Unsupported value: 3: supported values: \"1\", \"2\""
    );
    assert!(validate(&s, &cr(json!({"kind": "b", "n": 2})), None).is_valid());
}

#[test]
fn pattern() {
    let s = root(
        json!({"type": "object", "properties": {"name": {"type": "string", "pattern": "^[a-z]+$"}}}),
    );
    let o = validate(&s, &cr(json!({"name": "ABC"})), None);
    let c = one(&o);
    assert_eq!(c.reason, "FieldValueInvalid");
    assert_eq!(
        c.full(),
        "spec.name: Invalid value: \"ABC\": spec.name in body should match '^[a-z]+$'"
    );
    assert!(validate(&s, &cr(json!({"name": "abc"})), None).is_valid());
}

#[test]
fn minimum_and_maximum() {
    let s = root(json!({"type": "object", "properties": {
        "parallelism": {"type": "integer", "minimum": 0, "maximum": 10},
        "ratio": {"type": "number", "exclusiveMinimum": true, "minimum": 0, "exclusiveMaximum": true, "maximum": 1.5}}}));
    let o = validate(&s, &cr(json!({"parallelism": -1})), None);
    assert_eq!(
        one(&o).full(),
        "spec.parallelism: Invalid value: -1: spec.parallelism in body should be greater than or equal to 0"
    );
    let o = validate(&s, &cr(json!({"parallelism": 11})), None);
    assert_eq!(
        one(&o).message,
        "Invalid value: 11: spec.parallelism in body should be less than or equal to 10"
    );
    let o = validate(&s, &cr(json!({"ratio": 0})), None);
    assert_eq!(
        one(&o).message,
        "Invalid value: 0: spec.ratio in body should be greater than 0"
    );
    let o = validate(&s, &cr(json!({"ratio": 1.5})), None);
    assert_eq!(
        one(&o).message,
        "Invalid value: 1.5: spec.ratio in body should be less than 1.5"
    );
    assert!(validate(&s, &cr(json!({"parallelism": 0, "ratio": 0.5})), None).is_valid());
}

#[test]
fn multiple_of() {
    let s =
        root(json!({"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 5}}}));
    let o = validate(&s, &cr(json!({"n": 7})), None);
    assert_eq!(
        one(&o).message,
        "Invalid value: 7: spec.n in body should be a multiple of 5"
    );
    assert!(validate(&s, &cr(json!({"n": 10})), None).is_valid());
}

#[test]
fn string_lengths() {
    let s = root(
        json!({"type": "object", "properties": {"name": {"type": "string", "minLength": 2, "maxLength": 4}}}),
    );
    let o = validate(&s, &cr(json!({"name": "a"})), None);
    assert_eq!(
        one(&o).full(),
        "spec.name: Invalid value: \"a\": spec.name in body should be at least 2 chars long"
    );
    let o = validate(&s, &cr(json!({"name": "abcde"})), None);
    let c = one(&o);
    assert_eq!(c.reason, "FieldValueTooLong");
    assert_eq!(
        c.full(),
        "spec.name: Too long: may not be more than 4 bytes"
    );
    // lengths count characters, not bytes
    assert!(validate(&s, &cr(json!({"name": "ééé"})), None).is_valid());
}

#[test]
fn item_counts() {
    let s = root(
        json!({"type": "object", "properties": {"l": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "integer"}}}}),
    );
    let o = validate(&s, &cr(json!({"l": []})), None);
    assert_eq!(
        one(&o).full(),
        "spec.l: Invalid value: 0: spec.l in body should have at least 1 items"
    );
    let o = validate(&s, &cr(json!({"l": [1, 2, 3]})), None);
    let c = one(&o);
    assert_eq!(c.reason, "FieldValueTooMany");
    assert_eq!(c.full(), "spec.l: Too many: 3: must have at most 2 items");
}

#[test]
fn property_counts() {
    let s = root(
        json!({"type": "object", "properties": {"m": {"type": "object", "minProperties": 1, "maxProperties": 1,
        "additionalProperties": {"type": "string"}}}}),
    );
    let o = validate(&s, &cr(json!({"m": {}})), None);
    assert_eq!(
        one(&o).full(),
        "spec.m: Invalid value: 0: spec.m in body should have at least 1 properties"
    );
    let o = validate(&s, &cr(json!({"m": {"a": "1", "b": "2"}})), None);
    let c = one(&o);
    assert_eq!(c.reason, "FieldValueTooMany");
    assert_eq!(c.full(), "spec.m: Too many: 2: must have at most 1 item");
}

#[test]
fn additional_properties_values_validated() {
    let s = root(
        json!({"type": "object", "properties": {"labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 3}}}}),
    );
    let o = validate(&s, &cr(json!({"labels": {"a": "ok", "b": 5}})), None);
    assert_eq!(
        one(&o).full(),
        "spec.labels.b: Invalid value: \"integer\": spec.labels.b in body must be of type string: \"integer\""
    );
}

#[test]
fn nested_array_paths() {
    let s = root(
        json!({"type": "object", "properties": {"sinks": {"type": "array", "items": {
        "type": "object", "required": ["name"], "properties": {"name": {"type": "string", "minLength": 1}}}}}}),
    );
    let o = validate(
        &s,
        &cr(json!({"sinks": [{"name": "a"}, {}, {"name": ""}]})),
        None,
    );
    assert_eq!(
        msgs(&o),
        vec![
            "spec.sinks[1].name: Required value".to_string(),
            "spec.sinks[2].name: Invalid value: \"\": spec.sinks[2].name in body should be at least 1 chars long".to_string(),
        ]
    );
}

#[test]
fn one_of_required_lists() {
    let s = root(
        json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
        "oneOf": [{"required": ["a"]}, {"required": ["b"]}]}),
    );
    assert!(validate(&s, &cr(json!({"a": "x"})), None).is_valid());
    let o = validate(&s, &cr(json!({})), None);
    assert_eq!(
        msgs(&o),
        vec![
            "<nil>: Invalid value: \"\": \"spec\" must validate one and only one schema (oneOf). Found none valid".to_string(),
            "spec.a: Required value".to_string(),
        ]
    );
    let o = validate(&s, &cr(json!({"a": "x", "b": "y"})), None);
    assert_eq!(
        msgs(&o),
        vec!["<nil>: Invalid value: \"\": \"spec\" must validate one and only one schema (oneOf). Found 2 valid alternatives".to_string()]
    );
}

#[test]
fn any_of_and_not() {
    let s = root(
        json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
        "anyOf": [{"required": ["a"]}, {"required": ["b"]}],
        "not": {"required": ["a", "b"]}}),
    );
    assert!(validate(&s, &cr(json!({"b": "x"})), None).is_valid());
    let o = validate(&s, &cr(json!({})), None);
    assert_eq!(
        o.causes[0].full(),
        "<nil>: Invalid value: \"\": \"spec\" must validate at least one schema (anyOf)"
    );
    assert_eq!(o.causes[1].full(), "spec.a: Required value");
    let o = validate(&s, &cr(json!({"a": "1", "b": "2"})), None);
    assert_eq!(
        msgs(&o),
        vec!["<nil>: Invalid value: \"\": \"spec\" must not validate the schema (not)".to_string()]
    );
}

#[test]
fn all_of() {
    let s = root(
        json!({"type": "object", "properties": {"n": {"type": "integer", "allOf": [{"minimum": 1}, {"maximum": 5}]}}}),
    );
    assert!(validate(&s, &cr(json!({"n": 3})), None).is_valid());
    let o = validate(&s, &cr(json!({"n": 9})), None);
    assert_eq!(
        msgs(&o),
        vec![
            "spec.n: Invalid value: 9: spec.n in body should be less than or equal to 5"
                .to_string(),
            "<nil>: Invalid value: \"\": \"spec.n\" must validate all the schemas (allOf)"
                .to_string(),
        ]
    );
}

// ---------- list types ----------

#[test]
fn list_set_duplicates() {
    let s = root(
        json!({"type": "object", "properties": {"tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}}}),
    );
    let o = validate(&s, &cr(json!({"tags": ["a", "b", "a", "a"]})), None);
    let c = one(&o);
    assert_eq!(c.reason, "FieldValueDuplicate");
    assert_eq!(c.full(), "spec.tags[2]: Duplicate value: \"a\"");
}

#[test]
fn list_map_duplicate_keys() {
    let s = root(
        json!({"type": "object", "properties": {"sinks": {"type": "array",
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
        "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}}}}),
    );
    let o = validate(
        &s,
        &cr(json!({"sinks": [{"name": "a", "port": 1}, {"name": "b"}, {"name": "a", "port": 2}]})),
        None,
    );
    let c = one(&o);
    assert_eq!(c.reason, "FieldValueDuplicate");
    assert_eq!(c.field, "spec.sinks[2]");
    assert_eq!(
        c.message,
        "Duplicate value: map[string]interface {}{\"name\":\"a\"}"
    );
}

#[test]
fn list_map_multiple_keys() {
    let s = root(
        json!({"type": "object", "properties": {"ports": {"type": "array",
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port", "protocol"],
        "items": {"type": "object", "properties": {"port": {"type": "integer"}, "protocol": {"type": "string", "default": "TCP"}}}}}}),
    );
    assert!(
        validate(
            &s,
            &cr(json!({"ports": [{"port": 80}, {"port": 80, "protocol": "UDP"}]})),
            None
        )
        .is_valid()
    );
    let o = validate(
        &s,
        &cr(json!({"ports": [{"port": 80}, {"port": 80, "protocol": "TCP"}]})),
        None,
    );
    assert_eq!(
        one(&o).message,
        "Duplicate value: map[string]interface {}{\"port\":80, \"protocol\":\"TCP\"}"
    );
}

// ---------- CEL ----------

fn with_rules(props: Value, rules: Value) -> Value {
    root(json!({"type": "object", "properties": props, "x-kubernetes-validations": rules}))
}

#[test]
fn cel_pass_and_fail_default_message() {
    let s = with_rules(
        json!({"a": {"type": "integer"}, "b": {"type": "integer"}}),
        json!([{"rule": "self.a == self.b"}]),
    );
    assert!(validate(&s, &cr(json!({"a": 1, "b": 1})), None).is_valid());
    let o = validate(&s, &cr(json!({"a": 1, "b": 2})), None);
    let c = one(&o);
    assert_eq!(c.reason, "FieldValueInvalid");
    assert_eq!(
        c.full(),
        "spec: Invalid value: \"object\": failed rule: self.a == self.b"
    );
}

#[test]
fn cel_custom_message_reason_and_field_path() {
    let s = with_rules(
        json!({"min": {"type": "integer"}, "max": {"type": "integer"}}),
        json!([{"rule": "self.min <= self.max", "message": "min must not exceed max", "reason": "FieldValueForbidden", "fieldPath": ".min"}]),
    );
    let o = validate(&s, &cr(json!({"min": 5, "max": 1})), None);
    let c = one(&o);
    assert_eq!(c.reason, "FieldValueForbidden");
    assert_eq!(c.full(), "spec.min: Forbidden: min must not exceed max");
}

#[test]
fn cel_required_and_duplicate_reasons() {
    let s = with_rules(
        json!({"a": {"type": "string"}}),
        json!([
            {"rule": "has(self.a)", "message": "a is needed", "reason": "FieldValueRequired"},
            {"rule": "false", "reason": "FieldValueDuplicate"}
        ]),
    );
    let o = validate(&s, &cr(json!({})), None);
    assert_eq!(
        msgs(&o),
        vec![
            "spec: Required value: a is needed".to_string(),
            "spec: Duplicate value: \"object\"".to_string()
        ]
    );
}

#[test]
fn cel_message_expression() {
    let s = with_rules(
        json!({"replicas": {"type": "integer"}}),
        json!([
            {"rule": "self.replicas < 5", "messageExpression": "'replicas is ' + string(self.replicas) + ', must be < 5'"}
        ]),
    );
    let o = validate(&s, &cr(json!({"replicas": 7})), None);
    assert_eq!(
        one(&o).full(),
        "spec: Invalid value: \"object\": replicas is 7, must be < 5"
    );
}

#[test]
fn cel_message_expression_empty_falls_back() {
    let s = with_rules(
        json!({}),
        json!([
            {"rule": "false", "message": "fallback", "messageExpression": "''"}
        ]),
    );
    let o = validate(&s, &cr(json!({})), None);
    assert_eq!(one(&o).message, "Invalid value: \"object\": fallback");
}

#[test]
fn cel_evaluation_error() {
    let s = with_rules(
        json!({"a": {"type": "string"}}),
        json!([{"rule": "self.a == 'x'"}]),
    );
    let o = validate(&s, &cr(json!({})), None);
    assert_eq!(
        one(&o).full(),
        "spec: Invalid value: \"object\": no such key: a evaluating rule: self.a == 'x'"
    );
}

#[test]
fn cel_transition_rule_only_on_update() {
    let s = with_rules(
        json!({"name": {"type": "string"}}),
        json!([
            {"rule": "self.name == oldSelf.name", "message": "name is immutable"}
        ]),
    );
    // create: not evaluated
    assert!(validate(&s, &cr(json!({"name": "a"})), None).is_valid());
    let old = cr(json!({"name": "a"}));
    assert!(validate(&s, &cr(json!({"name": "a"})), Some(&old)).is_valid());
    let o = validate(&s, &cr(json!({"name": "b"})), Some(&old));
    assert_eq!(
        one(&o).full(),
        "spec: Invalid value: \"object\": name is immutable"
    );
}

#[test]
fn cel_transition_rule_on_field_without_old_value() {
    let s = root(
        json!({"type": "object", "properties": {"mode": {"type": "string",
        "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "immutable"}]}}}),
    );
    let old = cr(json!({}));
    // the old object has no spec.mode: rule not evaluated
    assert!(validate(&s, &cr(json!({"mode": "a"})), Some(&old)).is_valid());
    let old = cr(json!({"mode": "a"}));
    let o = validate(&s, &cr(json!({"mode": "b"})), Some(&old));
    assert_eq!(
        one(&o).full(),
        "spec.mode: Invalid value: \"string\": immutable"
    );
}

#[test]
fn cel_optional_old_self() {
    let s = root(
        json!({"type": "object", "properties": {"mode": {"type": "string",
        "x-kubernetes-validations": [{"rule": "!oldSelf.hasValue() || self == oldSelf.value()", "optionalOldSelf": true, "message": "set once"}]}}}),
    );
    assert!(validate(&s, &cr(json!({"mode": "a"})), None).is_valid());
    let old = cr(json!({"mode": "a"}));
    let o = validate(&s, &cr(json!({"mode": "b"})), Some(&old));
    assert_eq!(one(&o).message, "Invalid value: \"string\": set once");
}

#[test]
fn cel_rules_on_array_items() {
    let s = root(
        json!({"type": "object", "properties": {"sinks": {"type": "array", "items": {
        "type": "object", "properties": {"name": {"type": "string"}, "url": {"type": "string"}},
        "x-kubernetes-validations": [{"rule": "self.url.startsWith('https://')", "message": "url must be https"}]}}}}),
    );
    let o = validate(
        &s,
        &cr(
            json!({"sinks": [{"name": "a", "url": "https://x"}, {"name": "b", "url": "http://y"}]}),
        ),
        None,
    );
    assert_eq!(
        one(&o).full(),
        "spec.sinks[1]: Invalid value: \"object\": url must be https"
    );
}

#[test]
fn cel_rules_on_map_values_and_scalars() {
    let s = root(
        json!({"type": "object", "properties": {"limits": {"type": "object",
        "additionalProperties": {"type": "integer", "x-kubernetes-validations": [{"rule": "self >= 0"}]}}}}),
    );
    let o = validate(&s, &cr(json!({"limits": {"cpu": 1, "mem": -1}})), None);
    assert_eq!(
        one(&o).full(),
        "spec.limits[mem]: Invalid value: \"integer\": failed rule: self >= 0"
    );
}

#[test]
fn cel_macros_and_functions() {
    let s = with_rules(
        json!({"items": {"type": "array", "items": {"type": "string"}}, "name": {"type": "string"}, "ratio": {"type": "number"}}),
        json!([
            {"rule": "self.items.all(i, i.matches('^[a-z]+$'))"},
            {"rule": "self.items.exists(i, i == 'a')"},
            {"rule": "self.items.exists_one(i, i == 'b')"},
            {"rule": "self.items.filter(i, i.endsWith('c')).size() == 1"},
            {"rule": "self.items.map(i, i + 'x').exists(i, i == 'ax')"},
            {"rule": "'a' in self.items && self.name.contains('LL')"},
            {"rule": "self.name.lowerAscii() == 'hello' && self.name.upperAscii() == 'HELLO'"},
            {"rule": "self.items.isSorted() && size(self.items) == 3"},
            {"rule": "self.ratio == 2.0"},
            {"rule": "has(self.name) && !has(self.missing)"}
        ]),
    );
    let o = validate(
        &s,
        &cr(json!({"items": ["a", "b", "c"], "name": "HeLLo", "ratio": 2})),
        None,
    );
    assert!(o.is_valid(), "{:?}", o.causes);
    let o = validate(
        &s,
        &cr(json!({"items": ["c", "b", "a"], "name": "HeLLo", "ratio": 2})),
        None,
    );
    assert_eq!(
        one(&o).message,
        "Invalid value: \"object\": failed rule: self.items.isSorted() && size(self.items) == 3"
    );
}

#[test]
fn cel_escaped_property_names_and_root_metadata() {
    let s = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "max-size": {"type": "integer"}, "namespace": {"type": "string"}},
        "x-kubernetes-validations": [{"rule": "self.max__dash__size > 0 && self.__namespace__ == 'ns'"}]}},
        "x-kubernetes-validations": [{"rule": "self.metadata.name.startsWith('p')"}]});
    assert!(validate(&s, &cr(json!({"max-size": 1, "namespace": "ns"})), None).is_valid());
    let mut obj = cr(json!({"max-size": 1, "namespace": "ns"}));
    obj["metadata"]["name"] = json!("q1");
    let o = validate(&s, &obj, None);
    assert_eq!(
        one(&o).full(),
        "<nil>: Invalid value: \"object\": failed rule: self.metadata.name.startsWith('p')"
    );
}

#[test]
fn cel_timestamps_from_date_time() {
    let s = with_rules(
        json!({"start": {"type": "string", "format": "date-time"}, "end": {"type": "string", "format": "date-time"}}),
        json!([{"rule": "self.start < self.end", "message": "start must be before end"}]),
    );
    assert!(
        validate(
            &s,
            &cr(json!({"start": "2024-01-01T00:00:00Z", "end": "2024-01-02T00:00:00Z"})),
            None
        )
        .is_valid()
    );
    let o = validate(
        &s,
        &cr(json!({"start": "2024-01-03T00:00:00Z", "end": "2024-01-02T00:00:00Z"})),
        None,
    );
    assert_eq!(
        one(&o).message,
        "Invalid value: \"object\": start must be before end"
    );
}

#[test]
fn cel_skipped_when_blocking_errors() {
    let s = root(
        json!({"type": "object", "required": ["a"], "properties": {"a": {"type": "string"}},
        "x-kubernetes-validations": [{"rule": "false"}]}),
    );
    let o = validate(&s, &cr(json!({})), None);
    assert_eq!(
        msgs(&o),
        vec![
            "spec.a: Required value".to_string(),
            "<nil>: Invalid value: \"null\": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation".to_string(),
        ]
    );
}

#[test]
fn cel_runs_alongside_non_blocking_errors() {
    let s = root(
        json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "^x$"}},
        "x-kubernetes-validations": [{"rule": "false", "message": "nope"}]}),
    );
    let o = validate(&s, &cr(json!({"a": "y"})), None);
    assert_eq!(o.causes.len(), 2);
    assert_eq!(o.causes[1].full(), "spec: Invalid value: \"object\": nope");
}

#[test]
fn cel_null_values_are_not_validated() {
    let s = root(
        json!({"type": "object", "properties": {"o": {"type": "object", "nullable": true,
        "x-kubernetes-validations": [{"rule": "false"}]}}}),
    );
    assert!(validate(&s, &cr(json!({"o": null})), None).is_valid());
}

#[test]
fn cel_list_map_items_correlate_old_by_key() {
    let s = root(
        json!({"type": "object", "properties": {"sinks": {"type": "array",
        "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
        "items": {"type": "object", "properties": {"name": {"type": "string"}, "kind": {"type": "string"}},
            "x-kubernetes-validations": [{"rule": "self.kind == oldSelf.kind", "message": "kind is immutable"}]}}}}),
    );
    let old = cr(json!({"sinks": [{"name": "a", "kind": "s3"}, {"name": "b", "kind": "gcs"}]}));
    // reordered but unchanged: ok; new item "c" has no old value: ok
    let new = cr(
        json!({"sinks": [{"name": "b", "kind": "gcs"}, {"name": "a", "kind": "s3"}, {"name": "c", "kind": "x"}]}),
    );
    assert!(validate(&s, &new, Some(&old)).is_valid());
    let new = cr(json!({"sinks": [{"name": "b", "kind": "s3"}]}));
    let o = validate(&s, &new, Some(&old));
    assert_eq!(
        one(&o).full(),
        "spec.sinks[0]: Invalid value: \"object\": kind is immutable"
    );
}

#[test]
fn ratcheting_unchanged_invalid_values_on_update() {
    let s = root(
        json!({"type": "object", "properties": {"a": {"type": "string", "maxLength": 2}, "b": {"type": "string", "maxLength": 2}}}),
    );
    let old = cr(json!({"a": "long", "b": "ok"}));
    assert!(validate(&s, &cr(json!({"a": "long", "b": "no"})), Some(&old)).is_valid());
    let o = validate(&s, &cr(json!({"a": "long", "b": "bad!"})), Some(&old));
    assert_eq!(one(&o).field, "spec.b");
}

// ---------- overall message ----------

#[test]
fn invalid_message_formats() {
    let s = root(
        json!({"type": "object", "properties": {"parallelism": {"type": "integer", "minimum": 0}}}),
    );
    let o = validate(&s, &cr(json!({"parallelism": -1})), None);
    assert_eq!(
        invalid_message("Pipeline.sluice.dev", "p1", &o.causes),
        "Pipeline.sluice.dev \"p1\" is invalid: spec.parallelism: Invalid value: -1: spec.parallelism in body should be greater than or equal to 0"
    );
    let two = vec![
        Cause::required("spec.a", ""),
        Cause::required("spec.b", ""),
        Cause::required("spec.a", ""),
    ];
    assert_eq!(
        invalid_message("Pipeline.sluice.dev", "p1", &two),
        "Pipeline.sluice.dev \"p1\" is invalid: [spec.a: Required value, spec.b: Required value]"
    );
    assert_eq!(
        invalid_message("Pipeline.sluice.dev", "p1", &[]),
        "Pipeline.sluice.dev \"p1\" is invalid"
    );
}

#[test]
fn go_formatting() {
    assert_eq!(gofmt::quote("a\"b\n"), "\"a\\\"b\\n\"");
    assert_eq!(gofmt::float(1e-7), "1e-07");
    assert_eq!(gofmt::float(2.0), "2");
    assert_eq!(gofmt::float(0.25), "0.25");
    assert_eq!(
        gofmt::go_syntax(&json!({"b": [1, "x"], "a": null})),
        "map[string]interface {}{\"a\":interface {}(nil), \"b\":[]interface {}{1, \"x\"}}"
    );
}

// ---------- check_schema ----------

const P: &str = "spec.versions[0].schema.openAPIV3Schema";

#[test]
fn check_schema_accepts_valid_schema() {
    let s = root(json!({"type": "object", "properties": {
        "port": {"x-kubernetes-int-or-string": true},
        "free": {"x-kubernetes-preserve-unknown-fields": true},
        "l": {"type": "array", "items": {"type": "string"}}},
        "x-kubernetes-validations": [{"rule": "self.l.size() > 0", "messageExpression": "'bad'"}]}));
    assert_eq!(check_schema(&s, P), vec![]);
}

#[test]
fn check_schema_missing_types() {
    let s = json!({"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}});
    let c = check_schema(&s, P);
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].reason, "FieldValueRequired");
    assert_eq!(
        c[0].full(),
        format!(
            "{P}.properties[spec].type: Required value: must not be empty for specified object fields"
        )
    );
    let c = check_schema(&json!({"properties": {}}), P);
    assert_eq!(
        c[0].full(),
        format!("{P}.type: Required value: must not be empty at the root")
    );
}

#[test]
fn check_schema_properties_with_additional_properties() {
    let s = root(
        json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}}),
    );
    let c = check_schema(&s, P);
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].reason, "FieldValueForbidden");
    assert_eq!(
        c[0].field,
        format!("{P}.properties[spec].additionalProperties")
    );
}

#[test]
fn check_schema_cel_compile_error() {
    let s = root(
        json!({"type": "object", "x-kubernetes-validations": [{"rule": "self.a =="}, {"rule": "true", "messageExpression": "'a' +"}]}),
    );
    let c = check_schema(&s, P);
    assert_eq!(c.len(), 2, "{c:?}");
    assert_eq!(
        c[0].field,
        format!("{P}.properties[spec].x-kubernetes-validations[0].rule")
    );
    assert!(
        c[0].message.starts_with(
            "Invalid value: apiextensions.ValidationRule{Rule:\"self.a ==\", Message:\"\""
        ),
        "{}",
        c[0].message
    );
    assert!(
        c[0].message.contains(": compilation failed: "),
        "{}",
        c[0].message
    );
    assert_eq!(
        c[1].field,
        format!("{P}.properties[spec].x-kubernetes-validations[1].messageExpression")
    );
    assert!(
        c[1].message
            .contains("messageExpression compilation failed: ")
    );
}

#[test]
fn check_schema_misc_rules() {
    let s = root(json!({"type": "object", "properties": {
        "l": {"type": "array"},
        "m": {"type": "array", "x-kubernetes-list-type": "map", "items": {"type": "object"}},
        "p": {"type": "string", "pattern": "(["},
        "r": {"type": "string", "x-kubernetes-validations": [{"rule": "true", "reason": "Bogus"}]}}}));
    let fields: Vec<String> = check_schema(&s, P).into_iter().map(|c| c.field).collect();
    assert_eq!(
        fields,
        vec![
            format!("{P}.properties[spec].properties[l].items"),
            format!("{P}.properties[spec].properties[m].x-kubernetes-list-map-keys"),
            format!("{P}.properties[spec].properties[p].pattern"),
            format!("{P}.properties[spec].properties[r].x-kubernetes-validations[0].reason"),
        ]
    );
}

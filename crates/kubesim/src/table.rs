//! Server-side `meta.k8s.io/v1` `Table` responses (what `kubectl get` asks
//! for with `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`).
//!
//! Columns are described by [`Column`]. A column's `json_path` is either a
//! JSONPath evaluated like the CRD table convertor does, or — when it starts
//! with `@` — the name of a computed cell used by the built-in printers:
//!
//! | `json_path`              | cell |
//! |--------------------------|------|
//! | `@str:PATH`              | first match of PATH as a string, `""` when missing |
//! | `@int:PATH`              | first match of PATH as an integer, `0` when missing |
//! | `@count:PATH[\|PATH...]` | sum of the entry counts of the objects/arrays at the paths |
//! | `@age`                   | age of `.metadata.creationTimestamp` (`<unknown>` when unset) |
//! | `@createdAt`             | `.metadata.creationTimestamp` as RFC 3339 UTC |
//! | `@deployment.ready`      | `readyReplicas/spec.replicas` (replicas default 1) |
//! | `@deployment.containers` / `@deployment.images` / `@deployment.selector` | wide columns |
//! | `@service.type` / `@service.clusterIP` / `@service.externalIP` / `@service.ports` / `@service.selector` | service cells |
//! | `@event.lastSeen` / `@event.firstSeen` / `@event.object` / `@event.source` / `@event.count` / `@event.message` | event cells |
//!
//! Unknown `@` names give a `null` cell.

use super::jsonpath;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::{Map, Value, json};

/// `ObjectMeta.name` field documentation, used as the Name column description.
pub const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// `ObjectMeta.creationTimestamp` field documentation, used for Age columns.
pub const CREATION_TIMESTAMP_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// One table column: its `TableColumnDefinition` fields plus how to fill it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Column header as sent (kubectl upper-cases it).
    pub name: String,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    pub type_: String,
    /// OpenAPI format hint, e.g. `name` for the Name column.
    pub format: String,
    /// Human readable description.
    pub description: String,
    /// 0 = always shown; > 0 = shown only with `-o wide`.
    pub priority: i32,
    /// JSONPath of the value, or an `@` computed cell (see module docs).
    pub json_path: String,
}

impl Column {
    /// A column with empty format/description and priority 0.
    pub fn new(name: &str, type_: &str, json_path: &str) -> Self {
        Column {
            name: name.to_string(),
            type_: type_.to_string(),
            format: String::new(),
            description: String::new(),
            priority: 0,
            json_path: json_path.to_string(),
        }
    }

    /// The standard first column: `Name`, format `name`.
    pub fn name_column() -> Self {
        Column {
            format: "name".to_string(),
            description: NAME_DESCRIPTION.to_string(),
            ..Column::new("Name", "string", ".metadata.name")
        }
    }

    /// The CRD default `Age` column (type `date`, `.metadata.creationTimestamp`).
    pub fn age_column() -> Self {
        Column {
            description: CREATION_TIMESTAMP_DESCRIPTION.to_string(),
            ..Column::new("Age", "date", ".metadata.creationTimestamp")
        }
    }

    fn described(mut self, description: &str) -> Self {
        self.description = description.to_string();
        self
    }

    fn wide(mut self) -> Self {
        self.priority = 1;
        self
    }

    /// The `TableColumnDefinition` JSON for `columnDefinitions`.
    pub fn definition(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.type_,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// What each row's `object` carries, per the `?includeObject=` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// `includeObject=None`: `"object": null`.
    None,
    /// `includeObject=Metadata` (the default): a `PartialObjectMetadata`.
    #[default]
    Metadata,
    /// `includeObject=Object`: the full object.
    Object,
}

impl IncludeObject {
    /// Parses the query parameter value; absent or empty means `Metadata`.
    pub fn parse(v: Option<&str>) -> Result<Self, String> {
        match v.unwrap_or("") {
            "" | "Metadata" => Ok(IncludeObject::Metadata),
            "None" => Ok(IncludeObject::None),
            "Object" => Ok(IncludeObject::Object),
            other => Err(format!(
                "includeObject: Unsupported value: \"{other}\": supported values: \"None\", \"Metadata\", \"Object\""
            )),
        }
    }
}

/// Columns for a custom resource from its version's
/// `additionalPrinterColumns` (an array, or null/absent). Name always comes
/// first; as in the real server, Age is added only when the CRD defines no
/// columns at all.
pub fn crd_columns(additional_printer_columns: &Value) -> Vec<Column> {
    let mut cols = vec![Column::name_column()];
    let defs = additional_printer_columns
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if defs.is_empty() {
        cols.push(Column::age_column());
        return cols;
    }
    for d in defs {
        let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let path = s("jsonPath");
        let mut description = s("description");
        if description.is_empty() {
            description = format!("Custom resource definition column (in JSONPath format): {path}");
        }
        cols.push(Column {
            name: s("name"),
            type_: s("type"),
            format: s("format"),
            description,
            priority: d.get("priority").and_then(Value::as_i64).unwrap_or(0) as i32,
            json_path: path,
        });
    }
    cols
}

/// Kubernetes' `duration.HumanDuration`: ~2-3 significant figures, e.g.
/// `9s`, `3m25s`, `43m`, `5h10m`, `2d3h`, `45d`, `2y10d`, `9y`; `0s` for up
/// to 1 s in the future and `<invalid>` beyond.
pub fn human_duration(d: TimeDelta) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".to_string();
    } else if seconds < 0 {
        return "0s".to_string();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = d.num_minutes();
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = d.num_hours();
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        }
    } else if hours < 48 {
        format!("{hours}h")
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{}h", hours / 24, h)
        }
    } else if hours < 24 * 365 * 2 {
        format!("{}d", hours / 24)
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{}d", hours / 24 / 365, dy)
        }
    } else {
        format!("{}y", hours / 24 / 365)
    }
}

/// Parses a `metav1.Time`/`MicroTime` string; `Ok(None)` is the zero time
/// (empty, `null` or `0001-01-01T00:00:00Z`).
fn parse_time(s: &str) -> Result<Option<DateTime<Utc>>, ()> {
    if s.is_empty() || s == "null" {
        return Ok(None);
    }
    let t = DateTime::parse_from_rfc3339(s)
        .map_err(|_| ())?
        .with_timezone(&Utc);
    if t.timestamp() == -62_135_596_800 && t.timestamp_subsec_nanos() == 0 {
        return Ok(None);
    }
    Ok(Some(t))
}

/// Age of a timestamp value like the printers' `translateTimestampSince`:
/// `<unknown>` when unset, `<invalid>` when unparsable.
fn age_of(v: Option<&Value>, now: DateTime<Utc>) -> String {
    match v.and_then(Value::as_str) {
        None => "<unknown>".to_string(),
        Some(s) => match parse_time(s) {
            Err(()) => "<invalid>".to_string(),
            Ok(None) => "<unknown>".to_string(),
            Ok(Some(t)) => human_duration(now - t),
        },
    }
}

fn first(path: &str, obj: &Value) -> Option<Value> {
    jsonpath::eval(path, obj).ok()?.into_iter().next()
}

/// Text of a scalar the way JSONPath printing renders it (objects and arrays
/// as compact JSON).
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One cell of `obj` for `col`, like the CRD table convertor: the first
/// JSONPath match converted to the column type (`string` → text, `integer`
/// / `number` → JSON numbers, `boolean`, `date` → [`human_duration`] age or
/// `<invalid>`/`<unknown>`); no match, a JSONPath error, `null`, or a value
/// of the wrong JSON type gives `null` (kubectl prints `<none>`).
/// `@` columns are computed (see module docs).
pub fn cell(col: &Column, obj: &Value, now: DateTime<Utc>) -> Value {
    if let Some(name) = col.json_path.strip_prefix('@') {
        return computed(name, obj, now);
    }
    let Some(value) = first(&col.json_path, obj) else {
        return Value::Null;
    };
    match (col.type_.as_str(), &value) {
        (_, Value::Null) => Value::Null,
        ("string", _) => Value::String(text_of(&value)),
        ("integer", Value::Number(n)) => match n.as_i64() {
            Some(i) => Value::from(i),
            None => n.as_f64().map_or(Value::Null, |f| Value::from(f as i64)),
        },
        ("number", Value::Number(n)) => n.as_f64().map_or(Value::Null, Value::from),
        ("boolean", Value::Bool(b)) => Value::Bool(*b),
        ("date", Value::String(s)) => Value::String(match parse_time(s) {
            Err(()) => "<invalid>".to_string(),
            Ok(None) => "<unknown>".to_string(),
            Ok(Some(t)) => human_duration(now - t),
        }),
        _ => Value::Null,
    }
}

fn computed(name: &str, obj: &Value, now: DateTime<Utc>) -> Value {
    let get = |p: &str| obj.pointer(p);
    let str_at = |p: &str| get(p).and_then(Value::as_str).unwrap_or("").to_string();
    let int_at = |p: &str| get(p).and_then(Value::as_i64);
    if let Some(path) = name.strip_prefix("str:") {
        return Value::String(first(path, obj).map(|v| text_of(&v)).unwrap_or_default());
    }
    if let Some(path) = name.strip_prefix("int:") {
        return Value::from(first(path, obj).and_then(|v| v.as_i64()).unwrap_or(0));
    }
    if let Some(paths) = name.strip_prefix("count:") {
        let total: usize = paths
            .split('|')
            .filter_map(|p| first(p, obj))
            .map(|v| match v {
                Value::Object(m) => m.len(),
                Value::Array(a) => a.len(),
                _ => 0,
            })
            .sum();
        return Value::from(total as i64);
    }
    let s = match name {
        "age" => age_of(get("/metadata/creationTimestamp"), now),
        "createdAt" => {
            let t = get("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .and_then(|s| parse_time(s).ok().flatten());
            match t {
                Some(t) => t.to_rfc3339_opts(SecondsFormat::Secs, true),
                None => "0001-01-01T00:00:00Z".to_string(),
            }
        }
        "deployment.ready" => format!(
            "{}/{}",
            int_at("/status/readyReplicas").unwrap_or(0),
            int_at("/spec/replicas").unwrap_or(1)
        ),
        "deployment.containers" => join_field(get("/spec/template/spec/containers"), "name"),
        "deployment.images" => join_field(get("/spec/template/spec/containers"), "image"),
        "deployment.selector" => format_label_selector(get("/spec/selector")),
        "service.type" => service_type(obj),
        "service.clusterIP" => {
            let ips = get("/spec/clusterIPs")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| str_at("/spec/clusterIP"));
            if ips.is_empty() {
                "<none>".to_string()
            } else {
                ips
            }
        }
        "service.externalIP" => service_external_ip(obj),
        "service.ports" => {
            let ports = service_ports(get("/spec/ports"));
            if ports.is_empty() {
                "<none>".to_string()
            } else {
                ports
            }
        }
        "service.selector" => {
            let pairs: Vec<String> = get("/spec/selector")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", text_of(v)))
                        .collect()
                })
                .unwrap_or_default();
            if pairs.is_empty() {
                "<none>".to_string()
            } else {
                pairs.join(",")
            }
        }
        "event.firstSeen" => event_first_seen(obj, now),
        "event.lastSeen" => {
            if let Some(series) = get("/series/lastObservedTime") {
                age_of(Some(series), now)
            } else {
                match get("/lastTimestamp")
                    .and_then(Value::as_str)
                    .map(parse_time)
                {
                    Some(Ok(Some(t))) => human_duration(now - t),
                    Some(Err(())) => "<invalid>".to_string(),
                    _ => event_first_seen(obj, now),
                }
            }
        }
        "event.count" => {
            let count = match int_at("/series/count") {
                Some(c) if get("/series").is_some() => c,
                _ => match int_at("/count") {
                    Some(c) if c != 0 => c,
                    _ => 1,
                },
            };
            return Value::from(count);
        }
        "event.object" => {
            let kind = str_at("/involvedObject/kind").to_lowercase();
            let name = str_at("/involvedObject/name");
            if name.is_empty() {
                kind
            } else {
                format!("{kind}/{name}")
            }
        }
        "event.source" => {
            let non_empty = |a: String, b: String| if a.is_empty() { b } else { a };
            let component = non_empty(str_at("/source/component"), str_at("/reportingComponent"));
            let instance = non_empty(str_at("/source/host"), str_at("/reportingInstance"));
            if instance.is_empty() {
                component
            } else {
                format!("{component}, {instance}")
            }
        }
        "event.message" => str_at("/message").trim().to_string(),
        _ => return Value::Null,
    };
    Value::String(s)
}

fn event_first_seen(obj: &Value, now: DateTime<Utc>) -> String {
    match obj
        .get("firstTimestamp")
        .and_then(Value::as_str)
        .map(parse_time)
    {
        Some(Ok(Some(t))) => human_duration(now - t),
        Some(Err(())) => "<invalid>".to_string(),
        _ => age_of(obj.get("eventTime"), now),
    }
}

fn join_field(list: Option<&Value>, field: &str) -> String {
    list.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|c| c.get(field).and_then(Value::as_str).unwrap_or(""))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// `metav1.LabelSelectorAsSelector(...).String()`: requirements sorted by
/// key; `<none>`-free (an empty selector is `""`).
fn format_label_selector(sel: Option<&Value>) -> String {
    let Some(sel) = sel else {
        return String::new();
    };
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in m {
            reqs.push((k.clone(), format!("{k}={}", text_of(v))));
        }
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let key = e
            .get("key")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let mut vals: Vec<String> = e
            .get("values")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(text_of).collect())
            .unwrap_or_default();
        vals.sort();
        let text = match e.get("operator").and_then(Value::as_str).unwrap_or("") {
            "In" => format!("{key} in ({})", vals.join(",")),
            "NotIn" => format!("{key} notin ({})", vals.join(",")),
            "Exists" => key.clone(),
            "DoesNotExist" => format!("!{key}"),
            _ => return "<invalid>".to_string(),
        };
        reqs.push((key, text));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    reqs.into_iter().map(|r| r.1).collect::<Vec<_>>().join(",")
}

fn service_type(obj: &Value) -> String {
    obj.pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string()
}

fn strings_at(obj: &Value, p: &str) -> Vec<String> {
    obj.pointer(p)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn service_external_ip(obj: &Value) -> String {
    let external = strings_at(obj, "/spec/externalIPs");
    match service_type(obj).as_str() {
        "ClusterIP" | "NodePort" => {
            if external.is_empty() {
                "<none>".to_string()
            } else {
                external.join(",")
            }
        }
        "LoadBalancer" => {
            let mut ips: Vec<String> = obj
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|i| {
                            let ip = i.get("ip").and_then(Value::as_str).unwrap_or("");
                            let host = i.get("hostname").and_then(Value::as_str).unwrap_or("");
                            let v = if ip.is_empty() { host } else { ip };
                            (!v.is_empty()).then(|| v.to_string())
                        })
                        .collect()
                })
                .unwrap_or_default();
            ips.extend(external);
            if ips.is_empty() {
                "<pending>".to_string()
            } else {
                ips.join(",")
            }
        }
        "ExternalName" => obj
            .pointer("/spec/externalName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        _ => "<unknown>".to_string(),
    }
}

fn service_ports(ports: Option<&Value>) -> String {
    ports
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|p| {
                    let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                    let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                    match p.get("nodePort").and_then(Value::as_i64) {
                        Some(np) if np > 0 => format!("{port}:{np}/{proto}"),
                        _ => format!("{port}/{proto}"),
                    }
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// Columns of the built-in printers for a few core kinds (matching
/// `kubectl get` against a real cluster; `-o wide` columns have priority 1).
/// Any other kind gets Name + Age.
pub fn builtin_columns(kind: &str) -> Vec<Column> {
    let name = Column::name_column;
    let age = || Column::new("Age", "string", "@age").described(CREATION_TIMESTAMP_DESCRIPTION);
    let s = |n: &str, p: &str| Column::new(n, "string", p);
    match kind {
        "Namespace" => vec![
            name(),
            s("Status", "@str:.status.phase").described("The status of the namespace"),
            age(),
        ],
        "Deployment" => vec![
            name(),
            s("Ready", "@deployment.ready").described("Number of the pod with ready state"),
            s("Up-to-date", "@int:.status.updatedReplicas")
                .described("Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
            s("Available", "@int:.status.availableReplicas")
                .described("Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
            age(),
            s("Containers", "@deployment.containers")
                .described("Names of each container in the template.")
                .wide(),
            s("Images", "@deployment.images")
                .described("Images referenced by each container in the template.")
                .wide(),
            s("Selector", "@deployment.selector")
                .described("Label selector for pods.")
                .wide(),
        ],
        "ConfigMap" => vec![
            name(),
            s("Data", "@count:.data|.binaryData").described("Number of data entries"),
            age(),
        ],
        "Secret" => vec![
            name(),
            s("Type", "@str:.type").described("Used to facilitate programmatic handling of secret data."),
            s("Data", "@count:.data").described("Number of data entries"),
            age(),
        ],
        "Service" => vec![
            name(),
            s("Type", "@service.type").described("type determines how the Service is exposed."),
            s("Cluster-IP", "@service.clusterIP").described("clusterIP is the IP address of the service."),
            s("External-IP", "@service.externalIP")
                .described("externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
            s("Port(s)", "@service.ports").described("The list of ports that are exposed by this service."),
            age(),
            s("Selector", "@service.selector")
                .described("Route service traffic to pods with label keys and values matching this selector.")
                .wide(),
        ],
        "Event" => vec![
            s("Last Seen", "@event.lastSeen").described("The time at which the most recent occurrence of this event was recorded."),
            s("Type", "@str:.type").described("Type of this event (Normal, Warning), new types could be added in the future"),
            s("Reason", "@str:.reason").described("This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
            s("Object", "@event.object").described("The object that this event is about."),
            s("Subobject", "@str:.involvedObject.fieldPath")
                .described("If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go-field access statement.")
                .wide(),
            s("Source", "@event.source")
                .described("The component reporting this event. Short, machine understandable string.")
                .wide(),
            s("Message", "@event.message").described("A human-readable description of the status of this operation."),
            s("First Seen", "@event.firstSeen")
                .described("The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)")
                .wide(),
            s("Count", "@event.count")
                .described("The number of times this event has occurred.")
                .wide(),
            Column { priority: 1, ..name() },
        ],
        "Lease" => vec![
            name(),
            s("Holder", "@str:.spec.holderIdentity").described("holderIdentity contains the identity of the holder of a current lease."),
            age(),
        ],
        "CustomResourceDefinition" => vec![
            name(),
            Column::new("Created At", "date", "@createdAt").described(CREATION_TIMESTAMP_DESCRIPTION),
        ],
        _ => vec![name(), age()],
    }
}

/// Builds a `meta.k8s.io/v1` `Table` for `objects`. `metadata` carries the
/// list's `resourceVersion` (omitted when empty) and `continue` (when
/// given); each row carries `cells` and `object` per `include_object`
/// (`PartialObjectMetadata` for `Metadata`, the object for `Object`, `null`
/// for `None`).
pub fn table(
    columns: &[Column],
    objects: &[Value],
    resource_version: &str,
    continue_token: Option<&str>,
    include_object: IncludeObject,
    now: DateTime<Utc>,
) -> Value {
    let mut metadata = Map::new();
    if !resource_version.is_empty() {
        metadata.insert("resourceVersion".into(), resource_version.into());
    }
    if let Some(c) = continue_token.filter(|c| !c.is_empty()) {
        metadata.insert("continue".into(), c.into());
    }
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let cells: Vec<Value> = columns.iter().map(|c| cell(c, obj, now)).collect();
            let object = match include_object {
                IncludeObject::None => Value::Null,
                IncludeObject::Object => obj.clone(),
                IncludeObject::Metadata => json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
                }),
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns.iter().map(Column::definition).collect::<Vec<_>>(),
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap()
    }

    fn ago(secs: i64) -> String {
        (now() - TimeDelta::seconds(secs)).to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    #[test]
    fn human_duration_matches_kubernetes() {
        let cases: &[(i64, &str)] = &[
            (-5, "<invalid>"),
            (-2, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (9, "9s"),
            (119, "119s"),
            (120, "2m"),
            (205, "3m25s"),
            (599, "9m59s"),
            (600, "10m"),
            (43 * 60, "43m"),
            (179 * 60 + 59, "179m"),
            (3 * 3600, "3h"),
            (5 * 3600 + 10 * 60, "5h10m"),
            (8 * 3600, "8h"),
            (47 * 3600, "47h"),
            (48 * 3600, "2d"),
            (51 * 3600, "2d3h"),
            (8 * 86400, "8d"),
            (45 * 86400, "45d"),
            (729 * 86400, "729d"),
            (730 * 86400, "2y"),
            (740 * 86400, "2y10d"),
            (8 * 365 * 86400, "8y"),
            (20 * 365 * 86400 + 3 * 86400, "20y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(TimeDelta::seconds(*secs)), *want, "{secs}s");
        }
        // Sub-second truncation toward zero like Go's int(d.Seconds()).
        assert_eq!(human_duration(TimeDelta::milliseconds(-1500)), "0s");
        assert_eq!(human_duration(TimeDelta::milliseconds(9999)), "9s");
    }

    #[test]
    fn crd_columns_default_and_custom() {
        let d = crd_columns(&Value::Null);
        assert_eq!(
            d.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["Name", "Age"]
        );
        assert_eq!(d[0].format, "name");
        assert_eq!(d[1].type_, "date");
        assert_eq!(d[1].json_path, ".metadata.creationTimestamp");
        assert_eq!(crd_columns(&json!([])).len(), 2);

        let c = crd_columns(&json!([
            {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
            {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status",
             "description": "ready?", "priority": 1, "format": "x"}
        ]));
        assert_eq!(
            c.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["Name", "Replicas", "Ready"]
        );
        assert_eq!(
            c[1].description,
            "Custom resource definition column (in JSONPath format): .spec.replicas"
        );
        assert_eq!(
            (
                c[2].description.as_str(),
                c[2].priority,
                c[2].format.as_str()
            ),
            ("ready?", 1, "x")
        );
    }

    #[test]
    fn cells_by_type() {
        let obj = json!({
            "metadata": {"name": "p0", "creationTimestamp": ago(9)},
            "spec": {"replicas": 3, "ratio": 2.5, "paused": true, "when": ago(205), "bad": "nope",
                     "zero": "0001-01-01T00:00:00Z", "tags": ["a", "b"], "nested": {"k": 1}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "X", "status": "False"}]}
        });
        let c = |t: &str, p: &str| cell(&Column::new("c", t, p), &obj, now());
        assert_eq!(c("string", ".metadata.name"), json!("p0"));
        assert_eq!(c("string", ".spec.replicas"), json!("3"));
        assert_eq!(c("string", ".spec.nested"), json!("{\"k\":1}"));
        // Like the real convertor, only the first match is used.
        assert_eq!(c("string", ".status.conditions[*].type"), json!("Ready"));
        assert_eq!(
            c("string", ".status.conditions[?(@.type==\"X\")].status"),
            json!("False")
        );
        assert_eq!(c("integer", ".spec.replicas"), json!(3));
        assert_eq!(c("integer", ".spec.ratio"), json!(2));
        assert_eq!(c("integer", ".metadata.name"), Value::Null);
        assert_eq!(c("number", ".spec.ratio"), json!(2.5));
        assert_eq!(c("number", ".spec.replicas"), json!(3.0));
        assert_eq!(c("boolean", ".spec.paused"), json!(true));
        assert_eq!(c("boolean", ".spec.replicas"), Value::Null);
        assert_eq!(c("date", ".metadata.creationTimestamp"), json!("9s"));
        assert_eq!(c("date", ".spec.when"), json!("3m25s"));
        assert_eq!(c("date", ".spec.bad"), json!("<invalid>"));
        assert_eq!(c("date", ".spec.zero"), json!("<unknown>"));
        assert_eq!(c("date", ".spec.replicas"), Value::Null);
        assert_eq!(c("string", ".spec.missing"), Value::Null);
        assert_eq!(c("string", ".spec["), Value::Null);
        assert_eq!(c("string", "@nope"), Value::Null);
    }

    #[test]
    fn table_shape_and_include_object() {
        let cols = crd_columns(&Value::Null);
        let objs = vec![json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline",
            "metadata": {"name": "p0", "namespace": "t1", "labels": {}, "creationTimestamp": ago(9)},
            "spec": {"replicas": 1}
        })];
        let t = table(&cols, &objs, "1004", None, IncludeObject::default(), now());
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(t["metadata"], json!({"resourceVersion": "1004"}));
        assert_eq!(
            t["columnDefinitions"][0],
            json!({"name":"Name","type":"string","format":"name","description":NAME_DESCRIPTION,"priority":0})
        );
        assert_eq!(t["columnDefinitions"][1]["type"], "date");
        assert_eq!(t["rows"][0]["cells"], json!(["p0", "9s"]));
        assert_eq!(
            t["rows"][0]["object"],
            json!({"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":objs[0]["metadata"]})
        );
        let t = table(&cols, &objs, "5", Some("tok"), IncludeObject::Object, now());
        assert_eq!(t["metadata"]["continue"], "tok");
        assert_eq!(t["rows"][0]["object"], objs[0]);
        let t = table(&cols, &objs, "", None, IncludeObject::None, now());
        assert_eq!(t["metadata"], json!({}));
        assert!(t["rows"][0]["object"].is_null());
        assert_eq!(
            table(&cols, &[], "7", None, IncludeObject::Metadata, now())["rows"],
            json!([])
        );
    }

    #[test]
    fn include_object_parse() {
        assert_eq!(IncludeObject::parse(None), Ok(IncludeObject::Metadata));
        assert_eq!(
            IncludeObject::parse(Some("Object")),
            Ok(IncludeObject::Object)
        );
        assert_eq!(IncludeObject::parse(Some("None")), Ok(IncludeObject::None));
        assert!(IncludeObject::parse(Some("all")).is_err());
    }

    fn row(kind: &str, obj: &Value) -> Vec<Value> {
        builtin_columns(kind)
            .iter()
            .map(|c| cell(c, obj, now()))
            .collect()
    }

    #[test]
    fn builtin_namespace_configmap_secret_lease_crd() {
        let ns = json!({"metadata": {"name": "t1", "creationTimestamp": ago(3600 * 50)}, "status": {"phase": "Active"}});
        assert_eq!(
            row("Namespace", &ns),
            vec![json!("t1"), json!("Active"), json!("2d2h")]
        );
        let cm = json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(
            row("ConfigMap", &cm),
            vec![json!("c"), json!(3), json!("<unknown>")]
        );
        let sec = json!({"metadata": {"name": "s", "creationTimestamp": ago(5)}, "type": "Opaque", "data": {"k": "dg=="}});
        assert_eq!(
            row("Secret", &sec),
            vec![json!("s"), json!("Opaque"), json!(1), json!("5s")]
        );
        let lease = json!({"metadata": {"name": "l", "creationTimestamp": ago(61)}, "spec": {}});
        assert_eq!(
            row("Lease", &lease),
            vec![json!("l"), json!(""), json!("61s")]
        );
        let crd = json!({"metadata": {"name": "pipelines.sluice.dev", "creationTimestamp": "2026-11-26T10:00:00+00:00"}});
        assert_eq!(
            row("CustomResourceDefinition", &crd),
            vec![json!("pipelines.sluice.dev"), json!("2026-11-26T10:00:00Z")]
        );
        assert_eq!(
            builtin_columns("CustomResourceDefinition")[1].name,
            "Created At"
        );
        let other = builtin_columns("Pod");
        assert_eq!(
            other.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["Name", "Age"]
        );
    }

    #[test]
    fn builtin_deployment() {
        let d = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(600)},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"},
                     "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}]},
                     "template": {"spec": {"containers": [{"name": "c1", "image": "i1"}, {"name": "c2", "image": "i2"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3}
        });
        assert_eq!(
            row("Deployment", &d),
            vec![
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(0),
                json!("10m"),
                json!("c1,c2"),
                json!("i1,i2"),
                json!("app=web,tier in (a,b)")
            ]
        );
        let cols = builtin_columns("Deployment");
        assert_eq!(cols.iter().filter(|c| c.priority == 1).count(), 3);
        let bare = json!({"metadata": {"name": "x"}, "spec": {}});
        assert_eq!(cell(&cols[1], &bare, now()), json!("0/1"));
    }

    #[test]
    fn builtin_service() {
        let svc = json!({
            "metadata": {"name": "api", "creationTimestamp": ago(30)},
            "spec": {"type": "NodePort", "clusterIP": "10.0.0.5",
                     "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
                     "selector": {"app": "api"}}
        });
        assert_eq!(
            row("Service", &svc),
            vec![
                json!("api"),
                json!("NodePort"),
                json!("10.0.0.5"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP"),
                json!("30s"),
                json!("app=api")
            ]
        );
        let lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIPs": ["10.0.0.9"]},
                        "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}, {"hostname": "h.example"}]}}});
        let r = row("Service", &lb);
        assert_eq!(r[2], json!("10.0.0.9"));
        assert_eq!(r[3], json!("1.2.3.4,h.example"));
        assert_eq!(r[4], json!("<none>"));
        let pending = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer"}});
        assert_eq!(row("Service", &pending)[3], json!("<pending>"));
        let bare = json!({"metadata": {"name": "b"}, "spec": {}});
        assert_eq!(
            row("Service", &bare)[1..3],
            [json!("ClusterIP"), json!("<none>")]
        );
    }

    #[test]
    fn builtin_event() {
        let e = json!({
            "metadata": {"name": "p1.abc", "namespace": "t1"},
            "involvedObject": {"kind": "Pipeline", "name": "p1"},
            "type": "Normal", "reason": "Synced", "message": " pipeline synced \n",
            "source": {"component": "sluice-controller"},
            "firstTimestamp": ago(43 * 60), "lastTimestamp": ago(205), "count": 2
        });
        let cols = builtin_columns("Event");
        let names: Vec<&str> = cols
            .iter()
            .filter(|c| c.priority == 0)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["Last Seen", "Type", "Reason", "Object", "Message"]);
        assert_eq!(
            row("Event", &e),
            vec![
                json!("3m25s"),
                json!("Normal"),
                json!("Synced"),
                json!("pipeline/p1"),
                json!(""),
                json!("sluice-controller"),
                json!("pipeline synced"),
                json!("43m"),
                json!(2),
                json!("p1.abc")
            ]
        );
        // New-style event: eventTime only, no count, reporting fields.
        let e2 = json!({"metadata": {"name": "x"}, "involvedObject": {"kind": "Node"},
                        "eventTime": "2026-11-26T11:59:50.123456Z", "reportingComponent": "kubelet",
                        "reportingInstance": "n1"});
        let r = row("Event", &e2);
        assert_eq!(r[0], json!("9s"));
        assert_eq!(r[3], json!("node"));
        assert_eq!(r[5], json!("kubelet, n1"));
        assert_eq!(r[8], json!(1));
        let e3 =
            json!({"metadata": {"name": "y"}, "series": {"count": 7, "lastObservedTime": ago(2)}});
        assert_eq!(row("Event", &e3)[0], json!("2s"));
        assert_eq!(row("Event", &e3)[8], json!(7));
    }
}

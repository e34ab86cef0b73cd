//! Validation of specs beyond what the CRD schema can say (CEL that compiles, unique sink
//! names, quantities that parse), shared by the API (before anything is written) and the
//! operator (for objects created with kubectl). Each error names its field.

use crate::{PipelineSpec, StreamSpec, TenantSpec};
use sluice_core::{egress, expr, names, quota, subjects};

/// One invalid field; its path runs from the object root, e.g. `spec.sinks[1].name`.
pub use sluice_core::route::FieldError;

/// Joins errors into one human sentence.
pub fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    fn name(&mut self, field: &str, value: &str) {
        if let Some(m) = names::check_name(value, 63) {
            self.add(field, m);
        }
    }
}

/// What is wrong with a pipeline's name, beyond the DNS-1123 label every name is. Its routes'
/// Services are named `<pipeline>-<sink>`, and Kubernetes asks of a Service name that it start
/// with a letter (a DNS-1035 label), so a pipeline name must too.
pub fn pipeline_name(name: &str) -> Option<FieldError> {
    let message = names::check_name(name, 63).or_else(|| {
        (!name.starts_with(|c: char| c.is_ascii_lowercase())).then(|| {
            "must start with a letter: the routes' Services are named after the pipeline, \
             and a Service name must start with a letter"
                .to_string()
        })
    })?;
    Some(FieldError {
        field: "metadata.name".into(),
        message,
    })
}

/// Problems of a pipeline named `name`: its name ([`pipeline_name`]), then its spec.
pub fn named_pipeline(name: &str, spec: &PipelineSpec) -> Vec<FieldError> {
    pipeline_name(name)
        .into_iter()
        .chain(pipeline(spec))
        .collect()
}

/// Problems of a pipeline spec.
pub fn pipeline(spec: &PipelineSpec) -> Vec<FieldError> {
    let mut e = Errors(vec![]);
    e.name("spec.source.stream", &spec.source.stream);
    if let Some(filter) = &spec.filter
        && let Err(m) = expr::check(filter)
    {
        e.add("spec.filter", m);
    }
    if let Some(p) = &spec.projection {
        match (&p.fields, &p.expression) {
            (Some(fields), None) => {
                if fields.is_empty() {
                    e.add("spec.projection.fields", "must list at least one field");
                }
                for (i, f) in fields.iter().enumerate() {
                    if let Err(m) = expr::check_field_path(&f.path) {
                        e.add(format!("spec.projection.fields[{i}].path"), m);
                    }
                }
            }
            (None, Some(x)) => {
                if let Err(m) = expr::check(x) {
                    e.add("spec.projection.expression", m);
                }
            }
            _ => e.add(
                "spec.projection",
                "set exactly one of fields and expression",
            ),
        }
    }
    if spec.sinks.is_empty() {
        e.add("spec.sinks", "must list at least one sink");
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, sink) in spec.sinks.iter().enumerate() {
        let at = format!("spec.sinks[{i}]");
        e.name(&format!("{at}.name"), &sink.name);
        if !seen.insert(sink.name.as_str()) {
            e.add(
                format!("{at}.name"),
                format!("duplicate sink name {:?}", sink.name),
            );
        }
        let kinds = [
            sink.nats.is_some(),
            sink.jetstream.is_some(),
            sink.kafka.is_some(),
            sink.http.is_some(),
            sink.postgres.is_some(),
            sink.object_store.is_some(),
            sink.file.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            e.add(
                at.clone(),
                "set exactly one sink kind: nats, jetstream, kafka, http, postgres, objectStore or file",
            );
        }
        if let Some(n) = &sink.nats
            && let Err(m) = subjects::check_sink_subject(&n.subject, &spec.source.stream)
        {
            e.add(format!("{at}.nats.subject"), m);
        }
        if let Some(j) = &sink.jetstream {
            e.name(&format!("{at}.jetstream.stream"), &j.stream);
            if j.stream == spec.source.stream {
                e.add(
                    format!("{at}.jetstream.stream"),
                    "must not be the source stream: the pipeline would consume its own output",
                );
            }
        }
        if let Some(k) = &sink.kafka {
            e.name(&format!("{at}.kafka.stream"), &k.stream);
            if k.stream == spec.source.stream {
                e.add(
                    format!("{at}.kafka.stream"),
                    "must not be the source stream: the pipeline would consume its own output",
                );
            }
            if let Some(Err(m)) = k.key.as_deref().map(sluice_core::expr::check_field_path) {
                e.add(format!("{at}.kafka.key"), m);
            }
        }
        if let Some(h) = &sink.http {
            if !(h.url.starts_with("http://") || h.url.starts_with("https://")) {
                e.add(
                    format!("{at}.http.url"),
                    "must be an http:// or https:// URL",
                );
            } else if let Some(m) = egress::literal_url_denied(&h.url) {
                e.add(format!("{at}.http.url"), m);
            }
        }
        if let Some(url) = sink.object_store.as_ref().and_then(|o| o.url.as_deref())
            && let Some(m) = egress::literal_url_denied(url)
        {
            e.add(format!("{at}.objectStore.url"), m);
        }
        if let Some(p) = &sink.postgres {
            let ok = p.table.split('.').count() <= 2
                && p.table.split('.').all(|part| {
                    !part.is_empty()
                        && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                        && !part.starts_with(|c: char| c.is_ascii_digit())
                });
            if !ok {
                e.add(
                    format!("{at}.postgres.table"),
                    "must be a table name, optionally schema-qualified (letters, digits, _)",
                );
            }
        }
        if let Some(f) = &sink.file
            && f.path.is_some() == (f.stdout == Some(true))
        {
            e.add(
                format!("{at}.file"),
                "set exactly one of path and stdout: true",
            );
        }
    }
    if spec.parallelism < 0 {
        e.add("spec.parallelism", "must be greater than or equal to 0");
    }
    if let Some(r) = &spec.resources {
        for (part, amounts) in [("requests", &r.requests), ("limits", &r.limits)] {
            let Some(a) = amounts else { continue };
            if let Some(cpu) = &a.cpu
                && let Err(m) = quota::parse_cpu_millis(&cpu.0)
            {
                e.add(format!("spec.resources.{part}.cpu"), m);
            }
            if let Some(mem) = &a.memory
                && let Err(m) = quota::parse_memory_bytes(&mem.0)
            {
                e.add(format!("spec.resources.{part}.memory"), m);
            }
        }
    }
    if let Some(d) = &spec.dead_letter {
        e.name("spec.deadLetter.stream", &d.stream);
        if d.stream == spec.source.stream {
            e.add(
                "spec.deadLetter.stream",
                "must not be the source stream: dead events would be consumed again",
            );
        }
    }
    e.0
}

/// What a pipeline asks of its tenant's quota: one pipeline, and `sinks × parallelism` workers
/// each requesting the pipeline's CPU and memory requests (or the defaults). `suspended` is the
/// pipeline's or its tenant's suspension.
pub fn pipeline_demand(spec: &PipelineSpec, suspended: bool) -> quota::Usage {
    let requests = spec.resources.as_ref().and_then(|r| r.requests.as_ref());
    let cpu = requests
        .and_then(|r| r.cpu.as_ref())
        .and_then(|q| quota::parse_cpu_millis(&q.0).ok())
        .unwrap_or(quota::DEFAULT_WORKER_CPU_MILLIS);
    let memory = requests
        .and_then(|r| r.memory.as_ref())
        .and_then(|q| quota::parse_memory_bytes(&q.0).ok())
        .unwrap_or(quota::DEFAULT_WORKER_MEMORY_BYTES);
    quota::pipeline_demand(
        spec.sinks.len() as u64,
        spec.parallelism.max(0) as u64,
        suspended || spec.suspend,
        cpu,
        memory,
    )
}

/// Problems of a stream spec.
pub fn stream(spec: &StreamSpec) -> Vec<FieldError> {
    let mut e = Errors(vec![]);
    if spec.partitions < 1 {
        e.add("spec.partitions", "must be at least 1");
    }
    if spec.replicas < 1 {
        e.add("spec.replicas", "must be at least 1");
    }
    if let Some(Err(m)) = spec
        .partition_key
        .as_deref()
        .map(sluice_core::expr::check_field_path)
    {
        e.add("spec.partitionKey", m);
    }
    if let Some(r) = &spec.retention {
        if let Some(age) = &r.max_age
            && parse_duration_secs(age).is_none()
        {
            e.add(
                "spec.retention.maxAge",
                "must be a duration such as 90s, 30m, 24h or 7d",
            );
        }
        if r.max_bytes.is_some_and(|b| b < 1) {
            e.add("spec.retention.maxBytes", "must be at least 1");
        }
    }
    e.0
}

/// Parses a duration such as `90s`, `30m`, `24h`, `7d`, `1h30m`, `500ms` into seconds
/// (rounded up).
pub fn parse_duration_secs(s: &str) -> Option<u64> {
    parse_duration_millis(s).map(|ms| ms.div_ceil(1000))
}

/// Parses a duration such as `90s`, `30m`, `24h`, `7d`, `1h30m`, `500ms` into milliseconds.
pub fn parse_duration_millis(s: &str) -> Option<u64> {
    let mut total_ms: u64 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit_ms, len) = if rest.starts_with("ms") {
            (1, 2)
        } else {
            match rest.chars().next()? {
                's' => (1_000, 1),
                'm' => (60_000, 1),
                'h' => (3_600_000, 1),
                'd' => (86_400_000, 1),
                _ => return None,
            }
        };
        total_ms = total_ms.checked_add(n.checked_mul(unit_ms)?)?;
        rest = &rest[len..];
    }
    Some(total_ms)
}

/// Problems of a tenant: its name (it becomes the namespace `sluice-<name>`) and quota.
pub fn tenant(name: &str, spec: &TenantSpec) -> Vec<FieldError> {
    let mut e = Errors(vec![]);
    if let Some(m) = names::check_name(name, names::MAX_TENANT_NAME) {
        e.add("metadata.name", m);
    }
    for (i, owner) in spec.owners.iter().enumerate() {
        if owner.name.starts_with("system:") {
            e.add(
                format!("spec.owners[{i}].name"),
                "must not be a system: user or group (such as system:authenticated): the \
                 owners get the tenant role, which is never granted to Kubernetes' own identities",
            );
        }
    }
    let q = &spec.quota;
    if let Some(cpu) = &q.cpu
        && let Err(m) = quota::parse_cpu_millis(&cpu.0)
    {
        e.add("spec.quota.cpu", m);
    }
    if let Some(mem) = &q.memory
        && let Err(m) = quota::parse_memory_bytes(&mem.0)
    {
        e.add("spec.quota.memory", m);
    }
    if let Some(storage) = &q.storage
        && let Err(m) = quota::parse_memory_bytes(&storage.0)
    {
        e.add(
            "spec.quota.storage",
            m.replace("memory quantity", "storage quantity"),
        );
    }
    let rules = spec.isolation.iter().flat_map(|i| i.extra_egress.iter());
    for (i, rule) in rules.enumerate() {
        let at = format!("spec.isolation.extraEgress[{i}]");
        let cidr = match egress::Cidr::parse(&rule.cidr) {
            Ok(c) => c,
            Err(m) => {
                e.add(format!("{at}.cidr"), m.to_string());
                continue;
            }
        };
        if let Some(block) = egress::inside_always_denied(&cidr) {
            e.add(
                format!("{at}.cidr"),
                format!("must not lie inside {block}: link-local and metadata addresses are never reachable"),
            );
        }
        for (j, x) in rule.except.iter().enumerate() {
            match egress::Cidr::parse(x) {
                Ok(x) if cidr.covers(&x) && x != cidr => {}
                Ok(_) => e.add(
                    format!("{at}.except[{j}]"),
                    format!("must lie strictly inside the rule's cidr {}", rule.cidr),
                ),
                Err(m) => e.add(format!("{at}.except[{j}]"), m.to_string()),
            }
        }
    }
    for (field, v) in [
        ("spec.quota.maxPipelines", q.max_pipelines),
        ("spec.quota.maxStreams", q.max_streams),
        ("spec.quota.maxParallelism", q.max_parallelism),
    ] {
        if v.is_some_and(|v| v < 0) {
            e.add(field, "must be greater than or equal to 0");
        }
    }
    e.0
}

/// A tenant's storage quota at the broker in bytes (an unparseable quantity does not
/// constrain; [`tenant`] reports it).
pub fn tenant_storage_bytes(spec: &TenantSpec) -> Option<u64> {
    spec.quota
        .storage
        .as_ref()
        .and_then(|s| quota::parse_memory_bytes(&s.0).ok())
}

/// A tenant's quota as limits for the arithmetic (unparseable quantities do not constrain;
/// [`tenant`] reports them).
pub fn tenant_limits(spec: &TenantSpec) -> quota::Limits {
    let q = &spec.quota;
    let count = |v: Option<i32>| v.map(|v| v.max(0) as u64);
    quota::Limits {
        max_pipelines: count(q.max_pipelines),
        max_streams: count(q.max_streams),
        max_parallelism: count(q.max_parallelism),
        cpu_millis: q
            .cpu
            .as_ref()
            .and_then(|c| quota::parse_cpu_millis(&c.0).ok()),
        memory_bytes: q
            .memory
            .as_ref()
            .and_then(|m| quota::parse_memory_bytes(&m.0).ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_owners_are_never_system_identities() {
        let spec: TenantSpec = serde_json::from_value(serde_json::json!({
            "owners": [{"kind": "User", "name": "alice"},
                       {"kind": "Group", "name": "system:authenticated"}]
        }))
        .unwrap();
        let errors = tenant("acme", &spec);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "spec.owners[1].name");
    }

    #[test]
    fn pipeline_names_start_with_a_letter() {
        assert_eq!(pipeline_name("orders"), None);
        assert_eq!(pipeline_name("a1"), None);
        let digit = pipeline_name("1abc").expect("a digit first is refused");
        assert_eq!(digit.field, "metadata.name");
        assert!(digit.message.contains("start with a letter"), "{digit}");
        assert!(pipeline_name("Orders").is_some());
        assert!(pipeline_name(&"a".repeat(64)).is_some());
        // Every route name of a valid pipeline is a valid Service name.
        for sink in ["o", "9", &"s".repeat(63)] {
            let route = names::route_name(&"p".repeat(40), sink);
            assert!(route.len() <= 63 && route.starts_with('p'), "{route}");
        }
    }
    use serde_json::json;

    fn spec(v: serde_json::Value) -> PipelineSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_valid_pipeline_has_no_errors() {
        let s = spec(
            json!({"source": {"stream": "orders"}, "filter": "event.amount > 1",
            "projection": {"fields": [{"path": "a.b", "as": "c"}]},
            "sinks": [{"name": "n", "nats": {"subject": "x.y"}}, {"name": "h", "http": {"url": "http://h/"}}],
            "parallelism": 2}),
        );
        assert_eq!(pipeline(&s), vec![]);
        let d = pipeline_demand(&s, false);
        assert_eq!(d.parallelism, 4);
        assert_eq!(d.cpu_millis, 4 * quota::DEFAULT_WORKER_CPU_MILLIS);
        assert_eq!(pipeline_demand(&s, true).parallelism, 0);
    }

    #[test]
    fn each_problem_names_its_field() {
        let s = spec(
            json!({"source": {"stream": "Orders"}, "filter": "event.amount >",
            "projection": {"expression": "{"},
            "sinks": [{"name": "a", "nats": {"subject": "x.*"}}, {"name": "a", "http": {"url": "ftp://x"}},
                      {"name": "b"}],
            "parallelism": 1, "resources": {"requests": {"cpu": "lots"}}}),
        );
        let fields: Vec<String> = pipeline(&s).into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "spec.source.stream",
                "spec.filter",
                "spec.projection.expression",
                "spec.sinks[0].nats.subject",
                "spec.sinks[1].name",
                "spec.sinks[1].http.url",
                "spec.sinks[2]",
                "spec.resources.requests.cpu",
            ]
        );
    }

    #[test]
    fn sinks_cannot_loop_or_reach_reserved_subjects_and_addresses() {
        let s = spec(json!({"source": {"stream": "orders"},
            "sinks": [
                {"name": "a", "nats": {"subject": "orders.events"}},
                {"name": "b", "nats": {"subject": "$JS.API.STREAM.DELETE.sluice_acme_orders"}},
                {"name": "c", "nats": {"subject": "_INBOX.x"}},
                {"name": "d", "nats": {"subject": "sluice.bob.orders.events"}},
                {"name": "e", "jetstream": {"stream": "orders"}},
                {"name": "f", "http": {"url": "http://169.254.169.254/latest/meta-data/"}},
                {"name": "g", "objectStore": {"bucket": "bkt", "url": "http://[fe80::1]:9000"}},
                {"name": "h", "nats": {"subject": "alerts.orders"}},
                {"name": "i", "jetstream": {"stream": "orders-enriched"}},
                {"name": "j", "http": {"url": "http://127.0.0.1:9000/hook"}}],
            "deadLetter": {"stream": "orders"}}));
        let fields: Vec<String> = pipeline(&s).into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "spec.sinks[0].nats.subject",
                "spec.sinks[1].nats.subject",
                "spec.sinks[2].nats.subject",
                "spec.sinks[3].nats.subject",
                "spec.sinks[4].jetstream.stream",
                "spec.sinks[5].http.url",
                "spec.sinks[6].objectStore.url",
                "spec.deadLetter.stream",
            ]
        );
    }

    #[test]
    fn expressions_over_the_limits_name_their_field() {
        let deep = format!("event.a{}", ".b".repeat(2000));
        let s = spec(json!({"source": {"stream": "orders"}, "filter": deep,
            "projection": {"expression": format!("{}1{}", "(".repeat(40), ")".repeat(40))},
            "sinks": [{"name": "f", "file": {"stdout": true}}]}));
        let errors = pipeline(&s);
        assert_eq!(errors[0].field, "spec.filter");
        assert!(errors[0].message.contains("nodes"), "{}", errors[0].message);
        assert_eq!(errors[1].field, "spec.projection.expression");
        assert!(
            errors[1].message.contains("deeper"),
            "{}",
            errors[1].message
        );
    }

    #[test]
    fn durations_and_streams() {
        assert_eq!(parse_duration_secs("7d"), Some(7 * 86400));
        assert_eq!(parse_duration_secs("1h30m"), Some(5400));
        assert_eq!(parse_duration_secs("500ms"), Some(1));
        assert_eq!(parse_duration_secs("1w"), None);
        assert_eq!(parse_duration_secs(""), None);
        let s: StreamSpec =
            serde_json::from_value(json!({"retention": {"maxAge": "forever"}})).unwrap();
        assert_eq!(stream(&s)[0].field, "spec.retention.maxAge");
    }

    #[test]
    fn tenants() {
        let t: TenantSpec = serde_json::from_value(
            json!({"quota": {"cpu": "2", "memory": "oops", "maxPipelines": 3}}),
        )
        .unwrap();
        let errs = tenant(&"x".repeat(60), &t);
        assert_eq!(errs[0].field, "metadata.name");
        assert_eq!(errs[1].field, "spec.quota.memory");
        let egress: TenantSpec = serde_json::from_value(json!({"isolation": {"extraEgress": [
            {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "0.0.0.0/0", "11.0.0.0/33"]},
            {"cidr": "169.254.169.254/32"},
            {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}]}}))
        .unwrap();
        let fields: Vec<String> = tenant("t", &egress).into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "spec.isolation.extraEgress[0].except[1]",
                "spec.isolation.extraEgress[0].except[2]",
                "spec.isolation.extraEgress[1].cidr",
            ]
        );
        let l = tenant_limits(&t);
        assert_eq!(
            (l.max_pipelines, l.cpu_millis, l.memory_bytes),
            (Some(3), Some(2000), None)
        );
    }
}

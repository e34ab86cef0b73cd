//! What an admitted Pipeline should own, as objects (pure): for each sink a route made of a
//! ConfigMap (the rendered worker config), a Deployment of `sluice-worker` pods, a metrics
//! Service and a PodDisruptionBudget.

use crate::config::OperatorConfig;
use crate::tenant::desired::WORKER_SERVICE_ACCOUNT;
use serde_json::{Value, json};
use sluice_core::route::{self, RouteConfig};
use sluice_core::{names, subjects};
use sluice_crd::{Pipeline, Sink, Tenant};
use std::collections::BTreeSet;

/// Annotation carrying the hash of a route's config on its pods: a config change rolls them.
pub const CONFIG_HASH_ANNOTATION: &str = "sluice.dev/config-hash";

/// One route: the objects that deliver a pipeline's events to one sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The sink's name.
    pub sink: String,
    /// The name of the route's objects.
    pub name: String,
    /// The rendered worker configuration.
    pub config: RouteConfig,
    /// ConfigMap, Deployment, Service, PodDisruptionBudget, in apply order.
    pub objects: Vec<Value>,
}

/// Inputs of the builders that are not the pipeline itself.
pub struct Inputs<'a> {
    /// The owning tenant.
    pub tenant: &'a Tenant,
    /// Platform settings.
    pub config: &'a OperatorConfig,
    /// Replicas per route: the pipeline's parallelism, or 0 when it or its tenant is suspended.
    pub replicas: i32,
}

/// Labels shared by everything of one route (also the pods' selector).
pub fn route_labels(tenant: &str, pipeline: &str, sink: &str) -> Value {
    json!({
        names::LABEL_TENANT: tenant,
        names::LABEL_PIPELINE: pipeline,
        names::LABEL_ROUTE: sink,
        names::LABEL_NAME: "sluice-worker",
        names::LABEL_COMPONENT: "route",
        names::LABEL_MANAGED_BY: names::MANAGED_BY,
    })
}

/// The label selector of all the worker pods of a pipeline, in string form.
pub fn pipeline_selector(tenant: &str, pipeline: &str) -> String {
    format!(
        "{}={tenant},{}={pipeline},{}=sluice-worker",
        names::LABEL_TENANT,
        names::LABEL_PIPELINE,
        names::LABEL_NAME
    )
}

fn secret_path(name: &str, key: &str) -> String {
    format!("{}/{name}/{key}", route::SECRETS_MOUNT_DIR)
}

/// The worker configuration of one sink.
pub fn route_config(p: &Pipeline, tenant: &str, sink: &Sink, cfg: &OperatorConfig) -> RouteConfig {
    let pipeline = p.metadata.name.clone().unwrap_or_default();
    let spec = &p.spec;
    let stream = &spec.source.stream;
    let sink_config = if let Some(n) = &sink.nats {
        route::Sink::Nats {
            url: cfg.nats_url.clone(),
            subject: format!("{}.{}", subjects::tenant_prefix(tenant), n.subject),
            credentials_file: None,
        }
    } else if let Some(j) = &sink.jetstream {
        route::Sink::Jetstream {
            url: cfg.nats_url.clone(),
            subject: subjects::events_subject(tenant, &j.stream),
            credentials_file: None,
        }
    } else if let Some(h) = &sink.http {
        let ms = |d: &Option<String>, default: u64| {
            d.as_deref()
                .and_then(sluice_crd::validate::parse_duration_millis)
                .unwrap_or(default)
        };
        let timeouts = h.timeouts.clone().unwrap_or_default();
        route::Sink::Http {
            url: h.url.clone(),
            authorization_file: h.secret_ref.as_ref().map(|s| secret_path(&s.name, &s.key)),
            connect_timeout_ms: ms(&timeouts.connect, 2_000),
            request_timeout_ms: ms(&timeouts.request, 10_000),
        }
    } else if let Some(pg) = &sink.postgres {
        route::Sink::Postgres {
            url_file: Some(secret_path(
                &pg.connection_secret_ref.name,
                &pg.connection_secret_ref.key,
            )),
            url: None,
            table: pg.table.clone(),
        }
    } else if let Some(o) = &sink.object_store {
        route::Sink::ObjectStore {
            url: format!("s3://{}", o.bucket),
            prefix: o.prefix.clone().unwrap_or_default(),
            region: o.region.clone(),
            // The spec's URL is the S3-compatible endpoint, which the worker reaches only
            // within the platform's egress policy.
            endpoint: o.url.clone(),
            credentials_dir: o
                .secret_ref
                .as_ref()
                .map(|s| format!("{}/{}", route::SECRETS_MOUNT_DIR, s.name)),
        }
    } else {
        let path = sink.file.as_ref().and_then(|f| f.path.clone());
        route::Sink::File { path }
    };
    let start_from = match spec.source.start_from {
        sluice_crd::StartFrom::New => route::StartFrom::New,
        sluice_crd::StartFrom::All => route::StartFrom::All,
        sluice_crd::StartFrom::Time => route::StartFrom::Time,
    };
    let projection = spec
        .projection
        .as_ref()
        .map(|pr| match (&pr.fields, &pr.expression) {
            (Some(fields), _) => route::Projection::Fields(
                fields
                    .iter()
                    .map(|f| route::FieldProjection {
                        path: f.path.clone(),
                        as_: f.as_.clone(),
                    })
                    .collect(),
            ),
            (None, expr) => route::Projection::Expression(expr.clone().unwrap_or_default()),
        });
    let batching = spec.batching.clone().unwrap_or_default();
    let defaults = route::Batching::default();
    RouteConfig {
        tenant: tenant.to_string(),
        pipeline: pipeline.clone(),
        route: sink.name.clone(),
        source: route::Source::Jetstream {
            url: cfg.nats_url.clone(),
            stream: subjects::jetstream_name(tenant, stream),
            subject: subjects::events_subject(tenant, stream),
            durable: subjects::durable_name(&pipeline, &sink.name),
            start_from,
            start_time: spec.source.start_time.as_ref().map(|t| t.0.to_string()),
            max_ack_pending: 10_000,
            ack_wait_seconds: 30,
            credentials_file: None,
        },
        filter: spec.filter.clone(),
        projection,
        sink: sink_config,
        batching: route::Batching {
            max_events: batching
                .max_events
                .map(|v| v.max(1) as u32)
                .unwrap_or(defaults.max_events),
            max_wait_ms: batching
                .max_wait_ms
                .map(|v| v.max(0) as u64)
                .unwrap_or(defaults.max_wait_ms),
        },
        retry: route::Retry::default(),
        dead_letter: route::DeadLetter {
            url: cfg.nats_url.clone(),
            subject: match &spec.dead_letter {
                Some(d) => subjects::events_subject(tenant, &d.stream),
                None => subjects::default_dead_letter_subject(tenant, stream, &pipeline),
            },
        },
        metrics_port: route::WORKER_METRICS_PORT,
        liveness: route::Liveness::default(),
        sink_policy: cfg.sink_policy.clone(),
        max_evaluation_cost: cfg.max_evaluation_cost,
    }
}

/// Secrets a sink needs mounted.
fn secrets_of(sink: &Sink) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Some(s) = sink.http.as_ref().and_then(|h| h.secret_ref.as_ref()) {
        out.insert(s.name.clone());
    }
    if let Some(pg) = &sink.postgres {
        out.insert(pg.connection_secret_ref.name.clone());
    }
    if let Some(s) = sink
        .object_store
        .as_ref()
        .and_then(|o| o.secret_ref.as_ref())
    {
        out.insert(s.name.clone());
    }
    out
}

/// Every route of the pipeline, one per sink.
pub fn routes(p: &Pipeline, inputs: &Inputs) -> Vec<Route> {
    let tenant = inputs.tenant.metadata.name.clone().unwrap_or_default();
    p.spec
        .sinks
        .iter()
        .map(|sink| build_route(p, &tenant, sink, inputs))
        .collect()
}

fn build_route(p: &Pipeline, tenant: &str, sink: &Sink, inputs: &Inputs) -> Route {
    let cfg = inputs.config;
    let pipeline = p.metadata.name.clone().unwrap_or_default();
    let ns = p.metadata.namespace.clone().unwrap_or_default();
    let name = names::route_name(&pipeline, &sink.name);
    let config = route_config(p, tenant, sink, cfg);
    let config_json = config.to_json();
    let hash = format!("{:016x}", names::fnv1a(config_json.as_bytes()));
    let labels = route_labels(tenant, &pipeline, &sink.name);
    let owner = json!([{
        "apiVersion": sluice_crd::API_VERSION, "kind": "Pipeline",
        "name": pipeline, "uid": p.metadata.uid, "controller": true, "blockOwnerDeletion": true,
    }]);
    let meta = json!({"name": name, "namespace": ns, "labels": labels, "ownerReferences": owner});
    let requests = p
        .spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.clone())
        .unwrap_or_default();
    let limits = p
        .spec
        .resources
        .as_ref()
        .and_then(|r| r.limits.clone())
        .unwrap_or_default();
    let q = |v: Option<k8s_openapi::apimachinery::pkg::api::resource::Quantity>, d: &str| {
        v.map(|q| q.0).unwrap_or_else(|| d.to_string())
    };
    let resources = json!({
        "requests": {"cpu": q(requests.cpu, &cfg.default_cpu_request), "memory": q(requests.memory, &cfg.default_memory_request)},
        "limits": {"cpu": q(limits.cpu, &cfg.default_cpu_limit), "memory": q(limits.memory, &cfg.default_memory_limit)},
    });
    let mut volumes = vec![
        json!({"name": "config", "configMap": {"name": name}}),
        json!({"name": "tmp", "emptyDir": {}}),
    ];
    let mut mounts = vec![
        json!({"name": "config", "mountPath": route::CONFIG_MOUNT_DIR, "readOnly": true}),
        json!({"name": "tmp", "mountPath": "/tmp"}),
    ];
    for (i, secret) in secrets_of(sink).into_iter().enumerate() {
        let vol = format!("secret-{i}");
        volumes.push(json!({"name": vol, "secret": {"secretName": secret}}));
        mounts.push(json!({"name": vol, "mountPath": format!("{}/{secret}", route::SECRETS_MOUNT_DIR), "readOnly": true}));
    }
    let mut pod_spec = json!({
        "serviceAccountName": WORKER_SERVICE_ACCOUNT,
        "automountServiceAccountToken": false,
        "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                            "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
        "terminationGracePeriodSeconds": 60,
        "containers": [{
            "name": "worker",
            "image": cfg.worker_image,
            "args": ["--config", format!("{}/{}", route::CONFIG_MOUNT_DIR, route::CONFIG_KEY)],
            "ports": [{"name": "metrics", "containerPort": route::WORKER_METRICS_PORT, "protocol": "TCP"}],
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": "metrics"}, "periodSeconds": 5},
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 10, "failureThreshold": 6},
            "resources": resources,
            "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                "runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}},
            "volumeMounts": mounts,
        }],
        "volumes": volumes,
    });
    if let Some(iso) = &inputs.tenant.spec.isolation {
        if !iso.node_selector.is_empty() {
            pod_spec["nodeSelector"] = json!(iso.node_selector);
        }
        if !iso.tolerations.is_empty() {
            pod_spec["tolerations"] = serde_json::to_value(&iso.tolerations).unwrap_or(json!([]));
        }
        if let Some(pc) = &iso.priority_class_name {
            pod_spec["priorityClassName"] = json!(pc);
        }
    }
    let objects = vec![
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
               "data": {route::CONFIG_KEY: config_json}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {
            "replicas": inputs.replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": {CONFIG_HASH_ANNOTATION: hash}},
                "spec": pod_spec,
            }
        }}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": meta,
               "spec": {"selector": labels,
                        "ports": [{"name": "metrics", "port": route::WORKER_METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"}]}}),
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta,
               "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}}}),
    ];
    Route {
        sink: sink.name.clone(),
        name,
        config,
        objects,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> (Pipeline, Tenant) {
        let mut p: Pipeline =
            serde_norway::from_str(include_str!("../../tests/fixtures/pipeline.yaml")).unwrap();
        p.metadata.uid = Some("p-uid".into());
        let mut t: Tenant =
            serde_norway::from_str(include_str!("../../tests/fixtures/tenant.yaml")).unwrap();
        t.metadata.uid = Some("t-uid".into());
        (p, t)
    }

    #[test]
    fn one_route_per_sink_with_restricted_pods() {
        let (p, t) = fixtures();
        let cfg = OperatorConfig::default();
        let routes = routes(
            &p,
            &Inputs {
                tenant: &t,
                config: &cfg,
                replicas: 2,
            },
        );
        assert_eq!(routes.len(), p.spec.sinks.len());
        let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names[0], "large-orders-alerts");
        for r in &routes {
            assert!(r.config.validate().is_empty(), "{:?}", r.config.validate());
            let kinds: Vec<&str> = r
                .objects
                .iter()
                .map(|o| o["kind"].as_str().unwrap())
                .collect();
            assert_eq!(
                kinds,
                ["ConfigMap", "Deployment", "Service", "PodDisruptionBudget"]
            );
            let d = &r.objects[1];
            assert_eq!(d["spec"]["replicas"], 2);
            assert_eq!(d["metadata"]["ownerReferences"][0]["uid"], "p-uid");
            let pod = &d["spec"]["template"]["spec"];
            let c = &pod["containers"][0];
            assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
            assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
            assert_eq!(pod["automountServiceAccountToken"], false);
            assert_eq!(pod["nodeSelector"]["sluice.dev/pool"], "shared");
            assert_eq!(pod["priorityClassName"], "sluice-standard");
            assert_eq!(c["resources"]["requests"]["cpu"], "100m");
            assert_eq!(c["resources"]["limits"]["memory"], "256Mi");
            assert_eq!(
                d["spec"]["selector"]["matchLabels"]["sluice.dev/route"],
                r.sink.as_str()
            );
        }
        // The route config: namespaced by tenant; secrets as mounted files only.
        let alerts = &routes[0].config;
        let route::Source::Jetstream {
            stream,
            subject,
            durable,
            ..
        } = &alerts.source;
        assert_eq!(stream, "sluice_acme_orders");
        assert_eq!(subject, "sluice.acme.orders.events");
        assert_eq!(durable, "large-orders_alerts");
        assert_eq!(
            alerts.dead_letter.subject,
            "sluice.acme.orders-dead-letter.events"
        );
        assert!(
            matches!(&alerts.sink, route::Sink::Nats { subject, .. } if subject == "sluice.acme.alerts.large-orders")
        );
        let webhook = &routes[1];
        assert!(
            matches!(&webhook.config.sink, route::Sink::Http { authorization_file: Some(f), connect_timeout_ms: 2000, request_timeout_ms: 10000, .. }
            if f == "/var/run/sluice/secrets/webhook-token/authorization")
        );
        let mounts =
            &webhook.objects[1]["spec"]["template"]["spec"]["containers"][0]["volumeMounts"];
        assert!(
            mounts
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["mountPath"] == "/var/run/sluice/secrets/webhook-token")
        );
        assert!(
            !routes[1].objects[0]["data"][route::CONFIG_KEY]
                .as_str()
                .unwrap()
                .contains("token-value")
        );
    }

    #[test]
    fn a_config_change_changes_the_pod_hash_and_only_that_route() {
        let (mut p, t) = fixtures();
        let cfg = OperatorConfig::default();
        let inputs = Inputs {
            tenant: &t,
            config: &cfg,
            replicas: 1,
        };
        let before = routes(&p, &inputs);
        p.spec.sinks[0].nats.as_mut().unwrap().subject = "alerts.other".into();
        let after = routes(&p, &inputs);
        let hash = |r: &Route| {
            r.objects[1]["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
                .clone()
        };
        assert_ne!(hash(&before[0]), hash(&after[0]));
        assert_eq!(hash(&before[1]), hash(&after[1]));
    }
}

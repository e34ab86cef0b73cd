//! What an admitted Pipeline should own, as objects (pure): for each sink a [`Route`]
//! (`route.rs`) made of a ConfigMap (the rendered worker config), a Deployment of
//! `sluice-worker` pods, a metrics Service and a PodDisruptionBudget.

use super::route::Route;
use crate::config::OperatorConfig;
use crate::route_users::{self, RouteUser, RouteUsers};
use crate::stream::kafka;
use crate::tenant::desired::WORKER_SERVICE_ACCOUNT;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    HTTPGetAction, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, Secret, SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec,
    Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sluice_core::route::{self, RouteConfig};
use sluice_core::{names, subjects};
use sluice_crd::{Pipeline, Sink, StreamBroker, Tenant};
use std::collections::{BTreeMap, BTreeSet};

/// Annotation carrying the hash of a route's config on its pods: a config change rolls them.
pub const CONFIG_HASH_ANNOTATION: &str = "sluice.dev/config-hash";

/// The user and group the workers run as.
const WORKER_UID: i64 = 65532;

/// Inputs of the builders that are not the pipeline itself.
pub struct Inputs<'a> {
    /// The owning tenant.
    pub tenant: &'a Tenant,
    /// Platform settings.
    pub config: &'a OperatorConfig,
    /// Replicas per route: the pipeline's parallelism, or 0 when it or its tenant is suspended.
    pub replicas: i32,
    /// The route users of the tenant's account, with tenant accounts at the broker: each
    /// route then gets its user's creds in a Secret its pods mount.
    pub users: Option<&'a RouteUsers>,
    /// The broker of each Stream of the namespace.
    pub brokers: &'a StreamBrokers,
}

/// The broker of each Stream of a namespace, by name; a Stream not in it is taken to be on
/// the platform's default broker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamBrokers(pub BTreeMap<String, StreamBroker>);

impl StreamBrokers {
    /// The broker of Stream `name`.
    pub fn of(&self, name: &str, cfg: &OperatorConfig) -> StreamBroker {
        self.0
            .get(name)
            .copied()
            .unwrap_or(cfg.default_stream_broker)
    }
}

/// The Streams a pipeline reads or writes on Kafka, by name: what it needs of the platform's
/// Kafka cluster.
pub fn kafka_streams<'a>(
    p: &'a Pipeline,
    brokers: &StreamBrokers,
    cfg: &OperatorConfig,
) -> Vec<&'a str> {
    let spec = &p.spec;
    std::iter::once(spec.source.stream.as_str())
        .chain(spec.dead_letter.as_ref().map(|d| d.stream.as_str()))
        .filter(|s| brokers.of(s, cfg) == StreamBroker::Kafka)
        .chain(
            spec.sinks
                .iter()
                .filter_map(|k| k.kafka.as_ref().map(|k| k.stream.as_str())),
        )
        .collect()
}

/// The Kafka consumer group of a route: group ids are cluster-wide, so it names the tenant.
pub fn consumer_group(tenant: &str, pipeline: &str, sink: &str) -> String {
    format!("sluice.{tenant}.{pipeline}.{sink}")
}

/// Labels shared by everything of one route (also the pods' selector).
pub fn route_labels(tenant: &str, pipeline: &str, sink: &str) -> BTreeMap<String, String> {
    [
        (names::LABEL_TENANT, tenant),
        (names::LABEL_PIPELINE, pipeline),
        (names::LABEL_ROUTE, sink),
        (names::LABEL_NAME, "sluice-worker"),
        (names::LABEL_COMPONENT, "route"),
        (names::LABEL_MANAGED_BY, names::MANAGED_BY),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The label selector of every object of a pipeline's routes, in string form.
pub fn routes_selector(pipeline: &str) -> String {
    format!(
        "{}={pipeline},{}={}",
        names::LABEL_PIPELINE,
        names::LABEL_MANAGED_BY,
        names::MANAGED_BY
    )
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

/// The worker configuration of one sink, its pipeline's Streams being on `brokers`.
pub fn route_config(
    p: &Pipeline,
    tenant: &str,
    sink: &Sink,
    cfg: &OperatorConfig,
    brokers: &StreamBrokers,
) -> RouteConfig {
    let pipeline = p.metadata.name.clone().unwrap_or_default();
    let spec = &p.spec;
    let stream = &spec.source.stream;
    let kafka = || {
        cfg.kafka
            .as_ref()
            .map(|k| k.worker_client())
            .unwrap_or_default()
    };
    let kafka_topic = |topic: String| route::KafkaTopic {
        kafka: kafka(),
        topic,
    };
    let sink_config = if let Some(k) = &sink.kafka {
        route::Sink::Kafka {
            kafka: kafka(),
            topic: kafka::topic_name(tenant, &k.stream),
            key: k.key.clone(),
        }
    } else if let Some(n) = &sink.nats {
        route::Sink::Nats {
            url: cfg.nats_url.clone(),
            subject: format!("{}.{}", subjects::tenant_prefix(tenant), n.subject),
        }
    } else if let Some(j) = &sink.jetstream {
        route::Sink::Jetstream {
            url: cfg.nats_url.clone(),
            subject: subjects::events_subject(tenant, &j.stream),
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
    let start_from = spec.source.start_from;
    let start_time = spec.source.start_time.as_ref().map(|t| t.0.to_string());
    let source_broker = brokers.of(stream, cfg);
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
        source: match source_broker {
            StreamBroker::Nats => route::Source::Jetstream {
                url: cfg.nats_url.clone(),
                stream: subjects::jetstream_name(tenant, stream),
                subject: subjects::events_subject(tenant, stream),
                durable: subjects::durable_name(&pipeline, &sink.name),
                start_from,
                start_time,
                max_ack_pending: 10_000,
                ack_wait_seconds: 30,
            },
            StreamBroker::Kafka => route::Source::Kafka {
                kafka: kafka(),
                topic: kafka::topic_name(tenant, stream),
                group: consumer_group(tenant, &pipeline, &sink.name),
                start_from,
                start_time,
            },
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
            kafka: match &spec.dead_letter {
                Some(d) if brokers.of(&d.stream, cfg) == StreamBroker::Kafka => {
                    Some(kafka_topic(kafka::topic_name(tenant, &d.stream)))
                }
                Some(_) => None,
                None if source_broker == StreamBroker::Kafka => Some(kafka_topic(
                    kafka::dead_letter_topic(tenant, stream, &pipeline),
                )),
                None => None,
            },
        },
        metrics_port: route::WORKER_METRICS_PORT,
        liveness: route::Liveness::default(),
        sink_policy: cfg.sink_policy.clone(),
        max_evaluation_cost: cfg.max_evaluation_cost,
        broker: broker_client(&names::route_name(&pipeline, &sink.name), cfg),
    }
}

/// How route `route`'s workers connect to the broker: on their own inbox prefix always; with
/// tenant accounts, as the route's user, whose creds (and TLS files) are in its Secret.
fn broker_client(route: &str, cfg: &OperatorConfig) -> route::BrokerClient {
    let auth = cfg.broker_auth.as_ref();
    route::BrokerClient {
        credentials_file: auth.map(|_| route_users::mounted_file(route, route_users::CREDS_KEY)),
        inbox_prefix: Some(sluice_broker::permissions::route_inbox_prefix(route)),
        tls: auth
            .and_then(|a| a.worker_tls.as_ref())
            .map(|t| t.config(route)),
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
    let name = names::route_name(&pipeline, &sink.name);
    let config = route_config(p, tenant, sink, cfg, inputs.brokers);
    let config_json = config.to_json();
    let hash = format!("{:016x}", names::fnv1a(config_json.as_bytes()));
    let labels = route_labels(tenant, &pipeline, &sink.name);
    let route_id = route_users::route_id(p, &sink.name);
    let user = inputs.users.map(|u| u.user(&route_id, &name));
    let mut pod_annotations = BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_string(), hash)]);
    if let Some(u) = &user {
        pod_annotations.insert(route_users::USER_ANNOTATION.into(), u.public_key.clone());
    }
    let metadata = ObjectMeta {
        name: Some(name.clone()),
        namespace: p.metadata.namespace.clone(),
        labels: Some(labels.clone()),
        owner_references: Some(vec![OwnerReference {
            api_version: sluice_crd::API_VERSION.into(),
            kind: "Pipeline".into(),
            name: pipeline.clone(),
            uid: p.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]),
        ..Default::default()
    };
    let selector = LabelSelector {
        match_labels: Some(labels.clone()),
        ..Default::default()
    };
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels.clone()),
            annotations: Some(pod_annotations),
            ..Default::default()
        }),
        spec: Some(pod_spec(p, &name, sink, inputs)),
    };
    let secret = user
        .as_ref()
        .map(|u| credentials_secret(&metadata, &name, u, cfg));
    Route {
        sink: sink.name.clone(),
        route_id,
        name,
        user,
        secret,
        config,
        config_map: ConfigMap {
            metadata: metadata.clone(),
            data: Some(BTreeMap::from([(
                route::CONFIG_KEY.to_string(),
                config_json,
            )])),
            ..Default::default()
        },
        deployment: Deployment {
            metadata: metadata.clone(),
            spec: DeploymentSpec {
                replicas: Some(inputs.replicas),
                selector: selector.clone(),
                template,
                ..Default::default()
            },
            ..Default::default()
        },
        service: Service {
            metadata: metadata.clone(),
            spec: Some(ServiceSpec {
                selector: Some(labels),
                ports: Some(vec![ServicePort {
                    name: Some("metrics".into()),
                    port: i32::from(route::WORKER_METRICS_PORT),
                    target_port: Some(IntOrString::String("metrics".into())),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        },
        pod_disruption_budget: PodDisruptionBudget {
            metadata,
            spec: Some(PodDisruptionBudgetSpec {
                max_unavailable: Some(IntOrString::Int(1)),
                selector: Some(selector),
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

/// The Secret of route `name`'s broker credentials: its user's creds, and the TLS files the
/// platform gives workers. Labelled as broker credentials, the only Secrets the operator may
/// write.
fn credentials_secret(
    route_meta: &ObjectMeta,
    name: &str,
    user: &RouteUser,
    cfg: &OperatorConfig,
) -> Secret {
    let mut metadata = route_meta.clone();
    metadata.name = Some(route_users::secret_name(name));
    metadata.labels.get_or_insert_with(BTreeMap::new).insert(
        route_users::CREDENTIALS_LABEL.into(),
        route_users::CREDENTIALS_KIND.into(),
    );
    let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
    let mut data = BTreeMap::from([(route_users::CREDS_KEY.to_string(), bytes(&user.creds))]);
    if let Some(tls) = cfg.broker_auth.as_ref().and_then(|a| a.worker_tls.as_ref()) {
        if let Some(ca) = &tls.ca {
            data.insert(route_users::CA_KEY.into(), bytes(ca));
        }
        if let Some((cert, key)) = &tls.client {
            data.insert(route_users::CERT_KEY.into(), bytes(cert));
            data.insert(route_users::KEY_KEY.into(), bytes(key));
        }
    }
    Secret {
        metadata,
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    }
}

/// The worker pods of route `name`: restricted, with the route's config and secrets mounted,
/// scheduled as the tenant's isolation says.
fn pod_spec(p: &Pipeline, name: &str, sink: &Sink, inputs: &Inputs) -> PodSpec {
    let cfg = inputs.config;
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: name.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
    ];
    let mount = |name: &str, path: String, read_only: Option<bool>| VolumeMount {
        name: name.to_string(),
        mount_path: path,
        read_only,
        ..Default::default()
    };
    let mut mounts = vec![
        mount("config", route::CONFIG_MOUNT_DIR.to_string(), Some(true)),
        mount("tmp", "/tmp".to_string(), None),
    ];
    let mut secrets = secrets_of(sink);
    if inputs.users.is_some() {
        secrets.insert(route_users::secret_name(name));
    }
    for (i, secret) in secrets.into_iter().enumerate() {
        let vol = format!("secret-{i}");
        volumes.push(Volume {
            name: vol.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(mount(
            &vol,
            format!("{}/{secret}", route::SECRETS_MOUNT_DIR),
            Some(true),
        ));
    }
    let probe = |path: &str, period: i32, failure_threshold: Option<i32>| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String("metrics".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold,
        ..Default::default()
    };
    let container = Container {
        name: "worker".into(),
        image: Some(cfg.worker_image.clone()),
        args: Some(vec![
            "--config".into(),
            format!("{}/{}", route::CONFIG_MOUNT_DIR, route::CONFIG_KEY),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("metrics".into()),
            container_port: i32::from(route::WORKER_METRICS_PORT),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        readiness_probe: Some(probe("/readyz", 5, None)),
        liveness_probe: Some(probe("/healthz", 10, Some(6))),
        resources: Some(resources(p.spec.resources.as_ref(), cfg)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        ..Default::default()
    };
    let iso = inputs.tenant.spec.isolation.clone().unwrap_or_default();
    PodSpec {
        service_account_name: Some(WORKER_SERVICE_ACCOUNT.into()),
        automount_service_account_token: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(WORKER_UID),
            run_as_group: Some(WORKER_UID),
            fs_group: Some(WORKER_UID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        termination_grace_period_seconds: Some(60),
        containers: vec![container],
        volumes: Some(volumes),
        node_selector: (!iso.node_selector.is_empty()).then_some(iso.node_selector),
        tolerations: (!iso.tolerations.is_empty()).then_some(iso.tolerations),
        priority_class_name: iso.priority_class_name,
        ..Default::default()
    }
}

/// The requests and limits of a worker: the pipeline's, or the platform's defaults.
fn resources(
    spec: Option<&sluice_crd::ComputeResources>,
    cfg: &OperatorConfig,
) -> ResourceRequirements {
    let requests = spec.and_then(|r| r.requests.clone()).unwrap_or_default();
    let limits = spec.and_then(|r| r.limits.clone()).unwrap_or_default();
    let q = |v: Option<Quantity>, default: &str| v.unwrap_or_else(|| Quantity(default.into()));
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".into(), q(requests.cpu, &cfg.default_cpu_request)),
            (
                "memory".into(),
                q(requests.memory, &cfg.default_memory_request),
            ),
        ])),
        limits: Some(BTreeMap::from([
            ("cpu".into(), q(limits.cpu, &cfg.default_cpu_limit)),
            ("memory".into(), q(limits.memory, &cfg.default_memory_limit)),
        ])),
        claims: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn to_json(o: &impl serde::Serialize) -> Value {
        serde_json::to_value(o).unwrap()
    }

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
                users: None,
                brokers: &StreamBrokers::default(),
            },
        );
        assert_eq!(routes.len(), p.spec.sinks.len());
        let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names[0], "large-orders-alerts");
        for r in &routes {
            assert!(r.config.validate().is_empty(), "{:?}", r.config.validate());
            let objects = [
                to_json(&r.config_map),
                to_json(&r.deployment),
                to_json(&r.service),
                to_json(&r.pod_disruption_budget),
            ];
            let kinds: Vec<&str> = objects
                .iter()
                .map(|o| o["kind"].as_str().unwrap())
                .collect();
            assert_eq!(
                kinds,
                ["ConfigMap", "Deployment", "Service", "PodDisruptionBudget"]
            );
            let d = &objects[1];
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
        } = &alerts.source
        else {
            panic!("a JetStream source");
        };
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
        let deployment = to_json(&webhook.deployment);
        let mounts = &deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"];
        assert!(
            mounts
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["mountPath"] == "/var/run/sluice/secrets/webhook-token")
        );
        assert!(
            !routes[1].config_map.data.as_ref().unwrap()[route::CONFIG_KEY].contains("token-value")
        );
    }

    #[test]
    fn with_tenant_accounts_each_route_mounts_its_own_broker_user() {
        let (p, t) = fixtures();
        let operator = sluice_broker::keys::generate(sluice_broker::Role::Operator);
        let cfg = OperatorConfig {
            broker_auth: Some(crate::accounts::BrokerAuth {
                worker_tls: Some(route_users::WorkerTls {
                    ca: Some("CA PEM".into()),
                    client: None,
                }),
                ..crate::accounts::BrokerAuth::new(
                    sluice_broker::keys::seed(&operator),
                    String::new(),
                    None,
                )
            }),
            ..Default::default()
        };
        let users = RouteUsers {
            account: sluice_broker::derive::account_key(&operator, "t-uid"),
            operator,
            rotation: route_users::Rotation::default(),
            now: 1_800_000_000,
        };
        let routes = routes(
            &p,
            &Inputs {
                tenant: &t,
                config: &cfg,
                replicas: 1,
                users: Some(&users),
                brokers: &StreamBrokers::default(),
            },
        );
        let alerts = &routes[0];
        let user = alerts.user.as_ref().expect("a user per route");
        assert_ne!(
            Some(user),
            routes[1].user.as_ref(),
            "routes do not share users"
        );
        assert_eq!(alerts.route_id, "p-uid/alerts");
        let secret = to_json(alerts.secret.as_ref().unwrap());
        assert_eq!(secret["metadata"]["name"], "large-orders-alerts-broker");
        assert_eq!(
            secret["metadata"]["labels"][route_users::CREDENTIALS_LABEL],
            "broker"
        );
        assert_eq!(secret["metadata"]["ownerReferences"][0]["uid"], "p-uid");
        let data = &alerts.secret.as_ref().unwrap().data.as_ref().unwrap();
        assert_eq!(data[route_users::CREDS_KEY].0, user.creds.as_bytes());
        assert_eq!(data[route_users::CA_KEY].0, b"CA PEM");
        let broker = &alerts.config.broker;
        assert_eq!(
            broker.credentials_file.as_deref(),
            Some("/var/run/sluice/secrets/large-orders-alerts-broker/user.creds")
        );
        assert_eq!(
            broker.inbox_prefix.as_deref(),
            Some("_INBOX_route_large-orders-alerts")
        );
        assert_eq!(
            broker.tls.as_ref().and_then(|t| t.ca_file.as_deref()),
            Some("/var/run/sluice/secrets/large-orders-alerts-broker/ca.crt")
        );
        let d = to_json(&alerts.deployment);
        let template = &d["spec"]["template"];
        assert_eq!(
            template["metadata"]["annotations"][route_users::USER_ANNOTATION],
            user.public_key.as_str()
        );
        assert!(
            template["spec"]["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["secret"]["secretName"] == "large-orders-alerts-broker")
        );
        // The account's keys for the route are scoped to what its worker does.
        let keys = users.keys(&alerts.route_id, &alerts.name, &alerts.config);
        assert!(!keys.is_empty());
        assert_eq!(
            keys.last().unwrap().key.template.permissions,
            sluice_broker::permissions::route(&alerts.config)
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
            users: None,
            brokers: &StreamBrokers::default(),
        };
        let before = routes(&p, &inputs);
        p.spec.sinks[0].nats.as_mut().unwrap().subject = "alerts.other".into();
        let after = routes(&p, &inputs);
        let hash = |r: &Route| {
            to_json(&r.deployment)["spec"]["template"]["metadata"]["annotations"]
                [CONFIG_HASH_ANNOTATION]
                .clone()
        };
        assert_ne!(hash(&before[0]), hash(&after[0]));
        assert_eq!(hash(&before[1]), hash(&after[1]));
    }

    #[test]
    fn routes_read_and_write_kafka_streams_as_their_brokers_say() {
        let (mut p, _) = fixtures();
        let cfg = OperatorConfig {
            kafka: Some(crate::config::KafkaConfig {
                bootstrap_servers: "kafka:9092".into(),
                properties: vec![
                    ("security.protocol".into(), "SASL_SSL".into()),
                    ("sasl.password".into(), "hunter2".into()),
                ],
                worker_properties: vec![("security.protocol".into(), "SASL_SSL".into())],
                namespace: "kafka".into(),
                port: 9092,
            }),
            ..Default::default()
        };
        p.spec.dead_letter = None;
        p.spec.sinks[1] = serde_json::from_value(serde_json::json!(
            {"name": "big", "kafka": {"stream": "big-orders", "key": "customer.id"}}
        ))
        .unwrap();
        let brokers = StreamBrokers(BTreeMap::from([
            ("orders".to_string(), StreamBroker::Kafka),
            ("big-orders".to_string(), StreamBroker::Kafka),
        ]));
        assert_eq!(kafka_streams(&p, &brokers, &cfg), ["orders", "big-orders"]);
        let alerts = route_config(&p, "acme", &p.spec.sinks[0], &cfg, &brokers);
        assert!(alerts.validate().is_empty(), "{:?}", alerts.validate());
        let route::Source::Kafka {
            kafka,
            topic,
            group,
            start_from,
            ..
        } = &alerts.source
        else {
            panic!("a Kafka source: {:?}", alerts.source);
        };
        assert_eq!(topic, "sluice.acme.orders");
        assert_eq!(group, "sluice.acme.large-orders.alerts");
        assert_eq!(*start_from, route::StartFrom::All);
        // Workers never get the secret properties.
        assert_eq!(kafka.bootstrap_servers, "kafka:9092");
        assert_eq!(
            kafka.properties,
            BTreeMap::from([("security.protocol".to_string(), "SASL_SSL".to_string())])
        );
        // The NATS sink of a Kafka stream, and its per-pipeline dead-letter topic.
        assert!(matches!(alerts.sink, route::Sink::Nats { .. }));
        assert_eq!(
            alerts.dead_letter.kafka.as_ref().map(|d| d.topic.as_str()),
            Some("sluice.acme.orders.dead-letter.large-orders")
        );
        let big = route_config(&p, "acme", &p.spec.sinks[1], &cfg, &brokers);
        assert_eq!(
            big.sink,
            route::Sink::Kafka {
                kafka: kafka.clone(),
                topic: "sluice.acme.big-orders".into(),
                key: Some("customer.id".into()),
            }
        );
        // A NATS source with a Kafka dead-letter stream.
        p.spec.dead_letter =
            Some(serde_json::from_value(serde_json::json!({"stream": "big-orders"})).unwrap());
        let nats = StreamBrokers(BTreeMap::from([(
            "big-orders".to_string(),
            StreamBroker::Kafka,
        )]));
        let c = route_config(&p, "acme", &p.spec.sinks[0], &cfg, &nats);
        assert!(matches!(c.source, route::Source::Jetstream { .. }));
        assert_eq!(
            c.dead_letter.kafka.map(|d| d.topic),
            Some("sluice.acme.big-orders".to_string())
        );
    }
}

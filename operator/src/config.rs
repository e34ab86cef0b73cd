//! The platform configuration the operator works with (from flags or the Helm values).

/// Settings of the operator that come from the platform, not from tenants.
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    /// Image of the route workers, e.g. `sluice-worker:0.1.0`.
    pub worker_image: String,
    /// NATS URL the workers connect to.
    pub nats_url: String,
    /// Namespace the broker runs in (workers may reach it through the network policy).
    pub broker_namespace: String,
    /// Port of the broker.
    pub broker_port: u16,
    /// Namespace of the Sluice system (the operator, the API, metrics scrapers).
    pub system_namespace: String,
    /// CPU request of a worker when the pipeline sets none (Kubernetes quantity).
    pub default_cpu_request: String,
    /// Memory request of a worker when the pipeline sets none.
    pub default_memory_request: String,
    /// CPU limit of a worker when the pipeline sets none.
    pub default_cpu_limit: String,
    /// Memory limit of a worker when the pipeline sets none.
    pub default_memory_limit: String,
    /// Name of the ClusterRole tenant owners are bound to in their namespace.
    pub tenant_edit_role: String,
    /// How often a converged object is reconciled again anyway.
    pub resync: std::time::Duration,
    /// Tenant names refused whatever else (`Ready=False`, `reason=ReservedName`), besides any
    /// name whose namespace `sluice-<name>` is the system namespace.
    pub reserved_tenant_names: Vec<String>,
    /// What route workers' sinks may reach, rendered into every route's configuration.
    pub sink_policy: sluice_core::egress::SinkPolicy,
    /// Budget of one CEL evaluation in the workers (estimated steps), rendered into every
    /// route's configuration.
    pub max_evaluation_cost: u64,
    /// The broker's operator key and system administrator, when NATS runs in operator mode:
    /// the operator then runs an account per tenant (`crate::accounts`). `None`: one shared
    /// account, no broker identities.
    pub broker_auth: Option<crate::accounts::BrokerAuth>,
    /// TLS to the broker for the operator's own connections (stream provisioning, accounts).
    pub broker_tls: Option<sluice_core::route::BrokerTls>,
    /// The broker of Streams whose spec names none.
    pub default_stream_broker: sluice_crd::StreamBroker,
    /// The Kafka cluster of Streams on `kafka`, if the platform has one.
    pub kafka: Option<KafkaConfig>,
}

/// The tenant names reserved by default (the API refuses the same list).
pub const DEFAULT_RESERVED_TENANT_NAMES: [&str; 5] =
    ["system", "kube", "default", "admin", "platform"];

impl OperatorConfig {
    /// Whether a Tenant may not be called `name`: a reserved name, or one whose namespace
    /// would be the system namespace.
    pub fn is_reserved_tenant_name(&self, name: &str) -> bool {
        self.reserved_tenant_names.iter().any(|r| r == name)
            || sluice_core::names::tenant_namespace(name) == self.system_namespace
    }
}

impl Default for OperatorConfig {
    fn default() -> Self {
        OperatorConfig {
            worker_image: format!("sluice-worker:{}", env!("CARGO_PKG_VERSION")),
            nats_url: "nats://nats.sluice-system.svc:4222".into(),
            broker_namespace: "sluice-system".into(),
            broker_port: 4222,
            system_namespace: "sluice-system".into(),
            default_cpu_request: "100m".into(),
            default_memory_request: "128Mi".into(),
            default_cpu_limit: "500m".into(),
            default_memory_limit: "256Mi".into(),
            tenant_edit_role: "sluice-tenant-edit".into(),
            resync: std::time::Duration::from_secs(300),
            reserved_tenant_names: DEFAULT_RESERVED_TENANT_NAMES
                .iter()
                .map(ToString::to_string)
                .collect(),
            sink_policy: sluice_core::egress::SinkPolicy::default(),
            max_evaluation_cost: sluice_core::expr::limits::DEFAULT_MAX_EVALUATION_COST,
            broker_auth: None,
            broker_tls: None,
            default_stream_broker: sluice_crd::StreamBroker::Nats,
            kafka: None,
        }
    }
}

/// How the operator reaches the platform's Kafka cluster.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`.
    pub bootstrap_servers: String,
    /// Extra librdkafka properties (TLS, SASL).
    pub properties: Vec<(String, String)>,
    /// The properties the route workers get: those given with `--kafka-property`, never the
    /// secret ones, which a tenant could read from its routes' configuration.
    pub worker_properties: Vec<(String, String)>,
    /// Namespace of the Kafka brokers: tenants' network policies allow their routes egress
    /// to it.
    pub namespace: String,
    /// Port of the Kafka brokers in tenants' network policies.
    pub port: u16,
}

impl KafkaConfig {
    /// How the route workers reach the cluster.
    pub fn worker_client(&self) -> sluice_core::route::KafkaClient {
        sluice_core::route::KafkaClient {
            bootstrap_servers: self.bootstrap_servers.clone(),
            properties: self.worker_properties.iter().cloned().collect(),
        }
    }
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Property values may be passwords.
        let keys: Vec<&str> = self.properties.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("properties", &keys)
            .field("worker_properties", &self.worker_properties)
            .field("namespace", &self.namespace)
            .field("port", &self.port)
            .finish()
    }
}

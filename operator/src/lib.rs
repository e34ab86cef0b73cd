//! The Sluice operator: kube-rs controllers that turn Tenants into isolated namespaces,
//! Streams into broker streams and Pipelines into per-sink processing routes, within quota.
//!
//! - `tenant/`: the Tenant controller and what a tenant owns (`tenant/desired.rs`);
//! - `pipeline/`: the Pipeline controller, quota admission and re-admission, what makes a
//!   route (`pipeline/route.rs`) and how it is built (`pipeline/desired.rs`), its status;
//! - `stream/`: the Stream controller and the broker it provisions streams in (the only
//!   finalizer the operator sets is the Stream's, which deletes the broker stream);
//! - `children.rs`: typed children, apply-if-different and prune; `reconcile.rs`: status,
//!   Events and the retry policy every controller shares; `conditions.rs`: condition
//!   bookkeeping; `error.rs`: the one error type;
//! - `leader.rs`: Lease-based leader election; `http.rs`: metrics and probes;
//! - `bootstrap.rs`: the broker identities of a new installation;
//! - `rbac.rs`: the permissions the operator needs (its ClusterRole);
//! - `run.rs`: wiring. The binary's `main` parses [`Cli`] and calls [`cli`].

pub mod accounts;
pub mod bootstrap;
pub mod children;
pub mod conditions;
pub mod config;
pub mod context;
pub mod error;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod pipeline;
pub mod rbac;
pub mod reconcile;
pub mod route_users;
pub mod run;
pub mod stream;
pub mod tenant;

use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

pub use error::Error;

/// The Sluice operator.
#[derive(Debug, Parser)]
#[command(name = "sluice-operator", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// A subcommand of the operator.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the CustomResourceDefinitions of Sluice as multi-document YAML.
    Crds,
    /// Print the rules of the operator's ClusterRole (every permission it uses) as YAML.
    Rbac,
    /// Run the controllers against the cluster of the current kubeconfig (or in-cluster).
    Run(Box<RunArgs>),
    /// Make the broker identities of a new installation (NATS operator mode) in a directory:
    /// the operator seed, the system administrator's creds, the ingest key, and the
    /// nats-server configuration that trusts them (see docs/broker.md).
    BrokerBootstrap(BrokerBootstrapArgs),
}

/// Flags of `sluice-operator broker-bootstrap`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("into").required(true).args(["dir", "secret"])))]
pub struct BrokerBootstrapArgs {
    /// Directory to write the files to (created; existing files are not overwritten).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Secret to create with the files as keys, in --namespace, through the Kubernetes API
    /// (kept as it is when it exists: the identities of an installation never change).
    #[arg(long)]
    pub secret: Option<String>,
    /// Namespace of --secret.
    #[arg(long, env = "POD_NAMESPACE", default_value = "sluice-system")]
    pub namespace: String,
    /// Address the nats-server's client port listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub host: String,
    /// The nats-server's client port.
    #[arg(long, default_value_t = 4222)]
    pub port: u16,
    /// Where the nats-server keeps its account JWTs and JetStream data.
    #[arg(long, default_value = "/data")]
    pub data_dir: PathBuf,
}

impl BrokerBootstrapArgs {
    fn place(&self) -> bootstrap::ServerPlace {
        bootstrap::ServerPlace {
            host: self.host.clone(),
            port: self.port,
            data_dir: self.data_dir.clone(),
        }
    }
}

/// The files `sluice-operator broker-bootstrap` writes, and what each is for.
pub const BROKER_BOOTSTRAP_FILES: [(&str, &str); 5] = bootstrap::FILES;

/// Flags of `sluice-operator run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "SLUICE_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Image of the route workers.
    #[arg(long, env = "SLUICE_WORKER_IMAGE")]
    pub worker_image: Option<String>,
    /// NATS URL the workers use.
    #[arg(long, env = "SLUICE_NATS_URL")]
    pub nats_url: Option<String>,
    /// Namespace of the broker (allowed in tenants' egress).
    #[arg(long, env = "SLUICE_BROKER_NAMESPACE")]
    pub broker_namespace: Option<String>,
    /// Port of the broker.
    #[arg(long, env = "SLUICE_BROKER_PORT")]
    pub broker_port: Option<u16>,
    /// CPU limit of a worker when its pipeline sets none (Kubernetes quantity). The default
    /// requests are not configurable: quota arithmetic counts them (`sluice_core::quota`).
    #[arg(long, env = "SLUICE_WORKER_CPU_LIMIT")]
    pub worker_cpu_limit: Option<String>,
    /// Memory limit of a worker when its pipeline sets none.
    #[arg(long, env = "SLUICE_WORKER_MEMORY_LIMIT")]
    pub worker_memory_limit: Option<String>,
    /// Namespace of the Sluice system (allowed to scrape workers' metrics).
    #[arg(long, env = "SLUICE_SYSTEM_NAMESPACE")]
    pub system_namespace: Option<String>,
    /// Elect a leader through a Lease, so several replicas can run with one active.
    #[arg(long, env = "SLUICE_LEADER_ELECTION")]
    pub leader_election: bool,
    /// Namespace of the leader Lease (default: the system namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// This replica's identity in the election (default: the host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Tenant names the operator refuses (`Ready=False`, reason `ReservedName`), comma
    /// separated; a name whose namespace is the system namespace is always refused.
    #[arg(
        long,
        env = "SLUICE_RESERVED_TENANT_NAMES",
        value_delimiter = ',',
        default_value = "system,kube,default,admin,platform"
    )]
    pub reserved_tenant_names: Vec<String>,
    /// IP blocks (CIDR) sinks may reach even when loopback or in `--sink-deny-cidrs`, comma
    /// separated. Metadata, link-local and unspecified addresses stay denied.
    #[arg(long, env = "SLUICE_SINK_ALLOW_CIDRS", value_delimiter = ',')]
    pub sink_allow_cidrs: Vec<String>,
    /// IP blocks (CIDR) sinks may not reach, comma separated, e.g. the cluster's pod and
    /// service networks. Checked by the workers after name resolution.
    #[arg(long, env = "SLUICE_SINK_DENY_CIDRS", value_delimiter = ',')]
    pub sink_deny_cidrs: Vec<String>,
    /// Let sinks reach loopback addresses (local development only).
    #[arg(long, env = "SLUICE_SINK_ALLOW_LOOPBACK")]
    pub sink_allow_loopback: bool,
    /// Let object-store sinks without a Secret use the ambient cloud credentials of the
    /// worker's node or pod. Off by default: a tenant could otherwise act with the platform's
    /// identity.
    #[arg(long, env = "SLUICE_ALLOW_AMBIENT_CLOUD_CREDENTIALS")]
    pub allow_ambient_cloud_credentials: bool,
    /// Budget of one CEL evaluation in the workers, in estimated steps (nodes × (longest
    /// collection + 1) ^ comprehension nesting); events over it are dead-lettered.
    #[arg(long, env = "SLUICE_CEL_MAX_EVALUATION_COST", default_value_t = sluice_core::expr::limits::DEFAULT_MAX_EVALUATION_COST, value_parser = clap::value_parser!(u64).range(1..))]
    pub cel_max_evaluation_cost: u64,
    /// File holding the broker's operator seed (`SO…`), when NATS runs in operator mode: the
    /// operator then gives every tenant its own NATS account. Needs
    /// `--broker-admin-creds-file`.
    #[arg(
        long,
        env = "SLUICE_BROKER_OPERATOR_SEED_FILE",
        requires = "broker_admin_creds_file"
    )]
    pub broker_operator_seed_file: Option<PathBuf>,
    /// Creds file of the broker's system account administrator (with
    /// `--broker-operator-seed-file`).
    #[arg(
        long,
        env = "SLUICE_BROKER_ADMIN_CREDS_FILE",
        requires = "broker_operator_seed_file"
    )]
    pub broker_admin_creds_file: Option<PathBuf>,
    /// Public key (`A…`) of the ingest key the API holds: every tenant account lists it as a
    /// signing key scoped to publishing that tenant's events (with
    /// `--broker-operator-seed-file`).
    #[arg(
        long,
        env = "SLUICE_BROKER_INGEST_KEY",
        requires = "broker_operator_seed_file"
    )]
    pub broker_ingest_key: Option<String>,
    /// Hours a route's broker credentials live before they are rotated (with
    /// `--broker-operator-seed-file`).
    #[arg(long, env = "SLUICE_BROKER_CREDENTIALS_ROTATION_HOURS", default_value_t = 168, value_parser = clap::value_parser!(u64).range(1..))]
    pub broker_credentials_rotation_hours: u64,
    /// Require TLS to the broker, for the operator and the workers (implied by the other
    /// `--broker-tls-*` flags).
    #[arg(long, env = "SLUICE_BROKER_TLS")]
    pub broker_tls: bool,
    /// PEM file of the CA the broker's TLS certificate is checked against (default: the
    /// system roots): TLS is then required for the operator's connections, and the workers get
    /// the CA with their credentials.
    #[arg(long, env = "SLUICE_BROKER_TLS_CA_FILE")]
    pub broker_tls_ca_file: Option<PathBuf>,
    /// PEM client certificate the operator presents to the broker (with
    /// `--broker-tls-key-file`).
    #[arg(
        long,
        env = "SLUICE_BROKER_TLS_CERT_FILE",
        requires = "broker_tls_key_file"
    )]
    pub broker_tls_cert_file: Option<PathBuf>,
    /// Key of `--broker-tls-cert-file`.
    #[arg(
        long,
        env = "SLUICE_BROKER_TLS_KEY_FILE",
        requires = "broker_tls_cert_file"
    )]
    pub broker_tls_key_file: Option<PathBuf>,
    /// PEM client certificate the workers present to the broker, handed to them in their
    /// credentials Secret (with `--worker-broker-tls-key-file` and
    /// `--broker-operator-seed-file`).
    #[arg(
        long,
        env = "SLUICE_WORKER_BROKER_TLS_CERT_FILE",
        requires = "worker_broker_tls_key_file"
    )]
    pub worker_broker_tls_cert_file: Option<PathBuf>,
    /// Key of `--worker-broker-tls-cert-file`.
    #[arg(
        long,
        env = "SLUICE_WORKER_BROKER_TLS_KEY_FILE",
        requires = "worker_broker_tls_cert_file"
    )]
    pub worker_broker_tls_key_file: Option<PathBuf>,
    /// Kafka cluster (`host:port[,host:port…]`) the operator provisions the topics of Streams
    /// whose broker is `kafka` in; without it such Streams are refused (`BrokerRefused`).
    #[arg(long, env = "SLUICE_KAFKA_BOOTSTRAP_SERVERS")]
    pub kafka_bootstrap_servers: Option<String>,
    /// A librdkafka property for the operator's Kafka client, as `key=value` (repeatable; for
    /// TLS and SASL settings, e.g. `security.protocol=SASL_SSL`).
    #[arg(long = "kafka-property", value_parser = parse_property)]
    pub kafka_properties: Vec<(String, String)>,
    /// Secret librdkafka properties (SASL credentials), as `key=value;key=value`: from the
    /// environment, so that they appear in no command line.
    #[arg(long, env = "SLUICE_KAFKA_SECRET_PROPERTIES", value_delimiter = ';', value_parser = parse_property, hide_env_values = true)]
    pub kafka_secret_properties: Vec<(String, String)>,
    /// Namespace of the Kafka brokers: tenants' network policies allow their routes egress to
    /// it (with `--kafka-port`).
    #[arg(long, env = "SLUICE_KAFKA_NAMESPACE", default_value = "kafka")]
    pub kafka_namespace: String,
    /// Port of the Kafka brokers in tenants' network policies.
    #[arg(long, env = "SLUICE_KAFKA_PORT", default_value_t = 9092)]
    pub kafka_port: u16,
    /// The broker of Streams whose spec names none.
    #[arg(long, env = "SLUICE_DEFAULT_STREAM_BROKER", default_value = "nats", value_parser = parse_stream_broker)]
    pub default_stream_broker: sluice_crd::StreamBroker,
}

fn parse_property(text: &str) -> Result<(String, String), String> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not key=value"))?;
    Ok((k.trim().to_string(), v.to_string()))
}

fn parse_stream_broker(text: &str) -> Result<sluice_crd::StreamBroker, String> {
    match text {
        "nats" => Ok(sluice_crd::StreamBroker::Nats),
        "kafka" => Ok(sluice_crd::StreamBroker::Kafka),
        other => Err(format!("{other:?} is not a broker: nats or kafka")),
    }
}

impl RunArgs {
    /// The broker identities the flags name, read from their files.
    pub fn broker_auth(&self) -> Result<Option<accounts::BrokerAuth>, Error> {
        let (Some(seed), Some(creds)) = (
            &self.broker_operator_seed_file,
            &self.broker_admin_creds_file,
        ) else {
            return Ok(None);
        };
        let read = |p: &PathBuf| {
            std::fs::read_to_string(p).map_err(|e| Error::Broker(format!("{}: {e}", p.display())))
        };
        if let Some(key) = &self.broker_ingest_key {
            sluice_broker::keys::check_public_key(sluice_broker::Role::Account, key)
                .map_err(|e| Error::Broker(format!("--broker-ingest-key: {e}")))?;
        }
        let ca = self.broker_tls_ca_file.as_ref().map(read).transpose()?;
        let client = match (
            &self.worker_broker_tls_cert_file,
            &self.worker_broker_tls_key_file,
        ) {
            (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
            _ => None,
        };
        let mut auth =
            accounts::BrokerAuth::new(read(seed)?, read(creds)?, self.broker_ingest_key.clone());
        auth.rotation.period =
            std::time::Duration::from_secs(self.broker_credentials_rotation_hours * 3600);
        auth.worker_tls = (self.broker_tls_config().is_some() || client.is_some())
            .then_some(route_users::WorkerTls { ca, client });
        Ok(Some(auth))
    }

    /// TLS to the broker for the operator's own connections, as the flags say.
    pub fn broker_tls_config(&self) -> Option<sluice_core::route::BrokerTls> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let tls = sluice_core::route::BrokerTls {
            ca_file: path(&self.broker_tls_ca_file),
            cert_file: path(&self.broker_tls_cert_file),
            key_file: path(&self.broker_tls_key_file),
        };
        (self.broker_tls || tls != Default::default()).then_some(tls)
    }

    /// The run options these flags describe.
    pub fn options(&self) -> run::RunOptions {
        let mut config = config::OperatorConfig::default();
        if let Some(v) = &self.worker_image {
            config.worker_image = v.clone();
        }
        if let Some(v) = &self.nats_url {
            config.nats_url = v.clone();
        }
        if let Some(v) = &self.broker_namespace {
            config.broker_namespace = v.clone();
        }
        if let Some(v) = self.broker_port {
            config.broker_port = v;
        }
        for (flag, field) in [
            (&self.worker_cpu_limit, &mut config.default_cpu_limit),
            (&self.worker_memory_limit, &mut config.default_memory_limit),
        ] {
            if let Some(v) = flag {
                field.clone_from(v);
            }
        }
        if let Some(v) = &self.system_namespace {
            config.system_namespace = v.clone();
        }
        config.reserved_tenant_names = self
            .reserved_tenant_names
            .iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        config.sink_policy = sluice_core::egress::SinkPolicy {
            allow_cidrs: self.sink_allow_cidrs.clone(),
            deny_cidrs: self.sink_deny_cidrs.clone(),
            allow_loopback: self.sink_allow_loopback,
            allow_ambient_credentials: self.allow_ambient_cloud_credentials,
        };
        config.max_evaluation_cost = self.cel_max_evaluation_cost;
        config.broker_tls = self.broker_tls_config();
        config.default_stream_broker = self.default_stream_broker;
        config.kafka = self
            .kafka_bootstrap_servers
            .as_ref()
            .map(|bootstrap| config::KafkaConfig {
                bootstrap_servers: bootstrap.clone(),
                properties: self
                    .kafka_properties
                    .iter()
                    .chain(&self.kafka_secret_properties)
                    .cloned()
                    .collect(),
                worker_properties: self.kafka_properties.clone(),
                namespace: self.kafka_namespace.clone(),
                port: self.kafka_port,
            });
        let leader_election = self.leader_election.then(|| {
            let ns = self
                .lease_namespace
                .clone()
                .unwrap_or_else(|| config.system_namespace.clone());
            let identity = self.identity.clone().unwrap_or_else(|| {
                std::env::var("HOSTNAME")
                    .unwrap_or_else(|_| format!("sluice-operator-{}", std::process::id()))
            });
            leader::LeaseConfig::new(&ns, &identity)
        });
        run::RunOptions {
            config,
            metrics_addr: Some(self.metrics_addr),
            leader_election,
        }
    }
}

/// Runs a parsed command line, writing its output to `out`.
pub async fn cli(cli: Cli, out: &mut (impl Write + Send)) -> Result<(), Error> {
    match cli.command {
        Command::Crds => {
            out.write_all(sluice_crd::crds_yaml().as_bytes())?;
            out.flush()?;
        }
        Command::Rbac => {
            out.write_all(rbac::rules_yaml().as_bytes())?;
            out.flush()?;
        }
        Command::BrokerBootstrap(args) => {
            if let Some(dir) = &args.dir {
                let files = bootstrap::generate(&args.place())?;
                for (path, (_, what)) in bootstrap::write_dir(dir, &files)?
                    .iter()
                    .zip(BROKER_BOOTSTRAP_FILES)
                {
                    writeln!(out, "{}: {what}", path.display())?;
                }
            } else if let Some(name) = &args.secret {
                let client = kube::Client::try_default().await.map_err(Error::Client)?;
                let outcome =
                    bootstrap::create_secret(client, &args.namespace, name, &args.place()).await?;
                let done = match outcome {
                    bootstrap::SecretOutcome::Created => "created with new broker identities",
                    bootstrap::SecretOutcome::Kept => "exists: kept as it is",
                };
                writeln!(out, "Secret {}/{name}: {done}", args.namespace)?;
            }
            out.flush()?;
        }
        Command::Run(args) => {
            let mut options = args.options();
            options.config.broker_auth = args.broker_auth()?;
            sluice_core::egress::Egress::new(&options.config.sink_policy)?;
            if let Some(k) = &options.config.kafka {
                stream::kafka::KafkaTopics::new(&k.bootstrap_servers, &k.properties)
                    .map_err(Error::Broker)?;
            }
            let client = kube::Client::try_default().await.map_err(Error::Client)?;
            let shutdown = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            run::run(client, options, shutdown).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(args: &[&str]) -> run::RunOptions {
        let cli = Cli::try_parse_from(["sluice-operator", "run"].iter().chain(args)).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        run.options()
    }

    #[test]
    fn kafka_comes_from_flags_and_secret_properties_from_the_environment_only_in_debug() {
        let o = options(&[]);
        assert_eq!(o.config.kafka, None);
        assert_eq!(
            o.config.default_stream_broker,
            sluice_crd::StreamBroker::Nats
        );
        let o = options(&[
            "--kafka-bootstrap-servers=kafka-0:9092,kafka-1:9092",
            "--kafka-property=security.protocol=SASL_SSL",
            "--kafka-secret-properties=sasl.username=sluice;sasl.password=hunter2",
            "--default-stream-broker=kafka",
            "--kafka-namespace=streaming",
        ]);
        let k = o.config.kafka.clone().unwrap();
        assert_eq!(k.bootstrap_servers, "kafka-0:9092,kafka-1:9092");
        assert_eq!((k.namespace.as_str(), k.port), ("streaming", 9092));
        assert_eq!(k.properties.len(), 3);
        assert_eq!(k.properties[2], ("sasl.password".into(), "hunter2".into()));
        assert!(
            !format!("{k:?}").contains("hunter2"),
            "no secret in the debug output"
        );
        assert_eq!(
            o.config.default_stream_broker,
            sluice_crd::StreamBroker::Kafka
        );
        let bad = Cli::try_parse_from(["sluice-operator", "run", "--default-stream-broker=redis"]);
        assert!(bad.is_err());
        let bad = Cli::try_parse_from(["sluice-operator", "run", "--kafka-property=novalue"]);
        assert!(bad.is_err());
    }

    #[test]
    fn platform_limits_come_from_flags() {
        let o = options(&[]);
        assert_eq!(
            o.config.reserved_tenant_names,
            ["system", "kube", "default", "admin", "platform"]
        );
        assert_eq!(
            o.config.sink_policy,
            sluice_core::egress::SinkPolicy::default()
        );
        let o = options(&[
            "--reserved-tenant-names=ops, infra",
            "--sink-deny-cidrs=10.0.0.0/8,172.16.0.0/12",
            "--sink-allow-cidrs=10.5.0.0/16",
            "--sink-allow-loopback",
            "--allow-ambient-cloud-credentials",
            "--cel-max-evaluation-cost=5000",
        ]);
        assert_eq!(o.config.reserved_tenant_names, ["ops", "infra"]);
        assert_eq!(
            o.config.sink_policy.deny_cidrs,
            ["10.0.0.0/8", "172.16.0.0/12"]
        );
        assert_eq!(o.config.sink_policy.allow_cidrs, ["10.5.0.0/16"]);
        assert!(o.config.sink_policy.allow_loopback);
        assert!(o.config.sink_policy.allow_ambient_credentials);
        assert_eq!(o.config.max_evaluation_cost, 5000);
        assert!(o.config.is_reserved_tenant_name("ops"));
        assert!(
            o.config.is_reserved_tenant_name("system"),
            "the system namespace's tenant"
        );
        assert!(!o.config.is_reserved_tenant_name("admin"));
        assert!(
            Cli::try_parse_from(["sluice-operator", "run", "--cel-max-evaluation-cost=0"]).is_err()
        );
    }
}

//! `sluice-api`: serves the Web API (`serve`), applies the store's migrations (`migrate`, for the
//! chart's hook) or prints the OpenAPI document (`openapi`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use sluice_api::auth::oidc::{DEFAULT_JWKS_REFRESH_INTERVAL, JwksSource, Oidc, OidcConfig};
use sluice_api::k8s::Kube;
use sluice_api::server::ApiServer;
use sluice_api::store::Store;
use sluice_api::{AppState, Config, config};

#[derive(Parser)]
#[command(name = "sluice-api", version, about = "Sluice's Web API")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serves the API.
    Serve(Box<ServeArgs>),
    /// Applies the store's pending migrations and exits.
    Migrate {
        /// Database URL: postgres://user@host/db or sqlite:/path/to/file.db.
        #[arg(long, env = "SLUICE_DATABASE_URL")]
        database_url: String,
    },
    /// Prints the OpenAPI document.
    Openapi,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Database URL: postgres://user@host/db or sqlite:/path/to/file.db.
    #[arg(long, env = "SLUICE_DATABASE_URL")]
    database_url: String,
    /// Apply pending migrations before serving.
    #[arg(long, env = "SLUICE_MIGRATE", default_value_t = false)]
    migrate: bool,
    /// Address to listen on.
    #[arg(long, env = "SLUICE_LISTEN", default_value = config::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Address of the metrics listener (`GET /metrics`), separate from the API port so that
    /// the Ingress never exposes it.
    #[arg(long, env = "SLUICE_METRICS_LISTEN", default_value = config::DEFAULT_METRICS_LISTEN)]
    metrics_listen: SocketAddr,
    /// File the bootstrap platform-admin token is written to (mode 0600) when one is issued.
    #[arg(long, env = "SLUICE_BOOTSTRAP_TOKEN_FILE")]
    bootstrap_token_file: Option<PathBuf>,
    /// Secret `namespace/name` the bootstrap platform-admin token is written to (key `token`)
    /// when one is issued.
    #[arg(long, env = "SLUICE_BOOTSTRAP_TOKEN_SECRET")]
    bootstrap_token_secret: Option<String>,
    /// Lifetime of the bootstrap token in seconds; a new one is issued at start once it expired
    /// or was revoked.
    #[arg(long, env = "SLUICE_BOOTSTRAP_TOKEN_TTL_SECONDS",
        default_value_t = config::DEFAULT_BOOTSTRAP_TOKEN_TTL_SECS)]
    bootstrap_token_ttl_seconds: u64,
    /// Tenant names refused at creation (comma-separated).
    #[arg(
        long,
        env = "SLUICE_RESERVED_TENANT_NAMES",
        value_delimiter = ',',
        default_values_t = config::DEFAULT_RESERVED_TENANT_NAMES.map(String::from)
    )]
    reserved_tenant_names: Vec<String>,
    /// The namespace Sluice is installed in: the tenant whose namespace `sluice-<t>` would be
    /// this one is refused.
    #[arg(long, env = "SLUICE_INSTALL_NAMESPACE")]
    install_namespace: Option<String>,
    /// Longest time a request may take; it then answers 503 with Retry-After.
    #[arg(long, env = "SLUICE_REQUEST_TIMEOUT_SECONDS",
        default_value_t = config::DEFAULT_REQUEST_TIMEOUT_SECS)]
    request_timeout_seconds: u64,
    /// Longest time a client may take to send a request's head; the connection is then closed.
    #[arg(long, env = "SLUICE_HEADER_READ_TIMEOUT_SECONDS",
        default_value_t = config::DEFAULT_HEADER_READ_TIMEOUT_SECS)]
    header_read_timeout_seconds: u64,
    /// Longest wait for a tenant's quota lock (another write of the same tenant holds it)
    /// before answering 503 with Retry-After.
    #[arg(long, env = "SLUICE_QUOTA_LOCK_WAIT_SECONDS",
        default_value_t = config::DEFAULT_QUOTA_LOCK_WAIT_SECS)]
    quota_lock_wait_seconds: u64,
    /// Seconds `/readyz` stays ready while only one of the store and the Kubernetes API fails.
    #[arg(long, env = "SLUICE_READINESS_GRACE_SECONDS",
        default_value_t = config::DEFAULT_READINESS_GRACE_SECS)]
    readiness_grace_seconds: u64,
    /// Store connections reserved for authenticating callers (a pool of their own, so that
    /// writes cannot starve authentication).
    #[arg(long, env = "SLUICE_AUTH_DATABASE_MAX_CONNECTIONS",
        default_value_t = config::DEFAULT_AUTH_DATABASE_MAX_CONNECTIONS)]
    auth_database_max_connections: u32,
    /// Kubeconfig file; in-cluster configuration or $KUBECONFIG when absent.
    #[arg(long, env = "SLUICE_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Secret signing Sluice API tokens (HS256), at least 32 bytes.
    #[arg(long, env = "SLUICE_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// `iss` of Sluice API tokens.
    #[arg(long, env = "SLUICE_JWT_ISSUER", default_value = config::DEFAULT_ISSUER)]
    jwt_issuer: String,
    /// `aud` of Sluice API tokens.
    #[arg(long, env = "SLUICE_JWT_AUDIENCE", default_value = config::DEFAULT_AUDIENCE)]
    jwt_audience: String,
    /// Seconds a verified token is cached (revocation reaches other replicas within this).
    #[arg(long, env = "SLUICE_TOKEN_CACHE_SECONDS",
        default_value_t = config::DEFAULT_TOKEN_CACHE_SECS)]
    token_cache_seconds: u64,
    /// Largest request body in bytes.
    #[arg(long, env = "SLUICE_MAX_BODY_BYTES",
        default_value_t = config::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Largest ingest request body in bytes (larger bodies answer 413).
    #[arg(long, env = "SLUICE_INGEST_MAX_BODY_BYTES",
        default_value_t = config::DEFAULT_INGEST_MAX_BODY_BYTES)]
    ingest_max_body_bytes: usize,
    /// Most events in one ingest request; more answer 413 `too-many-events` and nothing of
    /// the request is written.
    #[arg(long, env = "SLUICE_INGEST_MAX_EVENTS",
        default_value_t = config::DEFAULT_INGEST_MAX_EVENTS)]
    ingest_max_events: usize,
    /// Most rejection records listed in one ingest answer (`rejectedCount` counts them all).
    #[arg(long, env = "SLUICE_INGEST_MAX_REJECTIONS",
        default_value_t = config::DEFAULT_INGEST_MAX_REJECTIONS)]
    ingest_max_rejections: usize,
    /// Publishes whose broker acknowledgements are awaited together (the most publish
    /// permits one ingest request holds at once; at most 5000, the permits of the API's
    /// broker client).
    #[arg(long, env = "SLUICE_INGEST_ACK_WINDOW",
        default_value_t = config::DEFAULT_INGEST_ACK_WINDOW)]
    ingest_ack_window: usize,
    /// Deadline of one ingest request in seconds; past it, 503 with Retry-After.
    #[arg(long, env = "SLUICE_INGEST_TIMEOUT_SECONDS",
        default_value_t = config::DEFAULT_INGEST_TIMEOUT_SECS)]
    ingest_timeout_seconds: u64,
    /// Longest wait of one publish for a broker publish permit, in milliseconds; past it,
    /// 503 with Retry-After.
    #[arg(long, env = "SLUICE_INGEST_PERMIT_TIMEOUT_MILLIS",
        default_value_t = config::DEFAULT_INGEST_PERMIT_TIMEOUT_MILLIS)]
    ingest_permit_timeout_millis: u64,
    /// NATS server whose JetStream receives ingested events (ingest answers 503 without it).
    #[arg(long, env = "SLUICE_NATS_URL")]
    nats_url: Option<String>,
    /// File holding the broker's ingest seed (`SA…`), when NATS runs in operator mode: each
    /// tenant's events then go into its own account, as a user this key signs (needs
    /// `--nats-url`).
    #[arg(long, env = "SLUICE_NATS_INGEST_SEED_FILE", requires = "nats_url")]
    nats_ingest_seed_file: Option<std::path::PathBuf>,
    /// Kafka cluster (`host:port[,host:port…]`) that receives the events of Kafka streams
    /// (ingest into them answers 503 without it).
    #[arg(long, env = "SLUICE_KAFKA_BOOTSTRAP_SERVERS")]
    kafka_bootstrap_servers: Option<String>,
    /// A librdkafka property of the Kafka producer, as `key=value` (repeatable; TLS).
    #[arg(long = "kafka-property", value_parser = parse_property)]
    kafka_properties: Vec<(String, String)>,
    /// Secret librdkafka properties (SASL credentials), as `key=value;key=value`: from the
    /// environment, so that they are not in the process's arguments.
    #[arg(long, env = "SLUICE_KAFKA_SECRET_PROPERTIES", value_delimiter = ';', value_parser = parse_property, hide_env_values = true)]
    kafka_secret_properties: Vec<(String, String)>,
    /// Require TLS to the broker (implied by the other `--nats-tls-*` flags).
    #[arg(long, env = "SLUICE_NATS_TLS")]
    nats_tls: bool,
    /// PEM file of the CA the broker's TLS certificate is checked against (default: the
    /// system roots); TLS is then required.
    #[arg(long, env = "SLUICE_NATS_TLS_CA_FILE")]
    nats_tls_ca_file: Option<std::path::PathBuf>,
    /// PEM client certificate presented to the broker (with `--nats-tls-key-file`).
    #[arg(
        long,
        env = "SLUICE_NATS_TLS_CERT_FILE",
        requires = "nats_tls_key_file"
    )]
    nats_tls_cert_file: Option<std::path::PathBuf>,
    /// Key of `--nats-tls-cert-file`.
    #[arg(
        long,
        env = "SLUICE_NATS_TLS_KEY_FILE",
        requires = "nats_tls_cert_file"
    )]
    nats_tls_key_file: Option<std::path::PathBuf>,
    /// Number of API replicas sharing the ingest load: each enforces 1/N of every tenant's
    /// ingest rates and bursts.
    #[arg(long, env = "SLUICE_INGEST_REPLICAS",
        default_value_t = config::DEFAULT_INGEST_REPLICAS)]
    ingest_replicas: u32,
    /// Seconds between writes of the ingest counts to the store.
    #[arg(long, env = "SLUICE_USAGE_FLUSH_SECONDS",
        default_value_t = config::DEFAULT_USAGE_FLUSH_SECS)]
    usage_flush_seconds: u64,
    /// Maximum store connections.
    #[arg(long, env = "SLUICE_DATABASE_MAX_CONNECTIONS",
        default_value_t = config::DEFAULT_DATABASE_MAX_CONNECTIONS)]
    database_max_connections: u32,
    /// `iss` of the OIDC issuer whose tokens are accepted (OIDC is off when absent).
    #[arg(long, env = "SLUICE_OIDC_ISSUER")]
    oidc_issuer: Option<String>,
    /// `aud` OIDC tokens must carry.
    #[arg(long, env = "SLUICE_OIDC_AUDIENCE", default_value = config::DEFAULT_OIDC_AUDIENCE)]
    oidc_audience: String,
    /// The issuer's JWKS: a file path or an http(s):// URL.
    #[arg(long, env = "SLUICE_OIDC_JWKS")]
    oidc_jwks: Option<String>,
    /// Claim holding role values.
    #[arg(long, env = "SLUICE_OIDC_ROLES_CLAIM",
        default_value = config::DEFAULT_OIDC_ROLES_CLAIM)]
    oidc_roles_claim: String,
    /// Claim value granting platform-admin.
    #[arg(long, env = "SLUICE_OIDC_ADMIN_VALUE",
        default_value = config::DEFAULT_OIDC_ADMIN_VALUE)]
    oidc_admin_value: String,
    /// Prefix of claim values `<prefix><tenant>:<role>` granting tenant roles.
    #[arg(long, env = "SLUICE_OIDC_TENANT_PREFIX",
        default_value = config::DEFAULT_OIDC_TENANT_PREFIX)]
    oidc_tenant_prefix: String,
    /// Seconds between background loads of the OIDC JWKS.
    #[arg(long, env = "SLUICE_OIDC_JWKS_REFRESH_SECONDS",
        default_value_t = DEFAULT_JWKS_REFRESH_INTERVAL.as_secs())]
    oidc_jwks_refresh_seconds: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().command {
        Command::Openapi => {
            print!("{}", sluice_api::openapi::document_text());
            Ok(())
        }
        Command::Migrate { database_url } => {
            let store = Store::connect(&database_url, 2).await?;
            sluice_api::migrate(&store).await?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Serve(args) => serve(*args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if args.jwt_secret.len() < 32 {
        bail!("SLUICE_JWT_SECRET must be at least 32 bytes");
    }
    let secret_target = match &args.bootstrap_token_secret {
        Some(s) => match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() => {
                Some((ns.to_string(), name.to_string()))
            }
            _ => bail!("--bootstrap-token-secret must be namespace/name, not {s:?}"),
        },
        None => None,
    };
    let store = Store::connect(&args.database_url, args.database_max_connections)
        .await
        .context("connecting to the database")?;
    let auth_store = Store::connect(
        &args.database_url,
        args.auth_database_max_connections.max(1),
    )
    .await
    .context("connecting to the database (authentication pool)")?;
    if args.migrate {
        sluice_api::migrate(&store).await.context("migrating")?;
    }
    let kube_config = match &args.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    let kube = Kube::new(kube::Client::try_from(kube_config)?);
    let oidc = match (&args.oidc_issuer, &args.oidc_jwks) {
        (Some(issuer), Some(jwks)) => Some(
            Oidc::new(OidcConfig {
                issuer: issuer.clone(),
                audience: args.oidc_audience.clone(),
                jwks: JwksSource::parse(jwks),
                roles_claim: args.oidc_roles_claim.clone(),
                admin_value: args.oidc_admin_value.clone(),
                tenant_prefix: args.oidc_tenant_prefix.clone(),
                jwks_refresh_interval: Duration::from_secs(args.oidc_jwks_refresh_seconds.max(1)),
            })
            .await?,
        ),
        (None, None) => None,
        _ => bail!("set both SLUICE_OIDC_ISSUER and SLUICE_OIDC_JWKS, or neither"),
    };
    let config = args.config();
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
    let tls = Some(sluice_core::route::BrokerTls {
        ca_file: path(&args.nats_tls_ca_file),
        cert_file: path(&args.nats_tls_cert_file),
        key_file: path(&args.nats_tls_key_file),
    })
    .filter(|t| args.nats_tls || *t != Default::default());
    let tenant_accounts = match (&args.nats_url, &args.nats_ingest_seed_file) {
        (Some(url), Some(file)) => {
            let seed = std::fs::read_to_string(file)
                .with_context(|| format!("SLUICE_NATS_INGEST_SEED_FILE {}", file.display()))?;
            Some(sluice_api::ingest::broker::TenantAccounts::new(url, &seed)?.with_tls(tls.clone()))
        }
        _ => None,
    };
    let jetstream = match &args.nats_url {
        Some(_) if tenant_accounts.is_some() => None,
        Some(url) => Some(
            sluice_api::server::connect_jetstream(url, tls.as_ref())
                .await
                .with_context(|| format!("NATS URL {url:?}"))?,
        ),
        None => {
            tracing::warn!("no SLUICE_NATS_URL: ingest answers 503");
            None
        }
    };
    let kafka = match &args.kafka_bootstrap_servers {
        Some(bootstrap) => {
            let properties: Vec<(String, String)> = args
                .kafka_properties
                .iter()
                .chain(&args.kafka_secret_properties)
                .cloned()
                .collect();
            Some(
                sluice_api::ingest::kafka::KafkaIngest::new(bootstrap, &properties)
                    .map_err(anyhow::Error::msg)?,
            )
        }
        None => None,
    };
    let state = ApiServer::new(config, store, kube.clone(), args.jwt_secret.as_bytes())
        .auth_store(auth_store)
        .oidc(oidc)
        .jetstream(jetstream)
        .tenant_accounts(tenant_accounts)
        .kafka(kafka)
        .build()?;
    hand_over_bootstrap_token(
        &state,
        &kube,
        args.bootstrap_token_file.as_deref(),
        secret_target.as_ref(),
    )
    .await?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let metrics_listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("metrics listener {}", args.metrics_listen))?;
    tracing::info!(addr = %listener.local_addr()?, metrics = %metrics_listener.local_addr()?, "serving");
    sluice_api::server::run(state, listener, metrics_listener, shutdown_signal()).await?;
    Ok(())
}

impl ServeArgs {
    /// The API's settings from these flags, out-of-range values brought into range.
    fn config(&self) -> Config {
        Config {
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            token_cache_ttl: Duration::from_secs(self.token_cache_seconds),
            max_body_bytes: self.max_body_bytes,
            ingest_max_body_bytes: self.ingest_max_body_bytes,
            ingest_max_events: self.ingest_max_events.max(1),
            ingest_max_rejections: self.ingest_max_rejections,
            ingest_ack_window: self
                .ingest_ack_window
                .clamp(1, sluice_api::INGEST_MAX_ACK_INFLIGHT),
            ingest_timeout: Duration::from_secs(self.ingest_timeout_seconds.max(1)),
            ingest_permit_timeout: Duration::from_millis(self.ingest_permit_timeout_millis.max(1)),
            ingest_replicas: self.ingest_replicas.max(1),
            usage_flush_interval: Duration::from_secs(self.usage_flush_seconds.max(1)),
            bootstrap_token_ttl: Duration::from_secs(self.bootstrap_token_ttl_seconds.max(60)),
            reserved_tenant_names: self
                .reserved_tenant_names
                .iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            install_namespace: self.install_namespace.clone(),
            request_timeout: Duration::from_secs(self.request_timeout_seconds.max(1)),
            header_read_timeout: Duration::from_secs(self.header_read_timeout_seconds.max(1)),
            quota_lock_wait: Duration::from_secs(self.quota_lock_wait_seconds),
            readiness_grace: Duration::from_secs(self.readiness_grace_seconds),
            ..Config::default()
        }
    }
}

/// Issues the bootstrap token when no live one exists and writes it to the file and/or the
/// Secret; never to the log. Without either destination no token is issued. When it cannot be
/// written it is revoked again (the next start issues another).
async fn hand_over_bootstrap_token(
    state: &AppState,
    kube: &Kube,
    file: Option<&std::path::Path>,
    secret: Option<&(String, String)>,
) -> anyhow::Result<()> {
    if file.is_none() && secret.is_none() {
        tracing::warn!(
            "neither --bootstrap-token-file nor --bootstrap-token-secret is set: \
             no bootstrap platform-admin token is issued"
        );
        return Ok(());
    }
    let Some(token) = sluice_api::bootstrap_token(state).await? else {
        tracing::info!("a live bootstrap platform-admin token exists; none issued");
        return Ok(());
    };
    let written = async {
        if let Some(path) = file {
            sluice_api::write_bootstrap_token_file(path, &token)
                .with_context(|| format!("writing the bootstrap token to {}", path.display()))?;
            tracing::info!(path = %path.display(), "bootstrap platform-admin token written");
        }
        if let Some((ns, name)) = secret {
            kube.write_secret(ns, name, "token", &token)
                .await
                .with_context(|| format!("writing the bootstrap token to Secret {ns}/{name}"))?;
            tracing::info!(secret = %format!("{ns}/{name}"), "bootstrap platform-admin token written");
        }
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = written {
        let now = chrono::Utc::now().timestamp_millis();
        if let Err(r) = state
            .store
            .revoke_platform_token_named(sluice_api::BOOTSTRAP_TOKEN_NAME, now)
            .await
        {
            tracing::error!(error = %r, "cannot revoke the bootstrap token that was not handed over");
        }
        return Err(e);
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM (what Kubernetes sends), so in-flight requests drain.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// A `key=value` property.
fn parse_property(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{text:?} is not key=value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flags_defaults_are_the_settings_defaults() {
        let cli = Cli::try_parse_from([
            "sluice-api",
            "serve",
            "--database-url",
            "sqlite::memory:",
            "--jwt-secret",
            "0123456789abcdef0123456789abcdef",
        ])
        .expect("flags parse");
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        assert_eq!(
            format!("{:?}", args.config()),
            format!("{:?}", Config::default())
        );
        assert_eq!(args.listen.to_string(), config::DEFAULT_LISTEN);
        assert_eq!(
            args.metrics_listen.to_string(),
            config::DEFAULT_METRICS_LISTEN
        );
    }
}

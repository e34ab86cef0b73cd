//! `sluice-api`: serves the Web API (`serve`), applies the store's migrations (`migrate`, for the
//! chart's hook) or prints the OpenAPI document (`openapi`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use sluice_api::auth::oidc::{JwksSource, Oidc, OidcConfig};
use sluice_api::auth::tokens::Authenticator;
use sluice_api::k8s::Kube;
use sluice_api::metrics::Metrics;
use sluice_api::store::Store;
use sluice_api::{AppState, Config};

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
    #[arg(long, env = "SLUICE_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Kubeconfig file; in-cluster configuration or $KUBECONFIG when absent.
    #[arg(long, env = "SLUICE_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Secret signing Sluice API tokens (HS256), at least 32 bytes.
    #[arg(long, env = "SLUICE_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// `iss` of Sluice API tokens.
    #[arg(long, env = "SLUICE_JWT_ISSUER", default_value = "sluice")]
    jwt_issuer: String,
    /// `aud` of Sluice API tokens.
    #[arg(long, env = "SLUICE_JWT_AUDIENCE", default_value = "sluice-api")]
    jwt_audience: String,
    /// Seconds a verified token is cached (revocation reaches other replicas within this).
    #[arg(long, env = "SLUICE_TOKEN_CACHE_SECONDS", default_value_t = 5)]
    token_cache_seconds: u64,
    /// Largest request body in bytes.
    #[arg(long, env = "SLUICE_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    max_body_bytes: usize,
    /// Largest ingest request body in bytes (larger bodies answer 413).
    #[arg(long, env = "SLUICE_INGEST_MAX_BODY_BYTES",
        default_value_t = sluice_api::DEFAULT_INGEST_MAX_BODY_BYTES)]
    ingest_max_body_bytes: usize,
    /// Most events in one ingest request; more answer 413 `too-many-events` and nothing of
    /// the request is written.
    #[arg(long, env = "SLUICE_INGEST_MAX_EVENTS",
        default_value_t = sluice_api::DEFAULT_INGEST_MAX_EVENTS)]
    ingest_max_events: usize,
    /// Most rejection records listed in one ingest answer (`rejectedCount` counts them all).
    #[arg(long, env = "SLUICE_INGEST_MAX_REJECTIONS",
        default_value_t = sluice_api::DEFAULT_INGEST_MAX_REJECTIONS)]
    ingest_max_rejections: usize,
    /// Publishes whose broker acknowledgements are awaited together (the most publish
    /// permits one ingest request holds at once; at most 5000, the permits of the API's
    /// broker client).
    #[arg(long, env = "SLUICE_INGEST_ACK_WINDOW",
        default_value_t = sluice_api::DEFAULT_INGEST_ACK_WINDOW)]
    ingest_ack_window: usize,
    /// Deadline of one ingest request in seconds; past it, 503 with Retry-After.
    #[arg(long, env = "SLUICE_INGEST_TIMEOUT_SECONDS",
        default_value_t = sluice_api::DEFAULT_INGEST_TIMEOUT_SECS)]
    ingest_timeout_seconds: u64,
    /// Longest wait of one publish for a broker publish permit, in milliseconds; past it,
    /// 503 with Retry-After.
    #[arg(long, env = "SLUICE_INGEST_PERMIT_TIMEOUT_MILLIS",
        default_value_t = sluice_api::DEFAULT_INGEST_PERMIT_TIMEOUT_MILLIS)]
    ingest_permit_timeout_millis: u64,
    /// NATS server whose JetStream receives ingested events (ingest answers 503 without it).
    #[arg(long, env = "SLUICE_NATS_URL")]
    nats_url: Option<String>,
    /// Number of API replicas sharing the ingest load: each enforces 1/N of every tenant's
    /// ingest rates and bursts.
    #[arg(long, env = "SLUICE_INGEST_REPLICAS", default_value_t = 1)]
    ingest_replicas: u32,
    /// Seconds between writes of the ingest counts to the store.
    #[arg(long, env = "SLUICE_USAGE_FLUSH_SECONDS", default_value_t = 5)]
    usage_flush_seconds: u64,
    /// Maximum store connections.
    #[arg(long, env = "SLUICE_DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    database_max_connections: u32,
    /// `iss` of the OIDC issuer whose tokens are accepted (OIDC is off when absent).
    #[arg(long, env = "SLUICE_OIDC_ISSUER")]
    oidc_issuer: Option<String>,
    /// `aud` OIDC tokens must carry.
    #[arg(long, env = "SLUICE_OIDC_AUDIENCE", default_value = "sluice-api")]
    oidc_audience: String,
    /// The issuer's JWKS: a file path or an http(s):// URL.
    #[arg(long, env = "SLUICE_OIDC_JWKS")]
    oidc_jwks: Option<String>,
    /// Claim holding role values.
    #[arg(long, env = "SLUICE_OIDC_ROLES_CLAIM", default_value = "groups")]
    oidc_roles_claim: String,
    /// Claim value granting platform-admin.
    #[arg(
        long,
        env = "SLUICE_OIDC_ADMIN_VALUE",
        default_value = "sluice-platform-admins"
    )]
    oidc_admin_value: String,
    /// Prefix of claim values `<prefix><tenant>:<role>` granting tenant roles.
    #[arg(long, env = "SLUICE_OIDC_TENANT_PREFIX", default_value = "sluice:")]
    oidc_tenant_prefix: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
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
    let store = Store::connect(&args.database_url, args.database_max_connections)
        .await
        .context("connecting to the database")?;
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
            })
            .await?,
        ),
        (None, None) => None,
        _ => bail!("set both SLUICE_OIDC_ISSUER and SLUICE_OIDC_JWKS, or neither"),
    };
    let config = Config {
        issuer: args.jwt_issuer.clone(),
        audience: args.jwt_audience.clone(),
        token_cache_ttl: Duration::from_secs(args.token_cache_seconds),
        max_body_bytes: args.max_body_bytes,
        ingest_max_body_bytes: args.ingest_max_body_bytes,
        ingest_max_events: args.ingest_max_events.max(1),
        ingest_max_rejections: args.ingest_max_rejections,
        ingest_ack_window: args
            .ingest_ack_window
            .clamp(1, sluice_api::INGEST_MAX_ACK_INFLIGHT),
        ingest_timeout: Duration::from_secs(args.ingest_timeout_seconds.max(1)),
        ingest_permit_timeout: Duration::from_millis(args.ingest_permit_timeout_millis.max(1)),
        ingest_replicas: args.ingest_replicas.max(1),
        usage_flush_interval: Duration::from_secs(args.usage_flush_seconds.max(1)),
        ..Config::default()
    };
    let auth = Authenticator::new(
        args.jwt_secret.as_bytes(),
        &config.issuer,
        &config.audience,
        oidc,
        config.token_cache_ttl,
    );
    let metrics = Metrics::new(prometheus::Registry::new())?;
    let mut state = AppState::new(config, store.clone(), kube, auth, metrics);
    if let Some(url) = &args.nats_url {
        // Connects in the background and reconnects for ever: the API serves meanwhile, and
        // ingest answers 503 while the broker cannot be reached.
        let client = async_nats::ConnectOptions::new()
            .name("sluice-api")
            .retry_on_initial_connect()
            .connect(url.as_str())
            .await
            .with_context(|| format!("NATS URL {url:?}"))?;
        let jetstream = async_nats::jetstream::context::ContextBuilder::new()
            .max_ack_inflight(sluice_api::INGEST_MAX_ACK_INFLIGHT)
            .build(client);
        state = state.with_jetstream(jetstream);
    } else {
        tracing::warn!("no SLUICE_NATS_URL: ingest answers 503");
    }
    if let Some(token) = sluice_api::bootstrap_token(&state).await? {
        // Printed once, on the first start; only its hash is stored.
        println!("bootstrap platform-admin token (shown once, store it now):\n{token}");
    }
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving");
    let flusher = state.spawn_usage_flusher();
    sluice_api::serve(listener, sluice_api::app(state.clone()), shutdown_signal()).await?;
    // The counts of the last seconds, before the store closes.
    flusher.abort();
    if let Err(e) = state.flush_usage().await {
        tracing::error!(error = %e, "cannot write the last ingest counts");
    }
    store.close().await;
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

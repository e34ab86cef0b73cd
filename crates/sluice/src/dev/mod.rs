//! `sluice dev`: the whole platform on one machine, with one command.
//!
//! It composes the real parts: kubesim as the Kubernetes API (objects kept under the data
//! directory), Sluice's CRDs, the operator and the Web API in-process, NATS (`NATS_URL`, or a
//! `nats-server -js` it starts), and a local runner that plays the kubelet for the route
//! Deployments by running `sluice-worker` processes. Ctrl-C or SIGTERM stops everything in
//! order: the workers drain, then the operator, the API, kubesim and NATS stop.
//!
//! Modules: [`nats`] (the broker), [`api`] (the Web API), [`registry`] (tenants made with
//! kubectl join the API's registry), [`runner`] (the kubelet) with [`route`] (one Deployment's
//! workers), [`worker`] (one process), [`secrets`] (mounted files made local), [`status`]
//! (Deployment status), [`process`] (stopping children), [`stale`] (workers an earlier run
//! left behind), [`paths`] (the data directory).

pub mod api;
mod error;
pub mod nats;
pub mod paths;
pub mod process;
pub mod registry;
pub mod route;
pub mod runner;
pub mod secrets;
pub mod stale;
pub mod status;
pub mod worker;

pub use error::DevError;

use paths::DataDir;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The name of the worker binary.
pub const WORKER_BIN: &str = "sluice-worker";

/// Options of `sluice dev`.
#[derive(Debug, Clone, clap::Args)]
pub struct DevArgs {
    /// Where everything is kept (Kubernetes objects, the API's database, NATS data, logs, the
    /// kubeconfig); a restart resumes from it.
    #[arg(long, default_value = ".sluice-dev")]
    pub data_dir: PathBuf,
    /// Port of the Web API on 127.0.0.1.
    #[arg(long, default_value_t = 8080)]
    pub api_port: u16,
    /// Port of the Kubernetes API (kubesim) on 127.0.0.1.
    #[arg(long, default_value_t = 6443)]
    pub kube_port: u16,
    /// NATS server with JetStream; when unset, the NATS server with JetStream already listening on
    /// `--nats-port` is used, or else `nats-server` from PATH is started there.
    #[arg(long, env = "NATS_URL")]
    pub nats_url: Option<String>,
    /// Port of the NATS server `sluice dev` uses or starts on 127.0.0.1 (without NATS_URL).
    #[arg(long, default_value_t = 4222)]
    pub nats_port: u16,
    /// Database of the Web API (`postgres://...`); an SQLite file in the data dir when unset.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// The `sluice-worker` binary; by default the one next to this executable, then PATH.
    #[arg(long, env = "SLUICE_WORKER_BIN")]
    pub worker_bin: Option<PathBuf>,
    /// A Kafka-protocol broker already running (`host:port[,host:port…]`) for Streams on
    /// `kafka`: the operator makes their topics there, ingest writes to them and routes read and
    /// write them. Unset: Streams on `kafka` are refused (`BrokerRefused`).
    #[arg(long = "kafka", env = "SLUICE_DEV_KAFKA", value_name = "BOOTSTRAP")]
    pub kafka: Option<String>,
}

/// Runs `sluice dev` until Ctrl-C or SIGTERM.
pub async fn run(args: DevArgs) -> Result<(), DevError> {
    let data = DataDir::open(&args.data_dir)?;
    let _lock = paths::Lock::take(&data)?;
    let worker_bin = find_worker(args.worker_bin.as_deref())?;
    // Ports first: nothing is started when one is taken. (The Kubernetes API's port is only
    // probed here: kubesim binds it itself, a moment later.)
    let kube_addr = SocketAddr::from(([127, 0, 0, 1], args.kube_port));
    drop(
        std::net::TcpListener::bind(kube_addr).map_err(|source| DevError::Listen {
            addr: kube_addr,
            flag: "--kube-port",
            source,
        })?,
    );
    let api_addr = SocketAddr::from(([127, 0, 0, 1], args.api_port));
    let api_listener = tokio::net::TcpListener::bind(api_addr)
        .await
        .map_err(|source| DevError::Listen {
            addr: api_addr,
            flag: "--api-port",
            source,
        })?;

    stale::stop_leftovers(&data, worker::DRAIN_GRACE).await;
    if args.nats_url.is_none() {
        stale::stop_leftover_broker(&data.nats(), Duration::from_secs(10)).await;
    }
    let nats = nats::Nats::start(
        args.nats_url.clone(),
        args.nats_port,
        &data.nats(),
        &data.logs(),
    )
    .await?;
    let result = run_with(&args, &data, &worker_bin, kube_addr, api_listener, &nats).await;
    if nats.started_here() {
        tracing::info!("stopping nats-server");
    }
    nats.stop().await;
    result
}

async fn run_with(
    args: &DevArgs,
    data: &DataDir,
    worker_bin: &Path,
    kube_addr: SocketAddr,
    api_listener: tokio::net::TcpListener,
    nats: &nats::Nats,
) -> Result<(), DevError> {
    // Kubernetes API, persisted; Deployments' status is written by the local runner.
    let store = kubesim::persist::DirStore::new(data.kube()).map_err(DevError::io(data.kube()))?;
    let cluster = kubesim::Cluster::with(kubesim::ClusterConfig::default(), Box::new(store))
        .map_err(|e| DevError::Kube(format!("cannot load {}: {e}", data.kube().display())))?;
    cluster.set_kubelet(Arc::new(kubesim::kubelet::Uniform(
        kubesim::PodBehaviour::External,
    )));
    for crd in sluice_crd::crds() {
        let obj = serde_json::to_value(&crd).map_err(|e| DevError::Kube(e.to_string()))?;
        cluster
            .apply_object(&obj, "sluice-dev")
            .map_err(|e| DevError::Kube(format!("cannot install the CRDs: {e}")))?;
    }
    let server = kubesim::Server::start_with(
        cluster,
        kubesim::ServerConfig {
            bind: kube_addr,
            ..Default::default()
        },
    )
    .await
    .map_err(|source| DevError::Listen {
        addr: kube_addr,
        flag: "--kube-port",
        source,
    })?;
    let kubeconfig = server.kubeconfig();
    paths::write_private(&data.kubeconfig(), kubeconfig.as_bytes())?;
    let client = client_for(&kubeconfig).await?;

    // The API (it writes a new bootstrap token to the data directory when it issues one).
    let api = api::WebApi::start(
        data,
        args.database_url.clone(),
        api_listener,
        client.clone(),
        &nats.url,
        nats.bootstrap.as_ref().map(|b| b.ingest_seed()),
        args.kafka.as_deref(),
    )
    .await?;

    // The operator: it renders the dev NATS URL into every route config.
    let stop_operator = CancellationToken::new();
    let mut operator = tokio::spawn(sluice_operator::run::run(
        client.clone(),
        sluice_operator::run::RunOptions {
            config: sluice_operator::config::OperatorConfig {
                nats_url: nats.url.clone(),
                // Everything runs on this machine: sinks may reach loopback addresses.
                sink_policy: sluice_core::egress::SinkPolicy {
                    allow_loopback: true,
                    ..Default::default()
                },
                // The server sluice dev started runs in operator mode: tenant accounts and
                // route users, as in production.
                broker_auth: nats.bootstrap.as_ref().map(|b| {
                    sluice_operator::accounts::BrokerAuth::new(
                        b.operator_seed(),
                        b.admin_creds.clone(),
                        Some(b.ingest.public_key()),
                    )
                }),
                // No network policies are enforced here: namespace and port are for show.
                kafka: args
                    .kafka
                    .clone()
                    .map(|bootstrap| sluice_operator::config::KafkaConfig {
                        bootstrap_servers: bootstrap,
                        properties: vec![],
                        worker_properties: vec![],
                        namespace: "kafka".into(),
                        port: 9092,
                    }),
                ..Default::default()
            },
            metrics_addr: None,
            leader_election: None,
        },
        stop_operator.clone().cancelled_owned(),
    ));

    let stop_registry = CancellationToken::new();
    let registry = tokio::spawn(registry::run(
        client.clone(),
        api.state.clone(),
        stop_registry.clone(),
    ));

    let stop_runner = CancellationToken::new();
    let shared = Arc::new(route::Shared {
        client: client.clone(),
        data: data.clone(),
        worker_bin: worker_bin.to_path_buf(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()
            .map_err(|e| DevError::Api(e.to_string()))?,
    });
    let runner = tokio::spawn(runner::run(shared, stop_runner.clone()));

    // The signal handlers are installed on the first poll: poll once before the banner says
    // everything runs, so a SIGTERM sent as soon as it is printed stops `sluice dev` cleanly.
    let mut shutdown = std::pin::pin!(shutdown_signal());
    let _ = futures::poll!(shutdown.as_mut());
    print_banner(
        data,
        &server.url(),
        &api,
        nats,
        worker_bin,
        args.kafka.as_deref(),
    );

    let outcome = tokio::select! {
        _ = shutdown => Ok(()),
        r = &mut operator => Err(match r {
            Ok(Err(e)) => DevError::Operator(e),
            _ => DevError::Kube("the operator stopped".into()),
        }),
    };
    eprintln!("sluice dev: stopping (workers drain first)...");
    stop_runner.cancel();
    let _ = runner.await;
    stop_registry.cancel();
    let _ = registry.await;
    stop_operator.cancel();
    if !operator.is_finished() {
        match tokio::time::timeout(Duration::from_secs(10), &mut operator).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the operator stopped with an error"),
            Err(_) => {
                tracing::warn!("the operator did not stop within 10 s");
                operator.abort();
            }
            _ => {}
        }
    }
    api.stop().await;
    server.shutdown().await;
    outcome
}

async fn client_for(kubeconfig: &str) -> Result<kube::Client, DevError> {
    let kc = kube::config::Kubeconfig::from_yaml(kubeconfig)
        .map_err(|e| DevError::Kube(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(|e| DevError::Kube(e.to_string()))?;
    kube::Client::try_from(config).map_err(DevError::from)
}

fn print_banner(
    data: &DataDir,
    kube_url: &str,
    api: &api::WebApi,
    nats: &nats::Nats,
    worker_bin: &Path,
    kafka: Option<&str>,
) {
    let root = data.root().display();
    let nats_note = match nats.origin {
        nats::Origin::Started => format!(
            "nats-server started by sluice dev in operator mode: an account per tenant, a user \
             per route; data in {root}/nats"
        ),
        nats::Origin::AlreadyRunning => "already running on its port, with JetStream; one \
            shared account, no broker isolation between tenants (sluice dev isolates them at \
            the broker when it starts nats-server itself)"
            .to_string(),
        nats::Origin::FromUrl => "from NATS_URL; one shared account, no broker isolation \
            between tenants"
            .to_string(),
    };
    println!("sluice dev: the whole platform on this machine (state in {root})");
    println!("  Kubernetes API: {kube_url}");
    println!(
        "  kubeconfig:     {}   (export KUBECONFIG={} ; kubectl get pipelines -A)",
        data.kubeconfig().display(),
        data.kubeconfig().display()
    );
    println!("  REST API:       {}", api.url);
    println!("  NATS:           {} ({nats_note})", nats.url);
    match kafka {
        Some(k) => println!("  Kafka:          {k} (Streams with spec.broker: kafka)"),
        None => println!("  Kafka:          none (--kafka host:port for Streams on Kafka)"),
    }
    println!(
        "  workers:        {} (logs in {root}/logs, file sinks under {root}/files/<namespace>/)",
        worker_bin.display()
    );
    println!("  API metrics:    {}", api.metrics_url);
    if api.bootstrap_token_issued {
        println!(
            "a new bootstrap platform-admin token is in {} (valid for a day; read it with cat)",
            data.admin_token().display()
        );
    } else {
        println!(
            "the bootstrap platform-admin token is in {}",
            data.admin_token().display()
        );
    }
    println!("sluice dev is ready; Ctrl-C stops it");
}

/// The worker binary: `explicit`, else `sluice-worker` next to this executable, else on PATH.
pub fn find_worker(explicit: Option<&Path>) -> Result<PathBuf, DevError> {
    if let Some(p) = explicit {
        return if nats::is_executable(p) {
            Ok(p.to_path_buf())
        } else {
            Err(DevError::NoWorker(format!(
                "--worker-bin {}: no such executable file",
                p.display()
            )))
        };
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(WORKER_BIN)));
    if let Some(p) = beside.as_ref().filter(|p| nats::is_executable(p)) {
        return Ok(p.clone());
    }
    if let Some(p) = nats::find_on_path(WORKER_BIN) {
        return Ok(p);
    }
    let dir = beside
        .as_ref()
        .and_then(|p| p.parent())
        .map(|d| d.display().to_string())
        .unwrap_or_else(|| "this executable's directory".into());
    Err(DevError::NoWorker(format!(
        "cannot find the `{WORKER_BIN}` binary in {dir} or on PATH. Build it with \
         `cargo build -p sluice-worker` (it lands next to `sluice`, in the same target \
         directory), or name it with --worker-bin PATH"
    )))
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}

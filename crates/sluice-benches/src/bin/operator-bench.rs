//! `operator-bench`: the operator converging many Tenants and Pipelines against kubesim, each in
//! its own process, so the operator's figures (RSS, writes) are its own.
//!
//! ```sh
//! cargo run --release -p sluice-benches --bin operator-bench -- \
//!     --tenants 1000 --pipelines-per-tenant 10 --resync-secs 30 --samples 200
//! ```
//!
//! The bench binary re-executes itself twice: `operator-bench kubesim` serves a kubesim cluster
//! with the Sluice CRDs on a loopback port, and `operator-bench operator` runs the operator
//! (`sluice_operator::run::run`) against it with its metrics on another loopback port. Both
//! children stop when their standard input closes, so they never outlive the bench.
//!
//! It measures:
//! 1. the time from the first Tenant created until every Pipeline reports `Running`
//!    (creations with bounded concurrency; convergence polled with paginated lists);
//! 2. the operator process's peak RSS (`VmHWM`);
//! 3. once converged and quiet, the growth of the cluster's resourceVersion over one resync
//!    period, with the operator's own reconcile and write counters proving the resync happened;
//! 4. the latency from a Pipeline's `spec.parallelism` patch to its route Deployment showing
//!    the new `spec.replicas`, while other Pipelines keep changing their parallelism.

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use serde_json::json;
use sluice_crd::{Pipeline, PipelinePhase, Tenant};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// The operator benchmark.
#[derive(Debug, Parser)]
#[command(name = "operator-bench", args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Role>,
    #[command(flatten)]
    bench: BenchArgs,
}

/// The processes the bench runs (the children are started by the bench itself).
#[derive(Debug, Subcommand)]
enum Role {
    /// Serve kubesim with the Sluice CRDs; print its URL; stop when stdin closes.
    #[command(hide = true)]
    Kubesim {
        /// Port on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
    /// Run the operator against the kubeconfig's cluster; stop when stdin closes.
    #[command(hide = true)]
    Operator {
        /// Kubeconfig of the cluster.
        #[arg(long)]
        kubeconfig: PathBuf,
        /// The operator's resync period, in seconds.
        #[arg(long)]
        resync_secs: u64,
        /// Where the operator serves /metrics.
        #[arg(long)]
        metrics_addr: SocketAddr,
    },
}

/// What the benchmark does.
#[derive(Debug, Clone, Args)]
struct BenchArgs {
    /// Tenants to create.
    #[arg(long, default_value_t = 1000)]
    tenants: usize,
    /// Pipelines per tenant (one NATS sink each, parallelism 1).
    #[arg(long, default_value_t = 10)]
    pipelines_per_tenant: usize,
    /// Tenants being created at once (each: the Tenant, then its Pipelines once its namespace
    /// exists).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// The operator's resync period, in seconds.
    #[arg(long, default_value_t = 30)]
    resync_secs: u64,
    /// Spec-change latency samples.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// Pipelines whose parallelism keeps changing while the latency is measured.
    #[arg(long, default_value_t = 100)]
    churn_pipelines: usize,
    /// Patches per second the churn applies, round-robin over the churning pipelines (20: each
    /// of 100 pipelines changes every 5 s).
    #[arg(long, default_value_t = 20)]
    churn_rate: u64,
    /// Give up waiting for convergence after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// Keep the children's logs in this directory (default: a temporary one, removed).
    #[arg(long)]
    log_dir: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Some(Role::Kubesim { port }) => runtime.block_on(serve_kubesim(port)),
        Some(Role::Operator {
            kubeconfig,
            resync_secs,
            metrics_addr,
        }) => runtime.block_on(run_operator(&kubeconfig, resync_secs, metrics_addr)),
        None => runtime.block_on(bench(cli.bench)),
    }
}

/// Resolves when standard input reaches its end (the bench closed it, or died).
async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

async fn serve_kubesim(port: u16) -> anyhow::Result<()> {
    let cluster = kubesim::Cluster::new();
    sluice_testkit::install_crds(&cluster);
    let server = kubesim::Server::start_with(
        cluster,
        kubesim::ServerConfig {
            bind: ([127, 0, 0, 1], port).into(),
            ..Default::default()
        },
    )
    .await?;
    let mut out = tokio::io::stdout();
    out.write_all(format!("{}\n", server.url()).as_bytes())
        .await?;
    out.flush().await?;
    stdin_closed().await;
    server.shutdown().await;
    Ok(())
}

async fn run_operator(
    kubeconfig: &Path,
    resync_secs: u64,
    metrics_addr: SocketAddr,
) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let kubeconfig = Kubeconfig::read_from(kubeconfig)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    let client = Client::try_from(config)?;
    let opts = sluice_operator::run::RunOptions {
        config: sluice_operator::config::OperatorConfig {
            resync: Duration::from_secs(resync_secs),
            // Streams are provisioned in the NATS JetStream server at NATS_URL.
            nats_url: std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into()),
            ..Default::default()
        },
        metrics_addr: Some(metrics_addr),
        leader_election: None,
    };
    sluice_operator::run::run(client, opts, stdin_closed()).await?;
    Ok(())
}

/// A child process of the bench; killed if the bench stops early.
struct Process {
    child: Child,
    name: &'static str,
}

impl Process {
    fn pid(&self) -> anyhow::Result<u32> {
        self.child
            .id()
            .with_context(|| format!("{} has exited", self.name))
    }

    /// Closes its standard input (it stops) and waits for it.
    async fn stop(mut self) {
        drop(self.child.stdin.take());
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

fn spawn(
    exe: &Path,
    name: &'static str,
    args: &[&str],
    log: &Path,
    stdout: bool,
) -> anyhow::Result<Process> {
    let log = std::fs::File::create(log).with_context(|| format!("{}", log.display()))?;
    let child = Command::new(exe)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(if stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    Ok(Process { child, name })
}

/// A figure from `/proc/<pid>/status` (e.g. `VmHWM`), in bytes.
fn proc_status_bytes(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(&format!("{field}:")))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU time used so far by all threads of a process (from `/proc/<pid>/task/*/schedstat`).
fn cpu_time(pid: u32) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let nanos: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The operator's `/metrics`, fetched with a bare HTTP/1.0 request.
async fn scrape(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The operator's counters the bench follows.
#[derive(Debug, Clone, Default)]
struct Counters {
    pipeline_reconciles: f64,
    tenant_reconciles: f64,
    writes: f64,
    errors: f64,
    /// Writes by kind, as `kind=count` pairs.
    writes_by_kind: Vec<String>,
}

async fn counters(addr: SocketAddr) -> anyhow::Result<Counters> {
    let (status, body) = scrape(addr, "/metrics").await?;
    if status != 200 {
        bail!("/metrics answered {status}");
    }
    let mut c = Counters::default();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        if series == "sluice_operator_reconciles_total{controller=\"pipeline\"}" {
            c.pipeline_reconciles = value;
        } else if series == "sluice_operator_reconciles_total{controller=\"tenant\"}" {
            c.tenant_reconciles = value;
        } else if let Some(labels) = series.strip_prefix("sluice_operator_api_writes_total") {
            c.writes += value;
            let kind = labels
                .trim_start_matches("{kind=\"")
                .trim_end_matches("\"}");
            c.writes_by_kind.push(format!("{kind}={value}"));
        } else if series.starts_with("sluice_operator_reconcile_errors_total") {
            c.errors += value;
        }
    }
    Ok(c)
}

fn tenant_name(i: usize) -> String {
    format!("t{i:04}")
}

fn pipeline_name(j: usize) -> String {
    format!("p{j:02}")
}

fn namespace_of(tenant: &str) -> String {
    sluice_core::names::tenant_namespace(tenant)
}

/// The route Deployment of a pipeline's only sink.
fn route_name(pipeline: &str) -> String {
    format!("{pipeline}-out")
}

fn tenant_object(name: &str, pipelines: usize) -> anyhow::Result<Tenant> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": name},
        "spec": {
            "displayName": format!("Tenant {name}"),
            "owners": [{"kind": "User", "name": format!("owner-{name}")}],
            "quota": {"maxPipelines": pipelines * 2, "maxParallelism": pipelines * 4}
        }
    }))?)
}

fn pipeline_object(tenant: &str, name: &str) -> anyhow::Result<Pipeline> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Pipeline",
        "metadata": {"name": name},
        "spec": {
            "source": {"stream": "orders"},
            "filter": "event.amount > 100",
            "sinks": [{"name": "out", "nats": {"subject": format!("out.{tenant}.{name}")}}],
            "parallelism": 1
        }
    }))?)
}

/// Creates one tenant, waits for the operator to make its namespace, then creates its
/// pipelines.
async fn create_tenant(client: Client, i: usize, pipelines: usize) -> anyhow::Result<()> {
    let name = tenant_name(i);
    Api::<Tenant>::all(client.clone())
        .create(&PostParams::default(), &tenant_object(&name, pipelines)?)
        .await
        .with_context(|| format!("create tenant {name}"))?;
    let ns = namespace_of(&name);
    let namespaces = Api::<Namespace>::all(client.clone());
    let started = Instant::now();
    while namespaces.get_opt(&ns).await?.is_none() {
        if started.elapsed() > Duration::from_secs(300) {
            bail!("namespace {ns} never appeared");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The pipelines' source stream (pipelines wait for it to be provisioned).
    let stream: sluice_crd::Stream = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Stream",
        "metadata": {"name": "orders"}, "spec": {"retention": {"maxAge": "1h"}}
    }))?;
    Api::<sluice_crd::Stream>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &stream)
        .await
        .with_context(|| format!("create stream {ns}/orders"))?;
    let api = Api::<Pipeline>::namespaced(client, &ns);
    for j in 0..pipelines {
        let p = pipeline_object(&name, &pipeline_name(j))?;
        api.create(&PostParams::default(), &p)
            .await
            .with_context(|| format!("create pipeline {ns}/{}", pipeline_name(j)))?;
    }
    Ok(())
}

/// Lists every pipeline (pages of 500): how many there are and how many are `Running`.
async fn running(client: &Client) -> anyhow::Result<(usize, usize)> {
    let api = Api::<Pipeline>::all(client.clone());
    let mut lp = ListParams::default().limit(500);
    let (mut total, mut running) = (0, 0);
    loop {
        let page = api.list(&lp).await?;
        total += page.items.len();
        running += page
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase) == Some(PipelinePhase::Running))
            .count();
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    Ok((total, running))
}

/// The cluster's resourceVersion, from a one-item list.
async fn cluster_rv(client: &Client) -> anyhow::Result<u64> {
    let list = Api::<Namespace>::all(client.clone())
        .list_metadata(&ListParams::default().limit(1))
        .await?;
    Ok(list
        .metadata
        .resource_version
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let exe = std::env::current_exe()?;
    let tmp = tempfile::Builder::new()
        .prefix("operator-bench")
        .tempdir()?;
    let logs = match &args.log_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => tmp.path().to_path_buf(),
    };
    let total = args.tenants * args.pipelines_per_tenant;
    eprintln!(
        "operator-bench: {} tenants x {} pipelines = {total} pipelines, {cores} cores, load {}",
        args.tenants,
        args.pipelines_per_tenant,
        load_average()
    );

    // kubesim, in its own process.
    let mut sim = spawn(
        &exe,
        "kubesim",
        &["kubesim", "--port", "0"],
        &logs.join("kubesim.log"),
        true,
    )?;
    let mut lines = BufReader::new(sim.child.stdout.take().context("kubesim stdout")?).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .context("kubesim did not start")??
        .context("kubesim exited")?;
    let kubeconfig = tmp.path().join("kubeconfig");
    std::fs::write(&kubeconfig, kubesim::kubeconfig(&url))?;
    let client = Client::try_from(Config::new(url.parse()?))?;

    // The operator, in its own process.
    let metrics_addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let resync = args.resync_secs.to_string();
    let metrics = metrics_addr.to_string();
    let operator = spawn(
        &exe,
        "operator",
        &[
            "operator",
            "--kubeconfig",
            kubeconfig.to_str().context("kubeconfig path")?,
            "--resync-secs",
            &resync,
            "--metrics-addr",
            &metrics,
        ],
        &logs.join("operator.log"),
        false,
    )?;
    let operator_pid = operator.pid()?;
    let ready_by = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((200, _)) = scrape(metrics_addr, "/readyz").await {
            break;
        }
        if Instant::now() > ready_by {
            bail!("the operator never became ready (log: {})", logs.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("kubesim at {url}, operator pid {operator_pid}, metrics at {metrics_addr}");

    // 1. Time to converge.
    let started = Instant::now();
    let creating = tokio::spawn({
        let client = client.clone();
        let (tenants, per, conc) = (args.tenants, args.pipelines_per_tenant, args.concurrency);
        async move {
            futures::stream::iter(0..tenants)
                .map(|i| create_tenant(client.clone(), i, per))
                .buffer_unordered(conc.max(1))
                .try_collect::<Vec<()>>()
                .await
                .map(|_| Instant::now())
        }
    });
    let mut created_at = None;
    let mut creating = Some(creating);
    let mut last_report = Instant::now();
    let converged = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some(task) = creating.take_if(|t| t.is_finished()) {
            created_at = Some(task.await??);
        }
        // Listing every pipeline costs kubesim CPU the operator then lacks: while creations
        // go on (nothing can be converged yet), list only for the progress line, every 5 s.
        if created_at.is_none() && last_report.elapsed() < Duration::from_secs(5) {
            continue;
        }
        let (seen, run) = running(&client).await?;
        if last_report.elapsed() >= Duration::from_secs(5) {
            eprintln!(
                "  {:>5.1} s: {seen} pipelines created, {run} running; CPU used: operator {:.1} s, kubesim {:.1} s",
                started.elapsed().as_secs_f64(),
                cpu_time(operator_pid).as_secs_f64(),
                cpu_time(sim.pid()?).as_secs_f64()
            );
            last_report = Instant::now();
        }
        if created_at.is_some() && seen == total && run == total {
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(args.timeout_secs) {
            bail!(
                "not converged after {} s: {run}/{total} running",
                args.timeout_secs
            );
        }
    };
    let created_in = created_at.map(|t| t - started).unwrap_or_default();
    let rss_converged = proc_status_bytes(operator_pid, "VmHWM").unwrap_or(0);
    let operator_cpu = cpu_time(operator_pid);
    let sim_cpu = cpu_time(sim.pid()?);
    eprintln!(
        "converged in {:.1} s (creations took {:.1} s); operator peak RSS so far {}; CPU used: operator {:.1} s, kubesim {:.1} s",
        converged.as_secs_f64(),
        created_in.as_secs_f64(),
        mb(rss_converged),
        operator_cpu.as_secs_f64(),
        sim_cpu.as_secs_f64()
    );

    // 3. Writes per resync, once converged and quiet.
    let mut rv = cluster_rv(&client).await?;
    let mut quiet_since = Instant::now();
    let quiet_wait = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(3)
        && quiet_wait.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = cluster_rv(&client).await?;
        if now != rv {
            rv = now;
            quiet_since = Instant::now();
        }
    }
    let c0 = counters(metrics_addr).await?;
    let rv0 = cluster_rv(&client).await?;
    let t0 = Instant::now();
    let resync = Duration::from_secs(args.resync_secs);
    let c1 = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let c = counters(metrics_addr).await?;
        let resynced = c.pipeline_reconciles - c0.pipeline_reconciles >= total as f64
            && c.tenant_reconciles - c0.tenant_reconciles >= args.tenants as f64;
        if t0.elapsed() >= resync && resynced {
            break c;
        }
        if t0.elapsed() > resync * 3 + Duration::from_secs(60) {
            eprintln!("warning: the resync did not reconcile every object in time");
            break c;
        }
    };
    let rv1 = cluster_rv(&client).await?;
    let resync_window = t0.elapsed();
    eprintln!(
        "resync: {} pipeline and {} tenant reconciles in {:.1} s; resourceVersion +{}; operator writes +{}",
        c1.pipeline_reconciles - c0.pipeline_reconciles,
        c1.tenant_reconciles - c0.tenant_reconciles,
        resync_window.as_secs_f64(),
        rv1 - rv0,
        c1.writes - c0.writes
    );

    // 4. Spec change → Deployment latency, while other pipelines churn.
    let churn_count = args.churn_pipelines.min(args.tenants);
    let stop_churn = Arc::new(AtomicBool::new(false));
    let churn_patches = Arc::new(AtomicU64::new(0));
    let churn = tokio::spawn({
        let client = client.clone();
        let stop = stop_churn.clone();
        let patches = churn_patches.clone();
        let rate = args.churn_rate.max(1);
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut round = 0usize;
            while !stop.load(Ordering::Relaxed) && churn_count > 0 {
                for i in 0..churn_count {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    tick.tick().await;
                    let tenant = tenant_name(i);
                    let api = Api::<Pipeline>::namespaced(client.clone(), &namespace_of(&tenant));
                    let parallelism = if round.is_multiple_of(2) { 2 } else { 1 };
                    let patch = json!({"spec": {"parallelism": parallelism}});
                    if api
                        .patch(
                            &pipeline_name(0),
                            &PatchParams::default(),
                            &Patch::Merge(&patch),
                        )
                        .await
                        .is_ok()
                    {
                        patches.fetch_add(1, Ordering::Relaxed);
                    }
                }
                round += 1;
            }
        }
    });
    // Let the churn reach its steady state first.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let churn_started = Instant::now();
    let churn_before = churn_patches.load(Ordering::Relaxed);
    let mut latencies = Vec::with_capacity(args.samples);
    let mut timeouts = 0usize;
    for k in 0..args.samples {
        // Sample pipelines live in tenants the churn does not touch (when there are enough).
        let tenant = tenant_name((churn_count + k) % args.tenants);
        let pipeline = pipeline_name(1 % args.pipelines_per_tenant);
        let ns = namespace_of(&tenant);
        let pipelines = Api::<Pipeline>::namespaced(client.clone(), &ns);
        let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
        let route = route_name(&pipeline);
        let current = deployments.get(&route).await?.spec.replicas.unwrap_or(1);
        let want = if current == 1 { 2 } else { 1 };
        let patch = json!({"spec": {"parallelism": want}});
        let t = Instant::now();
        pipelines
            .patch(&pipeline, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        loop {
            let replicas = deployments.get(&route).await?.spec.replicas;
            if replicas == Some(want) {
                latencies.push(t.elapsed());
                break;
            }
            if t.elapsed() > Duration::from_secs(30) {
                timeouts += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let churn_rate_seen = (churn_patches.load(Ordering::Relaxed) - churn_before) as f64
        / churn_started.elapsed().as_secs_f64();
    stop_churn.store(true, Ordering::Relaxed);
    let _ = churn.await;
    latencies.sort();

    let rss_peak = proc_status_bytes(operator_pid, "VmHWM").unwrap_or(0);
    let sim_peak = proc_status_bytes(sim.pid()?, "VmHWM").unwrap_or(0);
    let c_end = counters(metrics_addr).await?;
    // Leave the broker clean: deleting the tenants makes the operator delete their JetStream
    // streams (Stream finalizers).
    let tenants = Api::<Tenant>::all(client.clone());
    for t in tenants.list(&ListParams::default()).await?.items {
        let _ = tenants
            .delete(&t.name_any(), &kube::api::DeleteParams::default())
            .await;
    }
    let streams = Api::<sluice_crd::Stream>::all(client.clone());
    let cleanup = Instant::now();
    while !streams
        .list(&ListParams::default().limit(1))
        .await?
        .items
        .is_empty()
        && cleanup.elapsed() < Duration::from_secs(300)
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    operator.stop().await;
    sim.stop().await;

    let pass = |ok: bool| if ok { "met" } else { "MISSED" };
    let writes_rv = rv1 - rv0;
    let p99 = percentile(&latencies, 99.0);
    println!();
    println!("== operator benchmark ==");
    println!(
        "machine:              {cores} cores; load average at the end {}",
        load_average()
    );
    println!(
        "workload:             {} tenants x {} pipelines = {total} pipelines (1 NATS sink, parallelism 1), creation concurrency {}",
        args.tenants, args.pipelines_per_tenant, args.concurrency
    );
    println!(
        "time to converge:     {:.1} s (all created after {:.1} s; then polled every 1 s)   goal < 60 s: {}",
        converged.as_secs_f64(),
        created_in.as_secs_f64(),
        pass(converged < Duration::from_secs(60))
    );
    println!(
        "CPU to converge:      operator {:.1} s, kubesim {:.1} s",
        operator_cpu.as_secs_f64(),
        sim_cpu.as_secs_f64()
    );
    println!(
        "operator peak RSS:    {} (at convergence {})   goal < 150 MB: {}",
        mb(rss_peak),
        mb(rss_converged),
        pass(rss_peak < 150_000_000)
    );
    println!(
        "writes per resync:    resourceVersion +{writes_rv}, operator api_writes +{} over {:.1} s (resync {} s; {} pipeline / {} tenant reconciles)   goal 0: {}",
        c1.writes - c0.writes,
        resync_window.as_secs_f64(),
        args.resync_secs,
        c1.pipeline_reconciles - c0.pipeline_reconciles,
        c1.tenant_reconciles - c0.tenant_reconciles,
        pass(writes_rv == 0)
    );
    println!(
        "spec -> Deployment:   n={} p50 {} p90 {} p99 {} max {}; {timeouts} timed out (> 30 s); churn {churn_count} pipelines at {churn_rate_seen:.0} patches/s   goal p99 < 1 s: {}",
        latencies.len(),
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 90.0)),
        ms(p99),
        ms(latencies.last().copied().unwrap_or_default()),
        pass(timeouts == 0 && p99 < Duration::from_secs(1))
    );
    println!(
        "also:                 kubesim peak RSS {}; operator reconciles pipeline {} / tenant {}, api writes {}, reconcile errors {}",
        mb(sim_peak),
        c_end.pipeline_reconciles,
        c_end.tenant_reconciles,
        c_end.writes,
        c_end.errors
    );
    println!("operator writes:      {}", c_end.writes_by_kind.join(", "));
    if let Some(d) = &args.log_dir {
        println!("logs:                 {}", d.display());
    }
    Ok(())
}

//! `kubesim`: run the in-process Kubernetes API server on its own, for experiments.

use anyhow::Context;
use clap::Parser;
use kubesim::auth::{AuthConfig, parse_token_file};
use kubesim::persist::{DirStore, MemoryOnly, Persistence};
use kubesim::{Cluster, ClusterConfig, PodBehaviour, Server, ServerConfig};
use std::path::PathBuf;
use std::sync::Arc;

/// A Kubernetes API server in one process, for tests and local experiments.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Port on 127.0.0.1 to listen on (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Keep objects in this directory, so a restart resumes where it stopped.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// YAML file(s) of objects to create at start (for example CustomResourceDefinitions).
    #[arg(long = "apply")]
    apply: Vec<PathBuf>,
    /// Also write the kubeconfig to this file.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// What Deployments' pods do: ready, never-ready, crash-loop, external.
    #[arg(long, default_value = "ready")]
    pods: String,
    /// Static bearer tokens, one per line: `token,user,uid,"group1,group2"` (the real server's
    /// `--token-auth-file` format).
    #[arg(long, visible_alias = "token-file")]
    token_auth_file: Option<PathBuf>,
    /// Refuse requests without a bearer token (401) instead of running them as the
    /// administrator `kubesim-admin` (group `system:masters`).
    #[arg(long)]
    require_auth: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "kubesim=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let behaviour = match args.pods.as_str() {
        "ready" => PodBehaviour::Ready,
        "never-ready" => PodBehaviour::NeverReady,
        "crash-loop" => PodBehaviour::CrashLoop,
        "external" => PodBehaviour::External,
        other => anyhow::bail!(
            "--pods must be one of ready, never-ready, crash-loop, external (got {other:?})"
        ),
    };
    let persistence: Box<dyn Persistence> = match &args.data_dir {
        Some(dir) => {
            Box::new(DirStore::new(dir).with_context(|| format!("cannot use {}", dir.display()))?)
        }
        None => Box::new(MemoryOnly),
    };
    let cluster = Cluster::with(ClusterConfig::default(), persistence)
        .context("cannot load the saved state")?;
    cluster.set_kubelet(Arc::new(kubesim::kubelet::Uniform(behaviour)));
    for file in &args.apply {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        for obj in kubesim::cluster::parse_yaml_documents(&text)
            .with_context(|| format!("{} is not valid YAML", file.display()))?
        {
            cluster
                .apply_object(&obj, "kubesim")
                .with_context(|| format!("cannot apply an object from {}", file.display()))?;
        }
    }
    let tokens = match &args.token_auth_file {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            parse_token_file(&text)
                .with_context(|| format!("{} is not a token file", file.display()))?
        }
        None => vec![],
    };
    let server = Server::start_with(
        cluster,
        ServerConfig {
            bind: ([127, 0, 0, 1], args.port).into(),
            auth: AuthConfig {
                tokens,
                require_auth: args.require_auth,
            },
            ..Default::default()
        },
    )
    .await?;
    let kubeconfig = server.kubeconfig();
    if let Some(path) = &args.kubeconfig {
        std::fs::write(path, &kubeconfig)
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("kubeconfig written to {}", path.display());
    }
    println!("{kubeconfig}");
    eprintln!("kubesim listening on {} (Ctrl-C to stop)", server.url());
    tokio::signal::ctrl_c().await?;
    server.shutdown().await;
    Ok(())
}

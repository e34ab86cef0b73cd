//! `sluice-worker`: runs one route of a pipeline from its configuration file.

use anyhow::Context as _;
use clap::Parser;
use sluice_worker::{RunOptions, config};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// Moves one route's events from its source through the filter and projection to its sink.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The route configuration (JSON), as rendered into the route's ConfigMap.
    #[arg(long, default_value = "/etc/sluice/route.json")]
    config: PathBuf,
    /// Address of the metrics and health endpoints (overrides `metricsPort`; port 0 picks a
    /// free one, printed on standard error).
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = match config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(config, args.metrics_addr) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice-worker: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run(
    config: sluice_core::route::RouteConfig,
    metrics_addr: Option<SocketAddr>,
) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let abort = CancellationToken::new();
    let signals = {
        let (shutdown, abort) = (shutdown.clone(), abort.clone());
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::spawn(async move {
            let mut count = 0;
            loop {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                count += 1;
                if count == 1 {
                    tracing::info!("stop signal: draining (send it again to stop at once)");
                    shutdown.cancel();
                } else {
                    tracing::warn!("second stop signal: stopping at once");
                    abort.cancel();
                }
            }
        })
    };
    let options = RunOptions {
        metrics_addr,
        listening: None,
    };
    let result = sluice_worker::run(config, options, shutdown, abort).await;
    signals.abort();
    result.context("the worker stopped")
}

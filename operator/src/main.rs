//! The `sluice-operator` binary.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    let cli = sluice_operator::Cli::parse();
    sluice_operator::cli(cli, &mut std::io::stdout()).await?;
    Ok(())
}

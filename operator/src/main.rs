//! The `sluice-operator` binary.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = sluice_operator::Cli::parse();
    sluice_operator::run(cli, &mut std::io::stdout().lock())?;
    Ok(())
}

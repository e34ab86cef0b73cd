//! The Sluice operator: its command line.
//!
//! The binary's `main` parses [`Cli`] and calls [`run`]; tests drive [`run`] directly.

use std::io::Write;

use clap::{Parser, Subcommand};

/// Errors of the operator's commands.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing the command's output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

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
}

/// Runs a parsed command line, writing its output to `out`.
pub fn run(cli: Cli, out: &mut impl Write) -> Result<(), Error> {
    match cli.command {
        Command::Crds => out.write_all(sluice_crd::crds_yaml().as_bytes())?,
    }
    out.flush()?;
    Ok(())
}

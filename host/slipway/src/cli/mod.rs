//! Command-line arguments and dispatch.

mod plugin;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Slipway: packages integration flows into images, pushes and deploys them.
#[derive(Debug, Parser)]
#[command(name = "slipway", version, about)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check, run and pack plugins (WebAssembly components).
    #[command(subcommand)]
    Plugin(plugin::Command),
}

/// Runs the command; the exit code says whether it succeeded.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Plugin(command) => plugin::run(command).await,
    }
}

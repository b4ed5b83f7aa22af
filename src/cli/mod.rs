//! Command-line parsing and dispatch: one file per command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for a failure of hull itself, as in Docker.
pub const EXIT_HULL_FAILURE: u8 = 125;

#[derive(Debug, Parser)]
#[command(name = "hull", version, about = "Run OCI images, each container in its own KVM micro-VM")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {}
}

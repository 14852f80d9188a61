//! The `etcd-operator` command line.

use clap::{Parser, Subcommand};

/// A Kubernetes operator for etcd.
#[derive(Debug, Parser)]
#[command(name = "etcd-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the version.
    Version,
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => println!("etcd-operator {}", env!("CARGO_PKG_VERSION")),
    }
}

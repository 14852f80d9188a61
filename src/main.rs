//! The `etcd-operator` command line.

use std::process::ExitCode;

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
    /// Print the CustomResourceDefinitions as YAML (what `crds/` holds).
    Crd,
    /// Run the operator against Kubernetes (in-cluster, or the cluster `KUBECONFIG` names).
    Run(etcd_operator::runtime::kubernetes::RunArgs),
    /// Run the operator on this machine: etcd processes on 127.0.0.1, clusters from manifests.
    Local(etcd_operator::runtime::local::LocalArgs),
    /// Print the version.
    Version,
    /// Snapshot tools the operator's own Pods run (a restore Pod's init container).
    #[command(subcommand, hide = true)]
    Snapshot(SnapshotCommand),
}

#[derive(Debug, Subcommand)]
enum SnapshotCommand {
    /// Read one snapshot object from a store into a file (decrypted, its SHA-256 checked);
    /// credentials and the key come from environment variables only.
    Fetch(etcd_operator::controller::backup::fetch::FetchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => match etcd_operator::api::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("etcd-operator crd: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Local(args) => {
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("etcd-operator local: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(etcd_operator::runtime::local::run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("etcd-operator local: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run(args) => {
            etcd_operator::telemetry::init(args.log_format);
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("etcd-operator run: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(etcd_operator::runtime::kubernetes::run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("etcd-operator run: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Snapshot(SnapshotCommand::Fetch(args)) => {
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("etcd-operator snapshot fetch: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let env = std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_encoded_bytes())));
            match rt.block_on(etcd_operator::controller::backup::fetch::fetch(&args, env)) {
                Ok(got) => {
                    println!(
                        "fetched {} ({} bytes, sha256 {}) into {}",
                        args.object,
                        got.size,
                        got.sha256,
                        args.output.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    // Also the Pod's termination message, which the operator reports.
                    if let Some(path) = &args.termination_log {
                        let _ = std::fs::write(path, e.to_string());
                    }
                    eprintln!("etcd-operator snapshot fetch: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Version => {
            println!("etcd-operator {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}

//! The local runtime: etcd processes on 127.0.0.1 driven by the shared planner.

use std::path::PathBuf;

/// Arguments of `etcd-operator local`.
#[derive(Debug, Clone, clap::Args)]
pub struct LocalArgs {
    /// A manifest file or a directory of them (YAML, several documents per file).
    #[arg(long)]
    pub manifest: PathBuf,
    /// Where member data, ports and status files live.
    #[arg(long)]
    pub state_dir: PathBuf,
    /// A folder with one sub-folder of etcd binaries per version (`etcd-3.5.16/bin/etcd`, ...);
    /// `etcd` on PATH when absent.
    #[arg(long)]
    pub etcd_bin_dir: Option<PathBuf>,
}

/// Errors of the local runtime.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// Not built yet.
    #[error("the local runtime is not implemented yet")]
    NotImplemented,
}

/// Runs the local operator until SIGINT/SIGTERM.
pub async fn run(_args: LocalArgs) -> Result<(), LocalError> {
    Err(LocalError::NotImplemented)
}

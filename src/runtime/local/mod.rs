//! The local runtime: etcd processes on 127.0.0.1 driven by the shared planner.
//!
//! `etcd-operator local --manifest <file-or-dir> --state-dir <dir>` reads `EtcdCluster`
//! manifests, and for each cluster runs the same observe → plan → act loop as the Kubernetes
//! controller, with members as etcd processes (see [`members`]) whose ports, data and intents
//! live under the state directory (see [`store`]; ports are chosen by [`ports`]). Each cluster
//! has a task of its own ([`fleet`]), so one cluster's long step (a defragmentation, a snapshot)
//! never delays another's supervision. The operator looks at the manifests every 200 ms, writes
//! each cluster's status to `<state-dir>/<namespace>/<name>/status.yaml`, logs one line per
//! action, and on SIGINT/SIGTERM stops its members gracefully, keeping their data.

pub mod cluster;
pub mod fleet;
pub mod manifest;
pub mod members;
pub mod ports;
pub mod process;
pub mod security;
pub mod store;
mod verify;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use fleet::{Fleet, OpenWith};
use manifest::ManifestErrors;
use ports::{Allocator, PortRange};

use crate::metrics::Metrics;

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
    /// The loopback ports clusters' blocks are chosen in (`<first>-<last>`); a block of 20
    /// ports is chosen once per cluster, never overlapping another local operator's.
    #[arg(long, default_value_t = PortRange::default())]
    pub port_range: PortRange,
}

/// Errors of the local runtime.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A state file does not parse.
    #[error("corrupt state: {0}")]
    Corrupt(String),
    /// No free block of ports was found.
    #[error(
        "no free block of {} loopback ports in {range} (every block is bound, recorded in a \
         cluster.yaml of the state directory or reserved by another local operator)",
        ports::PORTS_PER_CLUSTER
    )]
    Ports {
        /// The range searched.
        range: PortRange,
    },
    /// A blocking file operation's thread failed.
    #[error("{context}: the blocking task failed: {reason}")]
    Task {
        /// What was being done.
        context: String,
        /// The panic or cancellation.
        reason: String,
    },
    /// No etcd binary for a version.
    #[error("no etcd {version} binary under {dir} (expected etcd-{version}/bin/etcd)")]
    NoBinary {
        /// The version.
        version: String,
        /// The folder searched.
        dir: PathBuf,
    },
    /// A restore from a snapshot failed (missing or unreadable file, `etcdutl` failed or is
    /// missing); nothing was started.
    #[error("restore: {0}")]
    Restore(String),
    /// The snapshot of a restore could not be read from its store (missing, corrupt, encrypted
    /// with another key); nothing was started.
    #[error("restore: reading {location}: {source}")]
    RestoreDownload {
        /// The object.
        location: String,
        /// The store's error.
        #[source]
        source: crate::snapshot_store::StoreError,
    },
    /// The runtime refused an operation that would lose data.
    #[error("{0}")]
    Refused(String),
    /// The cluster's certificates could not be made or read.
    #[error("certificates: {0}")]
    Tls(#[source] crate::tls::pki::PkiError),
    /// `spec.auth` names a root password Secret the manifests do not hold.
    #[error("{0}")]
    Auth(String),
}

/// Errors starting `etcd-operator local`.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The manifests are invalid.
    #[error("{0}")]
    Manifest(#[from] ManifestErrors),
    /// The state directory could not be created, locked or read.
    #[error("{0}")]
    State(#[from] LocalError),
    /// Signal handlers could not be installed.
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
}

impl LocalError {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        LocalError::Io {
            context: context.into(),
            source,
        }
    }
}

/// How often every cluster is observed when nothing is happening.
pub const RESYNC: Duration = Duration::from_secs(1);
/// How soon the next pass comes after a step: observing is reads only, so the next step (a
/// learner's start after its `MemberAdd`, its promotion after the start) need not wait.
pub const AFTER_STEP: Duration = Duration::from_millis(50);
/// The pause after etcd answered "not yet" (a learner still catching up, a membership change
/// refused for five seconds after the last one), for the first [`NOT_YET_FLAT`] answers in a
/// row: what a person retrying by hand would wait (a learner usually catches up within a
/// second). Each further one doubles the pause, up to [`RESYNC`].
pub const NOT_YET_FIRST: Duration = Duration::from_millis(100);
/// How many "not yet" answers in a row are retried after [`NOT_YET_FIRST`].
pub const NOT_YET_FLAT: u32 = 10;

/// The pause after the `streak`-th "not yet" answer in a row (1 for the first).
pub fn not_yet_pause(streak: u32) -> Duration {
    let doublings = streak.saturating_sub(NOT_YET_FLAT).min(16);
    NOT_YET_FIRST.saturating_mul(1u32 << doublings).min(RESYNC)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// How often the manifests' files are looked at (their size and modification time; the text
/// is read only when those change).
pub const MANIFEST_POLL: Duration = Duration::from_millis(200);

/// The manifests as last read: the text of every file, to notice edits.
#[derive(Debug, Default, PartialEq, Eq)]
struct ManifestFingerprint(Vec<(PathBuf, String)>);

/// The manifests' files with their size and modification time: cheap to take every
/// [`MANIFEST_POLL`].
#[derive(Debug, Default, PartialEq, Eq)]
struct ManifestStamps(Vec<(PathBuf, u64, Option<std::time::SystemTime>)>);

fn stamps(path: &std::path::Path) -> ManifestStamps {
    let files = manifest::manifest_files(path).unwrap_or_default();
    ManifestStamps(
        files
            .into_iter()
            .map(|f| {
                let meta = std::fs::metadata(&f).ok();
                let len = meta.as_ref().map_or(0, std::fs::Metadata::len);
                let modified = meta.and_then(|m| m.modified().ok());
                (f, len, modified)
            })
            .collect(),
    )
}

fn fingerprint(path: &std::path::Path) -> ManifestFingerprint {
    let files = manifest::manifest_files(path).unwrap_or_default();
    ManifestFingerprint(
        files
            .into_iter()
            .map(|f| {
                let text = std::fs::read_to_string(&f).unwrap_or_default();
                (f, text)
            })
            .collect(),
    )
}

/// Runs the local operator until SIGINT/SIGTERM.
///
/// Every cluster's task runs on the calling thread (a [`tokio::task::LocalSet`]): member
/// processes are spawned with `PR_SET_PDEATHSIG`, which fires when the *thread* that spawned
/// them ends, so they are all spawned from this thread, which lives as long as the operator.
/// Blocking file operations go to tokio's blocking threads; those never spawn a process.
pub async fn run(args: LocalArgs) -> Result<(), StartError> {
    init_logging();
    tokio::task::LocalSet::new().run_until(drive(args)).await
}

async fn drive(args: LocalArgs) -> Result<(), StartError> {
    let mut sigterm = signal(SignalKind::terminate()).map_err(StartError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(StartError::Signals)?;
    let mut stamped = stamps(&args.manifest);
    let mut seen = fingerprint(&args.manifest);
    let manifests = manifest::load(&args.manifest)?;
    std::fs::create_dir_all(&args.state_dir)
        .map_err(|e| LocalError::io(format!("creating {}", args.state_dir.display()), e))?;
    let _lock = StateLock::take(&args.state_dir)?;
    // Counted as in the Kubernetes runtime; not served yet.
    let mut fleet = Fleet::new(OpenWith {
        state_dir: args.state_dir.clone(),
        bin_dir: args.etcd_bin_dir.clone(),
        metrics: Arc::new(Metrics::new()),
        ports: Allocator::new(args.port_range),
    });
    let result = async {
        fleet.apply(manifests).await?;
        let mut polls: u128 = 0;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(MANIFEST_POLL) => {}
                _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping members gracefully"); break; }
                _ = sigint.recv() => { tracing::info!("SIGINT: stopping members gracefully"); break; }
            }
            // An edit within the same modification-time tick with the same size is missed by the
            // stamps: the text is compared at least every RESYNC as well.
            let now_stamped = stamps(&args.manifest);
            let tick = polls.wrapping_add(1);
            polls = tick;
            let full = tick.is_multiple_of((RESYNC.as_millis() / MANIFEST_POLL.as_millis()).max(1));
            if now_stamped == stamped && !full {
                continue;
            }
            stamped = now_stamped;
            let now = fingerprint(&args.manifest);
            if now == seen {
                continue;
            }
            seen = now;
            match manifest::load(&args.manifest) {
                Ok(ms) => {
                    if let Err(e) = fleet.apply(ms).await {
                        tracing::error!("applying the edited manifests: {e}");
                    }
                }
                Err(e) => tracing::error!("{e}; running clusters are left as they are"),
            }
        }
        Ok::<(), LocalError>(())
    }
    .await;
    fleet.shutdown().await;
    Ok(result?)
}

/// `<state-dir>/operator.pid`: one operator per state directory. Two would start the same
/// members twice; a stale file (its process gone) is taken over.
struct StateLock {
    path: PathBuf,
}

impl StateLock {
    fn take(state_dir: &std::path::Path) -> Result<Self, LocalError> {
        let path = state_dir.join("operator.pid");
        if let Some(pid) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
            .filter(|pid| *pid != std::process::id())
        {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            let dir_name = state_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if cmdline.contains("etcd-operator") && cmdline.contains(&dir_name) {
                return Err(LocalError::Refused(format!(
                    "another etcd-operator (pid {pid}) already runs on {}",
                    state_dir.display()
                )));
            }
        }
        store::write_atomic(&path, format!("{}\n", std::process::id()).as_bytes())?;
        Ok(Self { path })
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_yet_pauses_stay_short_then_double_up_to_the_resync() {
        assert_eq!(not_yet_pause(1), NOT_YET_FIRST);
        assert_eq!(not_yet_pause(NOT_YET_FLAT), NOT_YET_FIRST);
        assert_eq!(not_yet_pause(NOT_YET_FLAT + 1), NOT_YET_FIRST * 2);
        assert_eq!(not_yet_pause(NOT_YET_FLAT + 3), NOT_YET_FIRST * 8);
        assert_eq!(not_yet_pause(NOT_YET_FLAT + 4), RESYNC);
        assert_eq!(not_yet_pause(u32::MAX), RESYNC);
        assert!(AFTER_STEP < NOT_YET_FIRST && MANIFEST_POLL < RESYNC);
    }
}

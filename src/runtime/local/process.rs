//! etcd member processes: started with their output in a log file, bound to the operator's life
//! (`PR_SET_PDEATHSIG`, so an operator killed outright takes its members with it), restarted
//! after a crash with a growing back-off as a kubelet would, and stopped gracefully (SIGTERM,
//! then SIGKILL after a grace period).

#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::LocalError;

/// The first restart delay after a crash; it doubles with each crash in a row.
pub const BACKOFF_START: Duration = Duration::from_secs(1);
/// The longest restart delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A process that ran this long without crashing has its crash count reset.
pub const STABLE_AFTER: Duration = Duration::from_secs(20);
/// How long a graceful stop waits before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// The back-off before restart number `crashes` (1 for the first crash).
pub fn backoff(crashes: u32) -> Duration {
    let shift = crashes.saturating_sub(1).min(16);
    BACKOFF_START.saturating_mul(1u32 << shift).min(BACKOFF_MAX)
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The etcd binary.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Where its output goes (appended).
    pub log: PathBuf,
    /// Where its pid is written.
    pub pid_file: PathBuf,
}

/// One supervised process.
#[derive(Debug)]
pub struct Supervised {
    child: Option<Child>,
    started_at: Instant,
    /// Crashes in a row.
    crashes: u32,
    /// When the next restart is due, after a crash.
    restart_at: Option<Instant>,
    /// The last exit, for the log.
    last_exit: Option<String>,
}

/// What [`Supervised::poll`] noticed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Nothing changed.
    None,
    /// The process exited on its own; a restart is scheduled after the delay.
    Crashed {
        /// How it exited.
        exit: String,
        /// Crashes in a row.
        crashes: u32,
        /// The delay before the restart.
        delay: Duration,
    },
    /// A restart is due now.
    RestartDue,
}

impl Supervised {
    /// Starts `launch` and supervises it.
    pub fn start(launch: &Launch) -> Result<Self, LocalError> {
        Ok(Self {
            child: Some(spawn(launch)?),
            started_at: Instant::now(),
            crashes: 0,
            restart_at: None,
            last_exit: None,
        })
    }

    /// The process ID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Whether the process runs now.
    pub fn is_alive(&self) -> bool {
        self.child.is_some()
    }

    /// Crashes in a row (0 once the process has run [`STABLE_AFTER`]).
    pub fn crashes(&self) -> u32 {
        self.crashes
    }

    /// The last exit, if it crashed.
    pub fn last_exit(&self) -> Option<&str> {
        self.last_exit.as_deref()
    }

    /// Reaps an exited process and says whether a restart is due.
    pub fn poll(&mut self) -> Event {
        if let Some(child) = self.child.as_mut() {
            match child.try_wait() {
                Ok(None) => {
                    if self.crashes > 0 && self.started_at.elapsed() >= STABLE_AFTER {
                        self.crashes = 0;
                    }
                    return Event::None;
                }
                Ok(Some(status)) => {
                    self.child = None;
                    self.crashes = self.crashes.saturating_add(1);
                    let delay = backoff(self.crashes);
                    self.restart_at = Some(Instant::now() + delay);
                    let exit = status.to_string();
                    self.last_exit = Some(exit.clone());
                    return Event::Crashed {
                        exit,
                        crashes: self.crashes,
                        delay,
                    };
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot check an etcd process");
                    return Event::None;
                }
            }
        }
        match self.restart_at {
            Some(at) if Instant::now() >= at => Event::RestartDue,
            _ => Event::None,
        }
    }

    /// Starts the process again (after a crash), keeping the crash count.
    pub fn restart(&mut self, launch: &Launch) -> Result<(), LocalError> {
        self.restart_at = None;
        match spawn(launch) {
            Ok(child) => {
                self.child = Some(child);
                self.started_at = Instant::now();
                Ok(())
            }
            Err(e) => {
                // Counts as a crash: try again after the back-off.
                self.crashes = self.crashes.saturating_add(1);
                self.restart_at = Some(Instant::now() + backoff(self.crashes));
                Err(e)
            }
        }
    }

    /// Stops the process: SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        self.restart_at = None;
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
    }
}

fn spawn(launch: &Launch) -> Result<Child, LocalError> {
    let open = |p: &Path| {
        std::fs::File::options()
            .create(true)
            .append(true)
            .open(p)
            .map_err(|e| LocalError::io(format!("opening {}", p.display()), e))
    };
    let out = open(&launch.log)?;
    let err = out
        .try_clone()
        .map_err(|e| LocalError::io("cloning a log handle", e))?;
    let mut cmd = std::process::Command::new(&launch.program);
    // Its own process group: a Ctrl-C in the terminal reaches the operator only, which then
    // stops the members one at a time (members all stopping at once make the leader wait for a
    // leadership transfer that cannot happen).
    cmd.args(&launch.args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of the parent.
    // The signal fires when the spawning *thread* ends: the operator spawns only from the thread
    // that runs every cluster's task for the operator's whole life (a LocalSet, see
    // `super::run`), never from a blocking thread, so it fires only when the operator dies.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
    let child = Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| LocalError::io(format!("starting {}", launch.program.display()), e))?;
    // Advisory (for people and tests; the operator tracks its children itself): not synced, so
    // starting a member waits on no fsync.
    if let Some(pid) = child.id() {
        let _ = super::store::write_replace(&launch.pid_file, format!("{pid}\n").as_bytes());
    }
    Ok(child)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(9), BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }
}

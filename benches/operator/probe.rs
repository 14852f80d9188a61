//! What the benchmark reads from outside: etcd's view of a cluster (through the project's client,
//! the same way for the operator's clusters and the manual floor's), child processes, and
//! `/proc` figures of the operator process.

#![allow(unsafe_code)]

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_operator::etcd::proto::etcdserverpb as pb;
use pb::cluster_client::ClusterClient;
use pb::maintenance_client::MaintenanceClient;
use tonic::transport::{Channel, Endpoint};

use super::BenchError;

/// One member as etcd lists it, with what its own `Status` answered.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Member ID.
    pub id: u64,
    /// Its name (empty until it started).
    pub name: String,
    /// Whether it is a learner.
    pub learner: bool,
    /// Its first client URL.
    pub client_url: Option<String>,
    /// Leader it sees (0: none), version, raft index, applied index; `None` if it did not answer.
    pub status: Option<(u64, String, u64, u64)>,
}

/// A view of one cluster: its members, or `None` when no member answered.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// The members listed.
    pub members: Vec<Seen>,
}

impl View {
    /// `n` started voters, every one answering on `version` and agreeing on one leader.
    pub fn converged(&self, n: usize, version: &str) -> bool {
        let leaders: Vec<u64> = self
            .members
            .iter()
            .filter_map(|m| m.status.as_ref().map(|s| s.0))
            .collect();
        self.members.len() == n
            && leaders.len() == n
            && leaders.iter().all(|l| *l != 0 && *l == leaders[0])
            && self.members.iter().all(|m| {
                !m.learner
                    && !m.name.is_empty()
                    && m.status.as_ref().is_some_and(|s| s.1 == version)
            })
    }

    /// The leader the members agree on.
    pub fn leader(&self) -> Option<u64> {
        self.members
            .iter()
            .filter_map(|m| m.status.as_ref().map(|s| s.0))
            .find(|l| *l != 0)
    }

    /// The highest raft index any member reports.
    pub fn raft_index(&self) -> u64 {
        self.members
            .iter()
            .filter_map(|m| m.status.as_ref().map(|s| s.2))
            .max()
            .unwrap_or(0)
    }
}

/// Unary gRPC calls only (a linearizable `MemberList`, `Status`), over one lazily connected
/// channel per URL. Deliberately not the project's client: its per-member health `Watch`
/// streams would hold every member's shutdown for etcd's graceful-stop timeout (about 7 s), and
/// the observer must not slow down what it measures.
pub struct Prober {
    channels: std::collections::HashMap<String, Channel>,
}

const CALL: Duration = Duration::from_millis(700);

impl Prober {
    /// A prober with no channel yet.
    pub fn new() -> Self {
        Self {
            channels: std::collections::HashMap::new(),
        }
    }

    fn channel(&mut self, url: &str) -> Option<Channel> {
        if let Some(c) = self.channels.get(url) {
            return Some(c.clone());
        }
        let c = Endpoint::from_shared(url.to_owned())
            .ok()?
            .connect_timeout(Duration::from_millis(500))
            .connect_lazy();
        self.channels.insert(url.to_owned(), c.clone());
        Some(c)
    }

    async fn status(&mut self, url: &str) -> Option<pb::StatusResponse> {
        let mut m = MaintenanceClient::new(self.channel(url)?);
        let r = tokio::time::timeout(CALL, m.status(pb::StatusRequest {})).await;
        r.ok()?.ok().map(tonic::Response::into_inner)
    }

    /// etcd's view through any of `urls` (a linearizable member list from the first that
    /// answers, then each listed member's `Status` at its URL); empty when nothing answers.
    pub async fn view(&mut self, urls: &[String]) -> View {
        let mut list = None;
        for u in urls {
            let Some(ch) = self.channel(u) else { continue };
            let mut c = ClusterClient::new(ch);
            let req = pb::MemberListRequest { linearizable: true };
            if let Ok(Ok(r)) = tokio::time::timeout(CALL, c.member_list(req)).await {
                list = Some(r.into_inner().members);
                break;
            }
        }
        let Some(list) = list else {
            return View::default();
        };
        let mut members = Vec::with_capacity(list.len());
        for m in list {
            let client_url = m.client_urls.first().cloned();
            let status = match client_url.as_deref() {
                Some(u) if urls.iter().any(|x| x == u) => self
                    .status(u)
                    .await
                    .filter(|s| s.header.as_ref().is_some_and(|h| h.member_id == m.id))
                    .map(|s| (s.leader, s.version, s.raft_index, s.raft_applied_index)),
                _ => None,
            };
            members.push(Seen {
                id: m.id,
                name: m.name,
                learner: m.is_learner,
                client_url,
                status,
            });
        }
        View { members }
    }

    /// Polls [`Prober::view`] every `every` until `done` holds; the time it took since `from`.
    pub async fn wait(
        &mut self,
        urls: &dyn Fn() -> Vec<String>,
        from: Instant,
        timeout: Duration,
        every: Duration,
        what: &str,
        done: impl Fn(&View) -> bool,
    ) -> Result<Duration, BenchError> {
        loop {
            let v = self.view(&urls()).await;
            if done(&v) {
                return Ok(from.elapsed());
            }
            if from.elapsed() > timeout {
                return Err(BenchError(format!(
                    "timed out after {timeout:?} waiting for {what}; last view: {v:?}"
                )));
            }
            tokio::time::sleep(every).await;
        }
    }
}

/// A child process with its output in a log file; killed (SIGKILL) when dropped, and when the
/// benchmark dies (`PDEATHSIG`).
pub struct Proc {
    child: Child,
}

impl Proc {
    /// Starts `program args`, output appended to `log`.
    pub fn spawn(program: &Path, args: &[String], log: &Path) -> Result<Self, BenchError> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| BenchError(format!("opening {}: {e}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(|e| BenchError(format!("cloning a log handle: {e}")))?;
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no parent memory.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| BenchError(format!("starting {}: {e}", program.display())))?;
        Ok(Self { child })
    }

    /// Its pid.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap_or(0)
    }

    /// SIGTERM, then waits up to `grace` for it to exit (SIGKILL after that).
    pub async fn stop(&mut self, grace: Duration) {
        signal(self.pid(), libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `sig` to `pid` (a process this benchmark started, or one its operator started).
pub fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory effects.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// CPU time (user + system) the process has used so far, in milliseconds.
pub fn cpu_ms(pid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) * 1000.0 / hz)
}

/// A `/proc/<pid>/status` field in kB (`VmRSS`, `VmHWM`).
pub fn status_kb(pid: i32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Whether `pid` is a live process (not a zombie).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().to_owned()))
        .is_some_and(|r| !r.starts_with('Z'))
}

/// A free loopback port (bound, then released).
pub fn free_port() -> Result<u16, BenchError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| BenchError(format!("binding a port: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| BenchError(format!("reading a port: {e}")))
}

/// The 1-, 5- and 15-minute load averages.
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

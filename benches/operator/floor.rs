//! The floor: the same safe steps the operator takes, scripted by hand with `etcdctl` and
//! process starts, as an operator-less runbook would (polling every [`POLL`]).
//!
//! - add: `member add --learner`, start the process with `--initial-cluster-state=existing`,
//!   `member promote` until etcd accepts it (it refuses while the learner is behind);
//! - remove: `move-leader` away when it leads, `member remove`, stop the process, delete its data;
//! - restart/upgrade: followers first, the leader last after `move-leader`; stop, start with the
//!   new binary on the same data, wait until `endpoint health` passes and the new version shows.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::probe::{Proc, free_port};
use super::{BenchError, Settings};

/// Whether `BENCH_VERBOSE=1` asks for every refused `etcdctl` call to be shown.
fn verbose() -> bool {
    std::env::var("BENCH_VERBOSE").is_ok_and(|v| v == "1")
}

/// How often the script polls.
pub const POLL: Duration = Duration::from_millis(100);
const TIMEOUT: Duration = Duration::from_secs(120);

struct Member {
    name: String,
    client: String,
    peer: String,
    data: PathBuf,
    proc: Option<Proc>,
    id: u64,
}

/// A hand-run cluster on loopback.
pub struct Floor {
    dir: PathBuf,
    token: String,
    members: Vec<Member>,
    version_bin: PathBuf,
    s: Settings,
}

impl Floor {
    /// A cluster (nothing started) with room for `max` members, using `bin` (a folder with
    /// `etcd` and `etcdctl`).
    pub fn new(dir: &Path, max: usize, bin: &Path, s: &Settings) -> Result<Self, BenchError> {
        std::fs::create_dir_all(dir).map_err(|e| BenchError(format!("creating {dir:?}: {e}")))?;
        let mut members = Vec::new();
        for i in 0..max {
            members.push(Member {
                name: format!("m{i}"),
                client: format!("http://127.0.0.1:{}", free_port()?),
                peer: format!("http://127.0.0.1:{}", free_port()?),
                data: dir.join(format!("m{i}.data")),
                proc: None,
                id: 0,
            });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            token: format!("floor-{}", std::process::id()),
            members,
            version_bin: bin.to_path_buf(),
            s: s.clone(),
        })
    }

    /// Client URLs of the members whose process runs.
    pub fn client_urls(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.proc.is_some())
            .map(|m| m.client.clone())
            .collect()
    }

    async fn etcdctl(&self, endpoints: &[String], args: &[&str]) -> Result<String, String> {
        let out = tokio::process::Command::new(self.version_bin.join("etcdctl"))
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .arg("--command-timeout=3s")
            .args(args)
            .output()
            .await
            .map_err(|e| format!("running etcdctl: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "etcdctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    async fn until_ok(&self, endpoints: &[String], args: &[&str]) -> Result<String, BenchError> {
        let t0 = std::time::Instant::now();
        loop {
            match self.etcdctl(endpoints, args).await {
                Ok(out) => return Ok(out),
                Err(e) if t0.elapsed() > TIMEOUT => return Err(BenchError(e)),
                Err(e) => {
                    if verbose() {
                        eprintln!("bench-operator: floor: {e}; retrying");
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    }

    fn start(&mut self, i: usize, initial_cluster: &str, state: &str) -> Result<(), BenchError> {
        let m = &self.members[i];
        let args = vec![
            format!("--name={}", m.name),
            format!("--data-dir={}", m.data.display()),
            format!("--listen-client-urls={}", m.client),
            format!("--advertise-client-urls={}", m.client),
            format!("--listen-peer-urls={}", m.peer),
            format!("--initial-advertise-peer-urls={}", m.peer),
            format!("--initial-cluster={initial_cluster}"),
            format!("--initial-cluster-state={state}"),
            format!("--initial-cluster-token={}", self.token),
            "--logger=zap".to_owned(),
            format!("--heartbeat-interval={}", self.s.heartbeat_ms),
            format!("--election-timeout={}", self.s.election_ms),
            "--snapshot-count=5000".to_owned(),
            "--unsafe-no-fsync=true".to_owned(),
        ];
        let log = self.dir.join(format!("{}.log", m.name));
        let proc = Proc::spawn(&self.version_bin.join("etcd"), &args, &log)?;
        self.members[i].proc = Some(proc);
        Ok(())
    }

    /// Starts the seed alone and waits until it serves.
    pub async fn seed(&mut self) -> Result<(), BenchError> {
        let ic = format!("{}={}", self.members[0].name, self.members[0].peer);
        self.start(0, &ic, "new")?;
        let ep = vec![self.members[0].client.clone()];
        self.until_ok(&ep, &["endpoint", "health"]).await?;
        let st = self.status(&ep).await?;
        self.members[0].id = st.first().map_or(0, |s| s.0);
        Ok(())
    }

    /// Adds member `i`: learner, started, promoted once caught up.
    pub async fn add(&mut self, i: usize) -> Result<(), BenchError> {
        let eps = self.client_urls();
        let peer = format!("--peer-urls={}", self.members[i].peer);
        let name = self.members[i].name.clone();
        let out = self
            .until_ok(&eps, &["member", "add", &name, &peer, "--learner"])
            .await?;
        // "Member <hex> added to cluster <hex>" ... ETCD_INITIAL_CLUSTER="m0=...,m1=..."
        let id = out
            .split_whitespace()
            .nth(1)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .ok_or_else(|| BenchError(format!("member add said {out:?}")))?;
        let ic = out
            .lines()
            .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER="))
            .map(|v| v.trim_matches('"').to_owned())
            .ok_or_else(|| BenchError(format!("member add said {out:?}")))?;
        self.members[i].id = id;
        self.start(i, &ic, "existing")?;
        let hex = format!("{id:x}");
        self.until_ok(&eps, &["member", "promote", &hex]).await?;
        Ok(())
    }

    /// (member id, leader id, version) of each endpoint, from `endpoint status -w json`.
    async fn status(&self, eps: &[String]) -> Result<Vec<(u64, u64, String)>, BenchError> {
        let out = self
            .until_ok(eps, &["endpoint", "status", "-w", "json"])
            .await?;
        let v: Value =
            serde_json::from_str(&out).map_err(|e| BenchError(format!("status json: {e}")))?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        let s = &e["Status"];
                        (
                            s["header"]["member_id"].as_u64().unwrap_or(0),
                            s["leader"].as_u64().unwrap_or(0),
                            s["version"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn leader(&self) -> Result<u64, BenchError> {
        let st = self.status(&self.client_urls()).await?;
        st.iter()
            .map(|s| s.1)
            .find(|l| *l != 0)
            .ok_or_else(|| BenchError("no leader".into()))
    }

    /// Moves leadership off member `i` if it leads.
    async fn move_off(&self, i: usize) -> Result<(), BenchError> {
        let leader = self.leader().await?;
        if leader != self.members[i].id {
            return Ok(());
        }
        let to = self
            .members
            .iter()
            .find(|m| m.proc.is_some() && m.id != leader)
            .map(|m| format!("{:x}", m.id))
            .ok_or_else(|| BenchError("no member to move the leader to".into()))?;
        let ep = vec![self.members[i].client.clone()];
        self.until_ok(&ep, &["move-leader", &to]).await?;
        Ok(())
    }

    /// Removes member `i`: leadership moved away, removed, stopped, data deleted.
    pub async fn remove(&mut self, i: usize) -> Result<(), BenchError> {
        self.move_off(i).await?;
        let hex = format!("{:x}", self.members[i].id);
        let others: Vec<String> = self
            .members
            .iter()
            .enumerate()
            .filter(|(j, m)| *j != i && m.proc.is_some())
            .map(|(_, m)| m.client.clone())
            .collect();
        self.until_ok(&others, &["member", "remove", &hex]).await?;
        let t = std::time::Instant::now();
        if let Some(mut p) = self.members[i].proc.take() {
            p.stop(Duration::from_secs(10)).await;
        }
        if verbose() {
            eprintln!(
                "bench-operator: floor: stopped removed m{i} in {:?}",
                t.elapsed()
            );
        }
        let _ = std::fs::remove_dir_all(&self.members[i].data);
        Ok(())
    }

    /// Restarts every running member on the binaries in `bin`, followers first, the leader
    /// last (after moving leadership away).
    pub async fn roll(&mut self, bin: &Path, version: &str) -> Result<(), BenchError> {
        let leader = self.leader().await?;
        let mut order: Vec<usize> = (0..self.members.len())
            .filter(|i| self.members[*i].proc.is_some())
            .collect();
        order.sort_by_key(|i| self.members[*i].id == leader);
        self.version_bin = bin.to_path_buf();
        for i in order {
            self.move_off(i).await?;
            let t = std::time::Instant::now();
            if let Some(mut p) = self.members[i].proc.take() {
                p.stop(Duration::from_secs(10)).await;
            }
            if verbose() {
                eprintln!("bench-operator: floor: stopped m{i} in {:?}", t.elapsed());
            }
            // The data directory holds the membership: the initial-cluster flags are ignored.
            let ic = format!("{}={}", self.members[i].name, self.members[i].peer);
            self.start(i, &ic, "existing")?;
            let ep = vec![self.members[i].client.clone()];
            let t0 = std::time::Instant::now();
            loop {
                self.until_ok(&ep, &["endpoint", "health"]).await?;
                if self
                    .status(&ep)
                    .await?
                    .first()
                    .is_some_and(|s| s.2 == version)
                {
                    break;
                }
                if t0.elapsed() > TIMEOUT {
                    return Err(BenchError(format!("{} did not come back", ep[0])));
                }
                tokio::time::sleep(POLL).await;
            }
            if verbose() {
                eprintln!("bench-operator: floor: m{i} back in {:?}", t.elapsed());
            }
        }
        Ok(())
    }

    /// Stops every member.
    pub async fn stop(&mut self) {
        for m in &mut self.members {
            if let Some(mut p) = m.proc.take() {
                p.stop(Duration::from_secs(10)).await;
            }
        }
    }
}

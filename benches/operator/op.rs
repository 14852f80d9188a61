//! The operator under measurement: `etcd-operator local` on a manifest and a state directory of
//! its own, with the provisioned etcd builds as its `--etcd-bin-dir`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::probe::{Proc, alive};
use super::{BenchError, Settings};

/// One cluster of a manifest.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Its name.
    pub name: String,
    /// Members.
    pub replicas: u32,
    /// etcd version.
    pub version: String,
}

/// The manifest text for `specs` (one YAML document each), with the benchmark's etcd settings.
pub fn manifest(specs: &[Spec], s: &Settings) -> String {
    specs
        .iter()
        .map(|c| {
            format!(
                "apiVersion: etcd.operator.dev/v1alpha1\nkind: EtcdCluster\nmetadata:\n  name: {}\n\
                 spec:\n  replicas: {}\n  version: \"{}\"\n  etcd:\n    heartbeatIntervalMs: {}\n    \
                 electionTimeoutMs: {}\n    snapshotCount: 5000\n    \
                 extraFlags: [\"--unsafe-no-fsync=true\"]\n",
                c.name, c.replicas, c.version, s.heartbeat_ms, s.election_ms
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// A running operator.
pub struct Operator {
    dir: PathBuf,
    proc: Option<Proc>,
}

impl Operator {
    /// Writes the manifest under `dir` and starts the operator on it.
    pub fn start(dir: &Path, text: &str, s: &Settings) -> Result<Self, BenchError> {
        std::fs::create_dir_all(dir).map_err(|e| BenchError(format!("creating {dir:?}: {e}")))?;
        let op = Self {
            dir: dir.to_path_buf(),
            proc: None,
        };
        op.write_manifest(text)?;
        let args = vec![
            "local".to_owned(),
            "--manifest".to_owned(),
            op.manifest_path().display().to_string(),
            "--state-dir".to_owned(),
            op.state_dir().display().to_string(),
            "--etcd-bin-dir".to_owned(),
            s.versions_dir.display().to_string(),
        ];
        let proc = Proc::spawn(&s.operator_bin, &args, &dir.join("operator.log"))?;
        Ok(Self {
            proc: Some(proc),
            ..op
        })
    }

    fn manifest_path(&self) -> PathBuf {
        self.dir.join("manifest.yaml")
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    fn cluster_dir(&self, name: &str) -> PathBuf {
        self.state_dir().join("default").join(name)
    }

    /// Replaces the manifest atomically (as an editor's save would).
    pub fn write_manifest(&self, text: &str) -> Result<(), BenchError> {
        let tmp = self.dir.join("manifest.yaml.tmp");
        std::fs::write(&tmp, text).map_err(|e| BenchError(format!("writing the manifest: {e}")))?;
        std::fs::rename(&tmp, self.manifest_path())
            .map_err(|e| BenchError(format!("replacing the manifest: {e}")))
    }

    /// The operator's pid.
    pub fn pid(&self) -> i32 {
        self.proc.as_ref().map_or(0, Proc::pid)
    }

    /// The client URLs of cluster `name`'s ordinals that have a member folder (none before the
    /// operator chose its ports).
    pub fn client_urls(&self, name: &str) -> Vec<String> {
        let text = std::fs::read_to_string(self.cluster_dir(name).join("cluster.yaml"))
            .unwrap_or_default();
        let Some(base) = text
            .lines()
            .find_map(|l| l.strip_prefix("clientBasePort:"))
            .and_then(|v| v.trim().parse::<u16>().ok())
        else {
            return Vec::new();
        };
        (0..10u16)
            .filter(|o| {
                self.cluster_dir(name)
                    .join("members")
                    .join(o.to_string())
                    .exists()
            })
            .map(|o| format!("http://127.0.0.1:{}", base + o))
            .collect()
    }

    /// The live pid of member `ordinal` of `name`, from its pid file.
    pub fn member_pid(&self, name: &str, ordinal: u32) -> Option<i32> {
        let path = self
            .cluster_dir(name)
            .join("members")
            .join(ordinal.to_string())
            .join("pid");
        let pid: i32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
        alive(pid).then_some(pid)
    }

    /// Whether the status the operator wrote for `name` says Healthy with `n` ready members.
    pub fn status_healthy(&self, name: &str, n: usize) -> bool {
        let path = self.cluster_dir(name).join("status.yaml");
        let Ok(text) = std::fs::read_to_string(path) else {
            return false;
        };
        let Ok(s) = serde_saphyr::from_str::<etcd_operator::api::EtcdClusterStatus>(&text) else {
            return false;
        };
        s.phase.as_deref() == Some("Healthy")
            && s.ready_members as usize == n
            && s.members.len() == n
            && s.members
                .iter()
                .all(|m| m.healthy && m.role.as_deref() != Some("learner"))
    }

    /// Waits until every cluster of `specs` is Healthy in its status file.
    pub async fn wait_all_healthy(
        &mut self,
        specs: &[Spec],
        timeout: Duration,
    ) -> Result<Duration, BenchError> {
        let t0 = Instant::now();
        loop {
            if specs
                .iter()
                .all(|c| self.status_healthy(&c.name, c.replicas as usize))
            {
                return Ok(t0.elapsed());
            }
            if t0.elapsed() > timeout {
                let sick: Vec<&str> = specs
                    .iter()
                    .filter(|c| !self.status_healthy(&c.name, c.replicas as usize))
                    .map(|c| c.name.as_str())
                    .collect();
                return Err(BenchError(format!(
                    "clusters not healthy after {timeout:?}: {sick:?} (see {})",
                    self.dir.join("operator.log").display()
                )));
            }
            if self.proc.as_mut().is_some_and(|p| !p.running()) {
                return Err(BenchError(format!(
                    "the operator exited (see {})",
                    self.dir.join("operator.log").display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGKILL: its members die with it (`PDEATHSIG`). Not SIGTERM: a graceful stop takes
    /// etcd's graceful-stop timeout per member while the operator's client holds a stream to it
    /// (about 7 s each; 50 clusters would take six minutes), and the data is thrown away anyway.
    pub fn kill(&mut self) {
        self.proc.take();
    }
}

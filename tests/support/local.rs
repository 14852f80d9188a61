//! The real `etcd-operator local` binary as a child process, on a state directory under a
//! harness temporary directory. Dropping it kills the operator (SIGKILL) and every etcd process
//! it started (they also die with it through `PDEATHSIG`; the pid files are a second net).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use etcd_operator::api::EtcdClusterStatus;
use etcd_operator::etcd::{Client, ConnectOptions};

use super::bins::{self, EtcdVersion};
use super::process::Proc;
use super::{HarnessError, Result, temp_dir};

/// A manifest for cluster `name` with `replicas` members of `version`, with settings that keep
/// tests quick on a loaded machine (no fsync from 3.5 on) and steady (an election timeout long enough
/// that a busy machine causes no spurious elections).
pub fn manifest(name: &str, replicas: u32, version: &str) -> String {
    let extra = if !version.starts_with("3.4") {
        "    extraFlags: [\"--unsafe-no-fsync=true\"]\n"
    } else {
        ""
    };
    format!(
        "apiVersion: etcd.operator.dev/v1alpha1\nkind: EtcdCluster\nmetadata:\n  name: {name}\n\
         spec:\n  replicas: {replicas}\n  version: \"{version}\"\n  etcd:\n    \
         heartbeatIntervalMs: 150\n    electionTimeoutMs: 3000\n    snapshotCount: 5000\n{extra}"
    )
}

/// A running (or stopped) local operator with its own state directory.
pub struct LocalOperator {
    dir: tempfile::TempDir,
    proc: Option<Proc>,
    starts: u32,
    /// The cluster the helpers look at.
    pub cluster: String,
    /// Arguments added to every launch (say `--port-range`).
    pub extra_args: Vec<String>,
}

impl LocalOperator {
    /// Writes `manifest` and starts the operator on it.
    pub fn start(cluster: &str, manifest: &str) -> Result<Self> {
        let mut op = Self::prepare(cluster, manifest)?;
        op.launch(&[])?;
        Ok(op)
    }

    /// Writes `manifest` and the etcd bin folder; the operator is not started ([`Self::launch`]).
    pub fn prepare(cluster: &str, manifest: &str) -> Result<Self> {
        let dir = temp_dir("local")?;
        let bin = dir.path().join("bin");
        for v in EtcdVersion::ALL {
            let target = bins::etcd_dir(v);
            let link = bin.join(format!("etcd-{}", v.version_string()));
            std::fs::create_dir_all(&link)
                .map_err(|e| HarnessError::io("creating the etcd bin folder", e))?;
            std::os::unix::fs::symlink(&target, link.join("bin"))
                .map_err(|e| HarnessError::io("linking an etcd bin folder", e))?;
        }
        let op = LocalOperator {
            dir,
            proc: None,
            starts: 0,
            cluster: cluster.to_owned(),
            extra_args: Vec::new(),
        };
        op.write_manifest(manifest)?;
        Ok(op)
    }

    /// The folder `--etcd-bin-dir` names: `etcd-<version>/bin` links to each version's binaries.
    pub fn bin_dir(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.dir.path().join("manifest.yaml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn cluster_dir(&self) -> PathBuf {
        self.state_dir().join("default").join(&self.cluster)
    }

    pub fn member_dir(&self, ordinal: u32) -> PathBuf {
        self.cluster_dir().join("members").join(ordinal.to_string())
    }

    /// Replaces the manifest (atomically, as an editor's save would).
    pub fn write_manifest(&self, text: &str) -> Result<()> {
        let tmp = self.dir.path().join("manifest.yaml.tmp");
        std::fs::write(&tmp, text).map_err(|e| HarnessError::io("writing the manifest", e))?;
        std::fs::rename(&tmp, self.manifest_path())
            .map_err(|e| HarnessError::io("replacing the manifest", e))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("operator.log")
    }

    /// Starts the operator (again) with extra environment variables.
    pub fn launch(&mut self, env: &[(&str, &str)]) -> Result<()> {
        if self.is_running() {
            return Err(HarnessError::msg("the operator is already running"));
        }
        self.starts += 1;
        let mut args = vec![
            "local".to_owned(),
            "--manifest".to_owned(),
            self.manifest_path().display().to_string(),
            "--state-dir".to_owned(),
            self.state_dir().display().to_string(),
            "--etcd-bin-dir".to_owned(),
            self.bin_dir().display().to_string(),
        ];
        args.extend(self.extra_args.iter().cloned());
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let program = PathBuf::from(env!("CARGO_BIN_EXE_etcd-operator"));
        self.proc = Some(Proc::spawn_env(
            "etcd-operator",
            &program,
            &args,
            &env,
            &self.log_path(),
        )?);
        Ok(())
    }

    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(Proc::is_running)
    }

    /// The operator's whole log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        super::process::log_tail(&self.log_path(), 40)
    }

    /// Waits until the operator exits on its own; its exit description.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(p) = self.proc.as_mut()
                && let Some(exit) = p.exited()
            {
                self.proc = None;
                return Ok(exit);
            }
            if self.proc.is_none() {
                return Err(HarnessError::msg("the operator is not running"));
            }
            if Instant::now() > deadline {
                return Err(HarnessError::msg(format!(
                    "the operator did not exit within {timeout:?}; log:\n{}",
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts the operator with `ETCD_OPERATOR_CRASH_AT=point` and waits until it exits there:
    /// status 99, the point named in its log.
    pub fn run_until_crash(&mut self, point: &str, timeout: Duration) {
        self.launch(&[("ETCD_OPERATOR_CRASH_AT", point)])
            .expect("launch with crash point");
        let exit = self.wait_exit(timeout).expect("crash");
        assert!(
            exit.contains("99"),
            "expected the crash exit status 99 at {point}, got {exit}:\n{}",
            self.log_tail()
        );
        assert!(
            self.log().contains(point),
            "the log does not name {point}:\n{}",
            self.log_tail()
        );
    }

    /// SIGTERM, and waits for a clean exit (members stopped gracefully).
    pub fn stop_gracefully(&mut self) -> Result<String> {
        let p = self
            .proc
            .as_ref()
            .ok_or_else(|| HarnessError::msg("the operator is not running"))?;
        p.signal(libc::SIGTERM)?;
        self.wait_exit(Duration::from_secs(60))
    }

    /// SIGKILL (its members die with it).
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
        self.kill_members();
    }

    /// The pid of a member's etcd process, if it runs.
    pub fn member_pid(&self, ordinal: u32) -> Option<i32> {
        let text = std::fs::read_to_string(self.member_dir(ordinal).join("pid")).ok()?;
        let pid: i32 = text.trim().parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let mine = String::from_utf8_lossy(&cmdline).contains(&*self.dir.path().to_string_lossy());
        mine.then_some(pid)
    }

    /// SIGKILL a member's etcd process.
    pub fn kill_member(&self, ordinal: u32) -> Result<i32> {
        let pid = self
            .member_pid(ordinal)
            .ok_or_else(|| HarnessError::msg(format!("member {ordinal} has no process")))?;
        // SAFETY: kill(2) on a process whose command line names our temporary directory.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
        if rc != 0 {
            return Err(HarnessError::io(
                format!("killing member {ordinal}"),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(pid)
    }

    fn kill_members(&self) {
        for o in 0..16 {
            if let Some(pid) = self.member_pid(o) {
                // SAFETY: as in kill_member.
                #[allow(unsafe_code)]
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
    }

    /// The status the operator wrote last.
    pub fn status(&self) -> Option<EtcdClusterStatus> {
        let text = std::fs::read_to_string(self.cluster_dir().join("status.yaml")).ok()?;
        serde_saphyr::from_str(&text).ok()
    }

    /// Polls `cond` on the status until it holds; panics with the operator's log otherwise.
    pub fn wait_status(
        &mut self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&EtcdClusterStatus) -> bool,
    ) -> EtcdClusterStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.status()
                && cond(&s)
            {
                return s;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; status: {:#?}\noperator log:\n{}",
                    self.status(),
                    self.log_tail()
                );
            }
            if self.proc.is_some() && !self.is_running() {
                panic!(
                    "the operator exited while waiting for {what}; log:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits until the status reports `n` healthy voters on `version`, nothing in progress.
    pub fn wait_converged(
        &mut self,
        n: usize,
        version: &str,
        timeout: Duration,
    ) -> EtcdClusterStatus {
        self.wait_status(&format!("{n} healthy voters on {version}"), timeout, |s| {
            converged(s, n, version)
        })
    }

    /// Client URLs of the members that exist now (a folder under `members/`), from the ports the
    /// operator chose (`cluster.yaml`). Only those: a client that also dialed a port of an
    /// ordinal the cluster does not use would wait on a member that does not exist (blocks of
    /// different clusters never overlap, see `tests/local_ports.rs`).
    pub fn all_client_urls(&self) -> Vec<String> {
        let text =
            std::fs::read_to_string(self.cluster_dir().join("cluster.yaml")).unwrap_or_default();
        let base: u16 = text
            .lines()
            .find_map(|l| l.strip_prefix("clientBasePort:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let urls: Vec<String> = (0..10u16)
            .filter(|o| self.member_dir(u32::from(*o)).exists())
            .map(|o| format!("http://127.0.0.1:{}", base + o))
            .collect();
        if urls.is_empty() {
            vec![format!("http://127.0.0.1:{base}")]
        } else {
            urls
        }
    }

    /// A client over every member's client URL.
    pub async fn client(&self) -> Client {
        Client::connect(self.all_client_urls(), ConnectOptions::new())
            .await
            .expect("client")
    }

    pub fn starts(&self) -> u32 {
        self.starts
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Whether a status shows `n` healthy voters on `version` and a finished reconciliation.
pub fn converged(s: &EtcdClusterStatus, n: usize, version: &str) -> bool {
    s.phase.as_deref() == Some("Healthy")
        && s.ready_members as usize == n
        && s.members.len() == n
        && s.members.iter().all(|m| {
            m.healthy
                && m.role.as_deref() != Some("learner")
                && m.version.as_deref() == Some(version)
                && m.client_url.is_some()
        })
}

impl Drop for LocalOperator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Writes `n` keys `<prefix><i>` = `v<i>`.
pub async fn write_keys(client: &Client, prefix: &str, n: usize) {
    use etcd_operator::etcd::kv::PutOptions;
    for i in 0..n {
        let mut tries = 0;
        loop {
            match client
                .put(
                    format!("{prefix}{i:05}"),
                    format!("v{i}"),
                    PutOptions::new(),
                )
                .await
            {
                Ok(_) => break,
                Err(e) if tries < 20 => {
                    tries += 1;
                    eprintln!("put {prefix}{i}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => panic!("put {prefix}{i}: {e}"),
            }
        }
    }
}

/// Asserts that the `n` keys of [`write_keys`] are all there with their values.
pub async fn check_keys(client: &Client, prefix: &str, n: usize) {
    use etcd_operator::etcd::kv::GetOptions;
    let mut last = String::new();
    for _ in 0..40 {
        match client.get(prefix, GetOptions::new().with_prefix()).await {
            Ok(resp) => {
                assert_eq!(
                    resp.kvs.len(),
                    n,
                    "keys under {prefix} (answered by member {:x} of cluster {:x} at revision {}, \
                     term {}; count {}; first {:?}, last {:?})",
                    resp.header.member_id,
                    resp.header.cluster_id,
                    resp.header.revision,
                    resp.header.raft_term,
                    resp.count,
                    resp.kvs
                        .first()
                        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned()),
                    resp.kvs
                        .last()
                        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned()),
                );
                for (i, kv) in resp.kvs.iter().enumerate() {
                    assert_eq!(&kv.key[..], format!("{prefix}{i:05}").as_bytes());
                    assert_eq!(&kv.value[..], format!("v{i}").as_bytes());
                }
                return;
            }
            Err(e) => {
                last = e.to_string();
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    panic!("cannot read {prefix}*: {last}");
}

/// The members etcd lists: (name, id, is_learner), sorted by name.
pub async fn member_list(client: &Client) -> Vec<(String, u64, bool)> {
    let mut last = String::new();
    for _ in 0..40 {
        match client.member_list().await {
            Ok(ms) => {
                let mut out: Vec<(String, u64, bool)> = ms
                    .into_iter()
                    .map(|m| (m.name, m.id, m.is_learner))
                    .collect();
                out.sort();
                return out;
            }
            Err(e) => {
                last = e.to_string();
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    panic!("member list: {last}");
}

/// Positions in `log` of the lines containing each needle, in order; panics naming the first
/// needle missing after the previous one.
pub fn assert_in_order(log: &str, needles: &[&str]) {
    let mut from = 0;
    for n in needles {
        match log[from..].find(n) {
            Some(at) => from += at + n.len(),
            None => {
                panic!("the operator log lacks {n:?} after the earlier steps {needles:?}:\n{log}")
            }
        }
    }
}

/// Writes `<prefix><i:06>` = `v<i>` every few milliseconds until `stop` is set; returns the
/// acknowledged indexes and the count of failed or timed-out writes.
pub fn spawn_writer(
    client: Client,
    prefix: &'static str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<(Vec<u32>, u32)> {
    use etcd_operator::etcd::kv::PutOptions;
    tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut failed = 0u32;
        let mut i = 0u32;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let put = client.put(
                format!("{prefix}{i:06}"),
                format!("v{i}"),
                PutOptions::new(),
            );
            match tokio::time::timeout(Duration::from_secs(5), put).await {
                Ok(Ok(_)) => acked.push(i),
                _ => failed += 1,
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (acked, failed)
    })
}

/// Every acknowledged write of [`spawn_writer`] is readable.
pub async fn assert_acked_present(client: &Client, prefix: &str, acked: &[u32], failed: u32) {
    use etcd_operator::etcd::kv::GetOptions;
    let resp = client
        .get(prefix, GetOptions::new().with_prefix())
        .await
        .expect("read back");
    let present: std::collections::HashSet<String> = resp
        .kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect();
    for i in acked {
        assert!(
            present.contains(&format!("{prefix}{i:06}")),
            "acknowledged write {prefix}{i:06} lost ({} acked, {failed} failed)",
            acked.len()
        );
    }
}

/// A rolling restart in `log` (the operator's log since the edit): `n` restarts of cluster
/// `name`'s members, none of a member while it led (each action's line names the leader the
/// operator observed), the last one with a leader known.
pub fn assert_rolled_leader_last(log: &str, name: &str, n: usize) {
    let restarts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(": restart member "))
        .collect();
    assert_eq!(restarts.len(), n, "{log}");
    for line in &restarts {
        let ordinal = line
            .split(": restart member ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .expect("ordinal");
        assert!(
            !line.contains(&format!("leader {name}-{ordinal})")),
            "a member was restarted while it led: {line}"
        );
    }
    let last = restarts.last().expect("a restart");
    assert!(
        last.contains(&format!("leader {name}-")) && !last.contains("leader none"),
        "{log}"
    );
}

/// Writes `batches` transactions of 10 values of 100 KiB under `prefix`; stops at the first
/// NOSPACE refusal and returns how many batches were written.
pub async fn fill(client: &Client, prefix: &str, batches: usize) -> (usize, Option<String>) {
    let value = vec![b'x'; 100 * 1024];
    for b in 0..batches {
        let ops = (0..10).map(|i| {
            etcd_operator::etcd::kv::Op::put(
                format!("{prefix}{b:05}-{i}"),
                value.clone(),
                etcd_operator::etcd::kv::PutOptions::new(),
            )
        });
        match client
            .txn(etcd_operator::etcd::kv::Txn::new().and_then(ops))
            .await
        {
            Ok(_) => {}
            Err(e) if e.server_error() == Some(etcd_operator::etcd::ServerError::NoSpace) => {
                return (b, Some(e.to_string()));
            }
            Err(e) => panic!("txn {b}: {e}"),
        }
    }
    (batches, None)
}

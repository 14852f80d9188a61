//! The local [`MemberRuntime`]: each member an etcd process on 127.0.0.1 with its data under the
//! state directory, supervised like a kubelet supervises a Pod.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::controller::act::MemberRuntime;
use crate::controller::backup::RestoreSnapshot;
use crate::controller::plan::{DataState, Intent, RuntimeMember, Version};

use super::LocalError;
use super::process::{Event, Launch, STOP_GRACE, Supervised};
use super::store::{MemberRecord, PortBlock, StateFolder, blocking};

/// The configuration hash of a set of flags: a member started with other flags is restarted.
pub fn config_hash(flags: &[String]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for f in flags {
        h.update(f.as_bytes());
        h.update([0]);
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Finds the etcd binary of a version: `<dir>/etcd-<v>/bin/etcd`, `<dir>/etcd-<v>/etcd` or
/// `<dir>/<v>/etcd`; `etcd` on PATH without a folder.
pub fn etcd_binary(bin_dir: Option<&Path>, version: Version) -> Result<PathBuf, LocalError> {
    let Some(dir) = bin_dir else {
        return Ok(PathBuf::from("etcd"));
    };
    let candidates = [
        dir.join(format!("etcd-{version}")).join("bin").join("etcd"),
        dir.join(format!("etcd-{version}")).join("etcd"),
        dir.join(version.to_string()).join("etcd"),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| LocalError::NoBinary {
            version: version.to_string(),
            dir: dir.to_path_buf(),
        })
}

/// Finds etcd's companion tool `tool` (`etcdutl`) for a version: next to that version's `etcd`
/// binary ([`etcd_binary`]), or on PATH without a folder.
pub fn tool_binary(
    bin_dir: Option<&Path>,
    version: Version,
    tool: &str,
) -> Result<PathBuf, LocalError> {
    if bin_dir.is_none() {
        return Ok(PathBuf::from(tool));
    }
    let etcd = etcd_binary(bin_dir, version)?;
    let path = etcd.with_file_name(tool);
    if path.is_file() {
        Ok(path)
    } else {
        Err(LocalError::Restore(format!(
            "no {tool} next to {} (etcd {version}): it is needed to restore a snapshot",
            etcd.display()
        )))
    }
}

/// Runs `etcdutl snapshot restore` for one member into `data_dir` (which must not exist).
pub(super) async fn etcdutl_restore(
    etcdutl: &Path,
    snapshot: &Path,
    name: &str,
    peer_url: &str,
    initial_cluster: &str,
    token: &str,
    data_dir: &Path,
) -> Result<(), LocalError> {
    let out = tokio::process::Command::new(etcdutl)
        .arg("snapshot")
        .arg("restore")
        .arg(snapshot)
        .arg(format!("--name={name}"))
        .arg(format!("--initial-cluster={initial_cluster}"))
        .arg(format!("--initial-cluster-token={token}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--data-dir={}", data_dir.display()))
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| LocalError::io(format!("running {}", etcdutl.display()), e))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    // etcdutl logs JSON lines and ends with an `Error:` line, or panics with a stack trace.
    let last = stderr
        .lines()
        .find(|l| l.starts_with("Error:") || l.starts_with("panic:"))
        .or_else(|| stderr.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or_default();
    Err(LocalError::Restore(format!(
        "etcdutl snapshot restore {} for {name} failed ({}): {}",
        snapshot.display(),
        out.status,
        last.trim()
    )))
}

/// The members of one cluster.
#[derive(Debug)]
pub struct LocalMembers {
    /// `namespace/name`, for log lines.
    key: String,
    cluster: String,
    dir: StateFolder,
    record: PortBlock,
    bin_dir: Option<PathBuf>,
    /// The flags the spec asks for now.
    flags: Vec<String>,
    running: BTreeMap<u32, Supervised>,
}

impl LocalMembers {
    /// The members of `cluster` in `dir`; none runs until [`LocalMembers::resume`].
    pub fn new(
        key: String,
        cluster: String,
        dir: StateFolder,
        record: PortBlock,
        bin_dir: Option<PathBuf>,
    ) -> Self {
        Self {
            key,
            cluster,
            dir,
            record,
            bin_dir,
            flags: Vec::new(),
            running: BTreeMap::new(),
        }
    }

    /// Sets the flags the spec asks for; members started from now on get them.
    pub fn set_flags(&mut self, flags: Vec<String>) {
        self.flags = flags;
    }

    /// The ports and token.
    pub fn record(&self) -> &PortBlock {
        &self.record
    }

    /// The cluster's files.
    pub fn dir(&self) -> &StateFolder {
        &self.dir
    }

    fn name(&self, ordinal: u32) -> String {
        format!("{}-{ordinal}", self.cluster)
    }

    /// The client URLs of every member that exists.
    pub fn client_urls(&self) -> Result<Vec<String>, LocalError> {
        Ok(self
            .dir
            .member_ordinals()?
            .into_iter()
            .map(|o| self.record.client_url(o))
            .collect())
    }

    fn data_state(&self, ordinal: u32, rec: &MemberRecord) -> DataState {
        match (rec.initialized, self.dir.has_data(ordinal)) {
            (_, true) => DataState::Present,
            (true, false) => DataState::Lost,
            (false, false) => DataState::Empty,
        }
    }

    /// Starts every existing member whose data is present (after an operator restart, as a
    /// kubelet starts the Pods it finds).
    pub fn resume(&mut self) -> Result<(), LocalError> {
        for o in self.dir.member_ordinals()? {
            if self.running.contains_key(&o) {
                continue;
            }
            let rec = self.dir.read_member(o)?;
            if self.data_state(o, &rec) == DataState::Lost {
                tracing::warn!(
                    "{}: not starting {}: its data directory is gone (the member will be replaced)",
                    self.key,
                    self.name(o)
                );
                continue;
            }
            tracing::info!(
                "{}: starting {} on {} with its existing data",
                self.key,
                self.name(o),
                rec.version
            );
            self.launch(o, &rec)?;
        }
        Ok(())
    }

    /// Writes the record of member `ordinal` (synced) on a blocking thread.
    async fn write_record(&self, ordinal: u32, rec: &MemberRecord) -> Result<(), LocalError> {
        let (dir, rec) = (self.dir.clone(), rec.clone());
        blocking("writing a member record", move || {
            dir.write_member(ordinal, &rec)
        })
        .await
    }

    /// Reaps crashed processes and restarts them when their back-off is over; marks members
    /// whose data etcd has written.
    pub async fn poll(&mut self) -> Result<(), LocalError> {
        let ordinals: Vec<u32> = self.running.keys().copied().collect();
        for o in ordinals {
            let event = match self.running.get_mut(&o) {
                Some(s) => s.poll(),
                None => continue,
            };
            let mut rec = self.dir.read_member(o)?;
            match event {
                Event::None => {
                    if !rec.initialized && self.dir.has_data(o) {
                        rec.initialized = true;
                        self.write_record(o, &rec).await?;
                    }
                }
                Event::Crashed {
                    exit,
                    crashes,
                    delay,
                } => tracing::warn!(
                    "{}: {} exited ({exit}); restarting it in {}s (crash {crashes} in a row)",
                    self.key,
                    self.name(o),
                    delay.as_secs()
                ),
                Event::RestartDue => {
                    if self.data_state(o, &rec) == DataState::Lost {
                        tracing::warn!(
                            "{}: not restarting {}: its data directory is gone",
                            self.key,
                            self.name(o)
                        );
                        self.running.remove(&o);
                        continue;
                    }
                    let launch = self.launch_of(o, &rec)?;
                    if let Some(s) = self.running.get_mut(&o) {
                        match s.restart(&launch) {
                            Ok(()) => tracing::info!(
                                "{}: restarted {} after a crash",
                                self.key,
                                self.name(o)
                            ),
                            Err(e) => {
                                tracing::warn!("{}: cannot restart {}: {e}", self.key, self.name(o))
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The runtime's members for the planner.
    pub fn observe(&self) -> Result<Vec<RuntimeMember>, LocalError> {
        let mut out = Vec::new();
        for o in self.dir.member_ordinals()? {
            let rec = self.dir.read_member(o)?;
            let version = rec
                .version
                .parse::<Version>()
                .map_err(|e| LocalError::Corrupt(format!("member {o} of {}: {e}", self.key)))?;
            let sup = self.running.get(&o);
            out.push(RuntimeMember {
                ordinal: o,
                running: sup.is_some(),
                data: self.data_state(o, &rec),
                version,
                config_hash: rec.config_hash.clone(),
                failures: sup.map_or(0, Supervised::crashes),
                diagnosis: None,
            });
        }
        Ok(out)
    }

    /// Stops every member gracefully, keeping its data.
    pub async fn stop_all(&mut self) {
        // One at a time: a leader stopping while its followers stop too would wait for a
        // leadership transfer that cannot finish; stopped in turn, each transfer is quick and
        // the last member, alone, skips it.
        for (o, mut s) in std::mem::take(&mut self.running) {
            s.stop(STOP_GRACE).await;
            tracing::info!("{}: stopped {} (data kept)", self.key, self.name(o));
        }
    }

    fn launch_of(&self, ordinal: u32, rec: &MemberRecord) -> Result<Launch, LocalError> {
        let version = rec
            .version
            .parse::<Version>()
            .map_err(|e| LocalError::Corrupt(format!("member {ordinal} of {}: {e}", self.key)))?;
        let program = etcd_binary(self.bin_dir.as_deref(), version)?;
        let client = self.record.client_url(ordinal);
        let peer = self.record.peer_url(ordinal);
        let data = self.dir.data_dir(ordinal);
        let mut args = vec![
            format!("--name={}", self.name(ordinal)),
            format!("--data-dir={}", data.display()),
            format!("--listen-client-urls={client}"),
            format!("--advertise-client-urls={client}"),
            format!("--listen-peer-urls={peer}"),
            format!("--initial-advertise-peer-urls={peer}"),
            format!("--initial-cluster={}", rec.initial_cluster),
            format!("--initial-cluster-state={}", rec.initial_cluster_state),
            format!("--initial-cluster-token={}", self.record.token),
            "--logger=zap".to_owned(),
        ];
        args.extend(rec.flags.iter().cloned());
        // Written for the version this member runs (3.5's experimental names, 3.6's promoted ones).
        let args = crate::api::versions::render_flags(&args, version);
        let member_dir = self.dir.member_dir(ordinal);
        Ok(Launch {
            program,
            args,
            log: member_dir.join("etcd.log"),
            pid_file: member_dir.join("pid"),
        })
    }

    fn launch(&mut self, ordinal: u32, rec: &MemberRecord) -> Result<(), LocalError> {
        let launch = self.launch_of(ordinal, rec)?;
        std::fs::create_dir_all(self.dir.data_dir(ordinal)).map_err(|e| {
            LocalError::io(
                format!("creating {}", self.dir.data_dir(ordinal).display()),
                e,
            )
        })?;
        let sup = Supervised::start(&launch)?;
        self.running.insert(ordinal, sup);
        Ok(())
    }

    fn new_record(&self, version: Version, state: &str, initial_cluster: String) -> MemberRecord {
        MemberRecord {
            version: version.to_string(),
            config_hash: config_hash(&self.flags),
            initial_cluster_state: state.to_owned(),
            initial_cluster,
            initialized: false,
            flags: self.flags.clone(),
        }
    }
}

impl LocalMembers {
    /// Restores members `0..members` from the snapshot file at `path` and starts them.
    async fn restore_from(
        &mut self,
        members: u32,
        version: Version,
        path: &Path,
    ) -> Result<bool, LocalError> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(LocalError::Restore(format!(
                    "snapshot {} is not a file",
                    path.display()
                )));
            }
            Err(e) => {
                return Err(LocalError::Restore(format!(
                    "snapshot {}: {e}",
                    path.display()
                )));
            }
        }
        let etcdutl = tool_binary(self.bin_dir.as_deref(), version, "etcdutl")?;
        let initial_cluster = (0..members)
            .map(|o| format!("{}={}", self.name(o), self.record.peer_url(o)))
            .collect::<Vec<_>>()
            .join(",");
        // Every member is restored into a staging folder first; nothing is moved into place
        // (and nothing starts) unless all of them were restored.
        let staging = self.dir.root().join("restore");
        // The whole `members/` folder (each member's data and record) is built under the
        // staging folder and moved into place with one rename: a crash leaves either no member
        // (the restore runs again) or all of them.
        let staged = staging.join("members");
        {
            let (staging, staged) = (staging.clone(), staged.clone());
            blocking("preparing the restore", move || {
                match std::fs::remove_dir_all(&staging) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(LocalError::io(format!("clearing {}", staging.display()), e));
                    }
                }
                std::fs::create_dir_all(&staged)
                    .map_err(|e| LocalError::io(format!("creating {}", staged.display()), e))
            })
            .await?;
        }
        let mut records = Vec::new();
        for o in 0..members {
            let member_dir = staged.join(o.to_string());
            let restored = etcdutl_restore(
                &etcdutl,
                path,
                &self.name(o),
                &self.record.peer_url(o),
                &initial_cluster,
                &self.record.token,
                &member_dir.join("data"),
            )
            .await;
            let rec = self.new_record(version, "new", initial_cluster.clone());
            let written = match restored {
                Ok(()) => {
                    let (path, rec) = (member_dir.join("member.yaml"), rec.clone());
                    blocking("writing a restored member's record", move || {
                        super::store::write_yaml(&path, &rec)
                    })
                    .await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                let staging = staging.clone();
                let _ = blocking("clearing the restore", move || {
                    let _ = std::fs::remove_dir_all(&staging);
                    Ok(())
                })
                .await;
                return Err(e);
            }
            records.push((o, rec));
        }
        let (root, target) = (
            self.dir.root().to_path_buf(),
            self.dir.root().join("members"),
        );
        blocking("moving the restored members into place", move || {
            // An empty `members/` (every member deleted before) is replaced by the rename.
            std::fs::rename(&staged, &target).map_err(|e| {
                LocalError::io(
                    format!("moving the restored members to {}", target.display()),
                    e,
                )
            })?;
            std::fs::File::open(&root)
                .and_then(|d| d.sync_all())
                .map_err(|e| LocalError::io(format!("syncing {}", root.display()), e))?;
            let _ = std::fs::remove_dir_all(&staging);
            Ok(())
        })
        .await?;
        tracing::info!(
            "{}: restored {members} members from {}; starting them",
            self.key,
            path.display()
        );
        for (o, rec) in records {
            self.launch(o, &rec)?;
        }
        Ok(true)
    }
}

impl MemberRuntime for LocalMembers {
    type Error = LocalError;

    async fn verify_snapshot(
        &mut self,
        request: crate::controller::backup::verify::VerifyRequest<'_>,
    ) -> Result<Option<crate::controller::backup::verify::Verified>, LocalError> {
        let dir = self.dir.root();
        Ok(Some(
            super::verify::verify(self.bin_dir.as_deref(), dir, request).await,
        ))
    }

    async fn restore_cluster(
        &mut self,
        members: u32,
        version: Version,
        snapshot: RestoreSnapshot<'_>,
    ) -> Result<bool, LocalError> {
        if !self.dir.member_ordinals()?.is_empty() || !self.running.is_empty() {
            return Err(LocalError::Refused(format!(
                "{}: members exist already; a cluster is restored from a snapshot only when \
                 nothing of it exists",
                self.key
            )));
        }
        let path = match snapshot {
            RestoreSnapshot::File(path) => return self.restore_from(members, version, path).await,
            RestoreSnapshot::Store { store, object, .. } => {
                // Downloaded into the cluster's folder (decrypted, its SHA-256 checked), restored
                // from there, and removed whatever happened.
                let path = self.dir.root().join("restore-snapshot.db");
                store
                    .download_to_file(object, &path)
                    .await
                    .map_err(|source| LocalError::RestoreDownload {
                        location: store.location(object),
                        source,
                    })?;
                path
            }
        };
        let restored = self.restore_from(members, version, &path).await;
        let _ = std::fs::remove_file(&path);
        restored
    }
    async fn record_intent(&mut self, intent: Option<&Intent>) -> Result<(), LocalError> {
        let (dir, intent) = (self.dir.clone(), intent.cloned());
        blocking("recording the intent", move || {
            dir.write_intent(intent.as_ref())
        })
        .await
    }

    async fn start_seed(&mut self, ordinal: u32, version: Version) -> Result<(), LocalError> {
        if self.dir.member_ordinals()?.contains(&ordinal) {
            // Only a stopped seed that never wrote member data is started again.
            let rec = self.dir.read_member(ordinal)?;
            if self.running.contains_key(&ordinal)
                || self.data_state(ordinal, &rec) != DataState::Empty
            {
                return Err(LocalError::Refused(format!(
                    "{} already exists with its data; a seed is only created in an empty state \
                     directory or over a seed that never wrote data",
                    self.name(ordinal)
                )));
            }
        }
        let ic = format!("{}={}", self.name(ordinal), self.record.peer_url(ordinal));
        let rec = self.new_record(version, "new", ic);
        self.write_record(ordinal, &rec).await?;
        self.launch(ordinal, &rec)
    }

    async fn start_member(
        &mut self,
        ordinal: u32,
        version: Version,
        initial_cluster: &[(String, String)],
    ) -> Result<(), LocalError> {
        if let Some(alive) = self.running.get(&ordinal).map(Supervised::is_alive) {
            if alive {
                return Ok(());
            }
            // Waiting out a crash back-off: start now, as asked.
            let rec = self.dir.read_member(ordinal)?;
            let launch = self.launch_of(ordinal, &rec)?;
            return match self.running.get_mut(&ordinal) {
                Some(s) => s.restart(&launch),
                None => Ok(()),
            };
        }
        let rec = if self.dir.member_ordinals()?.contains(&ordinal) {
            let rec = self.dir.read_member(ordinal)?;
            if self.data_state(ordinal, &rec) == DataState::Lost {
                return Err(LocalError::Refused(format!(
                    "{} lost its data; it must be replaced, not started",
                    self.name(ordinal)
                )));
            }
            rec
        } else {
            let ic: Vec<String> = initial_cluster
                .iter()
                .map(|(n, u)| format!("{n}={u}"))
                .collect();
            let rec = self.new_record(version, "existing", ic.join(","));
            self.write_record(ordinal, &rec).await?;
            rec
        };
        self.launch(ordinal, &rec)
    }

    async fn delete_member(&mut self, ordinal: u32) -> Result<(), LocalError> {
        if let Some(mut s) = self.running.remove(&ordinal) {
            s.stop(Duration::from_secs(5)).await;
        }
        // Its data may be large: deleted on a blocking thread.
        let dir = self.dir.clone();
        blocking("deleting a member", move || dir.delete_member(ordinal)).await
    }

    async fn stop_member(&mut self, ordinal: u32, version: Version) -> Result<(), LocalError> {
        // Refuse before stopping anything when the new version has no binary.
        etcd_binary(self.bin_dir.as_deref(), version)?;
        if let Some(mut s) = self.running.remove(&ordinal) {
            s.stop(STOP_GRACE).await;
        }
        let mut rec = self.dir.read_member(ordinal)?;
        rec.version = version.to_string();
        rec.config_hash = config_hash(&self.flags);
        rec.flags = self.flags.clone();
        self.write_record(ordinal, &rec).await
    }

    async fn start_again(&mut self, ordinal: u32, _version: Version) -> Result<(), LocalError> {
        let rec = self.dir.read_member(ordinal)?;
        self.launch(ordinal, &rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::EtcdOptions;
    use crate::controller::flags::option_flags;

    #[test]
    fn option_flags_follow_the_spec_and_change_the_hash() {
        let mut opts = EtcdOptions {
            heartbeat_interval_ms: Some(50),
            election_timeout_ms: Some(500),
            extra_flags: vec!["--log-level=warn".into()],
            ..EtcdOptions::default()
        };
        let flags = option_flags(&opts);
        assert_eq!(
            flags,
            [
                "--heartbeat-interval=50",
                "--election-timeout=500",
                "--log-level=warn"
            ]
        );
        let hash = config_hash(&flags);
        assert_eq!(hash.len(), 16);
        assert_eq!(hash, config_hash(&option_flags(&opts)));
        opts.snapshot_count = Some(100);
        assert_ne!(hash, config_hash(&option_flags(&opts)));
    }

    #[test]
    fn binaries_are_found_per_version() {
        let dir =
            std::env::temp_dir().join(format!("etcd-operator-unit-bin-{}", std::process::id()));
        let bin = dir.join("etcd-3.5.16").join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir");
        std::fs::write(bin.join("etcd"), b"").expect("touch");
        let v = Version::new(3, 5, 16);
        assert_eq!(etcd_binary(Some(&dir), v).expect("found"), bin.join("etcd"));
        assert!(matches!(
            etcd_binary(Some(&dir), Version::new(3, 4, 23)),
            Err(LocalError::NoBinary { .. })
        ));
        assert_eq!(etcd_binary(None, v).expect("PATH"), PathBuf::from("etcd"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

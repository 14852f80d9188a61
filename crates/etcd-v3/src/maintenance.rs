//! Maintenance: member status and health, defragmentation, hashes, alarms, leader transfer,
//! downgrade and snapshots.
//!
//! Member-local calls ([`Client::status`], [`Client::defragment`], [`Client::hash_kv`],
//! [`Client::endpoint_health`]) name the member by its client URL and go over that member's
//! pooled channel (Go's client dials a fresh connection per call). The other calls go to any
//! member, except [`Client::move_leader`], which must reach the current leader and finds it first.
//!
//! ```no_run
//! # async fn demo(client: etcd_v3::Client) -> etcd_v3::Result<()> {
//! for ep in client.endpoints() {
//!     let st = client.status(&ep).await?;
//!     println!("{ep}: member {:x}, leader {:x}, db {} bytes", st.member_id, st.leader, st.db_size);
//! }
//! let info = client.snapshot_to_file("/backup/etcd.db").await?;
//! println!("saved {} bytes", info.size);
//! # Ok(()) }
//! ```

use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::client::{Client, Route};
use super::error::{Error, Result, ServerError};
use super::proto::etcdserverpb as pb;

/// Length of the SHA-256 trailer etcd appends to a snapshot stream.
const DIGEST_LEN: usize = 32;

/// The state of one member, from `Maintenance/Status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The ID of the member that answered.
    pub member_id: u64,
    /// The cluster ID.
    pub cluster_id: u64,
    /// The member's server version, e.g. `3.5.16`.
    pub version: String,
    /// Size of the backend database file, in bytes.
    pub db_size: i64,
    /// Bytes of the database file in use; `db_size - db_size_in_use` is what a defragmentation
    /// would give back.
    pub db_size_in_use: i64,
    /// The leader's member ID as this member sees it; 0 while it has no leader.
    pub leader: u64,
    /// The raft committed index.
    pub raft_index: u64,
    /// The raft term.
    pub raft_term: u64,
    /// The raft applied index.
    pub raft_applied_index: u64,
    /// Problems the member reports: `etcdserver: no leader` while it has none, and one entry per
    /// active alarm in the cluster (e.g. `memberID:… alarm:NOSPACE`).
    pub errors: Vec<String>,
    /// Whether the member is a learner.
    pub is_learner: bool,
    /// The storage version (3.6+; `None` on older servers).
    pub storage_version: Option<String>,
    /// The backend quota in bytes (3.6+; `None` on older servers).
    pub db_size_quota: Option<i64>,
    /// The downgrade in progress, if any (3.6+; `None` on older servers).
    pub downgrade: Option<DowngradeInfo>,
    /// The store revision at the member.
    pub revision: i64,
}

impl Status {
    /// Whether the answering member is the leader.
    pub fn is_leader(&self) -> bool {
        self.leader != 0 && self.leader == self.member_id
    }
}

impl From<pb::StatusResponse> for Status {
    fn from(r: pb::StatusResponse) -> Self {
        let h = r.header.unwrap_or_default();
        Status {
            member_id: h.member_id,
            cluster_id: h.cluster_id,
            revision: h.revision,
            version: r.version,
            db_size: r.db_size,
            db_size_in_use: r.db_size_in_use,
            leader: r.leader,
            raft_index: r.raft_index,
            raft_term: r.raft_term,
            raft_applied_index: r.raft_applied_index,
            errors: r.errors,
            is_learner: r.is_learner,
            storage_version: Some(r.storage_version).filter(|s| !s.is_empty()),
            db_size_quota: Some(r.db_size_quota).filter(|q| *q != 0),
            downgrade: r.downgrade_info.map(|d| DowngradeInfo {
                enabled: d.enabled,
                target_version: d.target_version,
            }),
        }
    }
}

/// A downgrade in progress (3.6+ servers report it in [`Status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DowngradeInfo {
    /// Whether a downgrade is enabled.
    pub enabled: bool,
    /// The version being downgraded to.
    pub target_version: String,
}

/// The hash of a member's key-value store, from `Maintenance/HashKV`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashKv {
    /// The member that computed it.
    pub member_id: u64,
    /// The hash of the store's contents up to the revision.
    pub hash: u32,
    /// The compact revision the hash starts from.
    pub compact_revision: i64,
    /// The revision hashed (3.6+; `None` on older servers).
    pub hash_revision: Option<i64>,
    /// The member's current revision.
    pub revision: i64,
}

/// An alarm type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlarmType {
    /// No alarm; with member 0 in [`Client::alarm_disarm`] it means "every alarm".
    None,
    /// The backend quota is exhausted: writes fail with `ServerError::NoSpace` until the space
    /// is reclaimed (compact, defragment) and the alarm disarmed.
    NoSpace,
    /// Data corruption was detected: writes fail with `ServerError::Corrupt`.
    Corrupt,
    /// An alarm this client does not know, with its wire number.
    Unknown(i32),
}

impl AlarmType {
    fn to_wire(self) -> i32 {
        match self {
            AlarmType::None => pb::AlarmType::None as i32,
            AlarmType::NoSpace => pb::AlarmType::Nospace as i32,
            AlarmType::Corrupt => pb::AlarmType::Corrupt as i32,
            AlarmType::Unknown(n) => n,
        }
    }
    fn from_wire(n: i32) -> Self {
        match pb::AlarmType::try_from(n) {
            Ok(pb::AlarmType::None) => AlarmType::None,
            Ok(pb::AlarmType::Nospace) => AlarmType::NoSpace,
            Ok(pb::AlarmType::Corrupt) => AlarmType::Corrupt,
            Err(_) => AlarmType::Unknown(n),
        }
    }
}

/// An alarm raised on one member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Alarm {
    /// The member the alarm is raised on.
    pub member_id: u64,
    /// The alarm.
    pub alarm: AlarmType,
}

impl From<pb::AlarmMember> for Alarm {
    fn from(a: pb::AlarmMember) -> Self {
        Alarm {
            member_id: a.member_id,
            alarm: AlarmType::from_wire(a.alarm),
        }
    }
}

/// What [`Client::downgrade`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DowngradeAction {
    /// Check that the cluster can be downgraded to the version, changing nothing.
    Validate,
    /// Start a downgrade to the version (one minor below the cluster version).
    Enable,
    /// Cancel the downgrade in progress.
    Cancel,
}

impl DowngradeAction {
    fn to_wire(self) -> i32 {
        use pb::downgrade_request::DowngradeAction as W;
        match self {
            DowngradeAction::Validate => W::Validate as i32,
            DowngradeAction::Enable => W::Enable as i32,
            DowngradeAction::Cancel => W::Cancel as i32,
        }
    }
}

/// What a snapshot stream delivered (see [`Client::snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Bytes written, the 32-byte SHA-256 trailer included (what `etcdctl snapshot save` writes).
    pub size: u64,
    /// The SHA-256 of the database bytes (checked against the trailer).
    pub sha256: [u8; DIGEST_LEN],
    /// The member that sent the snapshot (3.6+ send a header; `None` on older servers).
    pub member_id: Option<u64>,
    /// The store revision of the member when the snapshot started (3.6+; `None` on older
    /// servers: `etcdutl snapshot status` reads it from the file).
    pub revision: Option<i64>,
    /// The server's version (3.6+ send it; `None` on older servers).
    pub version: Option<String>,
}

/// Keeps a running SHA-256 of a snapshot stream while holding back the last 32 bytes, which are
/// the trailer once the stream ends. Independent of how the server splits the stream.
#[derive(Default)]
struct TrailerHasher {
    hasher: Sha256,
    tail: Vec<u8>,
    total: u64,
}

impl TrailerHasher {
    fn update(&mut self, chunk: &[u8]) {
        self.total += chunk.len() as u64;
        if chunk.len() >= DIGEST_LEN {
            self.hasher.update(&self.tail);
            self.tail.clear();
            let (body, tail) = chunk.split_at(chunk.len() - DIGEST_LEN);
            self.hasher.update(body);
            self.tail.extend_from_slice(tail);
        } else {
            self.tail.extend_from_slice(chunk);
            let excess = self.tail.len().saturating_sub(DIGEST_LEN);
            if excess > 0 {
                self.hasher.update(&self.tail[..excess]);
                self.tail.drain(..excess);
            }
        }
    }

    /// Checks the trailer: the data must be a whole number of 512-byte pages followed by the
    /// 32-byte SHA-256 of those pages.
    fn finish(self) -> Result<(u64, [u8; DIGEST_LEN])> {
        if self.total % 512 != DIGEST_LEN as u64 || self.tail.len() != DIGEST_LEN {
            return Err(Error::SnapshotIntegrity(format!(
                "sha256 checksum not found ({} bytes received)",
                self.total
            )));
        }
        let digest: [u8; DIGEST_LEN] = self.hasher.finalize().into();
        if digest[..] != self.tail[..] {
            return Err(Error::SnapshotIntegrity(format!(
                "sha256 mismatch: data hashes to {}, trailer says {}",
                hex(&digest),
                hex(&self.tail)
            )));
        }
        Ok((self.total, digest))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

impl Client {
    /// The status of the member at `endpoint` (a client URL, e.g. `http://10.0.0.1:2379`).
    /// Served by learners too. Repeatable.
    pub async fn status(&self, endpoint: &str) -> Result<Status> {
        let resp = self.call_member(endpoint, pb::StatusRequest {}).await?;
        Ok(Status::from(resp))
    }

    /// Whether the member at `endpoint` is healthy: it has a leader and the cluster has no
    /// active alarm (both from one `Status` call; an error reaching it is returned as `Err`).
    ///
    /// Unlike `etcdctl endpoint health`, which runs a linearizable `Get` (a raft round trip, a
    /// read index on the leader), this never adds anything to the raft log and does not touch
    /// the key space, so it is cheap enough to run often. It does not prove that the member can
    /// commit a write right now; a linearizable read does that.
    pub async fn endpoint_health(&self, endpoint: &str) -> Result<bool> {
        let st = self.status(endpoint).await?;
        Ok(st.leader != 0 && st.errors.is_empty())
    }

    /// Defragments the backend database of the member at `endpoint`, giving back to the
    /// filesystem the space freed by compaction. Not replicated: call it for each member, one at
    /// a time and the leader last; the member serves no reads or writes while it runs (seconds
    /// for a large database). Not retried once sent.
    pub async fn defragment(&self, endpoint: &str) -> Result<()> {
        self.call_member(endpoint, pb::DefragmentRequest {}).await?;
        Ok(())
    }

    /// The hash of the key-value store of the member at `endpoint`, from the compact revision up
    /// to `revision` (0: the current revision). Members agree at the same revision. Repeatable.
    pub async fn hash_kv(&self, endpoint: &str, revision: i64) -> Result<HashKv> {
        let r = self
            .call_member(endpoint, pb::HashKvRequest { revision })
            .await?;
        let h = r.header.unwrap_or_default();
        Ok(HashKv {
            member_id: h.member_id,
            hash: r.hash,
            compact_revision: r.compact_revision,
            hash_revision: Some(r.hash_revision).filter(|x| *x != 0),
            revision: h.revision,
        })
    }

    async fn alarm(&self, action: i32, member_id: u64, alarm: AlarmType) -> Result<Vec<Alarm>> {
        let req = pb::AlarmRequest {
            action,
            member_id,
            alarm: alarm.to_wire(),
        };
        let resp = self.call(req).await?;
        Ok(resp.alarms.into_iter().map(Alarm::from).collect())
    }

    /// The active alarms of the cluster.
    pub async fn alarm_list(&self) -> Result<Vec<Alarm>> {
        use pb::alarm_request::AlarmAction;
        self.alarm(AlarmAction::Get as i32, 0, AlarmType::None)
            .await
    }

    /// Raises `alarm` on member `member_id` (goes through raft); returns the alarm raised.
    pub async fn alarm_activate(&self, member_id: u64, alarm: AlarmType) -> Result<Vec<Alarm>> {
        use pb::alarm_request::AlarmAction;
        self.alarm(AlarmAction::Activate as i32, member_id, alarm)
            .await
    }

    /// Disarms `alarm` on member `member_id`; returns the alarms disarmed. Member 0 with
    /// [`AlarmType::None`] disarms every active alarm (listed first, then disarmed one by one,
    /// as etcd's Go client does). A NOSPACE alarm disarmed while the database is still over its
    /// quota is raised again by the next write: compact and defragment first.
    pub async fn alarm_disarm(&self, member_id: u64, alarm: AlarmType) -> Result<Vec<Alarm>> {
        use pb::alarm_request::AlarmAction;
        if member_id == 0 && alarm == AlarmType::None {
            let mut disarmed = Vec::new();
            for a in self.alarm_list().await? {
                disarmed.extend(
                    self.alarm(AlarmAction::Deactivate as i32, a.member_id, a.alarm)
                        .await?,
                );
            }
            return Ok(disarmed);
        }
        self.alarm(AlarmAction::Deactivate as i32, member_id, alarm)
            .await
    }

    /// Finds the leader: the statuses of the client's endpoints (each bounded by a few
    /// seconds), then the client URL of the member they name as leader, from the endpoints
    /// themselves or else from the member list.
    async fn find_leader(&self) -> Result<(u64, String)> {
        let bound = self.inner.opts.dial_timeout + Duration::from_secs(3);
        let endpoints = self.endpoints();
        let answers = futures::future::join_all(endpoints.iter().map(|ep| async move {
            let r = tokio::time::timeout(bound, self.status(ep)).await;
            (ep.clone(), r)
        }))
        .await;
        let mut last_err = None;
        let mut statuses = Vec::new();
        for (ep, r) in answers {
            match r {
                Ok(Ok(st)) => statuses.push((ep, st)),
                Ok(Err(e)) => last_err = Some(e),
                Err(_) => {
                    last_err = Some(Error::Timeout {
                        method: "Maintenance/Status",
                        timeout: bound,
                    })
                }
            }
        }
        // The highest term's view of the leader wins.
        let Some(leader) = statuses
            .iter()
            .filter(|(_, st)| st.leader != 0)
            .max_by_key(|(_, st)| st.raft_term)
            .map(|(_, st)| st.leader)
        else {
            return Err(last_err.unwrap_or_else(|| {
                Error::from_status(
                    "Maintenance/MoveLeader",
                    tonic::Status::unavailable(ServerError::NoLeader.message()),
                )
            }));
        };
        if let Some((ep, _)) = statuses.iter().find(|(_, st)| st.member_id == leader) {
            return Ok((leader, ep.clone()));
        }
        let members = self.member_list().await?;
        let url = members
            .iter()
            .find(|m| m.id == leader)
            .and_then(|m| m.client_urls.first().cloned())
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "the leader {leader:x} has no client URL in the member list"
                ))
            })?;
        Ok((leader, url))
    }

    /// Transfers leadership to the voting member `target_id`, waiting until it has the lead.
    /// The call must reach the current leader: this finds it with `Status` over
    /// [`Client::endpoints`] (falling back to the member list for its URL) and tries once more
    /// when leadership moved in between (`ServerError::NotLeader`). A learner or unknown target
    /// → `ServerError::BadLeaderTransferee`. Moving to the current leader is a no-op.
    pub async fn move_leader(&self, target_id: u64) -> Result<()> {
        let mut tries = 0;
        loop {
            tries += 1;
            let (leader, url) = self.find_leader().await?;
            if leader == target_id {
                return Ok(());
            }
            let r = self
                .call_member(&url, pb::MoveLeaderRequest { target_id })
                .await;
            match r {
                Err(e) if e.server_error() == Some(ServerError::NotLeader) && tries < 2 => {
                    continue;
                }
                Err(e) => return Err(e),
                Ok(_) => return Ok(()),
            }
        }
    }

    /// Validates, enables or cancels a downgrade of the cluster to `version` (`"3.5"`, one
    /// minor below the cluster version; ignored by `Cancel`). Returns the cluster version the
    /// server reports. Errors: a malformed version → `WrongDowngradeVersionFormat`, a version
    /// that is not one minor below → `InvalidDowngradeTargetVersion`, a second enable →
    /// `DowngradeInProcess`, cancel without a downgrade → `NoInflightDowngrade`. Not retried
    /// once sent.
    pub async fn downgrade(&self, action: DowngradeAction, version: &str) -> Result<String> {
        let req = pb::DowngradeRequest {
            action: action.to_wire(),
            version: version.to_string(),
        };
        let resp = self.call(req).await?;
        Ok(resp.version)
    }

    /// Streams a snapshot of the backend database from one member into `writer`, exactly as
    /// `etcdctl snapshot save` writes it: the bbolt file followed by the 32-byte SHA-256 trailer
    /// the server sends last (which `etcdutl snapshot restore` checks). The client keeps a running
    /// SHA-256 and fails with [`Error::SnapshotIntegrity`] when the trailer is missing or does
    /// not match; everything received is still written, so discard the output on error (see
    /// [`Client::snapshot_to_file`]). Opening the stream is retried on another member until the
    /// first message arrives; a failure after that ends the call. The request timeout bounds
    /// only the wait for the first message.
    pub async fn snapshot<W>(&self, writer: W) -> Result<SnapshotInfo>
    where
        W: AsyncWrite + Unpin,
    {
        self.snapshot_routed(Route::Any, writer).await
    }

    /// [`Client::snapshot`] from the member with client URL `endpoint` (member-local, like
    /// [`Client::status`]; not retried on another member), for example to spare the leader.
    pub async fn snapshot_from<W>(&self, endpoint: &str, writer: W) -> Result<SnapshotInfo>
    where
        W: AsyncWrite + Unpin,
    {
        self.snapshot_routed(Route::Member(endpoint.to_string()), writer)
            .await
    }

    async fn snapshot_routed<W>(&self, route: Route, mut writer: W) -> Result<SnapshotInfo>
    where
        W: AsyncWrite + Unpin,
    {
        // Opening is retried (see the RPC table) until the first message arrives.
        let (mut stream, first) = self.call_on(route, pb::SnapshotRequest {}).await?;
        let header = first.header;
        let version = Some(first.version.clone()).filter(|v| !v.is_empty());
        let mut hasher = TrailerHasher::default();
        let mut data_done = false;
        let mut after_data = 0usize;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            if data_done {
                after_data += 1;
            }
            hasher.update(&msg.blob);
            writer
                .write_all(&msg.blob)
                .await
                .map_err(io_err("writing the snapshot"))?;
            if msg.remaining_bytes == 0 {
                data_done = true;
            }
            next = stream
                .message()
                .await
                .map_err(|st| Error::from_status("Maintenance/Snapshot", st))?;
        }
        writer
            .flush()
            .await
            .map_err(io_err("flushing the snapshot"))?;
        if !data_done {
            return Err(Error::SnapshotIntegrity(format!(
                "the stream ended with data still to come ({} bytes received)",
                hasher.total
            )));
        }
        if after_data == 0 {
            return Err(Error::SnapshotIntegrity(
                "sha256 checksum not found: no trailer after the last data chunk".into(),
            ));
        }
        let (size, sha256) = hasher.finish()?;
        Ok(SnapshotInfo {
            size,
            sha256,
            member_id: header.as_ref().map(|h| h.member_id),
            revision: header.as_ref().map(|h| h.revision),
            version,
        })
    }

    /// [`Client::snapshot`] into the file `path`: written to `path.part`, synced, and renamed
    /// over `path` only when complete and verified (the partial file is removed on error).
    pub async fn snapshot_to_file(&self, path: impl AsRef<Path>) -> Result<SnapshotInfo> {
        self.snapshot_to_file_routed(Route::Any, path.as_ref())
            .await
    }

    /// [`Client::snapshot_to_file`] from the member with client URL `endpoint` (see
    /// [`Client::snapshot_from`]).
    pub async fn snapshot_from_to_file(
        &self,
        endpoint: &str,
        path: impl AsRef<Path>,
    ) -> Result<SnapshotInfo> {
        self.snapshot_to_file_routed(Route::Member(endpoint.to_string()), path.as_ref())
            .await
    }

    async fn snapshot_to_file_routed(&self, route: Route, path: &Path) -> Result<SnapshotInfo> {
        let mut part = path.as_os_str().to_owned();
        part.push(".part");
        let part = std::path::PathBuf::from(part);
        let result = async {
            let mut f = tokio::fs::File::create(&part)
                .await
                .map_err(io_err(format!("creating {}", part.display())))?;
            let info = self.snapshot_routed(route, &mut f).await?;
            f.sync_all()
                .await
                .map_err(io_err(format!("syncing {}", part.display())))?;
            drop(f);
            tokio::fs::rename(&part, path)
                .await
                .map_err(io_err(format!("renaming to {}", path.display())))?;
            Ok(info)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&part).await;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(data: &[u8], chunk: usize) -> (Vec<Vec<u8>>, [u8; 32]) {
        let digest: [u8; 32] = Sha256::digest(data).into();
        let mut chunks: Vec<Vec<u8>> = data.chunks(chunk).map(<[u8]>::to_vec).collect();
        chunks.push(digest.to_vec());
        (chunks, digest)
    }

    #[test]
    fn trailer_is_checked_whatever_the_chunking() {
        let data: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
        for chunk in [1, 5, 31, 32, 33, 512, 1000, 4096] {
            let (chunks, digest) = stream(&data, chunk);
            let mut h = TrailerHasher::default();
            for c in &chunks {
                h.update(c);
            }
            let (size, sha) = h.finish().expect("valid");
            assert_eq!(size, 4096 + 32);
            assert_eq!(sha, digest);
        }
    }

    #[test]
    fn missing_or_wrong_trailer_is_an_integrity_error() {
        let data = vec![7u8; 1024];
        let mut h = TrailerHasher::default();
        h.update(&data);
        assert!(matches!(h.finish(), Err(Error::SnapshotIntegrity(_))));

        let (mut chunks, _) = stream(&data, 512);
        let last = chunks.len() - 1;
        chunks[last][0] ^= 1;
        let mut h = TrailerHasher::default();
        for c in &chunks {
            h.update(c);
        }
        assert!(matches!(h.finish(), Err(Error::SnapshotIntegrity(_))));
    }

    #[test]
    fn alarm_types_round_trip() {
        for a in [
            AlarmType::None,
            AlarmType::NoSpace,
            AlarmType::Corrupt,
            AlarmType::Unknown(9),
        ] {
            assert_eq!(AlarmType::from_wire(a.to_wire()), a);
        }
    }
}

//! observe: etcd's view of a cluster, read through the client with reads only (a linearizable
//! MemberList, one `Status` per started member, and what each member's gRPC health `Watch`
//! stream says; while a NOSPACE alarm is raised, one range read at the revision before the
//! current one tells whether the history is compacted), turned into the planner's
//! [`Membership`]; when a consistency check is due, `HashKV` of every voter
//! ([`check_hashes`]).
//!
//! Nothing here writes to etcd or goes through raft: `Status` and the health service are
//! answered locally by each member and a linearizable MemberList uses a read index, so
//! observing an idle cluster adds no raft entries (unlike `etcdctl endpoint health`, which
//! runs a linearizable `Get`).

use std::time::Duration;

use crate::etcd::Client;
use crate::etcd::ServerError;
use crate::etcd::cluster::Member;
use crate::etcd::kv::GetOptions;
use crate::etcd::maintenance::Status;

use super::plan::{Alarm, EtcdMember, HashCheck, MemberHash, Membership, Version};

/// One etcd member and what its own `Status` call answered.
#[derive(Debug, Clone)]
pub struct MemberView {
    /// The member as the membership lists it.
    pub member: Member,
    /// Its `Status`, if it answered in time.
    pub status: Option<Status>,
    /// What its gRPC health `Watch` stream says (SERVING or not), `None` without an answer.
    pub serving: Option<bool>,
    /// The URL the operator reaches it at (its first client URL, resolved), if it started.
    pub endpoint: Option<String>,
}

impl MemberView {
    /// Whether the member is healthy: its `Status` answered with a leader and its health
    /// stream says SERVING. A learner refuses every gRPC service but a few (the health service
    /// among the refused), so its `Status` alone counts.
    pub fn healthy(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.leader != 0)
            && (self.member.is_learner || self.serving == Some(true))
    }

    /// The first client URL the member published, if it started.
    pub fn client_url(&self) -> Option<&str> {
        self.member.client_urls.first().map(String::as_str)
    }
}

/// etcd's view of one cluster.
#[derive(Debug, Clone, Default)]
pub struct EtcdView {
    /// Every member, voters and learners.
    pub members: Vec<MemberView>,
    /// The leader's ID, when a member reports one.
    pub leader: Option<u64>,
    /// The cluster ID, when a member answered `Status`.
    pub cluster_id: Option<u64>,
    /// Whether the member list came from a linearizable read (it went through the leader).
    pub linearizable: bool,
    /// The store's current revision: the highest a member reported in `Status` (0 if none).
    pub revision: i64,
    /// Whether the history is compacted up to [`EtcdView::revision`]; read only while a
    /// NOSPACE alarm is raised, `None` otherwise or when the read failed.
    pub compacted: Option<bool>,
}

impl EtcdView {
    /// The planner's view of the membership.
    pub fn membership(&self) -> Membership {
        Membership {
            members: self.members.iter().map(to_plan_member).collect(),
            leader: self.leader,
            revision: self.revision,
            compacted: self.compacted,
            orphan_alarms: self.orphan_alarms(),
        }
    }

    /// Alarms the members' `Status` answers name for member IDs that are not members (a
    /// removed member's alarm stays until it is disarmed).
    pub fn orphan_alarms(&self) -> Vec<(u64, Alarm)> {
        let mut out: Vec<(u64, Alarm)> = Vec::new();
        for s in self.members.iter().filter_map(|v| v.status.as_ref()) {
            for e in &s.errors {
                let Some(id) = alarm_member(e) else {
                    continue;
                };
                if self.member(id).is_some() {
                    continue;
                }
                for a in alarms_for(s, id) {
                    if !out.contains(&(id, a)) {
                        out.push((id, a));
                    }
                }
            }
        }
        out
    }

    /// The member with this ID.
    pub fn member(&self, id: u64) -> Option<&MemberView> {
        self.members.iter().find(|m| m.member.id == id)
    }
}

/// The member ID an alarm line of a `Status` answer names (`memberID:<decimal> alarm:<NAME>`,
/// protobuf text: a zero ID is left out, so a line without one is member 0's; etcd 3.5's
/// periodic corruption check raises `CORRUPT` on member 0).
fn alarm_member(line: &str) -> Option<u64> {
    match line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("memberID:"))
    {
        Some(id) => id.parse::<u64>().ok(),
        None => Some(0),
    }
}

/// Alarms named in a `Status` answer's errors for `member_id` (a line without a member ID is
/// member 0's).
pub fn alarms_for(status: &Status, member_id: u64) -> Vec<Alarm> {
    let mut out = Vec::new();
    for e in &status.errors {
        if alarm_member(e) != Some(member_id) {
            continue;
        }
        let alarm = if e.contains("alarm:NOSPACE") {
            Some(Alarm::NoSpace)
        } else if e.contains("alarm:CORRUPT") {
            Some(Alarm::Corrupt)
        } else {
            None
        };
        if let Some(a) = alarm.filter(|a| !out.contains(a)) {
            out.push(a);
        }
    }
    out
}

fn to_plan_member(v: &MemberView) -> EtcdMember {
    let m = &v.member;
    // Alarms are cluster-wide facts: every member's Status lists all of them.
    let alarms = v
        .status
        .as_ref()
        .map(|s| alarms_for(s, m.id))
        .unwrap_or_default();
    EtcdMember {
        id: m.id,
        name: m.name.clone(),
        peer_urls: m.peer_urls.clone(),
        is_learner: m.is_learner,
        started: !m.name.is_empty() && !m.client_urls.is_empty(),
        healthy: v.healthy(),
        version: v
            .status
            .as_ref()
            .and_then(|s| s.version.parse::<Version>().ok()),
        raft_index: v.status.as_ref().map_or(0, |s| s.raft_index),
        alarms,
        db_size: v
            .status
            .as_ref()
            .map_or(0, |s| u64::try_from(s.db_size).unwrap_or(0)),
        db_size_in_use: v
            .status
            .as_ref()
            .map_or(0, |s| u64::try_from(s.db_size_in_use).unwrap_or(0)),
        defragmented_at: None,
    }
}

/// Why etcd's view could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreachable {
    /// No member has started: there is nothing to dial.
    #[error("no member has started")]
    NoMember,
    /// The client could not be set up for the members' endpoints.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// No member answered a MemberList (linearizable, then serializable).
    #[error("no member answered MemberList: {0}")]
    MemberList(String),
    /// No member answered a MemberList in time.
    #[error("no member answered MemberList within {0:?}")]
    Timeout(Duration),
}

/// Maps a member's advertised client URL to the URL the operator reaches it at (the identity
/// when it can use the advertised one; the Kubernetes runtime may point Pod DNS names
/// elsewhere).
pub type Resolve<'a> = &'a (dyn Fn(&str) -> String + Send + Sync);

/// The [`Resolve`] that keeps every URL as it is.
pub fn same_url(url: &str) -> String {
    url.to_owned()
}

/// Reads etcd's view through `client`: a linearizable MemberList (a serializable one when no
/// leader answers), then for every started member, at its client URL mapped through
/// `resolve`, its `Status` and its health stream's answer, each bounded by `timeout`; why etcd
/// is [`Unreachable`] when no member answered the MemberList.
pub async fn observe_etcd(
    client: &Client,
    timeout: Duration,
    resolve: Resolve<'_>,
) -> Result<EtcdView, Unreachable> {
    let (members, linearizable) = match tokio::time::timeout(timeout, client.member_list()).await {
        Ok(Ok(m)) => (m, true),
        _ => match tokio::time::timeout(timeout, client.member_list_serializable()).await {
            Ok(Ok(m)) => (m, false),
            Ok(Err(e)) => return Err(Unreachable::MemberList(e.to_string())),
            Err(_) => return Err(Unreachable::Timeout(timeout)),
        },
    };
    let mut views = Vec::with_capacity(members.len());
    for member in members {
        let endpoint = member.client_urls.first().map(|u| resolve(u));
        let (status, serving) = match &endpoint {
            Some(url) => {
                let url = url.as_str();
                let status = tokio::time::timeout(timeout, client.status(url))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .filter(|s| s.member_id == member.id);
                // The stream was opened with the member's channel (by the Status call at the
                // latest); its first answer follows within a round trip. A member that did not
                // answer Status is unhealthy anyway: take what the stream said so far.
                let wait = if status.is_some() {
                    timeout
                } else {
                    Duration::ZERO
                };
                let serving = client.serving(url, wait).await.ok().flatten();
                (status, serving)
            }
            None => (None, None),
        };
        views.push(MemberView {
            member,
            status,
            serving,
            endpoint,
        });
    }
    let leader = leader_by_votes(&views);
    let cluster_id = views
        .iter()
        .filter_map(|v| v.status.as_ref())
        .map(|s| s.cluster_id)
        .next();
    let revision = views
        .iter()
        .filter_map(|v| v.status.as_ref())
        .map(|s| s.revision)
        .max()
        .unwrap_or(0);
    let no_space = views.iter().any(|v| {
        v.status
            .as_ref()
            .is_some_and(|s| s.errors.iter().any(|e| e.contains("alarm:NOSPACE")))
    });
    let compacted = if no_space && revision > 0 {
        compacted_to(client, revision, timeout).await
    } else {
        None
    };
    Ok(EtcdView {
        members: views,
        leader,
        cluster_id,
        linearizable,
        revision,
        compacted,
    })
}

/// Whether the history is compacted up to `revision` (the current one): a read at the revision
/// before it fails with "required revision has been compacted" exactly when the compaction
/// revision is `revision`. A read, bounded by `timeout`; `None` when it fails otherwise.
pub async fn compacted_to(client: &Client, revision: i64, timeout: Duration) -> Option<bool> {
    if revision <= 1 {
        return Some(true);
    }
    let read = client.get(
        "\0",
        GetOptions::new()
            .with_revision(revision - 1)
            .with_count_only(),
    );
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(_)) => Some(false),
        Ok(Err(e)) if e.server_error() == Some(ServerError::Compacted) => Some(true),
        _ => None,
    }
}

/// The consistency check: every started voter that answered `Status` is asked (`HashKV`, a
/// member-local read that writes nothing) for the hash of its store up to the lowest revision
/// those voters reported, so that every one of them has applied it. Each call is bounded by
/// `timeout`; a voter that does not answer is left out. `None` when no voter answered
/// `Status`.
pub async fn check_hashes(
    client: &Client,
    view: &EtcdView,
    timeout: Duration,
) -> Option<HashCheck> {
    let voters: Vec<&MemberView> = view
        .members
        .iter()
        .filter(|v| !v.member.is_learner)
        .collect();
    let revision = voters
        .iter()
        .filter_map(|v| v.status.as_ref())
        .map(|s| s.revision)
        .min()?;
    let mut hashes = Vec::new();
    for v in &voters {
        let (Some(url), Some(_)) = (v.endpoint.as_deref(), v.status.as_ref()) else {
            continue;
        };
        match tokio::time::timeout(timeout, client.hash_kv(url, revision)).await {
            Ok(Ok(h)) if h.member_id == v.member.id => hashes.push(MemberHash {
                member_id: h.member_id,
                hash: h.hash,
                compact_revision: h.compact_revision,
                hash_revision: h.hash_revision.unwrap_or(revision),
            }),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::debug!(member = %v.member.id_hex(), error = %e, "HashKV failed");
            }
            Err(_) => tracing::debug!(member = %v.member.id_hex(), "HashKV timed out"),
        }
    }
    Some(HashCheck {
        revision,
        voters: voters.len(),
        hashes,
    })
}

/// The leader as the voters see it: the most common non-zero answer, if it is a member.
pub fn leader_by_votes(views: &[MemberView]) -> Option<u64> {
    let mut votes: Vec<(u64, usize)> = Vec::new();
    for s in views
        .iter()
        .filter(|v| !v.member.is_learner)
        .filter_map(|v| v.status.as_ref())
        .filter(|s| s.leader != 0)
    {
        match votes.iter_mut().find(|(id, _)| *id == s.leader) {
            Some((_, n)) => *n += 1,
            None => votes.push((s.leader, 1)),
        }
    }
    votes
        .iter()
        .max_by_key(|(_, n)| *n)
        .map(|(id, _)| *id)
        .filter(|id| views.iter().any(|v| v.member.id == *id))
}

#[cfg(test)]
mod tests {
    use super::alarm_member;

    #[test]
    fn an_alarm_line_without_a_member_id_is_member_zeros() {
        assert_eq!(alarm_member("memberID:42 alarm:NOSPACE"), Some(42));
        // Protobuf text leaves a zero ID out: etcd 3.5's periodic check raises CORRUPT so.
        assert_eq!(alarm_member("alarm:CORRUPT"), Some(0));
        assert_eq!(alarm_member("memberID:x alarm:CORRUPT"), None);
    }
}

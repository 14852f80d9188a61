//! Corruption: the verdict of a consistency check (`HashKV` of every voter at one revision), and
//! what the planner does about a member found corrupt or a `CORRUPT` alarm left on a member that
//! is gone.
//!
//! The check itself writes nothing to etcd; observe runs it when [`corruption_check_due`] says
//! so and [`consistency`] judges it. A member judged corrupt is treated exactly as one carrying
//! a `CORRUPT` alarm: it is unhealthy, never restarted, and replaced (removed, then added back
//! empty as a learner) when the others are a healthy majority without it.

use super::reachable::ReachableCluster;
use super::*;

/// One voter's answer to `HashKV` at the check's revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MemberHash {
    /// The member ID.
    pub member_id: u64,
    /// The hash of its key-value store up to [`MemberHash::hash_revision`].
    pub hash: u32,
    /// Its compaction revision when it answered: hashes are comparable only between members
    /// compacted to the same revision.
    pub compact_revision: i64,
    /// The revision the hash covers.
    pub hash_revision: i64,
}

/// The answers of one consistency check.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HashCheck {
    /// The revision every voter was asked to hash up to.
    pub revision: i64,
    /// How many voters the membership had when the check ran.
    pub voters: usize,
    /// The answers of the voters that answered.
    pub hashes: Vec<MemberHash>,
}

/// What a consistency check found.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Consistency {
    /// Every compared member has the same hash.
    Consistent {
        /// The members compared.
        members: Vec<u64>,
    },
    /// A majority of the voters share one hash; these members have another.
    Corrupt {
        /// The members whose hash differs from the majority's.
        members: Vec<u64>,
        /// The hash a majority shares.
        majority_hash: u32,
        /// The members with the majority's hash.
        agreeing: Vec<u64>,
    },
    /// The hashes differ and no hash is shared by a majority of the voters: nobody knows which
    /// data is right, so nothing is replaced.
    NoMajority,
    /// Fewer than a majority of the voters answered at the same compaction and revision: nothing
    /// to judge.
    Incomparable,
}

impl Consistency {
    /// The word recorded in `status.corruptionCheck.result`.
    pub fn result(&self) -> &'static str {
        match self {
            Consistency::Consistent { .. } => "Consistent",
            Consistency::Corrupt { .. } => "MemberCorrupt",
            Consistency::NoMajority => "NoMajority",
            Consistency::Incomparable => "Incomparable",
        }
    }

    /// The members whose data the check found right: every compared member when consistent,
    /// the majority's when one member differs; none otherwise.
    pub fn agreeing(&self) -> &[u64] {
        match self {
            Consistency::Consistent { members }
            | Consistency::Corrupt {
                agreeing: members, ..
            } => members,
            _ => &[],
        }
    }

    /// The members judged corrupt (none unless [`Consistency::Corrupt`]).
    pub fn corrupt_members(&self) -> &[u64] {
        match self {
            Consistency::Corrupt { members, .. } => members,
            _ => &[],
        }
    }
}

/// Judges a check: only the members at the most common (compaction, hash revision) are
/// compared, and only when they are a majority of the voters; a hash shared by a majority of
/// the voters is the truth, and every compared member with another hash is corrupt.
pub fn consistency(check: &HashCheck) -> Consistency {
    let need = quorum(check.voters.max(1));
    let mut groups: Vec<((i64, i64), Vec<&MemberHash>)> = Vec::new();
    for h in &check.hashes {
        let key = (h.compact_revision, h.hash_revision);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push(h),
            None => groups.push((key, vec![h])),
        }
    }
    let Some((_, group)) = groups.into_iter().max_by_key(|(_, g)| g.len()) else {
        return Consistency::Incomparable;
    };
    if group.len() < need {
        return Consistency::Incomparable;
    }
    let mut counts: Vec<(u32, usize)> = Vec::new();
    for h in &group {
        match counts.iter_mut().find(|(hash, _)| *hash == h.hash) {
            Some((_, n)) => *n += 1,
            None => counts.push((h.hash, 1)),
        }
    }
    let ids = |pred: &dyn Fn(&MemberHash) -> bool| {
        let mut v: Vec<u64> = group
            .iter()
            .filter(|h| pred(h))
            .map(|h| h.member_id)
            .collect();
        v.sort_unstable();
        v
    };
    if counts.len() == 1 {
        return Consistency::Consistent {
            members: ids(&|_| true),
        };
    }
    match counts.iter().find(|(_, n)| *n >= need) {
        Some((majority_hash, _)) => Consistency::Corrupt {
            members: ids(&|h| h.hash != *majority_hash),
            majority_hash: *majority_hash,
            agreeing: ids(&|h| h.hash == *majority_hash),
        },
        None => Consistency::NoMajority,
    }
}

/// Whether a consistency check is due at `now`: the check is on and the last one (if any) is at
/// least its interval old. No time (`now` unknown): never. A last check in the future (the
/// clock went back) counts as just run.
pub fn corruption_check_due(
    m: &Maintenance,
    last: Option<SystemTime>,
    now: Option<SystemTime>,
) -> bool {
    let (Some(every), Some(now)) = (m.corruption_check_every, now) else {
        return false;
    };
    match last {
        None => true,
        Some(last) => now.duration_since(last).is_ok_and(|age| age >= every),
    }
}

/// The membership as the planner judges it: every member the latest check found corrupt
/// carries [`Alarm::Corrupt`], as if etcd had raised it, and a member whose hash the check
/// found right does not, even when etcd raised it on it (etcd's own check is the leader's
/// view: a corrupt leader accuses every follower). `None`: nothing changes.
pub(super) fn with_verdict(membership: &Membership, verdict: &Consistency) -> Option<Membership> {
    let corrupt = verdict.corrupt_members();
    let agreeing = verdict.agreeing();
    let changes = |m: &EtcdMember| {
        let alarmed = m.alarms.contains(&Alarm::Corrupt);
        (corrupt.contains(&m.id) && !alarmed) || (agreeing.contains(&m.id) && alarmed)
    };
    if !membership.members.iter().any(changes) {
        return None;
    }
    let mut out = membership.clone();
    for m in &mut out.members {
        if corrupt.contains(&m.id) && !m.alarms.contains(&Alarm::Corrupt) {
            m.alarms.push(Alarm::Corrupt);
        }
        if agreeing.contains(&m.id) {
            m.alarms.retain(|a| *a != Alarm::Corrupt);
        }
    }
    Some(out)
}

impl ReachableCluster<'_> {
    /// A `CORRUPT` alarm raised on a member that is no longer in the cluster (it was replaced),
    /// or on a member whose data the latest check found right: disarm it once no member found
    /// corrupt is left (etcd refuses reads and writes while any `CORRUPT` alarm is raised; the
    /// corrupt member must be gone before the cluster serves again). An alarm on member 0 (etcd
    /// 3.5's periodic check names no member) is disarmed only once a check compared the data.
    pub(super) fn disarm_stale_corrupt(&self) -> Option<Plan> {
        let verdict = self.observed.corruption.as_ref();
        let corrupt_left = verdict.is_some_and(|v| {
            self.all_members()
                .any(|m| v.corrupt_members().contains(&m.id))
        });
        if corrupt_left {
            return None;
        }
        let compared = matches!(
            verdict,
            Some(Consistency::Consistent { .. } | Consistency::Corrupt { .. })
        );
        let orphan = self
            .membership
            .orphan_alarms
            .iter()
            .find(|(id, a)| {
                *a == Alarm::Corrupt
                    && self.all_members().all(|m| m.id != *id)
                    && (*id != 0 || compared)
            })
            .map(|(id, _)| {
                let why = if *id == 0 {
                    "(raised by etcd's own check without naming a member): the data of the \
                     members left agree"
                } else {
                    "was replaced, its data is gone"
                };
                (*id, why)
            });
        let cleared = || {
            let v = verdict?;
            let real = self.observed.etcd.as_ref()?;
            real.members
                .iter()
                .find(|m| m.alarms.contains(&Alarm::Corrupt) && v.agreeing().contains(&m.id))
                .map(|m| (m.id, "has the data a majority shares"))
        };
        let (member_id, why) = orphan.or_else(cleared)?;
        let mut plan = self.step(
            Phase::Replacing,
            Step::DisarmAlarm {
                member_id,
                alarm: Alarm::Corrupt,
            },
        );
        plan.status.message = format!("{}: member {member_id:x} {why}", plan.status.message);
        Some(plan)
    }

    /// While the latest check found no hash shared by a majority: report and wait for a person.
    pub(super) fn no_majority(&self) -> Option<Plan> {
        (self.observed.corruption == Some(Consistency::NoMajority)).then(|| {
            self.wait(
                Phase::Degraded,
                "the members' data differ and no version is shared by a majority of the voters \
                 (status.corruptionCheck); nothing is replaced or changed until a person \
                 decides which member's data to keep"
                    .to_owned(),
            )
        })
    }
}

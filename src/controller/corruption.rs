//! corruption: what the pass records of a consistency check (`status.corruptionCheck`, the
//! members' `corrupt` field, the `Degraded` condition), and reads back of it for the planner.
//!
//! The check's I/O is [`super::observe::check_hashes`] and its verdict the planner's
//! [`consistency`](super::plan::consistency); this module only turns them into status and back, so that the check runs
//! once per interval (its time survives a restart of the operator) and a member found corrupt
//! stays marked until it is replaced.

use std::time::{Duration, SystemTime};

use crate::api::{CorruptionCheckStatus, EtcdClusterStatus, MemberHashRecord};
use crate::etcd::Client;

use super::events::StepEvent;
use super::observe::{EtcdView, check_hashes};
use super::plan::{Consistency, Desired, HashCheck, corruption_check_due};
use super::status::mark_failed;

/// The consistency check, when it is due ([`corruption_check_due`], from the time `previous`
/// records) or while etcd raises a `CORRUPT` alarm (its own check accuses members from the
/// leader's view only, so the hashes decide): reads only, `HashKV` of every voter.
pub async fn check_if_due(
    client: &Client,
    view: &EtcdView,
    desired: &Desired,
    previous: Option<&EtcdClusterStatus>,
    now: &SystemTime,
    timeout: Duration,
) -> Option<HashCheck> {
    let due = corrupt_alarm_raised(view)
        || corruption_check_due(&desired.maintenance, last_check_time(previous), Some(*now));
    if !due {
        return None;
    }
    check_hashes(client, view, timeout).await
}

/// The warning Event of a check that found members' data differing (once per check).
pub fn finding_event(fresh: &Consistency, status: &EtcdClusterStatus) -> Option<StepEvent> {
    let reason = match fresh {
        Consistency::Corrupt { .. } => MEMBER_CORRUPT,
        Consistency::NoMajority => DATA_INCONSISTENT,
        _ => return None,
    };
    Some(StepEvent {
        warning: true,
        reason: reason.to_owned(),
        note: status
            .corruption_check
            .as_ref()
            .map(|c| c.message.clone())
            .unwrap_or_default(),
        action: "CheckConsistency",
    })
}

/// The condition and Event reason of a member whose data differs from the majority's.
pub const MEMBER_CORRUPT: &str = "MemberCorrupt";
/// The condition and Event reason of members whose data differ with no majority.
pub const DATA_INCONSISTENT: &str = "DataInconsistent";

/// Whether a member's `Status` names a `CORRUPT` alarm (on any member ID).
pub fn corrupt_alarm_raised(view: &EtcdView) -> bool {
    view.members
        .iter()
        .filter_map(|m| m.status.as_ref())
        .any(|s| s.errors.iter().any(|e| e.contains("alarm:CORRUPT")))
}

/// When the last consistency check recorded in `status` ran, if its time is readable.
pub fn last_check_time(status: Option<&EtcdClusterStatus>) -> Option<SystemTime> {
    let time = &status?.corruption_check.as_ref()?.last_check_time;
    let ts: k8s_openapi::jiff::Timestamp = time.parse().ok()?;
    Some(SystemTime::from(ts))
}

/// The verdict recorded in `status` (the planner's memory between checks).
pub fn recorded_verdict(status: Option<&EtcdClusterStatus>) -> Option<Consistency> {
    let c = status?.corruption_check.as_ref()?;
    Some(match c.result.as_str() {
        "Consistent" => Consistency::Consistent {
            members: c
                .hashes
                .iter()
                .filter_map(|h| u64::from_str_radix(&h.id, 16).ok())
                .collect(),
        },
        "NoMajority" => Consistency::NoMajority,
        "MemberCorrupt" => {
            let members: Vec<u64> = c
                .corrupt_members
                .iter()
                .filter_map(|id| u64::from_str_radix(id, 16).ok())
                .collect();
            let majority_hash = c
                .hashes
                .iter()
                .find(|h| !c.corrupt_members.contains(&h.id))
                .and_then(|h| u32::from_str_radix(h.hash.trim_start_matches("0x"), 16).ok())
                .unwrap_or(0);
            let agreeing = c
                .hashes
                .iter()
                .filter(|h| {
                    u32::from_str_radix(h.hash.trim_start_matches("0x"), 16).ok()
                        == Some(majority_hash)
                })
                .filter_map(|h| u64::from_str_radix(&h.id, 16).ok())
                .collect();
            Consistency::Corrupt {
                members,
                majority_hash,
                agreeing,
            }
        }
        _ => Consistency::Incomparable,
    })
}

fn member_name(desired: &Desired, view: &EtcdView, id: u64) -> String {
    view.member(id)
        .map(|m| {
            if m.member.name.is_empty() {
                m.member
                    .peer_urls
                    .iter()
                    .find_map(|u| desired.ordinal_of_peer_url(u))
                    .map(|o| desired.member_name(o))
                    .unwrap_or_default()
            } else {
                m.member.name.clone()
            }
        })
        .unwrap_or_default()
}

/// A sentence for people about a check and its verdict.
pub fn describe(desired: &Desired, view: &EtcdView, check: &HashCheck, v: &Consistency) -> String {
    let hashes: Vec<String> = check
        .hashes
        .iter()
        .map(|h| {
            format!(
                "{} {:#010x} (compacted at {})",
                member_name(desired, view, h.member_id),
                h.hash,
                h.compact_revision
            )
        })
        .collect();
    let hashes = hashes.join(", ");
    let at = check.revision;
    match v {
        Consistency::Consistent { .. } => {
            format!("every member has the same data at revision {at}")
        }
        Consistency::Corrupt {
            members,
            majority_hash,
            ..
        } => {
            let names: Vec<String> = members
                .iter()
                .map(|id| format!("{} ({id:x})", member_name(desired, view, *id)))
                .collect();
            format!(
                "the data of {} differ from the majority's (hash {majority_hash:#010x}) at \
                 revision {at}: {hashes}; replacing it from the healthy majority",
                names.join(", ")
            )
        }
        Consistency::NoMajority => format!(
            "the members' data differ at revision {at} and no hash is shared by a majority: \
             {hashes}; nothing is replaced until a person decides"
        ),
        Consistency::Incomparable => format!(
            "too few voters answered at the same compaction to compare at revision {at}: \
             {hashes}"
        ),
    }
}

/// Records a check that ran in this pass at `now` in `status.corruptionCheck`.
pub fn record_check(
    status: &mut EtcdClusterStatus,
    desired: &Desired,
    view: &EtcdView,
    check: &HashCheck,
    verdict: &Consistency,
    now: &str,
) {
    status.corruption_check = Some(CorruptionCheckStatus {
        last_check_time: now.to_owned(),
        revision: check.revision,
        result: verdict.result().to_owned(),
        message: describe(desired, view, check, verdict),
        corrupt_members: verdict
            .corrupt_members()
            .iter()
            .map(|id| format!("{id:x}"))
            .collect(),
        hashes: check
            .hashes
            .iter()
            .map(|h| MemberHashRecord {
                name: member_name(desired, view, h.member_id),
                id: format!("{:x}", h.member_id),
                hash: format!("{:#010x}", h.hash),
                compact_revision: h.compact_revision,
            })
            .collect(),
    });
}

/// Marks, from the latest verdict, every member still in the cluster that was found corrupt
/// (`corrupt: true`) and the cluster `Degraded` (reason [`MEMBER_CORRUPT`], or
/// [`DATA_INCONSISTENT`] without a majority), with the recorded check's message. Once the
/// corrupt members are replaced (their IDs gone), nothing is marked.
pub fn mark_corruption(status: &mut EtcdClusterStatus, verdict: Option<&Consistency>, now: &str) {
    let Some(verdict) = verdict else {
        return;
    };
    let message = status
        .corruption_check
        .as_ref()
        .map(|c| c.message.clone())
        .unwrap_or_default();
    match verdict {
        Consistency::Corrupt { members, .. } => {
            let mut any = false;
            for m in &mut status.members {
                let id =
                    m.id.as_deref()
                        .and_then(|id| u64::from_str_radix(id, 16).ok());
                if id.is_some_and(|id| members.contains(&id)) {
                    m.corrupt = true;
                    any = true;
                }
            }
            if any {
                mark_failed(status, MEMBER_CORRUPT, &message, now);
            }
        }
        Consistency::NoMajority => mark_failed(status, DATA_INCONSISTENT, &message, now),
        Consistency::Consistent { .. } | Consistency::Incomparable => {}
    }
}

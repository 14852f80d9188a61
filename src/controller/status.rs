//! The status to report: [`EtcdClusterStatus`] built from the planner's
//! [`PlannedStatus`](super::plan::PlannedStatus) and etcd's view, with the conditions
//! `Available`, `Progressing` and `Degraded` (Kubernetes API conventions: a condition's
//! `lastTransitionTime` changes only when its status does).

use crate::api::{
    AlarmRecord, BackupStatus, CompactionRecord, Condition, DefragmentationRecord,
    EtcdClusterStatus, MaintenanceStatus, MemberStatus, SnapshotRecord, versions::UpgradeStatus,
};

use std::time::SystemTime;

use super::act::Maintained;
use super::backup::backoff;
use super::observe::EtcdView;
use super::plan::{Desired, Membership, Phase, Plan, Version, quorum};

/// The phase as the status spells it.
pub fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Bootstrapping => "Bootstrapping",
        Phase::Scaling => "Scaling",
        Phase::Replacing => "Replacing",
        Phase::Upgrading => "Upgrading",
        Phase::Healthy => "Healthy",
        Phase::Degraded => "Degraded",
        Phase::Unavailable => "Unavailable",
        Phase::Paused => "Paused",
        Phase::Maintenance => "Maintenance",
    }
}

/// Everything [`build_status`] reads.
#[derive(Debug, Clone, Copy)]
pub struct StatusInput<'a> {
    /// What was asked for.
    pub desired: &'a Desired,
    /// The planner's answer for this pass.
    pub plan: &'a Plan,
    /// etcd's view, if a member answered.
    pub view: Option<&'a EtcdView>,
    /// The previous status, whose condition transition times are kept when unchanged.
    pub previous: Option<&'a EtcdClusterStatus>,
    /// The resource generation this status describes.
    pub generation: Option<i64>,
    /// The current time, RFC 3339.
    pub now: &'a str,
}

/// The condition `type_` (`True` when `on`), keeping the previous transition time while its
/// status is unchanged (the one builder of conditions).
pub fn condition(
    previous: Option<&EtcdClusterStatus>,
    generation: Option<i64>,
    now: &str,
    type_: &str,
    on: bool,
    reason: &str,
    message: &str,
) -> Condition {
    let value = if on { "True" } else { "False" };
    let last = match previous.and_then(|p| p.conditions.iter().find(|c| c.type_ == type_)) {
        Some(c) if c.status == value => c.last_transition_time.clone(),
        _ => Some(now.to_owned()),
    };
    Condition {
        type_: type_.to_owned(),
        status: value.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        last_transition_time: last,
        observed_generation: generation,
    }
}

/// Builds the status of one pass.
pub fn build_status(input: StatusInput<'_>) -> EtcdClusterStatus {
    let StatusInput {
        desired,
        plan,
        view,
        previous,
        generation,
        now,
    } = input;
    let planned = &plan.status;
    let mut members: Vec<MemberStatus> = view
        .map(|v| {
            v.members
                .iter()
                .map(|m| {
                    let ordinal = if m.member.name.is_empty() {
                        m.member
                            .peer_urls
                            .iter()
                            .find_map(|u| desired.ordinal_of_peer_url(u))
                    } else {
                        desired.ordinal_of(&m.member.name)
                    };
                    let name = match (m.member.name.is_empty(), ordinal) {
                        (false, _) => m.member.name.clone(),
                        (true, Some(o)) => desired.member_name(o),
                        (true, None) => String::new(),
                    };
                    let role = if m.member.is_learner {
                        "learner"
                    } else if v.leader == Some(m.member.id) {
                        "leader"
                    } else {
                        "follower"
                    };
                    let st = m.status.as_ref();
                    MemberStatus {
                        name,
                        id: Some(m.member.id_hex()),
                        peer_url: m.member.peer_urls.first().cloned(),
                        client_url: m.member.client_urls.first().cloned(),
                        role: Some(role.to_owned()),
                        healthy: m.healthy(),
                        version: st.map(|s| s.version.clone()),
                        db_size: st.map(|s| s.db_size),
                        db_size_in_use: st.map(|s| s.db_size_in_use),
                        raft_index: st.map(|s| s.raft_index),
                        raft_term: st.map(|s| s.raft_term),
                        alarms: st
                            .map(|s| {
                                super::observe::alarms_for(s, m.member.id)
                                    .iter()
                                    .map(ToString::to_string)
                                    .collect()
                            })
                            .unwrap_or_default(),
                        last_defragmentation: None,
                        corrupt: false,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    members.sort_by(|a, b| a.name.cmp(&b.name));
    // What the operator did is kept from the previous status (it is not observed).
    for m in &mut members {
        m.last_defragmentation = previous
            .and_then(|p| p.members.iter().find(|o| o.name == m.name))
            .and_then(|o| o.last_defragmentation.clone());
    }
    let no_space = members
        .iter()
        .any(|m| m.alarms.iter().any(|a| a == "NOSPACE"));
    let leader = view.and_then(|v| {
        let id = v.leader?;
        v.member(id).map(|m| m.member.name.clone())
    });
    let current_version = view.and_then(|v| {
        v.members
            .iter()
            .filter_map(|m| m.status.as_ref())
            .filter_map(|s| s.version.parse::<Version>().ok())
            .min()
            .map(|v| v.to_string())
    });

    let voters = planned.voters as usize;
    let available = voters > 0 && planned.ready as usize >= quorum(voters);
    let progressing = plan.next.is_some()
        || matches!(
            planned.phase,
            Phase::Bootstrapping
                | Phase::Scaling
                | Phase::Replacing
                | Phase::Upgrading
                | Phase::Maintenance
        );
    let degraded = matches!(planned.phase, Phase::Degraded | Phase::Unavailable);
    let phase = phase_name(planned.phase);
    let condition = |type_: &str, on: bool, reason: &str, message: String| {
        condition(previous, generation, now, type_, on, reason, &message)
    };
    let conditions = vec![
        condition(
            "Available",
            available,
            if available {
                "QuorumHealthy"
            } else {
                "QuorumLost"
            },
            format!(
                "{} of {} voting members are healthy",
                planned.ready, planned.voters
            ),
        ),
        condition(
            "Progressing",
            progressing,
            if progressing { phase } else { "Reconciled" },
            planned.message.clone(),
        ),
        condition(
            "Degraded",
            degraded,
            match (degraded, no_space) {
                (true, true) => "NoSpace",
                (true, false) => phase,
                (false, _) => "AsExpected",
            },
            if degraded {
                planned.message.clone()
            } else {
                String::new()
            },
        ),
    ];
    EtcdClusterStatus {
        observed_generation: generation,
        phase: Some(phase.to_owned()),
        conditions,
        ready_members: i32::try_from(planned.ready).unwrap_or(i32::MAX),
        member_summary: Some(format!("{}/{}", planned.ready, desired.replicas)),
        cluster_id: view.and_then(|v| v.cluster_id).map(|id| format!("{id:x}")),
        leader,
        current_version,
        members,
        maintenance: previous.and_then(|p| p.maintenance.clone()),
        backup: previous.and_then(|p| p.backup.clone()),
        tls: previous.and_then(|p| p.tls.clone()),
        auth: previous.and_then(|p| p.auth.clone()),
        upgrade: upgrade_status(view, previous),
        corruption_check: previous.and_then(|p| p.corruption_check.clone()),
    }
}

/// `status.upgrade`: the raft index from which the log holds no v2 entries, once known, kept
/// from then on (see [`crate::controller::plan::wal`]). A cluster whose first answer shows every
/// member on 3.6 or later was created so (the operator saw it from its start): its whole log
/// is v3, index 0. Otherwise the index is recorded at the first pass in which every member
/// reports storage version 3.6 or later (etcd sets it once the cluster version is 3.6, after its
/// last v2 entry): the highest raft index any member reports then.
pub fn upgrade_status(
    view: Option<&EtcdView>,
    previous: Option<&EtcdClusterStatus>,
) -> Option<UpgradeStatus> {
    let kept = previous.and_then(|p| p.upgrade.clone());
    if kept.as_ref().is_some_and(|u| u.v3_log_from_index.is_some()) {
        return kept;
    }
    let view = view.filter(|v| !v.members.is_empty())?;
    let at_least_36 = |text: Option<&str>| {
        text.and_then(|t| t.parse::<Version>().ok())
            .is_some_and(|v| (v.major, v.minor) >= (3, 6))
    };
    let statuses: Option<Vec<_>> = view.members.iter().map(|m| m.status.as_ref()).collect();
    let statuses = statuses?;
    let first_answer = previous.is_none_or(|p| p.cluster_id.is_none());
    let index = if first_answer && statuses.iter().all(|s| at_least_36(Some(&s.version))) {
        0
    } else if statuses
        .iter()
        .all(|s| at_least_36(s.storage_version.as_deref()))
    {
        statuses.iter().map(|s| s.raft_index).max().unwrap_or(0)
    } else {
        return kept;
    };
    Some(UpgradeStatus {
        v3_log_from_index: Some(index),
    })
}

/// The recorded `status.upgrade.v3LogFromIndex`, for the planner.
pub fn v3_log_from_index(status: Option<&EtcdClusterStatus>) -> Option<u64> {
    status?.upgrade.as_ref()?.v3_log_from_index
}

/// When the last snapshot recorded in `status` finished, if one is recorded with a readable
/// time: the planner's memory of the backup schedule.
pub fn last_snapshot_time(status: Option<&EtcdClusterStatus>) -> Option<std::time::SystemTime> {
    let time = &status?.backup.as_ref()?.last_snapshot.as_ref()?.time;
    let ts: k8s_openapi::jiff::Timestamp = time.parse().ok()?;
    Some(std::time::SystemTime::from(ts))
}

/// Records in `status` why `spec.backup` is not run at all (nothing is attempted, so no
/// back-off).
pub fn record_backup_error(status: &mut EtcdClusterStatus, error: &str) {
    status
        .backup
        .get_or_insert_with(BackupStatus::default)
        .last_error = Some(error.to_owned());
}

/// Records in `status` that a snapshot attempt failed at `now`, and why: one more consecutive
/// failure, and the next attempt after the back-off ([`backoff()`]).
pub fn record_backup_failure(status: &mut EtcdClusterStatus, error: &str, now: SystemTime) {
    let b = status.backup.get_or_insert_with(BackupStatus::default);
    b.last_error = Some(error.to_owned());
    b.consecutive_failures = b.consecutive_failures.saturating_add(1);
    let wait = backoff(u32::try_from(b.consecutive_failures).unwrap_or(u32::MAX));
    b.next_attempt = Some(rfc3339(now + wait));
}

/// `t` as RFC 3339, UTC, whole seconds rounded up (a retry is never planned early).
fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0));
    k8s_openapi::jiff::Timestamp::from_second(i64::try_from(secs).unwrap_or(i64::MAX))
        .map_or_else(|_| String::new(), |ts| ts.to_string())
}

/// When the next snapshot attempt may start after recorded failures (`status.backup.nextAttempt`).
pub fn snapshot_retry_at(status: Option<&EtcdClusterStatus>) -> Option<SystemTime> {
    let b = status?.backup.as_ref()?;
    if b.consecutive_failures == 0 {
        return None;
    }
    let ts: k8s_openapi::jiff::Timestamp = b.next_attempt.as_deref()?.parse().ok()?;
    Some(SystemTime::from(ts))
}

/// The `Degraded` reason of a backup schedule that fails or cannot run.
pub const BACKUP_FAILING: &str = "BackupFailing";

/// Marks the `Degraded` condition (not the phase: the members are fine) when the backups fail
/// or cannot run (`status.backup.lastError` set), unless the cluster is degraded for another
/// reason already. The transition time is the previous one while it stays so.
pub fn mark_backup_failing(
    status: &mut EtcdClusterStatus,
    previous: Option<&EtcdClusterStatus>,
    now: &str,
) {
    let Some(why) = status.backup.as_ref().and_then(|b| b.last_error.clone()) else {
        return;
    };
    let was = previous
        .and_then(|p| p.conditions.iter().find(|c| c.type_ == "Degraded"))
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.clone());
    for c in &mut status.conditions {
        if c.type_ == "Degraded" && c.status != "True" {
            c.status = "True".to_owned();
            c.reason = BACKUP_FAILING.to_owned();
            c.message = format!("backups: {why}");
            c.last_transition_time = Some(was.clone().unwrap_or_else(|| now.to_owned()));
        }
    }
}

/// Marks `status` Degraded (phase and condition, reason `reason`) with `message`: a step that
/// cannot succeed until a person acts, such as a restore from a missing snapshot.
pub fn mark_failed(status: &mut EtcdClusterStatus, reason: &str, message: &str, now: &str) {
    status.phase = Some(phase_name(Phase::Degraded).to_owned());
    for c in &mut status.conditions {
        if c.type_ == "Degraded" {
            if c.status != "True" {
                c.last_transition_time = Some(now.to_owned());
            }
            c.status = "True".to_owned();
            c.reason = reason.to_owned();
            c.message = message.to_owned();
        }
    }
}

/// Fills in [`EtcdMember::defragmented_at`](super::plan::EtcdMember::defragmented_at) from
/// the `lastDefragmentation` records of the status the operator wrote before (matched by member
/// name): the planner's memory of what it defragmented.
pub fn mark_defragmented(membership: &mut Membership, previous: Option<&EtcdClusterStatus>) {
    let Some(previous) = previous else {
        return;
    };
    for m in &mut membership.members {
        m.defragmented_at = previous
            .members
            .iter()
            .find(|p| !m.name.is_empty() && p.name == m.name)
            .and_then(|p| p.last_defragmentation.as_ref())
            .map(|d| d.revision);
    }
}

/// Records in `status` what a maintenance step did, at `now`: a member's
/// `lastDefragmentation`, or the cluster's `maintenance.lastCompaction` /
/// `lastAlarmDisarmed`.
pub fn record_maintenance(status: &mut EtcdClusterStatus, done: &Maintained, now: &str) {
    match done {
        Maintained::Compacted { revision } => {
            status
                .maintenance
                .get_or_insert_with(MaintenanceStatus::default)
                .last_compaction = Some(CompactionRecord {
                time: now.to_owned(),
                revision: *revision,
            });
        }
        Maintained::Defragmented {
            member,
            db_size_before,
            db_size_after,
            revision,
        } => {
            if let Some(m) = status.members.iter_mut().find(|m| &m.name == member) {
                m.last_defragmentation = Some(DefragmentationRecord {
                    time: now.to_owned(),
                    db_size_before: *db_size_before,
                    db_size_after: db_size_after.unwrap_or(0),
                    revision: *revision,
                });
            }
        }
        Maintained::Snapshotted {
            member,
            cluster_id,
            taken,
        } => {
            let size = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            let stored = &taken.stored;
            let before = status.backup.as_ref();
            let sequence = before
                .and_then(|b| b.last_snapshot.as_ref())
                .map_or(0, |s| s.sequence)
                .saturating_add(1);
            let last_verification = before.and_then(|b| b.last_verification.clone());
            status.backup = Some(BackupStatus {
                last_snapshot: Some(SnapshotRecord {
                    time: now.to_owned(),
                    location: taken.location.clone(),
                    name: stored.name.clone(),
                    size: size(stored.size),
                    stored_size: Some(size(stored.stored_size)),
                    revision: taken.revision,
                    sha256: stored.sha256.clone(),
                    member: member.clone(),
                    etcd_version: taken.etcd_version.clone().unwrap_or_default(),
                    cluster_id: cluster_id.clone(),
                    duration_ms: i64::try_from(taken.duration.as_millis()).unwrap_or(i64::MAX),
                    key_id: stored.key_id.clone(),
                    sequence,
                    verification: None,
                }),
                last_error: taken.retention_error.clone(),
                consecutive_failures: 0,
                next_attempt: None,
                last_verification,
            });
        }
        Maintained::Verified(verified) => {
            super::backup::verify::record_verification(status, verified, now);
        }
        Maintained::Disarmed { member, alarm } => {
            status
                .maintenance
                .get_or_insert_with(MaintenanceStatus::default)
                .last_alarm_disarmed = Some(AlarmRecord {
                time: now.to_owned(),
                alarm: alarm.to_string(),
                member: member.clone(),
            });
        }
    }
}

/// Whether two statuses differ in anything but condition transition times (used to write a
/// status only when it changed).
pub fn same_status(a: &EtcdClusterStatus, b: &EtcdClusterStatus) -> bool {
    let strip = |s: &EtcdClusterStatus| {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_transition_time = None;
        }
        s
    };
    strip(a) == strip(b)
}

/// The status of a cluster whose spec the operator cannot act on (possible only when the
/// admission rules were bypassed): phase Degraded, reason `InvalidSpec`; the observed members
/// are kept.
pub fn invalid_status(
    previous: Option<&EtcdClusterStatus>,
    generation: Option<i64>,
    message: &str,
    now: &str,
) -> EtcdClusterStatus {
    blocked_status(previous, generation, "InvalidSpec", message, now)
}

/// The status of a cluster the operator will not act on until a person changes something
/// (`reason` says what: `InvalidSpec`, `IntentUnreadable`): `Degraded` with the message,
/// not `Progressing`, `Available` as it was.
pub fn blocked_status(
    previous: Option<&EtcdClusterStatus>,
    generation: Option<i64>,
    reason: &str,
    message: &str,
    now: &str,
) -> EtcdClusterStatus {
    let mut status = previous.cloned().unwrap_or_default();
    let old = |t: &str| previous.and_then(|p| p.conditions.iter().find(|c| c.type_ == t).cloned());
    let condition = |type_: &str, on: bool, reason: &str, message: &str| {
        condition(previous, generation, now, type_, on, reason, message)
    };
    let available = old("Available").is_some_and(|c| c.status == "True");
    status.conditions = vec![
        old("Available").unwrap_or_else(|| {
            condition(
                "Available",
                available,
                "QuorumLost",
                "no member answered yet",
            )
        }),
        condition("Progressing", false, reason, message),
        condition("Degraded", true, reason, message),
    ];
    status.phase = Some(phase_name(Phase::Degraded).to_owned());
    status.observed_generation = generation;
    status
}

//! One function per step. Each is idempotent: a step that fails leaves things as they were (or
//! as the recorded intent describes) and the next pass plans it again.

use crate::etcd::maintenance::AlarmType;
use crate::etcd::{Client, ServerError};
use crate::snapshot_store::{Destination, SnapshotStore};

use super::{
    ActError, ETCD_CALL_TIMEOUT, MAINTENANCE_CALL_TIMEOUT, Maintained, MemberRuntime, Outcome,
    added_id, call, etcd_err, initial_cluster, listed, long_call, rt_err,
};
use crate::controller::backup::take::{Source, take};
use crate::controller::backup::{RestoreError, RestoreSnapshot, resolve_object};
use crate::controller::crash::CrashPoint;
use crate::controller::observe::EtcdView;
use crate::controller::plan::{Alarm, Desired, Intent, RestoreSource, Step, Version};

/// Creates and starts the seed member.
pub(super) async fn start_seed<R: MemberRuntime>(
    step: &Step,
    runtime: &mut R,
    ordinal: u32,
    version: Version,
) -> Result<Outcome, ActError> {
    runtime
        .start_seed(ordinal, version)
        .await
        .map_err(rt_err(step))?;
    Ok(Outcome::Done)
}

/// Records the intent, adds the learner (finding it in the member list when the answer was
/// lost), and records its member ID.
pub(super) async fn add_learner<R: MemberRuntime>(
    step: &Step,
    runtime: &mut R,
    client: &Client,
    ordinal: u32,
    peer_url: &str,
) -> Result<Outcome, ActError> {
    let mut intent = step.intent();
    runtime
        .record_intent(intent.as_ref())
        .await
        .map_err(rt_err(step))?;
    runtime
        .prepare_member(ordinal)
        .await
        .map_err(rt_err(step))?;
    CrashPoint::AfterAddIntent.check();
    let added = match call(step, client.member_add([peer_url], true)).await? {
        Ok(added) => added.member.id,
        Err(e) => {
            // The answer was lost: the member list tells whether the learner was added.
            let found = if e.is_outcome_unknown() {
                added_id(client, peer_url).await
            } else {
                None
            };
            match found {
                Some(id) => id,
                None => {
                    let server = e.server_error();
                    if !e.is_outcome_unknown() {
                        // Certainly not applied: the intent is obsolete.
                        runtime.record_intent(None).await.map_err(rt_err(step))?;
                    }
                    return match server {
                        Some(
                            ServerError::TooManyLearners
                            | ServerError::Unhealthy
                            | ServerError::MemberNotEnoughStarted,
                        ) => Ok(Outcome::NotYet(format!("adding member {ordinal}: {e}"))),
                        _ => Err(etcd_err(step)(e)),
                    };
                }
            }
        }
    };
    CrashPoint::AfterMemberAdd.check();
    if let Some(Intent::AddLearner { member_id, .. }) = intent.as_mut() {
        *member_id = Some(added);
    }
    runtime
        .record_intent(intent.as_ref())
        .await
        .map_err(rt_err(step))?;
    CrashPoint::AfterLearnerRecorded.check();
    Ok(Outcome::Done)
}

/// Starts an added member with the initial cluster etcd's view gives.
pub(super) async fn start_member<R: MemberRuntime>(
    step: &Step,
    runtime: &mut R,
    desired: &Desired,
    view: Option<&EtcdView>,
    ordinal: u32,
    member_id: u64,
    version: Version,
) -> Result<Outcome, ActError> {
    let pairs = view
        .map(|v| initial_cluster(desired, v, member_id))
        .unwrap_or_default();
    let joining = view
        .and_then(|v| v.member(member_id))
        .is_some_and(|m| m.member.is_learner);
    runtime
        .start_member(ordinal, version, &pairs)
        .await
        .map_err(rt_err(step))?;
    if joining {
        CrashPoint::AfterStartBeforePromote.check();
    }
    Ok(Outcome::Done)
}

/// Promotes a learner; etcd may ask to wait until it caught up.
pub(super) async fn promote_learner(
    step: &Step,
    client: &Client,
    member_id: u64,
) -> Result<Outcome, ActError> {
    match call(step, client.member_promote(member_id)).await? {
        Ok(_) => {
            CrashPoint::AfterPromote.check();
            Ok(Outcome::Done)
        }
        Err(e) => match e.server_error() {
            Some(
                ServerError::LearnerNotReady
                | ServerError::Unhealthy
                | ServerError::MemberNotEnoughStarted,
            ) => Ok(Outcome::NotYet(format!("promoting {member_id:x}: {e}"))),
            // Promoted by a call whose answer was lost.
            Some(ServerError::MemberNotLearner) => Ok(Outcome::Done),
            _ => Err(etcd_err(step)(e)),
        },
    }
}

/// Moves leadership to `to`.
pub(super) async fn move_leader(
    step: &Step,
    client: &Client,
    to: u64,
) -> Result<Outcome, ActError> {
    call(step, client.move_leader(to))
        .await?
        .map_err(etcd_err(step))?;
    CrashPoint::AfterMoveLeader.check();
    Ok(Outcome::Done)
}

/// Records the intent and removes the member (a lost answer is settled by the member list).
pub(super) async fn remove_member<R: MemberRuntime>(
    step: &Step,
    runtime: &mut R,
    client: &Client,
    member_id: u64,
) -> Result<Outcome, ActError> {
    runtime
        .record_intent(step.intent().as_ref())
        .await
        .map_err(rt_err(step))?;
    CrashPoint::AfterRemoveIntent.check();
    match call(step, client.member_remove(member_id)).await? {
        Ok(_) => {}
        Err(e) if e.server_error() == Some(ServerError::MemberNotFound) => {}
        // The answer was lost (often because the member that served the call was the one
        // removed, and stopped): the member list tells whether it was applied.
        Err(e)
            if e.is_outcome_unknown()
                && listed(client, |m| m.id == member_id).await == Some(false) => {}
        Err(e) => {
            return match e.server_error() {
                Some(ServerError::Unhealthy | ServerError::MemberNotEnoughStarted) => {
                    runtime.record_intent(None).await.map_err(rt_err(step))?;
                    Ok(Outcome::NotYet(format!("removing {member_id:x}: {e}")))
                }
                _ => Err(etcd_err(step)(e)),
            };
        }
    }
    CrashPoint::AfterMemberRemove.check();
    Ok(Outcome::Done)
}

/// Stops a runtime member and deletes its data.
pub(super) async fn delete_member<R: MemberRuntime>(
    step: &Step,
    runtime: &mut R,
    ordinal: u32,
) -> Result<Outcome, ActError> {
    runtime.delete_member(ordinal).await.map_err(rt_err(step))?;
    CrashPoint::AfterDeleteMember.check();
    Ok(Outcome::Done)
}

/// Starts again a stopped member that has data.
pub(super) async fn start_stopped<R: MemberRuntime>(
    step: &Step,
    runtime: &mut R,
    desired: &Desired,
    ordinal: u32,
    version: Version,
) -> Result<Outcome, ActError> {
    // The member has data: etcd ignores the initial cluster, which names only itself.
    let own = [(desired.member_name(ordinal), desired.peer_url(ordinal))];
    runtime
        .start_member(ordinal, version, &own)
        .await
        .map_err(rt_err(step))?;
    Ok(Outcome::Done)
}

/// Stops a member and starts it on the desired version and configuration.
pub(super) async fn restart_member<R: MemberRuntime>(
    step: &Step,
    runtime: &mut R,
    ordinal: u32,
    version: Version,
) -> Result<Outcome, ActError> {
    runtime
        .stop_member(ordinal, version)
        .await
        .map_err(rt_err(step))?;
    CrashPoint::MidUpgrade.check();
    runtime
        .start_again(ordinal, version)
        .await
        .map_err(rt_err(step))?;
    CrashPoint::AfterRestart.check();
    Ok(Outcome::Done)
}

/// Clears the recorded intent.
pub(super) async fn clear_intent<R: MemberRuntime>(
    step: &Step,
    runtime: &mut R,
) -> Result<Outcome, ActError> {
    runtime.record_intent(None).await.map_err(rt_err(step))?;
    Ok(Outcome::Done)
}

/// Compacts the history to `revision` (already compacted to it or beyond: nothing to do).
pub(super) async fn compact(
    step: &Step,
    client: &Client,
    revision: i64,
) -> Result<Outcome, ActError> {
    let done = Outcome::Maintained(Maintained::Compacted { revision });
    match long_call(step, client.compact(revision, true)).await? {
        Ok(_) => {
            CrashPoint::AfterCompact.check();
            Ok(done)
        }
        Err(e) if e.server_error() == Some(ServerError::Compacted) => Ok(done),
        Err(e) if e.server_error() == Some(ServerError::FutureRev) => Ok(Outcome::NotYet(format!(
            "compacting to revision {revision}: {e}"
        ))),
        Err(e) => Err(etcd_err(step)(e)),
    }
}

/// Defragments one member and reads its size after.
pub(super) async fn defragment(
    step: &Step,
    client: &Client,
    view: Option<&EtcdView>,
    member_id: u64,
) -> Result<Outcome, ActError> {
    let member = view.and_then(|v| v.member(member_id));
    let endpoint = member
        .and_then(|m| m.endpoint.clone())
        .ok_or_else(|| ActError::NoEndpoint(step.to_string()))?;
    let name = member.map_or_else(String::new, |m| m.member.name.clone());
    let before = member
        .and_then(|m| m.status.as_ref())
        .map_or(0, |s| s.db_size);
    long_call(step, client.defragment(&endpoint))
        .await?
        .map_err(etcd_err(step))?;
    CrashPoint::AfterDefragment.check();
    let after = tokio::time::timeout(ETCD_CALL_TIMEOUT, client.status(&endpoint))
        .await
        .ok()
        .and_then(Result::ok)
        .filter(|s| s.member_id == member_id);
    let observed_revision = view.map_or(0, |v| v.revision);
    Ok(Outcome::Maintained(Maintained::Defragmented {
        member: name,
        db_size_before: before,
        db_size_after: after.as_ref().map(|s| s.db_size),
        revision: after.map_or(observed_revision, |s| s.revision.max(observed_revision)),
    }))
}

/// Disarms an alarm (disarming one no longer raised answers with nothing disarmed).
pub(super) async fn disarm_alarm(
    step: &Step,
    client: &Client,
    view: Option<&EtcdView>,
    member_id: u64,
    alarm: Alarm,
) -> Result<Outcome, ActError> {
    let wire = match alarm {
        Alarm::NoSpace => AlarmType::NoSpace,
        Alarm::Corrupt => AlarmType::Corrupt,
    };
    call(step, client.alarm_disarm(member_id, wire))
        .await?
        .map_err(etcd_err(step))?;
    CrashPoint::AfterDisarm.check();
    let member = view
        .and_then(|v| v.member(member_id))
        .map_or_else(|| format!("{member_id:x}"), |m| m.member.name.clone());
    Ok(Outcome::Maintained(Maintained::Disarmed { member, alarm }))
}

/// Takes a snapshot from one member into the schedule's store and applies the retention.
pub(super) async fn snapshot(
    step: &Step,
    client: &Client,
    desired: &Desired,
    view: Option<&EtcdView>,
    member_id: u64,
    store: &SnapshotStore,
) -> Result<Outcome, ActError> {
    let backup = desired
        .backup
        .as_ref()
        .ok_or_else(|| ActError::NoBackup(step.to_string()))?;
    let member = view.and_then(|v| v.member(member_id));
    let endpoint = member
        .and_then(|m| m.endpoint.clone())
        .ok_or_else(|| ActError::NoEndpoint(step.to_string()))?;
    let status = member.and_then(|m| m.status.as_ref());
    let source = Source {
        endpoint: &endpoint,
        cluster: &desired.cluster,
        revision: status.map_or(0, |s| s.revision),
        version: status.map(|s| s.version.as_str()),
    };
    let local_dir = match &backup.target.destination {
        Destination::Local { path } => Some(path.as_path()),
        _ => None,
    };
    let taken = take(
        store,
        client,
        source,
        backup.keep,
        MAINTENANCE_CALL_TIMEOUT,
        local_dir,
    )
    .await
    .map_err(|source| ActError::Backup {
        step: step.to_string(),
        source,
    })?;
    CrashPoint::AfterSnapshot.check();
    Ok(Outcome::Maintained(Maintained::Snapshotted {
        member: member.map_or_else(|| format!("{member_id:x}"), |m| m.member.name.clone()),
        cluster_id: view
            .and_then(|v| v.cluster_id)
            .map_or_else(String::new, |id| format!("{id:x}")),
        taken: Box::new(taken),
    }))
}

/// Creates every member of a new cluster from a snapshot: a file, or an object of the opened
/// `store` (the named one, or the newest of the cluster's snapshots; resolved by one listing
/// before the runtime creates anything).
pub(super) async fn restore_cluster<R: MemberRuntime>(
    step: &Step,
    runtime: &mut R,
    members: u32,
    version: Version,
    source: &RestoreSource,
    store: Option<&SnapshotStore>,
) -> Result<Outcome, ActError> {
    let restore_err = |source| ActError::Restore {
        step: step.to_string(),
        source: Box::new(source),
    };
    let done = match source {
        RestoreSource::File(path) => {
            runtime
                .restore_cluster(members, version, RestoreSnapshot::File(path))
                .await
        }
        RestoreSource::Store {
            target,
            object,
            cluster,
        } => {
            let store = store.ok_or_else(|| restore_err(RestoreError::NoStore))?;
            let object = resolve_object(store, object.as_deref(), cluster)
                .await
                .map_err(restore_err)?;
            let snapshot = RestoreSnapshot::Store {
                store,
                target,
                object: &object,
            };
            runtime.restore_cluster(members, version, snapshot).await
        }
    }
    .map_err(rt_err(step))?;
    if done {
        CrashPoint::AfterRestore.check();
    }
    Ok(if done {
        Outcome::Done
    } else {
        Outcome::NotYet("the members are being restored".to_owned())
    })
}

/// How many lease grant/revoke pairs [`advance_raft_log`] keeps in flight.
const ADVANCE_IN_FLIGHT: usize = 16;

/// The TTL of the leases [`advance_raft_log`] grants: one whose revoke failed expires by itself.
const ADVANCE_LEASE_TTL_SECS: i64 = 30;

/// Appends about `entries` raft entries that change no key: lease grants, each followed by its
/// revoke (two entries per pair; no revision, no watch event).
pub(super) async fn advance_raft_log(
    step: &Step,
    client: &Client,
    entries: u64,
) -> Result<Outcome, ActError> {
    use futures::stream::{self, StreamExt, TryStreamExt};
    let pairs = entries.div_ceil(2);
    let pair = |_| async move {
        let lease = client.lease_grant(ADVANCE_LEASE_TTL_SECS, None).await?;
        client.lease_revoke(lease.id).await.map(|_| ())
    };
    let all = stream::iter(0..pairs)
        .map(pair)
        .buffer_unordered(ADVANCE_IN_FLIGHT)
        .try_collect::<()>();
    long_call(step, all).await?.map_err(etcd_err(step))?;
    Ok(Outcome::Done)
}

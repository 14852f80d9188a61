//! [`MemberRuntime::restore_cluster`](crate::controller::act::MemberRuntime::restore_cluster)
//! in Kubernetes, over several passes: every member's PVC (annotated with the object) and
//! Service, then one restore Pod per member ([`super::restore::restore_pod`]); "not yet" while
//! any runs; once all succeeded, every member Pod (its data restored, so etcd ignores the initial
//! cluster), the PVCs' annotation dropped, the restore Pods deleted. A failed restore Pod fails
//! the step with its termination message and starts nothing; it stays, so the failure is
//! reported again, until someone deletes it (the next pass then creates it anew).
//!
//! Idempotent across restarts: the restore Pods are found by label, and the object is the one
//! they (or the PVCs) name, whatever the store's newest snapshot became since.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{ListParams, Patch, PostParams};

use crate::controller::backup::{BackupTarget, RestoreSnapshot};
use crate::controller::plan::Version;

use super::KubeError;
use super::members::{KubeMembers, delete_if_present, kube_err};
use super::objects::{InitialState, member_pvc};
use super::restore::{
    ANNOTATION_RESTORE_OBJECT, RESTORE_COMPONENT, RestoreProgress, restore_object, restore_pod,
    restore_pod_name, restore_progress,
};

/// What a restore is refused with when the operator does not know its own image.
pub(super) const NO_OPERATOR_IMAGE: &str = "spec.bootstrap.restore.destination needs the operator's \
image for the restore Pods' fetch container: run the operator with --operator-image (the chart \
passes its own image); nothing is created";

/// The label selector (as a string) of the cluster's restore Pods.
fn restore_selector(members: &KubeMembers) -> String {
    members
        .info
        .labels(RESTORE_COMPONENT)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// One pass of the restore of members `0..count` on `version` from `snapshot`; `Ok(true)` once
/// every member Pod is created.
pub(super) async fn restore_cluster(
    members: &KubeMembers,
    count: u32,
    version: Version,
    snapshot: RestoreSnapshot<'_>,
) -> Result<bool, KubeError> {
    let RestoreSnapshot::Store { target, object, .. } = snapshot else {
        return Err(KubeError::Unsupported(
            crate::controller::validate::RESTORE_UNSUPPORTED.to_owned(),
        ));
    };
    let Some(image) = members.operator_image.as_deref() else {
        return Err(KubeError::Unsupported(NO_OPERATOR_IMAGE.to_owned()));
    };
    let existing = members
        .pods
        .list(&ListParams::default().labels(&restore_selector(members)))
        .await
        .map_err(kube_err("listing restore Pods"))?
        .items;
    let pvcs = members
        .pvcs
        .list(&ListParams::default().labels(&members.info.member_selector_string()))
        .await
        .map_err(kube_err("listing member PVCs"))?
        .items;
    // The object a previous pass chose, else the one resolved now.
    let object = existing
        .iter()
        .map(|p| &p.metadata)
        .chain(pvcs.iter().map(|c| &c.metadata))
        .find_map(restore_object)
        .unwrap_or(object)
        .to_owned();
    let mut created = false;
    for ordinal in 0..count {
        apply_restoring_pvc(members, ordinal, &object).await?;
        members.ensure_service(ordinal).await?;
        let name = restore_pod_name(&members.info, ordinal);
        if existing
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some(name.as_str()))
        {
            continue;
        }
        create_restore_pod(members, ordinal, count, version, target, &object, image).await?;
        created = true;
    }
    if created {
        return Ok(false);
    }
    match restore_progress(&members.info, count, &existing) {
        RestoreProgress::Running => Ok(false),
        RestoreProgress::Failed { pod, message } => Err(KubeError::RestoreFailed { pod, message }),
        RestoreProgress::Succeeded => {
            finish(members, count, version).await?;
            Ok(true)
        }
    }
}

/// Every member Pod, then the PVCs without the restore's annotation, then the restore Pods
/// deleted.
async fn finish(members: &KubeMembers, count: u32, version: Version) -> Result<(), KubeError> {
    let initial: Vec<(String, String)> = (0..count)
        .map(|o| (members.info.member_name(o), members.info.peer_url(o)))
        .collect();
    for ordinal in 0..count {
        members
            .create_pod(ordinal, version, &InitialState::Existing(initial.clone()))
            .await?;
    }
    for ordinal in 0..count {
        // The PVC applied as a member's drops the annotation (the same field manager).
        members.ensure_pvc(ordinal).await?;
        let name = restore_pod_name(&members.info, ordinal);
        delete_if_present(&members.pods, &name, "restore Pod").await?;
    }
    Ok(())
}

/// Applies member `ordinal`'s PVC, annotated with the object restored into it.
async fn apply_restoring_pvc(
    members: &KubeMembers,
    ordinal: u32,
    object: &str,
) -> Result<(), KubeError> {
    let Some(mut pvc): Option<PersistentVolumeClaim> = member_pvc(&members.info, ordinal) else {
        return Err(ephemeral());
    };
    pvc.metadata
        .annotations
        .get_or_insert_default()
        .insert(ANNOTATION_RESTORE_OBJECT.to_owned(), object.to_owned());
    let name = members.info.member_name(ordinal);
    members
        .pvcs
        .patch(&name, &KubeMembers::apply_params(), &Patch::Apply(&pvc))
        .await
        .map_err(kube_err(format!("applying PVC {name}")))?;
    Ok(())
}

fn ephemeral() -> KubeError {
    KubeError::Unsupported(
        "a restore needs persistent storage and an object store: ephemeral members have no \
         volume to restore into; nothing is created"
            .to_owned(),
    )
}

/// Creates member `ordinal`'s restore Pod (one created meanwhile is fine).
async fn create_restore_pod(
    members: &KubeMembers,
    ordinal: u32,
    count: u32,
    version: Version,
    target: &BackupTarget,
    object: &str,
    image: &str,
) -> Result<(), KubeError> {
    let pod: Pod = restore_pod(
        &members.info,
        ordinal,
        count,
        version,
        target,
        object,
        image,
    )
    .ok_or_else(ephemeral)?;
    let name = restore_pod_name(&members.info, ordinal);
    match members.pods.create(&PostParams::default(), &pod).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(kube_err(format!("creating Pod {name}"))(e)),
    }
}

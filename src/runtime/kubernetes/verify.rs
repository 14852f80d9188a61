//! The verification of a snapshot in Kubernetes, over several passes: the step creates the
//! cluster's verification Pod ([`verify_pod`], pure), answers "not yet" while it runs, reads
//! the result back with [`verification_of`] (pure) and deletes the Pod. A Pod left for another
//! object (an earlier snapshot) is deleted first. Planned only when the operator knows its own
//! image (`--operator-image`): the Pod's fetch container runs it.
//!
//! The Pod is the restore Pod of [`super::restore`] with the fetch init container unchanged
//! (the operator image's `etcd-operator snapshot fetch`: decrypted, SHA-256 trailer checked,
//! credentials by `secretKeyRef` only) writing into an `emptyDir`, then the etcd image running
//! [`verify_command`]: `etcdutl snapshot restore` into the `emptyDir`, a throwaway `etcd` on
//! loopback, `etcdctl` until it serves, and one termination message line
//! `revision=<n> keys=<n> sha256=<hex>` (the trailer of the fetched file: the SHA-256 the fetch
//! checked the data against). [`verification_of`] reads the Pod's phase and message and checks
//! them against the record ([`check`]). `activeDeadlineSeconds` bounds a Pod that runs; one
//! that never starts is cut by its age ([`VERIFY_TIMEOUT`]).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, Pod, Volume};
use kube::api::PostParams;

use crate::controller::backup::BackupTarget;
use crate::controller::backup::verify::{
    Served, VERIFY_TIMEOUT, Verified, VerifyError, VerifyRequest, check,
};
use crate::controller::plan::{UnverifiedSnapshot, Version};

use super::KubeError;
use super::members::{KubeMembers, delete_if_present, kube_err};
use super::objects::{Blueprint, DATA_MOUNT};
use super::restore::{SNAPSHOT_FILE, failure_message, restore_pod};

/// The component label of verification Pods.
pub const VERIFY_COMPONENT: &str = "verify";
/// Annotation on a verification Pod: the object it verifies.
pub const ANNOTATION_VERIFY_OBJECT: &str = "etcd.operator.dev/verify-object";

/// The name of the cluster's verification Pod.
pub fn verify_pod_name(info: &Blueprint) -> String {
    format!("{}-verify", info.name)
}

/// The shell command of the verification container on `version`: restore (etcd 3.4 has no
/// etcdutl: its etcdctl restores), serve, report.
pub fn verify_command(version: Version) -> Vec<String> {
    let restore = if (version.major, version.minor) < (3, 5) {
        "etcdctl"
    } else {
        "etcdutl"
    };
    let data = format!("{DATA_MOUNT}/verify");
    let log = format!("{DATA_MOUNT}/etcd.log");
    let peer = "http://127.0.0.1:2380";
    let client = "http://127.0.0.1:2379";
    let script = format!(
        "sha=$(tail -c 32 {SNAPSHOT_FILE} | od -An -tx1 | tr -d ' \\n'); \
         rm -rf {data}; \
         {restore} snapshot restore {SNAPSHOT_FILE} --name=verify --initial-cluster=verify={peer} \
         --initial-advertise-peer-urls={peer} --data-dir={data}; \
         rm -f {SNAPSHOT_FILE}; \
         etcd --name=verify --data-dir={data} --listen-client-urls={client} \
         --advertise-client-urls={client} --listen-peer-urls={peer} \
         --initial-advertise-peer-urls={peer} --initial-cluster=verify={peer} >{log} 2>&1 & \
         pid=$!; i=0; \
         until etcdctl --endpoints={client} endpoint status >/dev/null 2>&1; do \
           i=$((i+1)); if [ $i -ge 100 ] || ! kill -0 $pid 2>/dev/null; then \
             echo \"the throwaway etcd did not serve: $(tail -n 3 {log})\" >/dev/termination-log; \
             kill $pid 2>/dev/null; exit 1; fi; sleep 1; done; \
         out=$(etcdctl --endpoints={client} get '' --from-key --count-only -w fields); \
         rev=$(echo \"$out\" | sed -n 's/^\"Revision\" : //p'); \
         keys=$(echo \"$out\" | sed -n 's/^\"Count\" : //p'); \
         kill $pid; wait $pid || true; \
         echo \"revision=$rev keys=$keys sha256=$sha\" >/dev/termination-log"
    );
    vec!["/bin/sh".to_owned(), "-ec".to_owned(), script]
}

/// The verification Pod of `snapshot` in `target`, on `version`, fetched with
/// `operator_image`; `None` for a local folder (nothing to fetch from).
pub fn verify_pod(
    info: &Blueprint,
    version: Version,
    target: &BackupTarget,
    snapshot: &UnverifiedSnapshot,
    operator_image: &str,
) -> Option<Pod> {
    // The restore Pod of a 1-member cluster, on an emptyDir instead of a member's PVC.
    let mut blueprint = info.clone();
    blueprint.template.ephemeral = false;
    let mut pod = restore_pod(
        &blueprint,
        0,
        1,
        version,
        target,
        &snapshot.object,
        operator_image,
    )?;
    let spec = pod.spec.as_mut()?;
    spec.volumes = Some(vec![Volume {
        name: "data".to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }]);
    spec.active_deadline_seconds = i64::try_from(VERIFY_TIMEOUT.as_secs()).ok();
    for c in &mut spec.containers {
        c.name = "verify".to_owned();
        c.command = Some(verify_command(version));
    }
    pod.metadata.name = Some(verify_pod_name(info));
    pod.metadata.labels = Some(info.labels(VERIFY_COMPONENT));
    pod.metadata.annotations = Some(BTreeMap::from([(
        ANNOTATION_VERIFY_OBJECT.to_owned(),
        snapshot.object.clone(),
    )]));
    Some(pod)
}

/// The `revision=<n> keys=<n> sha256=<hex>` line of a verification Pod that succeeded.
pub fn parse_report(message: &str) -> Option<(Served, String)> {
    let line = message.lines().rev().find(|l| l.starts_with("revision="))?;
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(k)?.strip_prefix('='))
    };
    let revision = field("revision")?.parse().ok()?;
    let keys = field("keys").and_then(|k| k.parse().ok());
    let sha = field("sha256").unwrap_or_default().to_owned();
    Some((Served { revision, keys }, sha))
}

/// What the verification Pod `pod` of `snapshot` found, once it finished (or ran past
/// [`VERIFY_TIMEOUT`] since `created` at `now`); `None` while it runs.
pub fn verification_of(
    pod: &Pod,
    snapshot: &UnverifiedSnapshot,
    version: Version,
    now: SystemTime,
    created: SystemTime,
) -> Option<Verified> {
    let age = now.duration_since(created).unwrap_or(Duration::ZERO);
    let failed = |e: VerifyError| Some(Verified::failed(snapshot, &e, age));
    let location = snapshot.location.clone();
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Succeeded") => {
            let message = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.iter().find_map(|c| c.state.as_ref()?.terminated.as_ref()))
                .and_then(|t| t.message.clone())
                .unwrap_or_default();
            let Some((served, sha)) = parse_report(&message) else {
                return failed(VerifyError::Serve {
                    location,
                    why: format!("the verification Pod reported {message:?}"),
                });
            };
            Some(match check(snapshot, &sha, served, version) {
                Ok(m) => Verified {
                    object: snapshot.object.clone(),
                    location,
                    result: Ok(m),
                    served: Some(served),
                    duration: age,
                },
                Err(e) => Verified {
                    served: Some(served),
                    ..Verified::failed(snapshot, &e, age)
                },
            })
        }
        Some("Failed") => failed(VerifyError::Serve {
            location,
            why: failure_message(pod),
        }),
        _ if age > VERIFY_TIMEOUT => failed(VerifyError::Timeout {
            location,
            timeout: VERIFY_TIMEOUT,
        }),
        _ => None,
    }
}

/// One pass of the verification of `request`'s snapshot: `Ok(None)` while its Pod runs.
pub(super) async fn verify_snapshot(
    members: &KubeMembers,
    request: VerifyRequest<'_>,
) -> Result<Option<Verified>, KubeError> {
    let snapshot = request.snapshot;
    let name = verify_pod_name(&members.info);
    let refused = |why: &str| {
        let e = VerifyError::Serve {
            location: snapshot.location.clone(),
            why: why.to_owned(),
        };
        Ok(Some(Verified::failed(snapshot, &e, Duration::ZERO)))
    };
    let Some(image) = members.operator_image.as_deref() else {
        return refused("a verification Pod needs the operator's image (--operator-image)");
    };
    let existing = members
        .pods
        .get_opt(&name)
        .await
        .map_err(kube_err(format!("reading Pod {name}")))?;
    let verifies = |p: &Pod| {
        p.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_VERIFY_OBJECT))
            == Some(&snapshot.object)
    };
    match existing {
        Some(pod) if verifies(&pod) => {
            let created = pod
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or_else(SystemTime::now, |t| SystemTime::from(t.0));
            let now = SystemTime::now();
            let found = verification_of(&pod, snapshot, request.version, now, created);
            if found.is_some() {
                delete_if_present(&members.pods, &name, "Pod").await?;
            }
            Ok(found)
        }
        Some(_) => {
            // Left for another snapshot: gone first, created anew by the next pass.
            delete_if_present(&members.pods, &name, "Pod").await?;
            Ok(None)
        }
        None => {
            let info = &members.info;
            let Some(pod) = verify_pod(info, request.version, request.target, snapshot, image)
            else {
                return refused("a local folder cannot be fetched in Kubernetes");
            };
            members
                .pods
                .create(&PostParams::default(), &pod)
                .await
                .map_err(kube_err(format!("creating Pod {name}")))?;
            Ok(None)
        }
    }
}

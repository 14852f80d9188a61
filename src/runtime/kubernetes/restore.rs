//! The restore Pod of one member (pure): before any member starts, it writes the member's data
//! directory from a snapshot in a store, into the member's PVC.
//!
//! An init container running the operator's own image fetches the object
//! (`etcd-operator snapshot fetch`, decrypted and SHA-256 checked) into the PVC, the credentials
//! and key passed as environment variables from the Secrets (`secretKeyRef`, never in the
//! arguments); then a container running the member's etcd image runs `etcdutl snapshot restore`
//! with every member in the initial cluster, and removes the fetched file. The Pod never
//! restarts (`restartPolicy: Never`): a failure is reported by its termination message.
//!
//! The object restored is named on every restore Pod and on every member's PVC
//! ([`ANNOTATION_RESTORE_OBJECT`]) so that a pass after a restart restores the same one; a PVC
//! so annotated without its member Pod is a restore in flight, not a member
//! ([`super::members::runtime_members`]). [`restore_progress`] reads the Pods' phases.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerStatus, EnvVar, EnvVarSource, Pod, SecretKeySelector, VolumeMount,
};

use crate::controller::backup::BackupTarget;
use crate::controller::backup::fetch::{CREDENTIAL_ENV_PREFIX, ENCRYPTION_KEY_ENV, fetch_args};
use crate::controller::backup::target::{
    AZURE_ACCOUNT_KEY, AZURE_ACCOUNT_NAME, AZURE_SAS_TOKEN, ENCRYPTION_KEY,
    GCS_SERVICE_ACCOUNT_JSON, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY, S3_SESSION_TOKEN,
};
use crate::controller::plan::Version;
use crate::snapshot_store::Destination;

use super::objects::{Blueprint, DATA_DIR, DATA_MOUNT, InitialState, member_pod};

/// The component label of restore Pods.
pub const RESTORE_COMPONENT: &str = "restore";
/// Where the fetched snapshot is written (in the PVC, next to the data directory).
pub const SNAPSHOT_FILE: &str = "/var/lib/etcd/restore-snapshot.db";

/// Annotation on restore Pods and on the PVCs being restored: the object restored.
pub const ANNOTATION_RESTORE_OBJECT: &str = "etcd.operator.dev/restore-object";
/// The longest failure message taken from a restore Pod.
pub const MESSAGE_MAX: usize = 500;

/// Where the restore Pods of a cluster are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreProgress {
    /// Some Pod is missing or still running.
    Running,
    /// Every member's Pod succeeded: every member's data is restored.
    Succeeded,
    /// A Pod failed: the first one's name and termination message.
    Failed {
        /// The Pod.
        pod: String,
        /// Its termination message (the fetch's, or etcdutl's last words).
        message: String,
    },
}

/// The object a restore Pod or PVC names, if any.
pub fn restore_object(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<&str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_RESTORE_OBJECT))
        .map(String::as_str)
}

/// The progress of the restore Pods of members `0..members` among `pods`.
pub fn restore_progress(info: &Blueprint, members: u32, pods: &[Pod]) -> RestoreProgress {
    let mut all = true;
    for ordinal in 0..members {
        let name = restore_pod_name(info, ordinal);
        let pod = pods
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name.as_str()));
        match pod.and_then(|p| p.status.as_ref()?.phase.as_deref()) {
            Some("Succeeded") => {}
            Some("Failed") => {
                return RestoreProgress::Failed {
                    message: pod.map_or_else(String::new, failure_message),
                    pod: name,
                };
            }
            _ => all = false,
        }
    }
    if all {
        RestoreProgress::Succeeded
    } else {
        RestoreProgress::Running
    }
}

/// Why a restore Pod failed: the termination message of its failed container (the fetch
/// container first), else the Pod's own message; at most [`MESSAGE_MAX`] bytes of its last
/// lines.
pub fn failure_message(pod: &Pod) -> String {
    let failed = |statuses: Option<&Vec<ContainerStatus>>| {
        statuses?.iter().find_map(|c| {
            let t = c.state.as_ref()?.terminated.as_ref()?;
            // A container that succeeded (the fetch, before etcdutl failed) is not the cause.
            (t.exit_code != 0).then(|| {
                t.message
                    .clone()
                    .filter(|m| !m.trim().is_empty())
                    .unwrap_or_else(|| format!("container {} exited {}", c.name, t.exit_code))
            })
        })
    };
    let status = pod.status.as_ref();
    let message = status
        .and_then(|s| failed(s.init_container_statuses.as_ref()))
        .or_else(|| status.and_then(|s| failed(s.container_statuses.as_ref())))
        .or_else(|| status.and_then(|s| s.message.clone()))
        .unwrap_or_else(|| "no termination message".to_owned());
    let text = message.trim();
    let mut start = text.len().saturating_sub(MESSAGE_MAX);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

/// The name of member `ordinal`'s restore Pod.
pub fn restore_pod_name(info: &Blueprint, ordinal: u32) -> String {
    format!("{}-restore", info.member_name(ordinal))
}

/// The environment of the fetch container: every key the store may read from the credentials
/// Secret (optional ones may be absent) and the encryption key, by reference only.
fn fetch_env(target: &BackupTarget) -> Vec<EnvVar> {
    let keys: &[&str] = match &target.destination {
        Destination::S3 { .. } => &[S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY, S3_SESSION_TOKEN],
        Destination::Gcs { .. } => &[GCS_SERVICE_ACCOUNT_JSON],
        Destination::Azure { .. } => &[AZURE_ACCOUNT_KEY, AZURE_SAS_TOKEN, AZURE_ACCOUNT_NAME],
        Destination::Local { .. } => &[],
    };
    let from = |secret: &str, key: &str, env: String| EnvVar {
        name: env,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                // A missing key is reported by the fetch, naming the key.
                optional: Some(true),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let mut env: Vec<EnvVar> = target
        .credentials_secret
        .iter()
        .flat_map(|s| {
            keys.iter()
                .map(move |k| from(s, k, format!("{CREDENTIAL_ENV_PREFIX}{k}")))
        })
        .collect();
    if let Some(s) = &target.key_secret {
        env.push(from(s, ENCRYPTION_KEY, ENCRYPTION_KEY_ENV.to_owned()));
    }
    env
}

/// The `etcdutl snapshot restore` command of member `ordinal` of a cluster of `members`, then
/// the removal of the fetched file.
pub fn restore_command(info: &Blueprint, ordinal: u32, members: u32) -> Vec<String> {
    let initial = (0..members)
        .map(|o| format!("{}={}", info.member_name(o), info.peer_url(o)))
        .collect::<Vec<_>>()
        .join(",");
    let restore = [
        "etcdutl".to_owned(),
        "snapshot".to_owned(),
        "restore".to_owned(),
        SNAPSHOT_FILE.to_owned(),
        format!("--name={}", info.member_name(ordinal)),
        format!("--initial-cluster={initial}"),
        format!("--initial-cluster-token={}", info.cluster_token()),
        format!("--initial-advertise-peer-urls={}", info.peer_url(ordinal)),
        format!("--data-dir={DATA_DIR}"),
    ];
    // The data directory of a restore that failed half-way is removed first (etcdutl refuses
    // an existing one); the fetched file goes once the data is written.
    vec![
        "/bin/sh".to_owned(),
        "-ec".to_owned(),
        format!(
            "rm -rf {DATA_DIR}; {}; rm -f {SNAPSHOT_FILE}",
            restore.join(" ")
        ),
    ]
}

/// The restore Pod of member `ordinal` (of `members`, on `version`) from `object` of `target`,
/// fetched with `operator_image`; `None` for a local folder or ephemeral storage (nothing to
/// fetch into).
pub fn restore_pod(
    info: &Blueprint,
    ordinal: u32,
    members: u32,
    version: Version,
    target: &BackupTarget,
    object: &str,
    operator_image: &str,
) -> Option<Pod> {
    if info.template.ephemeral {
        return None;
    }
    let args = fetch_args(target, object, SNAPSHOT_FILE)?;
    // The member's own Pod gives the volumes, security contexts and placement.
    let member = member_pod(info, ordinal, version, &InitialState::New);
    let mut spec = member.spec.unwrap_or_default();
    let etcd = spec.containers.first().cloned().unwrap_or_default();
    let mount = vec![VolumeMount {
        name: "data".to_owned(),
        mount_path: DATA_MOUNT.to_owned(),
        ..VolumeMount::default()
    }];
    let fetch = Container {
        name: "fetch".to_owned(),
        image: Some(operator_image.to_owned()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        command: Some(vec!["etcd-operator".to_owned()]),
        args: Some(
            [
                "snapshot",
                "fetch",
                "--termination-log",
                "/dev/termination-log",
            ]
            .into_iter()
            .map(str::to_owned)
            .chain(args)
            .collect(),
        ),
        env: Some(fetch_env(target)),
        volume_mounts: Some(mount.clone()),
        security_context: etcd.security_context.clone(),
        resources: etcd.resources.clone(),
        ..Container::default()
    };
    let restore = Container {
        name: "restore".to_owned(),
        image: etcd.image.clone(),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        command: Some(restore_command(info, ordinal, members)),
        volume_mounts: Some(mount),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        security_context: etcd.security_context.clone(),
        resources: etcd.resources,
        ..Container::default()
    };
    spec.init_containers = Some(vec![fetch]);
    spec.containers = vec![restore];
    spec.restart_policy = Some("Never".to_owned());
    spec.hostname = None;
    spec.subdomain = None;
    let mut meta = member.metadata;
    meta.name = Some(restore_pod_name(info, ordinal));
    meta.labels = Some(info.labels(RESTORE_COMPONENT));
    meta.annotations = Some(BTreeMap::from([(
        ANNOTATION_RESTORE_OBJECT.to_owned(),
        object.to_owned(),
    )]));
    Some(Pod {
        metadata: meta,
        spec: Some(spec),
        status: None,
    })
}

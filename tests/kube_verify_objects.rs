//! The verification Pod of a snapshot in Kubernetes (tests/kube_backup_verify.rs runs it): the
//! restore Pod's fetch init container on an `emptyDir`, the etcd image restoring, serving and
//! reporting; accepted by the real kube-apiserver; its phase and termination message (set here
//! through the status subresource: there is no kubelet) read back into a verification checked
//! against the record.

mod support;

use std::time::{Duration, SystemTime};

use etcd_operator::api::EtcdClusterSpec;
use etcd_operator::controller::backup::BackupTarget;
use etcd_operator::controller::plan::{UnverifiedSnapshot, Version};
use etcd_operator::controller::validate::member_template;
use etcd_operator::runtime::kubernetes::objects::Blueprint;
use etcd_operator::runtime::kubernetes::verify::{
    ANNOTATION_VERIFY_OBJECT, parse_report, verification_of, verify_command, verify_pod,
};
use etcd_operator::snapshot_store::Destination;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use support::shared_kube::shared_kube;

const SHA: &str = "478229793ba8d2bff8343b42922f7f981f0a01e3fa02bb53ae43ae73d22d2488";

fn info(ns: &str) -> Blueprint {
    let spec: EtcdClusterSpec = serde_json::from_value(json!({"replicas": 3})).expect("spec");
    Blueprint {
        name: "demo".into(),
        namespace: ns.into(),
        uid: "1234-abcd".into(),
        cluster_domain: "cluster.local".into(),
        template: member_template(&spec),
    }
}

fn target() -> BackupTarget {
    BackupTarget {
        destination: Destination::S3 {
            bucket: "backups".into(),
            region: None,
            endpoint: Some("http://s3.example:7070".into()),
            path_style: true,
        },
        prefix: "prod/demo".into(),
        credentials_secret: Some("s3-creds".into()),
        key_secret: Some("backup-key".into()),
        field: "spec.backup",
    }
}

fn snapshot() -> UnverifiedSnapshot {
    UnverifiedSnapshot {
        sequence: 1,
        object: "demo-20261122T073005Z-r812.db".into(),
        location: "s3://backups/prod/demo/demo-20261122T073005Z-r812.db".into(),
        sha256: SHA.into(),
        revision: 812,
    }
}

fn v() -> Version {
    "3.5.16".parse().expect("version")
}

#[test]
fn the_report_line_is_parsed_and_checked_against_the_record() {
    let (served, sha) =
        parse_report(&format!("noise\nrevision=812 keys=200 sha256={SHA}\n")).expect("report");
    assert_eq!(
        (served.revision, served.keys, sha.as_str()),
        (812, Some(200), SHA)
    );
    assert!(parse_report("the throwaway etcd did not serve").is_none());
    let now = SystemTime::now();
    let created = now - Duration::from_secs(5);
    let pod = |phase: &str, message: &str| -> Pod {
        serde_json::from_value(json!({"status": {"phase": phase, "containerStatuses": [
            {"name": "verify", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
             "state": {"terminated": {"exitCode": if phase == "Failed" { 1 } else { 0 },
                                      "message": message}}}]}}))
        .expect("pod")
    };
    let ok = verification_of(
        &pod("Succeeded", &format!("revision=812 keys=200 sha256={SHA}")),
        &snapshot(),
        v(),
        now,
        created,
    )
    .expect("finished");
    assert!(ok.passed(), "{ok:?}");
    let other = verification_of(
        &pod("Succeeded", "revision=812 keys=200 sha256=00ff"),
        &snapshot(),
        v(),
        now,
        created,
    )
    .expect("finished");
    assert!(
        other
            .result
            .as_ref()
            .is_err_and(|e| e.contains("SHA-256 00ff")),
        "{other:?}"
    );
    let failed = verification_of(
        &pod("Failed", "the throwaway etcd did not serve: panic"),
        &snapshot(),
        v(),
        now,
        created,
    )
    .expect("finished");
    assert!(
        failed
            .result
            .as_ref()
            .is_err_and(|e| e.contains("did not serve: panic")),
        "{failed:?}"
    );
    let pending: Pod =
        serde_json::from_value(json!({"status": {"phase": "Pending"}})).expect("pod");
    assert!(verification_of(&pending, &snapshot(), v(), now, created).is_none());
    let stuck = verification_of(
        &pending,
        &snapshot(),
        v(),
        now,
        now - Duration::from_secs(600),
    )
    .expect("cut by its age");
    assert!(stuck.result.is_err(), "{stuck:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verification_pod_is_accepted_and_its_result_read_back() {
    let k = shared_kube();
    let ns = k
        .namespace(&format!("verify-{}", std::process::id()))
        .expect("namespace");
    let client = k.client().await.expect("client");
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let pod = verify_pod(
        &info(&ns),
        v(),
        &target(),
        &snapshot(),
        "etcd-operator:test",
    )
    .expect("a Pod for an S3 target");
    let created = pods
        .create(&PostParams::default(), &pod)
        .await
        .expect("the apiserver accepts the verification Pod");
    let spec = created.spec.clone().expect("spec");
    assert_eq!(created.metadata.name.as_deref(), Some("demo-verify"));
    assert_eq!(
        created
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_VERIFY_OBJECT)),
        Some(&snapshot().object)
    );
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    assert_eq!(spec.active_deadline_seconds, Some(120));
    let volumes = spec.volumes.clone().unwrap_or_default();
    assert_eq!(volumes.len(), 1, "{volumes:?}");
    assert!(volumes[0].empty_dir.is_some(), "{volumes:?}");
    let fetch = &spec.init_containers.clone().unwrap_or_default()[0];
    let args = fetch.args.clone().unwrap_or_default().join(" ");
    assert!(args.contains("snapshot fetch"), "{args}");
    assert!(args.contains(&snapshot().object), "{args}");
    assert!(
        !args.contains("s3-creds") && !args.contains("backup-key"),
        "{args}"
    );
    let v34 = verify_command("3.4.23".parse().expect("version")).join(" ");
    assert!(v34.contains("etcdctl snapshot restore"), "{v34}");
    let script = spec.containers[0]
        .command
        .clone()
        .unwrap_or_default()
        .join(" ");
    for needle in [
        "etcdutl snapshot restore",
        "--count-only",
        "etcdctl",
        "/dev/termination-log",
    ] {
        assert!(script.contains(needle), "{needle} missing: {script}");
    }

    // The kubelet's part, by hand: the container terminated with its report.
    let status = json!({"status": {"phase": "Succeeded", "containerStatuses": [
        {"name": "verify", "ready": false, "restartCount": 0, "image": "etcd", "imageID": "",
         "state": {"terminated": {"exitCode": 0,
                                  "message": format!("revision=810 keys=42 sha256={SHA}\n")}}}]}});
    let done = pods
        .patch_status(
            "demo-verify",
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
        .expect("status");
    let now = SystemTime::now();
    let verified =
        verification_of(&done, &snapshot(), v(), now, now).expect("a finished verification");
    assert!(verified.passed(), "{verified:?}");
    assert_eq!(
        verified.served.map(|s| (s.revision, s.keys)),
        Some((810, Some(42)))
    );
    pods.delete("demo-verify", &Default::default())
        .await
        .expect("delete");
}

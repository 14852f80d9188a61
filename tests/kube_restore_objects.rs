//! The pure parts of restores in Kubernetes: where the restore Pods are
//! ([`restore_progress`]), why one failed ([`failure_message`]), and that a PVC being restored
//! is no member until its Pod exists ([`runtime_members`]).

use std::collections::BTreeMap;

use etcd_operator::api::EtcdClusterSpec;
use etcd_operator::controller::plan::DataState;
use etcd_operator::controller::validate::member_template;
use etcd_operator::runtime::kubernetes::members::runtime_members;
use etcd_operator::runtime::kubernetes::objects::Blueprint;
use etcd_operator::runtime::kubernetes::reconcile::desired_state;
use etcd_operator::runtime::kubernetes::restore::{
    ANNOTATION_RESTORE_OBJECT, RestoreProgress, failure_message, restore_progress,
};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use serde_json::json;

fn info() -> Blueprint {
    let spec: EtcdClusterSpec = serde_json::from_value(json!({"replicas": 3})).expect("spec");
    Blueprint {
        name: "demo".into(),
        namespace: "prod".into(),
        uid: "1234-abcd".into(),
        cluster_domain: "cluster.local".into(),
        template: member_template(&spec),
    }
}

fn pod(value: serde_json::Value) -> Pod {
    serde_json::from_value(value).expect("a Pod")
}

fn restore(ordinal: u32, status: serde_json::Value) -> Pod {
    pod(json!({"metadata": {"name": format!("demo-{ordinal}-restore")}, "status": status}))
}

fn terminated(name: &str, code: i32, message: Option<&str>) -> serde_json::Value {
    json!({"name": name, "ready": false, "restartCount": 0, "image": "i", "imageID": "",
           "state": {"terminated": {"exitCode": code, "message": message}}})
}

#[test]
fn restore_pods_progress_from_running_to_succeeded_or_failed() {
    let info = info();
    let ok = |o| restore(o, json!({"phase": "Succeeded"}));
    assert_eq!(restore_progress(&info, 3, &[]), RestoreProgress::Running);
    assert_eq!(
        restore_progress(&info, 3, &[ok(0), ok(1)]),
        RestoreProgress::Running,
        "a missing Pod is not done"
    );
    assert_eq!(
        restore_progress(
            &info,
            3,
            &[ok(0), restore(1, json!({"phase": "Running"})), ok(2)]
        ),
        RestoreProgress::Running
    );
    assert_eq!(
        restore_progress(&info, 3, &[ok(0), ok(1), ok(2)]),
        RestoreProgress::Succeeded
    );
    let failed = restore(
        2,
        json!({"phase": "Failed", "containerStatuses": [
            terminated("restore", 2, Some("line one\nError: snapshot missing hash\n"))]}),
    );
    assert_eq!(
        restore_progress(
            &info,
            3,
            &[restore(0, json!({"phase": "Pending"})), ok(1), failed]
        ),
        RestoreProgress::Failed {
            pod: "demo-2-restore".to_owned(),
            message: "line one\nError: snapshot missing hash".to_owned(),
        },
        "a failure counts while others still run"
    );
}

#[test]
fn a_failure_message_prefers_the_fetch_then_the_restore_then_the_pod() {
    let fetch = restore(
        0,
        json!({"phase": "Failed",
            "initContainerStatuses": [terminated("fetch", 1, Some("wrong encryption key"))],
            "containerStatuses": [terminated("restore", 1, Some("never ran"))]}),
    );
    assert_eq!(failure_message(&fetch), "wrong encryption key");
    let silent = restore(
        0,
        json!({"phase": "Failed",
            "initContainerStatuses": [terminated("fetch", 0, None)],
            "containerStatuses": [terminated("restore", 137, None)]}),
    );
    assert_eq!(failure_message(&silent), "container restore exited 137");
    let evicted = restore(
        0,
        json!({"phase": "Failed", "message": "The node was low on disk"}),
    );
    assert_eq!(failure_message(&evicted), "The node was low on disk");
    assert_eq!(
        failure_message(&restore(0, json!({"phase": "Failed"}))),
        "no termination message"
    );
    let long = "x".repeat(2000) + "the end";
    let chatty = restore(
        0,
        json!({"phase": "Failed",
            "containerStatuses": [terminated("restore", 1, Some(long.as_str()))]}),
    );
    let got = failure_message(&chatty);
    assert!(got.len() <= 500 && got.ends_with("the end"), "{got}");
}

#[test]
fn a_pvc_being_restored_is_no_member_until_its_pod_exists() {
    let info = info();
    let spec: EtcdClusterSpec = serde_json::from_value(json!({"replicas": 3})).expect("spec");
    let desired = desired_state(&spec, &info, 5).expect("desired");
    let pvc = |o: u32, restoring: bool| -> PersistentVolumeClaim {
        let annotations: BTreeMap<String, String> = if restoring {
            BTreeMap::from([(ANNOTATION_RESTORE_OBJECT.to_owned(), "x.db".to_owned())])
        } else {
            BTreeMap::new()
        };
        serde_json::from_value(json!({"metadata": {
            "name": format!("demo-{o}"), "annotations": annotations}}))
        .expect("a PVC")
    };
    let restoring = [pvc(0, true), pvc(1, true), pvc(2, true)];
    assert!(runtime_members(&desired, false, false, &[], &restoring).is_empty());
    // Once the cluster answered, the restore is over: a leftover annotation hides nothing.
    let after: Vec<(u32, DataState)> = runtime_members(&desired, false, true, &[], &restoring)
        .iter()
        .map(|m| (m.ordinal, m.data))
        .collect();
    assert_eq!(
        after,
        [
            (0, DataState::Present),
            (1, DataState::Present),
            (2, DataState::Present)
        ]
    );
    // The member Pods are created before the annotation goes: then they are members.
    let pods: Vec<Pod> = (0..3)
        .map(|o| pod(json!({"metadata": {"name": format!("demo-{o}")}})))
        .collect();
    let got: Vec<(u32, DataState)> = runtime_members(&desired, false, false, &pods, &restoring)
        .iter()
        .map(|m| (m.ordinal, m.data))
        .collect();
    assert_eq!(
        got,
        [
            (0, DataState::Empty),
            (1, DataState::Empty),
            (2, DataState::Empty)
        ]
    );
    // Without the annotation a PVC alone is a member, as before.
    let plain = [pvc(0, false)];
    assert_eq!(
        runtime_members(&desired, false, true, &[], &plain)[0].data,
        DataState::Present
    );
}

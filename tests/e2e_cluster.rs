//! In-cluster end to end: the operator installed with `helm install` on a real node
//! (`hack/node.sh up`), EtcdClusters driven with `kubectl` only. The node must be up: without it
//! every test fails (`make test` starts one; by hand, `make cluster-up`).

mod support;

use std::time::Duration;

use support::e2e::{Scenario, cluster_manifest, member_selector};
use support::node::{E2e, repo, wait_for};

const BOOTSTRAP: Duration = Duration::from_secs(300);

/// `config/samples/etcdcluster.yaml` as a user applies it: 3/3 ready, the printer columns,
/// a pod in the cluster writes and reads through the client Service.
#[test]
fn sample_cluster_serves_clients() {
    let e2e = E2e::lock().expect("test node");
    let s = Scenario::new(&e2e.node, "sample", "example").expect("namespace");
    let sample = std::fs::read_to_string(repo().join("config/samples/etcdcluster.yaml"))
        .expect("sample manifest");
    e2e.node.apply(s.ns(), &sample).expect("apply the sample");
    s.wait_ready(3, BOOTSTRAP).expect("sample ready");

    let table = s
        .kubectl(&["get", "etcdclusters"])
        .expect("get etcdclusters");
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME", "READY", "MEMBERS", "VERSION", "LEADER", "PHASE", "AGE"
        ],
        "{table}"
    );
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row.first(), Some(&"example"), "{table}");
    assert_eq!(row.get(1), Some(&"True"), "{table}");
    assert!(
        row.get(4).is_some_and(|l| l.starts_with("example-")),
        "leader column names a member: {table}"
    );

    s.etcdctl(&["put", "/e2e/hello", "world"]).expect("put");
    let got = s
        .etcdctl(&["get", "/e2e/hello", "--print-value-only"])
        .expect("get");
    assert_eq!(got.trim(), "world");
}

/// `kubectl scale` to 5, then back to 3, while a writer runs through the client Service: no
/// acknowledged write is lost, and the removed members' PVCs are deleted.
#[test]
fn scale_out_and_in_under_writes() {
    let e2e = E2e::lock().expect("test node");
    let s = Scenario::new(&e2e.node, "scale", "scaled").expect("namespace");
    e2e.node
        .apply(s.ns(), &cluster_manifest("scaled", 3))
        .expect("apply");
    s.wait_ready(3, BOOTSTRAP).expect("3 ready");
    s.start_writer().expect("writer");

    s.kubectl(&["scale", "etcdcluster", "scaled", "--replicas", "5"])
        .expect("scale to 5");
    s.wait_ready(5, BOOTSTRAP).expect("5 ready");
    s.kubectl(&["scale", "etcdcluster", "scaled", "--replicas", "3"])
        .expect("scale to 3");
    s.wait_ready(3, BOOTSTRAP).expect("3 ready again");

    let acked = s.stop_writer().expect("stop writer");
    assert!(
        acked.len() > 10,
        "the writer got few writes through: {}",
        acked.len()
    );
    let present = s.written_keys().expect("read keys");
    let lost: Vec<u64> = acked.difference(&present).copied().collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");

    let claims = wait_for(
        "the removed members' PVCs to go",
        Duration::from_secs(120),
        || {
            let claims = e2e
                .node
                .names(s.ns(), "pvc", "app.kubernetes.io/instance=scaled")
                .map_err(|e| e.to_string())?;
            if claims.len() == 3 {
                Ok(Some(claims))
            } else {
                Err(format!("{claims:?}"))
            }
        },
    )
    .expect("PVCs");
    assert_eq!(claims, ["scaled-0", "scaled-1", "scaled-2"]);
}

/// A member Pod deleted comes back on its PVC and rejoins as the same member; a member whose
/// Pod and PVC are both deleted is replaced by a new member (a new etcd member ID).
#[test]
fn lost_member_pod_and_volume_recover() {
    let e2e = E2e::lock().expect("test node");
    let s = Scenario::new(&e2e.node, "recover", "rec").expect("namespace");
    e2e.node
        .apply(s.ns(), &cluster_manifest("rec", 3))
        .expect("apply");
    s.wait_ready(3, BOOTSTRAP).expect("3 ready");
    s.etcdctl(&["put", "/e2e/before", "1"]).expect("put");

    // The Pod only: same PVC, same etcd member.
    let voters = s.voters().expect("voters");
    let pvc_uid = s.uid("pvc/rec-1").expect("pvc uid");
    let pod_uid = s.uid("pod/rec-1").expect("pod uid");
    s.kubectl(&["delete", "pod", "rec-1", "--wait=false"])
        .expect("delete pod");
    wait_for("a new rec-1 Pod", Duration::from_secs(120), || {
        let uid = s.uid("pod/rec-1").unwrap_or_default();
        Ok((!uid.is_empty() && uid != pod_uid).then_some(()))
    })
    .expect("pod recreated");
    s.wait_ready(3, BOOTSTRAP).expect("3 ready after pod loss");
    assert_eq!(s.uid("pvc/rec-1").expect("pvc uid"), pvc_uid, "same PVC");
    assert_eq!(s.voters().expect("voters"), voters, "same members");

    // Pod and PVC: the member is replaced.
    let old_id = voters
        .iter()
        .find(|(name, _)| name == "rec-2")
        .map(|(_, id)| id.clone())
        .expect("rec-2 is a voter");
    s.kubectl(&["delete", "pvc", "rec-2", "--wait=false"])
        .expect("delete pvc");
    s.kubectl(&["delete", "pod", "rec-2", "--wait=false"])
        .expect("delete pod");
    wait_for("rec-2 replaced", BOOTSTRAP, || {
        let voters = s.voters().map_err(|e| e.to_string())?;
        let replaced = voters.len() == 3
            && voters
                .iter()
                .any(|(name, id)| name == "rec-2" && *id != old_id);
        if replaced {
            Ok(Some(()))
        } else {
            Err(format!("{voters:?}"))
        }
    })
    .expect("member replaced");
    s.wait_ready(3, BOOTSTRAP).expect("3 ready after replace");
    let got = s
        .etcdctl(&["get", "/e2e/before", "--print-value-only"])
        .expect("get");
    assert_eq!(got.trim(), "1");
}

/// Deleting the EtcdCluster removes every object it owned.
#[test]
fn deleted_cluster_leaves_nothing() {
    let e2e = E2e::lock().expect("test node");
    let s = Scenario::new(&e2e.node, "delete", "gone").expect("namespace");
    e2e.node
        .apply(s.ns(), &cluster_manifest("gone", 3))
        .expect("apply");
    s.wait_ready(3, BOOTSTRAP).expect("3 ready");
    let owned = "pods,pvc,services,poddisruptionbudgets,configmaps,secrets";
    let before = e2e
        .node
        .names(s.ns(), owned, "app.kubernetes.io/instance=gone")
        .expect("owned objects");
    // 3 Pods, 3 PVCs, 2 Services, 1 PodDisruptionBudget at least.
    assert!(before.len() >= 9, "owned objects: {before:?}");
    assert_eq!(
        e2e.node
            .names(s.ns(), "pods", &member_selector("gone"))
            .expect("pods")
            .len(),
        3
    );

    s.kubectl(&[
        "delete",
        "etcdcluster",
        "gone",
        "--wait=true",
        "--timeout=120s",
    ])
    .expect("delete");
    wait_for(
        "the cluster's objects to go",
        Duration::from_secs(180),
        || {
            let left = e2e
                .node
                .names(s.ns(), owned, "app.kubernetes.io/instance=gone")
                .map_err(|e| e.to_string())?;
            if left.is_empty() {
                Ok(Some(()))
            } else {
                Err(format!("{left:?}"))
            }
        },
    )
    .expect("owned objects deleted");
}

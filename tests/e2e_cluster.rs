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
    // 3 Pods, 3 PVCs, 5 Services (peers, client, one per member), 1 PodDisruptionBudget.
    assert!(before.len() >= 12, "owned objects: {before:?}");
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

/// The member Pods' etcd versions (`etcd.operator.dev/version`) and whether any container
/// argument still uses an `--experimental-` name.
fn pod_versions(s: &Scenario) -> (Vec<String>, bool) {
    let out = s
        .kubectl(&[
            "get",
            "pods",
            "-l",
            &member_selector(&s.cluster),
            "-o",
            "json",
        ])
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    let pods = v["items"].as_array().cloned().unwrap_or_default();
    let versions = pods
        .iter()
        .map(|p| {
            p["metadata"]["annotations"]["etcd.operator.dev/version"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let experimental = pods.iter().any(|p| {
        p["spec"]["containers"][0]["args"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a.as_str().is_some_and(|a| a.starts_with("--experimental-")))
    });
    (versions, experimental)
}

/// A `jsonpath` of the cluster's status, as `kubectl` prints it.
fn status_field(s: &Scenario, path: &str) -> String {
    s.kubectl(&[
        "get",
        "etcdcluster",
        &s.cluster,
        "-o",
        &format!("jsonpath={{.status.{path}}}"),
    ])
    .unwrap_or_default()
}

/// A rolling upgrade along etcd's path, 3.5.35 -> 3.6.16 -> 3.7.3, each requested with
/// `kubectl patch` while a writer runs: every member ends on the new version as etcd reports it,
/// the cluster serves throughout (no acknowledged write lost), and a flag 3.7 renamed
/// (`--experimental-initial-corrupt-check`) is passed under its new name from the 3.7 restart on.
///
/// 3.7 is asked for right after the 3.6 step finishes: etcd 3.7.3 cannot replay WAL entries
/// that 3.5 wrote ("unmarshal should never fail"), so the operator records where the log became
/// v3 (`status.upgrade.v3LogFromIndex`) and has every member take a raft snapshot past it
/// before it restarts one onto 3.7; no member crash-loops, none is replaced (same member IDs).
#[test]
fn rolling_upgrade_along_the_supported_path() {
    let e2e = E2e::lock().expect("test node");
    let s = Scenario::new(&e2e.node, "upgrade", "up").expect("namespace");
    let manifest = "apiVersion: etcd.operator.dev/v1alpha1\nkind: EtcdCluster\nmetadata:\n  \
                    name: up\nspec:\n  replicas: 3\n  version: \"3.5.35\"\n  storage:\n    \
                    size: 256Mi\n  etcd:\n    snapshotCount: 100\n    extraFlags:\n    \
                    - --experimental-initial-corrupt-check=true\n";
    e2e.node.apply(s.ns(), manifest).expect("apply");
    s.wait_ready(3, BOOTSTRAP).expect("3 ready on 3.5.35");
    assert!(pod_versions(&s).1, "3.5 takes the experimental name");
    s.start_writer().expect("writer");
    let ids = status_field(&s, "members[*].id");
    for version in ["3.6.16", "3.7.3"] {
        let patch = format!("{{\"spec\":{{\"version\":\"{version}\"}}}}");
        s.kubectl(&["patch", "etcdcluster", "up", "--type=merge", "-p", &patch])
            .expect("patch the version");
        wait_for(
            &format!("every member on {version}"),
            Duration::from_secs(600),
            || {
                let reported = s
                    .kubectl(&[
                        "get",
                        "etcdcluster",
                        "up",
                        "-o",
                        "jsonpath={.status.members[*].version}",
                    ])
                    .map_err(|e| e.to_string())?;
                let (pods, _) = pod_versions(&s);
                let etcd: Vec<&str> = reported.split_whitespace().collect();
                if etcd.len() == 3
                    && etcd.iter().all(|v| *v == version)
                    && pods.iter().all(|v| v == version)
                {
                    Ok(Some(()))
                } else {
                    Err(format!("etcd reports {etcd:?}, pods {pods:?}"))
                }
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", e2e.node.operator_logs()));
        s.wait_ready(3, BOOTSTRAP)
            .expect("3 ready after the upgrade");
    }
    assert!(!pod_versions(&s).1, "3.7 has no --experimental- flags");
    assert_eq!(
        status_field(&s, "members[*].id"),
        ids,
        "a member was replaced"
    );
    let mark = status_field(&s, "upgrade.v3LogFromIndex");
    assert!(
        mark.parse::<u64>().is_ok_and(|m| m > 0),
        "v3LogFromIndex: {mark:?}"
    );
    let acked = s.stop_writer().expect("stop writer");
    assert!(acked.len() > 10, "few writes got through: {}", acked.len());
    let present = s.written_keys().expect("read keys");
    let lost: Vec<u64> = acked.difference(&present).copied().collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
}

/// A volume the non-root etcd (UID 65532) cannot write: a hostPath PersistentVolume, which
/// fsGroup does not apply to. The member cannot start, and the cluster says why and what to do.
#[test]
fn an_unwritable_volume_is_reported_with_its_remedy() {
    let e2e = E2e::lock().expect("test node");
    let s = Scenario::new(&e2e.node, "unwritable", "ro").expect("namespace");
    // Under the node's state folder, which `hack/node.sh down` removes.
    let dir = support::node::kubeconfig_path()
        .parent()
        .expect("cluster folder")
        .join("state/e2e-hostpath")
        .join(s.ns());
    let class = format!("{}-hostpath", s.ns());
    let pv = format!(
        "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: {class}\nspec:\n  \
         capacity: {{storage: 256Mi}}\n  accessModes: [ReadWriteOnce]\n  \
         storageClassName: {class}\n  persistentVolumeReclaimPolicy: Retain\n  \
         hostPath: {{path: {}, type: DirectoryOrCreate}}\n",
        dir.display()
    );
    e2e.node.apply(s.ns(), &pv).expect("the PersistentVolume");
    let manifest = format!(
        "apiVersion: etcd.operator.dev/v1alpha1\nkind: EtcdCluster\nmetadata:\n  name: ro\n\
         spec:\n  replicas: 1\n  version: \"{}\"\n  storage:\n    size: 256Mi\n    \
         storageClassName: {class}\n",
        support::e2e::etcd_version()
    );
    e2e.node.apply(s.ns(), &manifest).expect("apply");
    let message = wait_for(
        "the cluster to say why its member fails",
        Duration::from_secs(240),
        || {
            let conditions = s
                .kubectl(&[
                    "get",
                    "etcdcluster",
                    "ro",
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Degraded\")]}",
                ])
                .map_err(|e| e.to_string())?;
            let c: serde_json::Value = serde_json::from_str(&conditions).unwrap_or_default();
            if c["reason"] == "MemberFailing" {
                Ok(Some(c["message"].as_str().unwrap_or_default().to_owned()))
            } else {
                Err(conditions)
            }
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", e2e.node.operator_logs()));
    assert!(message.contains("ro-0"), "{message}");
    assert!(message.contains("cannot write its volume"), "{message}");
    assert!(message.contains("permission denied"), "{message}");
    assert!(message.contains("65532"), "{message}");
    s.kubectl(&[
        "delete",
        "etcdcluster",
        "ro",
        "--wait=true",
        "--timeout=120s",
    ])
    .expect("delete the cluster");
    e2e.node
        .kubectl(&["delete", "pv", &class, "--wait=false"])
        .expect("delete the PersistentVolume");
}

//! In-cluster end to end, the operator's own life on a real node: the leading replica deleted
//! (a standby takes the Lease and reconciles), `helm upgrade` with a changed value (the operator
//! rolls), and the member PodDisruptionBudget refusing a second eviction. The node must be up
//! (`make test` starts one; by hand, `make cluster-up`).

mod support;

use std::time::Duration;

use support::e2e::{Scenario, cluster_manifest, member_selector};
use support::node::{E2e, Node, OPERATOR_NS, RELEASE, repo, wait_for};

const BOOTSTRAP: Duration = Duration::from_secs(300);
const LEASE: &str = "lease/etcd-operator-leader";

fn leader(node: &Node) -> String {
    node.jsonpath(OPERATOR_NS, LEASE, "{.spec.holderIdentity}")
        .unwrap_or_default()
}

fn operator_pods(node: &Node) -> Vec<String> {
    let selector = format!("app.kubernetes.io/instance={RELEASE}");
    node.names(OPERATOR_NS, "pods", &selector)
        .unwrap_or_default()
}

/// The leading operator Pod deleted: the standby takes the Lease and reconciles a change made
/// after the failover.
#[test]
fn standby_takes_over_when_the_leader_pod_goes() {
    let e2e = E2e::lock().expect("test node");
    let node = &e2e.node;
    let s = Scenario::new(node, "failover", "fo").expect("namespace");
    node.apply(s.ns(), &cluster_manifest("fo", 1))
        .expect("apply");
    s.wait_ready(1, BOOTSTRAP).expect("1 ready");

    let old = wait_for("a Lease holder", Duration::from_secs(60), || {
        let l = leader(node);
        Ok((!l.is_empty()).then_some(l))
    })
    .expect("leader");
    assert!(
        operator_pods(node).contains(&old),
        "the Lease holder {old} is an operator Pod: {:?}",
        operator_pods(node)
    );
    node.kubectl(&["-n", OPERATOR_NS, "delete", "pod", &old, "--wait=false"])
        .expect("delete leader pod");
    let new = wait_for("another Lease holder", Duration::from_secs(90), || {
        let l = leader(node);
        if !l.is_empty() && l != old {
            Ok(Some(l))
        } else {
            Err(format!("holder {l:?}"))
        }
    })
    .expect("new leader");
    assert_ne!(new, old);

    // The new leader reconciles: a scale made now is carried out.
    s.kubectl(&["scale", "etcdcluster", "fo", "--replicas", "3"])
        .expect("scale");
    s.wait_ready(3, BOOTSTRAP)
        .expect("3 ready under the new leader");
    node.kubectl(&[
        "-n",
        OPERATOR_NS,
        "rollout",
        "status",
        "deploy/etcd-operator",
        "--timeout=120s",
    ])
    .expect("the Deployment is whole again");
}

/// `helm upgrade` with a changed value rolls the operator's Pods, and the new ones lead.
#[test]
fn helm_upgrade_rolls_the_operator() {
    let e2e = E2e::lock().expect("test node");
    let node = &e2e.node;
    let before = operator_pods(node);
    assert_eq!(before.len(), 2, "two replicas: {before:?}");
    let chart = repo().join("charts/etcd-operator").display().to_string();
    let level = if node
        .jsonpath(
            OPERATOR_NS,
            "deploy/etcd-operator",
            "{.spec.template.spec.containers[0].env}",
        )
        .unwrap_or_default()
        .contains("\"value\":\"debug\"")
    {
        "info"
    } else {
        "debug"
    };
    let set = format!("logLevel={level}");
    node.helm(&[
        "upgrade",
        RELEASE,
        &chart,
        "-n",
        OPERATOR_NS,
        "--reuse-values",
        "--set",
        &set,
        "--wait",
        "--timeout",
        "5m",
    ])
    .expect("helm upgrade");
    node.kubectl(&[
        "-n",
        OPERATOR_NS,
        "rollout",
        "status",
        "deploy/etcd-operator",
        "--timeout=180s",
    ])
    .expect("rollout");
    let after = wait_for("the old Pods to go", Duration::from_secs(120), || {
        let pods = operator_pods(node);
        if pods.len() == 2 && pods.iter().all(|p| !before.contains(p)) {
            Ok(Some(pods))
        } else {
            Err(format!("{pods:?}"))
        }
    })
    .expect("rolled");
    let env = node
        .jsonpath(
            OPERATOR_NS,
            &format!("pod/{}", after[0]),
            "{.spec.containers[0].env}",
        )
        .expect("env");
    let expected = format!("\"value\":\"{level}\"");
    assert!(env.contains(&expected), "new Pods carry the value: {env}");
    wait_for("a new Pod to lead", Duration::from_secs(90), || {
        let l = leader(node);
        if after.contains(&l) {
            Ok(Some(()))
        } else {
            Err(format!("holder {l:?}"))
        }
    })
    .expect("leader among the new Pods");
}

/// The members' PodDisruptionBudget allows one eviction of a 3-member cluster and refuses a
/// second while the first member is not back.
#[test]
fn second_eviction_is_refused() {
    let e2e = E2e::lock().expect("test node");
    let node = &e2e.node;
    let s = Scenario::new(node, "pdb", "pdb").expect("namespace");
    node.apply(s.ns(), &cluster_manifest("pdb", 3))
        .expect("apply");
    s.wait_ready(3, BOOTSTRAP).expect("3 ready");
    wait_for(
        "the PDB to allow one disruption",
        Duration::from_secs(60),
        || {
            let allowed = s
                .kubectl(&[
                    "get",
                    "pdb",
                    "-l",
                    "app.kubernetes.io/instance=pdb",
                    "-o",
                    "jsonpath={.items[0].status.disruptionsAllowed}",
                ])
                .map_err(|e| e.to_string())?;
            if allowed.trim() == "1" {
                Ok(Some(()))
            } else {
                Err(format!("disruptionsAllowed {allowed:?}"))
            }
        },
    )
    .expect("pdb");

    let pods = node
        .names(s.ns(), "pods", &member_selector("pdb"))
        .expect("pods");
    assert_eq!(pods.len(), 3);
    evict(&s, &pods[0]).expect("the first eviction is allowed");
    let refused = evict(&s, &pods[1]).expect_err("the second eviction must be refused");
    assert!(
        refused.contains("disruption budget") || refused.contains("TooManyRequests"),
        "refused by the budget: {refused}"
    );
    s.wait_ready(3, BOOTSTRAP)
        .expect("3 ready after the eviction");
}

/// Posts an Eviction for a Pod (what `kubectl drain` does); the error text on refusal.
fn evict(s: &Scenario, pod: &str) -> Result<String, String> {
    let body = format!(
        "{{\"apiVersion\":\"policy/v1\",\"kind\":\"Eviction\",\"metadata\":{{\"name\":\"{pod}\",\"namespace\":\"{}\"}}}}",
        s.ns()
    );
    let path = format!("/api/v1/namespaces/{}/pods/{pod}/eviction", s.ns());
    s.node
        .kubectl_stdin(&["create", "--raw", &path, "-f", "-"], &body)
        .map_err(|e| e.to_string())
}

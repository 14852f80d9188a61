//! `spec.networkPolicy` against a real kube-apiserver (no kubelet, no network plugin: what is
//! checked is the NetworkPolicy object the controller applies and deletes, and what admission
//! and the pass refuse; enforcement is the network plugin's).

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use etcd_operator::api::EtcdCluster;
use etcd_operator::metrics::Metrics;
use etcd_operator::runtime::kubernetes::network_policy::OperatorPods;
use etcd_operator::runtime::kubernetes::reconcile::{Context, reconcile};
use etcd_operator::runtime::kubernetes::resolver_from_args;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use support::shared_kube::{etcd_cluster, shared_kube};

fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
}

async fn pass(clusters: &Api<EtcdCluster>, name: &str, ctx: &Arc<Context>) {
    let current = clusters.get(name).await.expect("cluster");
    // The seed never answers here (no kubelet): a pass may end waiting, never failing.
    let _ = reconcile(Arc::new(current), ctx.clone()).await;
}

#[tokio::test]
async fn the_policy_lets_in_members_operator_and_named_clients_and_goes_when_turned_off() {
    let k = shared_kube();
    let ns = k.namespace("netpol").expect("namespace");
    let client = k.client().await.expect("client");
    let clusters: Api<EtcdCluster> = Api::namespaced(client.clone(), &ns);
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
    clusters
        .create(
            &PostParams::default(),
            &etcd_cluster(
                "np",
                json!({"replicas": 3, "networkPolicy": {"clients": [
                    {"podLabels": {"app": "api"}},
                    {"podLabels": {"role": "reader"}, "namespaceLabels": {"team": "a"}}]}}),
            ),
        )
        .await
        .expect("create");
    let operator = OperatorPods::parse(
        "app.kubernetes.io/name=etcd-operator, app.kubernetes.io/instance=eo",
        Some("ops".to_owned()),
    )
    .expect("labels");
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            Arc::new(Metrics::new()),
            resolver_from_args(&[]).expect("resolver"),
            5,
        )
        .with_operator_pods(operator),
    );
    pass(&clusters, "np", &ctx).await;

    let policy = policies.get("np").await.expect("the NetworkPolicy np");
    let owner = &policy.metadata.owner_references.clone().expect("owner")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("EtcdCluster", "np")
    );
    let spec = policy.spec.expect("spec");
    let members = spec.pod_selector.clone().expect("podSelector");
    assert_eq!(
        members
            .match_labels
            .as_ref()
            .and_then(|l| l.get("app.kubernetes.io/instance")),
        Some(&"np".to_owned()),
        "{members:?}"
    );
    assert_eq!(spec.policy_types, Some(vec!["Ingress".to_owned()]));
    let ingress = spec.ingress.expect("ingress");
    assert_eq!(ingress.len(), 2, "{ingress:?}");
    let ports = |i: usize| -> Vec<String> {
        ingress[i]
            .ports
            .iter()
            .flatten()
            .map(|p| format!("{:?}/{}", p.port, p.protocol.clone().unwrap_or_default()))
            .collect()
    };
    // Peers: only the members, only the peer port.
    assert_eq!(ports(0), vec!["Some(Int(2380))/TCP"]);
    let from0 = ingress[0].from.clone().expect("from");
    assert_eq!(from0.len(), 1);
    assert_eq!(from0[0].pod_selector, Some(members.clone()));
    assert!(from0[0].namespace_selector.is_none(), "same namespace only");
    // Clients: the members, the operator's Pods in its namespace, the two entries.
    assert_eq!(ports(1), vec!["Some(Int(2379))/TCP", "Some(Int(2381))/TCP"]);
    let from1: Vec<NetworkPolicyPeer> = ingress[1].from.clone().expect("from");
    assert_eq!(from1.len(), 4, "{from1:?}");
    let pods = |p: &NetworkPolicyPeer| p.pod_selector.clone().and_then(|s| s.match_labels);
    let namespaces = |p: &NetworkPolicyPeer| {
        p.namespace_selector
            .clone()
            .map(|s| s.match_labels.unwrap_or_default())
    };
    assert_eq!(
        pods(&from1[1]),
        labels(&[
            ("app.kubernetes.io/instance", "eo"),
            ("app.kubernetes.io/name", "etcd-operator")
        ])
    );
    assert_eq!(
        namespaces(&from1[1]),
        labels(&[("kubernetes.io/metadata.name", "ops")])
    );
    assert_eq!(pods(&from1[2]), labels(&[("app", "api")]));
    assert_eq!(namespaces(&from1[2]), None, "the cluster's namespace");
    assert_eq!(pods(&from1[3]), labels(&[("role", "reader")]));
    assert_eq!(namespaces(&from1[3]), labels(&[("team", "a")]));

    // Turned off: deleted; on again: back.
    let pp = PatchParams::default();
    let toggle = |enabled: bool| json!({"spec": {"networkPolicy": {"enabled": enabled}}});
    clusters
        .patch("np", &pp, &Patch::Merge(&toggle(false)))
        .await
        .expect("turn off");
    pass(&clusters, "np", &ctx).await;
    assert!(
        policies.get_opt("np").await.expect("get").is_none(),
        "the NetworkPolicy stays after enabled: false"
    );
    clusters
        .patch("np", &pp, &Patch::Merge(&toggle(true)))
        .await
        .expect("turn on");
    pass(&clusters, "np", &ctx).await;
    assert!(policies.get_opt("np").await.expect("get").is_some());
    // The section removed: deleted too.
    clusters
        .patch(
            "np",
            &pp,
            &Patch::Merge(&json!({"spec": {"networkPolicy": null}})),
        )
        .await
        .expect("remove");
    pass(&clusters, "np", &ctx).await;
    assert!(policies.get_opt("np").await.expect("get").is_none());
}

#[tokio::test]
async fn a_label_kubernetes_refuses_is_reported_and_nothing_is_applied() {
    let k = shared_kube();
    let ns = k.namespace("netpol-bad").expect("namespace");
    let client = k.client().await.expect("client");
    let clusters: Api<EtcdCluster> = Api::namespaced(client.clone(), &ns);
    // Admission cannot check map keys within the CEL cost budget: the pass does.
    clusters
        .create(
            &PostParams::default(),
            &etcd_cluster(
                "bad",
                json!({"replicas": 1, "networkPolicy": {"clients": [{"podLabels": {"bad key": "x"}}]}}),
            ),
        )
        .await
        .expect("admission accepts it");
    let ctx = Arc::new(Context::new(
        client.clone(),
        Arc::new(Metrics::new()),
        resolver_from_args(&[]).expect("resolver"),
        5,
    ));
    pass(&clusters, "bad", &ctx).await;
    let status = clusters
        .get_status("bad")
        .await
        .expect("status")
        .status
        .expect("a status");
    let degraded = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .expect("Degraded");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "InvalidSpec")
    );
    assert!(
        degraded
            .message
            .contains("spec.networkPolicy.clients[0].podLabels")
            && degraded.message.contains("\"bad key\""),
        "{}",
        degraded.message
    );
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
    assert!(policies.get_opt("bad").await.expect("get").is_none());
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client, &ns);
    assert!(
        pods.get_opt("bad-0").await.expect("get").is_none(),
        "nothing started"
    );
}

#[test]
fn label_keys_and_values_are_checked_as_kubernetes_does() {
    use etcd_operator::api::EtcdClusterSpec;
    use etcd_operator::api::validation::network_policy_errors;
    let check = |key: &str, value: &str| {
        let spec: EtcdClusterSpec = serde_json::from_value(
            json!({"networkPolicy": {"clients": [{"podLabels": {key: value}}]}}),
        )
        .expect("spec");
        network_policy_errors(&spec).is_empty()
    };
    let long = "a".repeat(64);
    for (key, value) in [
        ("app", "api"),
        ("example.com/app", ""),
        ("a-b.c_d", "A.b-c_9"),
        ("kubernetes.io/metadata.name", "tenants"),
        (&long[..63], &long[..63]),
    ] {
        assert!(check(key, value), "{key}: {value} refused");
    }
    for (key, value) in [
        ("bad key", "x"),
        ("Example.com/app", "x"),
        ("/app", "x"),
        ("example.com/", "x"),
        ("-app", "x"),
        (long.as_str(), "x"),
        ("app", "-x"),
        ("app", "x y"),
        ("app", long.as_str()),
    ] {
        assert!(!check(key, value), "{key}: {value} accepted");
    }
}

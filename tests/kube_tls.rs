//! A TLS + auth `EtcdCluster` against a real kube-apiserver (no kubelet: Pods are stored, never
//! run): the certificate and root password Secrets are created and owned by the cluster, the
//! seed Pod mounts them and runs etcd with https URLs and the certificate flags, the status
//! records the certificates' expiry, and a second pass rewrites no Secret.

mod support;

use std::sync::Arc;

use etcd_operator::api::EtcdCluster;
use etcd_operator::metrics::Metrics;
use etcd_operator::runtime::kubernetes::reconcile::{Context, reconcile};
use etcd_operator::runtime::kubernetes::resolver_from_args;
use etcd_operator::tls::pki::inspect;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, PostParams};
use serde_json::json;
use support::shared_kube::shared_kube;

fn data(secret: &Secret, key: &str) -> String {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .unwrap_or_else(|| panic!("{:?} has no {key}", secret.metadata.name));
    String::from_utf8(bytes.0.clone()).expect("utf-8")
}

#[tokio::test]
async fn tls_cluster_secrets_are_owned_and_mounted_and_args_are_https() {
    let k = shared_kube();
    let ns = k.namespace("tls").expect("namespace");
    let client = k.client().await.expect("client");
    let clusters: Api<EtcdCluster> = Api::namespaced(client.clone(), &ns);
    let obj: EtcdCluster = serde_json::from_value(json!({
        "apiVersion": "etcd.operator.dev/v1alpha1",
        "kind": "EtcdCluster",
        "metadata": {"name": "sec"},
        "spec": {"replicas": 3, "tls": {"client": {"enabled": true}, "peer": {"enabled": true}},
                 "auth": {"enabled": true}},
    }))
    .expect("an EtcdCluster");
    clusters
        .create(&PostParams::default(), &obj)
        .await
        .expect("create");
    let ctx = Arc::new(Context::new(
        client.clone(),
        Arc::new(Metrics::new()),
        resolver_from_args(&[]).expect("resolver"),
        5,
    ));
    let current = clusters.get("sec").await.expect("cluster");
    let uid = current.metadata.uid.clone().expect("uid");
    reconcile(Arc::new(current), ctx.clone())
        .await
        .expect("pass");

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let mut versions = Vec::new();
    let ca = secrets.get("sec-ca").await.expect("CA Secret");
    let ca_pem = data(&ca, "tls.crt");
    for name in [
        "sec-ca",
        "sec-server",
        "sec-peer",
        "sec-operator-client",
        "sec-root",
    ] {
        let s = secrets
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let owner = &s.metadata.owner_references.as_ref().expect("owned")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("EtcdCluster", uid.as_str())
        );
        assert_eq!(owner.controller, Some(true));
        if name == "sec-root" {
            assert_eq!(data(&s, "password").len(), 32);
        } else {
            assert_eq!(s.type_.as_deref(), Some("kubernetes.io/tls"), "{name}");
            assert_eq!(data(&s, "ca.crt"), ca_pem, "{name} carries the CA");
            assert!(data(&s, "tls.key").contains("PRIVATE KEY"), "{name}");
        }
        versions.push(s.metadata.resource_version.clone());
    }
    let server = secrets.get("sec-server").await.expect("server");
    let (_, sans) = inspect(&data(&server, "tls.crt"), "server").expect("a certificate");
    for want in [
        format!("sec-0.{ns}.svc.cluster.local"),
        format!("sec-2.{ns}.svc.cluster.local"),
        format!("sec-client.{ns}.svc"),
        "127.0.0.1".to_owned(),
    ] {
        assert!(sans.contains(&want), "{want} not in {sans:?}");
    }

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = pods.get("sec-0").await.expect("seed pod");
    let spec = pod.spec.expect("spec");
    let volumes = spec.volumes.expect("volumes");
    let secret_of = |v: &str| {
        volumes
            .iter()
            .find(|x| x.name == v)
            .and_then(|x| x.secret.as_ref())
            .unwrap_or_else(|| panic!("no volume {v} in {volumes:?}"))
    };
    assert_eq!(
        secret_of("tls-server").secret_name.as_deref(),
        Some("sec-server")
    );
    assert_eq!(
        secret_of("tls-peer").secret_name.as_deref(),
        Some("sec-peer")
    );
    let ca_volume = secret_of("tls-ca");
    assert_eq!(ca_volume.secret_name.as_deref(), Some("sec-ca"));
    // Only the CA's certificate reaches the Pod, never its key.
    let items = ca_volume.items.as_ref().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(
        (items[0].key.as_str(), items[0].path.as_str()),
        ("tls.crt", "ca.crt")
    );
    let c = &spec.containers[0];
    let mounts = c.volume_mounts.as_ref().expect("mounts");
    for (name, path) in [
        ("tls-ca", "/etc/etcd/tls/ca"),
        ("tls-server", "/etc/etcd/tls/server"),
        ("tls-peer", "/etc/etcd/tls/peer"),
    ] {
        let m = mounts
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name} not mounted: {mounts:?}"));
        assert_eq!((m.mount_path.as_str(), m.read_only), (path, Some(true)));
    }
    let args = c.args.as_ref().expect("args");
    for want in [
        "--listen-client-urls=https://0.0.0.0:2379".to_owned(),
        format!("--advertise-client-urls=https://sec-0.{ns}.svc.cluster.local:2379"),
        format!("--initial-cluster=sec-0=https://sec-0.{ns}.svc.cluster.local:2380"),
        "--cert-file=/etc/etcd/tls/server/tls.crt".to_owned(),
        "--trusted-ca-file=/etc/etcd/tls/ca/ca.crt".to_owned(),
        "--client-cert-auth=true".to_owned(),
        "--peer-client-cert-auth=true".to_owned(),
    ] {
        assert!(args.contains(&want), "{want} not in {args:?}");
    }

    let status = clusters
        .get_status("sec")
        .await
        .expect("status")
        .status
        .expect("a status");
    let tls = status.tls.expect("status.tls").not_after;
    assert!(tls.ca.is_some() && tls.server.is_some() && tls.peer.is_some() && tls.client.is_some());
    assert!(tls.ca > tls.server, "{tls:?}");

    // A second pass keeps every Secret as it is.
    let current = clusters.get("sec").await.expect("cluster");
    reconcile(Arc::new(current), ctx.clone())
        .await
        .expect("pass");
    let mut again = Vec::new();
    for name in [
        "sec-ca",
        "sec-server",
        "sec-peer",
        "sec-operator-client",
        "sec-root",
    ] {
        again.push(
            secrets
                .get(name)
                .await
                .expect("secret")
                .metadata
                .resource_version,
        );
    }
    assert_eq!(versions, again, "no Secret rewritten");
}

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
        ("ca.crt", "ca.crt")
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

/// With `tls.source.secrets` the Pod mounts the user's Secrets, the status reports their
/// expiry and the operator creates no certificate Secret of its own; a missing one stops the
/// pass with its name.
#[tokio::test]
async fn user_secrets_are_mounted_and_never_written() {
    use etcd_operator::tls::pki::{Kind, issue, new_ca};
    use k8s_openapi::ByteString;
    let k = shared_kube();
    let ns = k.namespace("tls-user").expect("namespace");
    let client = k.client().await.expect("client");
    let now = std::time::SystemTime::now();
    let ca = new_ca("mine", now).expect("CA");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let put = |name: &str, pairs: Vec<(&str, String)>| {
        let mut s = Secret::default();
        s.metadata.name = Some(name.to_owned());
        s.data = Some(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), ByteString(v.into_bytes())))
                .collect(),
        );
        s
    };
    secrets
        .create(
            &PostParams::default(),
            &put("my-ca", vec![("ca.crt", ca.cert_pem.clone())]),
        )
        .await
        .expect("ca");
    let server = issue(&ca, Kind::Server, "s", &["localhost".into()], now).expect("server");
    let me = issue(&ca, Kind::Client, "me", &[], now).expect("client");
    for (name, c) in [("my-server", &server), ("my-client", &me)] {
        secrets
            .create(
                &PostParams::default(),
                &put(
                    name,
                    vec![
                        ("tls.crt", c.cert_pem.clone()),
                        ("tls.key", c.key_pem.clone()),
                    ],
                ),
            )
            .await
            .expect("secret");
    }
    let clusters: Api<EtcdCluster> = Api::namespaced(client.clone(), &ns);
    let obj: EtcdCluster = serde_json::from_value(json!({
        "apiVersion": "etcd.operator.dev/v1alpha1",
        "kind": "EtcdCluster",
        "metadata": {"name": "mine"},
        "spec": {"replicas": 1, "tls": {"client": {"enabled": true}, "peer": {"enabled": true},
                 "source": {"secrets": {"ca": "my-ca", "server": "my-server", "peer": "my-peer",
                                        "operatorClient": "my-client"}}}},
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
    // Peer TLS is on and my-peer does not exist yet: the pass stops and names it.
    let current = clusters.get("mine").await.expect("cluster");
    let err = reconcile(Arc::new(current), ctx.clone())
        .await
        .expect_err("my-peer is missing");
    assert!(err.to_string().contains("my-peer: does not exist"), "{err}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    assert!(pods.get_opt("mine-0").await.expect("get").is_none());
    let status = clusters
        .get_status("mine")
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
        ("True", "CertificatesUnavailable")
    );
    assert!(degraded.message.contains("my-peer"), "{degraded:?}");

    let peer = issue(&ca, Kind::Peer, "p", &["localhost".into()], now).expect("peer");
    secrets
        .create(
            &PostParams::default(),
            &put(
                "my-peer",
                vec![
                    ("tls.crt", peer.cert_pem.clone()),
                    ("tls.key", peer.key_pem),
                ],
            ),
        )
        .await
        .expect("peer");
    let current = clusters.get("mine").await.expect("cluster");
    reconcile(Arc::new(current), ctx.clone())
        .await
        .expect("pass");
    let pod = pods.get("mine-0").await.expect("seed pod");
    let volumes = pod.spec.expect("spec").volumes.expect("volumes");
    let secret_name = |v: &str| {
        volumes
            .iter()
            .find(|x| x.name == v)
            .and_then(|x| x.secret.as_ref())
            .and_then(|s| s.secret_name.clone())
    };
    assert_eq!(secret_name("tls-ca").as_deref(), Some("my-ca"));
    assert_eq!(secret_name("tls-server").as_deref(), Some("my-server"));
    assert_eq!(secret_name("tls-peer").as_deref(), Some("my-peer"));
    for own in [
        "mine-ca",
        "mine-server",
        "mine-peer",
        "mine-operator-client",
    ] {
        assert!(
            secrets.get_opt(own).await.expect("get").is_none(),
            "{own} was created"
        );
    }
    let status = clusters
        .get_status("mine")
        .await
        .expect("status")
        .status
        .expect("a status");
    let (ca_validity, _) = inspect(&ca.cert_pem, "ca").expect("ca");
    assert_eq!(
        status.tls.expect("status.tls").not_after.ca,
        Some(etcd_operator::controller::clock::whole_seconds(
            ca_validity.not_after
        ))
    );
}

/// A paused TLS + auth cluster gets no Secret: nothing is written while paused, and the pass
/// says which Secret it lacks.
#[tokio::test]
async fn a_paused_cluster_gets_no_secrets() {
    let k = shared_kube();
    let ns = k.namespace("tls-paused").expect("namespace");
    let client = k.client().await.expect("client");
    let clusters: Api<EtcdCluster> = Api::namespaced(client.clone(), &ns);
    let obj: EtcdCluster = serde_json::from_value(json!({
        "apiVersion": "etcd.operator.dev/v1alpha1",
        "kind": "EtcdCluster",
        "metadata": {"name": "still"},
        "spec": {"paused": true, "tls": {"client": {"enabled": true}}, "auth": {"enabled": true}},
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
    let current = clusters.get("still").await.expect("cluster");
    let err = reconcile(Arc::new(current), ctx.clone())
        .await
        .expect_err("no certificates to read");
    assert!(
        err.to_string().contains("still-ca: does not exist"),
        "{err}"
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let list = secrets
        .list(&kube::api::ListParams::default())
        .await
        .expect("list");
    assert!(
        list.items.iter().all(|s| !s
            .metadata
            .name
            .as_deref()
            .is_some_and(|n| n.starts_with("still-"))),
        "{:?}",
        list.items
            .iter()
            .map(|s| s.metadata.name.clone())
            .collect::<Vec<_>>()
    );
}

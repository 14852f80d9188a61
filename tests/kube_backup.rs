//! Scheduled snapshots in the Kubernetes runtime, against a real kube-apiserver (no kubelet: a
//! real etcd on loopback stands in for the seed Pod) and a real S3 server (versitygw).
//!
//! A 1-member cluster whose `spec.backup` names a credentials Secret that does not exist gets
//! `status.backup.lastError` naming the Secret and no object in the bucket; once the Secret is
//! created, the controller reads it (a `get` in the cluster's namespace), streams a snapshot to
//! the bucket, records it in the status (its SHA-256 the object's), publishes an Event and counts
//! it in the metrics. A local folder is refused with the reason, nothing attempted.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_operator::api::EtcdCluster;
use etcd_operator::controller::backup::target::FOLDER_REFUSED;
use etcd_operator::metrics::Metrics;
use etcd_operator::runtime::kubernetes::reconcile::{Context, reconcile};
use etcd_operator::runtime::kubernetes::resolver_from_args;
use etcd_operator::snapshot_store::SnapshotStore;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::shared_kube::{etcd_cluster as cluster, shared_kube};
use support::stores::{BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY, S3Server};

const DEADLINE: Duration = Duration::from_secs(90);

#[tokio::test]
async fn a_schedule_to_s3_reads_its_secret_and_records_the_snapshot() {
    let server = S3Server::start().expect("versitygw");
    let k = shared_kube();
    let ns = k.namespace("backup").expect("namespace");
    let client = k.client().await.expect("client");
    let clusters: Api<EtcdCluster> = Api::namespaced(client.clone(), &ns);
    clusters
        .create(
            &PostParams::default(),
            &cluster(
                "demo",
                json!({"replicas": 1, "backup": {"every": "1h", "keep": 2, "destination": {
                    "s3": {"bucket": BUCKET, "endpoint": server.endpoint()},
                    "credentialsSecret": "s3-creds"}}}),
            ),
        )
        .await
        .expect("create");
    let host = format!("demo-0.{ns}.svc.cluster.local");
    let seed = support::etcd::EtcdCluster::builder()
        .members(1)
        .flag("--name=demo-0")
        .flag(format!("--advertise-client-urls=http://{host}:2379"))
        .flag(format!("--initial-advertise-peer-urls=http://{host}:2380"))
        .flag(format!("--initial-cluster=demo-0=http://{host}:2380"))
        .start()
        .expect("the stand-in etcd");
    let port = seed.member(0).client_port;
    let resolver =
        resolver_from_args(&[format!("{host}:2379=127.0.0.1:{port}")]).expect("resolver");
    let metrics = Arc::new(Metrics::new());
    let ctx = Arc::new(Context::new(client.clone(), metrics.clone(), resolver, 5));
    let pass = || async {
        let current = clusters.get("demo").await.expect("cluster");
        reconcile(Arc::new(current), ctx.clone()).await
    };
    let status = || async {
        clusters
            .get("demo")
            .await
            .expect("cluster")
            .status
            .unwrap_or_default()
    };

    // The seed Pod is created and "started"; the cluster answers; the snapshot is due at once.
    let _ = pass().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pods.patch_status(
        "demo-0",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running"}})),
    )
    .await
    .expect("pod status");
    let deadline = Instant::now() + DEADLINE;
    let failed = loop {
        let result = pass().await;
        let s = status().await;
        if s.backup
            .as_ref()
            .is_some_and(|b| b.consecutive_failures >= 1)
        {
            assert!(result.is_err(), "a failed snapshot fails the pass");
            break s;
        }
        assert!(Instant::now() < deadline, "no snapshot attempt: {s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let b = failed.backup.clone().expect("backup status");
    let error = b.last_error.clone().expect("lastError");
    assert!(
        error.contains(&format!("Secret {ns}/s3-creds"))
            && error.contains("does not exist")
            && error.contains("no snapshot was attempted"),
        "{error}"
    );
    assert!(
        b.last_snapshot.is_none() && b.next_attempt.is_some(),
        "{b:?}"
    );
    let degraded = failed
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .expect("Degraded");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "BackupFailing")
    );
    let store = SnapshotStore::open(&server.config(&format!("{ns}/demo"))).expect("store");
    assert!(store.list().await.expect("list").is_empty());

    // The Secret is created (stringData, as people write it): the next attempt after the
    // back-off stores the snapshot.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let mut data = BTreeMap::new();
    data.insert("accessKeyId".to_owned(), S3_ACCESS_KEY.to_owned());
    data.insert("secretAccessKey".to_owned(), S3_SECRET_KEY.to_owned());
    secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: kube::api::ObjectMeta {
                    name: Some("s3-creds".into()),
                    ..Default::default()
                },
                string_data: Some(data),
                ..Default::default()
            },
        )
        .await
        .expect("secret");
    let deadline = Instant::now() + DEADLINE;
    let done = loop {
        let _ = pass().await;
        let s = status().await;
        if s.backup.as_ref().is_some_and(|b| b.last_snapshot.is_some()) {
            break s;
        }
        assert!(Instant::now() < deadline, "no snapshot stored: {s:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let b = done.backup.clone().expect("backup status");
    assert!(
        b.last_error.is_none() && b.consecutive_failures == 0,
        "{b:?}"
    );
    let l = b.last_snapshot.expect("last snapshot");
    assert!(
        l.location
            .starts_with(&format!("s3://{BUCKET}/{ns}/demo/demo-")),
        "{l:?}"
    );
    assert_eq!(l.member, "demo-0");
    assert_eq!(l.etcd_version, "3.5.16");
    assert_eq!(Some(l.cluster_id.clone()), done.cluster_id);
    let listed = store.list().await.expect("list");
    assert_eq!(
        listed.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
        [l.name.as_str()]
    );
    let dir = support::temp_dir("kube-backup").expect("temp dir");
    let got = store
        .download_to_file(&l.name, dir.path().join("s.db"))
        .await
        .expect("download");
    assert_eq!(got.sha256, l.sha256);
    assert_eq!(i64::try_from(got.size).expect("size"), l.size);
    assert!(
        done.conditions
            .iter()
            .any(|c| c.type_ == "Degraded" && c.status == "False"),
        "{:?}",
        done.conditions
    );

    // Not due again for an hour: further passes take none.
    for _ in 0..3 {
        pass().await.expect("an idle pass");
    }
    assert_eq!(store.list().await.expect("list").len(), 1);

    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert!(reasons.iter().any(|r| r == "BackupFailed"), "{reasons:?}");
    assert!(reasons.iter().any(|r| r == "SnapshotTaken"), "{reasons:?}");
    let text = metrics.encode();
    let labels = format!("{{namespace=\"{ns}\",cluster=\"demo\"}}");
    assert!(
        text.contains(&format!("etcd_operator_backups_total{labels} 1")),
        "{text}"
    );
    assert!(
        text.contains(&format!("etcd_operator_backup_failures_total{labels}")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "etcd_operator_backup_last_size_bytes{labels} {}",
            l.size
        )),
        "{text}"
    );
}

#[tokio::test]
async fn a_local_folder_is_refused_in_kubernetes() {
    let k = shared_kube();
    let ns = k.namespace("backup-folder").expect("namespace");
    let client = k.client().await.expect("client");
    let clusters: Api<EtcdCluster> = Api::namespaced(client.clone(), &ns);
    clusters
        .create(
            &PostParams::default(),
            &cluster(
                "fold",
                json!({"replicas": 1, "backup": {"every": "1h", "directory": "/var/backups"}}),
            ),
        )
        .await
        .expect("create");
    let ctx = Arc::new(Context::new(
        client.clone(),
        Arc::new(Metrics::new()),
        resolver_from_args(&[]).expect("resolver"),
        5,
    ));
    let current = clusters.get("fold").await.expect("cluster");
    let _ = reconcile(Arc::new(current), ctx).await;
    let s = clusters
        .get("fold")
        .await
        .expect("cluster")
        .status
        .expect("status");
    let b = s.backup.expect("backup status");
    assert_eq!(b.last_error.as_deref(), Some(FOLDER_REFUSED));
    assert_eq!(b.consecutive_failures, 0, "nothing is attempted");
    assert!(
        s.conditions
            .iter()
            .any(|c| c.type_ == "Degraded" && c.status == "True" && c.reason == "BackupFailing"),
        "{:?}",
        s.conditions
    );
}

//! Verification of snapshots in the Kubernetes runtime, against a real kube-apiserver (no
//! kubelet: a real etcd on loopback stands in for the seed Pod, and the test sets the
//! verification Pod's phase and termination message itself) and a real S3 server (versitygw).
//!
//! With `--operator-image`, once a snapshot is recorded the next pass creates the verification
//! Pod (`<cluster>-verify`, annotated with the object) and the passes after it wait ("not yet");
//! when the Pod reports the recorded revision and SHA-256 the verification is recorded as passed
//! and the Pod deleted. The next snapshot's Pod reporting another SHA-256 is recorded as failed,
//! with `Degraded`/`BackupVerificationFailed` and a warning Event.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_operator::api::{EtcdCluster, EtcdClusterStatus, VerificationResult};
use etcd_operator::metrics::Metrics;
use etcd_operator::runtime::kubernetes::reconcile::{Context, reconcile};
use etcd_operator::runtime::kubernetes::resolver_from_args;
use etcd_operator::runtime::kubernetes::verify::ANNOTATION_VERIFY_OBJECT;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::shared_kube::{etcd_cluster as cluster, shared_kube};
use support::stores::{BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY, S3Server};

const DEADLINE: Duration = Duration::from_secs(90);

fn report(pod: &str, message: &str, phase: &str) -> serde_json::Value {
    json!({"status": {"phase": phase, "containerStatuses": [
        {"name": "verify", "ready": false, "restartCount": 0, "image": "etcd", "imageID": "",
         "state": {"terminated": {"exitCode": i32::from(phase != "Succeeded"),
                                  "message": message}}}]},
           "metadata": {"name": pod}})
}

#[tokio::test]
async fn a_snapshot_is_verified_by_a_pod_and_a_wrong_report_fails() {
    let server = S3Server::start().expect("versitygw");
    let k = shared_kube();
    let ns = k.namespace("verify").expect("namespace");
    let client = k.client().await.expect("client");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let data = BTreeMap::from([
        ("accessKeyId".to_owned(), S3_ACCESS_KEY.to_owned()),
        ("secretAccessKey".to_owned(), S3_SECRET_KEY.to_owned()),
    ]);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "s3-creds"}, "stringData": data,
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    let clusters: Api<EtcdCluster> = Api::namespaced(client.clone(), &ns);
    clusters
        .create(
            &PostParams::default(),
            &cluster(
                "demo",
                json!({"replicas": 1, "backup": {"every": "10s", "keep": 2, "destination": {
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
    let ctx = Arc::new(
        Context::new(client.clone(), metrics.clone(), resolver, 5)
            .with_operator_image(Some("etcd-operator:test".to_owned())),
    );
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
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let _ = pass().await;
    pods.patch_status(
        "demo-0",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running"}})),
    )
    .await
    .expect("pod status");

    // Until a snapshot is recorded and its verification Pod exists.
    let until = |what: &'static str, cond: fn(&EtcdClusterStatus, Option<&Pod>) -> bool| {
        let pass = &pass;
        let status = &status;
        let pods = &pods;
        async move {
            let deadline = Instant::now() + DEADLINE;
            loop {
                let _ = pass().await;
                let s = status().await;
                let pod = pods.get_opt("demo-verify").await.expect("get");
                if cond(&s, pod.as_ref()) {
                    return (s, pod);
                }
                assert!(Instant::now() < deadline, "{what}: {s:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let (s, pod) = until("a verification Pod", |s, p| {
        s.backup.as_ref().is_some_and(|b| b.last_snapshot.is_some()) && p.is_some()
    })
    .await;
    let last = s
        .backup
        .and_then(|b| b.last_snapshot)
        .expect("last snapshot");
    let pod = pod.expect("pod");
    assert_eq!(
        pod.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_VERIFY_OBJECT)),
        Some(&last.name)
    );
    // It runs: passes wait, nothing recorded, the Pod stays.
    for _ in 0..2 {
        let _ = pass().await;
    }
    let s = status().await;
    assert!(
        s.backup
            .as_ref()
            .is_some_and(|b| b.last_verification.is_none()),
        "{s:?}"
    );
    assert!(pods.get_opt("demo-verify").await.expect("get").is_some());

    // The kubelet's part, by hand: the report of what the throwaway etcd served.
    let line = format!("revision={} keys=3 sha256={}\n", last.revision, last.sha256);
    pods.patch_status(
        "demo-verify",
        &PatchParams::default(),
        &Patch::Merge(report("demo-verify", &line, "Succeeded")),
    )
    .await
    .expect("verify status");
    let started = Instant::now();
    let (s, _) = until("a recorded verification", |s, p| {
        p.is_none()
            && s.backup
                .as_ref()
                .is_some_and(|b| b.last_verification.is_some())
    })
    .await;
    let v = s
        .backup
        .as_ref()
        .and_then(|b| b.last_verification.clone())
        .expect("verification");
    eprintln!(
        "measured: recorded {:.1} s after the Pod reported: {}",
        started.elapsed().as_secs_f64(),
        v.message
    );
    assert_eq!(v.result, VerificationResult::Passed, "{v:?}");
    assert_eq!(v.name, last.name);
    assert_eq!((v.revision, v.keys), (Some(last.revision), Some(3)));

    // The next snapshot's Pod reports another SHA-256: failed, Degraded, a warning Event.
    let (_, pod) = until("the next verification Pod", |s, p| {
        p.is_some()
            && s.backup
                .as_ref()
                .and_then(|b| b.last_snapshot.as_ref())
                .is_some_and(|l| l.sequence >= 2)
    })
    .await;
    let object = pod
        .and_then(|p| p.metadata.annotations)
        .and_then(|a| a.get(ANNOTATION_VERIFY_OBJECT).cloned())
        .expect("object");
    pods.patch_status(
        "demo-verify",
        &PatchParams::default(),
        &Patch::Merge(report(
            "demo-verify",
            "revision=1 keys=0 sha256=00ff",
            "Succeeded",
        )),
    )
    .await
    .expect("verify status");
    let (s, _) = until("a failed verification", |s, p| {
        p.is_none()
            && s.backup
                .as_ref()
                .and_then(|b| b.last_verification.as_ref())
                .is_some_and(|v| v.result == VerificationResult::Failed)
    })
    .await;
    let v = s
        .backup
        .as_ref()
        .and_then(|b| b.last_verification.clone())
        .expect("verification");
    assert_eq!(v.name, object);
    assert!(v.message.contains("SHA-256 00ff"), "{v:?}");
    let degraded = s
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .expect("Degraded");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "BackupVerificationFailed"),
        "{degraded:?}"
    );
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert!(
        reasons.iter().any(|r| r == "SnapshotVerified"),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r == "SnapshotVerificationFailed"),
        "{reasons:?}"
    );
    let text = metrics.encode();
    assert!(
        text.contains("etcd_operator_backup_verifications_total{")
            && text.contains("result=\"failed\"")
            && text.contains("result=\"passed\""),
        "{text}"
    );
}

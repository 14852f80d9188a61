//! Restores in the Kubernetes runtime, against a real kube-apiserver (no kubelet: the tests set
//! the restore Pods' phases through the status subresource) and a real S3 server (versitygw,
//! which the object is listed from).
//!
//! A cluster of 3 restored from S3 gets 3 PVCs (annotated with the object), 3 member Services
//! and 3 restore Pods (credentials by `secretKeyRef` only, etcdutl naming every member) and no
//! member Pod; once every restore Pod succeeded the next pass creates the 3 member Pods and
//! deletes the restore Pods. A failed restore Pod's termination message is the cluster's
//! `Degraded`/`RestoreFailed` reason, and no member Pod is created. Without `--operator-image`
//! a restore is refused, nothing created.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use etcd_operator::api::EtcdCluster;
use etcd_operator::metrics::Metrics;
use etcd_operator::runtime::kubernetes::reconcile::{Context, reconcile};
use etcd_operator::runtime::kubernetes::resolver_from_args;
use etcd_operator::runtime::kubernetes::restore::ANNOTATION_RESTORE_OBJECT;
use etcd_operator::snapshot_store::SnapshotStore;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use sha2::Digest;
use support::shared_kube::shared_kube;
use support::stores::{BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY, S3Server};
use tokio::io::AsyncWriteExt;

const OBJECT: &str = "manual.db";
const IMAGE: &str = "etcd-operator:test";

fn cluster(name: &str, endpoint: &str) -> EtcdCluster {
    serde_json::from_value(json!({
        "apiVersion": "etcd.operator.dev/v1alpha1",
        "kind": "EtcdCluster",
        "metadata": {"name": name},
        "spec": {"replicas": 3, "bootstrap": {"restore": {
            "destination": {"s3": {"bucket": BUCKET, "endpoint": endpoint},
                            "credentialsSecret": "s3-creds"},
            "object": OBJECT}}},
    }))
    .expect("an EtcdCluster")
}

/// A namespace with the credentials Secret, and `OBJECT` under the prefix of every cluster in
/// `names`.
struct Setup {
    client: kube::Client,
    ns: String,
    server: S3Server,
}

async fn setup(prefix: &str, names: &[&str]) -> Setup {
    let server = S3Server::start().expect("versitygw");
    let k = shared_kube();
    // Unique: the API server may be shared with other suites and earlier runs.
    let ns = k
        .namespace(&format!("{prefix}-{}", std::process::id()))
        .expect("namespace");
    let client = k.client().await.expect("client");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let data = BTreeMap::from([
        ("accessKeyId".to_owned(), S3_ACCESS_KEY.to_owned()),
        ("secretAccessKey".to_owned(), S3_SECRET_KEY.to_owned()),
    ]);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "s3-creds"}, "stringData": data,
    }))
    .expect("a Secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    for name in names {
        let store = SnapshotStore::open(&server.config(&format!("{ns}/{name}"))).expect("store");
        let mut up = store.upload(OBJECT).await.expect("upload");
        // Whole pages and their SHA-256, as a snapshot is stored; nothing fetches it here.
        let mut bytes = vec![7u8; 4096];
        let digest = sha2::Sha256::digest(&bytes);
        bytes.extend_from_slice(&digest);
        up.write_all(&bytes).await.expect("write");
        up.commit().await.expect("commit");
    }
    Setup { client, ns, server }
}

fn ctx(client: &kube::Client, image: Option<&str>) -> Arc<Context> {
    let resolver = resolver_from_args(&[]).expect("resolver");
    Arc::new(
        Context::new(client.clone(), Arc::new(Metrics::new()), resolver, 5)
            .with_operator_image(image.map(str::to_owned)),
    )
}

async fn pass(clusters: &Api<EtcdCluster>, name: &str, ctx: &Arc<Context>) -> Result<(), String> {
    let current = clusters.get(name).await.expect("cluster");
    reconcile(Arc::new(current), ctx.clone())
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn list<K>(api: &Api<K>, selector: &str) -> Vec<K>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list(&ListParams::default().labels(selector))
        .await
        .expect("list")
        .items
}

fn selector(name: &str, component: &str) -> String {
    format!("app.kubernetes.io/instance={name},app.kubernetes.io/component={component}")
}

fn names<K: kube::Resource>(items: &[K]) -> Vec<String> {
    let mut v: Vec<String> = items.iter().filter_map(|i| i.meta().name.clone()).collect();
    v.sort();
    v
}

async fn set_phase(pods: &Api<Pod>, name: &str, status: serde_json::Value) {
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .expect("pod status");
}

fn restore_failed(c: &EtcdCluster) -> Option<String> {
    c.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded" && c.status == "True" && c.reason == "RestoreFailed")
        .map(|c| c.message.clone())
}

#[tokio::test]
async fn restore_pods_run_first_then_every_member_starts() {
    let s = setup("restore-ok", &["demo"]).await;
    let ns = &s.ns;
    let clusters: Api<EtcdCluster> = Api::namespaced(s.client.clone(), ns);
    clusters
        .create(
            &PostParams::default(),
            &cluster("demo", &s.server.endpoint()),
        )
        .await
        .expect("create");
    let ctx = ctx(&s.client, Some(IMAGE));
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), ns);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(s.client.clone(), ns);
    let services: Api<Service> = Api::namespaced(s.client.clone(), ns);

    pass(&clusters, "demo", &ctx).await.expect("first pass");
    let claims = list(&pvcs, &selector("demo", "member")).await;
    assert_eq!(names(&claims), ["demo-0", "demo-1", "demo-2"]);
    for c in &claims {
        let ann = c.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            ann.get(ANNOTATION_RESTORE_OBJECT).map(String::as_str),
            Some(OBJECT)
        );
    }
    for o in 0..3 {
        services
            .get(&format!("demo-{o}"))
            .await
            .expect("member Service");
    }
    assert!(list(&pods, &selector("demo", "member")).await.is_empty());
    let restores = list(&pods, &selector("demo", "restore")).await;
    assert_eq!(
        names(&restores),
        ["demo-0-restore", "demo-1-restore", "demo-2-restore"]
    );
    let peers: Vec<String> = (0..3)
        .map(|o| format!("demo-{o}=http://demo-{o}.{ns}.svc.cluster.local:2380"))
        .collect();
    for p in &restores {
        let spec = p.spec.clone().expect("spec");
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        let fetch = &spec.init_containers.expect("init containers")[0];
        assert_eq!(fetch.image.as_deref(), Some(IMAGE));
        let env = fetch.env.clone().unwrap_or_default();
        assert!(!env.is_empty());
        for e in &env {
            assert!(e.value.is_none(), "{e:?}");
            let r = e
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .expect("secretKeyRef");
            assert_eq!(r.name, "s3-creds");
        }
        let args = fetch.args.clone().unwrap_or_default().join(" ");
        for secret in [S3_ACCESS_KEY, S3_SECRET_KEY, "s3-creds"] {
            assert!(!args.contains(secret), "{secret} in {args}");
        }
        assert!(args.contains(OBJECT), "{args}");
        let restore = spec.containers[0]
            .command
            .clone()
            .unwrap_or_default()
            .join(" ");
        assert!(
            restore.contains(&format!("--initial-cluster={}", peers.join(","))),
            "{restore}"
        );
    }

    // Still running: nothing changes, no member Pod.
    let uids: Vec<_> = restores.iter().map(|p| p.metadata.uid.clone()).collect();
    pass(&clusters, "demo", &ctx).await.expect("second pass");
    let again = list(&pods, &selector("demo", "restore")).await;
    let mut again_uids: Vec<_> = again.iter().map(|p| p.metadata.uid.clone()).collect();
    let mut want = uids.clone();
    again_uids.sort();
    want.sort();
    assert_eq!(again_uids, want);
    assert!(list(&pods, &selector("demo", "member")).await.is_empty());

    for p in &restores {
        let name = p.metadata.name.clone().expect("name");
        set_phase(&pods, &name, json!({"phase": "Succeeded"})).await;
    }
    pass(&clusters, "demo", &ctx).await.expect("finishing pass");
    let members = list(&pods, &selector("demo", "member")).await;
    assert_eq!(names(&members), ["demo-0", "demo-1", "demo-2"]);
    for m in &members {
        let args = m.spec.clone().expect("spec").containers[0]
            .command
            .clone()
            .unwrap_or_default()
            .into_iter()
            .chain(
                m.spec.clone().expect("spec").containers[0]
                    .args
                    .clone()
                    .unwrap_or_default(),
            )
            .collect::<Vec<_>>()
            .join(" ");
        assert!(args.contains(&peers.join(",")), "{args}");
    }
    assert!(list(&pods, &selector("demo", "restore")).await.is_empty());
    for c in list(&pvcs, &selector("demo", "member")).await {
        let ann = c.metadata.annotations.clone().unwrap_or_default();
        assert!(!ann.contains_key(ANNOTATION_RESTORE_OBJECT), "{ann:?}");
    }

    // The members exist: no restore again.
    let _ = pass(&clusters, "demo", &ctx).await;
    assert!(list(&pods, &selector("demo", "restore")).await.is_empty());
    assert_eq!(list(&pods, &selector("demo", "member")).await.len(), 3);
    let c = clusters.get("demo").await.expect("cluster");
    assert_eq!(restore_failed(&c), None);
}

#[tokio::test]
async fn a_failed_restore_pod_is_reported_and_starts_nothing() {
    let s = setup("restore-failed", &["bad"]).await;
    let clusters: Api<EtcdCluster> = Api::namespaced(s.client.clone(), &s.ns);
    clusters
        .create(
            &PostParams::default(),
            &cluster("bad", &s.server.endpoint()),
        )
        .await
        .expect("create");
    let ctx = ctx(&s.client, Some(IMAGE));
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &s.ns);
    pass(&clusters, "bad", &ctx).await.expect("first pass");
    assert_eq!(list(&pods, &selector("bad", "restore")).await.len(), 3);
    set_phase(&pods, "bad-0-restore", json!({"phase": "Succeeded"})).await;
    let words = "fetching s3://backups/x/manual.db: the SHA-256 does not match";
    set_phase(
        &pods,
        "bad-1-restore",
        json!({"phase": "Failed", "initContainerStatuses": [{
            "name": "fetch", "ready": false, "restartCount": 0, "image": IMAGE, "imageID": "",
            "state": {"terminated": {"exitCode": 1, "reason": "Error", "message": words}}}]}),
    )
    .await;
    for _ in 0..2 {
        let err = pass(&clusters, "bad", &ctx)
            .await
            .expect_err("a failed restore fails the pass");
        assert!(err.contains(words), "{err}");
        let c = clusters.get("bad").await.expect("cluster");
        let why = restore_failed(&c).expect("RestoreFailed");
        assert!(
            why.contains(words) && why.contains("bad-1-restore"),
            "{why}"
        );
        assert!(list(&pods, &selector("bad", "member")).await.is_empty());
        assert_eq!(list(&pods, &selector("bad", "restore")).await.len(), 3);
    }
}

#[tokio::test]
async fn without_an_operator_image_a_restore_is_refused() {
    let s = setup("restore-noimage", &[]).await;
    let clusters: Api<EtcdCluster> = Api::namespaced(s.client.clone(), &s.ns);
    clusters
        .create(
            &PostParams::default(),
            &cluster("noimg", &s.server.endpoint()),
        )
        .await
        .expect("create");
    let ctx = ctx(&s.client, None);
    let _ = pass(&clusters, "noimg", &ctx).await;
    let c = clusters.get("noimg").await.expect("cluster");
    let why = restore_failed(&c).expect("RestoreFailed");
    assert!(why.contains("--operator-image"), "{why}");
    assert_eq!(
        c.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Degraded")
    );
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &s.ns);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(s.client.clone(), &s.ns);
    assert!(
        list(&pods, "app.kubernetes.io/instance=noimg")
            .await
            .is_empty()
    );
    assert!(
        list(&pvcs, "app.kubernetes.io/instance=noimg")
            .await
            .is_empty()
    );
}

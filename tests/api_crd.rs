//! The `EtcdCluster` CRD against a real kube-apiserver: `crds/` is what `etcd-operator crd`
//! prints, kubectl accepts it, `kubectl explain` shows the field docs, `kubectl get` shows the
//! printer columns, and the apiserver rejects invalid manifests (schema and CEL rules,
//! including transition rules on updates) with messages a person understands, while accepting
//! the valid changes next to them.
//!
//! All tests share one control plane (see `support::shared_kube`), each in its own namespace.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use support::shared_kube::shared_kube;

fn resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "etcd.operator.dev",
        "v1alpha1",
        "EtcdCluster",
    ))
}

fn manifest(name: &str, spec: Value) -> DynamicObject {
    let v = json!({
        "apiVersion": "etcd.operator.dev/v1alpha1",
        "kind": "EtcdCluster",
        "metadata": {"name": name},
        "spec": spec,
    });
    serde_json::from_value(v).expect("a DynamicObject")
}

fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p.clone(),
    }
}

async fn api(ns: &str) -> Api<DynamicObject> {
    let client = shared_kube().client().await.expect("client");
    Api::namespaced_with(client, ns, &resource())
}

fn rejection(result: Result<DynamicObject, kube::Error>) -> String {
    match result {
        Ok(obj) => panic!("accepted: {:?}", obj.data),
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "not an Invalid answer: {status:?}");
            status.message
        }
        Err(e) => panic!("not an API rejection: {e}"),
    }
}

#[test]
fn crds_folder_matches_the_generated_crds() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_etcd-operator"))
        .arg("crd")
        .output()
        .expect("running etcd-operator crd");
    assert!(out.status.success(), "etcd-operator crd failed: {out:?}");
    let generated = String::from_utf8(out.stdout).expect("utf-8");
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/etcdclusters.etcd.operator.dev.yaml");
    let checked_in = std::fs::read_to_string(&path).expect("reading crds/");
    // `hack/sync-crds.sh` writes one file per CRD, without the document separator.
    let generated_doc = generated.strip_prefix("---\n").unwrap_or(&generated);
    assert!(
        generated_doc == checked_in,
        "{} is out of date: run hack/sync-crds.sh",
        path.display()
    );
    assert!(generated.contains("x-kubernetes-validations"));
}

#[test]
fn kubectl_explain_prints_the_field_docs() {
    let k = shared_kube();
    // The OpenAPI document the apiserver publishes for a new CRD lags its establishment.
    let deadline = Instant::now() + Duration::from_secs(90);
    let text = loop {
        match k.kubectl(&["explain", "etcdcluster.spec.replicas"]) {
            Ok(t) if t.contains("Number of voting members") => break t,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "explain never showed the doc: {other:?}"
                );
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    };
    assert!(text.contains("1 to 9"), "{text}");
    let storage = k
        .kubectl(&["explain", "etcdcluster.spec.storage"])
        .expect("explain storage");
    assert!(storage.contains("ephemeral"), "{storage}");
    assert!(storage.contains("storageClassName"), "{storage}");
}

#[tokio::test]
async fn kubectl_get_shows_the_printer_columns() {
    let k = shared_kube();
    let ns = k.namespace("printer").expect("namespace");
    k.kubectl_with_manifest(
        "apply",
        "apiVersion: etcd.operator.dev/v1alpha1\nkind: EtcdCluster\nmetadata:\n  name: demo\nspec:\n  replicas: 3\n",
        &["-n", &ns],
    )
    .expect("apply");
    let status = json!({"status": {
        "phase": "Healthy",
        "readyMembers": 3,
        "memberSummary": "3/3",
        "leader": "demo-1",
        "currentVersion": "3.5.16",
        "conditions": [{"type": "Available", "status": "True", "reason": "QuorumHealthy", "message": "3 of 3"}],
    }});
    k.kubectl(&[
        "patch",
        "-n",
        &ns,
        "etcdcluster",
        "demo",
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ])
    .expect("status patch");
    let out = k.kubectl(&["get", "-n", &ns, "etcdclusters"]).expect("get");
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "READY", "MEMBERS", "VERSION", "LEADER", "PHASE", "AGE"
        ],
        "{out}"
    );
    let row: Vec<&str> = lines.next().expect("row").split_whitespace().collect();
    assert_eq!(
        &row[..6],
        ["demo", "True", "3/3", "3.5.16", "demo-1", "Healthy"],
        "{out}"
    );
    // The defaults were applied by the apiserver.
    let spec = k
        .kubectl(&[
            "get",
            "-n",
            &ns,
            "etcd",
            "demo",
            "-o",
            "jsonpath={.spec.version} {.spec.storage.size}",
        ])
        .expect("get spec");
    assert_eq!(spec.trim(), "3.6.16 8Gi");
    // The scale subresource.
    k.kubectl(&["scale", "-n", &ns, "etcdcluster/demo", "--replicas=5"])
        .expect("scale");
    let replicas = k
        .kubectl(&[
            "get",
            "-n",
            &ns,
            "etcd",
            "demo",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
        .expect("get replicas");
    assert_eq!(replicas.trim(), "5");
}

/// Manifests the apiserver must refuse on creation, with a fragment of the expected message.
fn invalid_on_create() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        (
            "replicas-zero",
            json!({"replicas": 0}),
            "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1",
        ),
        (
            "replicas-ten",
            json!({"replicas": 10}),
            "should be less than or equal to 9",
        ),
        (
            "version-short",
            json!({"version": "3.5"}),
            "spec.version in body should match",
        ),
        (
            "version-v",
            json!({"version": "v3.5.16"}),
            "spec.version in body should match",
        ),
        (
            "version-word",
            json!({"version": "latest"}),
            "spec.version in body should match",
        ),
        (
            "image-empty",
            json!({"image": ""}),
            "spec.image in body should be at least 1 chars long",
        ),
        (
            "flag-data-dir",
            json!({"etcd": {"extraFlags": ["--data-dir=/tmp"]}}),
            "etcd.extraFlags cannot set flags the operator owns",
        ),
        (
            "flag-initial-cluster",
            json!({"etcd": {"extraFlags": ["--log-level=info", "--initial-cluster=a=http://x:2380"]}}),
            "etcd.extraFlags cannot set flags the operator owns",
        ),
        (
            "flag-name",
            json!({"etcd": {"extraFlags": ["--name"]}}),
            "etcd.extraFlags cannot set flags the operator owns",
        ),
        (
            "flag-force-new",
            json!({"etcd": {"extraFlags": ["--force-new-cluster=true"]}}),
            "etcd.extraFlags cannot set flags the operator owns",
        ),
        (
            "flag-typed",
            json!({"etcd": {"extraFlags": ["--quota-backend-bytes=1"]}}),
            "use the field",
        ),
        (
            "flag-malformed",
            json!({"etcd": {"extraFlags": ["log-level=debug"]}}),
            "spec.etcd.extraFlags[0] in body should match",
        ),
        (
            "compaction-mode",
            json!({"etcd": {"autoCompactionMode": "hourly"}}),
            "etcd.autoCompactionMode must be periodic or revision",
        ),
        (
            "compaction-retention",
            json!({"etcd": {"autoCompactionRetention": "an hour"}}),
            "spec.etcd.autoCompactionRetention in body should match",
        ),
        (
            "revision-retention",
            json!({"etcd": {"autoCompactionMode": "revision", "autoCompactionRetention": "1h"}}),
            "must be a number of revisions",
        ),
        (
            "heartbeat-zero",
            json!({"etcd": {"heartbeatIntervalMs": 0}}),
            "spec.etcd.heartbeatIntervalMs in body should be greater than or equal to 10",
        ),
        (
            "election-short",
            json!({"etcd": {"heartbeatIntervalMs": 300, "electionTimeoutMs": 1000}}),
            "must be at least 5 times",
        ),
        (
            "quota-negative",
            json!({"etcd": {"quotaBackendBytes": -5}}),
            "spec.etcd.quotaBackendBytes in body should be greater than or equal to 1048576",
        ),
        (
            "snapshot-zero",
            json!({"etcd": {"snapshotCount": 0}}),
            "spec.etcd.snapshotCount in body should be greater than or equal to 1",
        ),
        (
            "label-instance",
            json!({"podTemplate": {"labels": {"app.kubernetes.io/instance": "other"}}}),
            "podTemplate.labels cannot set the operator's labels",
        ),
        (
            "label-prefix",
            json!({"podTemplate": {"labels": {"etcd.operator.dev/member": "x"}}}),
            "podTemplate.labels cannot set the operator's labels",
        ),
        (
            "annotation-prefix",
            json!({"podTemplate": {"annotations": {"etcd.operator.dev/intent": "x"}}}),
            "reserved prefix etcd.operator.dev/",
        ),
        (
            "ephemeral-class",
            json!({"storage": {"ephemeral": true, "storageClassName": "fast"}}),
            "ephemeral members have no volume",
        ),
        (
            "replicas-string",
            json!({"replicas": "three"}),
            "spec.replicas: Invalid value: \"string\"",
        ),
        (
            "fragmentation-100",
            json!({"maintenance": {"defragmentation": {"maxFragmentationPercent": 100}}}),
            "spec.maintenance.defragmentation.maxFragmentationPercent in body should be less than or equal to 99",
        ),
        (
            "fragmentation-zero",
            json!({"maintenance": {"defragmentation": {"maxFragmentationPercent": 0}}}),
            "spec.maintenance.defragmentation.maxFragmentationPercent in body should be greater than or equal to 1",
        ),
        (
            "min-db-size-negative",
            json!({"maintenance": {"defragmentation": {"minDbSizeBytes": -1}}}),
            "spec.maintenance.defragmentation.minDbSizeBytes in body should be greater than or equal to 0",
        ),
        (
            "handle-no-space-string",
            json!({"maintenance": {"alarms": {"handleNoSpace": "yes"}}}),
            "spec.maintenance.alarms.handleNoSpace: Invalid value: \"string\"",
        ),
        (
            "backup-every-short",
            json!({"backup": {"every": "9s"}}),
            "backup.every must be at least 10s",
        ),
        (
            "backup-every-days",
            json!({"backup": {"every": "1d"}}),
            "spec.backup.every in body should match",
        ),
        (
            "backup-every-missing",
            json!({"backup": {"keep": 3}}),
            "spec.backup.every: Required value",
        ),
        (
            "backup-keep-zero",
            json!({"backup": {"every": "1h", "keep": 0}}),
            "spec.backup.keep in body should be greater than or equal to 1",
        ),
        (
            "backup-keep-high",
            json!({"backup": {"every": "1h", "keep": 1001}}),
            "spec.backup.keep in body should be less than or equal to 1000",
        ),
        (
            "backup-verify-negative",
            json!({"backup": {"every": "1h", "verify": {"everyNth": -1}}}),
            "backup.verify.everyNth must be between 0 and 1000",
        ),
        (
            "backup-verify-high",
            json!({"backup": {"every": "1h", "verify": {"everyNth": 1001}}}),
            "backup.verify.everyNth must be between 0 and 1000",
        ),
        (
            "backup-two-stores",
            json!({"backup": {"every": "1h", "destination":
                {"s3": {"bucket": "b"}, "gcs": {"bucket": "g"}}}}),
            "backup.destination must name exactly one store: s3, gcs, azure or local",
        ),
        (
            "backup-no-store",
            json!({"backup": {"every": "1h", "destination": {"credentialsSecret": "creds"}}}),
            "backup.destination must name exactly one store",
        ),
        (
            "backup-directory-and-destination",
            json!({"backup": {"every": "1h", "directory": "/b",
                "destination": {"local": {"directory": "/c"}}}}),
            "set backup.directory or backup.destination, not both",
        ),
        (
            "backup-local-credentials",
            json!({"backup": {"every": "1h", "destination":
                {"local": {"directory": "/c"}, "credentialsSecret": "creds"}}}),
            "a local folder needs no credentials",
        ),
        (
            "backup-endpoint-scheme",
            json!({"backup": {"every": "1h", "destination":
                {"s3": {"bucket": "b", "endpoint": "ftp://store"}}}}),
            "spec.backup.destination.s3.endpoint in body should match",
        ),
        (
            "backup-secret-name",
            json!({"backup": {"every": "1h", "destination":
                {"s3": {"bucket": "b"}, "credentialsSecret": "Backup_Creds"}}}),
            "spec.backup.destination.credentialsSecret in body should match",
        ),
        (
            "tls-cert-manager",
            json!({"tls": {"client": {"enabled": true},
                "source": {"certManager": {"issuerRef": {"name": "ca-issuer"}}}}}),
            "tls.source.certManager is not supported yet",
        ),
        (
            "tls-user-secrets-incomplete",
            json!({"tls": {"client": {"enabled": true}, "source": {"secrets": {
                "ca": "ca", "server": "server", "peer": "peer"}}}}),
            "spec.tls.source.secrets.operatorClient: Required value",
        ),
        (
            "tls-two-sources",
            json!({"tls": {"source": {"operatorManaged": {},
                "certManager": {"issuerRef": {"name": "ca-issuer"}}}}}),
            "tls.source names at most one of operatorManaged, secrets and certManager",
        ),
        (
            "restore-path-empty",
            json!({"bootstrap": {"restore": {"path": ""}}}),
            "spec.bootstrap.restore.path in body should be at least 1 chars long",
        ),
        (
            "restore-path-and-store",
            json!({"bootstrap": {"restore": {"path": "/a.db",
                "destination": {"s3": {"bucket": "b"}}}}}),
            "bootstrap.restore must name exactly one snapshot: a path or a destination",
        ),
        (
            "restore-nothing",
            json!({"bootstrap": {"restore": {}}}),
            "bootstrap.restore must name exactly one snapshot: a path or a destination",
        ),
        (
            "restore-object-without-store",
            json!({"bootstrap": {"restore": {"path": "/a.db", "object": "x.db"}}}),
            "bootstrap.restore.object, cluster and encryption need a destination",
        ),
        (
            "restore-object-and-cluster",
            json!({"bootstrap": {"restore": {"destination": {"s3": {"bucket": "b"}},
                "object": "x.db", "cluster": "other"}}}),
            "names an object or the cluster whose newest snapshot to take, not both",
        ),
        (
            "restore-two-stores",
            json!({"bootstrap": {"restore": {"destination": {"s3": {"bucket": "b"},
                "gcs": {"bucket": "b"}}}}}),
            "must name exactly one store",
        ),
        (
            "restore-key-secret-name",
            json!({"bootstrap": {"restore": {"destination": {"s3": {"bucket": "b"}},
                "encryption": {"keySecret": "Bad_Key"}}}}),
            "spec.bootstrap.restore.encryption.keySecret in body should match",
        ),
        (
            "storage-size-lots",
            json!({"storage": {"size": "lots"}}),
            "storage.size must be a Kubernetes quantity such as 8Gi or 500Mi, not lots",
        ),
        (
            "limits-memory-lots",
            json!({"resources": {"limits": {"cpu": "1", "memory": "lots"}}}),
            "spec.resources.limits[memory]: Invalid value: \"\": must be a Kubernetes quantity such as 500m, 2Gi or 1.5, not lots",
        ),
        (
            "requests-cpu-gb",
            json!({"resources": {"requests": {"cpu": "1GB"}}}),
            "must be a Kubernetes quantity such as 500m, 2Gi or 1.5, not 1GB",
        ),
        (
            "flags-37-v2",
            json!({"version": "3.7.3", "etcd": {"extraFlags": ["--log-level=warn", "--enable-v2=true"]}}),
            "etcd 3.7.3 does not know the etcd.extraFlags entry --enable-v2: 3.6 renamed",
        ),
        (
            "flags-36-unknown",
            json!({"version": "3.6.16", "etcd": {"extraFlags": ["--no-such-flag=1"]}}),
            "etcd 3.6.16 does not know the etcd.extraFlags entry --no-such-flag",
        ),
        (
            "flags-35-feature-gates",
            json!({"version": "3.5.35", "etcd": {"extraFlags": ["--feature-gates=InitialCorruptCheck=true"]}}),
            "etcd 3.5.35 does not know the etcd.extraFlags entry --feature-gates",
        ),
        (
            "flags-35-new-name",
            json!({"version": "3.5.35", "etcd": {"extraFlags": ["--max-learners=2"]}}),
            "etcd 3.5.35 does not know the etcd.extraFlags entry --max-learners",
        ),
        (
            "network-client-selects-nothing",
            json!({"networkPolicy": {"clients": [{"podLabels": {"app": "api"}}, {}]}}),
            "each networkPolicy.clients entry needs podLabels, namespaceLabels or both",
        ),
    ]
}

#[tokio::test]
async fn invalid_manifests_are_rejected_on_create_with_their_message() {
    let k = shared_kube();
    let ns = k.namespace("invalid-create").expect("namespace");
    let api = api(&ns).await;
    let cases = invalid_on_create();
    assert!(cases.len() >= 20);
    for (name, spec, expected) in cases {
        let message = rejection(
            api.create(&PostParams::default(), &manifest(name, spec))
                .await,
        );
        assert!(
            message.contains(expected),
            "{name}: expected {expected:?} in {message:?}"
        );
    }
    // The name rule on metadata.
    let long = "a".repeat(51);
    let message = rejection(
        api.create(&PostParams::default(), &manifest(&long, json!({})))
            .await,
    );
    assert!(
        message.contains("metadata.name must be at most 50 characters"),
        "{message}"
    );
    let message = rejection(
        api.create(&PostParams::default(), &manifest("1abc", json!({})))
            .await,
    );
    assert!(message.contains("starting with a letter"), "{message}");
    // Every valid option at once is accepted.
    let full = json!({
        "replicas": 5, "version": "3.5.16", "image": "registry.example/etcd:v3.5.16", "paused": true,
        "storage": {"size": "20Gi", "storageClassName": "fast"},
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
        "podTemplate": {"labels": {"team": "db"}, "annotations": {"a": "b"}, "nodeSelector": {"disk": "ssd"},
            "priorityClassName": "high", "tolerations": [{"key": "etcd", "operator": "Exists"}]},
        "etcd": {"quotaBackendBytes": 4294967296_i64, "snapshotCount": 50000, "heartbeatIntervalMs": 200,
            "electionTimeoutMs": 2000, "autoCompactionMode": "revision", "autoCompactionRetention": "1000",
            "extraFlags": ["--log-level=warn", "--experimental-initial-corrupt-check=true"]},
    });
    api.create(&PostParams::default(), &manifest("full", full))
        .await
        .expect("a manifest using every field is accepted");
}

/// Updates the apiserver must refuse: (initial spec, change, expected message).
fn invalid_updates() -> Vec<(&'static str, Value, Value, &'static str)> {
    vec![
        (
            "down-patch",
            json!({"version": "3.5.16"}),
            json!({"version": "3.5.15"}),
            "version cannot go down from 3.5.16 to 3.5.15",
        ),
        (
            "down-minor",
            json!({"version": "3.5.16"}),
            json!({"version": "3.4.23"}),
            "version cannot go down from 3.5.16 to 3.4.23",
        ),
        (
            "down-major",
            json!({"version": "3.5.16"}),
            json!({"version": "2.9.0"}),
            "version cannot go down",
        ),
        (
            "jump-minor",
            json!({"version": "3.4.23"}),
            json!({"version": "3.6.0"}),
            "version cannot jump from 3.4.23 to 3.6.0",
        ),
        (
            "below-floor-35",
            json!({"version": "3.5.16"}),
            json!({"version": "3.6.16"}),
            "etcd 3.5.16 cannot be upgraded to 3.6.16 directly: the etcd upgrade guide asks every \
             member to run 3.5.26 or later first; set version to 3.5.26 (or a later 3.5 patch), let \
             that rolling upgrade finish, then set 3.6.16",
        ),
        (
            "below-floor-36",
            json!({"version": "3.6.10"}),
            json!({"version": "3.7.0"}),
            "run 3.6.11 or later first; set version to 3.6.11 (or a later 3.6 patch)",
        ),
        (
            "flags-removed-by-the-upgrade",
            json!({"version": "3.6.16", "etcd": {"extraFlags": ["--discovery-proxy=http://proxy:3128"]}}),
            json!({"version": "3.7.3"}),
            "etcd 3.7.3 does not know the etcd.extraFlags entry --discovery-proxy",
        ),
        (
            "jump-major",
            json!({"version": "3.5.16"}),
            json!({"version": "4.0.0"}),
            "version cannot jump from 3.5.16 to 4.0.0",
        ),
        (
            "size",
            json!({"storage": {"size": "8Gi"}}),
            json!({"storage": {"size": "16Gi"}}),
            "storage.size cannot change after creation",
        ),
        (
            "class-change",
            json!({"storage": {"storageClassName": "a"}}),
            json!({"storage": {"storageClassName": "b"}}),
            "storage.storageClassName cannot change after creation",
        ),
        (
            "class-add",
            json!({}),
            json!({"storage": {"storageClassName": "b"}}),
            "storage.storageClassName cannot change after creation",
        ),
        (
            "ephemeral",
            json!({}),
            json!({"storage": {"ephemeral": true}}),
            "storage.ephemeral cannot change after creation",
        ),
        (
            "tls-on",
            json!({}),
            json!({"tls": {"client": {"enabled": true}}}),
            "restore it into a new EtcdCluster with the TLS settings wanted",
        ),
        (
            "tls-peer-off",
            json!({"tls": {"peer": {"enabled": true}}}),
            json!({"tls": {"peer": {"enabled": false}}}),
            "tls.client.enabled and tls.peer.enabled cannot change after creation",
        ),
        (
            "auth-off",
            json!({"auth": {"enabled": true}}),
            json!({"auth": {"enabled": false}}),
            "auth.enabled cannot be turned off by the operator once on",
        ),
        (
            "restore-path",
            json!({"bootstrap": {"restore": {"path": "/backups/a.db"}}}),
            json!({"bootstrap": {"restore": {"path": "/backups/b.db"}}}),
            "bootstrap cannot change after creation",
        ),
    ]
}

#[tokio::test]
async fn invalid_updates_are_rejected_by_transition_rules() {
    let k = shared_kube();
    let ns = k.namespace("invalid-update").expect("namespace");
    let api = api(&ns).await;
    for (name, initial, change, expected) in invalid_updates() {
        let created = api
            .create(&PostParams::default(), &manifest(name, initial))
            .await
            .unwrap_or_else(|e| panic!("{name}: creating: {e}"));
        let mut updated = created.clone();
        merge(&mut updated.data["spec"], &change);
        let message = rejection(api.replace(name, &PostParams::default(), &updated).await);
        assert!(
            message.contains(expected),
            "{name}: expected {expected:?} in {message:?}"
        );
    }
}

#[tokio::test]
async fn valid_updates_pass_the_transition_rules() {
    let k = shared_kube();
    let ns = k.namespace("valid-update").expect("namespace");
    let api = api(&ns).await;
    let steps = [
        json!({"version": "3.5.17"}),
        json!({"version": "3.5.26"}),
        json!({"version": "3.6.0"}),
        json!({"replicas": 1}),
        json!({"replicas": 9, "paused": true}),
        json!({"etcd": {"extraFlags": ["--log-level=debug"]}}),
        json!({"podTemplate": {"labels": {"tier": "storage"}}}),
        json!({"backup": {"every": "6h", "keep": 7}}),
        json!({"backup": {"every": "10s", "keep": 1, "directory": "/var/backups"}}),
        json!({"auth": {"enabled": true}}),
        json!({"tls": {"client": {"clientCertAuth": false}}}),
    ];
    let mut obj = api
        .create(
            &PostParams::default(),
            &manifest(
                "ok",
                json!({"version": "3.4.23", "storage": {"storageClassName": "x"}}),
            ),
        )
        .await
        .expect("create");
    let mut upgrade = obj.clone();
    merge(&mut upgrade.data["spec"], &json!({"version": "3.5.16"}));
    obj = api
        .replace("ok", &PostParams::default(), &upgrade)
        .await
        .expect("3.4.23 -> 3.5.16 is one minor step");
    for step in steps {
        let mut next = obj.clone();
        merge(&mut next.data["spec"], &step);
        obj = api
            .replace("ok", &PostParams::default(), &next)
            .await
            .unwrap_or_else(|e| panic!("{step} refused: {e}"));
    }
    assert_eq!(obj.data["spec"]["version"], "3.6.0");
    assert_eq!(obj.data["spec"]["replicas"], 9);
}

/// Specs the apiserver and [`validate_spec`] must both accept.
fn valid_specs() -> Vec<(&'static str, Value)> {
    vec![
        ("empty", json!({})),
        (
            "flags-37-experimental-translated",
            json!({"version": "3.7.3", "etcd": {"extraFlags": [
                "--experimental-watch-progress-notify-interval=5s",
                "--experimental-initial-corrupt-check=true"]}}),
        ),
        (
            "flags-36-both-names",
            json!({"version": "3.6.16", "etcd": {"extraFlags": [
                "--experimental-compaction-batch-limit=100", "--max-learners=1",
                "--feature-gates=StopGRPCServiceOnDefrag=true"]}}),
        ),
        (
            "flags-35-promoted-name",
            json!({"version": "3.5.35", "etcd": {"extraFlags": ["--snapshot-catchup-entries=500", "--enable-v2=false"]}}),
        ),
        (
            "flags-other-line",
            json!({"version": "3.4.23", "etcd": {"extraFlags": ["--anything=1"]}}),
        ),
        (
            "quantities",
            json!({"storage": {"size": "1.5Gi"}, "resources": {"limits": {"cpu": "500m", "memory": "2Gi"},
                "requests": {"cpu": "0.25", "memory": "1e9"}}}),
        ),
        ("one", json!({"replicas": 1, "version": "3.4.23"})),
        ("nine", json!({"replicas": 9, "version": "10.20.30"})),
        ("image", json!({"image": "registry.example/etcd:v3.5.16"})),
        (
            "bounds-low",
            json!({"etcd": {"quotaBackendBytes": 1048576, "snapshotCount": 1,
                "heartbeatIntervalMs": 10, "electionTimeoutMs": 50}}),
        ),
        (
            "bounds-high",
            json!({"etcd": {"quotaBackendBytes": 68719476736_i64, "snapshotCount": 10000000,
                "heartbeatIntervalMs": 5000, "electionTimeoutMs": 50000}}),
        ),
        (
            "election-exact",
            json!({"etcd": {"heartbeatIntervalMs": 200, "electionTimeoutMs": 1000}}),
        ),
        (
            "periodic",
            json!({"etcd": {"autoCompactionMode": "periodic", "autoCompactionRetention": "1h30m"}}),
        ),
        (
            "periodic-fraction",
            json!({"etcd": {"autoCompactionMode": "periodic", "autoCompactionRetention": "1.5h"}}),
        ),
        (
            "retention-no-mode",
            json!({"etcd": {"autoCompactionRetention": "2"}}),
        ),
        (
            "revision-zero",
            json!({"etcd": {"autoCompactionMode": "revision", "autoCompactionRetention": "0"}}),
        ),
        (
            "flags",
            json!({"etcd": {"extraFlags": ["--log-level=warn", "--enable-pprof",
                "--experimental-initial-corrupt-check=true", "--cipher-suites=a,b=c"]}}),
        ),
        (
            "labels",
            json!({"podTemplate": {"labels": {"team": "db", "app.kubernetes.io/part-of": "x"},
                "annotations": {"example.com/a": "b"}, "priorityClassName": "high"}}),
        ),
        ("ephemeral", json!({"storage": {"ephemeral": true}})),
        ("class", json!({"storage": {"storageClassName": "fast"}})),
        (
            "maintenance",
            json!({"maintenance": {"defragmentation": {"enabled": false, "minDbSizeBytes": 0,
                "maxFragmentationPercent": 1}, "alarms": {"handleNoSpace": false}}}),
        ),
        (
            "maintenance-high",
            json!({"maintenance": {"defragmentation": {"minDbSizeBytes": 68719476736_i64,
                "maxFragmentationPercent": 99}}}),
        ),
        ("maintenance-empty", json!({"maintenance": {}})),
        ("backup-min", json!({"backup": {"every": "10s", "keep": 1}})),
        (
            "backup-max",
            json!({"backup": {"every": "999999h59m59s", "keep": 1000,
                "directory": "/var/backups/etcd"}}),
        ),
        ("backup-defaults", json!({"backup": {"every": "1h30m"}})),
        (
            "backup-s3",
            json!({"backup": {"every": "1h", "destination": {"s3": {"bucket": "b",
                "prefix": "prod/demo", "endpoint": "http://127.0.0.1:9000", "region": "eu-west-1",
                "forcePathStyle": true}, "credentialsSecret": "backup-creds"},
                "encryption": {"keySecret": "backup-key"}}}),
        ),
        (
            "backup-gcs",
            json!({"backup": {"every": "1h", "destination": {"gcs": {"bucket": "b"}}}}),
        ),
        (
            "backup-azure",
            json!({"backup": {"every": "1h", "destination": {"azure": {"container": "c",
                "account": "acct", "endpoint": "https://acct.blob.core.windows.net"},
                "credentialsSecret": "az.creds"}}}),
        ),
        (
            "backup-local",
            json!({"backup": {"every": "1h", "destination": {"local": {"directory": "bk"}}}}),
        ),
        (
            "restore",
            json!({"bootstrap": {"restore": {"path": "backups/demo.db"}}}),
        ),
        (
            "restore-from-s3-newest",
            json!({"bootstrap": {"restore": {"destination": {"s3": {"bucket": "b",
                "endpoint": "http://s3.test:7070"}, "credentialsSecret": "s3-creds"},
                "encryption": {"keySecret": "backup-key"}, "cluster": "demo"}}}),
        ),
        (
            "restore-from-azure-object",
            json!({"bootstrap": {"restore": {"destination": {"azure": {"container": "c"}},
                "object": "demo-20261122T073005Z-r812.db"}}}),
        ),
        ("bootstrap-empty", json!({"bootstrap": {}})),
        (
            "tls-and-auth",
            json!({"tls": {"client": {"enabled": true, "clientCertAuth": false},
                "peer": {"enabled": true}, "source": {"operatorManaged": {}}},
                "auth": {"enabled": true, "rootPasswordSecret": "root-password"}}),
        ),
        (
            "tls-user-secrets",
            json!({"tls": {"client": {"enabled": true}, "source": {"secrets": {
                "ca": "ca", "server": "server", "peer": "peer", "operatorClient": "op"}}}}),
        ),
        (
            "network-policy",
            json!({"networkPolicy": {"clients": [
                {"podLabels": {"app.kubernetes.io/name": "api", "tier": ""}},
                {"namespaceLabels": {"kubernetes.io/metadata.name": "tenants"}},
                {"podLabels": {"app": "x"}, "namespaceLabels": {"team": "a_b.c-1"}}]}}),
        ),
        (
            "network-policy-off",
            json!({"networkPolicy": {"enabled": false}}),
        ),
    ]
}

/// Specs both must refuse, beyond [`invalid_on_create`]: the local runtime's manifest cases and
/// the places the two used to disagree.
fn more_invalid_specs() -> Vec<(&'static str, Value)> {
    let mut owned: Vec<(&'static str, Value)> = etcd_operator::api::rules::OWNED_FLAGS
        .iter()
        .chain(etcd_operator::api::rules::TYPED_FLAGS.iter())
        .map(|f| {
            (
                "owned-or-typed",
                json!({"etcd": {"extraFlags": [format!("{f}=x")]}}),
            )
        })
        .collect();
    owned.extend([
        ("version-v-local", json!({"version": "v3.5.16"})),
        ("size-gb", json!({"storage": {"size": "8GB"}})),
        ("size-lower-case", json!({"storage": {"size": "8gi"}})),
        ("size-exponent-sign-only", json!({"storage": {"size": "1e+"}})),
        ("limits-spaces", json!({"resources": {"limits": {"memory": "1 Gi"}}})),
        (
            "flags-37-lease-checkpoint-v2v3",
            json!({"version": "3.7.0", "etcd": {"extraFlags": ["--experimental-enable-v2v3=/x"]}}),
        ),
        (
            "flags-35-unary-warning",
            json!({"version": "3.5.35", "etcd": {"extraFlags": ["--warning-unary-request-duration=1s"]}}),
        ),
        ("version-four", json!({"version": "3.5.16.1"})),
        ("version-empty-part", json!({"version": "3..16"})),
        (
            "version-long",
            json!({"version": format!("3.5.{}", "1".repeat(40))}),
        ),
        (
            "heartbeat-negative",
            json!({"etcd": {"heartbeatIntervalMs": -5}}),
        ),
        (
            "heartbeat-high",
            json!({"etcd": {"heartbeatIntervalMs": 5001, "electionTimeoutMs": 50000}}),
        ),
        (
            "election-high",
            json!({"etcd": {"electionTimeoutMs": 50001}}),
        ),
        (
            "election-low",
            json!({"etcd": {"heartbeatIntervalMs": 10, "electionTimeoutMs": 49}}),
        ),
        ("quota-zero", json!({"etcd": {"quotaBackendBytes": 0}})),
        (
            "quota-high",
            json!({"etcd": {"quotaBackendBytes": 68719476737_i64}}),
        ),
        (
            "snapshot-high",
            json!({"etcd": {"snapshotCount": 10000001}}),
        ),
        (
            "compaction-weekly",
            json!({"etcd": {"autoCompactionMode": "weekly"}}),
        ),
        (
            "retention-empty",
            json!({"etcd": {"autoCompactionRetention": ""}}),
        ),
        (
            "retention-unit",
            json!({"etcd": {"autoCompactionRetention": "1d"}}),
        ),
        (
            "retention-long",
            json!({"etcd": {"autoCompactionRetention": "1".repeat(33)}}),
        ),
        (
            "flag-no-dashes",
            json!({"etcd": {"extraFlags": ["--log-level=info", "debug"]}}),
        ),
        (
            "flag-upper",
            json!({"etcd": {"extraFlags": ["--Log-level=info"]}}),
        ),
        ("flag-dash-start", json!({"etcd": {"extraFlags": ["---x"]}})),
        (
            "flag-too-long",
            json!({"etcd": {"extraFlags": [format!("--x={}", "a".repeat(1100))]}}),
        ),
        (
            "flags-too-many",
            json!({"etcd": {"extraFlags": (0..65).map(|i| format!("--f{i}")).collect::<Vec<_>>()}}),
        ),
        (
            "label-managed-by",
            json!({"podTemplate": {"labels": {"app.kubernetes.io/managed-by": "me"}}}),
        ),
        (
            "priority-empty",
            json!({"podTemplate": {"priorityClassName": ""}}),
        ),
        ("class-empty", json!({"storage": {"storageClassName": ""}})),
        ("image-long", json!({"image": "i".repeat(513)})),
        (
            "min-db-size-high",
            json!({"maintenance": {"defragmentation": {"minDbSizeBytes": 68719476737_i64}}}),
        ),
        ("backup-every-zero", json!({"backup": {"every": "0s"}})),
        ("backup-every-empty", json!({"backup": {"every": ""}})),
        ("backup-every-number", json!({"backup": {"every": "30"}})),
        ("backup-every-order", json!({"backup": {"every": "30m1h"}})),
        (
            "backup-every-digits",
            json!({"backup": {"every": "1234567s"}}),
        ),
        (
            "backup-key-secret-name",
            json!({"backup": {"every": "1h", "encryption": {"keySecret": "-key"}}}),
        ),
        (
            "backup-container-empty",
            json!({"backup": {"every": "1h", "destination": {"azure": {"container": ""}}}}),
        ),
        (
            "backup-endpoint-space",
            json!({"backup": {"every": "1h", "destination":
                {"gcs": {"bucket": "b", "endpoint": "http://a b"}}}}),
        ),
        (
            "backup-local-directory-empty",
            json!({"backup": {"every": "1h", "destination": {"local": {"directory": ""}}}}),
        ),
        (
            "backup-s3-no-bucket",
            json!({"backup": {"every": "1h", "destination": {"s3": {"prefix": "p"}}}}),
        ),
        (
            "backup-directory-empty",
            json!({"backup": {"every": "1h", "directory": ""}}),
        ),
    ]);
    owned
}

/// The apiserver (schema and CEL rules, dry-run creates) and the Rust validation the local
/// runtime uses agree on which specs and names are valid.
/// The apiserver fills in `spec.backup.keep` (5) when it is left out, the same as the Rust
/// types do.
#[tokio::test]
async fn backup_keep_default_is_filled_in() {
    use etcd_operator::api::{DEFAULT_BACKUP_KEEP, EtcdClusterSpec};
    let k = shared_kube();
    let ns = k.namespace("backup-defaults").expect("namespace");
    let api = api(&ns).await;
    let created = api
        .create(
            &PostParams::default(),
            &manifest("demo", json!({"backup": {"every": "30m"}})),
        )
        .await
        .expect("create");
    assert_eq!(
        created.data["spec"]["backup"]["keep"],
        json!(DEFAULT_BACKUP_KEEP)
    );
    let spec: EtcdClusterSpec =
        serde_json::from_value(created.data["spec"].clone()).expect("a spec");
    let from_rust: EtcdClusterSpec =
        serde_json::from_value(json!({"backup": {"every": "30m"}})).expect("a spec");
    assert_eq!(spec.backup, from_rust.backup);
}

/// The apiserver fills in the maintenance defaults a spec leaves out, the same as the Rust
/// types do.
#[tokio::test]
async fn maintenance_defaults_are_filled_in() {
    use etcd_operator::api::{EtcdClusterSpec, MaintenanceSpec};
    let k = shared_kube();
    let ns = k.namespace("maint-defaults").expect("namespace");
    let api = api(&ns).await;
    let created = api
        .create(
            &PostParams::default(),
            &manifest(
                "demo",
                json!({"maintenance": {"defragmentation": {"maxFragmentationPercent": 30}}}),
            ),
        )
        .await
        .expect("create");
    let spec: EtcdClusterSpec =
        serde_json::from_value(created.data["spec"].clone()).expect("a spec");
    let mut expected = MaintenanceSpec::default();
    expected.defragmentation.max_fragmentation_percent = 30;
    assert_eq!(spec.maintenance, expected);
    assert_eq!(
        created.data["spec"]["maintenance"]["defragmentation"]["minDbSizeBytes"],
        json!(67108864)
    );
    assert_eq!(
        created.data["spec"]["maintenance"]["alarms"]["handleNoSpace"],
        json!(true)
    );
}

#[tokio::test]
async fn apiserver_and_validate_spec_agree() {
    use etcd_operator::api::EtcdClusterSpec;
    use etcd_operator::api::validation::{validate_name, validate_spec};
    let k = shared_kube();
    let ns = k.namespace("agree").expect("namespace");
    let api = api(&ns).await;
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let mut cases: Vec<(&str, Value, bool)> = valid_specs()
        .into_iter()
        .map(|(n, s)| (n, s, true))
        .collect();
    cases.extend(
        invalid_on_create()
            .into_iter()
            .map(|(n, s, _)| (n, s, false)),
    );
    cases.extend(more_invalid_specs().into_iter().map(|(n, s)| (n, s, false)));
    let mut disagreements = Vec::new();
    for (i, (name, spec, valid)) in cases.iter().enumerate() {
        let server = api
            .create(&dry, &manifest(&format!("case-{i}"), spec.clone()))
            .await;
        let server_accepts = match &server {
            Ok(_) => true,
            Err(kube::Error::Api(s)) if s.code == 422 => false,
            Err(e) => panic!("{name}: not an admission answer: {e}"),
        };
        // A spec that does not even parse (a string for a number) is refused by both.
        let local = serde_json::from_value::<EtcdClusterSpec>(spec.clone())
            .map(|s| validate_spec(&s))
            .map_err(|e| e.to_string());
        let local_accepts = matches!(&local, Ok(errors) if errors.is_empty());
        assert_eq!(
            server_accepts, *valid,
            "{name}: the apiserver's answer {server:?} is not the expected one"
        );
        if server_accepts != local_accepts {
            disagreements.push(format!(
                "{name}: apiserver {server_accepts}, validate_spec {local:?}"
            ));
        }
    }
    let names = [
        ("demo", true),
        ("a-b-1", true),
        ("x", true),
        ("1abc", false),
        ("abc-", false),
        ("-abc", false),
        ("a_b", false),
    ];
    let long_ok = "a".repeat(50);
    let long_bad = "a".repeat(51);
    let names = names
        .iter()
        .map(|(n, v)| ((*n).to_owned(), *v))
        .chain([(long_ok, true), (long_bad, false)]);
    for (name, valid) in names {
        let server = api.create(&dry, &manifest(&name, json!({}))).await;
        let server_accepts = match &server {
            Ok(_) => true,
            Err(kube::Error::Api(s)) if s.code == 422 => false,
            Err(e) => panic!("name {name:?}: not an admission answer: {e}"),
        };
        assert_eq!(server_accepts, valid, "name {name:?}: {server:?}");
        let local = validate_name(&name);
        if server_accepts != local.is_empty() {
            disagreements.push(format!(
                "name {name:?}: apiserver {server_accepts}, validate_name {local:?}"
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "the apiserver and the Rust validation disagree:\n{}",
        disagreements.join("\n")
    );
}

/// The transition rules on `spec.version` (downgrade, jump, patch floor) and the planner's
/// [`Version::check_upgrade`] agree on every pair of a grid of versions around the floors, and a
/// refused minor step below a floor gets the planner's sentence.
#[tokio::test]
async fn upgrade_paths_agree_with_the_planner() {
    use etcd_operator::api::versions::{Version, VersionSkew};
    let k = shared_kube();
    let ns = k.namespace("paths").expect("namespace");
    let api = api(&ns).await;
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let grid = [
        "3.4.23", "3.5.0", "3.5.16", "3.5.25", "3.5.26", "3.5.35", "3.6.0", "3.6.10", "3.6.11",
        "3.6.16", "3.7.0", "3.7.3", "3.8.0", "4.0.0",
    ];
    let mut disagreements = Vec::new();
    for (i, from) in grid.iter().enumerate() {
        let name = format!("from-{i}");
        let created = api
            .create(
                &PostParams::default(),
                &manifest(&name, json!({"version": from})),
            )
            .await
            .unwrap_or_else(|e| panic!("creating {from}: {e}"));
        for to in grid {
            let mut next = created.clone();
            next.data["spec"]["version"] = json!(to);
            let server = api.replace(&name, &dry, &next).await;
            let planner = from
                .parse::<Version>()
                .expect("version")
                .check_upgrade(to.parse().expect("version"));
            match (&server, &planner) {
                (Ok(_), Ok(())) => {}
                (Err(kube::Error::Api(s)), Err(skew)) if s.code == 422 => {
                    if let VersionSkew::BelowFloor { .. } = skew {
                        assert!(
                            s.message.contains(&skew.to_string()),
                            "{from} -> {to}: {:?} lacks {skew}",
                            s.message
                        );
                    }
                }
                _ => disagreements.push(format!("{from} -> {to}: {server:?} vs {planner:?}")),
            }
        }
    }
    assert!(
        disagreements.is_empty(),
        "admission and the planner disagree:\n{}",
        disagreements.join("\n")
    );
}

/// A cluster created on 3.5.35 with 3.5's experimental flag names goes to 3.6.16 and 3.7.3
/// without editing its flags: the operator writes the names each version knows.
#[tokio::test]
async fn experimental_flags_survive_the_upgrade_chain() {
    let k = shared_kube();
    let ns = k.namespace("flag-chain").expect("namespace");
    let api = api(&ns).await;
    let mut obj = api
        .create(
            &PostParams::default(),
            &manifest(
                "chain",
                json!({"version": "3.5.35", "etcd": {"extraFlags": [
                    "--experimental-watch-progress-notify-interval=5s",
                    "--experimental-initial-corrupt-check=true"]}}),
            ),
        )
        .await
        .expect("create on 3.5.35");
    for to in ["3.6.16", "3.7.3"] {
        let mut next = obj.clone();
        next.data["spec"]["version"] = json!(to);
        obj = api
            .replace("chain", &PostParams::default(), &next)
            .await
            .unwrap_or_else(|e| panic!("-> {to}: {e}"));
    }
    assert_eq!(obj.data["spec"]["version"], "3.7.3");
}

//! Table tests of the Kubernetes runtime's pure parts: the object builders (Pod, PVC, Services,
//! PDB, etcd flags, probes, config hash), the runtime's view of Pods and PVCs as members, the
//! intent annotation, member address resolution, and the planner's desired state. No apiserver.

use std::collections::BTreeMap;

use etcd_operator::api::{EtcdCluster, EtcdClusterSpec, PodTemplateSpec};
use etcd_operator::controller::events::{event_reason, step_kind};
use etcd_operator::controller::plan::{DataState, Desired, Intent, Step, Version};
use etcd_operator::controller::validate::{SpecError, member_template};
use etcd_operator::runtime::kubernetes::members::{
    ANNOTATION_INTENT, decode_intent, encode_intent, runtime_members,
};
use etcd_operator::runtime::kubernetes::objects::{
    Blueprint, InitialState, client_service, disruption_budget, etcd_args, has_readyz, member_pod,
    member_pvc, member_service, peer_service, probes,
};
use etcd_operator::runtime::kubernetes::reconcile::desired_state;
use etcd_operator::runtime::kubernetes::resolve_member_url;
use k8s_openapi::api::core::v1::{
    Affinity, ContainerStatus, NodeAffinity, PersistentVolumeClaim, Pod, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::json;

fn spec_of(spec: serde_json::Value) -> EtcdClusterSpec {
    serde_json::from_value(spec).expect("spec")
}

fn info_with(spec: serde_json::Value) -> Blueprint {
    Blueprint {
        name: "demo".into(),
        namespace: "prod".into(),
        uid: "1234-abcd".into(),
        cluster_domain: "cluster.local".into(),
        template: member_template(&spec_of(spec)),
    }
}

/// The desired state of the cluster `info_with(spec)` describes.
fn desired_with(
    spec: serde_json::Value,
    replace_after_failures: u32,
) -> Result<Desired, SpecError> {
    desired_state(
        &spec_of(spec.clone()),
        &info_with(spec),
        replace_after_failures,
    )
}

fn info() -> Blueprint {
    info_with(json!({}))
}

fn v(s: &str) -> Version {
    s.parse().expect("version")
}

#[test]
fn spec_defaults_fill_an_empty_spec() {
    let spec: EtcdClusterSpec = serde_json::from_value(json!({})).expect("spec");
    assert_eq!(spec, EtcdClusterSpec::default());
    assert_eq!(spec.replicas, 3);
    assert_eq!(spec.version, "3.6.16");
    assert_eq!(spec.storage.size.0, "8Gi");
    assert!(!spec.storage.ephemeral && !spec.paused);
}

#[test]
fn cluster_info_needs_namespace_and_uid() {
    let mut c = EtcdCluster::new("demo", EtcdClusterSpec::default());
    assert!(Blueprint::of(&c, "cluster.local").is_err(), "no namespace");
    c.metadata.namespace = Some("prod".into());
    assert!(Blueprint::of(&c, "cluster.local").is_err(), "no uid");
    c.metadata.uid = Some("u".into());
    let i = Blueprint::of(&c, "cluster.local").expect("info");
    assert_eq!(i.cluster_token(), "demo-u");
}

#[test]
fn member_urls_follow_the_cluster_domain() {
    let mut i = info();
    i.cluster_domain = "k8s.example.org".into();
    assert_eq!(i.peer_url(2), "http://demo-2.prod.svc.k8s.example.org:2380");
    assert_eq!(
        i.client_url(2),
        "http://demo-2.prod.svc.k8s.example.org:2379"
    );
    let desired = Desired::new("demo", 3, v("3.6.16"), "h", i.peer_url_template());
    assert_eq!(desired.peer_url(2), i.peer_url(2));
}

#[test]
fn names_and_urls() {
    let i = info();
    let table = [
        (
            0,
            "demo-0",
            "http://demo-0.prod.svc.cluster.local:2380",
            "http://demo-0.prod.svc.cluster.local:2379",
        ),
        (
            4,
            "demo-4",
            "http://demo-4.prod.svc.cluster.local:2380",
            "http://demo-4.prod.svc.cluster.local:2379",
        ),
    ];
    for (o, name, peer, client) in table {
        assert_eq!(i.member_name(o), name);
        assert_eq!(i.peer_url(o), peer);
        assert_eq!(i.client_url(o), client);
    }
    assert_eq!(i.client_service(), "demo-client");
    // The planner's template gives the same peer URLs, and finds ordinals from them.
    let d = desired_with(json!({}), 5).expect("desired");
    for o in 0..9 {
        assert_eq!(d.peer_url(o), i.peer_url(o));
        assert_eq!(d.ordinal_of_peer_url(&i.peer_url(o)), Some(o));
    }
}

#[test]
fn etcd_flags_for_seed_and_joiner() {
    let i = info_with(json!({"etcd": {
        "quotaBackendBytes": 4294967296_i64, "snapshotCount": 5000, "heartbeatIntervalMs": 200,
        "electionTimeoutMs": 2000, "autoCompactionMode": "periodic", "autoCompactionRetention": "1h",
        "extraFlags": ["--log-level=warn"]}}));
    let seed = etcd_args(&i, 0, &InitialState::New);
    let joiner = etcd_args(
        &i,
        1,
        &InitialState::Existing(vec![
            ("demo-0".into(), i.peer_url(0)),
            ("demo-1".into(), i.peer_url(1)),
        ]),
    );
    let table: [(&Vec<String>, &str); 16] = [
        (&seed, "--name=demo-0"),
        (&seed, "--initial-cluster-state=new"),
        (
            &seed,
            "--initial-cluster=demo-0=http://demo-0.prod.svc.cluster.local:2380",
        ),
        (&seed, "--initial-cluster-token=demo-1234-abcd"),
        (&seed, "--data-dir=/var/lib/etcd/data"),
        (&seed, "--listen-metrics-urls=http://0.0.0.0:2381"),
        (&seed, "--quota-backend-bytes=4294967296"),
        (&seed, "--snapshot-count=5000"),
        (&seed, "--heartbeat-interval=200"),
        (&seed, "--election-timeout=2000"),
        (&seed, "--auto-compaction-mode=periodic"),
        (&seed, "--auto-compaction-retention=1h"),
        (&joiner, "--name=demo-1"),
        (&joiner, "--initial-cluster-state=existing"),
        (
            &joiner,
            "--initial-cluster=demo-0=http://demo-0.prod.svc.cluster.local:2380,demo-1=http://demo-1.prod.svc.cluster.local:2380",
        ),
        (
            &joiner,
            "--advertise-client-urls=http://demo-1.prod.svc.cluster.local:2379",
        ),
    ];
    for (args, flag) in table {
        assert!(
            args.iter().any(|a| a == flag),
            "{flag} missing from {args:?}"
        );
    }
    // Extra flags come last, so the typed ones cannot be shadowed silently by position.
    assert_eq!(seed.last().map(String::as_str), Some("--log-level=warn"));
    // No typed flag without its field.
    let plain = etcd_args(&info(), 0, &InitialState::New);
    assert!(!plain.iter().any(|a| a.starts_with("--quota-backend-bytes")));
    assert_eq!(plain.len(), 10);
}

#[test]
fn probes_follow_the_version() {
    let table = [
        ("3.4.23", false, "/health"),
        ("3.5.10", false, "/health"),
        ("3.5.11", true, "/readyz"),
        ("3.5.16", true, "/readyz"),
        ("3.6.0", true, "/readyz"),
    ];
    for (version, readyz, path) in table {
        assert_eq!(has_readyz(v(version)), readyz, "{version}");
        let (readiness, liveness, startup) = probes(v(version));
        let get = readiness.http_get.expect("readiness is HTTP");
        assert_eq!(get.path.as_deref(), Some(path), "{version}");
        assert_eq!(get.port, IntOrString::Int(2381));
        if readyz {
            assert_eq!(
                liveness.http_get.and_then(|g| g.path).as_deref(),
                Some("/livez")
            );
        } else {
            // /health fails without quorum: liveness must not kill such members.
            assert!(liveness.http_get.is_none());
            assert_eq!(
                liveness.tcp_socket.map(|t| t.port),
                Some(IntOrString::Int(2379))
            );
        }
        assert!(
            startup.failure_threshold.unwrap_or(0) * startup.period_seconds.unwrap_or(0) >= 300
        );
        assert!(liveness.failure_threshold.unwrap_or(0) >= 3);
    }
}

#[test]
fn images() {
    let table = [
        (json!({}), "3.5.16", "gcr.io/etcd-development/etcd:v3.5.16"),
        (json!({}), "3.4.23", "gcr.io/etcd-development/etcd:v3.4.23"),
        (
            json!({"image": "mirror/etcd:custom"}),
            "3.5.16",
            "mirror/etcd:custom",
        ),
        (
            json!({"image": ""}),
            "3.6.1",
            "gcr.io/etcd-development/etcd:v3.6.1",
        ),
    ];
    for (spec, version, image) in table {
        assert_eq!(info_with(spec).image(v(version)), image);
    }
}

#[test]
fn member_pod_shape() {
    let i = info_with(json!({
        "resources": {"limits": {"memory": "2Gi"}},
        "podTemplate": {
            "labels": {"team": "db", "app.kubernetes.io/instance": "hijack"},
            "annotations": {"note": "x"},
            "nodeSelector": {"disk": "ssd"},
            "tolerations": [{"key": "etcd", "operator": "Exists"}],
            "priorityClassName": "high",
        },
    }));
    let pod = member_pod(&i, 2, v("3.5.16"), &InitialState::Existing(vec![]));
    let meta = &pod.metadata;
    assert_eq!(meta.name.as_deref(), Some("demo-2"));
    assert_eq!(meta.namespace.as_deref(), Some("prod"));
    let labels = meta.labels.as_ref().expect("labels");
    assert_eq!(labels["team"], "db");
    assert_eq!(
        labels["app.kubernetes.io/instance"], "demo",
        "operator labels win"
    );
    assert_eq!(labels["etcd.operator.dev/member"], "demo-2");
    assert_eq!(labels["etcd.operator.dev/ordinal"], "2");
    let ann = meta.annotations.as_ref().expect("annotations");
    assert_eq!(ann["etcd.operator.dev/version"], "3.5.16");
    assert_eq!(ann["etcd.operator.dev/config-hash"], i.config_hash());
    assert_eq!(ann["note"], "x");
    let owner = &meta.owner_references.as_ref().expect("owners")[0];
    assert_eq!(
        (
            owner.api_version.as_str(),
            owner.kind.as_str(),
            owner.name.as_str(),
            owner.uid.as_str()
        ),
        (
            "etcd.operator.dev/v1alpha1",
            "EtcdCluster",
            "demo",
            "1234-abcd"
        )
    );
    assert_eq!(
        (owner.controller, owner.block_owner_deletion),
        (Some(true), Some(true))
    );
    let spec = pod.spec.expect("spec");
    assert_eq!(spec.hostname.as_deref(), Some("demo-2"));
    assert_eq!(spec.subdomain.as_deref(), Some("demo"));
    assert_eq!(spec.priority_class_name.as_deref(), Some("high"));
    assert_eq!(spec.node_selector.expect("selector")["disk"], "ssd");
    assert_eq!(
        spec.tolerations.expect("tolerations")[0].key.as_deref(),
        Some("etcd")
    );
    let psc = spec.security_context.expect("pod security");
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.fs_group, Some(65532));
    // No affinity given: members prefer distinct nodes.
    let anti = spec
        .affinity
        .and_then(|a| a.pod_anti_affinity)
        .and_then(|a| a.preferred_during_scheduling_ignored_during_execution)
        .expect("default anti-affinity");
    assert_eq!(
        anti[0].pod_affinity_term.topology_key,
        "kubernetes.io/hostname"
    );
    let c = &spec.containers[0];
    assert_eq!(c.name, "etcd");
    let sc = c.security_context.as_ref().expect("container security");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(vec!["ALL".to_owned()])
    );
    assert_eq!(
        c.resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .expect("limits")["memory"]
            .0,
        "2Gi"
    );
    // Resources as given: no default requests added to the user's own.
    assert_eq!(c.resources.as_ref().and_then(|r| r.requests.as_ref()), None);
    // Unset, the etcd container requests a modest share and has no limits.
    let default_pod = member_pod(&info(), 0, v("3.6.16"), &InitialState::New);
    let default = default_pod.spec.expect("spec").containers[0]
        .resources
        .clone()
        .expect("default resources");
    let requests = default.requests.expect("requests");
    assert_eq!(requests["cpu"].0, "100m");
    assert_eq!(requests["memory"].0, "128Mi");
    assert_eq!(default.limits, None);
    let ports: Vec<i32> = c
        .ports
        .as_ref()
        .expect("ports")
        .iter()
        .map(|p| p.container_port)
        .collect();
    assert_eq!(ports, [2379, 2380, 2381]);
    assert_eq!(
        c.volume_mounts.as_ref().expect("mounts")[0].mount_path,
        "/var/lib/etcd"
    );
}

#[test]
fn member_pod_uses_the_given_affinity_and_ephemeral_storage() {
    let i = info_with(json!({
        "storage": {"ephemeral": true},
        "podTemplate": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}},
    }));
    let spec = member_pod(&i, 0, v("3.5.16"), &InitialState::New)
        .spec
        .expect("spec");
    let affinity: Affinity = spec.affinity.expect("affinity");
    assert!(affinity.pod_anti_affinity.is_none());
    assert!(matches!(affinity.node_affinity, Some(NodeAffinity { .. })));
    let vol = &spec.volumes.expect("volumes")[0];
    assert!(vol.empty_dir.is_some() && vol.persistent_volume_claim.is_none());
    assert!(member_pvc(&i, 0).is_none(), "ephemeral members have no PVC");
}

#[test]
fn member_pvc_shape() {
    let table = [
        (json!({}), "8Gi", None),
        (
            json!({"storage": {"size": "20Gi", "storageClassName": "fast"}}),
            "20Gi",
            Some("fast"),
        ),
    ];
    for (spec, size, class) in table {
        let i = info_with(spec);
        let pvc = member_pvc(&i, 1).expect("pvc");
        assert_eq!(pvc.metadata.name.as_deref(), Some("demo-1"));
        assert_eq!(
            pvc.metadata.labels.as_ref().expect("labels")["etcd.operator.dev/ordinal"],
            "1"
        );
        let spec = pvc.spec.expect("spec");
        assert_eq!(spec.storage_class_name.as_deref(), class);
        assert_eq!(spec.access_modes, Some(vec!["ReadWriteOnce".to_owned()]));
        assert_eq!(
            spec.resources.and_then(|r| r.requests).expect("requests")["storage"].0,
            size
        );
        assert_eq!(
            pvc.metadata.owner_references.expect("owner")[0].uid,
            "1234-abcd"
        );
    }
}

#[test]
fn services_and_disruption_budget() {
    let i = info();
    let peers = peer_service(&i);
    assert_eq!(peers.metadata.name.as_deref(), Some("demo"));
    let ps = peers.spec.expect("spec");
    assert_eq!(ps.cluster_ip.as_deref(), Some("None"));
    assert_eq!(ps.publish_not_ready_addresses, Some(true));
    let ports: Vec<i32> = ps.ports.expect("ports").iter().map(|p| p.port).collect();
    assert_eq!(ports, [2379, 2380]);
    let client = client_service(&i);
    assert_eq!(client.metadata.name.as_deref(), Some("demo-client"));
    let cs = client.spec.expect("spec");
    assert_ne!(cs.publish_not_ready_addresses, Some(true));
    assert_eq!(cs.selector, ps.selector);
    assert_eq!(
        cs.selector
            .as_ref()
            .expect("selector")
            .get("app.kubernetes.io/component")
            .map(String::as_str),
        Some("member")
    );
    // A member's own Service: its ordinal's Pod only, published before it is ready.
    let member = member_service(&i, 4);
    assert_eq!(member.metadata.name.as_deref(), Some("demo-4"));
    let ms = member.spec.expect("spec");
    assert_eq!(ms.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(ms.publish_not_ready_addresses, Some(true));
    let selector = ms.selector.expect("selector");
    assert_eq!(
        selector.get("etcd.operator.dev/member").map(String::as_str),
        Some("demo-4")
    );
    assert!(
        cs.selector
            .as_ref()
            .expect("selector")
            .iter()
            .all(|(k, v)| selector.get(k) == Some(v)),
        "a member Service selects a subset of the member Pods"
    );
    let ports: Vec<i32> = ms.ports.expect("ports").iter().map(|p| p.port).collect();
    assert_eq!(ports, [2379, 2380]);
    // minAvailable keeps quorum.
    for (replicas, min) in [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4), (9, 5)] {
        let pdb = disruption_budget(&info_with(json!({"replicas": replicas})));
        assert_eq!(
            pdb.spec.expect("spec").min_available,
            Some(IntOrString::Int(min)),
            "replicas {replicas}"
        );
    }
}

#[test]
fn config_hash_tracks_what_pods_are_built_from() {
    let base = info().config_hash();
    let changed = [
        json!({"image": "x/etcd:1"}),
        json!({"resources": {"limits": {"cpu": "1"}}}),
        json!({"podTemplate": {"labels": {"a": "b"}}}),
        json!({"etcd": {"snapshotCount": 10}}),
        json!({"etcd": {"extraFlags": ["--log-level=debug"]}}),
        json!({"storage": {"ephemeral": true}}),
    ];
    for spec in changed {
        assert_ne!(info_with(spec.clone()).config_hash(), base, "{spec}");
    }
    let same = [
        json!({"replicas": 5}),
        json!({"version": "3.6.0"}),
        json!({"paused": true}),
        json!({"storage": {"size": "100Gi"}}),
    ];
    for spec in same {
        assert_eq!(info_with(spec.clone()).config_hash(), base, "{spec}");
    }
    assert_eq!(base.len(), 16);
}

fn pod(name: &str, phase: Option<&str>, annotations: &[(&str, &str)]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: phase.map(str::to_owned),
            ..PodStatus::default()
        }),
    }
}

fn pvc(name: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..PersistentVolumeClaim::default()
    }
}

fn desired() -> Desired {
    desired_with(json!({}), 5).expect("desired")
}

#[test]
fn pods_and_pvcs_as_runtime_members() {
    let d = desired();
    let mut deleting = pod("demo-3", Some("Running"), &[]);
    deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    let mut deleted_pvc = pvc("demo-5");
    deleted_pvc.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    let mut crashing = pod("demo-6", Some("Running"), &[]);
    if let Some(s) = crashing.status.as_mut() {
        s.container_statuses = Some(vec![ContainerStatus {
            name: "etcd".into(),
            ready: false,
            restart_count: 4,
            ..ContainerStatus::default()
        }]);
    }
    let pods = vec![
        pod(
            "demo-0",
            Some("Running"),
            &[
                ("etcd.operator.dev/version", "3.4.23"),
                ("etcd.operator.dev/config-hash", "old"),
            ],
        ),
        pod("demo-1", Some("Pending"), &[]),
        pod("demo-2", None, &[]),
        deleting,
        pod("demo-4", Some("Failed"), &[]),
        pod("demo-5", Some("Running"), &[]),
        crashing,
        pod("other-0", Some("Running"), &[]),
        pod("demo-01", Some("Running"), &[]),
    ];
    let mut leaving = pvc("demo-8");
    leaving.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    let pvcs = vec![
        leaving,
        pvc("demo-0"),
        pvc("demo-1"),
        pvc("demo-3"),
        pvc("demo-4"),
        deleted_pvc,
        pvc("demo-6"),
        pvc("demo-7"),
    ];
    let members = runtime_members(&d, false, true, &pods, &pvcs);
    let got: Vec<(u32, bool, DataState, u32)> = members
        .iter()
        .map(|m| (m.ordinal, m.running, m.data, m.failures))
        .collect();
    assert_eq!(
        got,
        [
            (0, true, DataState::Present, 0),
            (1, true, DataState::Present, 0),
            (2, true, DataState::Lost, 0),
            (3, false, DataState::Present, 0),
            (4, false, DataState::Present, 0),
            (5, true, DataState::Lost, 0),
            (6, true, DataState::Present, 4),
            (7, false, DataState::Present, 0),
        ]
    );
    assert_eq!(members[0].version, v("3.4.23"));
    assert_eq!(members[0].config_hash, "old");
    assert_eq!(
        members[1].version, d.version,
        "unknown version: the desired one"
    );
    assert_eq!(members[1].config_hash, d.config_hash);

    // Ephemeral: data lives with the Pod; PVCs are ignored.
    let eph = runtime_members(&d, true, false, &pods[..2], &pvcs);
    let got: Vec<(u32, DataState)> = eph.iter().map(|m| (m.ordinal, m.data)).collect();
    assert_eq!(got, [(0, DataState::Present), (1, DataState::Present)]);
    let failed_only = runtime_members(&d, true, true, &pods[4..5], &[]);
    assert_eq!(failed_only[0].data, DataState::Lost);

    // Before the cluster ever answered, a PVC holds no member data the operator knows of: the
    // seed whose Pod went away may start again.
    let fresh = runtime_members(&d, false, false, &pods[1..3], &pvcs[1..3]);
    let got: Vec<(u32, bool, DataState)> = fresh
        .iter()
        .map(|m| (m.ordinal, m.running, m.data))
        .collect();
    assert_eq!(
        got,
        [
            (0, false, DataState::Empty),
            (1, true, DataState::Empty),
            (2, true, DataState::Lost),
        ]
    );
}

#[test]
fn intent_annotation_round_trips() {
    let intents = [
        Intent::AddLearner {
            ordinal: 3,
            peer_url: "http://demo-3.prod.svc.cluster.local:2380".into(),
            member_id: None,
        },
        Intent::AddLearner {
            ordinal: 3,
            peer_url: "http://demo-3.prod.svc.cluster.local:2380".into(),
            member_id: Some(u64::MAX - 7),
        },
        Intent::RemoveMember {
            ordinal: 1,
            member_id: 0x8e9e_05c5_2164_694d,
        },
    ];
    for intent in intents {
        let mut c = EtcdCluster::new("demo", EtcdClusterSpec::default());
        assert_eq!(decode_intent(&c).expect("no annotation"), None);
        let text = encode_intent(&intent).expect("encode");
        c.metadata.annotations = Some(BTreeMap::from([(ANNOTATION_INTENT.to_owned(), text)]));
        assert_eq!(decode_intent(&c).expect("decode"), Some(intent));
    }
    let mut c = EtcdCluster::new("demo", EtcdClusterSpec::default());
    c.metadata.annotations = Some(BTreeMap::from([(
        ANNOTATION_INTENT.to_owned(),
        "{not json".to_owned(),
    )]));
    assert!(decode_intent(&c).is_err());
}

#[test]
fn member_urls_resolve_through_overrides() {
    let overrides = BTreeMap::from([(
        "demo-0.prod.svc.cluster.local:2379".to_owned(),
        "127.0.0.1:32379".to_owned(),
    )]);
    let table = [
        (
            "http://demo-0.prod.svc.cluster.local:2379",
            "http://127.0.0.1:32379",
        ),
        (
            "https://demo-0.prod.svc.cluster.local:2379/x",
            "https://127.0.0.1:32379/x",
        ),
        (
            "http://demo-1.prod.svc.cluster.local:2379",
            "http://demo-1.prod.svc.cluster.local:2379",
        ),
        (
            "demo-0.prod.svc.cluster.local:2379",
            "http://127.0.0.1:32379",
        ),
    ];
    for (url, want) in table {
        assert_eq!(resolve_member_url(url, &overrides), want, "{url}");
    }
    let r = etcd_operator::runtime::kubernetes::resolver_from_args(&[
        "demo-1.prod.svc.cluster.local:2379=127.0.0.1:1".to_owned(),
    ])
    .expect("resolver");
    assert_eq!(
        r("http://demo-1.prod.svc.cluster.local:2379"),
        "http://127.0.0.1:1"
    );
    assert!(
        etcd_operator::runtime::kubernetes::resolver_from_args(&["nonsense".to_owned()]).is_err()
    );
}

#[test]
fn desired_state_from_the_spec() {
    let d = desired_with(
        json!({"replicas": 5, "version": "3.4.23", "paused": true}),
        7,
    )
    .expect("desired");
    assert_eq!(
        (d.replicas, d.version, d.paused, d.replace_after_failures),
        (5, v("3.4.23"), true, 7)
    );
    assert!(desired_with(json!({"version": "latest"}), 5).is_err());
    assert!(desired_with(json!({"replicas": -1}), 5).is_err());
}

/// The Kubernetes desired state plans snapshots to object stores only (a schedule without a
/// destination, or with a local folder, has no schedule), and a restore (local runtime only for
/// now) is reported as unsupported rather than creating an empty cluster.
#[test]
fn kubernetes_plans_no_snapshot_and_refuses_a_restore() {
    use etcd_operator::controller::plan::{Bootstrap, Observed, plan};
    let d = desired_with(
        json!({"backup": {"every": "10s"},
            "bootstrap": {"restore": {"path": "/backups/a.db"}}}),
        5,
    )
    .expect("desired");
    assert_eq!(d.backup, None);
    assert!(matches!(d.bootstrap, Bootstrap::Unsupported(_)), "{d:?}");
    let p = plan(&d, &Observed::default());
    assert_eq!(p.next, None, "{p:?}");
    assert!(p.status.message.contains("local runtime only"), "{p:?}");
    let d = desired_with(json!({}), 5).expect("desired");
    assert_eq!(d.bootstrap, Bootstrap::Empty);
    let d = desired_with(
        json!({"backup": {"every": "10s", "destination": {"s3": {"bucket": "b"}}}}),
        5,
    )
    .expect("desired");
    let schedule = d.backup.expect("a schedule to S3");
    assert!(!schedule.target.is_local(), "{schedule:?}");
}

#[test]
fn every_change_step_has_an_event() {
    let steps = [
        Step::StartSeed {
            ordinal: 0,
            version: v("3.5.16"),
        },
        Step::AddLearner {
            ordinal: 1,
            peer_url: "u".into(),
        },
        Step::StartMember {
            ordinal: 1,
            member_id: 1,
            version: v("3.5.16"),
        },
        Step::PromoteLearner { member_id: 1 },
        Step::MoveLeader { from: 1, to: 2 },
        Step::RemoveMember {
            member_id: 1,
            ordinal: 1,
        },
        Step::DeleteMember { ordinal: 1 },
        Step::StartStopped {
            ordinal: 1,
            version: v("3.5.16"),
        },
        Step::RestartMember {
            ordinal: 1,
            version: v("3.6.0"),
        },
    ];
    let mut reasons = Vec::new();
    for s in &steps {
        let reason = event_reason(s).unwrap_or_else(|| panic!("no event for {s}"));
        assert!(!reasons.contains(&reason), "{reason} reused");
        reasons.push(reason);
        assert!(!step_kind(s).is_empty());
    }
    assert_eq!(event_reason(&Step::ClearIntent), None);
}

#[test]
fn template_defaults() {
    let t = PodTemplateSpec::default();
    assert!(t.labels.is_empty() && t.tolerations.is_empty() && t.affinity.is_none());
}

#[test]
fn an_invalid_spec_reports_degraded_and_keeps_members() {
    use etcd_operator::api::{Condition, EtcdClusterStatus, MemberStatus};
    use etcd_operator::controller::status::invalid_status;
    let previous = EtcdClusterStatus {
        phase: Some("Healthy".into()),
        ready_members: 3,
        members: vec![MemberStatus {
            name: "demo-0".into(),
            healthy: true,
            ..MemberStatus::default()
        }],
        conditions: vec![Condition {
            type_: "Available".into(),
            status: "True".into(),
            reason: "QuorumHealthy".into(),
            message: "3 of 3".into(),
            last_transition_time: Some("2026-01-01T00:00:00Z".into()),
            observed_generation: Some(1),
        }],
        ..EtcdClusterStatus::default()
    };
    let s = invalid_status(
        Some(&previous),
        Some(2),
        "invalid etcd version",
        "2026-02-02T00:00:00Z",
    );
    assert_eq!(s.phase.as_deref(), Some("Degraded"));
    assert_eq!(s.observed_generation, Some(2));
    assert_eq!(s.members, previous.members);
    let cond = |t: &str| {
        s.conditions
            .iter()
            .find(|c| c.type_ == t)
            .expect("condition")
            .clone()
    };
    assert_eq!(
        cond("Available").status,
        "True",
        "availability is not invented"
    );
    assert_eq!(
        cond("Available").last_transition_time.as_deref(),
        Some("2026-01-01T00:00:00Z")
    );
    assert_eq!(
        (
            cond("Degraded").status.as_str(),
            cond("Degraded").reason.as_str()
        ),
        ("True", "InvalidSpec")
    );
    assert_eq!(cond("Degraded").message, "invalid etcd version");
    assert_eq!(cond("Progressing").status, "False");
    let fresh = invalid_status(None, Some(1), "x", "now");
    assert_eq!(fresh.conditions.len(), 3);
    assert_eq!(fresh.conditions[0].status, "False");
}

#[test]
fn a_failing_member_pod_is_diagnosed_from_its_last_words() {
    use etcd_operator::runtime::kubernetes::members::pod_diagnosis;
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated};
    let with = |ready: bool, restarts: i32, message: Option<&str>| Pod {
        status: Some(PodStatus {
            phase: Some("Running".into()),
            container_statuses: Some(vec![ContainerStatus {
                name: "etcd".into(),
                ready,
                restart_count: restarts,
                last_state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 1,
                        message: message.map(str::to_owned),
                        ..ContainerStateTerminated::default()
                    }),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        }),
        ..Pod::default()
    };
    let denied = concat!(
        r#"{"level":"info","ts":"2026-12-04T02:00:00Z","msg":"starting an etcd server"}"#,
        "\n",
        r#"{"level":"fatal","ts":"2026-12-04T02:00:01Z","msg":"failed to start etcd","#,
        r#""error":"open /var/lib/etcd/data/member/snap/db: permission denied"}"#,
        "\n"
    );
    let why = pod_diagnosis(&with(false, 3, Some(denied))).expect("diagnosed");
    assert!(
        why.contains("cannot write its volume at /var/lib/etcd"),
        "{why}"
    );
    assert!(
        why.contains("failed to start etcd: open /var/lib/etcd/data/member/snap/db"),
        "{why}"
    );
    assert!(why.contains("65532"), "{why}");
    let other =
        pod_diagnosis(&with(false, 2, Some("plain text\nlast line  \n\n"))).expect("diagnosed");
    assert_eq!(other, "etcd exited 2 times; its last words: last line");
    let long = "x".repeat(1000);
    let cut = pod_diagnosis(&with(false, 1, Some(&long))).expect("diagnosed");
    assert!(cut.len() < 400, "{}", cut.len());
    // A ready member, one that never restarted, or one without a message: nothing to say.
    assert_eq!(pod_diagnosis(&with(true, 3, Some(denied))), None);
    assert_eq!(pod_diagnosis(&with(false, 0, Some(denied))), None);
    assert_eq!(pod_diagnosis(&with(false, 3, None)), None);
}

#[test]
fn restore_pods_fetch_with_the_operator_image_and_restore_every_member() {
    use etcd_operator::controller::backup::BackupTarget;
    use etcd_operator::runtime::kubernetes::restore::{SNAPSHOT_FILE, restore_pod};
    use etcd_operator::snapshot_store::Destination;
    let mut c = EtcdCluster::new("rs", EtcdClusterSpec::default());
    c.metadata.namespace = Some("prod".into());
    c.metadata.uid = Some("u1".into());
    let info = Blueprint::of(&c, "cluster.local").expect("info");
    let target = BackupTarget {
        destination: Destination::S3 {
            bucket: "backups".into(),
            region: None,
            endpoint: Some("http://s3.prod.svc:7070".into()),
            path_style: true,
        },
        prefix: "prod/demo".into(),
        credentials_secret: Some("s3-creds".into()),
        key_secret: Some("backup-key".into()),
        field: "spec.bootstrap.restore",
    };
    let version = "3.6.16".parse().expect("version");
    let object = "demo-20261122T073005Z-r812.db";
    let pod = restore_pod(&info, 1, 3, version, &target, object, "etcd-operator:test")
        .expect("a restore Pod");
    assert_eq!(pod.metadata.name.as_deref(), Some("rs-1-restore"));
    let spec = pod.spec.expect("spec");
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    let sc = spec.security_context.expect("pod security context");
    assert_eq!(
        (sc.run_as_user, sc.run_as_non_root),
        (Some(65532), Some(true))
    );
    let claim = spec.volumes.expect("volumes")[0]
        .persistent_volume_claim
        .clone()
        .expect("the member's PVC");
    assert_eq!(claim.claim_name, "rs-1");
    let init = spec.init_containers.expect("init")[0].clone();
    assert_eq!(init.image.as_deref(), Some("etcd-operator:test"));
    let args = init.args.expect("args").join(" ");
    assert!(args.starts_with("snapshot fetch "), "{args}");
    for want in [
        "--store s3",
        "--bucket backups",
        "--prefix prod/demo",
        "--endpoint http://s3.prod.svc:7070",
        "--path-style",
        &format!("--object {object}"),
        &format!("--output {SNAPSHOT_FILE}"),
        "--credentials-from-env",
        "--key-from-env",
    ] {
        assert!(args.contains(want), "{want} in {args}");
    }
    assert!(
        !args.contains("s3-creds") && !args.contains("backup-key"),
        "{args}"
    );
    let env = init.env.expect("env");
    let refs: Vec<(String, String, String)> = env
        .iter()
        .map(|e| {
            assert!(e.value.is_none(), "{e:?}: a value in the Pod spec");
            let r = e
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.clone())
                .expect("secretKeyRef");
            (e.name.clone(), r.name, r.key)
        })
        .collect();
    assert!(refs.contains(&(
        "ETCD_OPERATOR_CREDENTIAL_secretAccessKey".into(),
        "s3-creds".into(),
        "secretAccessKey".into()
    )));
    assert!(refs.contains(&(
        "ETCD_OPERATOR_ENCRYPTION_KEY".into(),
        "backup-key".into(),
        "key".into()
    )));
    let main = spec.containers[0].clone();
    assert_eq!(
        main.image.as_deref(),
        Some("gcr.io/etcd-development/etcd:v3.6.16")
    );
    let script = main.command.expect("command").join(" ");
    let peers: Vec<String> = (0..3)
        .map(|o| format!("rs-{o}={}", info.peer_url(o)))
        .collect();
    for want in [
        format!("etcdutl snapshot restore {SNAPSHOT_FILE}"),
        "--name=rs-1".to_owned(),
        format!("--initial-cluster={}", peers.join(",")),
        format!("--initial-cluster-token={}", info.cluster_token()),
        format!("--initial-advertise-peer-urls={}", info.peer_url(1)),
        "--data-dir=/var/lib/etcd/data".to_owned(),
        format!("rm -f {SNAPSHOT_FILE}"),
    ] {
        assert!(script.contains(&want), "{want} in {script}");
    }
    // Nothing to fetch into or from.
    assert!(
        restore_pod(
            &info,
            0,
            3,
            version,
            &BackupTarget::folder("/x"),
            object,
            "i"
        )
        .is_none()
    );
}

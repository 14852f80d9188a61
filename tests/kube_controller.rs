//! The controller against a real kube-apiserver (no kubelet: Pods are stored, never run).
//!
//! For a 3-member `EtcdCluster` the controller creates the seed Pod and PVC (and no other
//! member, since etcd never answers), the headless and client Services and the
//! PodDisruptionBudget, all with owner references and applied by the `etcd-operator` field
//! manager; it writes the status (phase Bootstrapping, conditions) and records an Event. A second
//! pass changes nothing. `paused` stops every change; `etcd-operator run` (the binary) does the
//! same work and serves its metrics.
//!
//! All tests share one control plane, each in its own namespace.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_operator::api::EtcdCluster;
use etcd_operator::metrics::Metrics;
use etcd_operator::runtime::kubernetes::reconcile::{Context, reconcile};
use etcd_operator::runtime::kubernetes::{RunArgs, resolver_from_args, run_controller};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::shared_kube::{etcd_cluster as cluster, shared_kube};

const DEADLINE: Duration = Duration::from_secs(90);

async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn args(ns: &str) -> RunArgs {
    RunArgs {
        namespace: Some(ns.to_owned()),
        metrics_addr: "127.0.0.1:0".parse().expect("addr"),
        replace_after_failures: 5,
        resolve: Vec::new(),
        operator_image: None,
        cluster_domain: "cluster.local".to_owned(),
        log_format: Default::default(),
        leader_election: Default::default(),
        operator_pod_labels: "app.kubernetes.io/name=etcd-operator".to_owned(),
    }
}

/// Resource versions of everything the controller writes for cluster `name`.
async fn versions(client: &kube::Client, ns: &str, name: &str) -> Vec<(String, String)> {
    let rv = |kind: &str, m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        (
            format!("{kind}/{}", m.name.clone().unwrap_or_default()),
            m.resource_version.clone().unwrap_or_default(),
        )
    };
    let mut out = Vec::new();
    let clusters: Api<EtcdCluster> = Api::namespaced(client.clone(), ns);
    out.push(rv(
        "EtcdCluster",
        &clusters.get(name).await.expect("cluster").metadata,
    ));
    let lp = ListParams::default().labels(&format!("app.kubernetes.io/instance={name}"));
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    for p in pods.list(&lp).await.expect("pods").items {
        out.push(rv("Pod", &p.metadata));
    }
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    for p in pvcs.list(&lp).await.expect("pvcs").items {
        out.push(rv("PVC", &p.metadata));
    }
    let svcs: Api<Service> = Api::namespaced(client.clone(), ns);
    for s in svcs.list(&lp).await.expect("services").items {
        out.push(rv("Service", &s.metadata));
    }
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), ns);
    for p in pdbs.list(&lp).await.expect("pdbs").items {
        out.push(rv("PDB", &p.metadata));
    }
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    for e in events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
    {
        out.push(rv("Event", &e.metadata));
    }
    out.sort();
    out
}

#[tokio::test]
async fn controller_bootstraps_the_seed_and_a_second_pass_changes_nothing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "warn,etcd_operator=info",
        ))
        .with_test_writer()
        .try_init();
    let k = shared_kube();
    let ns = k.namespace("controller").expect("namespace");
    k.kubectl(&["create", "priorityclass", "etcd-high", "--value=1000"])
        .expect("priority class");
    let client = k.client().await.expect("client");
    let clusters: Api<EtcdCluster> = Api::namespaced(client.clone(), &ns);
    let created = clusters
        .create(
            &PostParams::default(),
            &cluster(
                "demo",
                json!({
                    "replicas": 3,
                    "podTemplate": {"labels": {"team": "db"}, "priorityClassName": "etcd-high"},
                    "etcd": {"quotaBackendBytes": 4294967296_i64, "extraFlags": ["--log-level=warn"]},
                }),
            ),
        )
        .await
        .expect("create");
    let uid = created.metadata.uid.clone().expect("uid");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(run_controller(
        client.clone(),
        args(&ns),
        Arc::new(Metrics::new()),
        async move {
            let _ = stop_rx.await;
        },
    ));

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let svcs: Api<Service> = Api::namespaced(client.clone(), &ns);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);

    let status = wait_for("status Bootstrapping", || async {
        let c = clusters.get("demo").await.ok()?;
        let s = c.status?;
        (s.phase.as_deref() == Some("Bootstrapping")).then_some(s)
    })
    .await;
    let seed_event = wait_for("the SeedStarted event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("SeedStarted"))
    })
    .await;
    // Let a few more passes happen (watch events on the created objects, status writes), then
    // stop the controller.
    wait_for("the status to settle with observedGeneration", || async {
        let c = clusters.get("demo").await.ok()?;
        let s = c.status?;
        (s.observed_generation == Some(1) && s.conditions.iter().any(|c| c.type_ == "Progressing"))
            .then_some(())
    })
    .await;
    let _ = stop_tx.send(());
    controller
        .await
        .expect("controller task")
        .expect("controller ran");

    // Status and conditions.
    assert_eq!(status.member_summary.as_deref(), Some("0/3"));
    assert_eq!(status.ready_members, 0);
    let cond = |t: &str| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == t)
            .unwrap_or_else(|| panic!("condition {t} missing: {status:?}"))
            .clone()
    };
    assert_eq!(cond("Available").status, "False");
    assert_eq!(cond("Available").reason, "QuorumLost");
    assert_eq!(cond("Progressing").status, "True");
    assert_eq!(cond("Degraded").status, "False");
    assert!(cond("Available").last_transition_time.is_some());

    // The Event names the cluster.
    assert_eq!(seed_event.type_.as_deref(), Some("Normal"));
    let regarding = seed_event.regarding.expect("regarding");
    assert_eq!(regarding.name.as_deref(), Some("demo"));
    assert_eq!(regarding.kind.as_deref(), Some("EtcdCluster"));
    assert_eq!(
        seed_event.reporting_controller.as_deref(),
        Some("etcd-operator")
    );

    // Only the seed exists: no member joins a cluster that never answered.
    let member_pods = pods.list(&ListParams::default()).await.expect("pods").items;
    assert_eq!(member_pods.len(), 1, "{member_pods:?}");
    let pod = &member_pods[0];
    assert_eq!(pod.metadata.name.as_deref(), Some("demo-0"));
    let owner = &pod.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!(owner.uid, uid);
    assert_eq!(owner.kind, "EtcdCluster");
    assert_eq!(owner.controller, Some(true));
    let labels = pod.metadata.labels.as_ref().expect("labels");
    assert_eq!(labels["app.kubernetes.io/instance"], "demo");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "etcd-operator");
    assert_eq!(labels["etcd.operator.dev/ordinal"], "0");
    assert_eq!(labels["team"], "db");
    let managers: Vec<(String, String)> = pod
        .metadata
        .managed_fields
        .as_ref()
        .expect("managed fields")
        .iter()
        .map(|m| {
            (
                m.manager.clone().unwrap_or_default(),
                m.operation.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert!(
        managers.contains(&("etcd-operator".to_owned(), "Apply".to_owned())),
        "{managers:?}"
    );
    let spec = pod.spec.as_ref().expect("pod spec");
    assert_eq!(spec.hostname.as_deref(), Some("demo-0"));
    assert_eq!(spec.subdomain.as_deref(), Some("demo"));
    assert_eq!(spec.priority_class_name.as_deref(), Some("etcd-high"));
    let c = &spec.containers[0];
    assert_eq!(
        c.image.as_deref(),
        Some("gcr.io/etcd-development/etcd:v3.6.16")
    );
    let args = c.args.as_ref().expect("args");
    for expected in [
        "--name=demo-0".to_owned(),
        "--data-dir=/var/lib/etcd/data".to_owned(),
        format!("--initial-cluster=demo-0=http://demo-0.{ns}.svc.cluster.local:2380"),
        "--initial-cluster-state=new".to_owned(),
        format!("--initial-cluster-token=demo-{uid}"),
        format!("--advertise-client-urls=http://demo-0.{ns}.svc.cluster.local:2379"),
        "--quota-backend-bytes=4294967296".to_owned(),
        "--log-level=warn".to_owned(),
    ] {
        assert!(args.contains(&expected), "{expected} missing from {args:?}");
    }
    let readiness = c.readiness_probe.as_ref().expect("readiness");
    let get = readiness.http_get.as_ref().expect("http readiness");
    assert_eq!(get.path.as_deref(), Some("/readyz"));
    assert_eq!(get.port, IntOrString::Int(2381));
    assert!(c.liveness_probe.is_some() && c.startup_probe.is_some());
    let sc = c.security_context.as_ref().expect("security context");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.run_as_non_root, Some(true));
    let volume = &spec.volumes.as_ref().expect("volumes")[0];
    assert_eq!(
        volume
            .persistent_volume_claim
            .as_ref()
            .map(|v| v.claim_name.as_str()),
        Some("demo-0")
    );

    let pvc_list = pvcs.list(&ListParams::default()).await.expect("pvcs").items;
    assert_eq!(pvc_list.len(), 1);
    let pvc = &pvc_list[0];
    assert_eq!(pvc.metadata.name.as_deref(), Some("demo-0"));
    let pvc_spec = pvc.spec.as_ref().expect("pvc spec");
    assert_eq!(
        pvc_spec.access_modes.as_deref(),
        Some(&["ReadWriteOnce".to_owned()][..])
    );
    let size = &pvc_spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .expect("requests")["storage"];
    assert_eq!(size.0, "8Gi");
    assert_eq!(
        pvc.metadata.owner_references.as_ref().expect("owner")[0].uid,
        uid
    );

    let headless = svcs.get("demo").await.expect("headless service");
    let hs = headless.spec.expect("spec");
    assert_eq!(hs.cluster_ip.as_deref(), Some("None"));
    assert_eq!(hs.publish_not_ready_addresses, Some(true));
    let client_svc = svcs.get("demo-client").await.expect("client service");
    let cs = client_svc.spec.expect("spec");
    assert_eq!(cs.ports.expect("ports")[0].port, 2379);
    assert_eq!(
        cs.selector.expect("selector")["app.kubernetes.io/instance"],
        "demo"
    );
    // The seed's own Service, whose name its URLs carry.
    let seed_svc = svcs.get("demo-0").await.expect("member service");
    let ss = seed_svc.spec.expect("spec");
    assert!(ss.cluster_ip.as_deref().is_some_and(|ip| ip != "None"));
    assert_eq!(ss.publish_not_ready_addresses, Some(true));
    assert_eq!(
        ss.selector.expect("selector")["etcd.operator.dev/member"],
        "demo-0"
    );
    let pdb = pdbs.get("demo").await.expect("pdb");
    assert_eq!(
        pdb.spec.expect("spec").min_available,
        Some(IntOrString::Int(2))
    );

    // With the controller stopped, one pass settles whatever the last watch event had not
    // reached yet; after it, passes with nothing changed change nothing, twice over.
    let metrics = Arc::new(Metrics::new());
    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics.clone(),
        resolver_from_args(&[]).expect("resolver"),
        5,
    ));
    let current = clusters.get("demo").await.expect("cluster");
    reconcile(Arc::new(current), ctx.clone())
        .await
        .expect("a settling pass succeeds");
    let before = versions(&client, &ns, "demo").await;
    for _ in 0..2 {
        let current = clusters.get("demo").await.expect("cluster");
        reconcile(Arc::new(current), ctx.clone())
            .await
            .expect("a quiet pass succeeds");
    }
    let after = versions(&client, &ns, "demo").await;
    assert_eq!(before, after, "a pass with nothing to do changed objects");
    let text = metrics.encode();
    assert!(
        text.contains("etcd_operator_reconciles_total{outcome=\"ok\"} 3"),
        "{text}"
    );
    assert!(
        !text.contains("StartSeed"),
        "the seed exists: no pass may start it again: {text}"
    );

    // Scaling changes the PDB; pausing then stops every change but the status.
    let mut scaled = clusters.get("demo").await.expect("cluster");
    scaled.spec.replicas = 5;
    clusters
        .replace("demo", &PostParams::default(), &scaled)
        .await
        .expect("scale to 5");
    let current = clusters.get("demo").await.expect("cluster");
    reconcile(Arc::new(current), ctx.clone())
        .await
        .expect("pass");
    let pdb = pdbs.get("demo").await.expect("pdb");
    assert_eq!(
        pdb.spec.expect("spec").min_available,
        Some(IntOrString::Int(3))
    );
    let status = clusters
        .get("demo")
        .await
        .expect("cluster")
        .status
        .expect("status");
    assert_eq!(status.member_summary.as_deref(), Some("0/5"));
    assert_eq!(status.observed_generation, Some(2));

    clusters
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": true, "replicas": 1}})),
        )
        .await
        .expect("pause");
    let current = clusters.get("demo").await.expect("cluster");
    reconcile(Arc::new(current), ctx.clone())
        .await
        .expect("paused pass");
    let pdb = pdbs.get("demo").await.expect("pdb");
    assert_eq!(
        pdb.spec.expect("spec").min_available,
        Some(IntOrString::Int(3)),
        "a paused cluster's objects are left alone"
    );
    let status = clusters
        .get("demo")
        .await
        .expect("cluster")
        .status
        .expect("status");
    assert_eq!(status.phase.as_deref(), Some("Paused"));
}

#[tokio::test]
async fn ephemeral_cluster_gets_an_empty_dir_and_no_pvc() {
    let k = shared_kube();
    let ns = k.namespace("ephemeral").expect("namespace");
    let client = k.client().await.expect("client");
    let clusters: Api<EtcdCluster> = Api::namespaced(client.clone(), &ns);
    clusters
        .create(
            &PostParams::default(),
            &cluster(
                "dev",
                json!({"replicas": 1, "version": "3.4.23", "storage": {"ephemeral": true}}),
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
    let current = clusters.get("dev").await.expect("cluster");
    reconcile(Arc::new(current), ctx.clone())
        .await
        .expect("pass");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = pods.get("dev-0").await.expect("seed pod");
    let spec = pod.spec.expect("spec");
    assert!(spec.volumes.expect("volumes")[0].empty_dir.is_some());
    let c = &spec.containers[0];
    // 3.4 has no /readyz: readiness on /health, liveness on the client port.
    assert_eq!(
        c.readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|g| g.path.as_deref()),
        Some("/health")
    );
    assert!(
        c.liveness_probe
            .as_ref()
            .and_then(|p| p.tcp_socket.as_ref())
            .is_some()
    );
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    assert!(
        pvcs.list(&ListParams::default())
            .await
            .expect("pvcs")
            .items
            .is_empty()
    );
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    assert_eq!(
        pdbs.get("dev")
            .await
            .expect("pdb")
            .spec
            .expect("spec")
            .min_available,
        Some(IntOrString::Int(1))
    );
}

#[tokio::test]
async fn the_run_subcommand_reconciles_and_serves_metrics() {
    let k = shared_kube();
    let ns = k.namespace("binary").expect("namespace");
    let client = k.client().await.expect("client");
    let clusters: Api<EtcdCluster> = Api::namespaced(client.clone(), &ns);
    clusters
        .create(
            &PostParams::default(),
            &cluster("bin", json!({"replicas": 3})),
        )
        .await
        .expect("create");
    let port = support::ports::free_port().expect("port");
    let log = std::fs::File::create(k.dir().join(format!("operator-{ns}.log"))).expect("log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_etcd-operator"))
        .args([
            "run",
            "--namespace",
            &ns,
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
        ])
        .env("KUBECONFIG", k.kubeconfig())
        .env("RUST_LOG", "info")
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("starting etcd-operator run");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(child);

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    wait_for("the seed Pod from the binary", || async {
        pods.get_opt("bin-0").await.ok().flatten()
    })
    .await;
    wait_for("the status from the binary", || async {
        let s = clusters.get("bin").await.ok()?.status?;
        (s.phase.as_deref() == Some("Bootstrapping")).then_some(())
    })
    .await;
    let text = wait_for("metrics with a reconcile", || async {
        let body = http_get(port, "/metrics").await?;
        body.contains("etcd_operator_reconciles_total{outcome=\"ok\"}")
            .then_some(body)
    })
    .await;
    assert!(
        text.contains("etcd_operator_steps_total{step=\"StartSeed\",outcome=\"done\"} 1"),
        "{text}"
    );
    assert!(text.contains("etcd_operator_members{"), "{text}");
    assert_eq!(http_get(port, "/healthz").await.as_deref(), Some("ok\n"));
}

async fn http_get(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// A real etcd process stands in for the seed Pod: its advertised URLs are the Pod's DNS names,
/// which the operator's resolver points at the process's loopback port, and the Pod's status is
/// set to Running by hand (no kubelet). The controller then reads etcd's view, adds exactly one
/// learner (MemberAdd against real etcd, with the intent recorded first), creates its Pod to join
/// the existing cluster, reports etcd's facts in the status, and its passes add no raft entries.
#[tokio::test]
async fn with_a_live_seed_the_controller_adds_one_learner_and_reports_etcd() {
    let k = shared_kube();
    let ns = k.namespace("live").expect("namespace");
    let client = k.client().await.expect("client");
    let clusters: Api<EtcdCluster> = Api::namespaced(client.clone(), &ns);
    clusters
        .create(
            &PostParams::default(),
            &cluster("demo", json!({"replicas": 3})),
        )
        .await
        .expect("create");
    let host = |o: u32| format!("demo-{o}.{ns}.svc.cluster.local");
    let seed = support::etcd::EtcdCluster::builder()
        .members(1)
        .flag("--name=demo-0")
        .flag(format!("--advertise-client-urls=http://{}:2379", host(0)))
        .flag(format!(
            "--initial-advertise-peer-urls=http://{}:2380",
            host(0)
        ))
        .flag(format!("--initial-cluster=demo-0=http://{}:2380", host(0)))
        .start()
        .expect("the stand-in etcd");
    let port = seed.member(0).client_port;
    let resolver =
        resolver_from_args(&[format!("{}:2379=127.0.0.1:{port}", host(0))]).expect("resolver");
    let metrics = Arc::new(Metrics::new());
    let ctx = Arc::new(Context::new(client.clone(), metrics.clone(), resolver, 5));
    let pass = || async {
        let current = clusters.get("demo").await.expect("cluster");
        reconcile(Arc::new(current), ctx.clone()).await
    };

    // The first pass creates the seed Pod; "the kubelet" starts it.
    pass().await.expect("first pass");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pods.patch_status(
        "demo-0",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running"}})),
    )
    .await
    .expect("pod status");

    // Passes until the learner's Pod exists.
    let mut created = false;
    for _ in 0..20 {
        pass().await.expect("pass");
        if pods.get_opt("demo-1").await.expect("get").is_some() {
            created = true;
            break;
        }
    }
    assert!(created, "no Pod for the learner");
    for _ in 0..3 {
        pass().await.expect("settling pass");
    }

    let etcd = etcd_operator::etcd::Client::connect(
        [format!("http://127.0.0.1:{port}")],
        etcd_operator::etcd::ConnectOptions::new(),
    )
    .await
    .expect("etcd client");
    let members = etcd.member_list().await.expect("member list");
    assert_eq!(members.len(), 2, "exactly one learner added: {members:?}");
    let learner = members.iter().find(|m| m.is_learner).expect("a learner");
    assert_eq!(learner.peer_urls, [format!("http://{}:2380", host(1))]);
    assert!(
        pods.get_opt("demo-2").await.expect("get").is_none(),
        "one member at a time"
    );

    let joiner = pods.get("demo-1").await.expect("learner pod");
    let args = joiner.spec.expect("spec").containers[0]
        .args
        .clone()
        .expect("args");
    assert!(
        args.contains(&"--initial-cluster-state=existing".to_owned()),
        "{args:?}"
    );
    assert!(
        args.contains(&format!(
            "--initial-cluster=demo-0=http://{}:2380,demo-1=http://{}:2380",
            host(0),
            host(1)
        )),
        "{args:?}"
    );

    let status = clusters
        .get("demo")
        .await
        .expect("cluster")
        .status
        .expect("status");
    assert_eq!(status.ready_members, 1);
    assert_eq!(status.member_summary.as_deref(), Some("1/3"));
    assert_eq!(status.leader.as_deref(), Some("demo-0"));
    assert_eq!(status.current_version.as_deref(), Some("3.5.16"));
    assert!(
        status
            .cluster_id
            .as_deref()
            .is_some_and(|id| !id.is_empty())
    );
    assert_eq!(status.phase.as_deref(), Some("Scaling"), "{status:?}");
    let m0 = status
        .members
        .iter()
        .find(|m| m.name == "demo-0")
        .expect("demo-0");
    assert_eq!(m0.role.as_deref(), Some("leader"));
    assert!(m0.healthy);
    assert_eq!(
        m0.client_url.as_deref(),
        Some(format!("http://{}:2379", host(0)).as_str())
    );
    assert!(m0.db_size.is_some_and(|s| s > 0));
    assert!(m0.raft_term.is_some_and(|t| t >= 1));
    assert_eq!(
        m0.id.as_deref(),
        Some(
            format!(
                "{:x}",
                members.iter().find(|m| !m.is_learner).expect("voter").id
            )
            .as_str()
        )
    );
    let m1 = status
        .members
        .iter()
        .find(|m| m.name == "demo-1")
        .expect("demo-1");
    assert_eq!(m1.role.as_deref(), Some("learner"));
    assert!(!m1.healthy);
    let available = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Available")
        .expect("Available");
    assert_eq!(available.status, "True");

    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    for r in ["SeedStarted", "LearnerAdded", "MemberStarted"] {
        assert!(
            reasons.iter().any(|x| x == r),
            "{r} missing from {reasons:?}"
        );
    }
    // The intent, if still recorded, is the learner's with its member ID.
    let annotations = clusters
        .get("demo")
        .await
        .expect("cluster")
        .metadata
        .annotations
        .unwrap_or_default();
    if let Some(intent) = annotations.get("etcd.operator.dev/intent") {
        let v: serde_json::Value = serde_json::from_str(intent).expect("intent json");
        assert_eq!(v["ordinal"], 1, "{intent}");
        assert_eq!(v["memberId"], format!("{:x}", learner.id), "{intent}");
    }

    // Observing is read-only: idle passes add nothing to the raft log.
    let before = etcd
        .status(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("status");
    for _ in 0..3 {
        pass().await.expect("idle pass");
    }
    let after = etcd
        .status(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("status");
    assert_eq!(before.raft_index, after.raft_index, "a pass wrote to etcd");
    let text = metrics.encode();
    assert!(
        text.contains(&format!(
            "etcd_operator_members{{namespace=\"{ns}\",cluster=\"demo\",role=\"leader\",healthy=\"true\"}} 1"
        )),
        "{text}"
    );

    // Scaling down to one member removes the learner from etcd, then deletes its Pod and PVC
    // (the PVC keeps its deletion timestamp here: no controller-manager removes the
    // pvc-protection finalizer).
    clusters
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 1}})),
        )
        .await
        .expect("scale down");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let mut gone = false;
    for _ in 0..20 {
        pass().await.expect("scale-down pass");
        let members = etcd.member_list().await.expect("member list");
        if members.len() == 1
            && pods.get_opt("demo-1").await.expect("get").is_none()
            && pvcs
                .get_opt("demo-1")
                .await
                .expect("get")
                .is_none_or(|c| c.metadata.deletion_timestamp.is_some())
        {
            gone = true;
            break;
        }
    }
    assert!(
        gone,
        "the learner was not removed with its Pod and PVC: {:?} {:?}",
        clusters.get("demo").await.expect("cluster").status,
        etcd.member_list().await
    );
    for _ in 0..3 {
        pass().await.expect("settling pass");
    }
    assert!(
        pods.get_opt("demo-0").await.expect("get").is_some(),
        "the seed stays"
    );
    let cluster_now = clusters.get("demo").await.expect("cluster");
    assert!(
        !cluster_now
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key("etcd.operator.dev/intent"),
        "the finished intent is cleared"
    );
    let status = cluster_now.status.expect("status");
    assert_eq!(status.phase.as_deref(), Some("Healthy"), "{status:?}");
    assert_eq!(status.member_summary.as_deref(), Some("1/1"));
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    for r in ["MemberRemoved", "MemberDeleted"] {
        assert!(
            reasons.iter().any(|x| x == r),
            "{r} missing from {reasons:?}"
        );
    }
    drop(seed);
}

/// An upgrade of a healthy single-member cluster (a real etcd stands in for its Pod): the
/// controller replaces the member's Pod with one on the next minor version, waits for the old
/// Pod to go, keeps the PVC, and records the restart.
#[tokio::test]
async fn an_upgrade_replaces_the_member_pod_and_keeps_its_volume() {
    let k = shared_kube();
    let ns = k.namespace("upgrade").expect("namespace");
    let client = k.client().await.expect("client");
    let clusters: Api<EtcdCluster> = Api::namespaced(client.clone(), &ns);
    clusters
        .create(
            &PostParams::default(),
            // 3.5.35: at or above the 3.5.26 floor etcd's guide names for the step to 3.6.
            &cluster("one", json!({"replicas": 1, "version": "3.5.35"})),
        )
        .await
        .expect("create");
    let host = format!("one-0.{ns}.svc.cluster.local");
    let seed = support::etcd::EtcdCluster::builder()
        .version(support::bins::EtcdVersion::V3_5_35)
        .members(1)
        .flag("--name=one-0")
        .flag(format!("--advertise-client-urls=http://{host}:2379"))
        .flag(format!("--initial-advertise-peer-urls=http://{host}:2380"))
        .flag(format!("--initial-cluster=one-0=http://{host}:2380"))
        .start()
        .expect("the stand-in etcd");
    let port = seed.member(0).client_port;
    let resolver =
        resolver_from_args(&[format!("{host}:2379=127.0.0.1:{port}")]).expect("resolver");
    let ctx = Arc::new(Context::new(
        client.clone(),
        Arc::new(Metrics::new()),
        resolver,
        5,
    ));
    let pass = || async {
        let current = clusters.get("one").await.expect("cluster");
        reconcile(Arc::new(current), ctx.clone()).await
    };
    pass().await.expect("first pass");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    pods.patch_status(
        "one-0",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running"}})),
    )
    .await
    .expect("pod status");
    for _ in 0..3 {
        pass().await.expect("pass");
    }
    let status = clusters
        .get("one")
        .await
        .expect("cluster")
        .status
        .expect("status");
    assert_eq!(status.phase.as_deref(), Some("Healthy"), "{status:?}");
    let old = pods.get("one-0").await.expect("pod");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let pvc_uid = pvcs.get("one-0").await.expect("pvc").metadata.uid;

    clusters
        .patch(
            "one",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"version": "3.6.0"}})),
        )
        .await
        .expect("upgrade");
    pass().await.expect("upgrade pass");

    let new = pods.get("one-0").await.expect("the replaced pod");
    assert_ne!(
        new.metadata.uid, old.metadata.uid,
        "the Pod was not replaced"
    );
    assert_eq!(
        new.metadata.annotations.as_ref().expect("annotations")["etcd.operator.dev/version"],
        "3.6.0"
    );
    assert_eq!(
        new.spec.expect("spec").containers[0].image.as_deref(),
        Some("gcr.io/etcd-development/etcd:v3.6.0")
    );
    assert_eq!(
        pvcs.get("one-0").await.expect("pvc").metadata.uid,
        pvc_uid,
        "the data volume is kept"
    );
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let restarted = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .find(|e| e.reason.as_deref() == Some("MemberRestarted"))
        .expect("a MemberRestarted event");
    assert!(
        restarted
            .note
            .as_deref()
            .is_some_and(|n| n.contains("3.6.0")),
        "{restarted:?}"
    );
    drop(seed);
}

/// The seed's Pod goes away before the cluster ever answered while its PVC stays: the next pass
/// creates the seed Pod again (`new`, on the same PVC) instead of waiting forever.
#[tokio::test]
async fn a_seed_pod_deleted_before_it_answered_is_created_again() {
    let k = shared_kube();
    let ns = k.namespace("seed-again").expect("namespace");
    let client = k.client().await.expect("client");
    let clusters: Api<EtcdCluster> = Api::namespaced(client.clone(), &ns);
    clusters
        .create(
            &PostParams::default(),
            &cluster("again", json!({"replicas": 3})),
        )
        .await
        .expect("create");
    let ctx = Arc::new(Context::new(
        client.clone(),
        Arc::new(Metrics::new()),
        resolver_from_args(&[]).expect("resolver"),
        5,
    ));
    let pass = || async {
        let current = clusters.get("again").await.expect("cluster");
        reconcile(Arc::new(current), ctx.clone())
            .await
            .expect("pass");
    };
    pass().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let first = pods.get("again-0").await.expect("seed pod");
    let pvc_uid = pvcs
        .get("again-0")
        .await
        .expect("seed pvc")
        .metadata
        .uid
        .expect("pvc uid");
    pods.delete("again-0", &Default::default())
        .await
        .expect("delete the seed pod");
    wait_for("the seed Pod to be gone", || async {
        pods.get_opt("again-0")
            .await
            .expect("get")
            .is_none()
            .then_some(())
    })
    .await;

    pass().await;
    let second = pods.get("again-0").await.expect("the seed pod again");
    assert_ne!(second.metadata.uid, first.metadata.uid, "a new Pod");
    let args = second.spec.expect("spec").containers[0]
        .args
        .clone()
        .expect("args");
    assert!(
        args.iter().any(|a| a == "--initial-cluster-state=new"),
        "{args:?}"
    );
    assert_eq!(
        pvcs.get("again-0").await.expect("pvc").metadata.uid,
        Some(pvc_uid),
        "the PVC is kept"
    );
    // Still only the seed: no other member before the cluster answers.
    let names: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .expect("pods")
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(names, ["again-0"]);
    let status = clusters
        .get("again")
        .await
        .expect("cluster")
        .status
        .expect("status");
    assert_eq!(status.phase.as_deref(), Some("Bootstrapping"));
}

/// Every Pod of a live cluster is deleted while etcd is down (its PVC holds data: the cluster ID
/// was seen): etcd is unreachable, and the controller creates the Pod again to rejoin with
/// `--initial-cluster-state=existing` on the same PVC, never as the seed of a new cluster. A real
/// etcd stands in for the Pod; started again on its data directory, the cluster answers with the
/// same cluster ID and is healthy.
#[tokio::test]
async fn a_deleted_pod_of_a_live_cluster_is_created_again_on_its_data() {
    let k = shared_kube();
    let ns = k.namespace("restart").expect("namespace");
    let client = k.client().await.expect("client");
    let clusters: Api<EtcdCluster> = Api::namespaced(client.clone(), &ns);
    clusters
        .create(
            &PostParams::default(),
            &cluster("back", json!({"replicas": 1})),
        )
        .await
        .expect("create");
    let host = format!("back-0.{ns}.svc.cluster.local");
    let mut seed = support::etcd::EtcdCluster::builder()
        .members(1)
        .flag("--name=back-0")
        .flag(format!("--advertise-client-urls=http://{host}:2379"))
        .flag(format!("--initial-advertise-peer-urls=http://{host}:2380"))
        .flag(format!("--initial-cluster=back-0=http://{host}:2380"))
        .start()
        .expect("the stand-in etcd");
    let port = seed.member(0).client_port;
    let resolver =
        resolver_from_args(&[format!("{host}:2379=127.0.0.1:{port}")]).expect("resolver");
    let ctx = Arc::new(Context::new(
        client.clone(),
        Arc::new(Metrics::new()),
        resolver,
        5,
    ));
    let pass = || async {
        let current = clusters.get("back").await.expect("cluster");
        reconcile(Arc::new(current), ctx.clone())
            .await
            .expect("pass");
    };
    let status = || async {
        clusters
            .get("back")
            .await
            .expect("cluster")
            .status
            .expect("status")
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let running = || async {
        pods.patch_status(
            "back-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running"}})),
        )
        .await
        .expect("pod status");
    };

    pass().await;
    running().await;
    for _ in 0..3 {
        pass().await;
    }
    let before = status().await;
    assert_eq!(before.phase.as_deref(), Some("Healthy"), "{before:?}");
    let cluster_id = before.cluster_id.clone().expect("a cluster ID was seen");
    let first = pods.get("back-0").await.expect("pod");
    let pvc_uid = pvcs.get("back-0").await.expect("pvc").metadata.uid;

    // The Pod is deleted and etcd goes down with it; the PVC stays.
    seed.stop(0);
    pods.delete("back-0", &Default::default())
        .await
        .expect("delete the pod");
    wait_for("the Pod to be gone", || async {
        pods.get_opt("back-0")
            .await
            .expect("get")
            .is_none()
            .then_some(())
    })
    .await;

    pass().await;
    let again = pods.get("back-0").await.expect("the Pod created again");
    assert_ne!(again.metadata.uid, first.metadata.uid, "a new Pod");
    let args = again.spec.clone().expect("spec").containers[0]
        .args
        .clone()
        .expect("args");
    assert!(
        args.iter().any(|a| a == "--initial-cluster-state=existing"),
        "{args:?}"
    );
    assert!(
        args.iter()
            .any(|a| a == &format!("--initial-cluster=back-0=http://{host}:2380")),
        "{args:?}"
    );
    let claims: Vec<String> = again
        .spec
        .expect("spec")
        .volumes
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| v.persistent_volume_claim.map(|c| c.claim_name))
        .collect();
    assert_eq!(claims, ["back-0"], "the Pod mounts its old PVC");
    assert_eq!(
        pvcs.get("back-0").await.expect("pvc").metadata.uid,
        pvc_uid,
        "the PVC is kept"
    );
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let events = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items;
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("StoppedMemberStarted")),
        "no StoppedMemberStarted event"
    );
    assert!(
        events
            .iter()
            .all(|e| e.reason.as_deref() != Some("SeedStarted")
                || e.metadata.creation_timestamp <= first.metadata.creation_timestamp),
        "a seed was started again"
    );
    // Another pass while etcd is still down changes nothing: the Pod is the one just created.
    pass().await;
    assert_eq!(
        pods.get("back-0").await.expect("pod").metadata.uid,
        again.metadata.uid
    );

    // "The kubelet" runs the new Pod: etcd starts on its data directory.
    seed.restart(0).expect("etcd on its old data");
    running().await;
    let after = wait_for("the cluster to be healthy again", || async {
        pass().await;
        let s = status().await;
        (s.phase.as_deref() == Some("Healthy")).then_some(s)
    })
    .await;
    assert_eq!(
        after.cluster_id.as_deref(),
        Some(cluster_id.as_str()),
        "the same cluster"
    );
    drop(seed);
}

#[tokio::test]
async fn an_unreadable_intent_stops_the_cluster_with_a_condition_and_one_event() {
    let k = shared_kube();
    let ns = k.namespace("bad-intent").expect("namespace");
    let client = k.client().await.expect("client");
    let clusters: Api<EtcdCluster> = Api::namespaced(client.clone(), &ns);
    let mut bad = cluster("bad", json!({"replicas": 3}));
    bad.metadata.annotations = Some(
        [(
            "etcd.operator.dev/intent".to_owned(),
            "{not json".to_owned(),
        )]
        .into(),
    );
    clusters
        .create(&PostParams::default(), &bad)
        .await
        .expect("create");
    let ctx = Arc::new(Context::new(
        client.clone(),
        Arc::new(Metrics::new()),
        resolver_from_args(&[]).expect("resolver"),
        5,
    ));
    for _ in 0..3 {
        let current = clusters.get("bad").await.expect("cluster");
        let err = reconcile(Arc::new(current), ctx.clone())
            .await
            .expect_err("an unreadable intent fails the pass");
        assert!(err.to_string().contains("intent"), "{err}");
    }
    let status = clusters
        .get("bad")
        .await
        .expect("cluster")
        .status
        .expect("a status");
    let degraded = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .expect("Degraded");
    assert_eq!(degraded.status, "True");
    assert_eq!(degraded.reason, "IntentUnreadable");
    assert!(
        degraded.message.contains("etcd.operator.dev/intent"),
        "{}",
        degraded.message
    );
    let progressing = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .expect("Progressing");
    assert_eq!(progressing.status, "False");
    // Nothing was created while the step in flight is unknown.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    assert!(
        pods.list(&ListParams::default())
            .await
            .expect("pods")
            .items
            .is_empty()
    );
    // One warning Event for three failed passes.
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let warnings: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("IntentUnreadable"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].type_.as_deref(), Some("Warning"));
    // The recorder counts a repeated Event in a series: published once, it has none.
    assert!(warnings[0].series.is_none(), "{:?}", warnings[0].series);
}

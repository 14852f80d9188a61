//! Leader election against a real kube-apiserver: several electors, each with its own client
//! (its own connections), compete for one Lease. A shared recorder logs when each one's work
//! starts and stops; every test checks from that log that no two ever acted at once.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_operator::leader::{
    LeaderElectionConfig, LeaderElector, LeaderError, LeaderMetrics, RunOutcome,
};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use support::kube::KubeControlPlane;
use support::proxy::FaultProxy;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const NS: &str = "default";
/// Generous bound for any wait in these tests (the machine is loaded); never a speed assertion.
const PATIENCE: Duration = Duration::from_secs(90);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Act {
    Start,
    Stop,
}

/// The test-visible record of who acted when.
#[derive(Debug, Default)]
struct Recorder {
    log: Mutex<Vec<(String, Act, Instant)>>,
    acting: Mutex<Vec<String>>,
    /// Set when work saw another identity acting at the same time.
    overlaps: Mutex<Vec<String>>,
}

/// Records the end of one identity's work when dropped (work stopped by any means).
struct Acting {
    rec: Arc<Recorder>,
    id: String,
}

impl Drop for Acting {
    fn drop(&mut self) {
        self.rec
            .acting
            .lock()
            .expect("recorder lock")
            .retain(|a| a != &self.id);
        self.rec.log.lock().expect("recorder lock").push((
            self.id.clone(),
            Act::Stop,
            Instant::now(),
        ));
    }
}

impl Recorder {
    fn begin(self: &Arc<Self>, id: &str) -> Acting {
        let mut acting = self.acting.lock().expect("recorder lock");
        if !acting.is_empty() {
            self.overlaps
                .lock()
                .expect("recorder lock")
                .push(format!("{id} started while {acting:?} acted"));
        }
        acting.push(id.to_string());
        self.log
            .lock()
            .expect("recorder lock")
            .push((id.to_string(), Act::Start, Instant::now()));
        Acting {
            rec: self.clone(),
            id: id.to_string(),
        }
    }

    /// Who is acting now.
    fn current(&self) -> Vec<String> {
        self.acting.lock().expect("recorder lock").clone()
    }

    /// The identities whose work started, in order.
    fn starts(&self) -> Vec<String> {
        self.log
            .lock()
            .expect("recorder lock")
            .iter()
            .filter(|(_, a, _)| *a == Act::Start)
            .map(|(id, _, _)| id.clone())
            .collect()
    }

    fn when(&self, id: &str, act: Act) -> Option<Instant> {
        self.log
            .lock()
            .expect("recorder lock")
            .iter()
            .rev()
            .find(|(i, a, _)| i == id && *a == act)
            .map(|(_, _, t)| *t)
    }

    /// Replays the log and fails if two identities were ever acting at once.
    fn assert_never_two(&self) {
        let overlaps = self.overlaps.lock().expect("recorder lock").clone();
        assert!(overlaps.is_empty(), "overlapping leaders: {overlaps:?}");
        let mut active: Vec<String> = Vec::new();
        for (id, act, _) in self.log.lock().expect("recorder lock").iter() {
            match act {
                Act::Start => {
                    assert!(active.is_empty(), "{id} started while {active:?} acted");
                    active.push(id.clone());
                }
                Act::Stop => active.retain(|a| a != id),
            }
        }
    }

    async fn wait_for(&self, what: &str, cond: impl Fn(&Recorder) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !cond(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log: {:?}",
                self.log.lock().expect("recorder lock")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One elector running in its own task.
struct Candidate {
    id: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<RunOutcome<()>, LeaderError>>,
}

impl Candidate {
    fn start(
        client: kube::Client,
        config: LeaderElectionConfig,
        rec: &Arc<Recorder>,
        metrics: Option<LeaderMetrics>,
    ) -> Candidate {
        let id = config.identity.clone();
        let mut elector = LeaderElector::new(client, config).expect("valid config");
        if let Some(m) = metrics {
            elector = elector.with_metrics(m);
        }
        let (tx, rx) = oneshot::channel::<()>();
        let rec = rec.clone();
        let me = id.clone();
        let work = move || async move {
            let _acting = rec.begin(&me);
            // The work runs until it is dropped; it keeps checking that it acts alone.
            loop {
                let others: Vec<String> = rec.current().into_iter().filter(|a| a != &me).collect();
                if !others.is_empty() {
                    rec.overlaps
                        .lock()
                        .expect("recorder lock")
                        .push(format!("{me} acting together with {others:?}"));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let task = tokio::spawn(elector.run(work, async move {
            let _ = rx.await;
        }));
        Candidate {
            id,
            shutdown: Some(tx),
            task,
        }
    }

    /// Graceful stop (like SIGTERM): the work stops and the Lease is released.
    async fn stop(mut self) -> Result<RunOutcome<()>, LeaderError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("elector stops after shutdown")
            .expect("elector task not panicked")
    }
}

fn config(id: &str, lease: &str, durations: (u64, u64, u64)) -> LeaderElectionConfig {
    LeaderElectionConfig::new(NS, lease, id).timings(
        Duration::from_secs(durations.0),
        Duration::from_millis(durations.1),
        Duration::from_millis(durations.2),
    )
}

async fn lease(cp: &KubeControlPlane, name: &str) -> Lease {
    let api: Api<Lease> = Api::namespaced(cp.client().await.expect("client"), NS);
    api.get(name).await.expect("lease exists")
}

fn holder(l: &Lease) -> Option<String> {
    l.spec.as_ref().and_then(|s| s.holder_identity.clone())
}

fn transitions(l: &Lease) -> i32 {
    l.spec
        .as_ref()
        .and_then(|s| s.lease_transitions)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_one_of_three_leads_and_another_takes_over_when_it_dies() {
    let cp = KubeControlPlane::start().await.expect("control plane");
    let rec = Arc::new(Recorder::default());
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = LeaderMetrics::register(&mut registry);
    let mut candidates = Vec::new();
    for i in 0..3 {
        let id = format!("operator-{i}");
        let client = cp.client().await.expect("client");
        candidates.push(Candidate::start(
            client,
            config(&id, "crash", (3, 2000, 500)),
            &rec,
            Some(metrics.clone()),
        ));
    }

    rec.wait_for("a first leader", |r| r.starts().len() == 1)
        .await;
    let first = rec.starts()[0].clone();
    // Several renew rounds later the same one still leads, alone.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        rec.starts(),
        vec![first.clone()],
        "leadership must not move"
    );
    assert_eq!(rec.current(), vec![first.clone()]);
    assert_eq!(
        holder(&lease(&cp, "crash").await).as_deref(),
        Some(first.as_str())
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains(&format!(
            "etcd_operator_leader_is_leader{{identity=\"{first}\"}} 1"
        )),
        "{text}"
    );
    assert_eq!(
        text.matches("etcd_operator_leader_is_leader{").count(),
        3,
        "{text}"
    );
    // Exactly one leader gauge at 1 and one acquisition, both the first leader's (the holder
    // gauge, which standbys set too as they read the Lease, is checked on its own).
    let ones = |metric: &str| -> Vec<&str> {
        text.lines()
            .filter(|l| l.starts_with(metric) && l.ends_with("} 1"))
            .collect()
    };
    assert_eq!(
        ones("etcd_operator_leader_is_leader{"),
        vec![format!("etcd_operator_leader_is_leader{{identity=\"{first}\"}} 1").as_str()],
        "one leader gauge: {text}"
    );
    assert_eq!(
        ones("etcd_operator_leader_acquisitions_total{"),
        vec![format!("etcd_operator_leader_acquisitions_total{{identity=\"{first}\"}} 1").as_str()],
        "one acquisition: {text}"
    );
    let holders = ones("etcd_operator_leader_holder{");
    assert!(
        holders.is_empty()
            || holders
                == vec![format!("etcd_operator_leader_holder{{holder=\"{first}\"}} 1").as_str()],
        "the holder gauge names only the leader: {text}"
    );

    // Abrupt death: the task is aborted, nothing is released.
    let pos = candidates.iter().position(|c| c.id == first).unwrap();
    let dead = candidates.remove(pos);
    dead.task.abort();
    let _ = dead.task.await;
    let died = Instant::now();
    rec.wait_for("a second leader", |r| r.starts().len() == 2)
        .await;
    let second = rec.starts()[1].clone();
    assert_ne!(second, first);
    let took = rec.when(&second, Act::Start).unwrap() - died;
    println!("takeover after the leader died: {took:?} (lease 3 s, retry 0.5 s)");
    let l = lease(&cp, "crash").await;
    assert_eq!(holder(&l).as_deref(), Some(second.as_str()));
    assert_eq!(transitions(&l), 1);

    for c in candidates {
        let outcome = c.stop().await.expect("graceful stop");
        assert_eq!(outcome, RunOutcome::Shutdown);
    }
    rec.assert_never_two();
    assert_eq!(rec.starts().len(), 2, "{:?}", rec.starts());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_shutdown_releases_so_a_standby_takes_over_without_waiting_for_expiry() {
    let cp = KubeControlPlane::start().await.expect("control plane");
    let rec = Arc::new(Recorder::default());
    // A lease of an hour: a takeover within this test can only come from the release.
    let mut candidates = Vec::new();
    for i in 0..3 {
        let id = format!("replica-{i}");
        let client = cp.client().await.expect("client");
        candidates.push(Candidate::start(
            client,
            config(&id, "graceful", (3600, 10_000, 500)),
            &rec,
            None,
        ));
    }
    rec.wait_for("a first leader", |r| r.starts().len() == 1)
        .await;
    let first = rec.starts()[0].clone();
    let before = lease(&cp, "graceful").await;
    assert_eq!(holder(&before).as_deref(), Some(first.as_str()));

    let pos = candidates.iter().position(|c| c.id == first).unwrap();
    let leader = candidates.remove(pos);
    let asked = Instant::now();
    assert_eq!(leader.stop().await.expect("clean"), RunOutcome::Shutdown);
    assert!(rec.when(&first, Act::Stop).is_some(), "work stopped");
    rec.wait_for("a standby to take over", |r| r.starts().len() == 2)
        .await;
    let second = rec.starts()[1].clone();
    assert_ne!(second, first);
    println!(
        "handover after graceful shutdown: {:?} (retry period 0.5 s)",
        rec.when(&second, Act::Start).unwrap() - asked
    );
    let after = lease(&cp, "graceful").await;
    assert_eq!(holder(&after).as_deref(), Some(second.as_str()));
    assert_eq!(transitions(&after), transitions(&before) + 1);

    for c in candidates {
        assert_eq!(c.stop().await.expect("clean"), RunOutcome::Shutdown);
    }
    // The last leader released too: the Lease has no holder.
    assert_eq!(holder(&lease(&cp, "graceful").await), None);
    rec.assert_never_two();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_that_cannot_renew_stops_its_work_and_reports_lost() {
    let cp = KubeControlPlane::start().await.expect("control plane");
    let rec = Arc::new(Recorder::default());
    // The leader reaches the apiserver through a proxy the test can cut.
    let target = cp.url().trim_start_matches("https://").to_string();
    let proxy = FaultProxy::start(&target).expect("proxy");
    let kc = kube::config::Kubeconfig::read_from(cp.kubeconfig()).expect("kubeconfig");
    let mut cfg =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .expect("config");
    cfg.cluster_url = format!("https://{}", proxy.addr()).parse().expect("url");
    let cut_off = kube::Client::try_from(cfg).expect("client");

    let leader = Candidate::start(
        cut_off,
        config("isolated", "fence", (3, 2000, 500)),
        &rec,
        None,
    );
    rec.wait_for("the isolated one to lead", |r| r.starts().len() == 1)
        .await;
    assert_eq!(rec.starts(), vec!["isolated".to_string()]);
    let standby = Candidate::start(
        cp.client().await.expect("client"),
        config("standby", "fence", (3, 2000, 500)),
        &rec,
        None,
    );
    // The standby sees a valid foreign lease and waits.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rec.starts().len(), 1);

    proxy.blackhole();
    let result = tokio::time::timeout(PATIENCE, leader.task)
        .await
        .expect("the cut-off leader gives up")
        .expect("not panicked");
    match result {
        Err(LeaderError::Lost { lease, .. }) => assert_eq!(lease, "default/fence"),
        other => panic!("expected Lost, got {other:?}"),
    }
    // Its work was stopped before `run` returned.
    assert!(rec.when("isolated", Act::Stop).is_some());
    rec.wait_for("the standby to take over", |r| r.starts().len() == 2)
        .await;
    assert_eq!(rec.starts()[1], "standby");
    let gap = rec.when("standby", Act::Start).unwrap() - rec.when("isolated", Act::Stop).unwrap();
    println!(
        "the fenced leader stopped {gap:?} before the standby started (lease 3 s, renew deadline 2 s)"
    );
    assert_eq!(
        holder(&lease(&cp, "fence").await).as_deref(),
        Some("standby")
    );
    assert_eq!(standby.stop().await.expect("clean"), RunOutcome::Shutdown);
    rec.assert_never_two();
}

#[tokio::test]
async fn bad_settings_are_refused_before_touching_the_apiserver() {
    // A client that points nowhere: construction must fail on the settings alone.
    let cfg = kube::Config::new("https://127.0.0.1:9".parse().unwrap());
    let client = kube::Client::try_from(cfg).unwrap();
    let err = LeaderElector::new(client, config("a", "l", (2, 2000, 500))).unwrap_err();
    assert!(matches!(err, LeaderError::Config(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_stops_the_work_before_it_releases_the_lease() {
    let cp = KubeControlPlane::start().await.expect("control plane");
    let rec = Arc::new(Recorder::default());
    let target = cp.url().trim_start_matches("https://").to_string();
    let proxy = FaultProxy::start(&target).expect("proxy");
    let kc = kube::config::Kubeconfig::read_from(cp.kubeconfig()).expect("kubeconfig");
    let mut cfg =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .expect("config");
    cfg.cluster_url = format!("https://{}", proxy.addr()).parse().expect("url");
    let client = kube::Client::try_from(cfg).expect("client");
    let leader = Candidate::start(
        client,
        config("slow-exit", "order", (15, 10_000, 500)),
        &rec,
        None,
    );
    rec.wait_for("it to lead", |r| r.starts().len() == 1).await;

    // The release cannot reach the apiserver (it hangs until the renew deadline), yet the work
    // must already be stopped while `run` is still trying to release.
    proxy.blackhole();
    let Candidate { shutdown, task, .. } = leader;
    let _ = shutdown.expect("shutdown sender").send(());
    rec.wait_for("the work to stop", |r| {
        r.when("slow-exit", Act::Stop).is_some()
    })
    .await;
    assert!(
        !task.is_finished(),
        "the work must stop before the release, not when run() returns"
    );
    let outcome = tokio::time::timeout(PATIENCE, task)
        .await
        .expect("run returns after the release attempt")
        .expect("not panicked");
    assert_eq!(
        outcome.expect("shutdown is not an error"),
        RunOutcome::Shutdown
    );
}

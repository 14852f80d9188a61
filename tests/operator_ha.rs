//! The operator as it is deployed, end to end: the real `etcd-operator run` binary against a real
//! kube-apiserver (one control plane for this file, RBAC enforced).
//!
//! - Least privilege: the chart is installed, the operator runs with the chart ServiceAccount's
//!   token (TokenRequest) and the Deployment's own arguments, and reconciles a sample cluster as
//!   far as its objects, status and Event, with no `forbidden` in its logs.
//! - High availability: four operator processes share one Lease; SIGKILL, SIGTERM and SIGSTOP of
//!   the leader each hand over to exactly one other process, and two records show that no two
//!   ever act at once: each process's leader gauge, scraped continuously, and the timestamps of
//!   every reconcile pass in the processes' JSON logs.
//!
//! Both tests run operators that act on EtcdClusters, so they take turns ([`SERIAL`]).

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_operator::api::EtcdCluster;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::{Value, json};
use support::process::Proc;
use support::shared_kube::{SharedKube, shared_kube};

/// How long any condition may take to appear on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(90);

/// The operators of one test act on every EtcdCluster they watch; the tests take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// [`wait_for`], failing at once with the log when the operator's log shows a `forbidden`
/// answer (a right the ServiceAccount lacks).
async fn wait_unforbidden<T, F, Fut>(op: &Operator, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    wait_for(what, || {
        let log = op.log();
        assert!(
            !log.to_lowercase().contains("forbidden"),
            "the ServiceAccount lacked a right while waiting for {what}:\n{log}"
        );
        f()
    })
    .await
}

/// `GET path` on the operator's metrics port: `(status code, body)`.
async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        let (head, body) = out.split_once("\r\n\r\n")?;
        let code = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((code, body.to_owned()))
    };
    tokio::time::timeout(Duration::from_millis(500), exchange)
        .await
        .ok()
        .flatten()
}

/// One scrape of a process's leader metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LeaderGauge {
    leading: bool,
    acquisitions: u64,
}

fn parse_leader_metrics(text: &str, identity: &str) -> Option<LeaderGauge> {
    let value = |name: &str| -> Option<u64> {
        let prefix = format!("{name}{{identity=\"{identity}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse().ok())
    };
    Some(LeaderGauge {
        leading: value("etcd_operator_leader_is_leader")? == 1,
        acquisitions: value("etcd_operator_leader_acquisitions_total").unwrap_or(0),
    })
}

/// One operator process (the real binary), killed on drop.
struct Operator {
    name: String,
    port: u16,
    proc: Proc,
}

/// Variables of the test's own environment the operator must not inherit (it gets its own).
const SCRUBBED: &[&str] = &[
    "KUBECONFIG",
    "WATCH_NAMESPACE",
    "POD_NAME",
    "POD_NAMESPACE",
    "RUST_LOG",
    "HOSTNAME",
];

impl Operator {
    /// Starts `etcd-operator <args>` (any `--metrics-addr` in `args` is replaced by a free
    /// loopback port) with `env` and the given kubeconfig.
    fn start(
        k: &SharedKube,
        name: &str,
        kubeconfig: &Path,
        args: &[String],
        env: &[(String, String)],
    ) -> Operator {
        let port = support::ports::free_port().expect("port");
        let mut all: Vec<String> = args
            .iter()
            .filter(|a| !a.starts_with("--metrics-addr"))
            .cloned()
            .collect();
        all.push(format!("--metrics-addr=127.0.0.1:{port}"));
        let mut env = env.to_vec();
        env.push(("KUBECONFIG".into(), kubeconfig.display().to_string()));
        let log = k.dir().join(format!("operator-{name}.log"));
        // `env -u VAR... VAR=value... operator args...`: drops the inherited variables, sets
        // ours, then execs the operator (same pid, and PDEATHSIG survives the exec).
        let mut argv: Vec<String> = SCRUBBED
            .iter()
            .flat_map(|v| ["-u".to_string(), v.to_string()])
            .collect();
        argv.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
        argv.push(env!("CARGO_BIN_EXE_etcd-operator").to_string());
        argv.extend(all);
        let proc = Proc::spawn(name, Path::new("/usr/bin/env"), &argv, &log)
            .expect("starting etcd-operator");
        Operator {
            name: name.to_owned(),
            port,
            proc,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.proc.log_path()).unwrap_or_default()
    }

    async fn gauge(&self) -> Option<LeaderGauge> {
        let (code, body) = http_get(self.port, "/metrics").await?;
        (code == 200)
            .then(|| parse_leader_metrics(&body, &self.name))
            .flatten()
    }

    /// Waits until the process has exited; its exit description.
    async fn exit_status(&mut self) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.proc.exited() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit; log:\n{}",
                self.name,
                self.proc.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The JSON log lines (any other line is skipped).
    fn json_lines(&self) -> Vec<Value> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect()
    }

    /// Whether a log line with this message was written.
    fn logged(&self, message: &str) -> bool {
        self.json_lines().iter().any(|l| l["message"] == message)
    }
}

/// The leader gauges of a changing set of processes, scraped one after another in a loop, in the
/// order the scrapes were made.
#[derive(Clone, Default)]
struct Monitor {
    targets: Arc<Mutex<Vec<(String, u16)>>>,
    seen: Arc<Mutex<Vec<(String, LeaderGauge)>>>,
}

impl Monitor {
    fn watch(&self, op: &Operator) {
        self.targets
            .lock()
            .expect("lock")
            .push((op.name.clone(), op.port));
    }

    /// Stops scraping `name` (a process about to be frozen: once it resumes it still reports
    /// itself leader for an instant before it notices it lost the Lease, though it no longer
    /// acts; the logs cover it).
    fn forget(&self, name: &str) {
        self.targets
            .lock()
            .expect("lock")
            .retain(|(n, _)| n != name);
    }

    fn spawn(&self) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let targets = me.targets.lock().expect("lock").clone();
                for (name, port) in targets {
                    let Some((200, body)) = http_get(port, "/metrics").await else {
                        continue;
                    };
                    if let Some(g) = parse_leader_metrics(&body, &name) {
                        me.seen.lock().expect("lock").push((name, g));
                    }
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        })
    }

    /// Waits until a scrape has seen `name` leading.
    async fn wait_seen_leading(&self, name: &str) {
        wait_for(&format!("a scrape of {name} leading"), || async {
            self.observations()
                .iter()
                .any(|(n, g)| n == name && g.leading)
                .then_some(())
        })
        .await;
    }

    fn observations(&self) -> Vec<(String, LeaderGauge)> {
        self.seen.lock().expect("lock").clone()
    }
}

/// Scrapes that prove two processes led at once: process X reported leading in two consecutive
/// scrapes with the same acquisition count (so it led throughout), and another process reported
/// leading in a scrape made between them.
fn simultaneous_leaders(seen: &[(String, LeaderGauge)]) -> Vec<String> {
    let mut found = Vec::new();
    for (i, (x, gx)) in seen.iter().enumerate() {
        if !gx.leading {
            continue;
        }
        let Some(j) = (i + 1..seen.len()).find(|&j| seen[j].0 == *x) else {
            continue;
        };
        if !(seen[j].1.leading && seen[j].1.acquisitions == gx.acquisitions) {
            continue;
        }
        for (y, gy) in &seen[i + 1..j] {
            if y != x && gy.leading {
                found.push(format!(
                    "{y} led while {x} led (scrapes {i}..{j}: {:?})",
                    &seen[i..=j]
                ));
            }
        }
    }
    found
}

fn timestamp(line: &Value) -> Timestamp {
    line["timestamp"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("log line without a timestamp: {line}"))
}

/// When a process acted, from its log: intervals from "became leader" to the line written once
/// its work stopped, cut at `frozen_or_killed` (after which it cannot act); and the time of every
/// reconcile pass it started.
fn acting_record(
    lines: &[Value],
    frozen_or_killed: Option<Timestamp>,
) -> (Vec<(Timestamp, Timestamp)>, Vec<Timestamp>) {
    let mut intervals = Vec::new();
    let mut passes = Vec::new();
    let mut open: Option<Timestamp> = None;
    for line in lines {
        let t = timestamp(line);
        match line["message"].as_str().unwrap_or_default() {
            "became leader; starting work" => {
                assert!(open.is_none(), "became leader twice: {line}");
                open = Some(t);
            }
            "stopped leading; work stopped, releasing the lease"
            | "lost leadership; work stopped" => {
                let start = open
                    .take()
                    .unwrap_or_else(|| panic!("stopped without leading: {line}"));
                intervals.push((start, frozen_or_killed.map_or(t, |c| c.min(t))));
            }
            "reconciling" => passes.push(t),
            _ => {}
        }
    }
    if let Some(start) = open {
        let end = frozen_or_killed
            .expect("a process still leading at the end was neither killed nor frozen");
        intervals.push((start, end));
    }
    (intervals, passes)
}

/// Whether every thread of `pid` is stopped (state `T` in `/proc/<pid>/task/*/stat`).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.filter_map(Result::ok).all(|t| {
        std::fs::read_to_string(t.path().join("stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().starts_with('T'))
            })
            .unwrap_or(false)
    })
}

fn lease_times(lease: &Lease) -> (Option<String>, Option<Timestamp>, Option<Timestamp>) {
    let spec = lease.spec.clone().unwrap_or_default();
    (
        spec.holder_identity.filter(|h| !h.is_empty()),
        spec.acquire_time.map(|t| t.0),
        spec.renew_time.map(|t| t.0),
    )
}

fn secs(d: SignedDuration) -> f64 {
    d.as_secs_f64()
}

const LEASE_SECS: i64 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_acts_and_hands_over_on_kill_term_and_freeze() {
    let _turn = SERIAL.lock().await;
    let k = shared_kube();
    let ns = k.namespace("ha").expect("namespace");
    let client = k.client().await.expect("client");
    let clusters: Api<EtcdCluster> = Api::namespaced(client.clone(), &ns);
    let cluster: EtcdCluster = serde_json::from_value(json!({
        "apiVersion": "etcd.operator.dev/v1alpha1",
        "kind": "EtcdCluster",
        "metadata": {"name": "ha"},
        "spec": {"replicas": 3},
    }))
    .expect("an EtcdCluster");
    clusters
        .create(&PostParams::default(), &cluster)
        .await
        .expect("create");
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let lease_duration = SignedDuration::from_secs(LEASE_SECS);

    let start = |name: &str| {
        let args: Vec<String> = [
            "run",
            "--namespace",
            &ns,
            "--log-format=json",
            "--leader-elect",
            "--leader-election-namespace",
            &ns,
            "--leader-election-lease=ha-leader",
            "--leader-election-identity",
            name,
            &format!("--leader-election-lease-duration={LEASE_SECS}s"),
            "--leader-election-renew-deadline=3s",
            "--leader-election-retry-period=500ms",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let env = vec![
            ("POD_NAME".to_string(), name.to_string()),
            (
                "RUST_LOG".to_string(),
                "info,etcd_operator::runtime::kubernetes=debug".to_string(),
            ),
        ];
        Operator::start(k, name, k.kubeconfig(), &args, &env)
    };
    let monitor = Monitor::default();
    let scraper = monitor.spawn();
    let mut ops: Vec<Operator> = ["op-a", "op-b", "op-c"].iter().map(|n| start(n)).collect();
    for op in &ops {
        monitor.watch(op);
    }
    // What the test did to which process, and when: the end of its acting, at the latest.
    let mut cut: Vec<(String, Timestamp)> = Vec::new();

    // Exactly one leads: the Lease holder reports itself leader, the others stand by, and all
    // are ready.
    let holder = |lease: Option<Lease>| lease.as_ref().map(lease_times).and_then(|(h, _, _)| h);
    let leader_is =
        |ops: &[Operator], name: &str| ops.iter().position(|o| o.name == name).expect("known");
    let first = wait_for("a first leader", || async {
        holder(leases.get_opt("ha-leader").await.ok()?)
    })
    .await;
    for op in &ops {
        let want = op.name == first;
        wait_for(&format!("{} to report leading={want}", op.name), || async {
            (op.gauge().await?.leading == want).then_some(())
        })
        .await;
        // Every endpoint names the leader.
        let names_leader = format!("etcd_operator_leader_holder{{holder=\"{first}\"}} 1");
        wait_for(
            &format!("{} to name {first} as leader", op.name),
            || async {
                http_get(op.port, "/metrics")
                    .await?
                    .1
                    .contains(&names_leader)
                    .then_some(())
            },
        )
        .await;
        wait_for(&format!("{} ready", op.name), || async {
            (http_get(op.port, "/readyz").await? == (200, "ok\n".to_string())).then_some(())
        })
        .await;
        assert_eq!(
            http_get(op.port, "/healthz").await,
            Some((200, "ok\n".to_string()))
        );
    }
    // The leader acts: the seed Pod, the status, and its Event, reported by the leader.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    wait_for("the seed Pod", || async {
        pods.get_opt("ha-0").await.ok().flatten()
    })
    .await;
    wait_for("the status", || async {
        clusters.get("ha").await.ok()?.status?.phase
    })
    .await;
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let seeded = wait_for("the SeedStarted Event", || async {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("SeedStarted"))
    })
    .await;
    assert_eq!(seeded.reporting_instance.as_deref(), Some(first.as_str()));
    let wait_passes = |op: &Operator| {
        let name = op.name.clone();
        let path = op.proc.log_path().to_path_buf();
        async move {
            wait_for(&format!("{name} to reconcile"), || {
                let path = path.clone();
                async move {
                    std::fs::read_to_string(&path)
                        .ok()?
                        .contains("\"message\":\"reconciling\"")
                        .then_some(())
                }
            })
            .await
        }
    };
    wait_passes(&ops[leader_is(&ops, &first)]).await;
    monitor.wait_seen_leading(&first).await;

    // SIGKILL the leader (a crash) and start a replacement, as the Deployment would. Another
    // takes the Lease once it expired: not before the lease duration after the last renewal, and
    // within the lease duration + 2 s of the kill.
    let i = leader_is(&ops, &first);
    ops[i].proc.kill();
    let killed_at = Timestamp::now();
    cut.push((first.clone(), killed_at));
    let (h, _, last_renew) = lease_times(&leases.get("ha-leader").await.expect("lease"));
    assert_eq!(h.as_deref(), Some(first.as_str()), "nobody took over yet");
    let last_renew = last_renew.expect("renewed");
    let replacement = start("op-d");
    monitor.watch(&replacement);
    ops.push(replacement);
    let (second, acquired) = wait_for("a leader after SIGKILL", || async {
        let (h, acquired, _) = lease_times(&leases.get_opt("ha-leader").await.ok()??);
        h.filter(|h| *h != first).zip(acquired)
    })
    .await;
    let takeover = acquired.duration_since(killed_at);
    println!(
        "SIGKILL: {second} took over {:.2} s after the kill ({:.2} s after the last renewal; lease {LEASE_SECS} s)",
        secs(takeover),
        secs(acquired.duration_since(last_renew))
    );
    assert!(
        acquired.duration_since(last_renew) >= lease_duration,
        "{second} took the Lease before it expired"
    );
    assert!(
        takeover <= lease_duration + SignedDuration::from_secs(2),
        "takeover after SIGKILL took {:.2} s",
        secs(takeover)
    );
    wait_passes(&ops[leader_is(&ops, &second)]).await;
    monitor.wait_seen_leading(&second).await;

    // SIGTERM the leader: it stops its work, releases the Lease and exits 0; a standby takes
    // over within 2 s.
    let i = leader_is(&ops, &second);
    ops[i].proc.signal(libc::SIGTERM).expect("SIGTERM");
    let termed_at = Timestamp::now();
    let (third, acquired) = wait_for("a leader after SIGTERM", || async {
        let (h, acquired, _) = lease_times(&leases.get_opt("ha-leader").await.ok()??);
        h.filter(|h| *h != second).zip(acquired)
    })
    .await;
    let takeover = acquired.duration_since(termed_at);
    println!(
        "SIGTERM: {third} took over {:.2} s after the signal",
        secs(takeover)
    );
    assert!(
        takeover <= SignedDuration::from_secs(2),
        "takeover after SIGTERM took {:.2} s",
        secs(takeover)
    );
    let status = ops[i].exit_status().await;
    assert_eq!(status, "exit status: 0", "{}", ops[i].proc.log_tail(20));
    assert!(ops[i].logged("released the lease"), "{}", ops[i].log());
    wait_passes(&ops[leader_is(&ops, &third)]).await;
    monitor.wait_seen_leading(&third).await;

    // SIGSTOP the leader (a hung process or a partition): another takes over after the lease
    // duration; once resumed, the old leader finds its renew deadline passed, stops at once and
    // exits non-zero.
    let i = leader_is(&ops, &third);
    monitor.forget(&third);
    ops[i].proc.signal(libc::SIGSTOP).expect("SIGSTOP");
    let pid = ops[i].proc.pid().expect("pid");
    wait_for("every thread of the leader to be stopped", || async {
        all_threads_stopped(pid).then_some(())
    })
    .await;
    let frozen_at = Timestamp::now();
    cut.push((third.clone(), frozen_at));
    let (_, _, last_renew) = lease_times(&leases.get("ha-leader").await.expect("lease"));
    let last_renew = last_renew.expect("renewed");
    let (fourth, acquired) = wait_for("a leader after SIGSTOP", || async {
        let (h, acquired, _) = lease_times(&leases.get_opt("ha-leader").await.ok()??);
        h.filter(|h| *h != third).zip(acquired)
    })
    .await;
    println!(
        "SIGSTOP: {fourth} took over {:.2} s after the freeze",
        secs(acquired.duration_since(frozen_at))
    );
    assert!(
        acquired.duration_since(last_renew) >= lease_duration,
        "{fourth} took the Lease before it expired"
    );
    wait_passes(&ops[leader_is(&ops, &fourth)]).await;
    monitor.wait_seen_leading(&fourth).await;
    ops[i].proc.signal(libc::SIGCONT).expect("SIGCONT");
    let status = ops[i].exit_status().await;
    assert_eq!(
        status, "exit status: 1",
        "a leader that lost its Lease exits non-zero"
    );
    assert!(
        ops[i].logged("lost leadership; work stopped"),
        "{}",
        ops[i].log()
    );

    // Stop the rest gracefully; the standbys too exit 0.
    for op in ops.iter_mut() {
        if !op.proc.is_running() {
            continue;
        }
        op.proc.signal(libc::SIGTERM).expect("SIGTERM");
        let status = op.exit_status().await;
        assert_eq!(
            status,
            "exit status: 0",
            "{}: {}",
            op.name,
            op.proc.log_tail(20)
        );
    }
    scraper.abort();

    // The scraped gauges: every process that led was seen leading, never two at once.
    let seen = monitor.observations();
    for who in [&first, &second, &third, &fourth] {
        assert!(
            seen.iter().any(|(n, g)| n == who && g.leading),
            "{who} was never scraped leading ({} scrapes)",
            seen.len()
        );
    }
    let overlaps = simultaneous_leaders(&seen);
    assert!(overlaps.is_empty(), "{overlaps:#?}");

    // The logs: every reconcile pass of a process lies inside one of its leading intervals, and
    // no two processes' intervals overlap.
    let mut all: Vec<(String, Timestamp, Timestamp)> = Vec::new();
    for op in &ops {
        let cutoff = cut.iter().find(|(n, _)| *n == op.name).map(|(_, t)| *t);
        let (intervals, passes) = acting_record(&op.json_lines(), cutoff);
        let led = [&first, &second, &third, &fourth].contains(&&op.name);
        assert_eq!(!intervals.is_empty(), led, "{}: {intervals:?}", op.name);
        if led {
            assert!(!passes.is_empty(), "{} led but never reconciled", op.name);
        }
        for p in &passes {
            assert!(
                intervals.iter().any(|(s, e)| s <= p && p <= e),
                "{} reconciled at {p} outside its leadership {intervals:?}",
                op.name
            );
        }
        all.extend(intervals.into_iter().map(|(s, e)| (op.name.clone(), s, e)));
    }
    all.sort_by_key(|(_, s, _)| *s);
    assert_eq!(all.len(), 4, "four terms: {all:?}");
    for w in all.windows(2) {
        assert!(
            w[0].2 < w[1].1,
            "{} acted until {} but {} from {}",
            w[0].0,
            w[0].2,
            w[1].0,
            w[1].1
        );
    }
}

/// The environment a Pod of the Deployment gets: plain values as they are, the downward-API
/// fields `metadata.name` and `metadata.namespace` as a Pod named `pod` in `namespace` sees them.
fn pod_env(container: &Value, pod: &str, namespace: &str) -> Vec<(String, String)> {
    container["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            let name = e["name"].as_str().expect("name").to_string();
            let value = match (
                e["value"].as_str(),
                e["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
            ) {
                (Some(v), _) => v.to_string(),
                (None, Some("metadata.name")) => pod.to_string(),
                (None, Some("metadata.namespace")) => namespace.to_string(),
                _ => panic!("unexpected env entry {e}"),
            };
            (name, value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_service_account_suffices_to_reconcile_a_cluster() {
    let _turn = SERIAL.lock().await;
    let k = shared_kube();
    let chart = repo().join("charts/etcd-operator").display().to_string();
    // The CRDs are already applied from crds/ (the shared control plane does it), so the chart
    // installs everything else.
    k.helm(&[
        "install",
        "eo",
        &chart,
        "--namespace",
        "ops",
        "--create-namespace",
        "--set",
        "crds.install=false",
    ])
    .expect("helm install");
    let token = k
        .kubectl(&[
            "create",
            "token",
            "eo-etcd-operator",
            "-n",
            "ops",
            "--duration=1h",
        ])
        .expect("TokenRequest for the chart's ServiceAccount");
    let kubeconfig = k
        .kubeconfig_with_token("eo-etcd-operator", token.trim())
        .expect("kubeconfig");

    // Run the binary exactly as the Deployment does: its arguments and environment.
    let deploy: Value = serde_json::from_str(
        &k.kubectl(&[
            "get",
            "deployment",
            "eo-etcd-operator",
            "-n",
            "ops",
            "-o",
            "json",
        ])
        .expect("deployment"),
    )
    .expect("json");
    let container = &deploy["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("arg").to_string())
        .collect();
    assert!(args.contains(&"--leader-elect".to_string()), "{args:?}");
    let pod = "eo-etcd-operator-5d9f8-abcde";
    let env = pod_env(container, pod, "ops");
    let mut op = Operator::start(k, "rbac", &kubeconfig, &args, &env);

    let ns = k.namespace("sample").expect("namespace");
    let sample = repo().join("config/samples/etcdcluster.yaml");
    k.kubectl(&["apply", "-n", &ns, "-f", &sample.display().to_string()])
        .expect("sample");
    let client = k.client().await.expect("admin client");

    // It leads (the Lease in its own namespace), is ready, and creates the seed's objects.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "ops");
    wait_unforbidden(&op, "the operator to hold its Lease", || async {
        let (h, _, _) = lease_times(&leases.get_opt("etcd-operator-leader").await.ok()??);
        (h.as_deref() == Some(pod)).then_some(())
    })
    .await;
    wait_unforbidden(&op, "/readyz", || async {
        (http_get(op.port, "/readyz").await? == (200, "ok\n".to_string())).then_some(())
    })
    .await;
    let metrics = http_get(op.port, "/metrics").await.expect("metrics").1;
    assert_eq!(
        parse_leader_metrics(&metrics, pod).map(|g| g.leading),
        Some(true),
        "{metrics}"
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &ns);
    let clusters: Api<EtcdCluster> = Api::namespaced(client.clone(), &ns);
    wait_unforbidden(&op, "the seed Pod", || async {
        pods.get_opt("example-0").await.ok().flatten()
    })
    .await;
    wait_unforbidden(&op, "the seed PVC", || async {
        pvcs.get_opt("example-0").await.ok().flatten()
    })
    .await;
    for svc in ["example", "example-client"] {
        wait_unforbidden(&op, &format!("Service {svc}"), || async {
            services.get_opt(svc).await.ok().flatten()
        })
        .await;
    }
    wait_unforbidden(&op, "the PodDisruptionBudget", || async {
        pdbs.get_opt("example").await.ok().flatten()
    })
    .await;
    wait_unforbidden(&op, "the status", || async {
        let s = clusters.get("example").await.ok()?.status?;
        (s.phase.as_deref() == Some("Bootstrapping")).then_some(())
    })
    .await;
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let seeded = wait_unforbidden(&op, "the SeedStarted Event", || async {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("SeedStarted"))
    })
    .await;
    assert_eq!(seeded.reporting_instance.as_deref(), Some(pod));

    // Graceful stop: the Lease is released, exit 0, and nothing was forbidden.
    op.proc.signal(libc::SIGTERM).expect("SIGTERM");
    let status = op.exit_status().await;
    let log = op.log();
    assert_eq!(status, "exit status: 0", "{log}");
    assert!(op.logged("released the lease"), "{log}");
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the ServiceAccount lacked a right:\n{log}"
    );
    // The chart asks for JSON logs; every line is JSON.
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not a JSON log line: {line}"
        );
    }
    k.helm(&["uninstall", "eo", "--namespace", "ops"])
        .expect("helm uninstall");
}

#[test]
fn two_leaders_between_two_scrapes_of_one_are_found() {
    let g = |leading, acquisitions| LeaderGauge {
        leading,
        acquisitions,
    };
    let s = |who: &str, gauge| (who.to_string(), gauge);
    // b leads between two scrapes of a leading a in one term: found.
    let bad = vec![s("a", g(true, 1)), s("b", g(true, 1)), s("a", g(true, 1))];
    assert_eq!(simultaneous_leaders(&bad).len(), 1);
    // a handed over and took the Lease back (a new term): b may have led in between.
    let ok = vec![s("a", g(true, 1)), s("b", g(true, 1)), s("a", g(true, 2))];
    assert!(simultaneous_leaders(&ok).is_empty());
    // A handover seen in order.
    let ok = vec![
        s("a", g(true, 1)),
        s("b", g(false, 0)),
        s("a", g(false, 1)),
        s("b", g(true, 1)),
    ];
    assert!(simultaneous_leaders(&ok).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_that_cannot_list_etcdclusters_is_not_ready_and_says_why() {
    // No turn needed: this operator can act on nothing.
    let k = shared_kube();
    let ns = k.namespace("no-rights").expect("namespace");
    k.kubectl(&["create", "serviceaccount", "nobody", "-n", &ns])
        .expect("service account");
    let token = k
        .kubectl(&["create", "token", "nobody", "-n", &ns, "--duration=1h"])
        .expect("TokenRequest");
    let kubeconfig = k
        .kubeconfig_with_token("nobody", token.trim())
        .expect("kubeconfig");
    let args: Vec<String> = ["run", "--leader-elect=false"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    let op = Operator::start(k, "no-rights", &kubeconfig, &args, &[]);
    // Alive, but not ready: the controller cannot watch what it reconciles.
    let (code, body) = wait_for("/readyz to give the reason", || async {
        http_get(op.port, "/readyz")
            .await
            .filter(|(_, body)| body.contains("listing EtcdClusters failed"))
    })
    .await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("forbidden"), "{body}");
    assert_eq!(
        http_get(op.port, "/healthz").await.map(|(c, _)| c),
        Some(200)
    );
    let log = op.log();
    assert!(log.contains("not ready"), "{log}");
}

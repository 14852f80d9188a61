//! `make bench-operator` (`hack/bench-operator.sh`): the local operator against the floor of the
//! same steps run by hand, its idle cost per managed cluster, and its reaction times.
//!
//! 1. Lifecycle, per round, operator then floor on fresh clusters: bootstrap of 3, scale 3 → 5,
//!    scale 5 → 3, rolling upgrade of 3 (`BENCH_FROM` → `BENCH_TO`). Each step is timed from the
//!    edit (or the operator's start) to the moment etcd itself shows the result (the member list
//!    and every member's `Status`, read the same way for both sides).
//! 2. Idle: 1 cluster of 3, then 10 and 50 clusters of 1 member each, under one operator;
//!    after all are healthy, a window of `BENCH_IDLE_SECS` with nothing changing: the operator's
//!    CPU (from `/proc`), RSS, and raft entries appended (every cluster's raft index).
//! 3. Reaction: in the lifecycle rounds, spec edit → first etcd mutation (member list or
//!    leader changes, polled every 20 ms) and SIGKILL of a follower → its restart (a new live
//!    process) → healthy again; in the idle runs, SIGKILL → restart with N clusters managed.
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it exits at once.

mod floor;
mod op;
mod probe;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use op::{Operator, Spec};
use probe::{Prober, View, cpu_ms, load, signal, status_kb};

/// A benchmark failure, with what was being done.
#[derive(Debug)]
pub struct BenchError(pub String);

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the run uses (from the environment).
#[derive(Debug, Clone)]
pub struct Settings {
    operator_bin: PathBuf,
    versions_dir: PathBuf,
    work: PathBuf,
    rounds: usize,
    idle_secs: u64,
    idle_sizes: Vec<usize>,
    phases: String,
    settle: Duration,
    from: String,
    to: String,
    heartbeat_ms: u32,
    election_ms: u32,
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

impl Settings {
    fn from_env() -> Result<Self, BenchError> {
        let versions_dir = PathBuf::from(
            std::env::var("ETCD_VERSIONS_DIR")
                .map_err(|_| BenchError("ETCD_VERSIONS_DIR is not set (source env.sh)".into()))?,
        );
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        };
        let work = PathBuf::from(base).join(format!("bench-operator.{}", std::process::id()));
        let num = |n: &str, d: &str| -> Result<u64, BenchError> {
            env_or(n, d)
                .parse()
                .map_err(|_| BenchError(format!("{n} must be a number")))
        };
        Ok(Self {
            operator_bin: std::env::var_os("BENCH_OPERATOR_BIN").map_or_else(
                || PathBuf::from(env!("CARGO_BIN_EXE_etcd-operator")),
                PathBuf::from,
            ),
            versions_dir,
            work,
            rounds: usize::try_from(num("BENCH_ROUNDS", "3")?)
                .unwrap_or(3)
                .max(1),
            idle_secs: num("BENCH_IDLE_SECS", "30")?.max(5),
            idle_sizes: env_or("BENCH_IDLE_CLUSTERS", "1,10,50")
                .split(',')
                .filter_map(|n| n.trim().parse().ok())
                .collect(),
            phases: env_or("BENCH_PHASES", "operator,floor,idle"),
            settle: Duration::from_secs(num("BENCH_SETTLE_SECS", "6")?),
            from: env_or("BENCH_FROM", "3.6.16"),
            to: env_or("BENCH_TO", "3.7.3"),
            heartbeat_ms: u32::try_from(num("BENCH_HEARTBEAT_MS", "100")?).unwrap_or(100),
            election_ms: u32::try_from(num("BENCH_ELECTION_MS", "1000")?).unwrap_or(1000),
        })
    }

    fn bin(&self, version: &str) -> PathBuf {
        self.versions_dir
            .join(format!("etcd-{version}"))
            .join("bin")
    }
}

/// Lifecycle step names, in order.
const STEPS: [&str; 4] = ["bootstrap_3", "scale_3_to_5", "scale_5_to_3", "upgrade_3"];
const STEP_TIMEOUT: Duration = Duration::from_secs(180);
const FAST: Duration = Duration::from_millis(20);
const DONE_POLL: Duration = Duration::from_millis(50);

/// Samples per figure name, in seconds (or the unit the name says).
#[derive(Default)]
struct Samples(Vec<(String, f64)>);

impl Samples {
    fn add(&mut self, name: &str, v: f64) {
        eprintln!("bench-operator: {name} = {v:.3}");
        self.0.push((name.to_owned(), v));
    }

    fn median(&self, name: &str) -> Option<f64> {
        let mut v: Vec<f64> = self
            .0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, x)| *x)
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(v[(v.len() - 1) / 2])
    }
}

/// Waits until the operator's cluster `name` shows `n` voters on `version` in etcd.
async fn op_wait(
    p: &mut Prober,
    op: &Operator,
    name: &str,
    t0: Instant,
    n: usize,
    version: &str,
) -> Result<Duration, BenchError> {
    let urls = || op.client_urls(name);
    p.wait(&urls, t0, STEP_TIMEOUT, DONE_POLL, name, |v: &View| {
        v.converged(n, version)
    })
    .await
}

/// Time from `t0` to the first etcd mutation: the member list or the leader differs from `before`.
async fn first_mutation(
    p: &mut Prober,
    urls: &dyn Fn() -> Vec<String>,
    t0: Instant,
    before: &View,
) -> Result<Duration, BenchError> {
    let ids: Vec<(u64, bool)> = before.members.iter().map(|m| (m.id, m.learner)).collect();
    let leader = before.leader();
    p.wait(urls, t0, STEP_TIMEOUT, FAST, "a first mutation", |v| {
        let now: Vec<(u64, bool)> = v.members.iter().map(|m| (m.id, m.learner)).collect();
        !v.members.is_empty() && (now != ids || v.leader().is_some_and(|l| Some(l) != leader))
    })
    .await
}

async fn operator_round(s: &Settings, round: usize, out: &mut Samples) -> Result<(), BenchError> {
    let dir = s.work.join(format!("op-{round}"));
    let name = "bench";
    let spec = |replicas, version: &str| {
        op::manifest(
            &[Spec {
                name: name.to_owned(),
                replicas,
                version: version.to_owned(),
            }],
            s,
        )
    };
    let mut p = Prober::new();
    let t0 = Instant::now();
    let mut op = Operator::start(&dir, &spec(3, &s.from), s)?;
    out.add(
        "operator/bootstrap_3",
        op_wait(&mut p, &op, name, t0, 3, &s.from)
            .await?
            .as_secs_f64(),
    );
    for (step, to_n) in [("scale_3_to_5", 5u32), ("scale_5_to_3", 3)] {
        // etcd refuses a membership change until every member has been connected for 5 s
        // (its strict reconfiguration check): each step starts on a settled cluster, both sides.
        tokio::time::sleep(s.settle).await;
        let before = p.view(&op.client_urls(name)).await;
        let t0 = Instant::now();
        op.write_manifest(&spec(to_n, &s.from))?;
        let first = first_mutation(&mut p, &|| op.client_urls(name), t0, &before).await?;
        out.add(
            &format!("reaction/{step}_first_mutation"),
            first.as_secs_f64(),
        );
        let d = op_wait(&mut p, &op, name, t0, to_n as usize, &s.from).await?;
        out.add(&format!("operator/{step}"), d.as_secs_f64());
    }
    // The status file follows etcd; wait for it so that the next edit meets a settled operator.
    op.wait_all_healthy(
        &[Spec {
            name: name.to_owned(),
            replicas: 3,
            version: s.from.clone(),
        }],
        STEP_TIMEOUT,
    )
    .await?;
    tokio::time::sleep(s.settle).await;
    let t0 = Instant::now();
    op.write_manifest(&spec(3, &s.to))?;
    out.add(
        "operator/upgrade_3",
        op_wait(&mut p, &op, name, t0, 3, &s.to)
            .await?
            .as_secs_f64(),
    );
    op.wait_all_healthy(
        &[Spec {
            name: name.to_owned(),
            replicas: 3,
            version: s.to.clone(),
        }],
        STEP_TIMEOUT,
    )
    .await?;
    // Member death: SIGKILL a follower; time to its new process, then to all healthy again.
    let view = p.view(&op.client_urls(name)).await;
    let leader = view.leader().unwrap_or(0);
    let victim = (0..3u32)
        .find(|o| {
            let url = op.client_urls(name).get(*o as usize).cloned();
            view.members
                .iter()
                .any(|m| m.client_url == url && m.id != leader)
        })
        .ok_or_else(|| BenchError("no follower to kill".into()))?;
    let old = op
        .member_pid(name, victim)
        .ok_or_else(|| BenchError("no member pid".into()))?;
    let t0 = Instant::now();
    signal(old, libc::SIGKILL);
    loop {
        if op.member_pid(name, victim).is_some_and(|p| p != old) {
            out.add("reaction/kill_to_restart", t0.elapsed().as_secs_f64());
            break;
        }
        if t0.elapsed() > STEP_TIMEOUT {
            return Err(BenchError("the killed member was not restarted".into()));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    out.add(
        "reaction/kill_to_healthy",
        op_wait(&mut p, &op, name, t0, 3, &s.to)
            .await?
            .as_secs_f64(),
    );
    op.kill();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn floor_round(s: &Settings, round: usize, out: &mut Samples) -> Result<(), BenchError> {
    let dir = s.work.join(format!("floor-{round}"));
    let mut f = floor::Floor::new(&dir, 5, &s.bin(&s.from), s)?;
    let mut p = Prober::new();
    let done = async |p: &mut Prober, f: &floor::Floor, t0: Instant, n: usize, v: &str| {
        let urls = || f.client_urls();
        p.wait(
            &urls,
            t0,
            STEP_TIMEOUT,
            DONE_POLL,
            "the floor",
            |x: &View| x.converged(n, v),
        )
        .await
    };
    let t0 = Instant::now();
    f.seed().await?;
    f.add(1).await?;
    f.add(2).await?;
    out.add(
        "floor/bootstrap_3",
        done(&mut p, &f, t0, 3, &s.from).await?.as_secs_f64(),
    );
    tokio::time::sleep(s.settle).await;
    let t0 = Instant::now();
    f.add(3).await?;
    f.add(4).await?;
    out.add(
        "floor/scale_3_to_5",
        done(&mut p, &f, t0, 5, &s.from).await?.as_secs_f64(),
    );
    tokio::time::sleep(s.settle).await;
    let t0 = Instant::now();
    f.remove(4).await?;
    f.remove(3).await?;
    out.add(
        "floor/scale_5_to_3",
        done(&mut p, &f, t0, 3, &s.from).await?.as_secs_f64(),
    );
    tokio::time::sleep(s.settle).await;
    let t0 = Instant::now();
    f.roll(&s.bin(&s.to), &s.to).await?;
    out.add(
        "floor/upgrade_3",
        done(&mut p, &f, t0, 3, &s.to).await?.as_secs_f64(),
    );
    f.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Idle cost with `n` clusters (3 members when alone, 1 each otherwise).
async fn idle(s: &Settings, n: usize, out: &mut Samples) -> Result<String, BenchError> {
    let replicas = if n == 1 { 3 } else { 1 };
    let specs: Vec<Spec> = (0..n)
        .map(|i| Spec {
            name: format!("idle-{i:02}"),
            replicas,
            version: s.from.clone(),
        })
        .collect();
    let dir = s.work.join(format!("idle-{n}"));
    let mut op = Operator::start(&dir, &op::manifest(&specs, s), s)?;
    let ready = op
        .wait_all_healthy(&specs, Duration::from_secs(60 + 10 * n as u64))
        .await?;
    eprintln!("bench-operator: {n} clusters healthy after {ready:?}; settling");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pid = op.pid();
    let mut probers: Vec<Prober> = specs.iter().map(|_| Prober::new()).collect();
    let mut before = Vec::new();
    for (c, p) in specs.iter().zip(probers.iter_mut()) {
        before.push(p.view(&op.client_urls(&c.name)).await.raft_index());
    }
    let cpu0 = cpu_ms(pid).ok_or_else(|| BenchError("no /proc for the operator".into()))?;
    let t0 = Instant::now();
    let load_at = load();
    tokio::time::sleep(Duration::from_secs(s.idle_secs)).await;
    let cpu1 = cpu_ms(pid).ok_or_else(|| BenchError("the operator died".into()))?;
    let secs = t0.elapsed().as_secs_f64();
    let rss = status_kb(pid, "VmRSS").unwrap_or(0);
    let mut entries = 0u64;
    let mut busy = Vec::new();
    for ((c, p), b) in specs.iter().zip(probers.iter_mut()).zip(before) {
        let after = p.view(&op.client_urls(&c.name)).await.raft_index();
        if after != b {
            busy.push(format!("{}: {b} → {after}", c.name));
        }
        entries += after.saturating_sub(b);
    }
    if !busy.is_empty() {
        eprintln!("bench-operator: raft entries appended while idle: {busy:?}");
    }
    let per_min = 60.0 / secs;
    out.add(&format!("idle/{n}/cpu_ms_per_min"), (cpu1 - cpu0) * per_min);
    out.add(&format!("idle/{n}/rss_mb"), rss as f64 / 1024.0);
    out.add(
        &format!("idle/{n}/raft_entries_per_min"),
        entries as f64 * per_min,
    );
    // Member death with n clusters managed: the last cluster's member 0.
    let last = &specs[n - 1].name;
    if let Some(old) = op.member_pid(last, 0) {
        let t0 = Instant::now();
        signal(old, libc::SIGKILL);
        while op.member_pid(last, 0).is_none_or(|p| p == old) && t0.elapsed() < STEP_TIMEOUT {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        out.add(
            &format!("idle/{n}/kill_to_restart"),
            t0.elapsed().as_secs_f64(),
        );
    }
    op.kill();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(load_at)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "n/a".to_owned(),
    }
}

fn fmt(v: Option<f64>, scale: f64, digits: usize) -> String {
    v.map_or_else(|| "n/a".to_owned(), |x| format!("{:.*}", digits, x * scale))
}

async fn run(s: &Settings) -> Result<(), BenchError> {
    std::fs::create_dir_all(&s.work).map_err(|e| BenchError(format!("work dir: {e}")))?;
    let mut out = Samples::default();
    let load_before = load();
    eprintln!(
        "bench-operator: load {load_before}; {} rounds; work in {}",
        s.rounds,
        s.work.display()
    );
    let phase = |p: &str| s.phases.split(',').any(|x| x.trim() == p);
    for round in 0..s.rounds {
        if phase("operator") {
            eprintln!("bench-operator: round {} operator", round + 1);
            operator_round(s, round, &mut out).await?;
        }
        if phase("floor") {
            eprintln!("bench-operator: round {} floor", round + 1);
            floor_round(s, round, &mut out).await?;
        }
    }
    let load_lifecycle = load();
    let mut idle_loads = Vec::new();
    for n in s.idle_sizes.iter().copied().filter(|_| phase("idle")) {
        eprintln!("bench-operator: idle with {n} clusters");
        idle_loads.push((n, idle(s, n, &mut out).await?));
    }
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    println!(
        "# {cpu}, {} cores; etcd {} → {} (--unsafe-no-fsync, heartbeat {} ms, election {} ms) on loopback; {} rounds, medians",
        std::thread::available_parallelism().map_or(0, usize::from),
        s.from,
        s.to,
        s.heartbeat_ms,
        s.election_ms,
        s.rounds
    );
    println!(
        "# load average before: {load_before}; after the lifecycle rounds: {load_lifecycle}; now: {}",
        load()
    );
    for step in STEPS {
        let o = out.median(&format!("operator/{step}"));
        let f = out.median(&format!("floor/{step}"));
        println!(
            "figure {step}: operator {} s, floor {} s",
            fmt(o, 1.0, 2),
            fmt(f, 1.0, 2)
        );
    }
    for name in [
        "scale_3_to_5_first_mutation",
        "scale_5_to_3_first_mutation",
        "kill_to_restart",
        "kill_to_healthy",
    ] {
        println!(
            "figure reaction_{name}: {} ms",
            fmt(out.median(&format!("reaction/{name}")), 1000.0, 0)
        );
    }
    for (n, l) in &idle_loads {
        let g = |k: &str| out.median(&format!("idle/{n}/{k}"));
        println!(
            "figure idle_{n}_clusters: operator cpu {} ms/min, rss {} MB, raft entries {} /min, kill→restart {} ms (load {l}; {} member(s) each, {} s window)",
            fmt(g("cpu_ms_per_min"), 1.0, 1),
            fmt(g("rss_mb"), 1.0, 1),
            fmt(g("raft_entries_per_min"), 1.0, 1),
            fmt(g("kill_to_restart"), 1000.0, 0),
            if *n == 1 { 3 } else { 1 },
            s.idle_secs
        );
    }
    for step in STEPS {
        println!(
            "ratio {step} operator vs floor: {}",
            ratio(
                out.median(&format!("operator/{step}")),
                out.median(&format!("floor/{step}"))
            )
        );
    }
    let _ = std::fs::remove_dir_all(&s.work);
    Ok(())
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bench-operator: {e}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench-operator: tokio: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = rt.block_on(run(&settings)) {
        eprintln!(
            "bench-operator: error: {e} (work dir {} kept)",
            settings.work.display()
        );
        std::process::exit(1);
    }
}

//! `bench-client`: one workload of `make bench-client`, run by one Rust client against a running
//! etcd. `hack/bench.sh` runs it once per (client, workload) pair, next to etcd's Go `benchmark`
//! tool on the same workloads, and measures each process's CPU time from outside.
//!
//! ```text
//! bench-client --client ours|etcd-client --endpoint 127.0.0.1:2379 --workload put|get-s|get-l|txn|watch
//!              [--total N] [--clients 32] [--watchers 100]
//! ```
//!
//! `--client raw-channel|raw-h2` are transport probes for put/get only (see `raw.rs`).
//!
//! Prints one line: `ops=<n> secs=<f> qps=<f> p50_ms=<f> p99_ms=<f>`. The workloads mirror the
//! Go tool's `put`, `range`, `txn-put` and `watch-latency` commands: 32 callers sharing one
//! connection (Go: `--conns=1 --clients=32`), 8-byte keys, 256-byte values; for `watch`, one
//! writer puts one key at a time and waits until each of the watchers has seen the event, and
//! latency is counted from the put's return to each watcher's receipt (as Go's tool does).

mod peer;
mod raw;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use peer::{Peer, Worker};

/// A workload's command line.
struct Args {
    client: String,
    endpoint: String,
    workload: String,
    total: usize,
    clients: usize,
    watchers: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        client: String::new(),
        endpoint: "127.0.0.1:2379".into(),
        workload: String::new(),
        total: 20_000,
        clients: 32,
        watchers: 100,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = || value.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--client" => a.client = value.clone(),
            "--endpoint" => a.endpoint = value.clone(),
            "--workload" => a.workload = value.clone(),
            "--total" => a.total = num()?,
            "--clients" => a.clients = num()?.max(1),
            "--watchers" => a.watchers = num()?.max(1),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.client.is_empty() || a.workload.is_empty() {
        return Err("--client and --workload are required".into());
    }
    Ok(a)
}

/// Latencies of every op, and the wall time of the whole workload.
struct Outcome {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn report(mut o: Outcome) -> String {
    o.latencies.sort_unstable();
    let n = o.latencies.len();
    let secs = o.elapsed.as_secs_f64();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "ops={n} secs={secs:.3} qps={:.1} p50_ms={:.3} p99_ms={:.3}",
        n as f64 / secs.max(1e-9),
        ms(percentile(&o.latencies, 0.50)),
        ms(percentile(&o.latencies, 0.99)),
    )
}

/// The 8-byte key of op `i` (like the Go tool's `--key-size=8 --sequential-keys`).
fn op_key(i: usize) -> [u8; 8] {
    (i as u64).to_be_bytes()
}

/// `clients` callers share `total` ops of `kind` on one connection.
async fn run_unary(
    peer: &Peer,
    kind: &str,
    total: usize,
    clients: usize,
) -> Result<Outcome, String> {
    let next = Arc::new(AtomicUsize::new(0));
    let value = bytes::Bytes::from(vec![b'v'; 256]);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        let mut w: Worker = peer.worker();
        let next = next.clone();
        let value = value.clone();
        let kind = kind.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(total / clients + 1);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let t = Instant::now();
                match kind.as_str() {
                    "put" => w.put(&op_key(i), value.clone()).await?,
                    "get-s" => w.get(b"bench/get", true).await?,
                    "get-l" => w.get(b"bench/get", false).await?,
                    "txn" => w.txn_put(&op_key(i), value.clone()).await?,
                    other => return Err(format!("unknown workload {other}")),
                }
                lat.push(t.elapsed());
            }
            Ok::<_, String>(lat)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for t in tasks {
        latencies.extend(t.await.map_err(|e| e.to_string())??);
    }
    Ok(Outcome {
        latencies,
        elapsed: start.elapsed(),
    })
}

/// One writer, `watchers` watches of one key on one connection; each put waits for every
/// watcher to see it.
async fn run_watch(peer: &Peer, puts: usize, watchers: usize) -> Result<Outcome, String> {
    let key = b"bench/watch".to_vec();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let mut handles = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        handles.push(peer.watch(&key, tx.clone()).await?);
    }
    drop(tx);
    // The writer has a connection of its own (Go: `mustCreateConn()` for the put client).
    let writer = peer.fresh().await?;
    let mut w = writer.worker();
    let value = bytes::Bytes::from(vec![b'w'; 256]);
    let mut latencies = Vec::with_capacity(puts * watchers);
    let start = Instant::now();
    for _ in 0..puts {
        w.put(&key, value.clone()).await?;
        let put_done = Instant::now();
        for _ in 0..watchers {
            let seen = rx.recv().await.ok_or("a watcher ended")?;
            latencies.push(seen.saturating_duration_since(put_done));
        }
    }
    let elapsed = start.elapsed();
    drop(handles);
    Ok(Outcome { latencies, elapsed })
}

async fn run(args: Args) -> Result<String, String> {
    let peer = Peer::connect(&args.client, &args.endpoint).await?;
    let outcome = match args.workload.as_str() {
        "watch" => run_watch(&peer, args.total, args.watchers).await?,
        kind => run_unary(&peer, kind, args.total, args.clients).await?,
    };
    Ok(report(outcome))
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench-client: {e}");
            std::process::exit(2);
        }
    };
    // Two worker threads: the machine's core count, and Go's GOMAXPROCS there.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench-client: runtime: {e}");
            std::process::exit(1);
        }
    };
    match rt.block_on(run(args)) {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("bench-client: {e}");
            std::process::exit(1);
        }
    }
}

//! Watch against real etcd (parity doc §4): events for keys, prefixes and ranges, start revisions,
//! prev_kv, filters, one multiplexed stream, compaction, resume after disconnects without
//! duplicates or gaps, fragment merging, cancel on drop, and resume on another member.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use etcd_v3::proto::etcdserverpb as pb;
use etcd_v3::watch::{EventType, WatchBatch, WatchOptions, Watcher};
use etcd_v3::{Client, ConnectOptions, Error};
use pb::kv_client::KvClient;
use support::etcd::{EtcdCluster, http_get};
use support::proxy::FaultProxy;
use tonic::transport::Channel;

/// Setup writes through the raw generated stub, straight to a member (not through the proxy).
#[derive(Clone)]
struct Kv(KvClient<Channel>);

impl Kv {
    fn new(url: &str) -> Kv {
        let ch = tonic::transport::Endpoint::from_shared(url.to_string())
            .expect("endpoint")
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .connect_lazy();
        Kv(KvClient::new(ch).max_decoding_message_size(64 << 20))
    }
    /// Puts and returns the revision of the put.
    async fn put(&mut self, key: &str, value: impl Into<bytes::Bytes>) -> i64 {
        let r = self
            .0
            .put(pb::PutRequest {
                key: key.to_string().into(),
                value: value.into(),
                ..Default::default()
            })
            .await
            .expect("put")
            .into_inner();
        r.header.expect("header").revision
    }
    async fn delete(&mut self, key: &str, range_end: &str) -> i64 {
        let r = self
            .0
            .delete_range(pb::DeleteRangeRequest {
                key: key.to_string().into(),
                range_end: range_end.to_string().into(),
                ..Default::default()
            })
            .await
            .expect("delete")
            .into_inner();
        r.header.expect("header").revision
    }
    async fn revision(&mut self) -> i64 {
        self.range_one("\0").await.0
    }
    /// (header revision, mod_revision of the key or 0).
    async fn range_one(&mut self, key: &str) -> (i64, i64) {
        let r = self
            .0
            .range(pb::RangeRequest {
                key: key.to_string().into(),
                ..Default::default()
            })
            .await
            .expect("range")
            .into_inner();
        (
            r.header.expect("header").revision,
            r.kvs.first().map_or(0, |kv| kv.mod_revision),
        )
    }
    async fn compact(&mut self, revision: i64) {
        self.0
            .compact(pb::CompactionRequest {
                revision,
                physical: true,
            })
            .await
            .expect("compact");
    }
}

async fn connect(url: &str) -> Client {
    Client::connect([url], ConnectOptions::new())
        .await
        .expect("connect")
}

/// The next batch within `secs`, which must not be an error.
async fn next_batch(w: &mut Watcher, secs: u64) -> WatchBatch {
    tokio::time::timeout(Duration::from_secs(secs), w.next())
        .await
        .expect("no watch response in time")
        .expect("watch ended")
        .expect("watch error")
}

/// Collects the events of `w` until `n` have arrived (skipping notifications).
async fn next_events(
    w: &mut Watcher,
    n: usize,
    secs: u64,
) -> Vec<(EventType, String, String, i64)> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while out.len() < n {
        let b = tokio::time::timeout_at(deadline, w.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} events in time: {out:?}", out.len()))
            .expect("watch ended")
            .expect("watch error");
        for e in b.events {
            out.push((
                e.event_type,
                String::from_utf8_lossy(e.key()).into_owned(),
                String::from_utf8_lossy(e.value()).into_owned(),
                e.mod_revision(),
            ));
        }
    }
    out
}

/// Asserts that no events arrive on `w` for `ms` milliseconds (notifications are allowed).
async fn assert_quiet(w: &mut Watcher, ms: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
    while let Ok(b) = tokio::time::timeout_at(deadline, w.next()).await {
        let b = b.expect("watch ended").expect("watch error");
        assert!(b.events.is_empty(), "unexpected events: {:?}", b.events);
    }
}

fn metric(port: u16, name: &str) -> f64 {
    let body = http_get(port, "/metrics").expect("metrics");
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} not found"))
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_created_notify_and_events_for_key_prefix_and_range() {
    let cluster = EtcdCluster::single().expect("etcd");
    let url = cluster.endpoints()[0].clone();
    let mut kv = Kv::new(&url);
    let client = connect(&url).await;

    let mut key_w = client
        .watch("k", WatchOptions::new().with_created_notify())
        .await
        .expect("watch key");
    let created = next_batch(&mut key_w, 5).await;
    assert!(created.is_created());
    assert!(!created.is_progress_notify());
    assert_eq!(created.revision, key_w.created_revision());
    assert_eq!(created.watch_id, key_w.id());
    let mut prefix_w = client
        .watch("p/", WatchOptions::new().with_prefix())
        .await
        .expect("watch prefix");
    let mut range_w = client
        .watch("b", WatchOptions::new().with_range_end("d"))
        .await
        .expect("watch range");
    let mut from_w = client
        .watch("x", WatchOptions::new().with_from_key())
        .await
        .expect("watch from key");

    let r1 = kv.put("k", "v1").await;
    kv.put("kk", "not watched").await;
    let r2 = kv.put("p/1", "a").await;
    kv.put("p0", "outside the prefix").await;
    let r3 = kv.put("b", "in").await;
    let r4 = kv.put("c\u{7f}", "in").await;
    kv.put("d", "outside the range").await;
    let r5 = kv.delete("k", "").await;
    let r6 = kv.put("zz", "after x").await;

    assert_eq!(
        next_events(&mut key_w, 2, 5).await,
        vec![
            (EventType::Put, "k".into(), "v1".into(), r1),
            (EventType::Delete, "k".into(), "".into(), r5),
        ]
    );
    assert_eq!(
        next_events(&mut prefix_w, 1, 5).await,
        vec![(EventType::Put, "p/1".into(), "a".into(), r2)]
    );
    assert_eq!(
        next_events(&mut range_w, 2, 5).await,
        vec![
            (EventType::Put, "b".into(), "in".into(), r3),
            (EventType::Put, "c\u{7f}".into(), "in".into(), r4),
        ]
    );
    assert_eq!(
        next_events(&mut from_w, 1, 5).await,
        vec![(EventType::Put, "zz".into(), "after x".into(), r6)]
    );
    assert_quiet(&mut key_w, 300).await;
    assert_quiet(&mut range_w, 100).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_start_revision_replays_history_in_order() {
    let cluster = EtcdCluster::single().expect("etcd");
    let url = cluster.endpoints()[0].clone();
    let mut kv = Kv::new(&url);
    let revs = [
        kv.put("h", "1").await,
        kv.put("h", "2").await,
        kv.put("h", "3").await,
    ];
    let client = connect(&url).await;
    let mut w = client
        .watch("h", WatchOptions::new().with_start_revision(1))
        .await
        .expect("watch");
    assert!(w.created_revision() >= revs[2]);
    let got = next_events(&mut w, 3, 5).await;
    let want: Vec<_> = ["1", "2", "3"]
        .iter()
        .zip(revs)
        .map(|(v, r)| (EventType::Put, "h".to_string(), v.to_string(), r))
        .collect();
    assert_eq!(got, want);
    assert_quiet(&mut w, 200).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_future_start_revision_waits_until_reached() {
    let cluster = EtcdCluster::single().expect("etcd");
    let url = cluster.endpoints()[0].clone();
    let mut kv = Kv::new(&url);
    let client = connect(&url).await;
    let current = kv.revision().await;
    let mut w = client
        .watch("f", WatchOptions::new().with_start_revision(current + 5))
        .await
        .expect("a future start revision is accepted");
    for i in 1..=4 {
        assert_eq!(kv.put("f", format!("early{i}")).await, current + i);
    }
    assert_quiet(&mut w, 300).await;
    assert_eq!(kv.put("f", "on time").await, current + 5);
    assert_eq!(
        next_events(&mut w, 1, 5).await,
        vec![(EventType::Put, "f".into(), "on time".into(), current + 5)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_prev_kv_on_update_and_delete_not_on_create() {
    let cluster = EtcdCluster::single().expect("etcd");
    let url = cluster.endpoints()[0].clone();
    let mut kv = Kv::new(&url);
    let client = connect(&url).await;
    let mut w = client
        .watch("pk", WatchOptions::new().with_prev_kv())
        .await
        .expect("watch");
    let r1 = kv.put("pk", "one").await;
    let r2 = kv.put("pk", "two").await;
    kv.delete("pk", "").await;
    let mut events = Vec::new();
    while events.len() < 3 {
        events.extend(next_batch(&mut w, 5).await.events);
    }
    assert_eq!(events[0].prev_kv, None, "a creation has no previous value");
    let p1 = events[1].prev_kv.as_ref().expect("prev_kv of the update");
    assert_eq!((&p1.value[..], p1.mod_revision), (&b"one"[..], r1));
    let p2 = events[2].prev_kv.as_ref().expect("prev_kv of the delete");
    assert_eq!(
        (&p2.value[..], p2.mod_revision, p2.version),
        (&b"two"[..], r2, 2)
    );
    assert_eq!(events[2].event_type, EventType::Delete);

    // Without the option, no previous values.
    let mut plain = client
        .watch("pk", WatchOptions::new())
        .await
        .expect("watch");
    kv.put("pk", "three").await;
    kv.put("pk", "four").await;
    let mut events = Vec::new();
    while events.len() < 2 {
        events.extend(next_batch(&mut plain, 5).await.events);
    }
    assert!(events.iter().all(|e| e.prev_kv.is_none()));
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_filters_no_put_and_no_delete_apply_on_the_server() {
    let cluster = EtcdCluster::single().expect("etcd");
    let url = cluster.endpoints()[0].clone();
    let mut kv = Kv::new(&url);
    let client = connect(&url).await;
    let mut deletes_only = client
        .watch("fl/", WatchOptions::new().with_prefix().with_no_put())
        .await
        .expect("watch");
    let mut puts_only = client
        .watch("fl/", WatchOptions::new().with_prefix().with_no_delete())
        .await
        .expect("watch");
    let p1 = kv.put("fl/a", "1").await;
    let d1 = kv.delete("fl/a", "").await;
    let p2 = kv.put("fl/b", "2").await;
    let d2 = kv.delete("fl/", "fl0").await;
    assert_eq!(
        next_events(&mut deletes_only, 2, 5).await,
        vec![
            (EventType::Delete, "fl/a".into(), "".into(), d1),
            (EventType::Delete, "fl/b".into(), "".into(), d2),
        ]
    );
    assert_eq!(
        next_events(&mut puts_only, 2, 5).await,
        vec![
            (EventType::Put, "fl/a".into(), "1".into(), p1),
            (EventType::Put, "fl/b".into(), "2".into(), p2),
        ]
    );
    assert_quiet(&mut deletes_only, 200).await;
    assert_quiet(&mut puts_only, 100).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_multiplexes_100_watches_on_one_stream() {
    let cluster = EtcdCluster::single().expect("etcd");
    let member = cluster.member(0);
    let proxy = FaultProxy::start(&member.client_addr()).expect("proxy");
    let mut kv = Kv::new(&member.client_url());
    let client = connect(&proxy.url()).await;
    // Let the health stream open first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = proxy.counts();
    let watches = futures::future::join_all((0..100).map(|i| {
        let c = client.clone();
        async move { c.watch(format!("mx/{i}"), WatchOptions::new()).await }
    }))
    .await;
    let mut watches: Vec<Watcher> = watches.into_iter().map(|w| w.expect("watch")).collect();
    let after = proxy.counts();
    let opened = after.headers_frames_up - before.headers_frames_up;
    assert!(
        opened <= 2,
        "100 watches opened {opened} HTTP/2 streams (HEADERS frames), want 1"
    );
    let port = member.client_port;
    assert_eq!(metric(port, "etcd_debugging_mvcc_watch_stream_total"), 1.0);
    assert_eq!(metric(port, "etcd_debugging_mvcc_watcher_total"), 100.0);
    let mut ids: Vec<i64> = watches.iter().map(Watcher::id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 100, "watch IDs are unique");
    for i in [0, 42, 99] {
        let rev = kv.put(&format!("mx/{i}"), "x").await;
        let got = next_events(&mut watches[i], 1, 5).await;
        assert_eq!(got[0].3, rev);
    }
    // Every watch gone: the stream closes.
    drop(watches);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while metric(port, "etcd_debugging_mvcc_watch_stream_total") != 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the stream stays open without watches"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_from_compacted_revision_ends_with_compacted() {
    let cluster = EtcdCluster::single().expect("etcd");
    let url = cluster.endpoints()[0].clone();
    let mut kv = Kv::new(&url);
    for i in 0..5 {
        kv.put("c", format!("{i}")).await;
    }
    let current = kv.revision().await;
    kv.compact(current).await;
    let client = connect(&url).await;
    let mut w = client
        .watch("c", WatchOptions::new().with_start_revision(2))
        .await
        .expect("created, then canceled");
    match tokio::time::timeout(Duration::from_secs(5), w.next()).await {
        Ok(Some(Err(Error::Compacted { compact_revision }))) => {
            assert_eq!(compact_revision, current)
        }
        other => panic!("want Compacted, got {other:?}"),
    }
    assert!(w.next().await.is_none(), "the watch ends after the error");
    // Watching from the compact revision itself works.
    let mut ok = client
        .watch("c", WatchOptions::new().with_start_revision(current))
        .await
        .expect("watch");
    assert_eq!(next_events(&mut ok, 1, 5).await[0].3, current);
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_resume_into_compacted_history_ends_with_compacted() {
    let cluster = EtcdCluster::single().expect("etcd");
    let member = cluster.member(0);
    let proxy = FaultProxy::start(&member.client_addr()).expect("proxy");
    let mut kv = Kv::new(&member.client_url());
    let client = connect(&proxy.url()).await;
    let mut w = client
        .watch("rc", WatchOptions::new())
        .await
        .expect("watch");
    let r1 = kv.put("rc", "seen").await;
    assert_eq!(next_events(&mut w, 1, 5).await[0].3, r1);
    proxy.drop_all();
    tokio::time::sleep(Duration::from_millis(200)).await;
    kv.put("rc", "missed").await;
    let last = kv.put("other", "x").await;
    kv.compact(last).await;
    proxy.resume();
    match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
        Ok(Some(Err(Error::Compacted { compact_revision }))) => {
            assert_eq!(compact_revision, last)
        }
        other => panic!("want Compacted, got {other:?}"),
    }
}

/// Mirrors etcd's `TestWatchResumeAfterDisconnect`.
#[tokio::test(flavor = "multi_thread")]
async fn watch_resume_after_disconnect_delivers_each_event_once() {
    let cluster = EtcdCluster::single().expect("etcd");
    let member = cluster.member(0);
    let proxy = FaultProxy::start(&member.client_addr()).expect("proxy");
    let mut kv = Kv::new(&member.client_url());
    kv.put("b", "1").await;
    let r3 = kv.put("a", "3").await;
    let r4 = kv.put("a", "4").await;
    let client = connect(&proxy.url()).await;
    let mut w = client
        .watch(
            "a",
            WatchOptions::new()
                .with_start_revision(1)
                .with_created_notify(),
        )
        .await
        .expect("watch");
    assert!(next_batch(&mut w, 5).await.is_created());
    proxy.drop_all();
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.resume();
    assert_eq!(
        next_events(&mut w, 2, 10).await,
        vec![
            (EventType::Put, "a".into(), "3".into(), r3),
            (EventType::Put, "a".into(), "4".into(), r4),
        ]
    );
    // Drop again after the events were delivered: nothing is replayed, no second `created`.
    proxy.drop_all();
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.resume();
    let r5 = kv.put("a", "5").await;
    let b = next_batch(&mut w, 10).await;
    assert!(
        !b.is_created(),
        "a resumed watch repeats no created notification"
    );
    let got: Vec<i64> = b.events.iter().map(|e| e.mod_revision()).collect();
    assert_eq!(got, vec![r5]);
    assert_quiet(&mut w, 300).await;
}

/// A revision-0 watch that has seen nothing resumes after its created revision: an event
/// written while disconnected is delivered, and nothing from before the watch.
#[tokio::test(flavor = "multi_thread")]
async fn watch_resume_of_idle_watch_starts_after_created_revision() {
    let cluster = EtcdCluster::single().expect("etcd");
    let member = cluster.member(0);
    let proxy = FaultProxy::start(&member.client_addr()).expect("proxy");
    let mut kv = Kv::new(&member.client_url());
    let before = kv.put("idle", "before").await;
    let client = connect(&proxy.url()).await;
    let mut w = client
        .watch("idle", WatchOptions::new())
        .await
        .expect("watch");
    assert_eq!(w.created_revision(), before);
    proxy.drop_all();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let during = kv.put("idle", "during").await;
    proxy.resume();
    let got = next_events(&mut w, 1, 10).await;
    assert_eq!(
        got,
        vec![(EventType::Put, "idle".into(), "during".into(), during)]
    );
    assert_quiet(&mut w, 300).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_randomized_flapping_proxy_no_gaps_no_duplicates() {
    const PUTS: usize = 10_000;
    const KEYS: usize = 4;
    let cluster = EtcdCluster::single().expect("etcd");
    let member = cluster.member(0);
    let proxy = Arc::new(FaultProxy::start(&member.client_addr()).expect("proxy"));
    let kv = Kv::new(&member.client_url());
    let client = connect(&proxy.url()).await;
    let mut w = client
        .watch("rnd/", WatchOptions::new().with_prefix())
        .await
        .expect("watch");

    // The flapper: drop every ~300 ms for a short while.
    let stop = Arc::new(AtomicBool::new(false));
    let flapper = {
        let (proxy, stop) = (proxy.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut drops = 0;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(rand::random_range(200..400)));
                proxy.drop_all();
                drops += 1;
                std::thread::sleep(Duration::from_millis(rand::random_range(10..150)));
                proxy.resume();
            }
            drops
        })
    };
    // The writer: sequential puts over a few keys, recording each revision.
    let writer = tokio::spawn(async move {
        let mut kv = kv;
        let mut written: HashMap<String, Vec<i64>> = HashMap::new();
        for i in 0..PUTS {
            let key = format!("rnd/{}", rand::random_range(0..KEYS));
            let rev = kv.put(&key, format!("{i}")).await;
            written.entry(key).or_default().push(rev);
        }
        written
    });
    // The reader, concurrently.
    let reader = tokio::spawn(async move {
        let mut seen: HashMap<String, Vec<i64>> = HashMap::new();
        let mut n = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
        while n < PUTS {
            let b = tokio::time::timeout_at(deadline, w.next())
                .await
                .unwrap_or_else(|_| panic!("only {n} of {PUTS} events in time"))
                .expect("watch ended")
                .expect("watch error");
            for e in b.events {
                assert_eq!(e.event_type, EventType::Put);
                seen.entry(String::from_utf8_lossy(e.key()).into_owned())
                    .or_default()
                    .push(e.mod_revision());
                n += 1;
            }
        }
        (seen, w)
    });
    let written = writer.await.expect("writer");
    stop.store(true, Ordering::Relaxed);
    let drops = flapper.join().expect("flapper");
    proxy.resume();
    let (seen, mut w) = reader.await.expect("reader");
    assert!(
        drops >= 3,
        "the proxy dropped the connection only {drops} times"
    );
    assert_quiet(&mut w, 500).await;
    let mut kv = Kv::new(&member.client_url());
    for (key, revs) in &written {
        let got = seen.get(key).cloned().unwrap_or_default();
        assert_eq!(got.len(), revs.len(), "event count of {key}");
        assert_eq!(&got, revs, "revisions of {key}, in order, once each");
        let (_, last) = kv.range_one(key).await;
        assert_eq!(got.last().copied(), Some(last), "last revision of {key}");
    }
}

/// `n` keys `frag/NNNNN` holding `value`, in transactions of 100 puts.
async fn put_frag_keys(kv: &mut Kv, n: usize, value: &bytes::Bytes) {
    for chunk in 0..n / 100 {
        let ops = (0..100)
            .map(|j| pb::RequestOp {
                request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                    key: format!("frag/{:05}", chunk * 100 + j).into(),
                    value: value.clone(),
                    ..Default::default()
                })),
            })
            .collect();
        kv.0.txn(pb::TxnRequest {
            success: ops,
            ..Default::default()
        })
        .await
        .expect("txn");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_fragmented_response_is_merged_into_one_batch() {
    const N: usize = 3000;
    let cluster = EtcdCluster::single().expect("etcd");
    let url = cluster.endpoints()[0].clone();
    let mut kv = Kv::new(&url);
    let value = bytes::Bytes::from(vec![b'v'; 1024]);
    put_frag_keys(&mut kv, N, &value).await;
    // With a 2.5 MiB receive limit an unfragmented 3 MiB response would fail the stream, so
    // success shows that the server fragmented it and the client merged the pieces.
    let client = Client::connect(
        [url.as_str()],
        ConnectOptions::new().with_max_recv_bytes(5 << 19),
    )
    .await
    .expect("connect");
    let mut w = client
        .watch("frag/", WatchOptions::new().with_prefix().with_prev_kv())
        .await
        .expect("watch");
    let rev = kv.delete("frag/", "frag0").await;
    let b = next_batch(&mut w, 20).await;
    assert_eq!(b.events.len(), N, "one merged batch");
    assert!(b.events.iter().all(|e| e.event_type == EventType::Delete
        && e.mod_revision() == rev
        && e.prev_kv.as_ref().is_some_and(|p| p.value.len() == 1024)));
    assert_quiet(&mut w, 300).await;

    // Without fragmentation the same response exceeds the limit and ends the watch.
    put_frag_keys(&mut kv, N, &value).await;
    let mut whole = client
        .watch(
            "frag/",
            WatchOptions::new()
                .with_prefix()
                .with_prev_kv()
                .with_fragment(false),
        )
        .await
        .expect("watch");
    kv.delete("frag/", "frag0").await;
    match tokio::time::timeout(Duration::from_secs(20), whole.next()).await {
        Ok(Some(Err(e))) => assert!(
            matches!(
                e.code(),
                Some(tonic::Code::ResourceExhausted | tonic::Code::OutOfRange)
            ),
            "{e}"
        ),
        other => panic!("want a message-too-large error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_drop_cancels_on_the_server_and_keeps_the_stream() {
    let cluster = EtcdCluster::single().expect("etcd");
    let member = cluster.member(0);
    let port = member.client_port;
    let mut kv = Kv::new(&member.client_url());
    let client = connect(&member.client_url()).await;
    let first = client
        .watch("dr", WatchOptions::new())
        .await
        .expect("watch");
    let mut second = client
        .watch("dr", WatchOptions::new())
        .await
        .expect("watch");
    assert_eq!(metric(port, "etcd_debugging_mvcc_watcher_total"), 2.0);
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while metric(port, "etcd_debugging_mvcc_watcher_total") != 1.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the dropped watch was not canceled on the server"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        metric(port, "etcd_debugging_mvcc_watch_stream_total"),
        1.0,
        "the stream stays open for the other watch"
    );
    let rev = kv.put("dr", "x").await;
    assert_eq!(next_events(&mut second, 1, 5).await[0].3, rev);
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_request_progress_yields_progress_notify() {
    let cluster = EtcdCluster::single().expect("etcd");
    let url = cluster.endpoints()[0].clone();
    let mut kv = Kv::new(&url);
    let client = connect(&url).await;
    let mut w = client
        .watch("pr", WatchOptions::new())
        .await
        .expect("watch");
    let mut other = client
        .watch("pr2", WatchOptions::new())
        .await
        .expect("watch");
    let rev = kv.put("pr", "x").await;
    assert_eq!(next_events(&mut w, 1, 5).await[0].3, rev);
    let later = kv.put("unwatched", "y").await;
    w.request_progress().await.expect("request progress");
    for watcher in [&mut w, &mut other] {
        let b = next_batch(watcher, 5).await;
        assert!(b.is_progress_notify(), "{b:?}");
        assert!(b.revision >= later);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_full_buffer_pauses_without_loss_or_stalling_others() {
    let cluster = EtcdCluster::single().expect("etcd");
    let url = cluster.endpoints()[0].clone();
    let mut kv = Kv::new(&url);
    let client = connect(&url).await;
    let mut slow = client
        .watch("bp", WatchOptions::new().with_buffer(2))
        .await
        .expect("watch");
    let mut fast = client
        .watch("bp", WatchOptions::new())
        .await
        .expect("watch");
    let mut revs = Vec::new();
    for i in 0..50 {
        revs.push(kv.put("bp", format!("{i}")).await);
    }
    // The unread watcher does not hold up the other one.
    let got: Vec<i64> = next_events(&mut fast, 50, 10)
        .await
        .iter()
        .map(|e| e.3)
        .collect();
    assert_eq!(got, revs);
    let got: Vec<i64> = next_events(&mut slow, 50, 10)
        .await
        .iter()
        .map(|e| e.3)
        .collect();
    assert_eq!(got, revs, "the paused watch replays what it missed, once");
    assert_quiet(&mut slow, 200).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_resumes_on_another_member_when_its_member_dies() {
    let mut cluster = EtcdCluster::builder().members(3).start().expect("etcd");
    let client = Client::connect(cluster.endpoints(), ConnectOptions::new())
        .await
        .expect("connect");
    let mut w = client
        .watch("mm", WatchOptions::new().with_created_notify())
        .await
        .expect("watch");
    let created = next_batch(&mut w, 5).await;
    // Which member serves the stream?
    let mut cc = pb::cluster_client::ClusterClient::new(
        tonic::transport::Endpoint::from_shared(cluster.endpoints()[0].clone())
            .expect("endpoint")
            .connect_lazy(),
    );
    let members = cc
        .member_list(pb::MemberListRequest { linearizable: true })
        .await
        .expect("member list")
        .into_inner()
        .members;
    let name = &members
        .iter()
        .find(|m| m.id == created.member_id)
        .expect("the stream's member")
        .name;
    let victim: usize = name.trim_start_matches('m').parse().expect("member index");
    let survivor = (victim + 1) % 3;
    let mut kv = Kv::new(&cluster.endpoints()[survivor]);
    let r1 = kv.put("mm", "1").await;
    assert_eq!(next_events(&mut w, 1, 5).await[0].3, r1);
    cluster.kill(victim);
    // Wait until the survivors accept writes (a new leader may be elected).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while kv
        .0
        .put(pb::PutRequest {
            key: "probe".into(),
            ..Default::default()
        })
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no quorum after the kill"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut revs = Vec::new();
    for i in 2..=4 {
        revs.push(kv.put("mm", format!("{i}")).await);
    }
    let got: Vec<i64> = next_events(&mut w, 3, 20)
        .await
        .iter()
        .map(|e| e.3)
        .collect();
    assert_eq!(got, revs);
    assert_quiet(&mut w, 300).await;
    let b = {
        let r = kv.put("mm", "5").await;
        let b = next_batch(&mut w, 10).await;
        assert_eq!(b.events[0].mod_revision(), r);
        b
    };
    assert_ne!(
        b.member_id, created.member_id,
        "served by another member now"
    );
}

/// A watch resumed with an expired token is canceled by the server; the client re-authenticates,
/// reopens the stream and resumes without losing the event written meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn watch_reauthenticates_after_token_expiry_on_resume() {
    let cluster = EtcdCluster::builder()
        .flag("--auth-token-ttl=2")
        .start()
        .expect("etcd");
    let member = cluster.member(0);
    let ch = tonic::transport::Endpoint::from_shared(member.client_url())
        .expect("endpoint")
        .connect_lazy();
    let mut auth = pb::auth_client::AuthClient::new(ch.clone());
    auth.user_add(pb::AuthUserAddRequest {
        name: "root".into(),
        password: "pw".into(),
        ..Default::default()
    })
    .await
    .expect("user add");
    auth.user_grant_role(pb::AuthUserGrantRoleRequest {
        user: "root".into(),
        role: "root".into(),
    })
    .await
    .expect("grant");
    auth.auth_enable(pb::AuthEnableRequest {})
        .await
        .expect("auth enable");
    let put = |key: &'static str, value: &'static str| {
        let (mut auth, mut kv) = (auth.clone(), KvClient::new(ch.clone()));
        async move {
            let token = auth
                .authenticate(pb::AuthenticateRequest {
                    name: "root".into(),
                    password: "pw".into(),
                })
                .await
                .expect("authenticate")
                .into_inner()
                .token;
            let mut req = tonic::Request::new(pb::PutRequest {
                key: key.into(),
                value: value.into(),
                ..Default::default()
            });
            req.metadata_mut()
                .insert("token", token.parse().expect("ascii token"));
            kv.put(req)
                .await
                .expect("put")
                .into_inner()
                .header
                .expect("header")
                .revision
        }
    };
    let proxy = FaultProxy::start(&member.client_addr()).expect("proxy");
    let client = Client::connect([proxy.url()], ConnectOptions::new().with_user("root", "pw"))
        .await
        .expect("connect");
    let mut w = client
        .watch("au", WatchOptions::new())
        .await
        .expect("watch");
    let r1 = put("au", "1").await;
    assert_eq!(next_events(&mut w, 1, 5).await[0].3, r1);
    proxy.drop_all();
    // The client's token expires (TTL 2 s, unused meanwhile).
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let r2 = put("au", "2").await;
    proxy.resume();
    let got = next_events(&mut w, 1, 15).await;
    assert_eq!(got, vec![(EventType::Put, "au".into(), "2".into(), r2)]);
    assert_quiet(&mut w, 300).await;
}

/// Explicit watch IDs (pipelined creates) are accepted by etcd 3.4 too, and resume works there.
#[tokio::test(flavor = "multi_thread")]
async fn watch_pipelined_creates_and_resume_on_etcd_3_4() {
    let cluster = EtcdCluster::builder()
        .version(support::bins::EtcdVersion::V3_4)
        .start()
        .expect("etcd 3.4");
    let member = cluster.member(0);
    let proxy = FaultProxy::start(&member.client_addr()).expect("proxy");
    let mut kv = Kv::new(&member.client_url());
    let client = connect(&proxy.url()).await;
    let watches = futures::future::join_all((0..20).map(|i| {
        let c = client.clone();
        async move { c.watch(format!("v34/{i}"), WatchOptions::new()).await }
    }))
    .await;
    let mut watches: Vec<Watcher> = watches.into_iter().map(|w| w.expect("watch")).collect();
    let r = kv.put("v34/7", "a").await;
    assert_eq!(next_events(&mut watches[7], 1, 5).await[0].3, r);
    proxy.drop_all();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r1 = kv.put("v34/7", "b").await;
    let r2 = kv.put("v34/3", "c").await;
    proxy.resume();
    assert_eq!(next_events(&mut watches[7], 1, 10).await[0].3, r1);
    assert_eq!(next_events(&mut watches[3], 1, 10).await[0].3, r2);
    assert_quiet(&mut watches[7], 300).await;
}

/// §4 create errors `[S]`: a negative start revision (which etcd would answer with a canceled
/// "compacted" create) is refused by the client before sending, as InvalidArgument; a range whose
/// end is not after its key is canceled by the server ("watcher range is empty") and ends the
/// create with `WatchCanceled`; the shared stream keeps serving other watches.
#[tokio::test(flavor = "multi_thread")]
async fn watch_create_errors_negative_start_and_empty_range_are_canceled() {
    let cluster = EtcdCluster::single().expect("etcd");
    let url = cluster.endpoints()[0].clone();
    let mut kv = Kv::new(&url);
    let client = connect(&url).await;
    match client
        .watch("ce", WatchOptions::new().with_start_revision(-1))
        .await
    {
        Err(Error::InvalidArgument(msg)) => assert!(msg.contains("negative"), "{msg}"),
        Err(e) => panic!("negative start revision: {e:?}"),
        Ok(_) => panic!("negative start revision accepted"),
    }
    match client
        .watch("ce/b", WatchOptions::new().with_range_end("ce/a"))
        .await
    {
        Err(Error::WatchCanceled { reason }) => {
            assert!(reason.contains("watcher range is empty"), "{reason}")
        }
        Err(e) => panic!("empty range: {e:?}"),
        Ok(_) => panic!("empty range accepted"),
    }
    let mut w = client
        .watch("ce", WatchOptions::new())
        .await
        .expect("watch");
    let rev = kv.put("ce", "x").await;
    assert_eq!(next_events(&mut w, 1, 5).await[0].3, rev);
}

/// §4 progress `[S]`: with `--experimental-watch-progress-notify-interval` the server sends
/// header-only responses to a progress-notify watch that has no events; they reach the caller
/// as progress notifications at the current revision.
#[tokio::test(flavor = "multi_thread")]
async fn watch_progress_notify_interval_sends_header_only_responses() {
    let cluster = EtcdCluster::builder()
        .flag("--experimental-watch-progress-notify-interval=500ms")
        .start()
        .expect("etcd");
    let url = cluster.endpoints()[0].clone();
    let mut kv = Kv::new(&url);
    let rev = kv.put("elsewhere", "x").await;
    let client = connect(&url).await;
    let mut w = client
        .watch("pn", WatchOptions::new().with_progress_notify())
        .await
        .expect("watch");
    let b = next_batch(&mut w, 20).await;
    assert!(b.is_progress_notify(), "{b:?}");
    assert!(b.events.is_empty());
    assert!(b.revision >= rev, "{} < {rev}", b.revision);
}

/// §4 server restart `[P]`: the member behind the only endpoint is stopped and started again on
/// its data; the watch reconnects by itself and resumes at its next revision: the event written
/// after the restart arrives once, and nothing from before is replayed.
#[tokio::test(flavor = "multi_thread")]
async fn watch_resumes_after_server_restart_from_next_revision() {
    let mut cluster = EtcdCluster::single().expect("etcd");
    let url = cluster.endpoints()[0].clone();
    let client = connect(&url).await;
    let mut w = client
        .watch("sr", WatchOptions::new())
        .await
        .expect("watch");
    let r1 = Kv::new(&url).put("sr", "before").await;
    assert_eq!(next_events(&mut w, 1, 5).await[0].3, r1);
    tokio::task::block_in_place(|| cluster.restart(0)).expect("restart");
    let r2 = Kv::new(&url).put("sr", "after").await;
    let got = next_events(&mut w, 1, 60).await;
    assert_eq!(got[0].3, r2, "{got:?}");
    assert_quiet(&mut w, 500).await;
}

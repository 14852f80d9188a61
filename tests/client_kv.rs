//! The KV API against real etcd 3.5 (parity doc §1.3, §1.4, §2.3, §2.5): get/put/delete/txn/
//! compact semantics, revision deltas, the golden wire fields, and the error table (trigger →
//! gRPC code → message → [`ServerError`]).

mod support;

use std::time::Duration;

use bytes::Bytes;
use etcd_v3::kv::{
    Compare, CompareOp, DeleteOptions, GetOptions, Op, OpResponse, PutOptions, SortOrder,
    SortTarget, Txn,
};
use etcd_v3::{Client, ConnectOptions, Error, ServerError};
use support::etcd::EtcdCluster;

async fn connect(cluster: &EtcdCluster) -> Client {
    Client::connect(
        cluster.endpoints(),
        ConnectOptions::new().with_request_timeout(Duration::from_secs(15)),
    )
    .await
    .expect("connect")
}

async fn setup() -> (EtcdCluster, Client) {
    let cluster = EtcdCluster::single().expect("etcd");
    let c = connect(&cluster).await;
    (cluster, c)
}

async fn put(c: &Client, k: impl AsRef<[u8]>, v: &'static str) -> i64 {
    c.put(k, v, PutOptions::new())
        .await
        .expect("put")
        .header
        .revision
}

async fn revision(c: &Client) -> i64 {
    c.get("\0", GetOptions::new().with_count_only())
        .await
        .expect("get")
        .header
        .revision
}

fn keys(r: &etcd_v3::kv::GetResponse) -> Vec<String> {
    r.kvs.iter().map(|kv| kv.key_str().into_owned()).collect()
}

/// Asserts `r` failed with etcd error `kind`, gRPC `code` and etcd's exact message.
#[track_caller]
fn assert_server_error<T: std::fmt::Debug>(
    r: Result<T, Error>,
    kind: ServerError,
    code: tonic::Code,
) {
    let err = r.expect_err("expected an etcd error");
    match &err {
        Error::Server {
            kind: k,
            code: c,
            message,
            ..
        } => {
            assert_eq!(*k, kind, "{err:?}");
            assert_eq!(*c, code, "{err:?}");
            assert_eq!(message, kind.message(), "{err:?}");
        }
        other => panic!("expected {kind:?}, got {other:?}"),
    }
    assert!(!err.is_outcome_unknown());
}

#[tokio::test(flavor = "multi_thread")]
async fn get_single_prefix_range_from_key() {
    let (_cluster, c) = setup().await;
    for k in ["a", "a/1", "a/2", "b", "c"] {
        put(&c, k, "v").await;
    }
    let r = c.get("a", GetOptions::new()).await.expect("get");
    assert_eq!(keys(&r), ["a"]);
    assert_eq!(r.count, 1);
    let r = c.get("a/", GetOptions::new().with_prefix()).await.unwrap();
    assert_eq!(keys(&r), ["a/1", "a/2"]);
    let r = c.get("a", GetOptions::new().with_range("c")).await.unwrap();
    assert_eq!(keys(&r), ["a", "a/1", "a/2", "b"]);
    let r = c.get("b", GetOptions::new().with_from_key()).await.unwrap();
    assert_eq!(keys(&r), ["b", "c"]);
    // An empty key with a prefix (or from-key) means every key, as in etcd's client.
    let r = c.get("", GetOptions::new().with_prefix()).await.unwrap();
    assert_eq!(r.count, 5);
    let r = c.get("", GetOptions::new().with_from_key()).await.unwrap();
    assert_eq!(r.count, 5);
    let r = c.get("missing", GetOptions::new()).await.unwrap();
    assert!(r.kvs.is_empty() && r.first().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn get_at_revision_limit_sort_keys_only_count_only_serializable() {
    let (_cluster, c) = setup().await;
    let r1 = put(&c, "k/1", "v1").await;
    put(&c, "k/1", "v1b").await;
    for (k, v) in [("k/2", "e"), ("k/3", "d"), ("k/4", "c"), ("k/5", "a")] {
        put(&c, k, v).await;
    }
    let at = c
        .get("k/1", GetOptions::new().with_revision(r1))
        .await
        .unwrap();
    assert_eq!(at.first().unwrap().value_str(), "v1");
    assert_eq!(at.first().unwrap().version, 1);

    let r = c
        .get("k/", GetOptions::new().with_prefix().with_limit(2))
        .await
        .unwrap();
    assert_eq!(keys(&r), ["k/1", "k/2"]);
    assert!(r.more);
    assert_eq!(r.count, 5, "count ignores the limit");
    let r = c
        .get("k/", GetOptions::new().with_prefix().with_limit(5))
        .await
        .unwrap();
    assert!(!r.more);

    let r = c
        .get(
            "k/",
            GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Key, SortOrder::Descend),
        )
        .await
        .unwrap();
    assert_eq!(keys(&r), ["k/5", "k/4", "k/3", "k/2", "k/1"]);
    let r = c
        .get(
            "k/",
            GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Value, SortOrder::Ascend),
        )
        .await
        .unwrap();
    assert_eq!(keys(&r), ["k/5", "k/4", "k/3", "k/2", "k/1"]);
    let r = c
        .get(
            "k/",
            GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Mod, SortOrder::Descend)
                .with_limit(1),
        )
        .await
        .unwrap();
    assert_eq!(keys(&r), ["k/5"]);
    let r = c
        .get(
            "k/",
            GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Version, SortOrder::Descend)
                .with_limit(1),
        )
        .await
        .unwrap();
    assert_eq!(keys(&r), ["k/1"]);
    let r = c
        .get(
            "k/",
            GetOptions::new()
                .with_prefix()
                .with_sort(SortTarget::Create, SortOrder::Ascend),
        )
        .await
        .unwrap();
    assert_eq!(keys(&r), ["k/1", "k/2", "k/3", "k/4", "k/5"]);

    let r = c
        .get("k/", GetOptions::new().with_prefix().with_keys_only())
        .await
        .unwrap();
    assert_eq!(r.kvs.len(), 5);
    assert!(r.kvs.iter().all(|kv| kv.value.is_empty()));
    assert!(r.kvs.iter().all(|kv| kv.mod_revision > 0));

    let r = c
        .get(
            "k/",
            GetOptions::new()
                .with_prefix()
                .with_count_only()
                .with_limit(1),
        )
        .await
        .unwrap();
    assert!(r.kvs.is_empty());
    assert_eq!(r.count, 5, "count_only ignores the limit");

    let r = c
        .get("k/1", GetOptions::new().with_serializable())
        .await
        .unwrap();
    assert_eq!(r.first().unwrap().value_str(), "v1b");
}

#[tokio::test(flavor = "multi_thread")]
async fn get_min_max_mod_and_create_revision_filters() {
    let (_cluster, c) = setup().await;
    let ra = put(&c, "f/a", "1").await;
    let rb = put(&c, "f/b", "1").await;
    let rc = put(&c, "f/c", "1").await;
    let ra2 = put(&c, "f/a", "2").await;
    let p = || GetOptions::new().with_prefix();
    let r = c.get("f/", p().with_min_mod_revision(rc)).await.unwrap();
    assert_eq!(keys(&r), ["f/a", "f/c"]);
    let r = c.get("f/", p().with_max_mod_revision(rc)).await.unwrap();
    assert_eq!(keys(&r), ["f/b", "f/c"]);
    let r = c.get("f/", p().with_min_create_revision(rb)).await.unwrap();
    assert_eq!(keys(&r), ["f/b", "f/c"]);
    let r = c.get("f/", p().with_max_create_revision(ra)).await.unwrap();
    assert_eq!(keys(&r), ["f/a"]);
    assert_eq!(r.kvs[0].mod_revision, ra2);
    assert_eq!(r.kvs[0].create_revision, ra);
    assert_eq!(r.kvs[0].version, 2);
    // Filters do not change count (it counts the range).
    assert_eq!(r.count, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn put_prev_kv_ignore_value_ignore_lease() {
    let (_cluster, c) = setup().await;
    let r = c
        .put("p", "1", PutOptions::new().with_prev_kv())
        .await
        .unwrap();
    assert!(r.prev_kv.is_none(), "no previous key");
    let r = c
        .put("p", "2", PutOptions::new().with_prev_kv())
        .await
        .unwrap();
    assert_eq!(r.prev_kv.unwrap().value_str(), "1");
    let r = c.put("p", "3", PutOptions::new()).await.unwrap();
    assert!(r.prev_kv.is_none(), "not asked for");

    let lease = c.lease_grant(60, None).await.expect("grant").id;
    c.put("p", "4", PutOptions::new().with_lease(lease))
        .await
        .unwrap();
    // ignore_value keeps the value and changes the lease.
    let lease2 = c.lease_grant(60, None).await.expect("grant").id;
    c.put(
        "p",
        "",
        PutOptions::new().with_ignore_value().with_lease(lease2),
    )
    .await
    .unwrap();
    let kv = c.get("p", GetOptions::new()).await.unwrap().kvs.remove(0);
    assert_eq!((kv.value_str().as_ref(), kv.lease), ("4", lease2));
    // ignore_lease keeps the lease and changes the value.
    c.put("p", "5", PutOptions::new().with_ignore_lease())
        .await
        .unwrap();
    let kv = c.get("p", GetOptions::new()).await.unwrap().kvs.remove(0);
    assert_eq!((kv.value_str().as_ref(), kv.lease), ("5", lease2));

    assert_server_error(
        c.put("p", "x", PutOptions::new().with_ignore_value()).await,
        ServerError::ValueProvided,
        tonic::Code::InvalidArgument,
    );
    assert_server_error(
        c.put(
            "p",
            "x",
            PutOptions::new().with_ignore_lease().with_lease(lease),
        )
        .await,
        ServerError::LeaseProvided,
        tonic::Code::InvalidArgument,
    );
    assert_server_error(
        c.put("nope", "", PutOptions::new().with_ignore_value())
            .await,
        ServerError::KeyNotFound,
        tonic::Code::InvalidArgument,
    );
    assert_server_error(
        c.put("nope", "x", PutOptions::new().with_ignore_lease())
            .await,
        ServerError::KeyNotFound,
        tonic::Code::InvalidArgument,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_range_prefix_prev_kv_and_noop_delete_keeps_revision() {
    let (_cluster, c) = setup().await;
    for k in ["d/1", "d/2", "d/3", "e"] {
        put(&c, k, "v").await;
    }
    let r = c
        .delete("d/1", DeleteOptions::new().with_range("d/3").with_prev_kv())
        .await
        .unwrap();
    assert_eq!(r.deleted, 2);
    let mut prev: Vec<String> = r
        .prev_kvs
        .iter()
        .map(|k| k.key_str().into_owned())
        .collect();
    prev.sort();
    assert_eq!(prev, ["d/1", "d/2"]);
    let r = c
        .delete("d/", DeleteOptions::new().with_prefix())
        .await
        .unwrap();
    assert_eq!(r.deleted, 1);
    assert!(r.prev_kvs.is_empty(), "prev_kv not asked for");

    let before = revision(&c).await;
    let r = c
        .delete("d/", DeleteOptions::new().with_prefix())
        .await
        .unwrap();
    assert_eq!(r.deleted, 0);
    assert_eq!(
        r.header.revision, before,
        "a delete of nothing does not bump"
    );
    assert_eq!(revision(&c).await, before);
    let r = c.delete("e", DeleteOptions::new()).await.unwrap();
    assert_eq!(r.header.revision, before + 1);
    // An empty key with a prefix deletes every key.
    put(&c, "x", "v").await;
    let r = c
        .delete("", DeleteOptions::new().with_prefix())
        .await
        .unwrap();
    assert_eq!(r.deleted, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn txn_bumps_revision_once_and_events_share_it() {
    let (_cluster, c) = setup().await;
    let before = revision(&c).await;
    let r = c
        .txn(Txn::new().and_then([
            Op::put("t/1", "a", PutOptions::new()),
            Op::put("t/2", "b", PutOptions::new()),
            Op::delete("nothing", DeleteOptions::new()),
            Op::get("t/", GetOptions::new().with_prefix()),
        ]))
        .await
        .unwrap();
    assert!(r.succeeded);
    assert_eq!(r.header.revision, before + 1);
    assert_eq!(r.responses.len(), 4);
    let got = r.responses[3].as_get().expect("get response");
    assert_eq!(got.count, 2, "a get in a txn sees the txn's own writes");
    let kvs = c
        .get("t/", GetOptions::new().with_prefix())
        .await
        .unwrap()
        .kvs;
    assert!(kvs.iter().all(|kv| kv.mod_revision == before + 1));
    // A read-only txn does not bump the revision.
    let r = c
        .txn_read_only(Txn::new().and_then([Op::get("t/1", GetOptions::new())]))
        .await
        .unwrap();
    assert_eq!(r.header.revision, before + 1);
    assert!(matches!(
        c.txn_read_only(Txn::new().and_then([Op::put("x", "y", PutOptions::new())]))
            .await,
        Err(Error::InvalidArgument(_))
    ));
    // A single op on its own.
    match c.op(Op::put("t/3", "c", PutOptions::new())).await.unwrap() {
        OpResponse::Put(p) => assert_eq!(p.header.revision, before + 2),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn txn_compares_value_version_create_mod_lease_range_and_nested() {
    let (_cluster, c) = setup().await;
    let r1 = put(&c, "c/a", "1").await;
    let r2 = put(&c, "c/a", "2").await;
    let lease = c.lease_grant(60, None).await.expect("grant").id;
    c.put("c/b", "x", PutOptions::new().with_lease(lease))
        .await
        .unwrap();

    let holds = |cmp: Compare| {
        let c = c.clone();
        async move { c.txn(Txn::new().when([cmp])).await.expect("txn").succeeded }
    };
    assert!(holds(Compare::value("c/a", CompareOp::Equal, "2")).await);
    assert!(!holds(Compare::value("c/a", CompareOp::Equal, "1")).await);
    assert!(holds(Compare::value("c/a", CompareOp::Greater, "1")).await);
    assert!(holds(Compare::value("c/a", CompareOp::NotEqual, "1")).await);
    assert!(holds(Compare::version("c/a", CompareOp::Equal, 2)).await);
    assert!(holds(Compare::version("c/none", CompareOp::Equal, 0)).await);
    assert!(holds(Compare::create_revision("c/a", CompareOp::Equal, r1)).await);
    assert!(holds(Compare::create_revision("c/none", CompareOp::Equal, 0)).await);
    assert!(holds(Compare::mod_revision("c/a", CompareOp::Equal, r2)).await);
    assert!(holds(Compare::mod_revision("c/a", CompareOp::Less, r2 + 1)).await);
    assert!(holds(Compare::lease("c/b", CompareOp::Equal, lease)).await);
    assert!(holds(Compare::lease("c/a", CompareOp::Equal, 0)).await);
    // Range compares hold only when every key in the range satisfies them.
    assert!(holds(Compare::version("c/", CompareOp::Greater, 0).with_prefix()).await);
    assert!(!holds(Compare::version("c/", CompareOp::Greater, 1).with_prefix()).await);
    assert!(holds(Compare::version("c/a", CompareOp::Equal, 2).with_range("c/b")).await);

    // Failure branch and a nested txn.
    let r = c
        .txn(
            Txn::new()
                .when([Compare::value("c/a", CompareOp::Equal, "nope")])
                .and_then([Op::put("c/a", "never", PutOptions::new())])
                .or_else([Op::txn(
                    Txn::new()
                        .when([Compare::version("c/a", CompareOp::Equal, 2)])
                        .and_then([
                            Op::put("c/n", "nested", PutOptions::new()),
                            Op::get("c/a", GetOptions::new()),
                        ]),
                )]),
        )
        .await
        .unwrap();
    assert!(!r.succeeded);
    match &r.responses[..] {
        [OpResponse::Txn(inner)] => {
            assert!(inner.succeeded);
            assert_eq!(inner.responses.len(), 2);
            assert_eq!(inner.responses[1].as_get().unwrap().kvs[0].value_str(), "2");
        }
        other => panic!("{other:?}"),
    }
    let n = c.get("c/n", GetOptions::new()).await.unwrap();
    assert_eq!(n.first().unwrap().value_str(), "nested");
    assert_eq!(n.first().unwrap().mod_revision, r.header.revision);
}

/// §1.3 golden: the compare oneof is set even for an empty value, so `value == ""` holds for a key
/// that holds an empty value (an unset oneof would compare nothing).
#[tokio::test(flavor = "multi_thread")]
async fn golden_txn_value_equal_empty_succeeds_for_empty_value() {
    let (_cluster, c) = setup().await;
    put(&c, "empty", "").await;
    let r = c
        .txn(Txn::new().when([Compare::value("empty", CompareOp::Equal, "")]))
        .await
        .unwrap();
    assert!(r.succeeded);
    put(&c, "full", "x").await;
    let r = c
        .txn(Txn::new().when([Compare::value("full", CompareOp::Equal, "")]))
        .await
        .unwrap();
    assert!(!r.succeeded);
}

/// §1.4 golden: the prefix end of `"a\xff"` is `"b"`.
#[tokio::test(flavor = "multi_thread")]
async fn golden_prefix_a_ff_covers_a_ff_01_and_excludes_b() {
    let (_cluster, c) = setup().await;
    put(&c, b"a\xff", "1").await;
    put(&c, b"a\xff\x01", "2").await;
    put(&c, b"b", "3").await;
    put(&c, b"a", "4").await;
    let r = c
        .get(b"a\xff", GetOptions::new().with_prefix())
        .await
        .unwrap();
    let got: Vec<Bytes> = r.kvs.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(
        got,
        [
            Bytes::from_static(b"a\xff"),
            Bytes::from_static(b"a\xff\x01")
        ]
    );
    let d = c
        .delete(b"a\xff", DeleteOptions::new().with_prefix())
        .await
        .unwrap();
    assert_eq!(d.deleted, 2);
    assert_eq!(c.get("b", GetOptions::new()).await.unwrap().count, 1);
}

/// §2.5: the error table, each trigger against a real server.
#[tokio::test(flavor = "multi_thread")]
async fn error_table_trigger_code_message_variant() {
    use tonic::Code::{InvalidArgument, NotFound, OutOfRange};
    let (_cluster, c) = setup().await;
    put(&c, "k", "v").await;
    assert_server_error(
        c.put("", "v", PutOptions::new()).await,
        ServerError::EmptyKey,
        InvalidArgument,
    );
    assert_server_error(
        c.get("", GetOptions::new()).await,
        ServerError::EmptyKey,
        InvalidArgument,
    );
    assert_server_error(
        c.delete("", DeleteOptions::new()).await,
        ServerError::EmptyKey,
        InvalidArgument,
    );
    assert_server_error(
        c.txn(Txn::new().when([Compare::version("", CompareOp::Equal, 0)]))
            .await,
        ServerError::EmptyKey,
        InvalidArgument,
    );
    assert_server_error(
        c.put("k", "v", PutOptions::new().with_ignore_value()).await,
        ServerError::ValueProvided,
        InvalidArgument,
    );
    assert_server_error(
        c.put("k", "", PutOptions::new().with_ignore_lease().with_lease(7))
            .await,
        ServerError::LeaseProvided,
        InvalidArgument,
    );
    assert_server_error(
        c.put("missing", "", PutOptions::new().with_ignore_value())
            .await,
        ServerError::KeyNotFound,
        InvalidArgument,
    );
    let ops: Vec<Op> = (0..129)
        .map(|i| Op::put(format!("many/{i}"), "v", PutOptions::new()))
        .collect();
    assert_server_error(
        c.txn(Txn::new().and_then(ops)).await,
        ServerError::TooManyOps,
        InvalidArgument,
    );
    let ops: Vec<Op> = (0..128)
        .map(|i| Op::put(format!("many/{i}"), "v", PutOptions::new()))
        .collect();
    c.txn(Txn::new().and_then(ops)).await.expect("128 ops fit");
    assert_server_error(
        c.txn(Txn::new().and_then([
            Op::put("dup", "1", PutOptions::new()),
            Op::put("dup", "2", PutOptions::new()),
        ]))
        .await,
        ServerError::DuplicateKey,
        InvalidArgument,
    );
    assert_server_error(
        c.txn(Txn::new().and_then([
            Op::put("dup", "1", PutOptions::new()),
            Op::delete("d", DeleteOptions::new().with_range("e")),
        ]))
        .await,
        ServerError::DuplicateKey,
        InvalidArgument,
    );
    assert_server_error(
        c.put("k", "v", PutOptions::new().with_lease(0x1234_5678))
            .await,
        ServerError::LeaseNotFound,
        NotFound,
    );

    for i in 0..5 {
        put(&c, format!("rev/{i}"), "v").await;
    }
    let current = revision(&c).await;
    assert_server_error(
        c.get("k", GetOptions::new().with_revision(current + 10))
            .await,
        ServerError::FutureRev,
        OutOfRange,
    );
    assert_server_error(
        c.compact(current + 10, false).await,
        ServerError::FutureRev,
        OutOfRange,
    );
    let compact_at = current - 2;
    c.compact(compact_at, false).await.expect("compact");
    assert_server_error(
        c.get("k", GetOptions::new().with_revision(compact_at - 1))
            .await,
        ServerError::Compacted,
        OutOfRange,
    );
    assert_server_error(
        c.compact(compact_at, false).await,
        ServerError::Compacted,
        OutOfRange,
    );
    assert_server_error(
        c.compact(compact_at - 1, false).await,
        ServerError::Compacted,
        OutOfRange,
    );
    // Reading exactly at the compact revision works.
    c.get("k", GetOptions::new().with_revision(compact_at))
        .await
        .expect("read at the compact revision");
}

/// §1.4 request size: over `--max-request-bytes` (1.5 MiB) but within the gRPC limit (+512 KiB)
/// → ErrRequestTooLarge from etcd; over the client's 2 MiB send limit → ResourceExhausted
/// before sending. §2.3: 5 × 1 MiB in one range response (receive limit is not tonic's 4 MiB).
#[tokio::test(flavor = "multi_thread")]
async fn request_size_limits_and_large_range_response() {
    let (_cluster, c) = setup().await;
    let big = Bytes::from(vec![b'x'; 1_600_000]);
    assert_server_error(
        c.put("big", big, PutOptions::new()).await,
        ServerError::RequestTooLarge,
        tonic::Code::InvalidArgument,
    );
    let huge = Bytes::from(vec![b'x'; 3 * 1024 * 1024]);
    let err = c
        .put("huge", huge, PutOptions::new())
        .await
        .expect_err("3 MiB put");
    assert_eq!(err.code(), Some(tonic::Code::ResourceExhausted), "{err:?}");
    assert!(!err.is_outcome_unknown(), "{err:?}");
    assert_eq!(c.get("huge", GetOptions::new()).await.unwrap().count, 0);

    let mib = Bytes::from(vec![b'y'; 1024 * 1024]);
    for i in 0..5 {
        c.put(format!("mib/{i}"), mib.clone(), PutOptions::new())
            .await
            .expect("1 MiB put");
    }
    let r = c
        .get("mib/", GetOptions::new().with_prefix())
        .await
        .expect("5 MiB range");
    assert_eq!(r.kvs.len(), 5);
    assert!(r.kvs.iter().all(|kv| kv.value.len() == 1024 * 1024));
}

#[tokio::test(flavor = "multi_thread")]
async fn compact_physical_waits_and_drops_history() {
    let (_cluster, c) = setup().await;
    let first = put(&c, "h", "1").await;
    for i in 0..20 {
        c.put("h", format!("{i}"), PutOptions::new()).await.unwrap();
    }
    let last = revision(&c).await;
    let header = c.compact(last, true).await.expect("physical compact");
    assert!(header.revision >= last);
    assert_server_error(
        c.get("h", GetOptions::new().with_revision(first)).await,
        ServerError::Compacted,
        tonic::Code::OutOfRange,
    );
    let r = c
        .get("h", GetOptions::new().with_revision(last))
        .await
        .expect("at compact revision");
    assert_eq!(r.first().unwrap().value_str(), "19");
}

/// `needle` occurs in `hay` as a contiguous run.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// §1.3 golden field numbers: a compare's `range_end` is field 64 (tag bytes `0x82 0x04`, past
/// the target oneof, whose `value` is field 7), and a watch response's `events` are field 11
/// (tag `0x5a`); bytes written by hand with those tags decode into the expected event. A real
/// server then evaluates a compare carrying a range_end over the whole range.
#[tokio::test(flavor = "multi_thread")]
async fn golden_field_numbers_compare_range_end_64_and_watch_events_11() {
    use etcd_v3::proto::{etcdserverpb as pb, mvccpb};
    use prost::Message;
    let cmp = Compare::value("r/a", CompareOp::Equal, "1").with_range("r/c");
    let bytes = cmp.to_proto().encode_to_vec();
    assert!(
        contains(&bytes, &[0x82, 0x04, 0x03, b'r', b'/', b'c']),
        "{bytes:02x?}"
    );
    assert!(contains(&bytes, &[0x3a, 0x01, b'1']), "{bytes:02x?}");
    assert!(
        contains(&bytes, &[0x10, 0x03]),
        "target VALUE=3: {bytes:02x?}"
    );

    let resp = pb::WatchResponse {
        events: vec![mvccpb::Event::default()],
        ..Default::default()
    };
    assert_eq!(resp.encode_to_vec()[0], 0x5a);
    // events=11 { type=1: DELETE, kv=2 { key=1: "k", mod_revision=3: 7 } }, watch_id=2: 5
    let kv = [0x0a, 0x01, b'k', 0x18, 0x07];
    let mut event = vec![0x08, 0x01, 0x12, kv.len() as u8];
    event.extend_from_slice(&kv);
    let mut wire = vec![0x10, 0x05, 0x5a, event.len() as u8];
    wire.extend_from_slice(&event);
    let decoded = pb::WatchResponse::decode(wire.as_slice()).expect("decode");
    assert_eq!(decoded.watch_id, 5);
    assert_eq!(decoded.events.len(), 1);
    let ev = &decoded.events[0];
    assert_eq!(ev.r#type, mvccpb::event::EventType::Delete as i32);
    let kv = ev.kv.as_ref().expect("kv");
    assert_eq!((&kv.key[..], kv.mod_revision), (&b"k"[..], 7));

    let (_cluster, c) = setup().await;
    put(&c, "r/a", "1").await;
    put(&c, "r/b", "1").await;
    let r = c.txn(Txn::new().when([cmp.clone()])).await.expect("txn");
    assert!(r.succeeded, "every key in [r/a, r/c) holds 1");
    put(&c, "r/b", "2").await;
    let r = c.txn(Txn::new().when([cmp])).await.expect("txn");
    assert!(!r.succeeded, "r/b no longer holds 1");
}

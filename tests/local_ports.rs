//! Port blocks never overlap: several local operators (each on its own state directory) and one
//! operator with a manifest of several clusters, all started at the same moment on a port range
//! with exactly one slot per cluster, give every cluster a block of its own, and every cluster
//! comes up on it.

mod support;

use std::ops::Range;
use std::time::Duration;

use etcd_operator::etcd::kv::{GetOptions, PutOptions};
use etcd_operator::runtime::local::ports::{PORTS_PER_CLUSTER, PortRange};
use etcd_operator::runtime::local::store::PortBlock;
use support::local::{LocalOperator, manifest};

const CONVERGE: Duration = Duration::from_secs(120);
/// Operators with one cluster each.
const SINGLES: usize = 3;
/// Clusters in the manifest of the last operator.
const SHARED: usize = 3;

/// A range of `slots` blocks below the operators' default range whose ports all bind now.
fn free_range(slots: u16) -> PortRange {
    let len = slots * PORTS_PER_CLUSTER;
    (0..40u16)
        .find_map(|k| {
            let first = 11800u16.checked_sub(k * len)?;
            let free =
                (first..first + len).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
            free.then_some(PortRange {
                first,
                last: first + len - 1,
            })
        })
        .expect("a free port range below 11800")
}

fn ranges(block: &PortBlock) -> [Range<u32>; 2] {
    block.ranges()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_started_at_once_get_disjoint_blocks() {
    let total = SINGLES + SHARED;
    let range = free_range(u16::try_from(total).expect("few clusters"));
    let arg = vec!["--port-range".to_owned(), range.to_string()];
    // Everything written first, then every operator launched back to back.
    let mut ops = Vec::new();
    for i in 0..SINGLES {
        let name = format!("lp{i}");
        let mut op = LocalOperator::prepare(&name, &manifest(&name, 1, "3.5.16")).expect("prepare");
        op.extra_args = arg.clone();
        ops.push((op, vec![name]));
    }
    let shared: Vec<String> = (0..SHARED).map(|i| format!("lps{i}")).collect();
    let text = shared
        .iter()
        .map(|n| manifest(n, 1, "3.5.16"))
        .collect::<Vec<_>>()
        .join("---\n");
    let mut op = LocalOperator::prepare(&shared[0], &text).expect("prepare");
    op.extra_args = arg.clone();
    ops.push((op, shared));
    for (op, _) in &mut ops {
        op.launch(&[]).expect("launch");
    }

    let mut blocks: Vec<(String, PortBlock)> = Vec::new();
    for (op, names) in &mut ops {
        for name in names.iter() {
            op.cluster = name.clone();
            op.wait_converged(1, "3.5.16", CONVERGE);
            let text = std::fs::read_to_string(op.cluster_dir().join("cluster.yaml"))
                .expect("cluster.yaml");
            let block: PortBlock = serde_saphyr::from_str(&text).expect("parse cluster.yaml");
            blocks.push((name.clone(), block));
        }
    }
    // Every port of every block is inside the range, and no two blocks share a port.
    let all: Vec<(String, Range<u32>)> = blocks
        .iter()
        .flat_map(|(n, b)| ranges(b).map(|r| (n.clone(), r)))
        .collect();
    for (n, r) in &all {
        assert!(
            r.start >= u32::from(range.first) && r.end <= u32::from(range.last) + 1,
            "{n}: ports {r:?} outside {range}"
        );
    }
    for (i, (a, ra)) in all.iter().enumerate() {
        for (b, rb) in &all[i + 1..] {
            assert!(
                a == b || ra.end <= rb.start || rb.end <= ra.start,
                "{a} ({ra:?}) and {b} ({rb:?}) overlap; all blocks: {blocks:#?}"
            );
        }
    }
    // The range has one slot per cluster: each took one.
    let mut bases: Vec<u16> = blocks.iter().map(|(_, b)| b.client_base_port).collect();
    bases.sort_unstable();
    let slots: Vec<u16> = (0..total)
        .map(|i| range.first + u16::try_from(i).expect("few") * PORTS_PER_CLUSTER)
        .collect();
    assert_eq!(bases, slots, "blocks: {blocks:#?}");
    // Every cluster serves on its own ports: a key written through each is read back from it
    // alone.
    for (op, names) in &mut ops {
        for name in names.iter() {
            op.cluster = name.clone();
            let client = op.client().await;
            client
                .put(format!("who/{name}"), name.clone(), PutOptions::new())
                .await
                .expect("put");
            let got = client
                .get("who/", GetOptions::new().with_prefix())
                .await
                .expect("get");
            let keys: Vec<String> = got
                .kvs
                .iter()
                .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
                .collect();
            assert_eq!(
                keys,
                [format!("who/{name}")],
                "{name} sees other clusters' keys"
            );
        }
    }
    for (op, _) in &mut ops {
        let exit = op.stop_gracefully().expect("stop");
        assert!(exit.contains("exit status: 0"), "{exit}\n{}", op.log_tail());
    }
}

//! Snapshot store on a local folder (what a PVC is inside a Pod) and a real etcd member: the
//! same scenarios as tests/store_s3.rs (see [`support::stores::scenarios`]), and no staging
//! file is left in the folder.

mod support;

use etcd_operator::snapshot_store::{Destination, StoreConfig};
use support::stores::scenarios;

#[tokio::test(flavor = "multi_thread")]
async fn local_folder_store_scenarios() {
    let dir = support::temp_dir("local-store").expect("tempdir");
    let root = dir.path().join("backups");
    let (cluster, client) = scenarios::etcd_with_data().await;
    let cfg = |p: &str| StoreConfig::new(Destination::Local { path: root.clone() }).with_prefix(p);
    scenarios::all(&cluster, &client, cfg, &[], scenarios::PART).await;
    // Every scenario cleaned up after itself: only empty prefix folders are left.
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("entry").path();
            assert!(p.is_dir(), "file left behind: {}", p.display());
            stack.push(p);
        }
    }
}

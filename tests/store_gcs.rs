//! Snapshot store on a real Google Cloud Storage emulator (fake-gcs-server) and a real etcd
//! member: the same scenarios as tests/store_s3.rs (see [`support::stores::scenarios`]).

mod support;

use support::stores::{GcsServer, scenarios};

#[tokio::test(flavor = "multi_thread")]
async fn gcs_store_scenarios() {
    let server = GcsServer::start().expect("fake-gcs-server");
    let (cluster, client) = scenarios::etcd_with_data().await;
    scenarios::all(&cluster, &client, |p| server.config(p), &["disable_oauth"]).await;
}

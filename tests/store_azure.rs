//! Snapshot store on a real Azure Blob Storage emulator (Azurite) and a real etcd member: the
//! same scenarios as tests/store_s3.rs (see [`support::stores::scenarios`]).

mod support;

use support::stores::{AZURE_KEY, AzureServer, scenarios};

#[tokio::test(flavor = "multi_thread")]
async fn azure_store_scenarios() {
    let server = AzureServer::start().expect("azurite");
    let (cluster, client) = scenarios::etcd_with_data().await;
    scenarios::all(
        &cluster,
        &client,
        |p| server.config(p),
        &[AZURE_KEY],
        scenarios::PART,
    )
    .await;
}

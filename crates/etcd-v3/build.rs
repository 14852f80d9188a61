//! Compiles the repository's `proto/` folder into Rust with protox (a pure-Rust protobuf
//! compiler, so no system `protoc`) and tonic-prost-build (client stubs only).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The protos live at the top of the workspace, next to the crates that use them.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "etcd/api/mvccpb/kv.proto",
        "etcd/api/authpb/auth.proto",
        "etcd/api/etcdserverpb/rpc.proto",
    ]
    .map(|f| root.join(f));
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let descriptors = protox::compile(&files, [&root])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .bytes(".")
        .compile_fds(descriptors)?;
    Ok(())
}

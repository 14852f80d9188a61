//! Placeholder for `cargo bench`: the client benchmark lives in its own Cargo package, `bench/`
//! (driver `bench-client`), run by `make bench-client` (`hack/bench.sh`) next to etcd's Go
//! `benchmark` tool and the `etcd-client` crate. It is a separate package so that the crate,
//! whose build needs protoc, never enters this package's dependency graph. Under `cargo test`
//! (which builds and runs bench targets with `--all-targets`) this exits at once.

fn main() {
    if std::env::args().any(|a| a == "--bench") {
        eprintln!("the client benchmark is `make bench-client` (see bench/ and hack/bench.sh)");
    }
}

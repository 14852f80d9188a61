//! The `etcd-operator` command line.

fn main() {
    println!("etcd-operator {}", env!("CARGO_PKG_VERSION"));
}

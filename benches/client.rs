//! `make bench-client`: the client against etcd's Go benchmark tool and the `etcd-client` crate.
//! (Being written.) Runs only under `cargo bench`; under `cargo test` it exits at once.

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    eprintln!("bench-client: not written yet");
}

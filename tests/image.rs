//! The container image, checked without a Docker engine: the Dockerfile builds its binary with
//! `make static`, whose result `hack/check-static.sh` verifies; this suite proves that checker
//! tells static from dynamic binaries, and that the Dockerfile keeps its promises (non-root UID
//! 65532, distroless static base, OCI labels). `make static` itself is the full release build.

use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check_static(bin: &std::path::Path) -> (bool, String) {
    let out = Command::new(repo().join("hack/check-static.sh"))
        .arg(bin)
        .output()
        .expect("running hack/check-static.sh");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn check_static_rejects_a_dynamically_linked_binary() {
    // This test binary is an ordinary (dynamically linked) build.
    let me = std::env::current_exe().expect("current exe");
    let (ok, out) = check_static(&me);
    assert!(!ok, "a dynamic binary passed: {out}");
    assert!(
        out.contains("interpreter") || out.contains("needs shared"),
        "{out}"
    );
}

#[test]
fn check_static_accepts_a_crt_static_binary_and_rejects_non_elf() {
    // The same link mode as `make static` (glibc, +crt-static, host target), on a tiny program.
    let dir = tempfile::tempdir().expect("tmp");
    let src = dir.path().join("hello.rs");
    std::fs::write(&src, "fn main() { println!(\"hello\"); }\n").expect("write");
    let bin = dir.path().join("hello");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .args(["-C", "target-feature=+crt-static", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("running rustc");
    assert!(
        out.status.success(),
        "rustc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&bin)
        .output()
        .expect("running the static binary");
    assert_eq!(String::from_utf8_lossy(&run.stdout), "hello\n");
    let (ok, text) = check_static(&bin);
    assert!(ok, "a crt-static binary was refused: {text}");

    let (ok, text) = check_static(&src);
    assert!(!ok, "a source file passed: {text}");
}

#[test]
fn dockerfile_ships_the_make_static_binary_as_uid_65532_on_distroless_static() {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let froms: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("FROM "))
        .collect();
    assert_eq!(froms.len(), 2, "multi-stage: builder + runtime: {froms:?}");
    assert!(froms[0].contains(" AS builder"), "{froms:?}");
    assert!(
        froms[1].contains("distroless/static"),
        "final stage: {}",
        froms[1]
    );
    assert!(
        text.contains("make static"),
        "the builder runs `make static`"
    );
    let users: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("USER "))
        .collect();
    assert_eq!(users, vec!["USER 65532:65532"]);
    for label in [
        "org.opencontainers.image.title",
        "org.opencontainers.image.source",
        "org.opencontainers.image.version",
        "org.opencontainers.image.revision",
        "org.opencontainers.image.licenses",
    ] {
        assert!(text.contains(label), "missing label {label}");
    }
    // The builder has every workspace member: `make static` fails without the client crate.
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).expect("Cargo.toml");
    let members = manifest
        .split("members = [")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .expect("a [workspace] members list");
    for member in members.split(',').map(|m| m.trim().trim_matches('"')) {
        let top = member.split('/').next().unwrap_or(member);
        if top.is_empty() || top == "." {
            continue;
        }
        assert!(
            text.lines()
                .any(|l| l.trim() == format!("COPY {top} {top}")),
            "the Dockerfile does not copy the workspace member folder {top}/"
        );
    }
    for copied in ["COPY proto proto", "COPY src src"] {
        assert!(text.contains(copied), "the Dockerfile lacks `{copied}`");
    }
    let copy_path = "target/x86_64-unknown-linux-gnu/release/etcd-operator";
    assert!(text.contains(copy_path), "the image copies {copy_path}");

    let make = std::fs::read_to_string(repo().join("Makefile")).expect("Makefile");
    let target = make
        .split("\nstatic:\n")
        .nth(1)
        .expect("a `static` target in the Makefile");
    assert!(target.contains("+crt-static"), "{target}");
    assert!(target.contains("hack/check-static.sh"), "{target}");
    assert!(make.contains("STATIC_TARGET ?= x86_64-unknown-linux-gnu"));
}

//! `etcd-operator local` refuses invalid manifests with a message naming the file, the field and
//! the problem, and starts nothing.

mod support;

use std::process::Command;

use support::temp_dir;

const HEAD: &str =
    "apiVersion: etcd.operator.dev/v1alpha1\nkind: EtcdCluster\nmetadata:\n  name: bad\n";

fn spec(body: &str) -> String {
    format!("{HEAD}spec:\n{body}")
}

/// Runs the binary on `manifest`; returns its stderr after checking that it failed and left no
/// member behind.
fn refuse(manifest: &str) -> String {
    let dir = temp_dir("manifest").expect("temp dir");
    let file = dir.path().join("cluster.yaml");
    std::fs::write(&file, manifest).expect("write manifest");
    let state = dir.path().join("state");
    let out = Command::new(env!("CARGO_BIN_EXE_etcd-operator"))
        .args(["local", "--manifest"])
        .arg(&file)
        .arg("--state-dir")
        .arg(&state)
        .arg("--etcd-bin-dir")
        .arg(dir.path().join("no-bin"))
        .output()
        .expect("run etcd-operator");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "accepted:\n{manifest}\nstderr: {stderr}"
    );
    assert!(
        stderr.contains(&*file.to_string_lossy()),
        "the error does not name the file: {stderr}"
    );
    assert!(
        !state.join("default").exists(),
        "a refused manifest created cluster state"
    );
    stderr
}

#[test]
fn invalid_manifests_are_refused_with_file_field_and_reason() {
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "zero replicas",
            spec("  replicas: 0\n"),
            "spec.replicas",
            "between 1 and 9",
        ),
        (
            "ten replicas",
            spec("  replicas: 10\n"),
            "spec.replicas",
            "not 10",
        ),
        (
            "short version",
            spec("  version: \"3.5\"\n"),
            "spec.version",
            "major.minor.patch",
        ),
        (
            "word version",
            spec("  version: latest\n"),
            "spec.version",
            "\"latest\"",
        ),
        (
            "fragmentation percent",
            spec("  maintenance:\n    defragmentation:\n      maxFragmentationPercent: 100\n"),
            "spec.maintenance.defragmentation.maxFragmentationPercent",
            "from 1 to 99, not 100",
        ),
        (
            "backup too often",
            spec("  backup:\n    every: 5s\n"),
            "spec.backup.every",
            "at least 10s",
        ),
        (
            "backup in days",
            spec("  backup:\n    every: 1d\n"),
            "spec.backup.every",
            "\"1d\" is not a duration",
        ),
        (
            "backup keeps none",
            spec("  backup:\n    every: 1h\n    keep: 0\n"),
            "spec.backup.keep",
            "from 1 to 1000, not 0",
        ),
        (
            "restore from nowhere",
            spec("  bootstrap:\n    restore:\n      path: \"\"\n"),
            "spec.bootstrap.restore.path",
            "1 to 4096 characters long, not 0",
        ),
        (
            "compaction mode",
            spec("  etcd:\n    autoCompactionMode: weekly\n"),
            "spec.etcd.autoCompactionMode",
            "periodic",
        ),
        (
            "revision retention",
            spec("  etcd:\n    autoCompactionMode: revision\n    autoCompactionRetention: 1h\n"),
            "spec.etcd.autoCompactionRetention",
            "revision count",
        ),
        (
            "heartbeat vs election",
            spec("  etcd:\n    heartbeatIntervalMs: 500\n    electionTimeoutMs: 1000\n"),
            "spec.etcd.electionTimeoutMs",
            "5 times the heartbeat",
        ),
        (
            "negative heartbeat",
            spec("  etcd:\n    heartbeatIntervalMs: -5\n"),
            "spec.etcd.heartbeatIntervalMs",
            "positive",
        ),
        (
            "zero quota",
            spec("  etcd:\n    quotaBackendBytes: 0\n"),
            "spec.etcd.quotaBackendBytes",
            "positive",
        ),
        (
            "owned flag",
            spec("  etcd:\n    extraFlags: [\"--data-dir=/tmp/x\"]\n"),
            "spec.etcd.extraFlags[0]",
            "set by the operator",
        ),
        (
            "malformed flag",
            spec("  etcd:\n    extraFlags: [\"--log-level=info\", \"debug\"]\n"),
            "spec.etcd.extraFlags[1]",
            "--name=value",
        ),
        (
            "storage size not a quantity",
            spec("  storage:\n    size: lots\n"),
            "spec.storage.size",
            "\"lots\" is not a Kubernetes quantity",
        ),
        (
            "memory limit not a quantity",
            spec("  resources:\n    limits:\n      memory: lots\n"),
            "spec.resources.limits.memory",
            "\"lots\" is not a Kubernetes quantity",
        ),
        (
            "flag removed in 3.7",
            spec("  version: 3.7.3\n  etcd:\n    extraFlags: [\"--enable-v2=false\"]\n"),
            "spec.etcd.extraFlags[0]",
            "etcd 3.7.3 does not know the flag --enable-v2 (only etcd 3.5 has it)",
        ),
        (
            "misspelt field",
            spec("  replica: 3\n"),
            "spec.replica",
            "unknown field",
        ),
        (
            "wrong type",
            spec("  replicas: three\n"),
            "spec.replicas",
            "schema",
        ),
        (
            "wrong kind",
            HEAD.replace("kind: EtcdCluster", "kind: Pod"),
            "kind",
            "EtcdCluster",
        ),
        (
            "wrong apiVersion",
            HEAD.replace("etcd.operator.dev/v1alpha1", "v1"),
            "apiVersion",
            "etcd.operator.dev/v1alpha1",
        ),
        (
            "no name",
            "apiVersion: etcd.operator.dev/v1alpha1\nkind: EtcdCluster\nmetadata: {}\n".to_owned(),
            "metadata.name",
            "required",
        ),
        (
            "bad name",
            HEAD.replace("name: bad", "name: Bad_Name"),
            "metadata.name",
            "DNS label",
        ),
        (
            "malformed YAML",
            format!("{HEAD}spec: [\n"),
            "",
            "not valid YAML",
        ),
        (
            "duplicate cluster",
            format!("{HEAD}---\n{HEAD}"),
            "metadata.name",
            "defined twice",
        ),
    ];
    assert!(cases.len() >= 10);
    for (what, manifest, field, message) in cases {
        let stderr = refuse(&manifest);
        assert!(
            stderr.contains(field) && stderr.contains(message),
            "{what}: expected {field:?} and {message:?} in: {stderr}"
        );
    }
}

#[test]
fn the_failing_document_is_named() {
    let two = format!(
        "{HEAD}spec:\n  replicas: 1\n---\n{}",
        HEAD.replace("name: bad", "name: other") + "spec:\n  replicas: 12\n"
    );
    let stderr = refuse(&two);
    assert!(
        stderr.contains("(document 2)") && stderr.contains("spec.replicas"),
        "{stderr}"
    );
}

#[test]
fn a_missing_manifest_is_refused() {
    let dir = temp_dir("manifest").expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_etcd-operator"))
        .args(["local", "--manifest"])
        .arg(dir.path().join("nope.yaml"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()
        .expect("run etcd-operator");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("nope.yaml") && stderr.contains("no such file"),
        "{stderr}"
    );
}

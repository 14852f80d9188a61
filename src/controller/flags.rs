//! The etcd flags a member gets from `spec.etcd`, shared by both runtimes (the Kubernetes Pod's
//! command and the local process's arguments).

use crate::api::EtcdOptions;

/// The flags for `opts`: the typed fields first, in a fixed order (`--heartbeat-interval`,
/// `--election-timeout`, `--quota-backend-bytes`, `--snapshot-count`,
/// `--auto-compaction-mode`, `--auto-compaction-retention`, each only when set), then
/// `extraFlags` as given. Pure: the same options always give the same flags, so a hash of them
/// tells whether a member runs with the configuration the spec asks for.
pub fn option_flags(opts: &EtcdOptions) -> Vec<String> {
    let numbers = [
        ("--heartbeat-interval", opts.heartbeat_interval_ms),
        ("--election-timeout", opts.election_timeout_ms),
        ("--quota-backend-bytes", opts.quota_backend_bytes),
        ("--snapshot-count", opts.snapshot_count),
    ];
    let texts = [
        ("--auto-compaction-mode", &opts.auto_compaction_mode),
        (
            "--auto-compaction-retention",
            &opts.auto_compaction_retention,
        ),
    ];
    numbers
        .into_iter()
        .filter_map(|(flag, v)| v.map(|v| format!("{flag}={v}")))
        .chain(
            texts
                .into_iter()
                .filter_map(|(flag, v)| v.as_ref().map(|v| format!("{flag}={v}"))),
        )
        .chain(opts.extra_flags.iter().cloned())
        .collect()
}

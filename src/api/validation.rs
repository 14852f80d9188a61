//! Validation of an [`EtcdClusterSpec`](super::EtcdClusterSpec): pure functions that name the
//! offending field by its path (`spec.etcd.heartbeatIntervalMs`) and say in a sentence what is
//! wrong and what is accepted. The Kubernetes runtime's CEL rules and the local runtime's manifest
//! loader both report these.

use std::fmt;

use super::{EtcdCluster, EtcdClusterSpec};

/// The largest replica count a cluster may ask for.
pub const MAX_REPLICAS: i32 = 9;

/// The longest cluster name: member names add `-<ordinal>` and must stay DNS labels.
pub const MAX_NAME_LEN: usize = 52;

/// etcd flags the operator sets itself; `spec.etcd.extraFlags` may not name them.
pub const OWNED_FLAGS: &[&str] = &[
    "name",
    "data-dir",
    "wal-dir",
    "listen-client-urls",
    "advertise-client-urls",
    "listen-peer-urls",
    "initial-advertise-peer-urls",
    "initial-cluster",
    "initial-cluster-state",
    "initial-cluster-token",
    "discovery",
    "discovery-srv",
    "force-new-cluster",
    "heartbeat-interval",
    "election-timeout",
    "quota-backend-bytes",
    "snapshot-count",
    "auto-compaction-mode",
    "auto-compaction-retention",
];

/// One problem in a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's path, e.g. `spec.replicas`.
    pub path: String,
    /// What is wrong and what is accepted.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

fn err(path: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Whether `s` is an etcd version `major.minor.patch` of plain numbers (a leading `v` allowed).
fn is_version(s: &str) -> bool {
    let text = s.strip_prefix('v').unwrap_or(s);
    let parts: Vec<&str> = text.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 9 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `s` is a duration etcd's periodic retention accepts: a number of hours, or a Go
/// duration such as `1h30m`, `30m`, `45s`.
fn is_retention_duration(s: &str) -> bool {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    let mut rest = s;
    let mut any = false;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let unit = ["ns", "us", "ms", "h", "m", "s"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
        any = true;
    }
    any
}

/// Validates a cluster name (a DNS-1123 label short enough for `<name>-<ordinal>`).
pub fn validate_name(name: &str) -> Vec<FieldError> {
    let path = "metadata.name";
    if name.is_empty() {
        return vec![err(path, "a name is required")];
    }
    let mut out = Vec::new();
    if name.len() > MAX_NAME_LEN {
        out.push(err(
            path,
            format!(
                "{name:?} is {} characters long; at most {MAX_NAME_LEN} are allowed",
                name.len()
            ),
        ));
    }
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ends_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !valid_chars || !ends_ok {
        out.push(err(
            path,
            format!(
                "{name:?} is not a DNS label: use lower-case letters, digits and '-', starting \
                 and ending with a letter or digit"
            ),
        ));
    }
    out
}

/// Validates a spec; an empty list means it is valid.
pub fn validate_spec(spec: &EtcdClusterSpec) -> Vec<FieldError> {
    let mut out = Vec::new();
    if !(1..=MAX_REPLICAS).contains(&spec.replicas) {
        out.push(err(
            "spec.replicas",
            format!(
                "must be between 1 and {MAX_REPLICAS}, not {}",
                spec.replicas
            ),
        ));
    }
    if !is_version(&spec.version) {
        out.push(err(
            "spec.version",
            format!(
                "{:?} is not an etcd version; expected major.minor.patch, e.g. 3.5.16",
                spec.version
            ),
        ));
    }
    let etcd = &spec.etcd;
    let positive = |out: &mut Vec<FieldError>, path: &str, v: Option<i64>| {
        if let Some(v) = v.filter(|v| *v <= 0) {
            out.push(err(path, format!("must be a positive number, not {v}")));
        }
    };
    positive(
        &mut out,
        "spec.etcd.quotaBackendBytes",
        etcd.quota_backend_bytes,
    );
    positive(&mut out, "spec.etcd.snapshotCount", etcd.snapshot_count);
    positive(
        &mut out,
        "spec.etcd.heartbeatIntervalMs",
        etcd.heartbeat_interval_ms,
    );
    positive(
        &mut out,
        "spec.etcd.electionTimeoutMs",
        etcd.election_timeout_ms,
    );
    // etcd's defaults are 100 ms and 1000 ms; the check uses them for a missing side.
    let heartbeat = etcd.heartbeat_interval_ms.unwrap_or(100);
    let election = etcd.election_timeout_ms.unwrap_or(1000);
    if heartbeat > 0 && election > 0 {
        if election < heartbeat.saturating_mul(5) {
            out.push(err(
                "spec.etcd.electionTimeoutMs",
                format!(
                    "must be at least 5 times the heartbeat interval ({heartbeat} ms), not \
                     {election} ms (etcd refuses a smaller ratio)"
                ),
            ));
        }
        if election > 50_000 {
            out.push(err(
                "spec.etcd.electionTimeoutMs",
                format!("must be at most 50000 ms, not {election} ms"),
            ));
        }
    }
    match etcd.auto_compaction_mode.as_deref() {
        None => {}
        Some("periodic") => {
            if let Some(r) = etcd.auto_compaction_retention.as_deref()
                && !is_retention_duration(r)
            {
                out.push(err(
                    "spec.etcd.autoCompactionRetention",
                    format!(
                        "{r:?} is not a duration for periodic compaction; use hours (\"1\") or a \
                         duration such as \"30m\" or \"1h\""
                    ),
                ));
            }
        }
        Some("revision") => {
            if let Some(r) = etcd.auto_compaction_retention.as_deref()
                && !(r.parse::<u64>().is_ok_and(|n| n > 0))
            {
                out.push(err(
                    "spec.etcd.autoCompactionRetention",
                    format!(
                        "{r:?} is not a revision count; revision compaction keeps a positive \
                         number of revisions, e.g. \"10000\""
                    ),
                ));
            }
        }
        Some(other) => out.push(err(
            "spec.etcd.autoCompactionMode",
            format!("{other:?} is not a compaction mode; use \"periodic\" or \"revision\""),
        )),
    }
    if etcd.auto_compaction_retention.is_some() && etcd.auto_compaction_mode.is_none() {
        out.push(err(
            "spec.etcd.autoCompactionMode",
            "is required when autoCompactionRetention is set (\"periodic\" or \"revision\")",
        ));
    }
    for (i, flag) in etcd.extra_flags.iter().enumerate() {
        let path = format!("spec.etcd.extraFlags[{i}]");
        let Some(body) = flag.strip_prefix("--") else {
            out.push(err(
                &path,
                format!("{flag:?} must have the form --name=value"),
            ));
            continue;
        };
        let name = body.split('=').next().unwrap_or_default();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            out.push(err(
                &path,
                format!("{flag:?} must have the form --name=value"),
            ));
        } else if OWNED_FLAGS.contains(&name) {
            let hint = match name {
                "heartbeat-interval" => " (use spec.etcd.heartbeatIntervalMs)",
                "election-timeout" => " (use spec.etcd.electionTimeoutMs)",
                "quota-backend-bytes" => " (use spec.etcd.quotaBackendBytes)",
                "snapshot-count" => " (use spec.etcd.snapshotCount)",
                "auto-compaction-mode" => " (use spec.etcd.autoCompactionMode)",
                "auto-compaction-retention" => " (use spec.etcd.autoCompactionRetention)",
                _ => "",
            };
            out.push(err(
                &path,
                format!("--{name} is set by the operator and may not be given{hint}"),
            ));
        }
    }
    out
}

/// Validates a whole resource: its name and its spec.
pub fn validate_cluster(cluster: &EtcdCluster) -> Vec<FieldError> {
    let mut out = validate_name(cluster.metadata.name.as_deref().unwrap_or_default());
    if let Some(ns) = cluster.metadata.namespace.as_deref() {
        let mut ns_errors = validate_name(ns);
        for e in &mut ns_errors {
            e.path = "metadata.namespace".to_owned();
        }
        out.extend(ns_errors);
    }
    out.extend(validate_spec(&cluster.spec));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults, read as a manifest without a spec would be (so new spec fields need no
    /// change here).
    fn spec() -> EtcdClusterSpec {
        serde_json::from_value(serde_json::json!({})).expect("a spec from defaults")
    }

    fn paths(s: &EtcdClusterSpec) -> Vec<String> {
        validate_spec(s).into_iter().map(|e| e.path).collect()
    }

    #[test]
    fn default_spec_is_valid() {
        assert!(validate_spec(&spec()).is_empty());
    }

    #[test]
    fn each_rule_names_its_field() {
        let mut s = spec();
        s.replicas = 10;
        assert_eq!(paths(&s), ["spec.replicas"]);
        let mut s = spec();
        s.version = "3.5".into();
        assert_eq!(paths(&s), ["spec.version"]);
        let mut s = spec();
        s.etcd.heartbeat_interval_ms = Some(500);
        s.etcd.election_timeout_ms = Some(1000);
        assert_eq!(paths(&s), ["spec.etcd.electionTimeoutMs"]);
        let mut s = spec();
        s.etcd.snapshot_count = Some(0);
        assert_eq!(paths(&s), ["spec.etcd.snapshotCount"]);
        let mut s = spec();
        s.etcd.auto_compaction_mode = Some("weekly".into());
        assert_eq!(paths(&s), ["spec.etcd.autoCompactionMode"]);
        let mut s = spec();
        s.etcd.auto_compaction_mode = Some("revision".into());
        s.etcd.auto_compaction_retention = Some("1h".into());
        assert_eq!(paths(&s), ["spec.etcd.autoCompactionRetention"]);
        let mut s = spec();
        s.etcd.extra_flags = vec!["--data-dir=/x".into(), "--log-level=warn".into()];
        assert_eq!(paths(&s), ["spec.etcd.extraFlags[0]"]);
    }

    #[test]
    fn durations_and_names() {
        assert!(is_retention_duration("1"));
        assert!(is_retention_duration("1h30m"));
        assert!(!is_retention_duration("1x"));
        assert!(!is_retention_duration(""));
        assert!(validate_name("demo").is_empty());
        assert!(!validate_name("Demo").is_empty());
        assert!(!validate_name("-demo").is_empty());
    }
}

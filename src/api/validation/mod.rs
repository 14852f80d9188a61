//! Validation of an [`EtcdClusterSpec`]: pure functions that name the
//! offending field by its path (`spec.etcd.heartbeatIntervalMs`) and say in a sentence what is
//! wrong and what is accepted.
//!
//! These are the same rules the apiserver enforces through the CRD's schema and CEL rules
//! (everything except the transition rules, which compare with the previous object): both are
//! built from the constants in [`super::rules`] (owned flags, patterns, ranges), and
//! `tests/api_crd.rs` feeds one table of specs to the apiserver and to [`validate_spec`] and
//! checks they agree. The local runtime's manifest loader reports these.

use std::fmt;

mod backup;
mod security;

pub use backup::parse_every;
use backup::validate_backup;
pub use security::validate_transition;
use security::{validate_network_policy, validate_security};

use super::quantity::is_quantity;
use super::rules::{
    self, DEFAULT_ELECTION_MS, DEFAULT_HEARTBEAT_MS, DEFRAG_MAX_FRAGMENTATION_PERCENT,
    DEFRAG_MIN_DB_SIZE_BYTES, ELECTION_TIMEOUT_MS, EXTRA_FLAG_MAX_LEN, HEARTBEAT_INTERVAL_MS,
    IMAGE_MAX_LEN, MAX_EXTRA_FLAGS, OWNED_FLAGS, QUOTA_BACKEND_BYTES, REPLICAS, RESERVED_LABELS,
    RETENTION_MAX_LEN, SNAPSHOT_COUNT, TYPED_FLAGS, VERSION_MAX_LEN,
};
use super::{EtcdCluster, EtcdClusterSpec, versions};

/// The largest replica count a cluster may ask for.
pub const MAX_REPLICAS: i32 = REPLICAS.1;

/// The longest cluster name (see [`rules::MAX_NAME_LEN`]).
pub const MAX_NAME_LEN: usize = rules::MAX_NAME_LEN;

/// The prefix of the operator's own labels and annotations.
const RESERVED_PREFIX: &str = "etcd.operator.dev/";
/// The most labels or annotations in `spec.podTemplate`.
const MAX_POD_METADATA: usize = 64;
/// The longest label value the schema allows in `spec.podTemplate.labels`.
const LABEL_VALUE_MAX_LEN: usize = 317;
/// The longest StorageClass or PriorityClass name.
const CLASS_NAME_MAX_LEN: usize = 253;

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

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `s` matches [`rules::VERSION_PATTERN`]: `major.minor.patch` of plain numbers.
fn is_version(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3 && parts.iter().all(|p| all_digits(p))
}

/// Whether `s` matches [`rules::RETENTION_PATTERN`]: a bare number, or a Go duration such as
/// `1h30m`, `30m`, `1.5h`, `45s`.
fn is_retention(s: &str) -> bool {
    if s.is_empty() || all_digits(s) {
        return !s.is_empty();
    }
    let mut rest = s;
    while !rest.is_empty() {
        let int = rest.bytes().take_while(u8::is_ascii_digit).count();
        if int == 0 {
            return false;
        }
        rest = &rest[int..];
        if let Some(frac) = rest.strip_prefix('.') {
            let n = frac.bytes().take_while(u8::is_ascii_digit).count();
            if n == 0 {
                return false;
            }
            rest = &frac[n..];
        }
        match ["ns", "us", "ms", "h", "m", "s"]
            .into_iter()
            .find(|u| rest.starts_with(u))
        {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

/// Whether `flag` matches [`rules::EXTRA_FLAG_PATTERN`]: `--name` or `--name=value`, the name
/// of lower-case letters, digits and '-' (not starting with '-'), the value on one line.
fn is_flag(flag: &str) -> bool {
    let Some(body) = flag.strip_prefix("--") else {
        return false;
    };
    let (name, value) = match body.split_once('=') {
        Some((n, v)) => (n, v),
        None => (body, ""),
    };
    name.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.contains('\n')
}

/// Whether `s` matches [`rules::NAME_PATTERN`] (with `first_digit`, any DNS-1123 label).
fn is_label(s: &str, first_digit: bool) -> bool {
    let inner = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    s.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || (first_digit && b.is_ascii_digit()))
        && s.bytes().last().is_some_and(inner)
        && s.bytes().all(|b| inner(b) || b == b'-')
}

/// Validates a cluster name (the CRD's name rule: at most [`MAX_NAME_LEN`] characters of
/// [`rules::NAME_PATTERN`], short enough for `<name>-<ordinal>` and `<name>-client`).
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
    if !is_label(name, false) {
        out.push(err(
            path,
            format!(
                "{name:?} is not a DNS label starting with a letter: use lower-case letters, \
                 digits and '-', starting with a letter and ending with a letter or digit"
            ),
        ));
    }
    out
}

fn check_range(out: &mut Vec<FieldError>, path: &str, v: Option<i64>, (min, max): (i64, i64)) {
    if let Some(v) = v.filter(|v| !(min..=max).contains(v)) {
        let what = if v <= 0 {
            "a positive number"
        } else {
            "a number"
        };
        out.push(err(
            path,
            format!("must be {what} from {min} to {max}, not {v}"),
        ));
    }
}

fn check_len(out: &mut Vec<FieldError>, path: &str, v: Option<&str>, min: usize, max: usize) {
    if let Some(v) = v {
        let n = v.chars().count();
        if n < min || n > max {
            out.push(err(
                path,
                format!("must be {min} to {max} characters long, not {n}"),
            ));
        }
    }
}

/// The problems of `spec.networkPolicy` alone (the pass refuses a spec with any: the
/// apiserver's admission cannot check label keys).
pub fn network_policy_errors(spec: &EtcdClusterSpec) -> Vec<FieldError> {
    let mut out = Vec::new();
    validate_network_policy(spec, &mut out);
    out
}

/// Validates a spec; an empty list means it is valid.
pub fn validate_spec(spec: &EtcdClusterSpec) -> Vec<FieldError> {
    let mut out = Vec::new();
    if !(REPLICAS.0..=REPLICAS.1).contains(&spec.replicas) {
        out.push(err(
            "spec.replicas",
            format!(
                "must be between {} and {}, not {}",
                REPLICAS.0, REPLICAS.1, spec.replicas
            ),
        ));
    }
    if spec.version.len() > VERSION_MAX_LEN || !is_version(&spec.version) {
        out.push(err(
            "spec.version",
            format!(
                "{:?} is not an etcd version; expected major.minor.patch of plain numbers, e.g. \
                 {}",
                spec.version,
                super::DEFAULT_VERSION
            ),
        ));
    }
    for problem in versions::check_extra_flags(&spec.version, &spec.etcd.extra_flags) {
        out.push(err(
            &format!("spec.etcd.extraFlags[{}]", problem.index),
            problem.message,
        ));
    }
    validate_quantities(spec, &mut out);
    check_len(
        &mut out,
        "spec.image",
        spec.image.as_deref(),
        1,
        IMAGE_MAX_LEN,
    );
    validate_storage(spec, &mut out);
    validate_pod_template(spec, &mut out);
    validate_etcd(spec, &mut out);
    validate_maintenance(spec, &mut out);
    validate_backup(spec, &mut out);
    validate_security(spec, &mut out);
    validate_network_policy(spec, &mut out);
    out
}

fn quantity_error(path: &str, value: &str) -> FieldError {
    err(
        path,
        format!(
            "{value:?} is not a Kubernetes quantity; use a number with an optional suffix such as \
             8Gi, 500Mi, 500m or 1.5"
        ),
    )
}

/// `spec.storage.size` and the quantities of `spec.resources` ([`rules::QUANTITY_RULE`]).
fn validate_quantities(spec: &EtcdClusterSpec, out: &mut Vec<FieldError>) {
    if !is_quantity(&spec.storage.size.0) {
        out.push(quantity_error("spec.storage.size", &spec.storage.size.0));
    }
    let Some(resources) = &spec.resources else {
        return;
    };
    for (field, map) in [
        ("limits", &resources.limits),
        ("requests", &resources.requests),
    ] {
        if map.as_ref().is_some_and(|m| m.len() > rules::MAX_RESOURCES) {
            out.push(err(
                &format!("spec.resources.{field}"),
                format!("at most {} entries are allowed", rules::MAX_RESOURCES),
            ));
        }
        for (key, q) in map.iter().flatten() {
            if q.0.chars().count() > rules::QUANTITY_MAX_LEN {
                out.push(err(
                    &format!("spec.resources.{field}.{key}"),
                    format!(
                        "must be at most {} characters long",
                        rules::QUANTITY_MAX_LEN
                    ),
                ));
            } else if !is_quantity(&q.0) {
                out.push(quantity_error(
                    &format!("spec.resources.{field}.{key}"),
                    &q.0,
                ));
            }
        }
    }
}

fn validate_maintenance(spec: &EtcdClusterSpec, out: &mut Vec<FieldError>) {
    let defrag = &spec.maintenance.defragmentation;
    check_range(
        out,
        "spec.maintenance.defragmentation.minDbSizeBytes",
        Some(defrag.min_db_size_bytes),
        DEFRAG_MIN_DB_SIZE_BYTES,
    );
    let (min, max) = DEFRAG_MAX_FRAGMENTATION_PERCENT;
    check_range(
        out,
        "spec.maintenance.defragmentation.maxFragmentationPercent",
        Some(i64::from(defrag.max_fragmentation_percent)),
        (i64::from(min), i64::from(max)),
    );
    let every = &spec.maintenance.corruption_check.every;
    let path = "spec.maintenance.corruptionCheck.every";
    match parse_every(every) {
        _ if every.len() > super::rules::CORRUPTION_CHECK_EVERY_MAX_LEN => out.push(err(
            path,
            format!(
                "{every:?} is longer than {} characters",
                super::rules::CORRUPTION_CHECK_EVERY_MAX_LEN
            ),
        )),
        None => out.push(err(
            path,
            format!(
                "{every:?} is not a duration; expected hours, minutes and seconds such as 5m, \
                 1h or 30s"
            ),
        )),
        Some(d) if d.as_secs() < super::rules::CORRUPTION_CHECK_EVERY_MIN_SECS => {
            out.push(err(path, super::rules::corruption_check_every_message()));
        }
        Some(_) => {}
    }
}

fn validate_storage(spec: &EtcdClusterSpec, out: &mut Vec<FieldError>) {
    let storage = &spec.storage;
    check_len(
        out,
        "spec.storage.storageClassName",
        storage.storage_class_name.as_deref(),
        1,
        CLASS_NAME_MAX_LEN,
    );
    if storage.ephemeral && storage.storage_class_name.is_some() {
        out.push(err(
            "spec.storage.storageClassName",
            rules::STORAGE_EPHEMERAL_CLASS_MESSAGE,
        ));
    }
}

fn validate_pod_template(spec: &EtcdClusterSpec, out: &mut Vec<FieldError>) {
    let Some(t) = &spec.pod_template else {
        return;
    };
    if t.labels.len() > MAX_POD_METADATA {
        out.push(err(
            "spec.podTemplate.labels",
            format!("at most {MAX_POD_METADATA} labels are allowed"),
        ));
    }
    for (k, v) in &t.labels {
        if RESERVED_LABELS.contains(&k.as_str()) || k.starts_with(RESERVED_PREFIX) {
            out.push(err("spec.podTemplate.labels", rules::LABELS_MESSAGE));
        }
        check_len(
            out,
            &format!("spec.podTemplate.labels[{k}]"),
            Some(v),
            0,
            LABEL_VALUE_MAX_LEN,
        );
    }
    if t.annotations.len() > MAX_POD_METADATA {
        out.push(err(
            "spec.podTemplate.annotations",
            format!("at most {MAX_POD_METADATA} annotations are allowed"),
        ));
    }
    if t.annotations.keys().any(|k| k.starts_with(RESERVED_PREFIX)) {
        out.push(err(
            "spec.podTemplate.annotations",
            rules::ANNOTATIONS_MESSAGE,
        ));
    }
    check_len(
        out,
        "spec.podTemplate.priorityClassName",
        t.priority_class_name.as_deref(),
        1,
        CLASS_NAME_MAX_LEN,
    );
}

fn validate_etcd(spec: &EtcdClusterSpec, out: &mut Vec<FieldError>) {
    let etcd = &spec.etcd;
    check_range(
        out,
        "spec.etcd.quotaBackendBytes",
        etcd.quota_backend_bytes,
        QUOTA_BACKEND_BYTES,
    );
    check_range(
        out,
        "spec.etcd.snapshotCount",
        etcd.snapshot_count,
        SNAPSHOT_COUNT,
    );
    check_range(
        out,
        "spec.etcd.heartbeatIntervalMs",
        etcd.heartbeat_interval_ms,
        HEARTBEAT_INTERVAL_MS,
    );
    check_range(
        out,
        "spec.etcd.electionTimeoutMs",
        etcd.election_timeout_ms,
        ELECTION_TIMEOUT_MS,
    );
    // etcd's defaults stand in for a missing side, as in the CRD's rule.
    let heartbeat = etcd.heartbeat_interval_ms.unwrap_or(DEFAULT_HEARTBEAT_MS);
    let election = etcd.election_timeout_ms.unwrap_or(DEFAULT_ELECTION_MS);
    if election < heartbeat.saturating_mul(5) {
        out.push(err(
            "spec.etcd.electionTimeoutMs",
            format!(
                "must be at least 5 times the heartbeat interval ({heartbeat} ms), not \
                 {election} ms (etcd refuses a smaller ratio)"
            ),
        ));
    }
    let mode = etcd.auto_compaction_mode.as_deref();
    if let Some(other) = mode.filter(|m| !["periodic", "revision"].contains(m)) {
        out.push(err(
            "spec.etcd.autoCompactionMode",
            format!("{other:?} is not a compaction mode; use \"periodic\" or \"revision\""),
        ));
    }
    if let Some(r) = etcd.auto_compaction_retention.as_deref() {
        let len = r.chars().count();
        if len == 0 || len > RETENTION_MAX_LEN || !is_retention(r) {
            out.push(err(
                "spec.etcd.autoCompactionRetention",
                format!(
                    "{r:?} is not a retention; use a number (hours for periodic, revisions for \
                     revision) or a duration such as \"30m\" or \"1h\""
                ),
            ));
        } else if mode == Some("revision") && !all_digits(r) {
            out.push(err(
                "spec.etcd.autoCompactionRetention",
                format!(
                    "{r:?} is not a revision count; revision compaction keeps a number of \
                     revisions, e.g. \"10000\""
                ),
            ));
        }
    }
    if etcd.extra_flags.len() > MAX_EXTRA_FLAGS {
        out.push(err(
            "spec.etcd.extraFlags",
            format!("at most {MAX_EXTRA_FLAGS} flags are allowed"),
        ));
    }
    for (i, flag) in etcd.extra_flags.iter().enumerate() {
        let path = format!("spec.etcd.extraFlags[{i}]");
        let name = flag.split('=').next().unwrap_or_default();
        if flag.chars().count() > EXTRA_FLAG_MAX_LEN {
            out.push(err(
                &path,
                format!("must be at most {EXTRA_FLAG_MAX_LEN} characters long"),
            ));
        } else if !is_flag(flag) {
            out.push(err(
                &path,
                format!("{flag:?} must have the form --name=value or --name"),
            ));
        } else if OWNED_FLAGS.contains(&name) {
            out.push(err(
                &path,
                format!("{name} is set by the operator and may not be given"),
            ));
        } else if TYPED_FLAGS.contains(&name) {
            out.push(err(
                &path,
                format!("{name} has a field in spec.etcd; use the field"),
            ));
        }
    }
}

/// Validates a whole resource: its name and its spec (a namespace must be a DNS label).
pub fn validate_cluster(cluster: &EtcdCluster) -> Vec<FieldError> {
    let mut out = validate_name(cluster.metadata.name.as_deref().unwrap_or_default());
    if let Some(ns) = cluster.metadata.namespace.as_deref()
        && (ns.len() > 63 || !is_label(ns, true))
    {
        out.push(err(
            "metadata.namespace",
            format!("{ns:?} is not a DNS label of at most 63 characters"),
        ));
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
        let mut s = spec();
        s.maintenance.defragmentation.max_fragmentation_percent = 100;
        assert_eq!(
            paths(&s),
            ["spec.maintenance.defragmentation.maxFragmentationPercent"]
        );
        let mut s = spec();
        s.maintenance.corruption_check.every = "5s".to_owned();
        assert_eq!(paths(&s), ["spec.maintenance.corruptionCheck.every"]);
        s.maintenance.corruption_check.every = "often".to_owned();
        assert_eq!(paths(&s), ["spec.maintenance.corruptionCheck.every"]);
        s.maintenance.corruption_check.every = "30s".to_owned();
        s.maintenance.defragmentation.min_db_size_bytes = -1;
        assert_eq!(
            paths(&s),
            ["spec.maintenance.defragmentation.minDbSizeBytes"]
        );
    }

    #[test]
    fn quantities() {
        let mut s = spec();
        s.storage.size = k8s_openapi::apimachinery::pkg::api::resource::Quantity("lots".into());
        assert_eq!(paths(&s), ["spec.storage.size"]);
        let mut s = spec();
        s.resources = serde_json::from_value(
            serde_json::json!({"limits": {"memory": "lots", "cpu": "1"}, "requests": {"cpu": "x"}}),
        )
        .expect("resources");
        assert_eq!(
            paths(&s),
            [
                "spec.resources.limits.memory",
                "spec.resources.requests.cpu"
            ]
        );
    }

    #[test]
    fn extra_flags_follow_the_version() {
        let mut s = spec();
        s.version = "3.7.3".into();
        s.etcd.extra_flags = vec!["--log-level=warn".into(), "--enable-v2=true".into()];
        assert_eq!(paths(&s), ["spec.etcd.extraFlags[1]"]);
        s.version = "3.5.35".into();
        assert!(paths(&s).is_empty());
    }

    #[test]
    fn durations_and_names() {
        assert!(is_retention("1"));
        assert!(is_retention("1h30m"));
        assert!(is_retention("1.5h"));
        assert!(is_retention("10ms"));
        assert!(!is_retention("1x"));
        assert!(!is_retention("h"));
        assert!(!is_retention(""));
        assert!(!validate_name("1abc").is_empty());
        assert!(!validate_name(&"a".repeat(MAX_NAME_LEN + 1)).is_empty());
        assert!(validate_name("demo").is_empty());
        assert!(!validate_name("Demo").is_empty());
        assert!(!validate_name("-demo").is_empty());
    }
}

//! The rules of `spec.backup` and `spec.bootstrap` as field-path checks (the CRD's schema
//! bounds and the CEL rules of [`super::rules`]).

use super::rules;
use super::{EtcdClusterSpec, FieldError, check_len, check_range, err};

/// Parses `spec.backup.every` ([`rules::BACKUP_EVERY_PATTERN`]: hours, minutes and seconds in
/// that order, each optional, at least one present, at most six digits each).
pub fn parse_every(s: &str) -> Option<std::time::Duration> {
    let mut rest = s;
    let mut secs = 0u64;
    let mut seen = false;
    for (unit, factor) in [('h', 3600u64), ('m', 60), ('s', 1)] {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 6 || !rest[digits..].starts_with(unit) {
            continue;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        secs += n * factor;
        rest = &rest[digits + 1..];
        seen = true;
    }
    (seen && rest.is_empty()).then(|| std::time::Duration::from_secs(secs))
}

pub(super) fn validate_backup(spec: &EtcdClusterSpec, out: &mut Vec<FieldError>) {
    if let Some(b) = &spec.backup {
        let path = "spec.backup.every";
        match parse_every(&b.every) {
            _ if b.every.len() > rules::BACKUP_EVERY_MAX_LEN => out.push(err(
                path,
                format!(
                    "{:?} is longer than {} characters",
                    b.every,
                    rules::BACKUP_EVERY_MAX_LEN
                ),
            )),
            None => out.push(err(
                path,
                format!(
                    "{:?} is not a duration; expected hours, minutes and seconds such as 6h, \
                     30m, 1h30m or 45s",
                    b.every
                ),
            )),
            Some(d) if d.as_secs() < rules::BACKUP_EVERY_MIN_SECS => {
                out.push(err(path, rules::backup_every_message()));
            }
            Some(_) => {}
        }
        check_range(
            out,
            "spec.backup.keep",
            Some(i64::from(b.keep)),
            (
                i64::from(rules::BACKUP_KEEP.0),
                i64::from(rules::BACKUP_KEEP.1),
            ),
        );
        check_len(
            out,
            "spec.backup.directory",
            b.directory.as_deref(),
            1,
            rules::PATH_MAX_LEN,
        );
        if b.directory.is_some() && b.destination.is_some() {
            out.push(err(
                "spec.backup.directory",
                rules::BACKUP_DIRECTORY_OR_DESTINATION_MESSAGE,
            ));
        }
        if let Some(d) = &b.destination {
            validate_destination(d, "spec.backup.destination", out);
        }
        if let Some(e) = &b.encryption {
            check_secret_name(out, "spec.backup.encryption.keySecret", &e.key_secret);
        }
        if let Some(v) = &b.verify
            && !(rules::VERIFY_EVERY_NTH.0..=rules::VERIFY_EVERY_NTH.1).contains(&v.every_nth)
        {
            out.push(err(
                "spec.backup.verify.everyNth",
                format!(
                    "{} is out of range: {}",
                    v.every_nth,
                    rules::VERIFY_EVERY_NTH_MESSAGE
                ),
            ));
        }
    }
    if let Some(r) = spec.bootstrap.as_ref().and_then(|b| b.restore.as_ref()) {
        validate_restore(r, out);
    }
}

/// `spec.bootstrap.restore`: a file or a store ([`rules::RESTORE_ONE_SOURCE_RULE`] and the
/// rules after it), the store's fields as in `spec.backup`.
fn validate_restore(r: &crate::api::RestoreSpec, out: &mut Vec<FieldError>) {
    let base = "spec.bootstrap.restore";
    check_len(
        out,
        &format!("{base}.path"),
        r.path.as_deref(),
        1,
        rules::PATH_MAX_LEN,
    );
    if r.path.is_some() == r.destination.is_some() {
        out.push(err(base, rules::RESTORE_ONE_SOURCE_MESSAGE));
    }
    if r.destination.is_none()
        && (r.object.is_some() || r.cluster.is_some() || r.encryption.is_some())
    {
        out.push(err(base, rules::RESTORE_STORE_FIELDS_MESSAGE));
    }
    if r.object.is_some() && r.cluster.is_some() {
        out.push(err(base, rules::RESTORE_OBJECT_OR_CLUSTER_MESSAGE));
    }
    check_len(
        out,
        &format!("{base}.object"),
        r.object.as_deref(),
        1,
        rules::OBJECT_NAME_MAX_LEN,
    );
    check_len(out, &format!("{base}.cluster"), r.cluster.as_deref(), 1, 63);
    if let Some(d) = &r.destination {
        validate_destination(d, &format!("{base}.destination"), out);
    }
    if let Some(e) = &r.encryption {
        check_secret_name(out, &format!("{base}.encryption.keySecret"), &e.key_secret);
    }
}

/// Whether `s` matches [`rules::SECRET_NAME_PATTERN`] (a DNS subdomain).
fn is_subdomain(s: &str) -> bool {
    let inner = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    s.bytes().next().is_some_and(inner)
        && s.bytes().last().is_some_and(inner)
        && s.bytes().all(|b| inner(b) || b == b'-' || b == b'.')
}

fn check_secret_name(out: &mut Vec<FieldError>, path: &str, name: &str) {
    let n = name.chars().count();
    if n == 0 || n > rules::SECRET_NAME_MAX_LEN || !is_subdomain(name) {
        out.push(err(
            path,
            format!(
                "{name:?} is not a Secret name: at most {} lower-case letters, digits, '-' and \
                 '.', starting and ending with a letter or digit",
                rules::SECRET_NAME_MAX_LEN
            ),
        ));
    }
}

/// Whether `s` matches [`rules::ENDPOINT_PATTERN`]: `http://` or `https://` and no whitespace.
fn is_endpoint(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.contains([' ', '\t', '\n', '\r', '\x0c']))
}

fn check_endpoint(out: &mut Vec<FieldError>, path: &str, endpoint: Option<&str>) {
    let Some(e) = endpoint else {
        return;
    };
    let n = e.chars().count();
    if n == 0 || n > rules::ENDPOINT_MAX_LEN || !is_endpoint(e) {
        out.push(err(
            path,
            format!(
                "{e:?} is not an endpoint URL: use http:// or https:// and a host, at most {} \
                 characters",
                rules::ENDPOINT_MAX_LEN
            ),
        ));
    }
}

/// `spec.backup.destination`: exactly one store, its fields within bounds
/// ([`rules::BACKUP_ONE_DESTINATION_RULE`], [`rules::BACKUP_LOCAL_CREDENTIALS_RULE`]).
fn validate_destination(d: &crate::api::BackupDestination, base: &str, out: &mut Vec<FieldError>) {
    let stores = [
        d.s3.is_some(),
        d.gcs.is_some(),
        d.azure.is_some(),
        d.local.is_some(),
    ];
    if stores.iter().filter(|s| **s).count() != 1 {
        out.push(err(base, rules::BACKUP_ONE_DESTINATION_MESSAGE));
    }
    if let Some(name) = &d.credentials_secret {
        check_secret_name(out, &format!("{base}.credentialsSecret"), name);
        if d.local.is_some() {
            out.push(err(
                &format!("{base}.credentialsSecret"),
                rules::BACKUP_LOCAL_CREDENTIALS_MESSAGE,
            ));
        }
    }
    let bucket = |out: &mut Vec<FieldError>, path: String, v: &str| {
        check_len(out, &path, Some(v), 1, rules::BUCKET_MAX_LEN);
    };
    let prefix = |out: &mut Vec<FieldError>, path: String, v: Option<&str>| {
        check_len(out, &path, v, 0, rules::PREFIX_MAX_LEN);
    };
    if let Some(s3) = &d.s3 {
        bucket(out, format!("{base}.s3.bucket"), &s3.bucket);
        prefix(out, format!("{base}.s3.prefix"), s3.prefix.as_deref());
        check_endpoint(out, &format!("{base}.s3.endpoint"), s3.endpoint.as_deref());
        check_len(
            out,
            &format!("{base}.s3.region"),
            s3.region.as_deref(),
            1,
            64,
        );
    }
    if let Some(gcs) = &d.gcs {
        bucket(out, format!("{base}.gcs.bucket"), &gcs.bucket);
        prefix(out, format!("{base}.gcs.prefix"), gcs.prefix.as_deref());
        check_endpoint(
            out,
            &format!("{base}.gcs.endpoint"),
            gcs.endpoint.as_deref(),
        );
    }
    if let Some(az) = &d.azure {
        bucket(out, format!("{base}.azure.container"), &az.container);
        prefix(out, format!("{base}.azure.prefix"), az.prefix.as_deref());
        check_len(
            out,
            &format!("{base}.azure.account"),
            az.account.as_deref(),
            1,
            64,
        );
        check_endpoint(
            out,
            &format!("{base}.azure.endpoint"),
            az.endpoint.as_deref(),
        );
    }
    if let Some(local) = &d.local {
        check_len(
            out,
            &format!("{base}.local.directory"),
            Some(&local.directory),
            1,
            rules::PATH_MAX_LEN,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults, read as a manifest without a spec would be.
    fn spec() -> EtcdClusterSpec {
        serde_json::from_value(serde_json::json!({})).expect("a spec from defaults")
    }

    fn paths(s: &EtcdClusterSpec) -> Vec<String> {
        super::super::validate_spec(s)
            .into_iter()
            .map(|e| e.path)
            .collect()
    }

    #[test]
    fn backup_fields() {
        use crate::api::{BackupSpec, BootstrapSpec, RestoreSpec};
        use std::time::Duration;
        assert_eq!(parse_every("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_every("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_every("1h30m15s"), Some(Duration::from_secs(5415)));
        assert_eq!(parse_every("45s"), Some(Duration::from_secs(45)));
        for bad in ["", "30", "m", "1m1h", "1.5h", "1d", "1234567s", "30m "] {
            assert_eq!(parse_every(bad), None, "{bad:?}");
        }
        let backup = |every: &str, keep: i32| BackupSpec {
            every: every.into(),
            keep,
            directory: None,
            destination: None,
            encryption: None,
            verify: None,
        };
        let mut s = spec();
        s.backup = Some(backup("10s", 1));
        assert!(paths(&s).is_empty());
        s.backup = Some(backup("9s", 5));
        assert_eq!(paths(&s), ["spec.backup.every"]);
        s.backup = Some(backup("every hour", 5));
        assert_eq!(paths(&s), ["spec.backup.every"]);
        s.backup = Some(backup("1h", 0));
        assert_eq!(paths(&s), ["spec.backup.keep"]);
        s.backup = Some(backup("1h", 1001));
        assert_eq!(paths(&s), ["spec.backup.keep"]);
        s.backup = Some(BackupSpec {
            directory: Some(String::new()),
            ..backup("1h", 5)
        });
        assert_eq!(paths(&s), ["spec.backup.directory"]);
        for (n, ok) in [
            (0, true),
            (1, true),
            (1000, true),
            (-1, false),
            (1001, false),
        ] {
            s.backup = Some(BackupSpec {
                verify: Some(crate::api::BackupVerify { every_nth: n }),
                ..backup("1h", 5)
            });
            let want: &[&str] = if ok {
                &[]
            } else {
                &["spec.backup.verify.everyNth"]
            };
            assert_eq!(paths(&s), want, "everyNth {n}");
        }
        let mut s = spec();
        s.bootstrap = Some(BootstrapSpec {
            restore: Some(RestoreSpec {
                path: Some(String::new()),
                ..RestoreSpec::default()
            }),
        });
        assert_eq!(paths(&s), ["spec.bootstrap.restore.path"]);
    }

    #[test]
    fn backup_destinations() {
        let with = |backup: serde_json::Value| -> Vec<String> {
            let s: EtcdClusterSpec =
                serde_json::from_value(serde_json::json!({ "backup": backup })).expect("spec");
            paths(&s)
        };
        let s3 = serde_json::json!({"bucket": "b", "endpoint": "http://127.0.0.1:9000"});
        assert!(with(serde_json::json!({"every": "1h", "destination": {"s3": s3}})).is_empty());
        assert_eq!(
            with(serde_json::json!({"every": "1h", "destination": {}})),
            ["spec.backup.destination"]
        );
        assert_eq!(
            with(serde_json::json!({"every": "1h", "destination":
                {"s3": s3, "gcs": {"bucket": "g"}}})),
            ["spec.backup.destination"]
        );
        assert_eq!(
            with(serde_json::json!({"every": "1h", "directory": "/b",
                "destination": {"local": {"directory": "/c"}}})),
            ["spec.backup.directory"]
        );
        assert_eq!(
            with(serde_json::json!({"every": "1h", "destination":
                {"local": {"directory": "/c"}, "credentialsSecret": "creds"}})),
            ["spec.backup.destination.credentialsSecret"]
        );
        assert_eq!(
            with(serde_json::json!({"every": "1h", "destination":
                {"s3": {"bucket": "b", "endpoint": "ftp://x"}, "credentialsSecret": "Creds"}})),
            [
                "spec.backup.destination.credentialsSecret",
                "spec.backup.destination.s3.endpoint"
            ]
        );
        assert_eq!(
            with(serde_json::json!({"every": "1h", "destination":
                {"azure": {"container": "", "account": ""}}, "encryption": {"keySecret": "-k"}})),
            [
                "spec.backup.destination.azure.container",
                "spec.backup.destination.azure.account",
                "spec.backup.encryption.keySecret"
            ]
        );
        assert!(is_endpoint("https://s3.example.com:9000/x"));
        assert!(!is_endpoint("http://"));
        assert!(!is_endpoint("http://a b"));
        assert!(is_subdomain("backup-creds.v1"));
        assert!(!is_subdomain("backup_creds"));
    }
}

//! The flag tables of `etcd_operator::api::versions` against the real etcd 3.5.35, 3.6.16 and
//! 3.7.3 binaries: every name the tables mention is known to a binary exactly when the table
//! says so (etcd parses all flags before `--version` prints, and an unknown one fails with
//! "flag provided but not defined"), and every renamed flag, written by `render_flags` for a
//! version, is accepted by that version's binary with a value.

mod support;

use std::collections::BTreeSet;
use std::process::Command;

use etcd_operator::api::versions::{
    RENAMES, Replacement, SUPPORTED_LINES, Version, accepted_flags, flag_known, render_flags,
};
use support::bins::{EtcdVersion, etcd_tool};

const VERSIONS: [EtcdVersion; 3] = [EtcdVersion::V3_5_35, EtcdVersion::V3_6, EtcdVersion::V3_7];

/// Runs `etcd --version <args>`: Ok when etcd parsed every flag, Err with its first line when not.
fn parse(v: EtcdVersion, args: &[String]) -> Result<(), String> {
    let etcd = etcd_tool(v, "etcd").expect("etcd binary");
    let out = Command::new(etcd)
        .arg("--version")
        .args(args)
        .output()
        .expect("run etcd");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() && text.contains("etcd Version:") {
        Ok(())
    } else {
        Err(text.lines().next().unwrap_or_default().to_owned())
    }
}

fn version(v: EtcdVersion) -> Version {
    v.version_string().parse().expect("a version")
}

/// Every flag name the tables mention, and a few they do not.
fn names() -> BTreeSet<&'static str> {
    let mut all: BTreeSet<&'static str> = SUPPORTED_LINES
        .iter()
        .flat_map(|l| accepted_flags(*l))
        .collect();
    for r in &RENAMES {
        all.insert(r.experimental);
        if let Replacement::Flag(f) = r.promoted {
            all.insert(f);
        }
    }
    all.extend([
        "--no-such-flag",
        "--experimental-max-learners",
        "--enable-grpc-gateway",
    ]);
    all
}

#[test]
fn known_flags_match_the_binaries() {
    let mut wrong = Vec::new();
    for v in VERSIONS {
        for name in names() {
            // A bare flag: a boolean takes it, a valued flag fails with "needs an argument" —
            // either way it is defined; only an unknown name says "not defined".
            let Err(first) = parse(v, &[name.to_owned()]) else {
                if flag_known(version(v), name) != Some(true) {
                    wrong.push(format!(
                        "{}: {name} is known to the binary",
                        v.version_string()
                    ));
                }
                continue;
            };
            let binary_knows = !first.contains("provided but not defined");
            if flag_known(version(v), name) != Some(binary_knows) {
                wrong.push(format!(
                    "{}: {name}: binary knows it: {binary_knows} ({first})",
                    v.version_string()
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the tables and the binaries disagree:\n{}",
        wrong.join("\n")
    );
}

/// A plausible value for a renamed flag.
fn value_for(name: &str) -> &'static str {
    if name.ends_with("-time") || name.ends_with("-interval") || name.ends_with("-duration") {
        "2s"
    } else if name.contains("address")
        || name.contains("service-name")
        || name.contains("instance-id")
    {
        "x"
    } else if name.ends_with("-limit")
        || name.ends_with("-entries")
        || name.ends_with("-megabytes")
        || name.ends_with("-rate")
    {
        "100"
    } else {
        "true"
    }
}

#[test]
fn renamed_flags_render_to_what_each_version_parses() {
    let mut wrong = Vec::new();
    for v in VERSIONS {
        for r in &RENAMES {
            for given in [
                Some(r.experimental),
                match r.promoted {
                    Replacement::Flag(f) => Some(f),
                    Replacement::Gate(_) => None,
                },
            ]
            .into_iter()
            .flatten()
            {
                let flag = format!("{given}={}", value_for(r.experimental));
                let rendered = render_flags(std::slice::from_ref(&flag), version(v));
                // Only flags the version accepts under some name are rendered for it.
                let accepted = accepted_flags(version(v).line()).contains(&given);
                match parse(v, &rendered) {
                    Ok(()) if accepted => {}
                    Err(e) if !accepted => assert!(e.contains("not defined"), "{e}"),
                    result => wrong.push(format!(
                        "{}: {flag} -> {rendered:?}: {result:?} (accepted: {accepted})",
                        v.version_string()
                    )),
                }
            }
        }
        // Gates merged from several flags and a given --feature-gates are one flag etcd parses.
        let merged = render_flags(
            &[
                "--experimental-initial-corrupt-check=true".to_owned(),
                "--experimental-compact-hash-check-enabled".to_owned(),
                "--experimental-watch-progress-notify-interval=5s".to_owned(),
            ],
            version(v),
        );
        if let Err(e) = parse(v, &merged) {
            wrong.push(format!("{}: {merged:?}: {e}", v.version_string()));
        }
    }
    assert!(
        wrong.is_empty(),
        "rendered flags the binaries refuse:\n{}",
        wrong.join("\n")
    );
}

/// The whole command line of a Kubernetes member Pod (the operator's own flags and
/// `spec.etcd`, experimental names given) parses on each version it is written for, and holds
/// only names that version knows.
#[test]
fn member_pod_command_lines_parse_on_each_version() {
    use etcd_operator::controller::validate::member_template;
    use etcd_operator::runtime::kubernetes::objects::{Blueprint, InitialState, member_pod};
    let spec = serde_json::from_value(serde_json::json!({
        "etcd": {
            "quotaBackendBytes": 4294967296_i64,
            "autoCompactionMode": "periodic",
            "autoCompactionRetention": "1h",
            "extraFlags": [
                "--experimental-watch-progress-notify-interval=5s",
                "--experimental-initial-corrupt-check=true",
                "--experimental-compaction-batch-limit=1000",
                "--log-level=warn",
            ],
        },
    }))
    .expect("spec");
    let info = Blueprint {
        name: "demo".into(),
        namespace: "prod".into(),
        uid: "1234-abcd".into(),
        cluster_domain: "cluster.local".into(),
        template: member_template(&spec),
    };
    for v in VERSIONS {
        let pod = member_pod(&info, 1, version(v), &InitialState::New);
        let args = pod
            .spec
            .and_then(|s| s.containers.into_iter().next())
            .and_then(|c| c.args)
            .expect("args");
        for a in &args {
            let name = a.split('=').next().unwrap_or_default();
            assert_eq!(
                flag_known(version(v), name),
                Some(true),
                "{}: {a} in {args:?}",
                v.version_string()
            );
        }
        if let Err(e) = parse(v, &args) {
            panic!("{}: {args:?}: {e}", v.version_string());
        }
    }
}

/// The command line of a TLS member Pod (https URLs, server and peer certificates, client
/// certificate authentication) parses on each version, with only names that version knows.
#[test]
fn tls_member_pod_command_lines_parse_on_each_version() {
    use etcd_operator::controller::validate::member_template;
    use etcd_operator::runtime::kubernetes::objects::{Blueprint, InitialState, member_pod};
    let spec = serde_json::from_value(serde_json::json!({
        "tls": {"client": {"enabled": true}, "peer": {"enabled": true}},
        "auth": {"enabled": true},
    }))
    .expect("spec");
    let info = Blueprint {
        name: "demo".into(),
        namespace: "prod".into(),
        uid: "1234-abcd".into(),
        cluster_domain: "cluster.local".into(),
        template: member_template(&spec),
    };
    for v in VERSIONS {
        let existing = InitialState::Existing(vec![
            ("demo-0".into(), info.peer_url(0)),
            ("demo-1".into(), info.peer_url(1)),
        ]);
        let pod = member_pod(&info, 1, version(v), &existing);
        let args = pod
            .spec
            .and_then(|s| s.containers.into_iter().next())
            .and_then(|c| c.args)
            .expect("args");
        for want in [
            "--listen-client-urls=https://0.0.0.0:2379",
            "--listen-peer-urls=https://0.0.0.0:2380",
            "--listen-metrics-urls=http://0.0.0.0:2381",
            "--advertise-client-urls=https://demo-1.prod.svc.cluster.local:2379",
            "--initial-advertise-peer-urls=https://demo-1.prod.svc.cluster.local:2380",
            "--cert-file=/etc/etcd/tls/server/tls.crt",
            "--key-file=/etc/etcd/tls/server/tls.key",
            "--trusted-ca-file=/etc/etcd/tls/ca/ca.crt",
            "--client-cert-auth=true",
            "--peer-cert-file=/etc/etcd/tls/peer/tls.crt",
            "--peer-key-file=/etc/etcd/tls/peer/tls.key",
            "--peer-trusted-ca-file=/etc/etcd/tls/ca/ca.crt",
            "--peer-client-cert-auth=true",
        ] {
            assert!(args.iter().any(|a| a == want), "{want} not in {args:?}");
        }
        assert!(
            args.iter().any(|a| a.starts_with("--initial-cluster=")
                && a.contains("demo-0=https://demo-0.prod.svc.cluster.local:2380")),
            "{args:?}"
        );
        for a in &args {
            let name = a.split('=').next().unwrap_or_default();
            assert_eq!(
                flag_known(version(v), name),
                Some(true),
                "{}: {a} in {args:?}",
                v.version_string()
            );
        }
        if let Err(e) = parse(v, &args) {
            panic!("{}: {args:?}: {e}", v.version_string());
        }
    }
}

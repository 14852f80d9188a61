//! The flags per etcd line: which names each line knows ([`super::known`]), how 3.6 renamed or
//! promoted 3.5's `--experimental-*` flags (and 3.7 removed the old names), and how a member's
//! command line is rendered for the version it runs.
//!
//! Rendering ([`render_flags`]) picks, for every flag with two names, the one the version
//! prefers: the `--experimental-*` name on 3.5, the promoted name (or a `--feature-gates`
//! entry) on 3.6 and 3.7. Because members are started with the flags rendered for their own
//! version, a rolling upgrade across the rename changes a member's flags in the same restart
//! that changes its version. A flag the target version knows under no name is refused before
//! any member starts with it ([`check_extra_flags`] in `validate_spec`, [`extra_flags_rule`] in
//! the CRD).

use super::known::{COMMON, EXTRA_3_5, EXTRA_3_6, EXTRA_3_7};
use super::{SUPPORTED_LINES, Version, line_of};

/// What a deprecated `--experimental-*` flag became in 3.6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replacement {
    /// A flag of another name taking the same value.
    Flag(&'static str),
    /// A `--feature-gates` entry (`Name=true|false`) taking the flag's boolean value.
    Gate(&'static str),
}

/// A flag 3.6 deprecated and 3.7 removed, and what replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rename {
    /// The `--experimental-*` name (3.5 and 3.6).
    pub experimental: &'static str,
    /// Its replacement (3.6 and later).
    pub promoted: Replacement,
}

const fn flag(experimental: &'static str, promoted: &'static str) -> Rename {
    Rename {
        experimental,
        promoted: Replacement::Flag(promoted),
    }
}

const fn gate(experimental: &'static str, gate: &'static str) -> Rename {
    Rename {
        experimental,
        promoted: Replacement::Gate(gate),
    }
}

/// Every rename, as etcd 3.6.16's `--help` states them ("Deprecated in v3.6 and will be
/// decommissioned in v3.7. Use '...' instead").
pub const RENAMES: [Rename; 23] = [
    flag(
        "--experimental-bootstrap-defrag-threshold-megabytes",
        "--bootstrap-defrag-threshold-megabytes",
    ),
    flag(
        "--experimental-compact-hash-check-time",
        "--compact-hash-check-time",
    ),
    flag(
        "--experimental-compaction-batch-limit",
        "--compaction-batch-limit",
    ),
    flag(
        "--experimental-compaction-sleep-interval",
        "--compaction-sleep-interval",
    ),
    flag("--experimental-corrupt-check-time", "--corrupt-check-time"),
    flag(
        "--experimental-distributed-tracing-address",
        "--distributed-tracing-address",
    ),
    flag(
        "--experimental-distributed-tracing-instance-id",
        "--distributed-tracing-instance-id",
    ),
    flag(
        "--experimental-distributed-tracing-sampling-rate",
        "--distributed-tracing-sampling-rate",
    ),
    flag(
        "--experimental-distributed-tracing-service-name",
        "--distributed-tracing-service-name",
    ),
    flag(
        "--experimental-downgrade-check-time",
        "--downgrade-check-time",
    ),
    flag(
        "--experimental-enable-distributed-tracing",
        "--enable-distributed-tracing",
    ),
    flag("--experimental-memory-mlock", "--memory-mlock"),
    flag(
        "--experimental-peer-skip-client-san-verification",
        "--peer-skip-client-san-verification",
    ),
    flag(
        "--experimental-snapshot-catchup-entries",
        "--snapshot-catchup-entries",
    ),
    flag(
        "--experimental-warning-apply-duration",
        "--warning-apply-duration",
    ),
    flag(
        "--experimental-warning-unary-request-duration",
        "--warning-unary-request-duration",
    ),
    flag(
        "--experimental-watch-progress-notify-interval",
        "--watch-progress-notify-interval",
    ),
    gate(
        "--experimental-initial-corrupt-check",
        "InitialCorruptCheck",
    ),
    gate(
        "--experimental-compact-hash-check-enabled",
        "CompactHashCheck",
    ),
    gate("--experimental-enable-lease-checkpoint", "LeaseCheckpoint"),
    gate(
        "--experimental-enable-lease-checkpoint-persist",
        "LeaseCheckpointPersist",
    ),
    gate(
        "--experimental-stop-grpc-service-on-defrag",
        "StopGRPCServiceOnDefrag",
    ),
    gate(
        "--experimental-txn-mode-write-with-shared-buffer",
        "TxnModeWriteWithSharedBuffer",
    ),
];

const FEATURE_GATES: &str = "--feature-gates";

/// The names a line knows beside [`COMMON`]; `None` for a line without a table.
fn extra(line: (u64, u64)) -> Option<&'static [&'static str]> {
    match line {
        (3, 5) => Some(EXTRA_3_5),
        (3, 6) => Some(EXTRA_3_6),
        (3, 7) => Some(EXTRA_3_7),
        _ => None,
    }
}

fn known_on(line: (u64, u64), name: &str) -> Option<bool> {
    extra(line).map(|extra| COMMON.contains(&name) || extra.contains(&name))
}

/// Whether etcd `version` knows the flag `name` (`--name`) as written; `None` when the
/// operator has no table for its line (versions outside [`SUPPORTED_LINES`]).
pub fn flag_known(version: Version, name: &str) -> Option<bool> {
    known_on(version.line(), name)
}

/// The name of `rename`'s replacement flag (`--feature-gates` for a gate).
fn promoted_flag(rename: &Rename) -> &'static str {
    match rename.promoted {
        Replacement::Flag(f) => f,
        Replacement::Gate(_) => FEATURE_GATES,
    }
}

fn rename_of_experimental(name: &str) -> Option<&'static Rename> {
    RENAMES.iter().find(|r| r.experimental == name)
}

fn rename_of_promoted(name: &str) -> Option<&'static Rename> {
    RENAMES
        .iter()
        .find(|r| matches!(r.promoted, Replacement::Flag(f) if f == name))
}

/// How one flag name is written for a line: as is, under the other name of its rename, or as a
/// feature gate; `None` when the line knows it under no name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spelling {
    AsIs,
    Flag(&'static str),
    Gate(&'static str),
}

fn spelling(line: (u64, u64), name: &str) -> Option<Spelling> {
    let known = |n: &str| known_on(line, n) == Some(true);
    if let Some(r) = rename_of_experimental(name)
        && known(promoted_flag(r))
    {
        // The promoted name wherever the line has it (3.6 still knows the old one, deprecated).
        return Some(match r.promoted {
            Replacement::Flag(f) => Spelling::Flag(f),
            Replacement::Gate(g) => Spelling::Gate(g),
        });
    }
    if known(name) {
        return Some(Spelling::AsIs);
    }
    rename_of_promoted(name)
        .filter(|r| known(r.experimental))
        .map(|r| Spelling::Flag(r.experimental))
}

/// Whether an `extraFlags` entry named `name` is accepted for `version`: the line knows it, or
/// knows its other name (the operator writes that one). Always true for a line without a table.
pub fn flag_accepted(version: Version, name: &str) -> bool {
    extra(version.line()).is_none() || spelling(version.line(), name).is_some()
}

/// Every name [`flag_accepted`] takes for `line` (what the CRD's rule lists), sorted; empty for
/// a line without a table.
pub fn accepted_flags(line: (u64, u64)) -> Vec<&'static str> {
    let Some(extra) = extra(line) else {
        return Vec::new();
    };
    let mut names: Vec<&'static str> = COMMON.iter().chain(extra).copied().collect();
    for r in &RENAMES {
        if spelling(line, r.experimental).is_some() {
            names.push(r.experimental);
        }
        if let Replacement::Flag(f) = r.promoted
            && spelling(line, f).is_some()
        {
            names.push(f);
        }
    }
    names.sort_unstable();
    names.dedup();
    names
}

/// The command line `flags` (`--name=value` or `--name`) written for etcd `version`: renamed
/// flags under the name the version prefers, `--experimental-*` booleans that became feature
/// gates merged into one `--feature-gates` (with any given one) where the first of them stood.
/// Flags the version does not know, and every flag of a line without a table, are kept as
/// given (validation refuses unknown ones before this runs).
pub fn render_flags(flags: &[String], version: Version) -> Vec<String> {
    let line = version.line();
    if extra(line).is_none() {
        return flags.to_vec();
    }
    let mut out = Vec::with_capacity(flags.len());
    let mut gates: Vec<String> = Vec::new();
    let mut gates_at = None;
    for f in flags {
        let (name, value) = match f.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (f.as_str(), None),
        };
        let mut add_gate = |pair: String, out: &Vec<String>| {
            gates_at.get_or_insert(out.len());
            gates.push(pair);
        };
        match spelling(line, name) {
            Some(Spelling::Gate(g)) => add_gate(format!("{g}={}", value.unwrap_or("true")), &out),
            Some(Spelling::AsIs) if name == FEATURE_GATES => {
                for pair in value
                    .unwrap_or_default()
                    .split(',')
                    .filter(|p| !p.is_empty())
                {
                    add_gate(pair.to_owned(), &out);
                }
            }
            Some(Spelling::Flag(other)) => out.push(match value {
                Some(v) => format!("{other}={v}"),
                None => other.to_owned(),
            }),
            Some(Spelling::AsIs) | None => out.push(f.clone()),
        }
    }
    if let Some(at) = gates_at {
        out.insert(at, format!("{FEATURE_GATES}={}", gates.join(",")));
    }
    out
}

/// An `extraFlags` entry the target version does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagProblem {
    /// Its index in `extraFlags`.
    pub index: usize,
    /// What is wrong and what to write instead.
    pub message: String,
}

/// The lines among [`SUPPORTED_LINES`] that know `name` under some name, as `3.6 and 3.7`.
fn lines_knowing(name: &str) -> String {
    let lines: Vec<String> = SUPPORTED_LINES
        .iter()
        .filter(|l| spelling(**l, name).is_some())
        .map(|(a, b)| format!("{a}.{b}"))
        .collect();
    match lines.as_slice() {
        [] => String::new(),
        [one] => format!(" (only etcd {one} has it)"),
        [init @ .., last] => format!(" (only etcd {} and {last} have it)", init.join(", ")),
    }
}

/// The `extraFlags` entries that etcd `version` (a `spec.version` text) knows under no name,
/// with a sentence each. Nothing for a version outside [`SUPPORTED_LINES`] or not of the form
/// `major.minor.patch`, and nothing for entries that are not `--name[=value]` (the pattern
/// reports those).
pub fn check_extra_flags(version: &str, flags: &[String]) -> Vec<FlagProblem> {
    let Some(line) = line_of(version).filter(|l| extra(*l).is_some()) else {
        return Vec::new();
    };
    flags
        .iter()
        .enumerate()
        .filter_map(|(index, f)| {
            let name = f.split('=').next().unwrap_or_default();
            if !name.starts_with("--") || spelling(line, name).is_some() {
                return None;
            }
            let hint = match rename_of_experimental(name).map(|r| r.promoted) {
                Some(Replacement::Flag(p)) => format!("; use {p}"),
                Some(Replacement::Gate(g)) => format!("; use --feature-gates={g}=true"),
                None if name == FEATURE_GATES => {
                    "; etcd 3.5 has no feature gates: use the --experimental-* flag".to_owned()
                }
                None => lines_knowing(name),
            };
            Some(FlagProblem {
                index,
                message: format!(
                    "etcd {version} does not know the flag {name}{hint}; the operator writes the \
                     --experimental-* names on 3.5 and the promoted names on 3.6 and 3.7 for you"
                ),
            })
        })
        .collect()
}

/// CEL over the spec: the version text is on `line` (by pattern: no number is read, so nothing
/// overflows).
fn cel_spec_on_line(line: (u64, u64)) -> String {
    format!(
        "self.version.matches('^0*{}[.]0*{}[.][0-9]+$')",
        line.0, line.1
    )
}

fn cel_list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The CRD rule (on the spec) refusing `etcd.extraFlags` entries the `line` does not know under
/// any name ([`accepted_flags`]); the same test as [`check_extra_flags`].
pub fn extra_flags_rule(line: (u64, u64)) -> String {
    format!(
        "!has(self.etcd) || !has(self.etcd.extraFlags) || !{} \
         || self.etcd.extraFlags.all(f, f.split('=')[0] in {})",
        cel_spec_on_line(line),
        cel_list(&accepted_flags(line))
    )
}

/// Message expression of [`extra_flags_rule`]: names the first flag the line does not know.
pub fn extra_flags_message(line: (u64, u64)) -> String {
    format!(
        "'etcd ' + self.version + ' does not know the etcd.extraFlags entry ' + \
         self.etcd.extraFlags.filter(f, !(f.split('=')[0] in {}))[0].split('=')[0] + \
         ': 3.6 renamed the --experimental-* flags (some became --feature-gates) and 3.7 removed \
         the old names; the operator writes the name each version knows for you'",
        cel_list(&accepted_flags(line))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().expect("a version")
    }

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn renders_per_version() {
        let given = strings(&[
            "--log-level=warn",
            "--experimental-watch-progress-notify-interval=5s",
            "--experimental-initial-corrupt-check=true",
            "--experimental-compact-hash-check-enabled",
        ]);
        assert_eq!(render_flags(&given, v("3.5.35")), given);
        let promoted = strings(&[
            "--log-level=warn",
            "--watch-progress-notify-interval=5s",
            "--feature-gates=InitialCorruptCheck=true,CompactHashCheck=true",
        ]);
        assert_eq!(render_flags(&given, v("3.6.16")), promoted);
        assert_eq!(render_flags(&given, v("3.7.3")), promoted);
        // Promoted names are written back for 3.5.
        assert_eq!(
            render_flags(&strings(&["--snapshot-catchup-entries=100"]), v("3.5.35")),
            strings(&["--experimental-snapshot-catchup-entries=100"])
        );
        // A given --feature-gates is merged with the translated ones.
        assert_eq!(
            render_flags(
                &strings(&[
                    "--feature-gates=StopGRPCServiceOnDefrag=true",
                    "--experimental-enable-lease-checkpoint=false"
                ]),
                v("3.7.3")
            ),
            strings(&["--feature-gates=StopGRPCServiceOnDefrag=true,LeaseCheckpoint=false"])
        );
        // Lines without a table are left alone.
        let old = strings(&["--experimental-initial-corrupt-check=true"]);
        assert_eq!(render_flags(&old, v("3.4.23")), old);
    }

    #[test]
    fn unknown_flags_are_named() {
        assert!(
            check_extra_flags("3.7.3", &strings(&["--enable-v2=true"]))[0]
                .message
                .contains("only etcd 3.5 has it")
        );
        assert!(
            check_extra_flags("3.5.35", &strings(&["--max-learners=2"]))[0]
                .message
                .contains("only etcd 3.6 and 3.7 have it")
        );
        assert!(
            check_extra_flags("3.5.35", &strings(&["--feature-gates=A=true"]))[0]
                .message
                .contains("no feature gates")
        );
        assert!(
            check_extra_flags(
                "3.7.3",
                &strings(&["--experimental-watch-progress-notify-interval=1s"])
            )
            .is_empty()
        );
        assert_eq!(
            check_extra_flags("3.6.16", &strings(&["--bogus"]))[0].index,
            0
        );
        assert!(check_extra_flags("3.4.23", &strings(&["--bogus"])).is_empty());
        assert!(check_extra_flags("3.6", &strings(&["--bogus"])).is_empty());
    }

    #[test]
    fn accepted_is_known_plus_renames() {
        for line in SUPPORTED_LINES {
            let accepted = accepted_flags(line);
            for name in &accepted {
                assert!(spelling(line, name).is_some(), "{line:?} {name}");
            }
            for name in COMMON.iter().chain(extra(line).unwrap_or_default()) {
                assert!(accepted.contains(name), "{line:?} {name}");
            }
        }
        assert!(accepted_flags((3, 7)).contains(&"--experimental-corrupt-check-time"));
        assert!(!accepted_flags((3, 5)).contains(&"--feature-gates"));
        assert!(accepted_flags((3, 4)).is_empty());
    }
}

//! Verification of snapshots (`spec.backup.verify`): what a runtime is asked to verify
//! ([`VerifyRequest`]), what it found ([`Verified`]), the checks against what was recorded
//! ([`check`], pure), and how the result is recorded in the status and raised as a condition.
//!
//! The runtime does the I/O (the local runtime: [`crate::runtime::local`]'s `verify` module):
//! read the object back (decrypted; its SHA-256 checked against the trailer), restore it with
//! the version's `etcdutl snapshot restore`, start a throwaway etcd on it and read its revision
//! and key count. [`check`] then compares with the record: the object's SHA-256 must be the one
//! recorded when it was stored, and the revision the throwaway etcd serves must not be above the
//! recorded one (the recorded revision is the header of the stream's first message, filled in
//! after etcd took the snapshot: equal on a cluster nobody wrote to meanwhile, a few revisions
//! above otherwise) and not 0.

use std::time::Duration;

use crate::api::{BackupStatus, EtcdClusterStatus, VerificationRecord, VerificationResult};
use crate::controller::plan::{UnverifiedSnapshot, Version};
use crate::snapshot_store::SnapshotStore;

/// The `Degraded` reason while the last verification failed.
pub const BACKUP_VERIFICATION_FAILED: &str = "BackupVerificationFailed";

/// How long one verification may take (download, restore, start, checks), after which it is
/// cut and recorded as failed.
pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(120);

/// What a runtime is asked to verify.
#[derive(Debug, Clone, Copy)]
pub struct VerifyRequest<'a> {
    /// The opened store of the schedule (credentials and key read, decrypting).
    pub store: &'a SnapshotStore,
    /// The snapshot and what was recorded of it.
    pub snapshot: &'a UnverifiedSnapshot,
    /// The etcd version whose `etcdutl` and `etcd` restore and serve it.
    pub version: Version,
    /// The schedule's reading of the store (the Secrets' names, for runtimes that fetch it
    /// elsewhere).
    pub target: &'a crate::controller::backup::BackupTarget,
}

/// What a throwaway etcd served from the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    /// Its revision.
    pub revision: i64,
    /// Its key count, when it could be counted (`None` when etcd auth in the snapshot refuses
    /// the count).
    pub keys: Option<i64>,
}

/// Why a verification failed, by stage.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The object could not be read back (missing, corrupt, undecryptable).
    #[error("reading {location} back: {source}")]
    Download {
        /// The object.
        location: String,
        /// The store's error.
        #[source]
        source: crate::snapshot_store::StoreError,
    },
    /// The object read back is not the one recorded.
    #[error(
        "{location} has SHA-256 {found}, not the {recorded} recorded when it was stored: it was \
         changed or replaced"
    )]
    Sha256 {
        /// The object.
        location: String,
        /// The SHA-256 read back.
        found: String,
        /// The SHA-256 recorded.
        recorded: String,
    },
    /// `etcdutl snapshot restore` refused it, or a file could not be written.
    #[error("restoring {location}: {why}")]
    Restore {
        /// The object.
        location: String,
        /// etcdutl's (or the file system's) message.
        why: String,
    },
    /// The throwaway etcd did not start or serve.
    #[error("the throwaway etcd restored from {location} did not serve: {why}")]
    Serve {
        /// The object.
        location: String,
        /// What happened.
        why: String,
    },
    /// The revision served is not the one recorded.
    #[error(
        "the throwaway etcd restored from {location} serves revision {served}, but revision \
         {recorded} was recorded"
    )]
    Revision {
        /// The object.
        location: String,
        /// The revision served.
        served: i64,
        /// The revision recorded.
        recorded: i64,
    },
    /// The whole verification took too long.
    #[error("verifying {location} took longer than {timeout:?}")]
    Timeout {
        /// The object.
        location: String,
        /// The bound.
        timeout: Duration,
    },
    /// The store of the schedule could not be opened (a Secret missing or unreadable).
    #[error("opening the store of {location}: {why}")]
    Store {
        /// The object.
        location: String,
        /// Why.
        why: String,
    },
}

/// What one verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The object's name.
    pub object: String,
    /// Where it is.
    pub location: String,
    /// `Ok` with what was checked, or why it failed.
    pub result: Result<String, String>,
    /// What the throwaway etcd served, if it started.
    pub served: Option<Served>,
    /// How long it took.
    pub duration: Duration,
}

impl Verified {
    /// Whether the snapshot passed.
    pub fn passed(&self) -> bool {
        self.result.is_ok()
    }

    /// A verification of `snapshot` that failed with `error`.
    pub fn failed(snapshot: &UnverifiedSnapshot, error: &VerifyError, duration: Duration) -> Self {
        Verified {
            object: snapshot.object.clone(),
            location: snapshot.location.clone(),
            result: Err(error.to_string()),
            served: None,
            duration,
        }
    }
}

impl Verified {
    /// A verification of `snapshot` that could not start: its store could not be opened.
    pub fn unopened(snapshot: &UnverifiedSnapshot, why: String) -> Self {
        let error = VerifyError::Store {
            location: snapshot.location.clone(),
            why,
        };
        Verified::failed(snapshot, &error, Duration::ZERO)
    }
}

impl std::fmt::Display for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.result {
            Ok(what) => write!(
                f,
                "Verified snapshot {}: {what} ({} ms)",
                self.location,
                self.duration.as_millis()
            ),
            Err(why) => write!(
                f,
                "Verification of snapshot {} failed: {why}",
                self.location
            ),
        }
    }
}

/// Compares what was read back (`sha256`) and `served` with the record of `snapshot`: the
/// message of a pass, or the failure.
pub fn check(
    snapshot: &UnverifiedSnapshot,
    sha256: &str,
    served: Served,
    version: Version,
) -> Result<String, VerifyError> {
    let location = || snapshot.location.clone();
    if !snapshot.sha256.is_empty() && !sha256.eq_ignore_ascii_case(&snapshot.sha256) {
        return Err(VerifyError::Sha256 {
            location: location(),
            found: sha256.to_owned(),
            recorded: snapshot.sha256.clone(),
        });
    }
    if served.revision <= 0 || (snapshot.revision > 0 && served.revision > snapshot.revision) {
        return Err(VerifyError::Revision {
            location: location(),
            served: served.revision,
            recorded: snapshot.revision,
        });
    }
    let revision = if served.revision == snapshot.revision {
        format!("revision {} as recorded", served.revision)
    } else {
        format!(
            "revision {} (recorded {}: written to while the snapshot started)",
            served.revision, snapshot.revision
        )
    };
    let keys = match served.keys {
        Some(n) => format!("{n} keys"),
        None => "keys not counted (etcd auth is on in the snapshot)".to_owned(),
    };
    Ok(format!(
        "restored by etcdutl {version} and served by a throwaway etcd: {revision}, {keys}, \
         SHA-256 as recorded"
    ))
}

/// The last recorded snapshot of `status`, while no verification of it is recorded.
pub fn unverified_snapshot(status: Option<&EtcdClusterStatus>) -> Option<UnverifiedSnapshot> {
    let s = status?.backup.as_ref()?.last_snapshot.as_ref()?;
    if s.verification.is_some() || s.name.is_empty() {
        return None;
    }
    Some(UnverifiedSnapshot {
        sequence: u64::try_from(s.sequence).unwrap_or(0),
        object: s.name.clone(),
        location: s.location.clone(),
        sha256: s.sha256.clone(),
        revision: s.revision,
    })
}

/// Records `verified`, finished at `now`, in `status`: on the last snapshot when it is the one
/// verified, and as `status.backup.lastVerification`.
pub fn record_verification(status: &mut EtcdClusterStatus, verified: &Verified, now: &str) {
    let record = VerificationRecord {
        time: now.to_owned(),
        name: verified.object.clone(),
        location: verified.location.clone(),
        result: if verified.passed() {
            VerificationResult::Passed
        } else {
            VerificationResult::Failed
        },
        message: match &verified.result {
            Ok(m) | Err(m) => m.clone(),
        },
        revision: verified.served.map(|s| s.revision),
        keys: verified.served.and_then(|s| s.keys),
        duration_ms: i64::try_from(verified.duration.as_millis()).unwrap_or(i64::MAX),
    };
    let backup = status.backup.get_or_insert_with(BackupStatus::default);
    if let Some(last) = backup
        .last_snapshot
        .as_mut()
        .filter(|s| s.name == verified.object)
    {
        last.verification = Some(record.clone());
    }
    backup.last_verification = Some(record);
}

/// Marks the `Degraded` condition (not the phase) with reason
/// [`BACKUP_VERIFICATION_FAILED`] while the last verification failed and the schedule still
/// verifies (`verifying`), unless the cluster is degraded for another reason already (a failing
/// schedule, marked first, included). The transition time is the previous one while it stays
/// so.
pub fn mark_verification_failed(
    status: &mut EtcdClusterStatus,
    previous: Option<&EtcdClusterStatus>,
    now: &str,
    verifying: bool,
) {
    let Some(v) = status
        .backup
        .as_ref()
        .and_then(|b| b.last_verification.as_ref())
        .filter(|v| verifying && v.result == VerificationResult::Failed)
    else {
        return;
    };
    let message = format!("backup verification: {}", v.message);
    let was = previous
        .and_then(|p| p.conditions.iter().find(|c| c.type_ == "Degraded"))
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.clone());
    for c in &mut status.conditions {
        if c.type_ == "Degraded" && c.status != "True" {
            c.status = "True".to_owned();
            c.reason = BACKUP_VERIFICATION_FAILED.to_owned();
            c.message = message.clone();
            c.last_transition_time = Some(was.clone().unwrap_or_else(|| now.to_owned()));
        }
    }
}

/// [`mark_backup_failing`](crate::controller::status::mark_backup_failing), then
/// [`mark_verification_failed`]: the backup conditions of one pass.
pub fn mark_backup(
    status: &mut EtcdClusterStatus,
    previous: Option<&EtcdClusterStatus>,
    now: &str,
    verifying: bool,
) {
    crate::controller::status::mark_backup_failing(status, previous, now);
    mark_verification_failed(status, previous, now, verifying);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> UnverifiedSnapshot {
        UnverifiedSnapshot {
            sequence: 1,
            object: "demo-20261122T073005Z-r812.db".into(),
            location: "/b/demo-20261122T073005Z-r812.db".into(),
            sha256: "ab12".into(),
            revision: 812,
        }
    }

    fn v() -> Version {
        "3.5.16".parse().expect("version")
    }

    #[test]
    fn a_snapshot_passes_only_with_its_sha256_and_a_revision_not_above_the_record() {
        let s = snapshot();
        let served = |revision, keys| Served { revision, keys };
        let ok = check(&s, "AB12", served(812, Some(200)), v()).expect("passes");
        assert!(ok.contains("revision 812 as recorded, 200 keys"), "{ok}");
        let ok = check(&s, "ab12", served(810, None), v()).expect("passes");
        assert!(ok.contains("revision 810 (recorded 812"), "{ok}");
        let e = check(&s, "ffff", served(812, Some(1)), v()).expect_err("sha");
        assert!(matches!(e, VerifyError::Sha256 { .. }), "{e}");
        assert!(e.to_string().contains(&s.location), "{e}");
        for bad in [813, 0] {
            let e = check(&s, "ab12", served(bad, Some(1)), v()).expect_err("revision");
            assert!(matches!(e, VerifyError::Revision { .. }), "{e}");
        }
    }

    #[test]
    fn a_failed_verification_degrades_until_one_passes_or_verification_stops() {
        let mut status = EtcdClusterStatus {
            conditions: vec![crate::api::Condition {
                type_: "Degraded".into(),
                status: "False".into(),
                ..crate::api::Condition::default()
            }],
            backup: Some(BackupStatus {
                last_snapshot: Some(crate::api::SnapshotRecord {
                    name: snapshot().object,
                    location: snapshot().location,
                    sha256: "ab12".into(),
                    revision: 812,
                    sequence: 1,
                    ..crate::api::SnapshotRecord::default()
                }),
                ..BackupStatus::default()
            }),
            ..EtcdClusterStatus::default()
        };
        assert_eq!(unverified_snapshot(Some(&status)), Some(snapshot()));
        let e = VerifyError::Sha256 {
            location: snapshot().location,
            found: "ff".into(),
            recorded: "ab12".into(),
        };
        let failed = Verified::failed(&snapshot(), &e, Duration::from_millis(5));
        record_verification(&mut status, &failed, "2026-11-22T07:31:00Z");
        assert_eq!(unverified_snapshot(Some(&status)), None);
        let mut off = status.clone();
        mark_verification_failed(&mut off, None, "now", false);
        assert_eq!(off.conditions[0].status, "False");
        mark_verification_failed(&mut status, None, "now", true);
        let c = &status.conditions[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", BACKUP_VERIFICATION_FAILED)
        );
        assert!(c.message.contains(&snapshot().location), "{}", c.message);
    }
}

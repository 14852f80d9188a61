//! etcd versions: the release lines the operator supports, the upgrade paths etcd's own upgrade
//! guides allow (with their patch floors), and the flags each line knows ([`render_flags`],
//! [`check_extra_flags`]).
//!
//! One source for admission and the planner: the CEL transition rule on `spec.version`
//! ([`upgrade_floor_rule`]) and [`Version::check_upgrade`] are built from the same table
//! ([`UPGRADE_FLOORS`]), and `tests/api_crd.rs` checks against a real kube-apiserver that they
//! agree.

use std::fmt;
use std::str::FromStr;

mod flags;
mod known;

pub use flags::{
    FlagProblem, RENAMES, Rename, Replacement, accepted_flags, check_extra_flags,
    extra_flags_message, extra_flags_rule, flag_accepted, flag_known, render_flags,
};

/// What the operator knows of the members' raft logs that limits upgrades
/// (`status.upgrade`).
#[derive(
    serde::Serialize, serde::Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeStatus {
    /// The raft index from which every entry of the cluster's log was written by etcd 3.6 or
    /// later: recorded when every member first reported storage version 3.6 (0 for a cluster the
    /// operator created on 3.6 or later). etcd 3.7 cannot replay the v2 entries etcd 3.5 wrote,
    /// so a member is restarted onto 3.7 only once its raft index is `snapshotCount` past this
    /// index (it has taken a raft snapshot on 3.6 since).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v3_log_from_index: Option<u64>,
}

/// The release lines (`major.minor`) whose flags and upgrade paths the operator knows: 3.5, 3.6
/// and 3.7. Other lines run as given (their flags are passed through unchecked).
pub const SUPPORTED_LINES: [(u64, u64); 3] = [(3, 5), (3, 6), (3, 7)];

/// A minor step that etcd's upgrade guide allows only from a patch at or above a floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpgradeFloor {
    /// The line upgraded from (`major`, `minor`); the step goes to `minor + 1`.
    pub line: (u64, u64),
    /// The lowest patch of that line a member may run when the step starts.
    pub patch: u64,
}

impl UpgradeFloor {
    /// The floor as a version (`3.5.26`).
    pub const fn version(self) -> Version {
        Version::new(self.line.0, self.line.1, self.patch)
    }
}

/// The patch floors of minor steps, from etcd's upgrade guides:
///
/// - 3.5 → 3.6: "Before upgrading to 3.6, make sure that all of your 3.5 members are updated to
///   3.5.26 or later. Patch releases 3.5.24 through 3.5.26 fix several potential upgrade
///   blockers" (<https://etcd.io/docs/v3.6/upgrades/upgrade_3_6/>; earlier patches hit "too
///   many learner members" when promoted learners revert, etcd issue 19557).
/// - 3.6 → 3.7: "Before upgrading to 3.7, make sure that all of your 3.6 members are updated to
///   3.6.11 or later. Earlier 3.6 patch releases may not be compatible with a rolling upgrade
///   to 3.7" (<https://etcd.io/docs/v3.7/upgrades/upgrade_3_7/>).
///
/// 3.4 → 3.5 names no floor.
pub const UPGRADE_FLOORS: [UpgradeFloor; 2] = [
    UpgradeFloor {
        line: (3, 5),
        patch: 26,
    },
    UpgradeFloor {
        line: (3, 6),
        patch: 11,
    },
];

/// The patch a member of `line` must run before it moves to the next minor version, if the
/// guide names one.
pub fn upgrade_floor(line: (u64, u64)) -> Option<Version> {
    UPGRADE_FLOORS
        .iter()
        .find(|f| f.line == line)
        .map(|f| f.version())
}

/// An etcd release version, `major.minor.patch` (a leading `v` is accepted when parsing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Major version (3 for every etcd v3 release).
    pub major: u64,
    /// Minor version.
    pub minor: u64,
    /// Patch version.
    pub patch: u64,
}

impl Version {
    /// A version from its three numbers.
    pub const fn new(major: u64, minor: u64, patch: u64) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// The release line, `(major, minor)`.
    pub const fn line(self) -> (u64, u64) {
        (self.major, self.minor)
    }

    /// Whether the operator knows this version's line ([`SUPPORTED_LINES`]).
    pub fn is_supported(self) -> bool {
        SUPPORTED_LINES.contains(&self.line())
    }

    /// Whether a member running `self` may be restarted on `to`: the same major version, at
    /// most one minor step up, never down (patch downgrades included), and a minor step only
    /// from a patch at or above the floor etcd's upgrade guide names ([`UPGRADE_FLOORS`]).
    /// Patch upgrades are always allowed.
    pub fn check_upgrade(self, to: Version) -> Result<(), VersionSkew> {
        if to < self {
            Err(VersionSkew::Downgrade { from: self, to })
        } else if to.major != self.major || to.minor > self.minor + 1 {
            Err(VersionSkew::TooFar { from: self, to })
        } else if let Some(floor) = upgrade_floor(self.line())
            .filter(|floor| to.minor == self.minor + 1 && self.patch < floor.patch)
        {
            Err(VersionSkew::BelowFloor {
                from: self,
                to,
                floor,
            })
        } else {
            Ok(())
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Why a text is not a [`Version`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid etcd version {0:?}: expected major.minor.patch")]
pub struct ParseVersionError(pub String);

impl FromStr for Version {
    type Err = ParseVersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseVersionError(s.to_owned());
        let text = s.strip_prefix('v').unwrap_or(s);
        let mut parts = text.split('.');
        let mut next = || -> Result<u64, ParseVersionError> {
            let part = parts.next().ok_or_else(err)?;
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            part.parse().map_err(|_| err())
        };
        let version = Version::new(next()?, next()?, next()?);
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(version)
    }
}

/// The line (`major`, `minor`) of a `spec.version` text of three digit groups, whatever its
/// patch (the same test the CEL rules make with a pattern); `None` for anything else.
pub fn line_of(version: &str) -> Option<(u64, u64)> {
    let parts: Vec<&str> = version.split('.').collect();
    if parts.len() != 3
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    Some((parts[0].parse().ok()?, parts[1].parse().ok()?))
}

/// A version change the planner refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VersionSkew {
    /// The target is older than a version a member runs.
    #[error("downgrade from {from} to {to} is not supported")]
    Downgrade {
        /// The version a member runs.
        from: Version,
        /// The desired version.
        to: Version,
    },
    /// The target is more than one minor version ahead, or another major version.
    #[error("upgrade from {from} to {to} skips a minor version; upgrade one minor step at a time")]
    TooFar {
        /// The version a member runs.
        from: Version,
        /// The desired version.
        to: Version,
    },
    /// A minor step from a patch below the floor etcd's upgrade guide names.
    #[error("{}", floor_message(*from, *to, *floor))]
    BelowFloor {
        /// The version a member runs.
        from: Version,
        /// The desired version.
        to: Version,
        /// The patch every member must run first.
        floor: Version,
    },
}

/// The sentence for a minor step from below its floor; the CEL rule's message
/// ([`upgrade_floor_message`]) builds the same text.
pub fn floor_message(from: Version, to: Version, floor: Version) -> String {
    format!(
        "etcd {from} cannot be upgraded to {to} directly: the etcd upgrade guide asks every \
         member to run {floor} or later first; set version to {floor} (or a later {}.{} patch), \
         let that rolling upgrade finish, then set {to}",
        from.major, from.minor
    )
}

/// A version text of three digit groups (what the CEL rules test before reading numbers).
const CEL_VERSION: &str = "'^[0-9]+[.][0-9]+[.][0-9]+$'";

/// CEL: `v`'s line is `line` (`v` a version text of three digit groups).
fn cel_on_line(v: &str, line: (u64, u64)) -> String {
    format!(
        "(int({v}.split('.')[0]) == {} && int({v}.split('.')[1]) == {})",
        line.0, line.1
    )
}

/// `spec.version` may take a minor step only from a patch at or above the floor etcd's upgrade
/// guide names (transition rule; [`UPGRADE_FLOORS`], the same test as
/// [`Version::check_upgrade`]). Patch upgrades are free.
pub fn upgrade_floor_rule() -> String {
    let floors = UPGRADE_FLOORS
        .iter()
        .map(|f| {
            format!(
                "(!{} || int(oldSelf.split('.')[2]) >= {})",
                cel_on_line("oldSelf", f.line),
                f.patch
            )
        })
        .collect::<Vec<_>>()
        .join(" && ");
    format!(
        "!self.matches({CEL_VERSION}) || !oldSelf.matches({CEL_VERSION}) \
         || !(int(self.split('.')[0]) == int(oldSelf.split('.')[0]) \
         && int(self.split('.')[1]) == int(oldSelf.split('.')[1]) + 1) \
         || ({floors})"
    )
}

/// Message expression of [`upgrade_floor_rule`]: the text of [`floor_message`].
pub fn upgrade_floor_message() -> String {
    let floor = UPGRADE_FLOORS
        .iter()
        .rev()
        .fold("''".to_owned(), |rest, f| {
            format!(
                "({} ? '{}' : {rest})",
                cel_on_line("oldSelf", f.line),
                f.version()
            )
        });
    let line = "oldSelf.split('.')[0] + '.' + oldSelf.split('.')[1]";
    format!(
        "'etcd ' + oldSelf + ' cannot be upgraded to ' + self + ' directly: the etcd upgrade \
         guide asks every member to run ' + {floor} + ' or later first; set version to ' + \
         {floor} + ' (or a later ' + {line} + ' patch), let that rolling upgrade finish, then \
         set ' + self"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().expect("a version")
    }

    #[test]
    fn paths_follow_the_guides() {
        assert!(v("3.5.16").check_upgrade(v("3.5.35")).is_ok());
        assert!(v("3.5.26").check_upgrade(v("3.6.0")).is_ok());
        assert!(v("3.6.11").check_upgrade(v("3.7.3")).is_ok());
        assert!(v("3.4.1").check_upgrade(v("3.5.0")).is_ok());
        assert_eq!(
            v("3.5.25").check_upgrade(v("3.6.16")),
            Err(VersionSkew::BelowFloor {
                from: v("3.5.25"),
                to: v("3.6.16"),
                floor: v("3.5.26")
            })
        );
        let e = v("3.6.10").check_upgrade(v("3.7.0")).unwrap_err();
        assert!(e.to_string().contains("run 3.6.11 or later first"), "{e}");
        assert!(matches!(
            v("3.5.16").check_upgrade(v("3.7.0")),
            Err(VersionSkew::TooFar { .. })
        ));
        assert!(matches!(
            v("3.6.0").check_upgrade(v("3.5.35")),
            Err(VersionSkew::Downgrade { .. })
        ));
    }

    #[test]
    fn lines() {
        assert_eq!(line_of("3.6.16"), Some((3, 6)));
        assert_eq!(line_of("03.06.1"), Some((3, 6)));
        assert_eq!(line_of("3.6"), None);
        assert_eq!(line_of("3.6.x"), None);
        assert!(v("3.7.3").is_supported());
        assert!(!v("3.4.23").is_supported());
    }
}

//! etcd versions and the rule for moving between them.

use super::*;

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

    /// Whether a member running `self` may be restarted on `to`: the same major version, at
    /// most one minor step up, never down (patch downgrades included).
    pub fn check_upgrade(self, to: Version) -> Result<(), VersionSkew> {
        if to < self {
            Err(VersionSkew::Downgrade { from: self, to })
        } else if to.major != self.major || to.minor > self.minor + 1 {
            Err(VersionSkew::TooFar { from: self, to })
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
}

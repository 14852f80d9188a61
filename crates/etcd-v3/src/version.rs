//! Server versions and the check `Client::connect` makes against a minimum one
//! ([`ConnectOptions::with_min_server_version`](super::ConnectOptions::with_min_server_version)).
//! Pure functions: the Status calls are made by the client.

use std::fmt;

use super::error::Error;

/// An etcd `major.minor` version. Patch releases never change the API, so a minimum is given as
/// `major.minor` and a server's patch (and any pre-release suffix) is ignored when comparing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MinorVersion {
    /// The major version (3 for every etcd v3 server).
    pub major: u32,
    /// The minor version.
    pub minor: u32,
}

impl MinorVersion {
    /// `major.minor`.
    pub const fn new(major: u32, minor: u32) -> Self {
        MinorVersion { major, minor }
    }

    /// Reads `major.minor` from a version as etcd's Status reports it (`3.5.16`,
    /// `3.6.0-alpha.0`); `None` when it does not start with two numbers.
    pub fn parse(version: &str) -> Option<Self> {
        let mut parts = version.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor_part = parts.next()?;
        // `3.6-rc` has no patch; keep the digits before any suffix.
        let digits_end = minor_part
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(minor_part.len());
        let minor = minor_part[..digits_end].parse().ok()?;
        Some(MinorVersion { major, minor })
    }
}

impl fmt::Display for MinorVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The etcd API version this client speaks (sent as `client-api-version` on every call).
pub const CLIENT_API_VERSION: MinorVersion = MinorVersion::new(3, 5);

/// The oldest server [`ConnectOptions::with_reject_old_cluster`](super::ConnectOptions::with_reject_old_cluster)
/// accepts: the minor release before [`CLIENT_API_VERSION`], as Go's clientv3 computes it from its
/// own version (a 3.5 client rejects servers older than 3.4).
pub const PREVIOUS_MINOR: MinorVersion = MinorVersion::new(3, 4);

/// Decides whether the server at `endpoint`, which reported `version` in its Status, is at least
/// `min`: [`Error::OldCluster`] when it is older, [`Error::VersionCheck`] when the version cannot
/// be read.
pub fn check_server_version(endpoint: &str, version: &str, min: MinorVersion) -> Result<(), Error> {
    match MinorVersion::parse(version) {
        Some(v) if v >= min => Ok(()),
        Some(_) => Err(Error::OldCluster {
            endpoint: endpoint.to_string(),
            version: version.to_string(),
            required: min,
        }),
        None => Err(Error::VersionCheck {
            endpoint: endpoint.to_string(),
            source: Box::new(Error::InvalidArgument(format!(
                "the server reported version {version:?}, which is not major.minor[.patch]"
            ))),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_releases_and_prereleases() {
        assert_eq!(MinorVersion::parse("3.5.16"), Some(MinorVersion::new(3, 5)));
        assert_eq!(MinorVersion::parse("3.4.23"), Some(MinorVersion::new(3, 4)));
        assert_eq!(
            MinorVersion::parse("3.6.0-alpha.0"),
            Some(MinorVersion::new(3, 6))
        );
        assert_eq!(MinorVersion::parse("3.10"), Some(MinorVersion::new(3, 10)));
        assert_eq!(MinorVersion::parse("3.6-rc"), Some(MinorVersion::new(3, 6)));
        assert_eq!(MinorVersion::parse(""), None);
        assert_eq!(MinorVersion::parse("3"), None);
        assert_eq!(MinorVersion::parse("v3.5.0"), None);
        assert_eq!(MinorVersion::parse("3.x.1"), None);
    }

    #[test]
    fn orders_numerically_not_textually() {
        assert!(MinorVersion::new(3, 10) > MinorVersion::new(3, 9));
        assert!(MinorVersion::new(4, 0) > MinorVersion::new(3, 99));
        assert_eq!(MinorVersion::new(3, 5).to_string(), "3.5");
    }

    #[test]
    fn older_minor_is_rejected_naming_endpoint_and_version() {
        let err = check_server_version("http://a:2379", "3.4.23", MinorVersion::new(3, 5))
            .expect_err("3.4 < 3.5");
        match &err {
            Error::OldCluster {
                endpoint,
                version,
                required,
            } => {
                assert_eq!(endpoint, "http://a:2379");
                assert_eq!(version, "3.4.23");
                assert_eq!(*required, MinorVersion::new(3, 5));
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("http://a:2379"));
        assert!(err.to_string().contains("3.4.23"));
    }

    #[test]
    fn same_or_newer_minor_is_accepted_whatever_the_patch() {
        let min = MinorVersion::new(3, 5);
        for v in ["3.5.0", "3.5.16", "3.6.0-alpha.0", "4.0.0"] {
            assert!(check_server_version("e", v, min).is_ok(), "{v}");
        }
        // Go's RejectOldCluster rule for a 3.5 client: 3.4 passes, 3.3 does not.
        assert!(check_server_version("e", "3.4.23", PREVIOUS_MINOR).is_ok());
        assert!(matches!(
            check_server_version("e", "3.3.27", PREVIOUS_MINOR),
            Err(Error::OldCluster { .. })
        ));
    }

    #[test]
    fn unreadable_version_fails_the_check() {
        assert!(matches!(
            check_server_version("e", "", MinorVersion::new(3, 4)),
            Err(Error::VersionCheck { endpoint, .. }) if endpoint == "e"
        ));
    }
}

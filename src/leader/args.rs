//! The command-line flags of leader election.

use std::time::Duration;

use super::*;

/// Command-line flags of leader election, for `etcd-operator run` to flatten into its own
/// arguments (`#[command(flatten)]`). The Helm chart and `config/manager` pass these flags.
#[derive(Debug, Clone, clap::Args)]
pub struct LeaderElectionArgs {
    /// Elect a leader among replicas through a Lease; only the leader reconciles. `--leader-elect`
    /// alone means true; `--leader-elect=false` (the default) runs the controller directly.
    #[arg(
        long = "leader-elect",
        id = "leader_elect",
        value_name = "BOOL",
        default_value_t = false,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub leader_elect: bool,
    /// Name of the Lease.
    #[arg(
        long = "leader-election-lease",
        id = "leader_election_lease",
        value_name = "NAME",
        default_value = DEFAULT_LEASE_NAME
    )]
    pub lease_name: String,
    /// Namespace of the Lease (the operator's namespace).
    #[arg(
        long = "leader-election-namespace",
        id = "leader_election_namespace",
        value_name = "NAMESPACE",
        env = "POD_NAMESPACE",
        default_value = "default"
    )]
    pub namespace: String,
    /// This replica's identity (the pod name).
    #[arg(
        long = "leader-election-identity",
        id = "leader_election_identity",
        value_name = "IDENTITY",
        env = "POD_NAME"
    )]
    pub identity: Option<String>,
    /// Lease duration, e.g. `15s`.
    #[arg(
        long = "leader-election-lease-duration",
        id = "leader_election_lease_duration",
        value_name = "DURATION",
        default_value = "15s",
        value_parser = parse_duration
    )]
    pub lease_duration: Duration,
    /// Renew deadline, e.g. `10s`.
    #[arg(
        long = "leader-election-renew-deadline",
        id = "leader_election_renew_deadline",
        value_name = "DURATION",
        default_value = "10s",
        value_parser = parse_duration
    )]
    pub renew_deadline: Duration,
    /// Retry period, e.g. `2s`.
    #[arg(
        long = "leader-election-retry-period",
        id = "leader_election_retry_period",
        value_name = "DURATION",
        default_value = "2s",
        value_parser = parse_duration
    )]
    pub retry_period: Duration,
}

impl Default for LeaderElectionArgs {
    /// Leader election off, with the documented defaults (what no flag at all gives, without
    /// the `POD_NAME`/`POD_NAMESPACE` environment).
    fn default() -> Self {
        LeaderElectionArgs {
            leader_elect: false,
            lease_name: DEFAULT_LEASE_NAME.to_owned(),
            namespace: "default".to_owned(),
            identity: None,
            lease_duration: DEFAULT_LEASE_DURATION,
            renew_deadline: DEFAULT_RENEW_DEADLINE,
            retry_period: DEFAULT_RETRY_PERIOD,
        }
    }
}

impl LeaderElectionArgs {
    /// The elector settings, or `None` when leader election is off. The identity falls back to
    /// the `HOSTNAME` variable (the pod name in Kubernetes).
    pub fn config(&self) -> Result<Option<LeaderElectionConfig>, LeaderError> {
        if !self.leader_elect {
            return Ok(None);
        }
        let identity = self
            .identity
            .clone()
            .filter(|i| !i.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
            .ok_or_else(|| {
                LeaderError::Config(
                    "no identity: set --leader-election-identity or POD_NAME".to_string(),
                )
            })?;
        let config = LeaderElectionConfig::new(&self.namespace, &self.lease_name, identity)
            .timings(self.lease_duration, self.renew_deadline, self.retry_period);
        config.validate()?;
        Ok(Some(config))
    }
}

/// Parses `15s`, `500ms`, `2m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("not a duration: {text:?} (expected e.g. 15s, 500ms, 2m)"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => n
            .checked_mul(60)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("duration too long: {text:?}")),
        _ => Err(format!("unknown unit in {text:?} (use ms, s or m)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn flags_give_the_documented_defaults() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            le: LeaderElectionArgs,
        }
        let off = Cli::parse_from(["x"]).le;
        assert_eq!(off.config().unwrap(), None);
        let on = Cli::parse_from([
            "x",
            "--leader-elect",
            "--leader-election-identity=pod-a",
            "--leader-election-namespace=ops",
        ])
        .le;
        let c = on.config().unwrap().unwrap();
        assert_eq!(c.identity, "pod-a");
        assert_eq!(c.namespace, "ops");
        assert_eq!(c.lease_name, "etcd-operator-leader");
        assert_eq!(
            (c.lease_duration, c.renew_deadline, c.retry_period),
            (
                DEFAULT_LEASE_DURATION,
                DEFAULT_RENEW_DEADLINE,
                DEFAULT_RETRY_PERIOD
            )
        );
        let explicit_on = Cli::parse_from(["x", "--leader-elect=true"]).le;
        assert!(explicit_on.leader_elect);
        let explicit_off = Cli::parse_from(["x", "--leader-elect=false"]).le;
        assert!(!explicit_off.leader_elect);
        assert!(Cli::try_parse_from(["x", "--leader-elect=maybe"]).is_err());
        let d = LeaderElectionArgs::default();
        assert!(!d.leader_elect);
        assert_eq!(d.lease_name, DEFAULT_LEASE_NAME);
        assert_eq!(
            (d.lease_duration, d.renew_deadline, d.retry_period),
            (
                DEFAULT_LEASE_DURATION,
                DEFAULT_RENEW_DEADLINE,
                DEFAULT_RETRY_PERIOD
            )
        );
        let bad = Cli::parse_from([
            "x",
            "--leader-elect",
            "--leader-election-identity=pod-a",
            "--leader-election-renew-deadline=20s",
        ])
        .le;
        assert!(bad.config().is_err());
    }
}

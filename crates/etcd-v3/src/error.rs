//! The client's error type. Server errors are recognised by their message, as etcd's own client
//! does, because several reach the wire with a generic gRPC code (`Unknown`).

use std::time::Duration;

/// Result of a client call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error from the etcd client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client was built with no endpoints.
    #[error("no endpoints given")]
    NoEndpoints,
    /// An endpoint string could not be parsed.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A bad argument caught before sending (for example a bad TLS file).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// etcd answered with an error it defines (see [`ServerError`]).
    #[error("{method}: {kind} ({code:?}: {message})")]
    Server {
        /// The gRPC method, e.g. `KV/Put`.
        method: &'static str,
        /// The recognised etcd error.
        kind: ServerError,
        /// The gRPC code it came with.
        code: tonic::Code,
        /// The server's message.
        message: String,
    },
    /// A gRPC failure that is not an etcd error (connection refused, reset, ...).
    #[error("{method}: {status}")]
    Rpc {
        /// The gRPC method.
        method: &'static str,
        /// The gRPC status.
        status: Box<tonic::Status>,
    },
    /// A write (a non-repeatable call) failed after it may have reached the server: it may or may
    /// not have been applied. Read before you retry.
    #[error("{method}: outcome unknown, the request may have been applied: {source}")]
    OutcomeUnknown {
        /// The gRPC method.
        method: &'static str,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },
    /// The call did not finish within the request timeout (retries included). A write cut off
    /// while an attempt was on its way is reported as [`Error::OutcomeUnknown`] around this.
    #[error("{method}: deadline of {timeout:?} exceeded")]
    Timeout {
        /// The gRPC method.
        method: &'static str,
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// A watch's start revision has been compacted; re-list at or after `compact_revision`.
    #[error("watch canceled: revision compacted, the oldest available is {compact_revision}")]
    Compacted {
        /// The compaction revision reported by the server.
        compact_revision: i64,
    },
    /// A watch was canceled by the server for a reason other than compaction.
    #[error("watch canceled by the server: {reason}")]
    WatchCanceled {
        /// The server's cancel reason.
        reason: String,
    },
    /// A kept-alive lease expired, was revoked, or could not be renewed before its deadline.
    #[error("lease {id:x} lost: {reason}")]
    LeaseLost {
        /// The lease ID.
        id: i64,
        /// Why it is considered lost.
        reason: String,
    },
    /// A snapshot stream ended without a valid SHA-256 trailer.
    #[error("snapshot integrity check failed: {0}")]
    SnapshotIntegrity(String),
    /// The client was closed.
    #[error("client closed")]
    Closed,
    /// An I/O error while writing a snapshot or reading a TLS file.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The connect-time version check (see
    /// [`ConnectOptions::with_min_server_version`](super::ConnectOptions::with_min_server_version))
    /// found a server older than the minimum. etcd's Go client reports this as `ErrOldCluster`.
    #[error("etcd at {endpoint} runs version {version}, older than the required {required}")]
    OldCluster {
        /// The endpoint that answered.
        endpoint: String,
        /// The version it reported in its Status, e.g. `3.4.23`.
        version: String,
        /// The minimum the client was configured with.
        required: super::version::MinorVersion,
    },
    /// The connect-time version check could not learn the version of `endpoint` (its Status
    /// call failed or timed out, or the version it reported is unreadable).
    #[error("version check of {endpoint} failed: {source}")]
    VersionCheck {
        /// The endpoint whose version is unknown.
        endpoint: String,
        /// Why.
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// The etcd error, if this is one (also looks inside [`Error::OutcomeUnknown`]).
    pub fn server_error(&self) -> Option<ServerError> {
        match self {
            Error::Server { kind, .. } => Some(*kind),
            Error::OutcomeUnknown { source, .. } => source.server_error(),
            _ => None,
        }
    }

    /// The gRPC code, when the error came from a gRPC status.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Error::Server { code, .. } => Some(*code),
            Error::Rpc { status, .. } => Some(status.code()),
            Error::OutcomeUnknown { source, .. } => source.code(),
            _ => None,
        }
    }

    /// Whether a write failed in a way that leaves its outcome unknown.
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, Error::OutcomeUnknown { .. })
    }

    /// Maps a gRPC status of `method` to an error. tonic reports a message over the send or
    /// receive size limit as `OutOfRange`; it is reported as `ResourceExhausted`, the code
    /// gRPC (and so etcd's client) uses.
    pub fn from_status(method: &'static str, status: tonic::Status) -> Error {
        let status = if status.code() == tonic::Code::OutOfRange
            && (status
                .message()
                .starts_with("Error, encoded message length too large")
                || status
                    .message()
                    .starts_with("Error, decoded message length too large"))
        {
            tonic::Status::resource_exhausted(status.message())
        } else {
            status
        };
        match ServerError::from_message(status.message()) {
            Some(kind) => Error::Server {
                method,
                kind,
                code: status.code(),
                message: status.message().to_string(),
            },
            None => Error::Rpc {
                method,
                status: Box::new(status),
            },
        }
    }
}

macro_rules! server_errors {
    ($( $(#[$doc:meta])* $variant:ident => $msg:literal, )*) => {
        /// An error defined by the etcd server, recognised by its message.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ServerError {
            $( $(#[$doc])* $variant, )*
        }

        impl ServerError {
            /// The message etcd sends for this error.
            pub fn message(self) -> &'static str {
                match self { $( ServerError::$variant => $msg, )* }
            }

            /// Every known error.
            pub const ALL: &'static [ServerError] = &[ $( ServerError::$variant, )* ];
        }
    };
}

server_errors! {
    /// A key was empty.
    EmptyKey => "etcdserver: key is not provided",
    /// `ignore_value`/`ignore_lease` on a missing key.
    KeyNotFound => "etcdserver: key not found",
    /// `ignore_value` together with a value.
    ValueProvided => "etcdserver: value is provided",
    /// `ignore_lease` together with a lease.
    LeaseProvided => "etcdserver: lease is provided",
    /// A lease TTL of 0.
    TtlZero => "etcdserver: ttl is 0",
    /// More operations in a txn than `--max-txn-ops`.
    TooManyOps => "etcdserver: too many operations in txn request",
    /// A key written twice in one txn.
    DuplicateKey => "etcdserver: duplicate key given in txn request",
    /// The requested revision has been compacted.
    Compacted => "etcdserver: mvcc: required revision has been compacted",
    /// The requested revision is in the future.
    FutureRev => "etcdserver: mvcc: required revision is a future revision",
    /// The backend quota is exhausted (NOSPACE alarm).
    NoSpace => "etcdserver: mvcc: database space exceeded",
    /// The lease does not exist.
    LeaseNotFound => "etcdserver: requested lease not found",
    /// A lease with the requested ID exists.
    LeaseExist => "etcdserver: lease already exists",
    /// The lease TTL is too large.
    LeaseTtlTooLarge => "etcdserver: too large lease TTL",
    /// The member ID exists.
    MemberExist => "etcdserver: member ID already exist",
    /// The peer URL is taken by another member.
    PeerUrlExist => "etcdserver: Peer URLs already exists",
    /// Reconfiguration refused because too few members have started.
    MemberNotEnoughStarted => "etcdserver: re-configuration failed due to not enough started members",
    /// Malformed member URLs.
    MemberBadUrls => "etcdserver: given member URLs are invalid",
    /// No such member.
    MemberNotFound => "etcdserver: member not found",
    /// Promote of a voting member.
    MemberNotLearner => "etcdserver: can only promote a learner member",
    /// The learner has not caught up enough to be promoted.
    LearnerNotReady => "etcdserver: can only promote a learner member which is in sync with leader",
    /// The cluster already has the maximum number of learners.
    TooManyLearners => "etcdserver: too many learner members in cluster",
    /// The request exceeds `--max-request-bytes`.
    RequestTooLarge => "etcdserver: request is too large",
    /// The server's apply loop is too far behind.
    TooManyRequests => "etcdserver: too many requests",
    /// Auth enable without a root user.
    RootUserNotExist => "etcdserver: root user does not exist",
    /// The root user lacks the root role.
    RootRoleNotExist => "etcdserver: root user does not have root role",
    /// The user exists.
    UserAlreadyExist => "etcdserver: user name already exists",
    /// No user name (also: an anonymous call that needs a user).
    UserEmpty => "etcdserver: user name is empty",
    /// No such user.
    UserNotFound => "etcdserver: user name not found",
    /// The role exists.
    RoleAlreadyExist => "etcdserver: role name already exists",
    /// No such role.
    RoleNotFound => "etcdserver: role name not found",
    /// No role name.
    RoleEmpty => "etcdserver: role name is empty",
    /// Wrong user name or password.
    AuthFailed => "etcdserver: authentication failed, invalid user ID or password",
    /// The user may not do this.
    PermissionDenied => "etcdserver: permission denied",
    /// The role is not granted to the user.
    RoleNotGranted => "etcdserver: role is not granted to the user",
    /// The permission is not granted to the role.
    PermissionNotGranted => "etcdserver: permission is not granted to the role",
    /// Authentication is not enabled.
    AuthNotEnabled => "etcdserver: authentication is not enabled",
    /// The token is invalid or expired.
    InvalidAuthToken => "etcdserver: invalid auth token",
    /// Invalid auth management request.
    InvalidAuthMgmt => "etcdserver: invalid auth management",
    /// The token was issued before an auth change.
    AuthOldRevision => "etcdserver: revision of auth store is old",
    /// The member has no leader.
    NoLeader => "etcdserver: no leader",
    /// The member is not the leader (MoveLeader).
    NotLeader => "etcdserver: not leader",
    /// The leader changed while the request was in flight.
    LeaderChanged => "etcdserver: leader changed",
    /// The cluster version does not support the request.
    NotCapable => "etcdserver: not capable",
    /// The server is stopping.
    Stopped => "etcdserver: server stopped",
    /// The request timed out in the server; a write may have been applied.
    Timeout => "etcdserver: request timed out",
    /// Timed out because the previous leader failed.
    TimeoutDueToLeaderFail => "etcdserver: request timed out, possibly due to previous leader failure",
    /// Timed out because a connection was lost.
    TimeoutDueToConnectionLost => "etcdserver: request timed out, possibly due to connection lost",
    /// Timed out waiting for the applied index.
    TimeoutWaitAppliedIndex => "etcdserver: request timed out, waiting for the applied index took too long",
    /// A membership change would lose quorum.
    Unhealthy => "etcdserver: unhealthy cluster",
    /// Data corruption was detected (CORRUPT alarm).
    Corrupt => "etcdserver: corrupt cluster",
    /// The call is not served by a learner.
    NotSupportedForLearner => "etcdserver: rpc not supported for learner",
    /// MoveLeader to a learner or unknown member.
    BadLeaderTransferee => "etcdserver: bad leader transferee",
    /// Cluster version missing during a downgrade.
    ClusterVersionUnavailable => "etcdserver: cluster version not found during downgrade",
    /// Malformed downgrade version.
    WrongDowngradeVersionFormat => "etcdserver: wrong downgrade target version format",
    /// The downgrade target is not one minor below.
    InvalidDowngradeTargetVersion => "etcdserver: invalid downgrade target version",
    /// A downgrade is already in progress.
    DowngradeInProcess => "etcdserver: cluster has a downgrade job in progress",
    /// No downgrade to cancel.
    NoInflightDowngrade => "etcdserver: no inflight downgrade job",
    /// Duplicate explicit watch ID on a stream.
    DuplicateWatchId => "mvcc: duplicate watch ID provided on the WatchStream",
    /// A watch whose range is empty.
    EmptyWatcherRange => "mvcc: watcher range is empty",
}

impl ServerError {
    /// Recognises an etcd error message. 3.5 also sends "auth: permission denied" (code Unknown)
    /// for some maintenance calls made without the root role.
    pub fn from_message(msg: &str) -> Option<ServerError> {
        if let Some(e) = ServerError::ALL
            .iter()
            .copied()
            .find(|e| e.message() == msg)
        {
            return Some(e);
        }
        match msg {
            "auth: permission denied" => Some(ServerError::PermissionDenied),
            // Authenticate as a user added with no_password (3.5, code Unknown).
            "auth: authentication failed, password was given for no password user" => {
                Some(ServerError::AuthFailed)
            }
            "auth: invalid auth token" => Some(ServerError::InvalidAuthToken),
            "auth: revision in header is old" => Some(ServerError::AuthOldRevision),
            "mvcc: required revision has been compacted" => Some(ServerError::Compacted),
            "mvcc: required revision is a future revision" => Some(ServerError::FutureRev),
            _ => None,
        }
    }

    /// Errors after which a write may still have been applied.
    pub fn leaves_outcome_unknown(self) -> bool {
        matches!(
            self,
            ServerError::Timeout
                | ServerError::TimeoutDueToLeaderFail
                | ServerError::TimeoutDueToConnectionLost
                | ServerError::TimeoutWaitAppliedIndex
                | ServerError::LeaderChanged
                | ServerError::Stopped
        )
    }
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_maps_back_to_its_error() {
        for e in ServerError::ALL {
            assert_eq!(ServerError::from_message(e.message()), Some(*e));
        }
    }

    #[test]
    fn tonic_message_size_errors_read_as_resource_exhausted() {
        let st = tonic::Status::out_of_range(
            "Error, decoded message length too large: found 5 bytes, the limit is: 4 bytes",
        );
        assert_eq!(
            Error::from_status("KV/Range", st).code(),
            Some(tonic::Code::ResourceExhausted)
        );
        let st = tonic::Status::out_of_range("something else");
        assert_eq!(
            Error::from_status("KV/Range", st).code(),
            Some(tonic::Code::OutOfRange)
        );
    }

    #[test]
    fn unknown_code_errors_are_still_recognised() {
        let st = tonic::Status::unknown("etcdserver: too many requests");
        match Error::from_status("KV/Put", st) {
            Error::Server { kind, code, .. } => {
                assert_eq!(kind, ServerError::TooManyRequests);
                assert_eq!(code, tonic::Code::Unknown);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Error::from_status("KV/Put", tonic::Status::unavailable("connection reset")),
            Error::Rpc { .. }
        ));
    }
}

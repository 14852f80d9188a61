//! Every unary RPC of etcd's v3 API the client sends, declared once: its method name, whether it
//! may be sent again after a failure, and where it may go (the shape of etcd Go's
//! `client/v3/retry.go`, which makes the same repeatable/non-repeatable split per method).
//!
//! A request type implements [`Rpc`] through the [`rpcs!`] table below; the service modules
//! then call [`Client::call`](crate::Client) (any healthy member) or `call_member` (one named
//! member), and the call path in `client.rs` applies the declared retry class. Routing is
//! checked at compile time: calling a member-local RPC on the balanced set (or the reverse)
//! does not build.
//!
//! This module knows the options, the transport and the generated stubs, nothing of the
//! client itself, so the dependency runs one way: the client and the services use it.

use std::future::Future;

use tonic::{Request, Response, Status, Streaming};

use crate::options::ConnectOptions;
use crate::proto::etcdserverpb as pb;
use crate::transport::Channel;

/// Whether a call may be sent again after a failure (etcd's client makes the same split).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads and other calls that change nothing, or change nothing twice: retried on
    /// `Unavailable` on any member.
    Repeatable,
    /// Writes: retried only when they provably never left the client.
    NonRepeatable,
}

/// Where an RPC may be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Routing {
    /// To any healthy member of the balanced set.
    Balanced,
    /// To one member named by its client URL (member-local state: status, hash, defragment,
    /// or a call that must reach the leader).
    Member,
    /// Either way, as the caller chooses.
    Either,
}

impl Routing {
    /// Whether the RPC may go to any member.
    pub(crate) const fn balanced(self) -> bool {
        matches!(self, Routing::Balanced | Routing::Either)
    }

    /// Whether the RPC may go to a named member.
    pub(crate) const fn member(self) -> bool {
        matches!(self, Routing::Member | Routing::Either)
    }
}

/// One unary RPC, implemented by its request message.
pub(crate) trait Rpc: prost::Message + Clone + Send + Sync + 'static {
    /// What a successful call returns.
    type Response: Send + 'static;
    /// `Service/Method`, as errors name it.
    const METHOD: &'static str;
    /// The retry class (see [`Retry`]).
    const RETRY: Retry;
    /// Where the RPC may go (see [`Routing`]).
    const ROUTING: Routing;

    /// Sends the request once on `ch`.
    fn send(
        opts: &ConnectOptions,
        ch: Channel,
        req: Request<Self>,
    ) -> impl Future<Output = Result<Response<Self::Response>, Status>> + Send + 'static;
}

/// The generated service stubs on a channel, with the client's message size limits.
pub(crate) mod stub {
    use super::{Channel, ConnectOptions, pb};

    macro_rules! stubs {
        ($($(#[$doc:meta])* $name:ident => $client:ty;)*) => {$(
            $(#[$doc])*
            pub(crate) fn $name(o: &ConnectOptions, ch: Channel) -> $client {
                <$client>::new(ch)
                    .max_decoding_message_size(o.max_recv_bytes)
                    .max_encoding_message_size(o.max_send_bytes)
            }
        )*};
    }

    stubs! {
        /// The KV service.
        kv => pb::kv_client::KvClient<Channel>;
        /// The Watch service.
        watch => pb::watch_client::WatchClient<Channel>;
        /// The Lease service.
        lease => pb::lease_client::LeaseClient<Channel>;
        /// The Cluster service.
        cluster => pb::cluster_client::ClusterClient<Channel>;
        /// The Maintenance service.
        maintenance => pb::maintenance_client::MaintenanceClient<Channel>;
        /// The Auth service.
        auth => pb::auth_client::AuthClient<Channel>;
    }
}

/// Declares RPCs: `Request => Response { "Service/Method", retry, routing, how to send }`,
/// where "how to send" is `stub.method` (a generated stub method) or `fn path` (a function
/// with [`Rpc::send`]'s signature, for the stream RPCs used as unary calls).
macro_rules! rpcs {
    ($($req:ty => $resp:ty { $method:literal, $retry:ident, $routing:ident, $($send:tt)+ })*) => {$(
        impl Rpc for $req {
            type Response = $resp;
            const METHOD: &'static str = $method;
            const RETRY: Retry = Retry::$retry;
            const ROUTING: Routing = Routing::$routing;

            fn send(
                opts: &ConnectOptions,
                ch: Channel,
                req: Request<Self>,
            ) -> impl Future<Output = Result<Response<Self::Response>, Status>> + Send + 'static {
                rpcs!(@send opts, ch, req, $($send)+)
            }
        }
    )*};
    (@send $opts:ident, $ch:ident, $req:ident, $stub:ident . $call:ident) => {{
        let mut stub = stub::$stub($opts, $ch);
        async move { stub.$call($req).await }
    }};
    (@send $opts:ident, $ch:ident, $req:ident, fn $f:path) => {
        $f($opts, $ch, $req)
    };
}

rpcs! {
    // KV. A txn is not repeatable even when read-only (`Client::txn_read_only` opts in).
    pb::RangeRequest => pb::RangeResponse { "KV/Range", Repeatable, Balanced, kv.range }
    pb::PutRequest => pb::PutResponse { "KV/Put", NonRepeatable, Balanced, kv.put }
    pb::DeleteRangeRequest => pb::DeleteRangeResponse {
        "KV/DeleteRange", NonRepeatable, Balanced, kv.delete_range
    }
    pb::TxnRequest => pb::TxnResponse { "KV/Txn", NonRepeatable, Balanced, kv.txn }
    pb::CompactionRequest => pb::CompactionResponse {
        "KV/Compact", NonRepeatable, Balanced, kv.compact
    }

    // Lease: etcd's client retries all of these, grants included.
    pb::LeaseGrantRequest => pb::LeaseGrantResponse {
        "Lease/LeaseGrant", Repeatable, Balanced, lease.lease_grant
    }
    pb::LeaseRevokeRequest => pb::LeaseRevokeResponse {
        "Lease/LeaseRevoke", Repeatable, Balanced, lease.lease_revoke
    }
    pb::LeaseTimeToLiveRequest => pb::LeaseTimeToLiveResponse {
        "Lease/LeaseTimeToLive", Repeatable, Balanced, lease.lease_time_to_live
    }
    pb::LeaseLeasesRequest => pb::LeaseLeasesResponse {
        "Lease/LeaseLeases", Repeatable, Balanced, lease.lease_leases
    }
    pb::LeaseKeepAliveRequest => pb::LeaseKeepAliveResponse {
        "Lease/LeaseKeepAlive", Repeatable, Balanced, fn keep_alive_once
    }

    // Cluster.
    pb::MemberListRequest => pb::MemberListResponse {
        "Cluster/MemberList", Repeatable, Balanced, cluster.member_list
    }
    pb::MemberAddRequest => pb::MemberAddResponse {
        "Cluster/MemberAdd", NonRepeatable, Balanced, cluster.member_add
    }
    pb::MemberRemoveRequest => pb::MemberRemoveResponse {
        "Cluster/MemberRemove", NonRepeatable, Balanced, cluster.member_remove
    }
    pb::MemberUpdateRequest => pb::MemberUpdateResponse {
        "Cluster/MemberUpdate", NonRepeatable, Balanced, cluster.member_update
    }
    pb::MemberPromoteRequest => pb::MemberPromoteResponse {
        "Cluster/MemberPromote", NonRepeatable, Balanced, cluster.member_promote
    }

    // Maintenance: member-local calls name their member; MoveLeader must reach the leader.
    pb::StatusRequest => pb::StatusResponse {
        "Maintenance/Status", Repeatable, Member, maintenance.status
    }
    pb::DefragmentRequest => pb::DefragmentResponse {
        "Maintenance/Defragment", NonRepeatable, Member, maintenance.defragment
    }
    pb::HashKvRequest => pb::HashKvResponse {
        "Maintenance/HashKV", Repeatable, Member, maintenance.hash_kv
    }
    pb::MoveLeaderRequest => pb::MoveLeaderResponse {
        "Maintenance/MoveLeader", Repeatable, Member, maintenance.move_leader
    }
    pb::AlarmRequest => pb::AlarmResponse {
        "Maintenance/Alarm", Repeatable, Balanced, maintenance.alarm
    }
    pb::DowngradeRequest => pb::DowngradeResponse {
        "Maintenance/Downgrade", NonRepeatable, Balanced, maintenance.downgrade
    }
    pb::SnapshotRequest => (Streaming<pb::SnapshotResponse>, pb::SnapshotResponse) {
        "Maintenance/Snapshot", Repeatable, Either, fn open_snapshot
    }

    // Auth: the reads are repeatable; every other auth call (AuthStatus and Authenticate
    // included) is sent again only when it provably never left the client.
    pb::AuthEnableRequest => pb::AuthEnableResponse {
        "Auth/AuthEnable", NonRepeatable, Balanced, auth.auth_enable
    }
    pb::AuthDisableRequest => pb::AuthDisableResponse {
        "Auth/AuthDisable", NonRepeatable, Balanced, auth.auth_disable
    }
    pb::AuthStatusRequest => pb::AuthStatusResponse {
        "Auth/AuthStatus", NonRepeatable, Balanced, auth.auth_status
    }
    pb::AuthenticateRequest => pb::AuthenticateResponse {
        "Auth/Authenticate", NonRepeatable, Balanced, auth.authenticate
    }
    pb::AuthUserAddRequest => pb::AuthUserAddResponse {
        "Auth/UserAdd", NonRepeatable, Balanced, auth.user_add
    }
    pb::AuthUserGetRequest => pb::AuthUserGetResponse {
        "Auth/UserGet", Repeatable, Balanced, auth.user_get
    }
    pb::AuthUserListRequest => pb::AuthUserListResponse {
        "Auth/UserList", Repeatable, Balanced, auth.user_list
    }
    pb::AuthUserDeleteRequest => pb::AuthUserDeleteResponse {
        "Auth/UserDelete", NonRepeatable, Balanced, auth.user_delete
    }
    pb::AuthUserChangePasswordRequest => pb::AuthUserChangePasswordResponse {
        "Auth/UserChangePassword", NonRepeatable, Balanced, auth.user_change_password
    }
    pb::AuthUserGrantRoleRequest => pb::AuthUserGrantRoleResponse {
        "Auth/UserGrantRole", NonRepeatable, Balanced, auth.user_grant_role
    }
    pb::AuthUserRevokeRoleRequest => pb::AuthUserRevokeRoleResponse {
        "Auth/UserRevokeRole", NonRepeatable, Balanced, auth.user_revoke_role
    }
    pb::AuthRoleAddRequest => pb::AuthRoleAddResponse {
        "Auth/RoleAdd", NonRepeatable, Balanced, auth.role_add
    }
    pb::AuthRoleGetRequest => pb::AuthRoleGetResponse {
        "Auth/RoleGet", Repeatable, Balanced, auth.role_get
    }
    pb::AuthRoleListRequest => pb::AuthRoleListResponse {
        "Auth/RoleList", Repeatable, Balanced, auth.role_list
    }
    pb::AuthRoleDeleteRequest => pb::AuthRoleDeleteResponse {
        "Auth/RoleDelete", NonRepeatable, Balanced, auth.role_delete
    }
    pb::AuthRoleGrantPermissionRequest => pb::AuthRoleGrantPermissionResponse {
        "Auth/RoleGrantPermission", NonRepeatable, Balanced, auth.role_grant_permission
    }
    pb::AuthRoleRevokePermissionRequest => pb::AuthRoleRevokePermissionResponse {
        "Auth/RoleRevokePermission", NonRepeatable, Balanced, auth.role_revoke_permission
    }
}

/// One renewal on a keepalive stream of its own: sends the request and waits for one answer.
fn keep_alive_once(
    opts: &ConnectOptions,
    ch: Channel,
    req: Request<pb::LeaseKeepAliveRequest>,
) -> impl Future<Output = Result<Response<pb::LeaseKeepAliveResponse>, Status>> + Send + 'static {
    let mut stub = stub::lease(opts, ch);
    async move {
        let mut answers = stub
            .lease_keep_alive(req.map(tokio_stream::once))
            .await?
            .into_inner();
        match answers.message().await? {
            Some(m) => Ok(Response::new(m)),
            None => Err(Status::unavailable(
                "keepalive stream ended without an answer",
            )),
        }
    }
}

/// Opens the snapshot stream and reads its first message, so that the call path retries the
/// opening (on another member, or with a refreshed token) while no data has arrived, as etcd's
/// client does for this one stream.
fn open_snapshot(
    opts: &ConnectOptions,
    ch: Channel,
    req: Request<pb::SnapshotRequest>,
) -> impl Future<
    Output = Result<Response<(Streaming<pb::SnapshotResponse>, pb::SnapshotResponse)>, Status>,
> + Send
+ 'static {
    let mut stub = stub::maintenance(opts, ch);
    async move {
        let mut stream = stub.snapshot(req).await?.into_inner();
        match stream.message().await? {
            Some(first) => Ok(Response::new((stream, first))),
            None => Err(Status::data_loss(
                "the snapshot stream ended before any data",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table agrees with etcd's client on the classes the parity audit names.
    #[test]
    fn retry_classes_follow_etcds_client() {
        assert_eq!(pb::RangeRequest::RETRY, Retry::Repeatable);
        assert_eq!(pb::PutRequest::RETRY, Retry::NonRepeatable);
        assert_eq!(pb::TxnRequest::RETRY, Retry::NonRepeatable);
        assert_eq!(pb::LeaseGrantRequest::RETRY, Retry::Repeatable);
        assert_eq!(pb::AuthStatusRequest::RETRY, Retry::NonRepeatable);
        assert_eq!(pb::AuthRoleListRequest::RETRY, Retry::Repeatable);
        assert_eq!(pb::DefragmentRequest::RETRY, Retry::NonRepeatable);
        assert_eq!(pb::RangeRequest::METHOD, "KV/Range");
        assert!(pb::StatusRequest::ROUTING.member() && !pb::StatusRequest::ROUTING.balanced());
        assert!(pb::SnapshotRequest::ROUTING.member() && pb::SnapshotRequest::ROUTING.balanced());
        assert!(!pb::PutRequest::ROUTING.member());
    }
}

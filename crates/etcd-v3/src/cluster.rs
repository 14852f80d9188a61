//! Cluster membership: list, add (as a voter or a learner), remove, update and promote members.
//!
//! ```no_run
//! # async fn demo(client: etcd_v3::Client) -> etcd_v3::Result<()> {
//! let added = client.member_add(["http://10.0.0.4:2380"], true).await?;
//! println!("new learner {}", added.member.id_hex());
//! client.member_promote(added.member.id).await?; // once it has caught up
//! # Ok(()) }
//! ```
//!
//! MemberList is repeatable (retried on `Unavailable`); MemberAdd, MemberRemove, MemberUpdate and
//! MemberPromote are not: a failure after the request left the client is reported as
//! [`Error::OutcomeUnknown`] when the server may have applied it.
//!
//! Server errors worth knowing (see [`ServerError`](super::ServerError)): a peer URL already used
//! → `PeerUrlExist`; more than one learner (3.5) → `TooManyLearners`; promoting a learner whose log
//! is below 90 % of the leader's → `LearnerNotReady`; promoting a voter → `MemberNotLearner`;
//! a change that would break the active quorum, or made less than 5 s after the members connected
//! (`--strict-reconfig-check`, on by default) → `Unhealthy`.

use super::client::Client;
use super::error::{Error, Result};
use super::proto::etcdserverpb as pb;

/// One member of the cluster, as the cluster's membership records it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Member {
    /// The member ID.
    pub id: u64,
    /// The member's name; empty until the member has started (for example a just-added member).
    pub name: String,
    /// The URLs the member's peers reach it on.
    pub peer_urls: Vec<String>,
    /// The URLs clients reach it on; empty until the member has started.
    pub client_urls: Vec<String>,
    /// Whether the member is a non-voting learner.
    pub is_learner: bool,
}

impl Member {
    /// The ID in lower-case hexadecimal, as etcd prints it (`8e9e05c52164694d`).
    pub fn id_hex(&self) -> String {
        format!("{:x}", self.id)
    }

    /// Whether the member has started (it has published its name).
    pub fn is_started(&self) -> bool {
        !self.name.is_empty()
    }
}

impl From<pb::Member> for Member {
    fn from(m: pb::Member) -> Self {
        Member {
            id: m.id,
            name: m.name,
            peer_urls: m.peer_urls,
            client_urls: m.client_urls,
            is_learner: m.is_learner,
        }
    }
}

/// The answer to [`Client::member_add`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberAdded {
    /// The member just added (no name and no client URLs until it starts).
    pub member: Member,
    /// Every member after the change, the new one included.
    pub members: Vec<Member>,
}

fn members(list: Vec<pb::Member>) -> Vec<Member> {
    list.into_iter().map(Member::from).collect()
}

/// Checks peer URLs before sending, as etcd's client does: each must be an absolute
/// `http://` or `https://` URL with a host and a port (and no path).
fn check_peer_urls(urls: &[String]) -> Result<()> {
    if urls.is_empty() {
        return Err(Error::InvalidArgument("no peer URLs given".into()));
    }
    for u in urls {
        let bad = |why: &str| Error::InvalidArgument(format!("invalid peer URL {u:?}: {why}"));
        let uri: http::Uri = u
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => return Err(bad("the scheme must be http or https")),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("no host"));
        }
        if uri.port_u16().is_none() {
            return Err(bad("no port"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("a peer URL has no path or query"));
        }
    }
    Ok(())
}

impl Client {
    async fn member_list_with(&self, linearizable: bool) -> Result<Vec<Member>> {
        let resp = self.call(pb::MemberListRequest { linearizable }).await?;
        Ok(members(resp.members))
    }

    /// Every member of the cluster. Linearizable (the Go client's default since 3.5): the answer
    /// goes through the leader, so it includes every change committed before the call. A 3.4
    /// server ignores the flag and answers from its local view.
    pub async fn member_list(&self) -> Result<Vec<Member>> {
        self.member_list_with(true).await
    }

    /// Every member of the cluster as the answering member knows it, without a round trip
    /// to the leader (it may miss a change just committed; it works without a leader).
    pub async fn member_list_serializable(&self) -> Result<Vec<Member>> {
        self.member_list_with(false).await
    }

    /// Adds a member with `peer_urls`, as a non-voting learner when `as_learner`. The new member
    /// must then be started with `--initial-cluster-state=existing`. Peer URLs are checked here
    /// first ([`Error::InvalidArgument`]). Not retried once sent.
    pub async fn member_add<I, S>(&self, peer_urls: I, as_learner: bool) -> Result<MemberAdded>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let peer_urls: Vec<String> = peer_urls.into_iter().map(Into::into).collect();
        check_peer_urls(&peer_urls)?;
        let req = pb::MemberAddRequest {
            peer_urls,
            is_learner: as_learner,
        };
        let resp = self.call(req).await?;
        let member = resp.member.map(Member::from).ok_or_else(|| Error::Rpc {
            method: "Cluster/MemberAdd",
            status: Box::new(tonic::Status::internal("the server's answer has no member")),
        })?;
        Ok(MemberAdded {
            member,
            members: members(resp.members),
        })
    }

    /// Removes the member `id`; returns the members left. A voter can only be removed when the
    /// rest keep an active quorum (else `ServerError::Unhealthy`); a member that is down, and any
    /// learner, can always be removed. Not retried once sent.
    pub async fn member_remove(&self, id: u64) -> Result<Vec<Member>> {
        let resp = self.call(pb::MemberRemoveRequest { id }).await?;
        Ok(members(resp.members))
    }

    /// Replaces the peer URLs of member `id`; returns every member after the change. Not
    /// retried once sent.
    pub async fn member_update<I, S>(&self, id: u64, peer_urls: I) -> Result<Vec<Member>>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let peer_urls: Vec<String> = peer_urls.into_iter().map(Into::into).collect();
        check_peer_urls(&peer_urls)?;
        let resp = self.call(pb::MemberUpdateRequest { id, peer_urls }).await?;
        Ok(members(resp.members))
    }

    /// Promotes the learner `id` to a voter; returns every member after the change. Only a
    /// learner whose log has reached 90 % of the leader's is promoted (else
    /// `ServerError::LearnerNotReady`); a follower forwards the call to the leader. Not retried
    /// once sent.
    pub async fn member_promote(&self, id: u64) -> Result<Vec<Member>> {
        let resp = self.call(pb::MemberPromoteRequest { id }).await?;
        Ok(members(resp.members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls_are_checked() {
        let ok = |u: &str| check_peer_urls(&[u.to_string()]).is_ok();
        assert!(ok("http://127.0.0.1:2380"));
        assert!(ok("https://etcd-0.etcd:2380"));
        assert!(ok("http://[::1]:2380/"));
        assert!(!ok("127.0.0.1:2380"));
        assert!(!ok("http://127.0.0.1"));
        assert!(!ok("unix://x:1"));
        assert!(!ok("http://a:1/path"));
        assert!(check_peer_urls(&[]).is_err());
    }

    #[test]
    fn id_hex_is_lower_case_without_padding() {
        let m = Member {
            id: 0x8e9e05c52164694d,
            name: String::new(),
            peer_urls: vec![],
            client_urls: vec![],
            is_learner: false,
        };
        assert_eq!(m.id_hex(), "8e9e05c52164694d");
        assert_eq!(Member { id: 0xa, ..m }.id_hex(), "a");
    }
}

//! Cluster membership calls against a real 3-member etcd 3.5 cluster (parity doc §6 "Members").

mod support;

use std::time::{Duration, Instant};

use etcd_v3::cluster::Member;
use etcd_v3::{Client, ConnectOptions, Error, ServerError};
use support::etcd::EtcdCluster;
use support::ports::free_port;

async fn client(cluster: &EtcdCluster) -> Client {
    Client::connect(
        cluster.endpoints(),
        ConnectOptions::new().with_request_timeout(Duration::from_secs(30)),
    )
    .await
    .expect("connect")
}

fn free_peer_url() -> String {
    format!("http://127.0.0.1:{}", free_port().expect("free port"))
}

fn by_name<'a>(members: &'a [Member], name: &str) -> &'a Member {
    members
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no member {name} in {members:?}"))
}

/// Runs `f` until it returns something other than `ServerError::Unhealthy`: with
/// `--strict-reconfig-check` etcd refuses membership changes until every voter has been connected
/// for 5 s (`HealthInterval`), which is the case for a just-started cluster.
async fn past_unhealthy<T, F, Fut>(mut f: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match f().await {
            Err(e) if e.server_error() == Some(ServerError::Unhealthy) => {
                assert!(Instant::now() < deadline, "still unhealthy after 30 s: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            other => return other,
        }
    }
}

fn assert_server_error<T: std::fmt::Debug>(r: Result<T, Error>, want: ServerError) {
    match r {
        Err(e) => assert_eq!(e.server_error(), Some(want), "got {e}"),
        Ok(v) => panic!("expected {want:?}, got Ok({v:?})"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn members_list_add_learner_promote_remove_update() {
    let cluster = EtcdCluster::builder().members(3).start().expect("etcd");
    let c = client(&cluster).await;

    // member_list (linearizable) and the serializable variant: three started voters.
    let list = c.member_list().await.expect("member list");
    assert_eq!(list.len(), 3, "{list:?}");
    assert!(list.iter().all(|m| !m.is_learner && m.is_started()));
    for (i, m) in cluster.members().iter().enumerate() {
        let listed = by_name(&list, &format!("m{i}"));
        assert_eq!(listed.peer_urls, vec![m.peer_url()]);
        assert_eq!(listed.client_urls, vec![m.client_url()]);
        assert_eq!(listed.id_hex(), format!("{:x}", listed.id));
    }
    let mut ser = c
        .member_list_serializable()
        .await
        .expect("serializable list");
    let mut lin = list.clone();
    ser.sort_by_key(|m| m.id);
    lin.sort_by_key(|m| m.id);
    assert_eq!(ser, lin);

    // Add a learner on a free port: it has no name or client URLs until it starts.
    let learner_url = free_peer_url();
    let added = past_unhealthy(|| c.member_add([learner_url.clone()], true))
        .await
        .expect("add learner");
    assert!(added.member.is_learner);
    assert!(!added.member.is_started());
    assert!(added.member.client_urls.is_empty());
    assert_eq!(added.member.peer_urls, vec![learner_url.clone()]);
    assert_eq!(added.members.len(), 4);
    assert!(added.members.contains(&added.member));
    let learner = added.member.id;

    // 3.5 allows one learner.
    assert_server_error(
        past_unhealthy(|| c.member_add([free_peer_url()], true)).await,
        ServerError::TooManyLearners,
    );

    // A learner that never started has not caught up with the leader.
    assert_server_error(
        c.member_promote(learner).await,
        ServerError::LearnerNotReady,
    );

    // member_update replaces its peer URLs.
    let moved_url = free_peer_url();
    let after = c
        .member_update(learner, [moved_url.clone()])
        .await
        .expect("member update");
    let updated = after.iter().find(|m| m.id == learner).expect("learner");
    assert_eq!(updated.peer_urls, vec![moved_url.clone()]);
    let listed = c.member_list().await.expect("list");
    assert_eq!(
        listed
            .iter()
            .find(|m| m.id == learner)
            .expect("learner")
            .peer_urls,
        vec![moved_url]
    );

    // Removing a learner skips the quorum check.
    let left = c.member_remove(learner).await.expect("remove learner");
    assert_eq!(left.len(), 3);
    assert!(left.iter().all(|m| m.id != learner));

    // A peer URL already used by a member.
    let taken = cluster.member(0).peer_url();
    assert_server_error(
        past_unhealthy(|| c.member_add([taken.clone()], false)).await,
        ServerError::PeerUrlExist,
    );

    // Promoting a voter.
    let voter = by_name(&list, "m1").id;
    assert_server_error(c.member_promote(voter).await, ServerError::MemberNotLearner);

    // Unknown member.
    assert_server_error(c.member_remove(0x1234).await, ServerError::MemberNotFound);

    // Bad URLs are refused before sending.
    assert!(matches!(
        c.member_add(["127.0.0.1:2380"], true).await,
        Err(Error::InvalidArgument(_))
    ));
}

/// Whether the member serving metrics on `port` has an active peer connection to `remote_hex`.
fn peer_active(port: u16, remote_hex: &str) -> bool {
    let Ok(body) = support::etcd::http_get(port, "/metrics") else {
        return true;
    };
    let needle = format!("Remote=\"{remote_hex}\"");
    body.lines().any(|l| {
        l.starts_with("etcd_network_active_peers{") && l.contains(&needle) && !l.ends_with(" 0")
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn member_remove_protects_quorum_but_allows_removing_a_dead_member() {
    let mut cluster = EtcdCluster::builder().members(3).start().expect("etcd");
    let c = client(&cluster).await;
    let list = c.member_list().await.expect("list");
    let (m1, m2) = (by_name(&list, "m1").id, by_name(&list, "m2").id);
    // Let every peer connection age past etcd's 5 s health interval, so that the refusal below
    // is about the dead member and not about a young cluster.
    tokio::time::sleep(Duration::from_secs(6)).await;

    cluster.kill(2);
    // The quorum check counts a peer as active until its peer connection is seen broken; wait
    // until m0 and m1 both report m2 inactive (etcd_network_active_peers drops to 0).
    let m2_hex = format!("{m2:x}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(0..2).all(|i| !peer_active(cluster.member(i).client_port, &m2_hex)) {
        assert!(Instant::now() < deadline, "m2 still seen active");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Removing live voter m1 would leave {m0, m2} with only m0 up: no quorum.
    assert_server_error(c.member_remove(m1).await, ServerError::Unhealthy);
    assert_eq!(c.member_list().await.expect("list").len(), 3);

    // Removing the dead member is allowed (once its peer connection is seen down).
    let left = past_unhealthy(|| c.member_remove(m2))
        .await
        .expect("remove dead member");
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|m| m.id != m2));
    let names: Vec<String> = c
        .member_list()
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(!names.contains(&"m2".to_string()));
}

/// §2.2 `[P]` learners: a started learner refuses writes and linearizable reads with
/// `NotSupportedForLearner`; a client whose endpoints include it moves those calls (puts too,
/// since the learner refused them without applying anything) to the voter, so every call
/// succeeds. A client on the learner alone gets the typed error, and still serves serializable
/// reads there.
#[tokio::test(flavor = "multi_thread")]
async fn learner_not_supported_is_retried_on_another_endpoint() {
    let mut cluster = EtcdCluster::single().expect("etcd");
    let voter = client(&cluster).await;
    let (client_port, peer_port) = (free_port().expect("port"), free_port().expect("port"));
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    past_unhealthy(|| voter.member_add([peer_url.clone()], true))
        .await
        .expect("add learner");
    let i = cluster
        .join_member("learner", client_port, peer_port)
        .expect("start learner");
    let learner_url = cluster.member(i).client_url();
    let alone = Client::connect(
        [learner_url.clone()],
        ConnectOptions::new().with_request_timeout(Duration::from_secs(30)),
    )
    .await
    .expect("connect to the learner");
    // Wait until the learner serves (serializable reads are allowed on learners).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match alone.status(&learner_url).await {
            Ok(st) if st.is_learner && st.raft_applied_index > 0 => break,
            other => {
                assert!(Instant::now() < deadline, "learner not serving: {other:?}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    let learner_id = alone.status(&learner_url).await.expect("status").member_id;

    assert_server_error(
        alone.put("l/k", "v", etcd_v3::kv::PutOptions::new()).await,
        ServerError::NotSupportedForLearner,
    );
    let both = Client::connect(
        [learner_url.clone(), cluster.endpoints()[0].clone()],
        ConnectOptions::new().with_request_timeout(Duration::from_secs(30)),
    )
    .await
    .expect("connect to both");
    for n in 0..10 {
        let key = format!("l/{n}");
        both.put(&key, "v", etcd_v3::kv::PutOptions::new())
            .await
            .expect("put retried on the voter");
        let got = both
            .get(&key, etcd_v3::kv::GetOptions::new())
            .await
            .expect("linearizable get retried on the voter");
        assert_eq!(got.count, 1);
        assert_ne!(got.header.member_id, learner_id, "answered by the learner");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = alone
            .get("l/9", etcd_v3::kv::GetOptions::new().with_serializable())
            .await
            .expect("serializable get on the learner");
        if got.count == 1 {
            assert_eq!(got.header.member_id, learner_id);
            break;
        }
        assert!(Instant::now() < deadline, "learner never caught up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

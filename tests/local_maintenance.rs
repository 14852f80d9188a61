//! Operator-driven maintenance under the local operator, on real etcd 3.5.16: a fragmented
//! cluster is defragmented member by member (followers first, the leader last), and a cluster
//! that ran out of space (NOSPACE) is compacted, defragmented and disarmed without a human.

mod support;

use std::time::Duration;

use etcd_operator::api::EtcdClusterStatus;
use etcd_operator::etcd::ServerError;
use etcd_operator::etcd::kv::{DeleteOptions, PutOptions};
use support::local::{LocalOperator, fill, manifest};

const CONVERGE: Duration = Duration::from_secs(180);
const MIB: i64 = 1024 * 1024;

/// [`manifest`] with a `maintenance` section and, optionally, a backend quota.
fn maintenance_manifest(name: &str, quota: Option<i64>, maintenance: &str) -> String {
    let mut text = manifest(name, 3, "3.5.16");
    if let Some(q) = quota {
        text = text.replace(
            "  etcd:\n",
            &format!("  etcd:\n    quotaBackendBytes: {q}\n"),
        );
    }
    format!("{text}  maintenance:\n{maintenance}")
}

fn member<'a>(s: &'a EtcdClusterStatus, name: &str) -> &'a etcd_operator::api::MemberStatus {
    s.members
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("{name} in {s:#?}"))
}

/// The ordinals in the order the operator logged "defragment member N" steps, each with the
/// leader named on that line.
fn defrag_order(log: &str, cluster: &str) -> Vec<(String, String)> {
    log.lines()
        .filter_map(|l| {
            let rest = l.split(": defragment member ").nth(1)?;
            let ordinal = rest.split(' ').next()?;
            let leader = l.rsplit("leader ").next()?.trim_end_matches(')').to_owned();
            Some((format!("{cluster}-{ordinal}"), leader))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_members_are_defragmented_one_by_one_leader_last() {
    let off = "    defragmentation:\n      enabled: false\n      minDbSizeBytes: 1048576\n";
    let mut op =
        LocalOperator::start("mt", &maintenance_manifest("mt", None, off)).expect("operator");
    op.wait_converged(3, "3.5.16", CONVERGE);
    let client = op.client().await;
    // About 20 MiB of values, then all deleted and the history compacted: the files keep their
    // size, almost nothing in them is in use.
    let (written, refused) = fill(&client, "mt/", 20).await;
    assert_eq!((written, refused), (20, None));
    let deleted = client
        .delete("mt/", DeleteOptions::new().with_prefix())
        .await
        .expect("delete");
    assert_eq!(deleted.deleted, 200);
    client
        .compact(deleted.header.revision, true)
        .await
        .expect("compact");
    let fragmented = |s: &EtcdClusterStatus| {
        s.members.len() == 3
            && s.members.iter().all(|m| {
                let (size, used) = (m.db_size.unwrap_or(0), m.db_size_in_use.unwrap_or(0));
                size >= 16 * MIB && used * 2 < size
            })
    };
    // bbolt frees the compacted pages at a member's next write: a few small writes make every
    // member report its free space (as the writes of a live cluster do).
    let deadline = std::time::Instant::now() + CONVERGE;
    let before = loop {
        client
            .put("mt-tick", "x", PutOptions::new())
            .await
            .expect("tick");
        if let Some(s) = op.status().filter(|s| fragmented(s)) {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never fragmented: {:#?}\n{}",
            op.status(),
            op.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Disabled: nothing is defragmented (several passes of the operator go by).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = op.status().expect("status");
    assert!(fragmented(&still), "{still:#?}");
    assert!(!op.log().contains("defragment member"), "{}", op.log());
    let leader = before.leader.clone().expect("a leader");

    let on =
        "    defragmentation:\n      minDbSizeBytes: 1048576\n      maxFragmentationPercent: 50\n";
    op.write_manifest(&maintenance_manifest("mt", None, on))
        .expect("edit");
    let after = op.wait_status("every member defragmented", CONVERGE, |s| {
        s.phase.as_deref() == Some("Healthy")
            && s.members.len() == 3
            && s.members.iter().all(|m| m.last_defragmentation.is_some())
    });
    for m in &before.members {
        let now = member(&after, &m.name);
        let record = now.last_defragmentation.as_ref().expect("record");
        let (size_before, size_now) = (m.db_size.unwrap_or(0), now.db_size.unwrap_or(0));
        eprintln!(
            "{}: db size {size_before} → {size_now} (in use {:?}); record {record:?}",
            m.name, now.db_size_in_use
        );
        assert!(
            record.db_size_before >= 16 * MIB && record.db_size_after * 4 < record.db_size_before,
            "{}: {record:?}",
            m.name
        );
        assert!(
            size_now * 4 < size_before,
            "{}: {size_before} → {size_now}",
            m.name
        );
    }
    let log = op.log();
    let order = defrag_order(&log, "mt");
    assert_eq!(
        order.len(),
        3,
        "one defragmentation per member: {order:?}\n{log}"
    );
    let names: Vec<&str> = order.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names.last(),
        Some(&leader.as_str()),
        "leader last: {order:?}"
    );
    assert!(
        order.iter().all(|(_, l)| *l == leader),
        "leadership moved while defragmenting: {order:?}"
    );
    assert!(log.contains("Defragmented member mt-"), "{log}");
    // Once defragmented, nothing more: the files stay small and no step repeats.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(defrag_order(&op.log(), "mt").len(), 3, "{}", op.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nospace_is_compacted_defragmented_and_disarmed_without_a_human() {
    const QUOTA: i64 = 24 * MIB;
    let manual = "    alarms:\n      handleNoSpace: false\n";
    let mut op = LocalOperator::start("ns", &maintenance_manifest("ns", Some(QUOTA), manual))
        .expect("operator");
    op.wait_converged(3, "3.5.16", CONVERGE);
    let client = op.client().await;
    let (written, refused) = fill(&client, "ns/", 100).await;
    let refused = refused.expect("etcd refused writes once the quota was reached");
    assert!(refused.contains("database space exceeded"), "{refused}");
    eprintln!("NOSPACE after {written} batches of 1 MiB: {refused}");
    // Left to a person: the alarm is reported and stays.
    let raised = op.wait_status("NOSPACE reported", CONVERGE, |s| {
        s.members
            .iter()
            .any(|m| m.alarms.iter().any(|a| a == "NOSPACE"))
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Degraded" && c.status == "True" && c.reason == "NoSpace")
    });
    let degraded = raised
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .expect("Degraded");
    assert!(
        degraded.message.contains("handleNoSpace is false"),
        "{degraded:?}"
    );
    let put = client.put("ns/probe", "x", PutOptions::new()).await;
    assert_eq!(
        put.as_ref().err().and_then(|e| e.server_error()),
        Some(ServerError::NoSpace),
        "{put:?}"
    );
    // Deleting is allowed under NOSPACE; the space comes back only once defragmented.
    let deleted = client
        .delete("ns/", DeleteOptions::new().with_prefix())
        .await
        .expect("delete under NOSPACE");
    assert!(deleted.deleted > 0);
    let sizes_before: Vec<(String, i64)> = op
        .status()
        .expect("status")
        .members
        .iter()
        .map(|m| (m.name.clone(), m.db_size.unwrap_or(0)))
        .collect();

    op.write_manifest(&maintenance_manifest(
        "ns",
        Some(QUOTA),
        "    alarms:\n      handleNoSpace: true\n",
    ))
    .expect("edit");
    let healed = op.wait_status("NOSPACE recovered", CONVERGE, |s| {
        s.phase.as_deref() == Some("Healthy")
            && s.members.len() == 3
            && s.members.iter().all(|m| m.alarms.is_empty())
            && s.maintenance
                .as_ref()
                .is_some_and(|m| m.last_alarm_disarmed.is_some())
    });
    for (name, before) in &sizes_before {
        let m = member(&healed, name);
        let now = m.db_size.unwrap_or(0);
        eprintln!(
            "{name}: db size {before} → {now}; {:?}",
            m.last_defragmentation
        );
        assert!(
            m.last_defragmentation.is_some(),
            "{name} was not defragmented"
        );
        assert!(now * 100 < QUOTA * 95, "{name}: {now} bytes left");
    }
    let maintenance = healed.maintenance.as_ref().expect("maintenance status");
    let compaction = maintenance.last_compaction.as_ref().expect("compacted");
    assert!(
        compaction.revision >= deleted.header.revision,
        "{compaction:?}"
    );
    let disarmed = maintenance.last_alarm_disarmed.as_ref().expect("disarmed");
    assert_eq!(disarmed.alarm, "NOSPACE");
    let log = op.log();
    support::local::assert_in_order(
        &log,
        &[
            "NOSPACE alarm raised: compact the history to revision",
            "Compacted the history to revision",
            "defragment member",
            "Defragmented member ns-",
            "defragment member",
            "defragment member",
            "disarm the NOSPACE alarm",
            "Disarmed the NOSPACE alarm of member ns-",
        ],
    );
    let alarms = client.alarm_list().await.expect("alarm list");
    assert!(alarms.is_empty(), "{alarms:?}");
    // Writes work again, with no human having touched the alarm.
    client
        .put("ns/after", "ok", PutOptions::new())
        .await
        .expect("a write after recovery");
    let (written_after, refused_after) = fill(&client, "ns2/", 5).await;
    assert_eq!((written_after, refused_after), (5, None));
}

//! Corruption under the local operator, on real etcd 3.5.16: one member's data file is
//! corrupted behind etcd's back (the bytes of one value overwritten in its bbolt file while the
//! cluster is stopped), and the operator's periodic consistency check (`HashKV` of every voter
//! at one revision) finds it, reports it (`status.corruptionCheck`, the member's `corrupt`
//! field, `Degraded` with reason `MemberCorrupt`, an Event in `events.log`), replaces that
//! member from the healthy majority (a new member ID at the same ordinal) and ends healthy with
//! every key as written.
//!
//! Two detection paths, one test each:
//! - the operator's own check (the default): the operator renders no
//!   `--experimental-initial-corrupt-check` or `--experimental-corrupt-check-time` by default, so
//!   etcd itself starts the corrupted member without complaint and raises no `CORRUPT` alarm
//!   (bbolt checksums only its meta pages, not the leaf holding the value);
//! - etcd's own periodic check (`--experimental-corrupt-check-time=2s` in `extraFlags`, the
//!   operator's periodic check off): etcd 3.5.16's leader raises `CORRUPT` on member ID 0 (it
//!   names no member), after which etcd refuses reads and writes cluster-wide; the raised alarm
//!   makes the operator check the hashes at once, replace the member the majority disagrees
//!   with, and only then disarm the alarm.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use etcd_operator::api::EtcdClusterStatus;
use etcd_operator::etcd::Client;
use etcd_operator::etcd::kv::{GetOptions, PutOptions};
use support::local::{LocalOperator, check_keys, converged, manifest, member_list, write_keys};

const CONVERGE: Duration = Duration::from_secs(180);
const KEY: &str = "corruption/target";
const VALUE: &[u8] = b"CORRUPT-ME-0123456789";
const WRONG: &[u8] = b"CORRUPT-ME-9876543210";

/// Every file named `name` under `dir`.
fn find_files(dir: &Path, name: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            find_files(&p, name, out);
        } else if p.file_name().is_some_and(|n| n == name) {
            out.push(p);
        }
    }
}

/// Overwrites every occurrence of [`VALUE`] in `path` with [`WRONG`] (same length); how many.
fn corrupt_file(path: &Path) -> usize {
    let mut bytes = std::fs::read(path).expect("read the db");
    let mut n = 0;
    let mut i = 0;
    while i + VALUE.len() <= bytes.len() {
        if &bytes[i..i + VALUE.len()] == VALUE {
            bytes[i..i + VALUE.len()].copy_from_slice(WRONG);
            n += 1;
            i += VALUE.len();
        } else {
            i += 1;
        }
    }
    std::fs::write(path, &bytes).expect("write the db");
    n
}

fn id_of(status: &EtcdClusterStatus, name: &str) -> Option<String> {
    status
        .members
        .iter()
        .find(|m| m.name == name)
        .and_then(|m| m.id.clone())
}

fn degraded_corrupt(s: &EtcdClusterStatus) -> bool {
    s.conditions
        .iter()
        .any(|c| c.type_ == "Degraded" && c.status == "True" && c.reason == "MemberCorrupt")
}

/// HashKV of every member at the lowest revision they report.
async fn hashes(client: &Client, urls: &[String]) -> Vec<(String, u32)> {
    let mut revision = i64::MAX;
    for u in urls {
        let s = client.status(u).await.expect("status");
        revision = revision.min(s.revision);
    }
    let mut out = Vec::new();
    for u in urls {
        let h = client.hash_kv(u, revision).await.expect("hash_kv");
        out.push((u.clone(), h.hash));
    }
    out
}

/// Which check finds the corruption.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Detector {
    /// The operator's `HashKV` check.
    Operator,
    /// etcd's periodic corruption check, which raises the `CORRUPT` alarm.
    Etcd,
}

/// Three members; the value [`VALUE`] and 50 keys written; everything stopped; the value's bytes
/// overwritten in member 2's bbolt file; the operator started again. Asserts the report, the
/// replacement, the data and the hashes afterwards.
async fn corrupt_one_member(cluster: &str, detector: Detector) {
    let started = Instant::now();
    let mut text = manifest(cluster, 3, "3.5.16");
    let maintenance = match detector {
        Detector::Operator => {
            "  maintenance:\n    corruptionCheck:\n      enabled: true\n      every: 10s\n"
        }
        Detector::Etcd => {
            text = text.replace(
                "extraFlags: [\"--unsafe-no-fsync=true\"]",
                "extraFlags: [\"--unsafe-no-fsync=true\", \"--experimental-corrupt-check-time=2s\"]",
            );
            "  maintenance:\n    corruptionCheck:\n      enabled: false\n"
        }
    };
    let text = format!("{text}{maintenance}");
    let member2 = format!("{cluster}-2");
    let mut op = LocalOperator::start(cluster, &text).expect("operator");
    op.wait_converged(3, "3.5.16", CONVERGE);
    let client = op.client().await;
    client
        .put(KEY, VALUE, PutOptions::new())
        .await
        .expect("put the target");
    write_keys(&client, "corruption/k", 50).await;
    let before = match detector {
        Detector::Operator => op.wait_status("a consistent check", CONVERGE, |s| {
            s.corruption_check
                .as_ref()
                .is_some_and(|c| c.result == "Consistent" && c.hashes.len() == 3)
        }),
        Detector::Etcd => op.status().expect("status"),
    };
    let old_id = id_of(&before, &member2).expect("member 2 has an ID");
    eprintln!("converged after {:?}", started.elapsed());
    drop(client);
    // Let the backends commit (every 100 ms), then stop everything.
    tokio::time::sleep(Duration::from_secs(2)).await;
    op.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut dbs = Vec::new();
    find_files(&op.member_dir(2), "db", &mut dbs);
    let db = dbs
        .into_iter()
        .find(|p| p.ends_with("member/snap/db"))
        .expect("member 2's member/snap/db");
    let replaced = corrupt_file(&db);
    assert!(replaced > 0, "{VALUE:?} not found in {}", db.display());
    eprintln!(
        "overwrote {replaced} copies of the value in {}",
        db.display()
    );

    let relaunched = Instant::now();
    op.launch(&[]).expect("relaunch");
    // Reported: the operator's check (run on its schedule, or at once while etcd raises a
    // CORRUPT alarm) marks the member (`corrupt`) and the cluster Degraded (MemberCorrupt).
    let reported =
        |s: &EtcdClusterStatus| degraded_corrupt(s) || s.members.iter().any(|m| m.corrupt);
    let mut seen: Option<EtcdClusterStatus> = None;
    let deadline = Instant::now() + CONVERGE;
    while Instant::now() < deadline {
        if let Some(s) = op.status()
            && reported(&s)
        {
            seen = Some(s);
            break;
        }
        assert!(op.is_running(), "operator exited:\n{}", op.log_tail());
        std::thread::sleep(Duration::from_millis(100));
    }
    let seen = seen.unwrap_or_else(|| {
        panic!(
            "no corruption reported within {CONVERGE:?}; status {:#?}\n{}",
            op.status(),
            op.log_tail()
        )
    });
    let detected = relaunched.elapsed();
    {
        let check = seen
            .corruption_check
            .clone()
            .expect("status.corruptionCheck");
        assert_eq!(check.result, "MemberCorrupt", "{check:#?}");
        assert_eq!(
            check.corrupt_members,
            vec![old_id.clone()],
            "the corrupt member is member 2: {check:#?}"
        );
        assert!(check.message.contains(&member2), "{}", check.message);
        eprintln!(
            "{detector:?}: reported {detected:?} after the relaunch: {}",
            check.message
        );
    }

    // Replaced: a new member at ordinal 2, healthy with three voters, no alarm left.
    let done = op.wait_status("member 2 replaced and the cluster healthy", CONVERGE, |s| {
        converged(s, 3, "3.5.16")
            && id_of(s, &member2).is_some_and(|id| id != old_id)
            && !degraded_corrupt(s)
            && s.members.iter().all(|m| !m.corrupt && m.alarms.is_empty())
    });
    let healed = relaunched.elapsed();
    assert_ne!(id_of(&done, &member2), Some(old_id));

    let client = op.client().await;
    let members = member_list(&client).await;
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(
        members.iter().all(|(_, _, learner)| !learner),
        "{members:?}"
    );
    let got = client.get(KEY, GetOptions::new()).await.expect("get");
    assert_eq!(got.kvs.len(), 1);
    assert_eq!(&got.kvs[0].value[..], VALUE);
    check_keys(&client, "corruption/k", 50).await;
    let urls = op.all_client_urls();
    let hs = hashes(&client, &urls).await;
    assert_eq!(hs.len(), 3);
    assert!(
        hs.iter().all(|(_, h)| *h == hs[0].1),
        "hashes differ: {hs:?}"
    );
    // Every member answers the original value from its own store.
    for u in &urls {
        let one = Client::connect(vec![u.clone()], etcd_operator::etcd::ConnectOptions::new())
            .await
            .expect("client");
        let got = one
            .get(KEY, GetOptions::new().with_serializable())
            .await
            .expect("serializable get");
        assert_eq!(&got.kvs[0].value[..], VALUE, "{u}");
    }

    let mut logs = Vec::new();
    find_files(&op.state_dir(), "events.log", &mut logs);
    let events: String = logs
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect();
    match detector {
        Detector::Operator => assert!(events.contains("MemberCorrupt"), "events:\n{events}"),
        Detector::Etcd => {
            assert!(events.contains("AlarmDisarmed"), "events:\n{events}");
            let disarmed = done
                .maintenance
                .as_ref()
                .and_then(|m| m.last_alarm_disarmed.as_ref())
                .expect("lastAlarmDisarmed");
            assert_eq!(disarmed.alarm, "CORRUPT");
        }
    }
    eprintln!(
        "{detector:?}: detected {detected:?}, replaced {healed:?} after the relaunch; whole test {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_corrupted_data_is_found_and_replaced_from_the_majority() {
    corrupt_one_member("cc", Detector::Operator).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_etcd_raised_corrupt_on_is_replaced_and_the_alarm_disarmed() {
    corrupt_one_member("ce", Detector::Etcd).await;
}

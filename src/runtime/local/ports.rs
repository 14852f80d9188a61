//! Port blocks: every cluster of every local operator on this machine gets a block of loopback
//! ports of its own.
//!
//! A block is chosen once, when a cluster is first seen, and recorded in its `cluster.yaml`. Two
//! allocations must never hand out overlapping blocks, even when they run at the same moment and
//! before any member has bound its ports (a bind check alone cannot see a block another
//! allocation just chose). So a block is chosen and recorded under two exclusive locks:
//!
//! - `<state-dir>/ports.lock`: the clusters of one state directory (several clusters of one
//!   manifest open together);
//! - `<registry>/etcd-operator-ports.lock` (the registry is the system temporary folder): every
//!   local operator of the machine, whatever its state directory.
//!
//! Under them, the blocks excluded are those recorded in any `cluster.yaml` of the state directory
//! and those reserved in `<registry>/etcd-operator-ports.yaml` by a live operator (each
//! reservation records the operator's pid, the start time of that process, so a reused pid is not
//! mistaken for it, and when it was made). An operator reserves the blocks it allocates and the
//! blocks of the clusters it resumes. Blocks are aligned slots of [`PORTS_PER_CLUSTER`] ports
//! from the start of the range, tried from a random slot on, and a slot is taken only when all
//! its ports bind. The decisions ([`free_slots`], [`live_reservations`], [`parse_start_time`])
//! are pure functions; [`Allocator`] does the locking and the files.

use std::fs::File;
use std::net::TcpListener;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::LocalError;
use super::store::{PortBlock, read_yaml, write_yaml};
use crate::controller::plan::MAX_REPLICAS;

/// Ports one cluster needs: a client and a peer port for every ordinal it may use.
pub const PORTS_PER_CLUSTER: u16 = 2 * (MAX_REPLICAS as u16 + 1);

/// The ports of one kind (client or peer) in a block.
const PORTS_PER_KIND: u16 = PORTS_PER_CLUSTER / 2;

/// The name of the registry's lock and data files in the registry folder.
const REGISTRY: &str = "etcd-operator-ports";

/// The ports blocks may use, both bounds included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// The lowest port.
    pub first: u16,
    /// The highest port.
    pub last: u16,
}

impl Default for PortRange {
    /// 12000-32019: below Linux's ephemeral range (32768 on), so clients' outgoing ports never
    /// take them.
    fn default() -> Self {
        PortRange {
            first: 12000,
            last: 32019,
        }
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("{s:?}: expected <first>-<last>, say 12000-32019"))?;
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .map_err(|e| format!("{s:?}: {p:?} is not a port: {e}"))
        };
        let range = PortRange {
            first: port(a)?,
            last: port(b)?,
        };
        if range.first == 0 || range.slots() == 0 {
            return Err(format!(
                "{s:?}: the range must hold at least {PORTS_PER_CLUSTER} ports and start above 0"
            ));
        }
        Ok(range)
    }
}

impl PortRange {
    /// How many whole blocks fit.
    pub fn slots(&self) -> u32 {
        let len = (u32::from(self.last) + 1).saturating_sub(u32::from(self.first));
        len / u32::from(PORTS_PER_CLUSTER)
    }

    /// The first port of slot `i`.
    fn slot(&self, i: u32) -> u16 {
        let base = u32::from(self.first) + i * u32::from(PORTS_PER_CLUSTER);
        u16::try_from(base).unwrap_or(u16::MAX)
    }
}

impl PortBlock {
    /// The ports this record uses: its client ports and its peer ports.
    pub fn ranges(&self) -> [Range<u32>; 2] {
        let kind = |base: u16| u32::from(base)..u32::from(base) + u32::from(PORTS_PER_KIND);
        [kind(self.client_base_port), kind(self.peer_base_port)]
    }
}

/// The ports of the block starting at `base`.
pub fn block(base: u16) -> Range<u32> {
    u32::from(base)..u32::from(base) + u32::from(PORTS_PER_CLUSTER)
}

fn overlaps(a: &Range<u32>, b: &Range<u32>) -> bool {
    a.start < b.end && b.start < a.end
}

/// The first ports of the slots of `range` that overlap none of `taken`, starting at slot
/// `start` (modulo the slot count) and wrapping around.
pub fn free_slots(range: PortRange, taken: &[Range<u32>], start: u32) -> Vec<u16> {
    let n = range.slots();
    (0..n)
        .map(|i| range.slot((start + i) % n.max(1)))
        .filter(|base| !taken.iter().any(|t| overlaps(&block(*base), t)))
        .collect()
}

/// One block reserved by a local operator, in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reservation {
    /// Its first port.
    pub base: u16,
    /// How many ports from `base` on.
    pub ports: u16,
    /// The operator's process.
    pub pid: u32,
    /// That process's start time (clock ticks after boot, `/proc/<pid>/stat`), so that another
    /// process reusing the pid does not hold the block.
    pub started: u64,
    /// When the block was reserved (RFC 3339), for people reading the file.
    pub time: String,
    /// The cluster (`<state-dir>/<namespace>/<name>`) it is for.
    pub cluster: String,
}

impl Reservation {
    /// Its ports.
    pub fn range(&self) -> Range<u32> {
        u32::from(self.base)..u32::from(self.base) + u32::from(self.ports)
    }
}

/// The reservations of live operators: those whose process `(pid, started)` still runs, as
/// `running` says (the start time of the process with that pid now, if one runs).
pub fn live_reservations(
    all: Vec<Reservation>,
    running: impl Fn(u32) -> Option<u64>,
) -> Vec<Reservation> {
    all.into_iter()
        .filter(|r| running(r.pid) == Some(r.started))
        .collect()
}

/// The start time of a process from the text of its `/proc/<pid>/stat` (field 22; the command
/// name, field 2, is in parentheses and may hold spaces and parentheses itself).
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Fields from 3 (state) on; the start time is field 22.
    after_name.split_whitespace().nth(19)?.parse().ok()
}

fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// The registry file: every reservation.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Registry {
    #[serde(default)]
    reservations: Vec<Reservation>,
}

/// Chooses and records port blocks (see the module documentation). Its methods block: call
/// them from a blocking thread.
#[derive(Debug, Clone)]
pub struct Allocator {
    range: PortRange,
    registry_dir: PathBuf,
}

/// An exclusive `flock` on a file, released when dropped (closing the file).
struct Locked {
    _file: File,
}

fn lock(path: &Path) -> Result<Locked, LocalError> {
    let io = |e| LocalError::io(format!("locking {}", path.display()), e);
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io)?;
    f.lock().map_err(io)?;
    Ok(Locked { _file: f })
}

impl Allocator {
    /// Blocks within `range`, the registry in the system temporary folder.
    pub fn new(range: PortRange) -> Self {
        Self::with_registry(range, std::env::temp_dir())
    }

    /// Blocks within `range`, the registry in `registry_dir` (tests use their own).
    pub fn with_registry(range: PortRange, registry_dir: PathBuf) -> Self {
        Self {
            range,
            registry_dir,
        }
    }

    /// The range blocks are chosen in.
    pub fn range(&self) -> PortRange {
        self.range
    }

    fn registry_lock(&self) -> Result<Locked, LocalError> {
        lock(&self.registry_dir.join(format!("{REGISTRY}.lock")))
    }

    fn registry_path(&self) -> PathBuf {
        self.registry_dir.join(format!("{REGISTRY}.yaml"))
    }

    /// The live reservations (the dead ones dropped).
    fn read_registry(&self) -> Vec<Reservation> {
        let path = self.registry_path();
        if !path.exists() {
            return Vec::new();
        }
        match read_yaml::<Registry>(&path) {
            Ok(r) => live_reservations(r.reservations, start_time),
            Err(e) => {
                tracing::warn!("ignoring the port registry: {e}");
                Vec::new()
            }
        }
    }

    fn write_registry(&self, reservations: Vec<Reservation>) -> Result<(), LocalError> {
        write_yaml(&self.registry_path(), &Registry { reservations })
    }

    /// Reads `cluster_file` (`<state-dir>/<namespace>/<name>/cluster.yaml`) or, when it does not
    /// exist, chooses a free block, builds the record with `make(base)` and writes it, all under
    /// the locks. Either way the block is reserved for this process in the registry.
    pub fn load_or_allocate(
        &self,
        state_dir: &Path,
        cluster_file: &Path,
        make: impl FnOnce(u16) -> PortBlock,
    ) -> Result<PortBlock, LocalError> {
        let _local = lock(&state_dir.join("ports.lock"))?;
        // The registry is shared by every operator of the machine; if it cannot be used (a
        // folder not writable by this user), the state directory's own records still exclude
        // each other.
        let global = self
            .registry_lock()
            .map_err(|e| tracing::warn!("port registry unavailable: {e}"))
            .ok();
        let reserved = if global.is_some() {
            self.read_registry()
        } else {
            Vec::new()
        };
        let cluster = cluster_file
            .parent()
            .map_or_else(String::new, |p| p.display().to_string());
        let record = if cluster_file.exists() {
            let record: PortBlock = read_yaml(cluster_file)?;
            let mine = record.ranges();
            if let Some(r) = reserved.iter().find(|r| {
                r.pid != std::process::id()
                    && r.cluster != cluster
                    && mine.iter().any(|m| overlaps(m, &r.range()))
            }) {
                tracing::warn!(
                    "{cluster}: its ports {}-{} overlap the block {}-{} another operator (pid {}) \
                     reserved for {}",
                    record.client_base_port,
                    record.peer_base_port + PORTS_PER_KIND - 1,
                    r.base,
                    r.range().end - 1,
                    r.pid,
                    r.cluster
                );
            }
            record
        } else {
            let mut taken = recorded_blocks(state_dir);
            taken.extend(reserved.iter().map(Reservation::range));
            let start = rand::rng().random_range(0..self.range.slots().max(1));
            let base = free_slots(self.range, &taken, start)
                .into_iter()
                .find(|b| binds(*b))
                .ok_or(LocalError::Ports { range: self.range })?;
            let record = make(base);
            write_yaml(cluster_file, &record)?;
            record
        };
        if global.is_some() {
            let me = std::process::id();
            let started = start_time(me).unwrap_or(0);
            let mut all: Vec<Reservation> = reserved
                .into_iter()
                .filter(|r| !(r.pid == me && r.cluster == cluster))
                .collect();
            let lo = record.client_base_port.min(record.peer_base_port);
            let hi = record.client_base_port.max(record.peer_base_port) + PORTS_PER_KIND;
            all.push(Reservation {
                base: lo,
                ports: hi - lo,
                pid: me,
                started,
                time: crate::controller::pass::Now::current().text,
                cluster,
            });
            if let Err(e) = self.write_registry(all) {
                tracing::warn!("cannot record the port reservation: {e}");
            }
        }
        Ok(record)
    }
}

/// Whether every port of the block at `base` binds on 127.0.0.1 now.
fn binds(base: u16) -> bool {
    (0..PORTS_PER_CLUSTER).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok())
}

/// The ports recorded in every `<state-dir>/<namespace>/<name>/cluster.yaml`.
fn recorded_blocks(state_dir: &Path) -> Vec<Range<u32>> {
    let mut out = Vec::new();
    let subdirs = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default()
    };
    for ns in subdirs(state_dir) {
        for cluster in subdirs(&ns) {
            let file = cluster.join("cluster.yaml");
            if !file.is_file() {
                continue;
            }
            match read_yaml::<PortBlock>(&file) {
                Ok(rec) => out.extend(rec.ranges()),
                Err(e) => tracing::warn!("ignoring the ports of {}: {e}", file.display()),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_count_slots() {
        let r: PortRange = "20000-20059".parse().expect("range");
        assert_eq!(r.slots(), 3);
        assert_eq!(PortRange::default().slots(), 1001);
        assert!("20000-20010".parse::<PortRange>().is_err());
        assert!("20000".parse::<PortRange>().is_err());
        assert!("0-100".parse::<PortRange>().is_err());
        assert!("30000-20000".parse::<PortRange>().is_err());
    }

    #[test]
    fn free_slots_skip_every_overlap_and_wrap() {
        let r = PortRange {
            first: 20000,
            last: 20079,
        };
        assert_eq!(free_slots(r, &[], 0), [20000, 20020, 20040, 20060]);
        assert_eq!(free_slots(r, &[], 2), [20040, 20060, 20000, 20020]);
        // An unaligned record from elsewhere takes the two slots it touches.
        let unaligned = std::iter::once(20019..20021).collect::<Vec<_>>();
        assert_eq!(free_slots(r, &unaligned, 0), [20040, 20060]);
        // A range ending where a slot begins leaves it free.
        assert_eq!(
            free_slots(r, &[19990..20000, 20080..20100], 3),
            [20060, 20000, 20020, 20040]
        );
        let all: Vec<Range<u32>> = (0..4).map(|i| block(20000 + 20 * i)).collect();
        assert!(free_slots(r, &all, 1).is_empty());
    }

    #[test]
    fn reservations_of_dead_or_reused_pids_are_dropped() {
        let r = |pid, started| Reservation {
            base: 20000,
            ports: 20,
            pid,
            started,
            time: String::new(),
            cluster: format!("c{pid}"),
        };
        let running = |pid| match pid {
            1 => Some(100),
            2 => Some(999), // pid 2 now belongs to a process started later
            _ => None,
        };
        let live = live_reservations(vec![r(1, 100), r(2, 200), r(3, 300)], running);
        assert_eq!(live, [r(1, 100)]);
    }

    #[test]
    fn start_times_parse_despite_odd_command_names() {
        let stat = "4242 (etc d) op)) S 1 4242 4242 0 -1 4194560 500 0 0 0 3 1 0 0 20 0 2 0 \
                    987654 12345678 900 18446744073709551615";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("garbage"), None);
        let me = start_time(std::process::id());
        assert!(me.is_some_and(|t| t > 0), "{me:?}");
    }

    /// Allocations from many threads at once (as several operators and several clusters of one
    /// manifest would), over a range with exactly as many slots, all get disjoint blocks.
    #[test]
    fn concurrent_allocations_get_disjoint_blocks() {
        let tmp =
            std::env::temp_dir().join(format!("etcd-operator-unit-ports-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let registry = tmp.join("registry");
        std::fs::create_dir_all(&registry).expect("mkdir");
        // A range of 8 slots whose ports are free now (this test binds them to check), below
        // the range operators use and below the ephemeral ports.
        let range = (0..50)
            .find_map(|k| {
                let first = 11840u16.checked_sub(k * 160)?;
                let r = PortRange {
                    first,
                    last: first + 159,
                };
                (0..8).all(|i| binds(r.slot(i))).then_some(r)
            })
            .expect("a free range");
        let alloc = Allocator::with_registry(range, registry);
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let alloc = alloc.clone();
                // Two state directories, four clusters in each.
                let state = tmp.join(format!("state-{}", i % 2));
                std::thread::spawn(move || {
                    std::fs::create_dir_all(&state).expect("mkdir");
                    let file = state
                        .join("default")
                        .join(format!("c{i}"))
                        .join("cluster.yaml");
                    alloc
                        .load_or_allocate(&state, &file, |base| PortBlock {
                            client_base_port: base,
                            peer_base_port: base + PORTS_PER_KIND,
                            token: format!("t{i}"),
                            client_tls: false,
                            peer_tls: false,
                        })
                        .expect("allocated")
                })
            })
            .collect();
        let mut bases: Vec<u16> = threads
            .into_iter()
            .map(|t| t.join().expect("thread").client_base_port)
            .collect();
        bases.sort_unstable();
        let want: Vec<u16> = (0..8).map(|i| range.slot(i)).collect();
        assert_eq!(bases, want);
        // Reading an existing record gives it back unchanged; a ninth cluster finds no room.
        let state = tmp.join("state-0");
        let again = alloc
            .load_or_allocate(&state, &state.join("default/c0/cluster.yaml"), |_| {
                panic!("c0 has a record")
            })
            .expect("read back");
        assert_eq!(again.token, "t0");
        let full = alloc.load_or_allocate(&state, &state.join("default/c9/cluster.yaml"), |b| {
            panic!("no slot should be free, got {b}")
        });
        assert!(matches!(full, Err(LocalError::Ports { .. })), "{full:?}");
        let _ = std::fs::remove_dir_all(&tmp);
    }
}

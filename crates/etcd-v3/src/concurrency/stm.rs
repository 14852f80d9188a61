//! STM: software transactional memory on etcd. An apply function reads and writes keys through
//! an [`Stm`]; its writes are committed in one txn guarded according to the isolation level, and
//! it is re-run when a guard fails, a bounded number of times (Go's retries forever).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;

use super::error::{ConcurrencyError, Result};
use crate::Client;
use crate::kv::{Compare, CompareOp, DeleteOptions, GetOptions, Op, PutOptions, Txn};

/// Isolation level of an STM transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Serializable, and also fails when a key it writes without reading was written by someone
    /// else after its first read (no blind-write conflicts). The default.
    #[default]
    SerializableSnapshot,
    /// Every read sees one snapshot (the revision of the first read), and the commit fails if
    /// any key read has changed since.
    Serializable,
    /// Each key is read once (later reads repeat it), and the commit fails if any key read has
    /// changed since it was read; different keys may come from different revisions.
    RepeatableReads,
    /// No guard at all: reads may be stale and concurrent updates can be lost.
    ReadCommitted,
}

/// Default number of attempts of [`run`].
pub const DEFAULT_MAX_ATTEMPTS: u32 = 16;

/// Options of [`run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StmOptions {
    isolation: Isolation,
    max_attempts: u32,
    backoff: Duration,
}

impl Default for StmOptions {
    fn default() -> Self {
        StmOptions {
            isolation: Isolation::default(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff: Duration::from_millis(5),
        }
    }
}

impl StmOptions {
    /// Serializable snapshot isolation, up to 16 attempts, 5 ms base backoff.
    pub fn new() -> Self {
        Self::default()
    }
    /// The isolation level.
    pub fn with_isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = isolation;
        self
    }
    /// How many times the apply function may run before [`ConcurrencyError::Conflict`] (at
    /// least 1).
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }
    /// Base pause after a conflict; attempt `n` waits a random time up to `n × base`.
    pub fn with_backoff(mut self, base: Duration) -> Self {
        self.backoff = base;
        self
    }
}

/// A read of one key: its value and mod revision (0 when missing).
#[derive(Debug, Clone)]
struct Read {
    value: Option<Bytes>,
    mod_revision: i64,
}

/// An STM transaction: reads go to etcd (per the isolation level) and are remembered, writes are
/// buffered until [`Stm::commit`]. Use it through [`run`], or drive the retry loop yourself (this
/// form's futures are `Send`, so it works inside `tokio::spawn`):
///
/// ```no_run
/// # async fn demo(client: etcd_v3::Client) -> etcd_v3::concurrency::Result<()> {
/// use etcd_v3::concurrency::{Stm, StmOptions};
/// let mut tx = Stm::new(&client, StmOptions::new());
/// let revision = loop {
///     let n: i64 = match tx.get("/counter").await? {
///         Some(v) => String::from_utf8_lossy(&v).parse().unwrap_or(0),
///         None => 0,
///     };
///     tx.put("/counter", (n + 1).to_string());
///     // `None`: a conflict; the reads and writes were dropped, run the body again.
///     if let Some(rev) = tx.commit().await? {
///         break rev;
///     }
/// };
/// # let _ = revision; Ok(()) }
/// ```
#[derive(Debug)]
pub struct Stm {
    client: Client,
    opts: StmOptions,
    /// The attempt in progress, from 1.
    attempt: u32,
    isolation: Isolation,
    reads: HashMap<Bytes, Read>,
    writes: BTreeMap<Bytes, Option<Bytes>>,
    /// Revision of the first read (the snapshot of the serializable levels).
    snapshot: Option<i64>,
}

impl Stm {
    /// A transaction on `client` with the given options (isolation level, attempts, backoff).
    pub fn new(client: &Client, opts: StmOptions) -> Stm {
        Stm {
            client: client.clone(),
            opts,
            attempt: 1,
            isolation: opts.isolation,
            reads: HashMap::new(),
            writes: BTreeMap::new(),
            snapshot: None,
        }
    }

    /// The value of `key` as this transaction sees it (its own writes first); `None` when the key
    /// does not exist.
    pub async fn get(&mut self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        let key = Bytes::copy_from_slice(key.as_ref());
        if let Some(w) = self.writes.get(&key) {
            return Ok(w.clone());
        }
        Ok(self.read(&key).await?.value)
    }

    /// The mod revision of `key` as read by this transaction (0 when it does not exist).
    pub async fn rev(&mut self, key: impl AsRef<[u8]>) -> Result<i64> {
        let key = Bytes::copy_from_slice(key.as_ref());
        Ok(self.read(&key).await?.mod_revision)
    }

    /// The number of the attempt in progress (1 for the first run of the body).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Drops the reads and buffered writes, as if the body had not run.
    pub fn reset(&mut self) {
        self.reads.clear();
        self.writes.clear();
        self.snapshot = None;
    }

    /// Commits the buffered writes in one txn guarded per the isolation level. Returns
    /// `Some(revision)` when committed (the revision of the commit, or of the snapshot when
    /// nothing was written); the transaction is then empty and can be reused. Returns `None` on a
    /// conflict, after a short random backoff, with the reads and writes dropped: run the body
    /// again. After the configured number of attempts a conflict is
    /// [`ConcurrencyError::Conflict`] instead.
    pub async fn commit(&mut self) -> Result<Option<i64>> {
        let revision = if self.writes.is_empty() {
            match self.snapshot {
                Some(rev) => rev,
                None => {
                    self.client
                        .get("/", GetOptions::new().with_count_only())
                        .await?
                        .header
                        .revision
                }
            }
        } else {
            let r = self.client.txn(self.commit_txn()).await?;
            if !r.succeeded {
                let attempts = self.attempt;
                self.reset();
                if attempts >= self.opts.max_attempts {
                    self.attempt = 1;
                    return Err(ConcurrencyError::Conflict { attempts });
                }
                self.attempt += 1;
                let max = self.opts.backoff.saturating_mul(attempts);
                if !max.is_zero() {
                    tokio::time::sleep(rand::random_range(Duration::ZERO..=max)).await;
                }
                return Ok(None);
            }
            r.header.revision
        };
        self.reset();
        self.attempt = 1;
        Ok(Some(revision))
    }

    /// Buffers a write of `key`.
    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl Into<Bytes>) {
        self.writes
            .insert(Bytes::copy_from_slice(key.as_ref()), Some(value.into()));
    }

    /// Buffers a deletion of `key`.
    pub fn delete(&mut self, key: impl AsRef<[u8]>) {
        self.writes
            .insert(Bytes::copy_from_slice(key.as_ref()), None);
    }

    async fn read(&mut self, key: &Bytes) -> Result<Read> {
        if let Some(r) = self.reads.get(key)
            && self.isolation != Isolation::ReadCommitted
        {
            return Ok(r.clone());
        }
        let opts = match (self.isolation, self.snapshot) {
            (Isolation::ReadCommitted | Isolation::RepeatableReads, _) => {
                GetOptions::new().with_serializable()
            }
            (_, None) => GetOptions::new(),
            (_, Some(rev)) => GetOptions::new().with_revision(rev).with_serializable(),
        };
        let r = self.client.get(key, opts).await?;
        if self.snapshot.is_none() {
            self.snapshot = Some(r.header.revision);
        }
        let read = match r.first() {
            Some(kv) => Read {
                value: Some(kv.value.clone()),
                mod_revision: kv.mod_revision,
            },
            None => Read {
                value: None,
                mod_revision: 0,
            },
        };
        self.reads.insert(key.clone(), read.clone());
        Ok(read)
    }

    /// The guards of the commit for this isolation level.
    fn guards(&self) -> Vec<Compare> {
        let mut g = Vec::new();
        if self.isolation == Isolation::ReadCommitted {
            return g;
        }
        for (k, r) in &self.reads {
            g.push(Compare::mod_revision(k, CompareOp::Equal, r.mod_revision));
        }
        if self.isolation == Isolation::SerializableSnapshot
            && let Some(snap) = self.snapshot
        {
            for k in self.writes.keys().filter(|k| !self.reads.contains_key(*k)) {
                g.push(Compare::mod_revision(k, CompareOp::Less, snap + 1));
            }
        }
        g
    }

    fn commit_txn(&self) -> Txn {
        let ops = self.writes.iter().map(|(k, v)| match v {
            Some(v) => Op::put(k, v.clone(), PutOptions::new()),
            None => Op::delete(k, DeleteOptions::new()),
        });
        Txn::new().when(self.guards()).and_then(ops)
    }
}

/// What a committed STM transaction returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed<T> {
    /// The apply function's result of the attempt that committed.
    pub value: T,
    /// The revision of the commit (that of the last read when nothing was written).
    pub revision: i64,
    /// How many times the apply function ran.
    pub attempts: u32,
}

/// Runs `apply` as a transaction: reads through the [`Stm`] it is given, buffered writes
/// committed atomically if the isolation level's guards hold. On a conflict `apply` runs again
/// on a fresh [`Stm`] (so it must have no other side effects), after a short random backoff, up
/// to the configured number of attempts, then fails with [`ConcurrencyError::Conflict`]. An
/// error returned by `apply` ends the transaction with nothing written.
///
/// The future of `run` is not `Send` (a limit of async closures in today's Rust); inside
/// `tokio::spawn`, drive [`Stm`] yourself as its docs show.
///
/// ```no_run
/// # async fn demo(client: etcd_v3::Client) -> etcd_v3::concurrency::Result<()> {
/// use etcd_v3::concurrency::{stm, ConcurrencyError, Stm, StmOptions};
/// stm::run(&client, StmOptions::new(), async |tx: &mut Stm| {
///     let parse = |v: Option<bytes::Bytes>| -> i64 {
///         v.and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok()).unwrap_or(0)
///     };
///     let (a, b) = (parse(tx.get("/bank/a").await?), parse(tx.get("/bank/b").await?));
///     if a < 10 {
///         return Err(ConcurrencyError::Aborted("insufficient funds".into()));
///     }
///     tx.put("/bank/a", (a - 10).to_string());
///     tx.put("/bank/b", (b + 10).to_string());
///     Ok(())
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn run<T, F>(client: &Client, opts: StmOptions, mut apply: F) -> Result<Committed<T>>
where
    F: AsyncFnMut(&mut Stm) -> Result<T>,
{
    let mut tx = Stm::new(client, opts);
    loop {
        let value = apply(&mut tx).await?;
        let attempts = tx.attempt();
        if let Some(revision) = tx.commit().await? {
            return Ok(Committed {
                value,
                revision,
                attempts,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ConnectOptions;
    use crate::proto::etcdserverpb::compare::{CompareResult, TargetUnion};

    async fn tx(isolation: Isolation) -> Stm {
        // Never dialled: only the guards are built.
        let client = Client::connect(["127.0.0.1:1"], ConnectOptions::new())
            .await
            .expect("lazy client");
        let mut tx = Stm::new(&client, StmOptions::new().with_isolation(isolation));
        tx.snapshot = Some(10);
        tx.reads.insert(
            Bytes::from_static(b"r"),
            Read {
                value: None,
                mod_revision: 7,
            },
        );
        tx.put("r", "1");
        tx.put("w", "2");
        tx
    }

    fn guards(tx: &Stm) -> Vec<(Vec<u8>, i32, Option<TargetUnion>)> {
        let mut g: Vec<_> = tx
            .guards()
            .iter()
            .map(|c| {
                let p = c.to_proto();
                (p.key.to_vec(), p.result, p.target_union)
            })
            .collect();
        g.sort_by(|a, b| a.0.cmp(&b.0));
        g
    }

    #[tokio::test]
    async fn guards_follow_the_isolation_level() {
        let eq = CompareResult::Equal as i32;
        let lt = CompareResult::Less as i32;
        let read = (b"r".to_vec(), eq, Some(TargetUnion::ModRevision(7)));
        let blind = (b"w".to_vec(), lt, Some(TargetUnion::ModRevision(11)));
        assert!(guards(&tx(Isolation::ReadCommitted).await).is_empty());
        assert_eq!(
            guards(&tx(Isolation::RepeatableReads).await),
            vec![read.clone()]
        );
        assert_eq!(
            guards(&tx(Isolation::Serializable).await),
            vec![read.clone()]
        );
        assert_eq!(
            guards(&tx(Isolation::SerializableSnapshot).await),
            vec![read, blind]
        );
    }
}

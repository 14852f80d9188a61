//! Key-value calls: get, put, delete, txn, compact, and a single-op [`Client::op`].
//!
//! ```no_run
//! # async fn demo(client: etcd_v3::Client) -> etcd_v3::Result<()> {
//! use etcd_v3::kv::{Compare, CompareOp, GetOptions, Op, PutOptions, Txn};
//! client.put("config/a", "1", PutOptions::new()).await?;
//! let all = client.get("config/", GetOptions::new().with_prefix()).await?;
//! let swapped = client
//!     .txn(Txn::new()
//!         .when([Compare::value("config/a", CompareOp::Equal, "1")])
//!         .and_then([Op::put("config/a", "2", PutOptions::new())]))
//!     .await?
//!     .succeeded;
//! # Ok(()) }
//! ```

use bytes::Bytes;

use super::client::Client;
use super::error::Result;
use super::proto::{etcdserverpb as pb, mvccpb};
use super::rpc::Retry;

/// The header every response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// The cluster's ID.
    pub cluster_id: u64,
    /// The ID of the member that answered.
    pub member_id: u64,
    /// The store revision when the request was applied (0 for calls outside the key space on 3.6).
    pub revision: i64,
    /// The raft term when the request was applied.
    pub raft_term: u64,
}

impl From<Option<pb::ResponseHeader>> for Header {
    fn from(h: Option<pb::ResponseHeader>) -> Self {
        let h = h.unwrap_or_default();
        Header {
            cluster_id: h.cluster_id,
            member_id: h.member_id,
            revision: h.revision,
            raft_term: h.raft_term,
        }
    }
}

/// A key with its value and revisions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyValue {
    /// The key.
    pub key: Bytes,
    /// The value (empty with `keys_only`).
    pub value: Bytes,
    /// Revision of the key's last creation.
    pub create_revision: i64,
    /// Revision of the key's last modification.
    pub mod_revision: i64,
    /// Number of modifications since creation.
    pub version: i64,
    /// Attached lease, or 0.
    pub lease: i64,
}

impl KeyValue {
    /// The key as UTF-8 (lossy).
    pub fn key_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.key)
    }
    /// The value as UTF-8 (lossy).
    pub fn value_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.value)
    }
}

impl From<mvccpb::KeyValue> for KeyValue {
    fn from(kv: mvccpb::KeyValue) -> Self {
        KeyValue {
            key: kv.key,
            value: kv.value,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: kv.lease,
        }
    }
}

/// The end of the range holding every key that starts with `prefix`: the prefix with its last
/// byte below 0xff incremented and the rest cut. An all-0xff (or empty) prefix gives `"\0"`,
/// which means "every key from here on".
pub fn prefix_end(prefix: &[u8]) -> Bytes {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Bytes::from(end);
        }
    }
    Bytes::from_static(b"\0")
}

/// Which keys a call covers besides the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum RangeSpec {
    #[default]
    Key,
    Prefix,
    FromKey,
    End(Bytes),
}

impl RangeSpec {
    /// The key to send: an empty key with a prefix or from-key range means "every key", which
    /// etcd spells `"\0"` (an empty key is refused), as etcd's client does.
    fn key(&self, key: &[u8]) -> Bytes {
        match self {
            RangeSpec::Prefix | RangeSpec::FromKey if key.is_empty() => Bytes::from_static(b"\0"),
            _ => Bytes::copy_from_slice(key),
        }
    }

    fn range_end(&self, key: &[u8]) -> Bytes {
        match self {
            RangeSpec::Key => Bytes::new(),
            RangeSpec::Prefix => prefix_end(key),
            RangeSpec::FromKey => Bytes::from_static(b"\0"),
            RangeSpec::End(e) => e.clone(),
        }
    }
}

/// Order of a sorted get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    /// Lowest first.
    Ascend,
    /// Highest first.
    Descend,
}

/// Field a get sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortTarget {
    /// The key.
    Key,
    /// The version.
    Version,
    /// The create revision.
    Create,
    /// The mod revision.
    Mod,
    /// The value.
    Value,
}

/// Options of [`Client::get`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GetOptions {
    range: RangeSpec,
    revision: i64,
    limit: i64,
    sort: Option<(SortTarget, SortOrder)>,
    serializable: bool,
    keys_only: bool,
    count_only: bool,
    min_mod_revision: i64,
    max_mod_revision: i64,
    min_create_revision: i64,
    max_create_revision: i64,
}

impl GetOptions {
    /// A linearizable get of the single key at the newest revision.
    pub fn new() -> Self {
        Self::default()
    }
    /// Every key starting with the key.
    pub fn with_prefix(mut self) -> Self {
        self.range = RangeSpec::Prefix;
        self
    }
    /// Every key greater than or equal to the key.
    pub fn with_from_key(mut self) -> Self {
        self.range = RangeSpec::FromKey;
        self
    }
    /// The keys in `[key, end)`.
    pub fn with_range(mut self, end: impl AsRef<[u8]>) -> Self {
        self.range = RangeSpec::End(Bytes::copy_from_slice(end.as_ref()));
        self
    }
    /// Read at this revision (an error if compacted or in the future).
    pub fn with_revision(mut self, rev: i64) -> Self {
        self.revision = rev;
        self
    }
    /// At most `n` keys (`more` tells whether there were more).
    pub fn with_limit(mut self, n: i64) -> Self {
        self.limit = n;
        self
    }
    /// Sort the result.
    pub fn with_sort(mut self, target: SortTarget, order: SortOrder) -> Self {
        self.sort = Some((target, order));
        self
    }
    /// Serve from the member's local state, without consensus (may be stale; served by learners).
    pub fn with_serializable(mut self) -> Self {
        self.serializable = true;
        self
    }
    /// Keys without values.
    pub fn with_keys_only(mut self) -> Self {
        self.keys_only = true;
        self
    }
    /// Only the count.
    pub fn with_count_only(mut self) -> Self {
        self.count_only = true;
        self
    }
    /// Only keys modified at or after `rev`.
    pub fn with_min_mod_revision(mut self, rev: i64) -> Self {
        self.min_mod_revision = rev;
        self
    }
    /// Only keys modified at or before `rev`.
    pub fn with_max_mod_revision(mut self, rev: i64) -> Self {
        self.max_mod_revision = rev;
        self
    }
    /// Only keys created at or after `rev`.
    pub fn with_min_create_revision(mut self, rev: i64) -> Self {
        self.min_create_revision = rev;
        self
    }
    /// Only keys created at or before `rev`.
    pub fn with_max_create_revision(mut self, rev: i64) -> Self {
        self.max_create_revision = rev;
        self
    }

    fn to_request(&self, key: &[u8]) -> pb::RangeRequest {
        let (sort_target, sort_order) = match self.sort {
            None => (
                pb::range_request::SortTarget::Key,
                pb::range_request::SortOrder::None,
            ),
            Some((t, o)) => (
                match t {
                    SortTarget::Key => pb::range_request::SortTarget::Key,
                    SortTarget::Version => pb::range_request::SortTarget::Version,
                    SortTarget::Create => pb::range_request::SortTarget::Create,
                    SortTarget::Mod => pb::range_request::SortTarget::Mod,
                    SortTarget::Value => pb::range_request::SortTarget::Value,
                },
                match o {
                    SortOrder::Ascend => pb::range_request::SortOrder::Ascend,
                    SortOrder::Descend => pb::range_request::SortOrder::Descend,
                },
            ),
        };
        pb::RangeRequest {
            key: self.range.key(key),
            range_end: self.range.range_end(key),
            limit: self.limit,
            revision: self.revision,
            sort_order: sort_order as i32,
            sort_target: sort_target as i32,
            serializable: self.serializable,
            keys_only: self.keys_only,
            count_only: self.count_only,
            min_mod_revision: self.min_mod_revision,
            max_mod_revision: self.max_mod_revision,
            min_create_revision: self.min_create_revision,
            max_create_revision: self.max_create_revision,
        }
    }
}

/// Result of [`Client::get`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GetResponse {
    /// Response header.
    pub header: Header,
    /// The keys found.
    pub kvs: Vec<KeyValue>,
    /// Whether the limit cut the result.
    pub more: bool,
    /// Number of keys in the range (ignores the limit).
    pub count: i64,
}

impl From<pb::RangeResponse> for GetResponse {
    fn from(r: pb::RangeResponse) -> Self {
        GetResponse {
            header: r.header.into(),
            kvs: r.kvs.into_iter().map(KeyValue::from).collect(),
            more: r.more,
            count: r.count,
        }
    }
}

impl GetResponse {
    /// The first key found, if any.
    pub fn first(&self) -> Option<&KeyValue> {
        self.kvs.first()
    }
}

/// Options of [`Client::put`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutOptions {
    lease: i64,
    prev_kv: bool,
    ignore_value: bool,
    ignore_lease: bool,
}

impl PutOptions {
    /// A plain put.
    pub fn new() -> Self {
        Self::default()
    }
    /// Attach the key to a lease.
    pub fn with_lease(mut self, lease: i64) -> Self {
        self.lease = lease;
        self
    }
    /// Return the previous key-value.
    pub fn with_prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }
    /// Keep the current value (the key must exist; give an empty value).
    pub fn with_ignore_value(mut self) -> Self {
        self.ignore_value = true;
        self
    }
    /// Keep the current lease (the key must exist).
    pub fn with_ignore_lease(mut self) -> Self {
        self.ignore_lease = true;
        self
    }
}

/// Result of [`Client::put`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PutResponse {
    /// Response header; `header.revision` is the put's revision.
    pub header: Header,
    /// The previous key-value, when asked for and the key existed.
    pub prev_kv: Option<KeyValue>,
}

impl From<pb::PutResponse> for PutResponse {
    fn from(r: pb::PutResponse) -> Self {
        PutResponse {
            header: r.header.into(),
            prev_kv: r.prev_kv.map(KeyValue::from),
        }
    }
}

/// Options of [`Client::delete`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    range: RangeSpec,
    prev_kv: bool,
}

impl DeleteOptions {
    /// Delete the single key.
    pub fn new() -> Self {
        Self::default()
    }
    /// Every key starting with the key.
    pub fn with_prefix(mut self) -> Self {
        self.range = RangeSpec::Prefix;
        self
    }
    /// Every key greater than or equal to the key.
    pub fn with_from_key(mut self) -> Self {
        self.range = RangeSpec::FromKey;
        self
    }
    /// The keys in `[key, end)`.
    pub fn with_range(mut self, end: impl AsRef<[u8]>) -> Self {
        self.range = RangeSpec::End(Bytes::copy_from_slice(end.as_ref()));
        self
    }
    /// Return the deleted key-values.
    pub fn with_prev_kv(mut self) -> Self {
        self.prev_kv = true;
        self
    }
}

/// Result of [`Client::delete`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteResponse {
    /// Response header.
    pub header: Header,
    /// Number of keys deleted.
    pub deleted: i64,
    /// The deleted key-values, when asked for.
    pub prev_kvs: Vec<KeyValue>,
}

impl From<pb::DeleteRangeResponse> for DeleteResponse {
    fn from(r: pb::DeleteRangeResponse) -> Self {
        DeleteResponse {
            header: r.header.into(),
            deleted: r.deleted,
            prev_kvs: r.prev_kvs.into_iter().map(KeyValue::from).collect(),
        }
    }
}

/// A comparison operator of a txn guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `==`
    Equal,
    /// `>`
    Greater,
    /// `<`
    Less,
    /// `!=`
    NotEqual,
}

/// A txn guard on one key (or a range of keys).
#[derive(Debug, Clone, PartialEq)]
pub struct Compare(pb::Compare);

impl Compare {
    fn new(
        key: &[u8],
        op: CompareOp,
        target: pb::compare::CompareTarget,
        u: pb::compare::TargetUnion,
    ) -> Self {
        let result = match op {
            CompareOp::Equal => pb::compare::CompareResult::Equal,
            CompareOp::Greater => pb::compare::CompareResult::Greater,
            CompareOp::Less => pb::compare::CompareResult::Less,
            CompareOp::NotEqual => pb::compare::CompareResult::NotEqual,
        };
        // The union is always set, even to a zero value: etcd reads an unset union as "no target".
        Compare(pb::Compare {
            result: result as i32,
            target: target as i32,
            key: Bytes::copy_from_slice(key),
            target_union: Some(u),
            range_end: Bytes::new(),
        })
    }
    /// Compare the value.
    pub fn value(key: impl AsRef<[u8]>, op: CompareOp, value: impl AsRef<[u8]>) -> Self {
        let v = Bytes::copy_from_slice(value.as_ref());
        Self::new(
            key.as_ref(),
            op,
            pb::compare::CompareTarget::Value,
            pb::compare::TargetUnion::Value(v),
        )
    }
    /// Compare the version (0 = the key does not exist).
    pub fn version(key: impl AsRef<[u8]>, op: CompareOp, version: i64) -> Self {
        Self::new(
            key.as_ref(),
            op,
            pb::compare::CompareTarget::Version,
            pb::compare::TargetUnion::Version(version),
        )
    }
    /// Compare the create revision (0 = the key does not exist).
    pub fn create_revision(key: impl AsRef<[u8]>, op: CompareOp, rev: i64) -> Self {
        Self::new(
            key.as_ref(),
            op,
            pb::compare::CompareTarget::Create,
            pb::compare::TargetUnion::CreateRevision(rev),
        )
    }
    /// Compare the mod revision.
    pub fn mod_revision(key: impl AsRef<[u8]>, op: CompareOp, rev: i64) -> Self {
        Self::new(
            key.as_ref(),
            op,
            pb::compare::CompareTarget::Mod,
            pb::compare::TargetUnion::ModRevision(rev),
        )
    }
    /// Compare the attached lease.
    pub fn lease(key: impl AsRef<[u8]>, op: CompareOp, lease: i64) -> Self {
        Self::new(
            key.as_ref(),
            op,
            pb::compare::CompareTarget::Lease,
            pb::compare::TargetUnion::Lease(lease),
        )
    }
    /// Apply the comparison to every key in `[key, end)`.
    pub fn with_range(mut self, end: impl AsRef<[u8]>) -> Self {
        self.0.range_end = Bytes::copy_from_slice(end.as_ref());
        self
    }
    /// Apply the comparison to every key with the key as prefix.
    pub fn with_prefix(mut self) -> Self {
        self.0.range_end = prefix_end(&self.0.key);
        if self.0.key.is_empty() {
            self.0.key = Bytes::from_static(b"\0");
        }
        self
    }
    /// The wire message.
    pub fn to_proto(&self) -> pb::Compare {
        self.0.clone()
    }
}

/// One operation: standalone with [`Client::op`], or inside a [`Txn`].
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// A get.
    Get(Bytes, GetOptions),
    /// A put.
    Put(Bytes, Bytes, PutOptions),
    /// A delete.
    Delete(Bytes, DeleteOptions),
    /// A nested txn (etcd 3.3+).
    Txn(Txn),
}

impl Op {
    /// A get operation.
    pub fn get(key: impl AsRef<[u8]>, opts: GetOptions) -> Self {
        Op::Get(Bytes::copy_from_slice(key.as_ref()), opts)
    }
    /// A put operation.
    pub fn put(key: impl AsRef<[u8]>, value: impl Into<Bytes>, opts: PutOptions) -> Self {
        Op::Put(Bytes::copy_from_slice(key.as_ref()), value.into(), opts)
    }
    /// A delete operation.
    pub fn delete(key: impl AsRef<[u8]>, opts: DeleteOptions) -> Self {
        Op::Delete(Bytes::copy_from_slice(key.as_ref()), opts)
    }
    /// A nested txn operation.
    pub fn txn(txn: Txn) -> Self {
        Op::Txn(txn)
    }

    /// The wire message.
    pub fn to_proto(&self) -> pb::RequestOp {
        use pb::request_op::Request;
        let r = match self {
            Op::Get(k, o) => Request::RequestRange(o.to_request(k)),
            Op::Put(k, v, o) => Request::RequestPut(put_request(k.clone(), v.clone(), o)),
            Op::Delete(k, o) => Request::RequestDeleteRange(delete_request(k, o)),
            Op::Txn(t) => Request::RequestTxn(t.to_proto()),
        };
        pb::RequestOp { request: Some(r) }
    }

    fn is_read_only(&self) -> bool {
        match self {
            Op::Get(..) => true,
            Op::Txn(t) => t.success.iter().chain(&t.failure).all(Op::is_read_only),
            _ => false,
        }
    }
}

fn put_request(key: Bytes, value: Bytes, o: &PutOptions) -> pb::PutRequest {
    pb::PutRequest {
        key,
        value,
        lease: o.lease,
        prev_kv: o.prev_kv,
        ignore_value: o.ignore_value,
        ignore_lease: o.ignore_lease,
    }
}

fn delete_request(key: &Bytes, o: &DeleteOptions) -> pb::DeleteRangeRequest {
    pb::DeleteRangeRequest {
        key: o.range.key(key),
        range_end: o.range.range_end(key),
        prev_kv: o.prev_kv,
    }
}

/// A transaction: if every guard holds, run `and_then`, else `or_else`; atomically, at one
/// revision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Txn {
    compares: Vec<Compare>,
    success: Vec<Op>,
    failure: Vec<Op>,
}

impl Txn {
    /// An empty txn (always succeeds, does nothing).
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds guards (all must hold).
    pub fn when(mut self, compares: impl IntoIterator<Item = Compare>) -> Self {
        self.compares.extend(compares);
        self
    }
    /// Adds operations run when the guards hold.
    pub fn and_then(mut self, ops: impl IntoIterator<Item = Op>) -> Self {
        self.success.extend(ops);
        self
    }
    /// Adds operations run when a guard fails.
    pub fn or_else(mut self, ops: impl IntoIterator<Item = Op>) -> Self {
        self.failure.extend(ops);
        self
    }
    /// The wire message.
    pub fn to_proto(&self) -> pb::TxnRequest {
        pb::TxnRequest {
            compare: self.compares.iter().map(Compare::to_proto).collect(),
            success: self.success.iter().map(Op::to_proto).collect(),
            failure: self.failure.iter().map(Op::to_proto).collect(),
        }
    }
}

/// The result of one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResponse {
    /// Of a get.
    Get(GetResponse),
    /// Of a put.
    Put(PutResponse),
    /// Of a delete.
    Delete(DeleteResponse),
    /// Of a nested txn.
    Txn(TxnResponse),
}

impl OpResponse {
    fn from_proto(r: pb::ResponseOp) -> Option<OpResponse> {
        use pb::response_op::Response;
        Some(match r.response? {
            Response::ResponseRange(r) => OpResponse::Get(r.into()),
            Response::ResponsePut(r) => OpResponse::Put(r.into()),
            Response::ResponseDeleteRange(r) => OpResponse::Delete(r.into()),
            Response::ResponseTxn(r) => OpResponse::Txn(r.into()),
        })
    }
    /// The get result, if this is one.
    pub fn as_get(&self) -> Option<&GetResponse> {
        match self {
            OpResponse::Get(r) => Some(r),
            _ => None,
        }
    }
}

/// Result of [`Client::txn`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TxnResponse {
    /// Response header; all writes of the txn share `header.revision`.
    pub header: Header,
    /// Whether the guards held (the `and_then` branch ran).
    pub succeeded: bool,
    /// One result per operation of the branch that ran.
    pub responses: Vec<OpResponse>,
}

impl From<pb::TxnResponse> for TxnResponse {
    fn from(r: pb::TxnResponse) -> Self {
        TxnResponse {
            header: r.header.into(),
            succeeded: r.succeeded,
            responses: r
                .responses
                .into_iter()
                .filter_map(OpResponse::from_proto)
                .collect(),
        }
    }
}

impl Client {
    /// Reads a key, a prefix or a range. Repeatable: retried on another member when one is down.
    pub async fn get(&self, key: impl AsRef<[u8]>, opts: GetOptions) -> Result<GetResponse> {
        let req = opts.to_request(key.as_ref());
        Ok(self.call(req).await?.into())
    }

    /// Writes a key. Not retried once sent; a failure after sending is
    /// [`Error::OutcomeUnknown`](super::Error::OutcomeUnknown).
    pub async fn put(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<Bytes>,
        opts: PutOptions,
    ) -> Result<PutResponse> {
        let req = put_request(Bytes::copy_from_slice(key.as_ref()), value.into(), &opts);
        Ok(self.call(req).await?.into())
    }

    /// Deletes a key, a prefix or a range. Not retried once sent.
    pub async fn delete(
        &self,
        key: impl AsRef<[u8]>,
        opts: DeleteOptions,
    ) -> Result<DeleteResponse> {
        let req = delete_request(&Bytes::copy_from_slice(key.as_ref()), &opts);
        Ok(self.call(req).await?.into())
    }

    /// Runs a transaction. Not retried once sent (like etcd's client, even when read-only; use
    /// [`Client::txn_read_only`] to opt into retries for a txn of gets only).
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        Ok(self.call(txn.to_proto()).await?.into())
    }

    /// Runs a transaction made only of gets, retrying it like a get. Fails with
    /// [`Error::InvalidArgument`](super::Error::InvalidArgument) if it holds a write.
    pub async fn txn_read_only(&self, txn: Txn) -> Result<TxnResponse> {
        if !txn.success.iter().chain(&txn.failure).all(Op::is_read_only) {
            return Err(super::Error::InvalidArgument(
                "txn_read_only given a txn that writes".into(),
            ));
        }
        Ok(self
            .call_as(Retry::Repeatable, txn.to_proto())
            .await?
            .into())
    }

    /// Runs one operation on its own.
    pub async fn op(&self, op: Op) -> Result<OpResponse> {
        Ok(match op {
            Op::Get(k, o) => OpResponse::Get(self.get(k, o).await?),
            Op::Put(k, v, o) => OpResponse::Put(self.put(k, v, o).await?),
            Op::Delete(k, o) => OpResponse::Delete(self.delete(k, o).await?),
            Op::Txn(t) => OpResponse::Txn(self.txn(t).await?),
        })
    }

    /// Compacts the history up to `revision`. With `physical`, waits until the compaction is
    /// applied to the backend.
    pub async fn compact(&self, revision: i64, physical: bool) -> Result<Header> {
        let resp = self
            .call(pb::CompactionRequest { revision, physical })
            .await?;
        Ok(resp.header.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte_below_ff() {
        assert_eq!(&prefix_end(b"abc")[..], b"abd");
        assert_eq!(&prefix_end(b"a\xff")[..], b"b");
        assert_eq!(&prefix_end(b"\xff\xff")[..], b"\0");
        assert_eq!(&prefix_end(b"")[..], b"\0");
    }

    #[test]
    fn compare_sets_the_union_even_for_zero_values() {
        let c = Compare::version("k", CompareOp::Equal, 0).to_proto();
        assert_eq!(c.target_union, Some(pb::compare::TargetUnion::Version(0)));
        let c = Compare::value("k", CompareOp::Equal, "").to_proto();
        assert_eq!(
            c.target_union,
            Some(pb::compare::TargetUnion::Value(Bytes::new()))
        );
    }

    #[test]
    fn get_options_map_to_the_range_request() {
        use pb::range_request::{SortOrder as O, SortTarget as T};
        let r = GetOptions::new().to_request(b"k");
        assert_eq!((&r.key[..], &r.range_end[..]), (&b"k"[..], &b""[..]));
        assert_eq!(
            (r.sort_order, r.sort_target),
            (O::None as i32, T::Key as i32)
        );
        assert!(!r.serializable && !r.keys_only && !r.count_only);
        let r = GetOptions::new()
            .with_prefix()
            .with_revision(7)
            .with_limit(3)
            .with_sort(SortTarget::Mod, SortOrder::Descend)
            .with_serializable()
            .with_keys_only()
            .with_count_only()
            .with_min_mod_revision(1)
            .with_max_mod_revision(2)
            .with_min_create_revision(3)
            .with_max_create_revision(4)
            .to_request(b"a/");
        assert_eq!(&r.range_end[..], b"a0");
        assert_eq!((r.revision, r.limit), (7, 3));
        assert_eq!(
            (r.sort_order, r.sort_target),
            (O::Descend as i32, T::Mod as i32)
        );
        assert!(r.serializable && r.keys_only && r.count_only);
        assert_eq!(
            (
                r.min_mod_revision,
                r.max_mod_revision,
                r.min_create_revision,
                r.max_create_revision
            ),
            (1, 2, 3, 4)
        );
        let r = GetOptions::new().with_from_key().to_request(b"b");
        assert_eq!((&r.key[..], &r.range_end[..]), (&b"b"[..], &b"\0"[..]));
        let r = GetOptions::new().with_prefix().to_request(b"");
        assert_eq!((&r.key[..], &r.range_end[..]), (&b"\0"[..], &b"\0"[..]));
        let r = GetOptions::new().with_range("z").to_request(b"a");
        assert_eq!(&r.range_end[..], b"z");
    }

    #[test]
    fn compare_range_end_is_field_64_on_the_wire() {
        use prost::Message;
        let c = Compare::value("k", CompareOp::Equal, "v")
            .with_range("z")
            .to_proto();
        let buf = c.encode_to_vec();
        // Field 64, wire type 2 (length-delimited): tag varint (64 << 3 | 2) = 514 = 0x82 0x04.
        let tag = [0x82u8, 0x04, 0x01, b'z'];
        assert!(buf.windows(4).any(|w| w == tag), "{buf:x?}");
    }
}

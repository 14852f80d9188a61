//! Transactions: guards ([`Compare`]), operations ([`Op`]), the [`Txn`] itself and its result.

use bytes::Bytes;

use super::options::{
    DeleteOptions, DeleteResponse, GetOptions, GetResponse, PutOptions, PutResponse,
    delete_request, put_request,
};
use super::{Header, prefix_end};
use crate::proto::etcdserverpb as pb;

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

/// One operation: standalone with [`Client::op`](crate::Client::op), or inside a [`Txn`].
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
    /// Whether every operation of both branches only reads.
    pub(super) fn is_read_only(&self) -> bool {
        self.success
            .iter()
            .chain(&self.failure)
            .all(Op::is_read_only)
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

/// Result of [`Client::txn`](crate::Client::txn).
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

#[cfg(test)]
mod tests {
    use super::*;

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

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
//!
//! The pieces: `options.rs` (get, put and delete options and results), `txn.rs` (guards,
//! operations and transactions).

mod options;
mod txn;

use bytes::Bytes;

use super::client::Client;
use super::error::Result;
use super::proto::{etcdserverpb as pb, mvccpb};
use super::rpc::Retry;
pub use options::{
    DeleteOptions, DeleteResponse, GetOptions, GetResponse, PutOptions, PutResponse, SortOrder,
    SortTarget,
};
use options::{delete_request, put_request};
pub use txn::{Compare, CompareOp, Op, OpResponse, Txn, TxnResponse};

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
        if !txn.is_read_only() {
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
}

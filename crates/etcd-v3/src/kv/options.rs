//! Options and results of get, put and delete.

use bytes::Bytes;

use super::{Header, KeyValue, prefix_end};
use crate::proto::etcdserverpb as pb;

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

/// Options of [`Client::get`](crate::Client::get).
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

    pub(super) fn to_request(&self, key: &[u8]) -> pb::RangeRequest {
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

/// Result of [`Client::get`](crate::Client::get).
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

/// Options of [`Client::put`](crate::Client::put).
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

/// Result of [`Client::put`](crate::Client::put).
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

/// Options of [`Client::delete`](crate::Client::delete).
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

/// Result of [`Client::delete`](crate::Client::delete).
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

pub(super) fn put_request(key: Bytes, value: Bytes, o: &PutOptions) -> pb::PutRequest {
    pb::PutRequest {
        key,
        value,
        lease: o.lease,
        prev_kv: o.prev_kv,
        ignore_value: o.ignore_value,
        ignore_lease: o.ignore_lease,
    }
}

pub(super) fn delete_request(key: &Bytes, o: &DeleteOptions) -> pb::DeleteRangeRequest {
    pb::DeleteRangeRequest {
        key: o.range.key(key),
        range_end: o.range.range_end(key),
        prev_kv: o.prev_kv,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

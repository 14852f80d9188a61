//! Rust types and gRPC stubs generated at build time from `proto/` (see `build.rs`).
//!
//! These are the wire types. The public client API wraps them; they are exposed for callers who
//! need a field the wrappers do not carry.

#![allow(missing_docs, clippy::all, clippy::pedantic, rustdoc::all)]

/// etcd's MVCC types (`mvccpb`): key-values and watch events.
pub mod mvccpb {
    include!(concat!(env!("OUT_DIR"), "/mvccpb.rs"));
}

/// etcd's auth types (`authpb`): users, roles, permissions.
pub mod authpb {
    include!(concat!(env!("OUT_DIR"), "/authpb.rs"));
}

/// etcd's v3 API (`etcdserverpb`): requests, responses and service clients.
pub mod etcdserverpb {
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
}

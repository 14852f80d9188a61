//! An etcd v3 client on tonic and prost.

pub mod proto;

//! The `EtcdCluster` API: group `etcd.operator.dev`, version `v1alpha1`.
//!
//! The doc comments of these types become the CRD's schema descriptions (`kubectl explain`).

mod cluster;

pub use cluster::*;

/// The API group.
pub const GROUP: &str = "etcd.operator.dev";
/// The API version.
pub const VERSION: &str = "v1alpha1";

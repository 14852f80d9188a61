//! The `EtcdCluster` API: group `etcd.operator.dev`, version `v1alpha1`.
//!
//! The doc comments of these types become the CRD's schema descriptions (`kubectl explain`).

mod backup;
mod cluster;
mod corruption;
mod network;
/// Kubernetes quantities.
pub mod quantity;
mod schema;
mod security;
pub mod validation;
pub mod versions;

pub use backup::*;
pub use cluster::*;
pub use corruption::*;
pub use network::*;
pub use security::*;

/// The CEL admission rules of the CRD and their messages.
pub mod rules;

/// The API group.
pub const GROUP: &str = "etcd.operator.dev";
/// The API version.
pub const VERSION: &str = "v1alpha1";

/// The CRDs of this operator as YAML documents (what `etcd-operator crd` prints and `crds/`
/// holds).
pub fn crd_yaml() -> Result<String, serde_saphyr::ser::Error> {
    use kube::CustomResourceExt;
    let crd = EtcdCluster::crd();
    Ok(format!("---\n{}", serde_saphyr::to_string(&crd)?))
}

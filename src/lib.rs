//! etcd-operator: a Kubernetes operator for etcd, and the etcd v3 client it is built on.
//!
//! - [`api`]: the `EtcdCluster` resource (group `etcd.operator.dev`, version `v1alpha1`).
//! - [`etcd`]: an async etcd v3 gRPC client (KV, Watch, Lease, Cluster, Maintenance, Auth).
//! - [`controller`]: the control loop; [`controller::plan`] is its pure planner.
//! - [`leader`]: leader election on a Kubernetes Lease (only the leader acts).
//! - [`runtime`]: where members run (Kubernetes Pods and PVCs, or local processes).
//! - [`metrics`]: the operator's Prometheus metrics.
//! - [`telemetry`]: logging (text or JSON).

pub mod api;
pub mod controller;
pub use etcd_v3 as etcd;
pub mod leader;
pub mod metrics;
pub mod runtime;
pub mod snapshot_store;
pub mod telemetry;
pub mod tls;

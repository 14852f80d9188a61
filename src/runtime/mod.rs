//! Runtimes: where members run. `local` runs etcd processes on this machine; `kubernetes`
//! runs Pods and PVCs. The planner in [`crate::controller::plan`] does not know which.

pub mod kubernetes;
pub mod local;

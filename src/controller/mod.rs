//! The control loop: observe → plan → act.
//!
//! - [`observe`]: gather the runtime's members (Pods or processes) and etcd's view of the cluster
//!   (MemberList, per-member Status, alarms, health).
//! - [`plan`]: a pure function from the desired state and that observation to the status to
//!   report and at most one next step. It knows nothing of Kubernetes, processes or I/O, so the
//!   Kubernetes runtime and the local-process runtime share it.
//! - [`act`]: run that step, recording the step's intent before any etcd mutation so that a crash
//!   between the etcd change and the runtime change is resumed on the next pass.
//! - [`flags`]: the etcd flags a member gets from the spec's etcd options (both runtimes).
//! - [`intent`]: how a step in flight is stored (both runtimes).
//! - [`status`]: the status to report, with its conditions.
//! - [`backup`]: snapshot files: names, retention, streaming one to disk.
//! - [`policy`]: the maintenance policy (defragmentation, NOSPACE) from the spec (both runtimes).

pub mod act;
pub mod backup;
pub mod flags;
pub mod intent;
pub mod observe;
pub mod plan;
pub mod policy;
pub mod status;

//! The control loop: validate → observe → plan → status → act → record, written once in
//! [`pass`] for both runtimes.
//!
//! - [`pass`]: one reconcile pass, and the [`pass::Runtime`] trait a runtime implements (what
//!   differs between Kubernetes and local processes).
//! - [`validate`]: the one place the raw spec is read; the planner's desired state or a typed
//!   spec error.
//! - [`observe`]: etcd's view of the cluster (MemberList, per-member Status, alarms, health).
//! - [`plan`]: a pure function from the desired state and that observation to the status to
//!   report and at most one next step. It knows nothing of Kubernetes, processes or I/O.
//! - [`act`]: run that step, recording the step's intent before any etcd mutation so that a crash
//!   between the etcd change and the runtime change is resumed on the next pass.
//! - [`crash`]: crash injection for tests (`ETCD_OPERATOR_CRASH_AT`, the `crash-points` build
//!   feature only).
//! - [`events`]: how steps are named in metrics and Events.
//! - [`flags`]: the etcd flags a member gets from the spec's etcd options.
//! - [`intent`]: how a step in flight is stored.
//! - [`status`]: the status to report, with its conditions.
//! - [`corruption`]: the consistency check's record in the status (`status.corruptionCheck`).
//! - [`backup`]: scheduled snapshots: destinations and credentials, names, back-off, streaming
//!   one into a [`crate::snapshot_store::SnapshotStore`] with its retention.

pub mod act;
pub mod backup;
pub mod clock;
pub mod corruption;
pub mod crash;
pub mod events;
pub mod flags;
pub mod intent;
pub mod observe;
pub mod pass;
pub mod plan;
pub mod security;
pub mod status;
pub mod validate;

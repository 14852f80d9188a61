//! State shared by all clones of a client: the lease keepalive loop and the watch streams.
//! Each service module owns its part, so clones of a client share one stream of each kind.

/// Shared per-client state (filled lazily by the lease and watch modules).
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// The lease keepalive loop (see `lease.rs`).
    pub(crate) lease: super::lease::LeaseShared,
    /// The multiplexed watch streams (see `watch.rs`).
    pub(crate) watch: super::watch::WatchShared,
}

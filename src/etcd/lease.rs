//! lease calls of the client.

use super::client::Client;

/// Per-client lease state shared by all clones (see `shared.rs`).
#[derive(Debug, Default)]
pub(crate) struct LeaseShared {}

impl Client {}

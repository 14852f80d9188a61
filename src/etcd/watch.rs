//! watch calls of the client.

use super::client::Client;

/// Per-client watch state shared by all clones (see `shared.rs`).
#[derive(Debug, Default)]
pub(crate) struct WatchShared {}

impl Client {}

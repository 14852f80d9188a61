//! maintenance calls of the client.

use super::client::Client;

impl Client {}

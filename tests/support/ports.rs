//! Free loopback ports. A port is taken by binding `127.0.0.1:0`; ports handed out in this process
//! are remembered so two harness objects never get the same one.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

use super::{HarnessError, Result};

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A loopback port that is free now and was not handed out before in this process.
pub fn free_port() -> Result<u16> {
    for _ in 0..100 {
        let l = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| HarnessError::io("binding 127.0.0.1:0 to find a free port", e))?;
        let port = l
            .local_addr()
            .map_err(|e| HarnessError::io("reading a bound port", e))?
            .port();
        let mut set = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
        if set.get_or_insert_with(HashSet::new).insert(port) {
            return Ok(port);
        }
    }
    Err(HarnessError::msg(
        "no free loopback port found after 100 tries",
    ))
}

/// Fails with a clear message when `port` is already taken on 127.0.0.1.
pub fn ensure_free(port: u16) -> Result<()> {
    match TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => Ok(()),
        Err(e) => Err(HarnessError::msg(format!(
            "port 127.0.0.1:{port} is already in use ({e})"
        ))),
    }
}

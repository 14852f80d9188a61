//! An etcd v3 client on tonic's codec, prost and its own HTTP/2 transport (h2).
//!
//! ```no_run
//! # async fn demo() -> Result<(), etcd_v3::Error> {
//! use etcd_v3::{Client, ConnectOptions};
//! let client = Client::connect(["127.0.0.1:2379"], ConnectOptions::new()).await?;
//! # Ok(()) }
//! ```

pub mod auth;
mod client;
pub mod cluster;
pub mod concurrency;
pub mod error;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod options;
pub mod pool;
pub mod proto;
mod rpc;
mod transport;
pub mod version;
pub mod watch;

pub use client::Client;
pub use error::{Error, Result, ServerError};
pub use options::{ConnectOptions, TlsOptions};
pub use version::MinorVersion;

//! An etcd v3 client on tonic's codec, prost and its own HTTP/2 transport (h2), with the
//! concurrency recipes of etcd's Go `concurrency` package. No Kubernetes dependency.
//!
//! - [`Client`]: endpoints, per-member channels and health, retries, the auth token; every
//!   unary RPC's retry class and routing is declared once, in one table.
//! - [`kv`], [`watch`], [`lease`], [`cluster`], [`maintenance`], [`auth`]: the services, as
//!   methods of [`Client`] with their option and result types.
//! - [`concurrency`]: lease-bound Session, Mutex, Election and STM.
//! - [`proto`]: the wire types and stubs, generated at build time from the repository's
//!   `proto/` folder (no system `protoc`).
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

//! The test harness: real etcd clusters on loopback, a TCP fault proxy, and a real Kubernetes
//! control plane (etcd + kube-apiserver), all started from binaries provisioned by
//! `hack/provision.sh` and found through environment variables (see [`bins`]).
//!
//! Every process the harness starts is killed, and every directory it made is removed, when the
//! owning value is dropped, including when a test panics. Processes also get `PDEATHSIG`, so they
//! die with the test process if it is killed outright.

#![allow(dead_code, missing_docs)]

pub mod bins;
pub mod e2e;
pub mod etcd;
pub mod kube;
pub mod local;
pub mod node;
pub mod ports;
pub mod process;
pub mod proxy;
pub mod shared_kube;
pub mod stores;

/// The error type of the harness: a sentence naming what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("{0}")]
    Msg(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl HarnessError {
    pub fn msg(s: impl Into<String>) -> Self {
        HarnessError::Msg(s.into())
    }
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        HarnessError::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = HarnessError> = std::result::Result<T, E>;

/// Prefix of every directory the harness creates; `make test` checks afterwards that no process
/// started from such a directory is left running.
pub const DIR_PREFIX: &str = "etcd-operator-test-";

/// A fresh temporary directory named with [`DIR_PREFIX`].
pub fn temp_dir(what: &str) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("{DIR_PREFIX}{what}-"))
        .tempdir()
        .map_err(|e| HarnessError::io("creating a temporary directory", e))
}

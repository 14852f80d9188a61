//! Where the provisioned binaries are. `hack/provision.sh` writes their paths to
//! `~/.cache/etcd-operator/testbin/env.sh`, which `make test` exports; without those variables the
//! default cache layout is tried. A missing binary is an error naming the path and the fix.

use std::path::PathBuf;

use super::{HarnessError, Result};

/// The etcd versions the harness can start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcdVersion {
    /// etcd 3.5.16 (Debian trixie): the harness's default.
    V3_5,
    /// etcd 3.4.23 (Debian bookworm): the older version, for upgrade tests.
    V3_4,
    /// etcd 3.5.35, static, built from the go.etcd.io/etcd modules: above 3.6's upgrade floor.
    V3_5_35,
    /// etcd 3.6.16, static: the operator's default version.
    V3_6,
    /// etcd 3.7.3, static.
    V3_7,
}

impl EtcdVersion {
    /// Every version, oldest first.
    pub const ALL: [EtcdVersion; 5] = [
        EtcdVersion::V3_4,
        EtcdVersion::V3_5,
        EtcdVersion::V3_5_35,
        EtcdVersion::V3_6,
        EtcdVersion::V3_7,
    ];

    pub fn version_string(self) -> &'static str {
        match self {
            EtcdVersion::V3_5 => "3.5.16",
            EtcdVersion::V3_4 => "3.4.23",
            EtcdVersion::V3_5_35 => "3.5.35",
            EtcdVersion::V3_6 => "3.6.16",
            EtcdVersion::V3_7 => "3.7.3",
        }
    }
    fn env_var(self) -> &'static str {
        match self {
            EtcdVersion::V3_5 => "ETCD_BIN_DIR",
            EtcdVersion::V3_4 => "ETCD_OLD_BIN_DIR",
            EtcdVersion::V3_5_35 => "ETCD_3_5_BIN_DIR",
            EtcdVersion::V3_6 => "ETCD_3_6_BIN_DIR",
            EtcdVersion::V3_7 => "ETCD_3_7_BIN_DIR",
        }
    }
}

fn testbin() -> PathBuf {
    if let Some(p) = std::env::var_os("ETCD_OPERATOR_TESTBIN") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/etcd-operator/testbin")
}

fn existing(path: PathBuf, var: &str) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(HarnessError::msg(format!(
            "binary not found: {} (set {var} or run `hack/provision.sh` first)",
            path.display()
        )))
    }
}

/// The folder holding `etcd`, `etcdctl` (and `etcdutl` for 3.5 and later) of a version.
pub fn etcd_dir(v: EtcdVersion) -> PathBuf {
    match std::env::var_os(v.env_var()) {
        Some(p) => PathBuf::from(p),
        None => testbin().join(format!("etcd-{}/bin", v.version_string())),
    }
}

/// Path of an etcd tool (`etcd`, `etcdctl`, `etcdutl`) of a version.
pub fn etcd_tool(v: EtcdVersion, tool: &str) -> Result<PathBuf> {
    existing(etcd_dir(v).join(tool), v.env_var())
}

fn tool(var: &str, default: &str) -> Result<PathBuf> {
    let p = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| testbin().join(default));
    existing(p, var)
}

pub fn kube_apiserver() -> Result<PathBuf> {
    tool("KUBE_APISERVER", "kube-1.34.10/bin/kube-apiserver")
}

pub fn kubectl() -> Result<PathBuf> {
    tool("KUBECTL", "kube-1.34.10/bin/kubectl")
}

pub fn helm() -> Result<PathBuf> {
    tool("HELM", "helm-3.21.4/bin/helm")
}

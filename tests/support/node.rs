//! The real single-node Kubernetes of the in-cluster e2e suite (`hack/node.sh up`, which
//! `make test` and `make cluster-up` run). The suite treats it as a black box: `kubectl` and
//! `helm` with the node's kubeconfig. A missing or unreachable node is an error (the tests fail,
//! they never skip).
//!
//! One operator release (`helm install`, the chart's defaults: 2 replicas, leader election, its
//! own ServiceAccount) serves every test of a run; each test works in a namespace of its own,
//! deleted when the [`TestNamespace`] is dropped, including when the test panics. Tests of one
//! binary run one at a time ([`E2e::lock`]): the node has two cores, and some tests restart the
//! operator.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::kube::output;
use super::{HarnessError, Result, bins};

/// Namespace and release name of the operator installed by the suite.
pub const OPERATOR_NS: &str = "etcd-operator-system";
pub const RELEASE: &str = "etcd-operator";

/// The node's kubeconfig: `$ETCD_OPERATOR_CLUSTER/kubeconfig`, by default
/// `~/.cache/etcd-operator/cluster/kubeconfig`.
pub fn kubeconfig_path() -> PathBuf {
    let dir = std::env::var_os("ETCD_OPERATOR_CLUSTER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/root"));
            home.join(".cache/etcd-operator/cluster")
        });
    dir.join("kubeconfig")
}

/// The repository's root (the chart, the samples).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A handle on the running node.
#[derive(Debug, Clone)]
pub struct Node {
    kubeconfig: PathBuf,
    helm_home: PathBuf,
}

static SERIAL: Mutex<()> = Mutex::new(());

/// What every e2e test holds: the node, with the operator installed, and the lock that keeps
/// the binary's tests one at a time.
pub struct E2e {
    pub node: Node,
    _serial: MutexGuard<'static, ()>,
}

impl E2e {
    /// Takes the suite's lock, checks the node and installs the operator if it is not yet.
    pub fn lock() -> Result<E2e> {
        let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let node = Node::connect()?;
        node.ensure_operator()?;
        Ok(E2e {
            node,
            _serial: serial,
        })
    }
}

impl Node {
    /// The running node, or an error saying how to start one.
    pub fn connect() -> Result<Node> {
        let kubeconfig = kubeconfig_path();
        if !kubeconfig.is_file() {
            return Err(HarnessError::msg(format!(
                "no test node: {} is missing (start one with `make cluster-up`; `make test` does it)",
                kubeconfig.display()
            )));
        }
        let node = Node {
            kubeconfig,
            helm_home: std::env::temp_dir().join(format!("{}e2e-helm", super::DIR_PREFIX)),
        };
        node.kubectl(&["get", "--raw", "/readyz"]).map_err(|e| {
            HarnessError::msg(format!(
                "the test node does not answer (start one with `make cluster-up`): {e}"
            ))
        })?;
        Ok(node)
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// `kubectl args...`: stdout, or an error with stderr.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new(bins::kubectl()?);
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg("--request-timeout=30s")
            .args(args);
        run(cmd, "kubectl", args)
    }

    /// `kubectl args...` with `stdin` as standard input (`apply -f -`).
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Result<String> {
        use std::io::Write;
        let mut child = Command::new(bins::kubectl()?)
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| HarnessError::io("running kubectl", e))?;
        if let Some(mut input) = child.stdin.take() {
            input
                .write_all(stdin.as_bytes())
                .map_err(|e| HarnessError::io("writing kubectl's input", e))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| HarnessError::io("waiting for kubectl", e))?;
        output(out, "kubectl", args)
    }

    /// `kubectl apply -f -` of a manifest.
    pub fn apply(&self, namespace: &str, manifest: &str) -> Result<String> {
        self.kubectl_stdin(&["-n", namespace, "apply", "-f", "-"], manifest)
    }

    /// `helm args...` against the node, with helm's state in a folder of its own.
    pub fn helm(&self, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new(bins::helm()?);
        let h = &self.helm_home;
        cmd.env("HELM_CACHE_HOME", h.join("cache"))
            .env("HELM_CONFIG_HOME", h.join("config"))
            .env("HELM_DATA_HOME", h.join("data"))
            .env("KUBECONFIG", &self.kubeconfig)
            .args(args);
        run(cmd, "helm", args)
    }

    /// Installs the operator with a plain `helm install` of the chart (its default image,
    /// loaded on the node by `hack/node.sh`), unless a release already exists.
    pub fn ensure_operator(&self) -> Result<()> {
        if self.helm(&["status", RELEASE, "-n", OPERATOR_NS]).is_ok() {
            return Ok(());
        }
        let chart = repo().join("charts/etcd-operator");
        let chart = chart.display().to_string();
        self.helm(&[
            "install",
            RELEASE,
            &chart,
            "-n",
            OPERATOR_NS,
            "--create-namespace",
            "--wait",
            "--timeout",
            "5m",
        ])
        .map_err(|e| {
            HarnessError::msg(format!(
                "helm install of the operator failed: {e}\n{}",
                self.operator_logs()
            ))
        })?;
        Ok(())
    }

    /// The operator pods' last log lines, for failure messages.
    pub fn operator_logs(&self) -> String {
        let selector = format!("app.kubernetes.io/instance={RELEASE}");
        self.kubectl(&[
            "-n",
            OPERATOR_NS,
            "logs",
            "-l",
            &selector,
            "--tail=40",
            "--prefix",
            "--all-containers",
        ])
        .unwrap_or_else(|e| format!("(no operator logs: {e})"))
    }

    /// A JSONPath read of one object (`kubectl get KIND NAME -o jsonpath=...`).
    pub fn jsonpath(&self, namespace: &str, object: &str, path: &str) -> Result<String> {
        let p = format!("jsonpath={path}");
        self.kubectl(&["-n", namespace, "get", object, "-o", &p])
    }

    /// Names of the objects of a kind matching a label selector, sorted.
    pub fn names(&self, namespace: &str, kind: &str, selector: &str) -> Result<Vec<String>> {
        let out = self.kubectl(&[
            "-n",
            namespace,
            "get",
            kind,
            "-l",
            selector,
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}{\"\\n\"}{end}",
        ])?;
        let mut v: Vec<String> = out.lines().map(str::to_owned).collect();
        v.sort();
        Ok(v)
    }
}

/// A namespace of one test, deleted (with everything in it) on drop.
pub struct TestNamespace {
    node: Node,
    pub name: String,
}

impl TestNamespace {
    /// Creates `e2e-<what>-<random>`.
    pub fn create(node: &Node, what: &str) -> Result<TestNamespace> {
        let name = format!("e2e-{what}-{:04x}", rand::random::<u16>());
        node.kubectl(&["create", "namespace", &name])?;
        Ok(TestNamespace {
            node: node.clone(),
            name,
        })
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // EtcdClusters first, while the operator still runs, then the namespace and its objects.
        let _ = self.node.kubectl(&[
            "-n",
            &self.name,
            "delete",
            "etcdclusters",
            "--all",
            "--wait=true",
            "--timeout=60s",
        ]);
        if let Err(e) = self.node.kubectl(&[
            "delete",
            "namespace",
            &self.name,
            "--wait=true",
            "--timeout=120s",
        ]) {
            eprintln!("e2e: deleting namespace {} failed: {e}", self.name);
        }
    }
}

/// Polls `check` every `every` until it gives `Some`, for at most `timeout`; the error names
/// `what` and the last state `check` reported.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<Option<T>, String>,
) -> Result<T> {
    let start = Instant::now();
    let mut last = String::from("(not checked)");
    loop {
        match check() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(state) => last = state,
        }
        if start.elapsed() > timeout {
            return Err(HarnessError::msg(format!(
                "timed out after {timeout:?} waiting for {what}; last seen: {last}"
            )));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn run(mut cmd: Command, what: &str, args: &[&str]) -> Result<String> {
    let out = cmd
        .output()
        .map_err(|e| HarnessError::io(format!("running {what}"), e))?;
    output(out, what, args)
}

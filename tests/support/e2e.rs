//! EtcdCluster scenarios on the real node ([`super::node`]): manifests, a client pod that runs
//! `etcdctl` inside the cluster, a background writer, waits on the cluster's status.

use std::collections::BTreeSet;
use std::time::Duration;

use super::node::{Node, TestNamespace, wait_for};
use super::{HarnessError, Result};

/// The etcd version of the scenario clusters: one of the images `hack/provision.sh node` builds
/// (3.5.35, 3.6.16, 3.7.3); `E2E_ETCD_VERSION` overrides it.
pub fn etcd_version() -> String {
    std::env::var("E2E_ETCD_VERSION").unwrap_or_else(|_| "3.5.35".to_owned())
}

/// The client image (busybox and a static etcdctl), loaded on the node by `hack/node.sh`.
pub const CLIENT_IMAGE: &str = "etcd-operator.local/busybox:1.37";

/// Selector of a cluster's member Pods.
pub fn member_selector(cluster: &str) -> String {
    format!("app.kubernetes.io/instance={cluster},app.kubernetes.io/component=member")
}

/// An EtcdCluster manifest.
pub fn cluster_manifest(name: &str, replicas: u32) -> String {
    format!(
        "apiVersion: etcd.operator.dev/v1alpha1\nkind: EtcdCluster\nmetadata:\n  name: {name}\n\
         spec:\n  replicas: {replicas}\n  version: \"{}\"\n  storage:\n    size: 256Mi\n",
        etcd_version()
    )
}

/// A running cluster of one test: its namespace, the client pod, helpers.
pub struct Scenario {
    pub node: Node,
    pub ns: TestNamespace,
    pub cluster: String,
}

impl Scenario {
    /// A namespace with the client pod running (no cluster yet).
    pub fn new(node: &Node, what: &str, cluster: &str) -> Result<Scenario> {
        let ns = TestNamespace::create(node, what)?;
        let s = Scenario {
            node: node.clone(),
            ns,
            cluster: cluster.to_owned(),
        };
        s.node
            .apply(&s.ns.name, &client_pod("client", "[sleep, \"86400\"]"))?;
        s.kubectl(&[
            "wait",
            "--for=condition=Ready",
            "pod/client",
            "--timeout=90s",
        ])?;
        Ok(s)
    }

    pub fn ns(&self) -> &str {
        &self.ns.name
    }

    /// `kubectl -n <ns> args...`.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["-n", self.ns()];
        full.extend_from_slice(args);
        self.node.kubectl(&full)
    }

    /// The client Service's in-cluster URL.
    pub fn client_url(&self) -> String {
        format!(
            "http://{}-client.{}.svc.cluster.local:2379",
            self.cluster,
            self.ns()
        )
    }

    /// `etcdctl args...` in the client pod against the client Service.
    pub fn etcdctl(&self, args: &[&str]) -> Result<String> {
        let endpoints = format!("--endpoints={}", self.client_url());
        let mut full = vec![
            "exec",
            "client",
            "--",
            "etcdctl",
            endpoints.as_str(),
            "--command-timeout=10s",
        ];
        full.extend_from_slice(args);
        self.kubectl(&full)
    }

    /// Waits until the cluster reports `n` ready members out of `n`, `n` member Pods exist and
    /// etcd itself lists `n` started voters.
    pub fn wait_ready(&self, n: usize, timeout: Duration) -> Result<()> {
        let what = format!("{} to be {n}/{n} ready", self.cluster);
        wait_for(&what, timeout, || {
            let status = self
                .kubectl(&[
                    "get",
                    "etcdcluster",
                    &self.cluster,
                    "-o",
                    "jsonpath={.status}",
                ])
                .map_err(|e| e.to_string())?;
            let v: serde_json::Value = serde_json::from_str(&status).unwrap_or_default();
            let ready = v["readyMembers"].as_u64().unwrap_or(0) as usize;
            let available = v["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Available" && c["status"] == "True");
            let pods = self
                .node
                .names(self.ns(), "pods", &member_selector(&self.cluster))
                .map_err(|e| e.to_string())?;
            if ready != n || !available || pods.len() != n {
                return Err(format!("status {status}; pods {pods:?}"));
            }
            let voters = self.voters().map_err(|e| e.to_string())?;
            if voters.len() != n {
                return Err(format!("etcd voters {voters:?}"));
            }
            Ok(Some(()))
        })
        .map_err(|e| HarnessError::msg(format!("{e}\n{}", self.node.operator_logs())))
    }

    /// `(name, id)` of etcd's started voting members, from `etcdctl member list` in the cluster.
    pub fn voters(&self) -> Result<BTreeSet<(String, String)>> {
        let out = self.etcdctl(&["member", "list", "-w", "json"])?;
        let v: serde_json::Value = serde_json::from_str(&out)
            .map_err(|e| HarnessError::msg(format!("member list is not JSON ({e}): {out}")))?;
        Ok(v["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| !m["isLearner"].as_bool().unwrap_or(false))
            .filter(|m| m["name"].as_str().is_some_and(|s| !s.is_empty()))
            .map(|m| {
                (
                    m["name"].as_str().unwrap_or_default().to_owned(),
                    format!("{:x}", m["ID"].as_u64().unwrap_or_default()),
                )
            })
            .collect())
    }

    /// Starts a writer pod putting `/w/<n>` for n = 1, 2, ... through the client Service and
    /// printing `ack <n>` for every acknowledged write. Once stopped it prints `done` and
    /// stays up: a container that exited under the `kubectl exec` that stopped it made that
    /// exec fail with 137 (seen in a CI run).
    pub fn start_writer(&self) -> Result<()> {
        let script = format!(
            "i=0; while [ ! -e /tmp/stop ]; do i=$((i+1)); \
             if etcdctl --endpoints={} --command-timeout=5s put /w/$i v$i >/dev/null 2>&1; \
             then echo ack $i; fi; sleep 0.1; done; echo done; exec sleep 86400",
            self.client_url()
        );
        let command = format!("[sh, -c, {}]", serde_json::Value::String(script));
        self.node
            .apply(self.ns(), &client_pod("writer", &command))?;
        self.kubectl(&[
            "wait",
            "--for=condition=Ready",
            "pod/writer",
            "--timeout=60s",
        ])?;
        Ok(())
    }

    /// Stops the writer; the acknowledged keys.
    pub fn stop_writer(&self) -> Result<BTreeSet<u64>> {
        self.kubectl(&["exec", "writer", "--", "touch", "/tmp/stop"])?;
        let logs = wait_for("the writer to stop", Duration::from_secs(30), || {
            let logs = self
                .kubectl(&["logs", "writer"])
                .map_err(|e| e.to_string())?;
            Ok(logs.lines().any(|l| l == "done").then_some(logs))
        })?;
        Ok(logs
            .lines()
            .filter_map(|l| l.strip_prefix("ack "))
            .filter_map(|n| n.parse().ok())
            .collect())
    }

    /// The `/w/<n>` keys present in etcd.
    pub fn written_keys(&self) -> Result<BTreeSet<u64>> {
        let out = self.etcdctl(&["get", "/w/", "--prefix", "--keys-only"])?;
        Ok(out
            .lines()
            .filter_map(|l| l.strip_prefix("/w/"))
            .filter_map(|n| n.parse().ok())
            .collect())
    }

    /// The UID of an object.
    pub fn uid(&self, object: &str) -> Result<String> {
        self.kubectl(&["get", object, "-o", "jsonpath={.metadata.uid}"])
    }
}

/// A pod of the client image: UID 65532, read-only root, a writable /tmp.
fn client_pod(name: &str, command: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  \
         terminationGracePeriodSeconds: 1\n  enableServiceLinks: false\n  \
         automountServiceAccountToken: false\n  securityContext:\n    runAsNonRoot: true\n    \
         runAsUser: 65532\n    runAsGroup: 65532\n    seccompProfile: {{type: RuntimeDefault}}\n  \
         containers:\n  - name: main\n    image: {CLIENT_IMAGE}\n    imagePullPolicy: Never\n    \
         command: {command}\n    securityContext:\n      readOnlyRootFilesystem: true\n      \
         allowPrivilegeEscalation: false\n      capabilities: {{drop: [ALL]}}\n    \
         volumeMounts:\n    - {{name: tmp, mountPath: /tmp}}\n  volumes:\n  - {{name: tmp, emptyDir: {{}}}}\n"
    )
}

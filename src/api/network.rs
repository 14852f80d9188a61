//! `spec.networkPolicy`: a Kubernetes NetworkPolicy for the member Pods, so that only the
//! members reach each other's peer port and only the operator and the clients the spec names
//! reach the client and metrics ports.
//!
//! The policy restricts ingress only (members still reach object stores, DNS and each other's
//! Services); it takes effect where the network plugin enforces NetworkPolicy (Calico, Cilium,
//! kube-router, ...) and is inert elsewhere.

use std::collections::BTreeMap;

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// The NetworkPolicy of the member Pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Create the NetworkPolicy `<cluster>` (default true). Set to false (or remove the section)
    /// and the operator deletes it.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Who else may reach the client port (2379) and the metrics port (2381), besides the
    /// members and the operator. Each entry selects Pods by labels, namespaces by labels, or
    /// both (Pods with those labels in those namespaces); no entry: only the members and the
    /// operator.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub clients: Vec<ClientSelector>,
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        NetworkPolicySpec {
            enabled: true,
            clients: Vec::new(),
        }
    }
}

fn default_true() -> bool {
    true
}

/// Clients let in: Pods with `podLabels` (in the cluster's namespace, unless `namespaceLabels`
/// is given too), or every Pod in the namespaces with `namespaceLabels`. At least one of them.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(super::rules::NETWORK_CLIENT_RULE).message(super::rules::NETWORK_CLIENT_MESSAGE)
)]
pub struct ClientSelector {
    /// Labels the client Pods carry (`matchLabels`), e.g. `{app: api-server}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 16), inner(length(max = 63)))]
    pub pod_labels: Option<BTreeMap<String, String>>,
    /// Labels of the namespaces the clients run in (`matchLabels`), e.g.
    /// `{kubernetes.io/metadata.name: tenants}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 16), inner(length(max = 63)))]
    pub namespace_labels: Option<BTreeMap<String, String>>,
}

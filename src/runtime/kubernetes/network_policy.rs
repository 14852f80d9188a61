//! The NetworkPolicy `<cluster>` of `spec.networkPolicy` (a pure builder, [`network_policy`]),
//! and applying or deleting it ([`sync_network_policy`]).
//!
//! Ingress to the member Pods only: the peer port from the cluster's members; the client and
//! metrics ports from the members, the operator's Pods and the clients the spec names. Egress
//! is not restricted (members reach DNS, each other's Services and, for restores, stores).

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec as K8sPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams};

use super::KubeError;
use super::objects::{Blueprint, CLIENT_PORT, FIELD_MANAGER, METRICS_PORT, PEER_PORT};
use crate::api::{ClientSelector, NetworkPolicySpec};

/// The label every namespace carries with its own name (Kubernetes ≥ 1.22).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The operator's own Pods, let in to the client and metrics ports: their labels (the chart's
/// selector labels, `--operator-pod-labels`) and namespace (`POD_NAMESPACE`; unknown: any).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OperatorPods {
    /// The labels of the operator's Pods; empty: every Pod of [`OperatorPods::namespace`].
    pub labels: BTreeMap<String, String>,
    /// The namespace they run in; `None`: any namespace.
    pub namespace: Option<String>,
}

impl OperatorPods {
    /// Reads `k=v,k2=v2` (the flag's format) and the namespace.
    pub fn parse(labels: &str, namespace: Option<String>) -> Result<Self, String> {
        let mut out = BTreeMap::new();
        for pair in labels.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not key=value"))?;
            out.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        Ok(OperatorPods {
            labels: out,
            namespace: namespace.filter(|n| !n.is_empty()),
        })
    }

    fn peer(&self) -> NetworkPolicyPeer {
        NetworkPolicyPeer {
            pod_selector: Some(match_labels(Some(&self.labels))),
            namespace_selector: Some(match_labels(
                self.namespace
                    .as_ref()
                    .map(|n| BTreeMap::from([(NAMESPACE_NAME_LABEL.to_owned(), n.clone())]))
                    .as_ref(),
            )),
            ip_block: None,
        }
    }
}

fn match_labels(labels: Option<&BTreeMap<String, String>>) -> LabelSelector {
    LabelSelector {
        match_labels: labels.filter(|l| !l.is_empty()).cloned(),
        match_expressions: None,
    }
}

fn client_peer(c: &ClientSelector) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(match_labels(c.pod_labels.as_ref())),
        namespace_selector: c.namespace_labels.as_ref().map(|n| match_labels(Some(n))),
        ip_block: None,
    }
}

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".to_owned()),
        end_port: None,
    }
}

/// The NetworkPolicy of the cluster `info`, for `spec`, letting `operator` in.
pub fn network_policy(
    info: &Blueprint,
    spec: &NetworkPolicySpec,
    operator: &OperatorPods,
) -> NetworkPolicy {
    let members = NetworkPolicyPeer {
        pod_selector: Some(match_labels(Some(&info.member_selector()))),
        namespace_selector: None,
        ip_block: None,
    };
    let mut clients = vec![members.clone(), operator.peer()];
    clients.extend(spec.clients.iter().map(client_peer));
    NetworkPolicy {
        metadata: info.meta(info.name.clone(), "member"),
        spec: Some(K8sPolicySpec {
            pod_selector: Some(match_labels(Some(&info.member_selector()))),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    from: Some(vec![members]),
                    ports: Some(vec![tcp(PEER_PORT)]),
                },
                NetworkPolicyIngressRule {
                    from: Some(clients),
                    ports: Some(vec![tcp(CLIENT_PORT), tcp(METRICS_PORT)]),
                },
            ]),
            egress: None,
        }),
    }
}

/// The clusters (by UID) known to have no NetworkPolicy of the operator: a cluster without
/// `spec.networkPolicy` costs one DELETE per operator start, not one per pass.
#[derive(Debug, Default)]
pub struct KnownAbsent(Mutex<HashSet<String>>);

impl KnownAbsent {
    fn contains(&self, uid: &str) -> bool {
        self.0.lock().is_ok_and(|s| s.contains(uid))
    }

    fn set(&self, uid: &str, absent: bool) {
        if let Ok(mut s) = self.0.lock() {
            if absent {
                s.insert(uid.to_owned());
            } else {
                s.remove(uid);
            }
        }
    }
}

/// Applies the NetworkPolicy `spec` asks for, or deletes the cluster's (once) when it asks for
/// none.
pub async fn sync_network_policy(
    client: &kube::Client,
    info: &Blueprint,
    spec: Option<&NetworkPolicySpec>,
    operator: &OperatorPods,
    absent: &KnownAbsent,
) -> Result<(), KubeError> {
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), &info.namespace);
    match spec.filter(|s| s.enabled) {
        Some(spec) => {
            let policy = network_policy(info, spec, operator);
            absent.set(&info.uid, false);
            api.patch(
                &info.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&policy),
            )
            .await
            .map_err(|source| KubeError::Kube {
                what: format!("applying NetworkPolicy {}", info.name),
                source,
            })?;
        }
        None if absent.contains(&info.uid) => {}
        None => {
            match api.delete(&info.name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(source) => {
                    return Err(KubeError::Kube {
                        what: format!("deleting NetworkPolicy {}", info.name),
                        source,
                    });
                }
            }
            absent.set(&info.uid, true);
        }
    }
    Ok(())
}

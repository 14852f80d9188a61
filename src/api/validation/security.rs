//! `spec.tls` and `spec.auth`: the same rules as the CRD's CEL rules, and the transition rules
//! the local runtime applies itself when a manifest changes (the apiserver applies them in
//! Kubernetes).

use super::{FieldError, err};
use crate::api::{EtcdClusterSpec, rules};

/// The checks of `spec.tls` and `spec.auth` that need only the new spec.
pub(super) fn validate_security(spec: &EtcdClusterSpec, out: &mut Vec<FieldError>) {
    if let Some(tls) = &spec.tls {
        let s = &tls.source;
        let sources = [
            s.operator_managed.is_some(),
            s.secrets.is_some(),
            s.cert_manager.is_some(),
        ];
        if sources.iter().filter(|x| **x).count() > 1 {
            out.push(err("spec.tls.source", rules::TLS_ONE_SOURCE_MESSAGE));
        }
        if s.cert_manager.is_some() {
            out.push(err("spec.tls.source", rules::TLS_CERT_MANAGER_MESSAGE));
        }
    }
    if let Some(name) = spec
        .auth
        .as_ref()
        .and_then(|a| a.root_password_secret.as_deref())
        && (name.is_empty() || name.len() > 253)
    {
        out.push(err(
            "spec.auth.rootPasswordSecret",
            format!("must be 1 to 253 characters long, not {}", name.len()),
        ));
    }
}

/// The checks of `spec.networkPolicy`: each client entry selects something, with label keys and
/// values Kubernetes accepts (checked here so that a bad one is reported as an invalid spec,
/// not as a NetworkPolicy the apiserver refuses).
pub(super) fn validate_network_policy(spec: &EtcdClusterSpec, out: &mut Vec<FieldError>) {
    let Some(policy) = &spec.network_policy else {
        return;
    };
    if policy.clients.len() > 16 {
        out.push(err(
            "spec.networkPolicy.clients",
            format!("at most 16 entries, not {}", policy.clients.len()),
        ));
    }
    for (i, client) in policy.clients.iter().enumerate() {
        let path = format!("spec.networkPolicy.clients[{i}]");
        if client.pod_labels.is_none() && client.namespace_labels.is_none() {
            out.push(err(&path, rules::NETWORK_CLIENT_MESSAGE));
        }
        for (field, labels) in [
            ("podLabels", &client.pod_labels),
            ("namespaceLabels", &client.namespace_labels),
        ] {
            if labels.as_ref().is_some_and(|l| l.len() > 16) {
                out.push(err(&format!("{path}.{field}"), "at most 16 labels"));
            }
            for (key, value) in labels.iter().flatten() {
                if let Some(why) = label_problem(key, value) {
                    out.push(err(&format!("{path}.{field}"), why));
                }
            }
        }
    }
}

/// Why `key: value` is not a Kubernetes label, if it is not: the key an optional DNS-subdomain
/// prefix and `/`, then a name of at most 63 characters; the value empty or such a name.
fn label_problem(key: &str, value: &str) -> Option<String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let name_ok = |n: &str| {
        let b = n.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    };
    let prefix_ok = |p: &str| {
        p.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
    };
    let key_ok = key.len() <= 317 && name_ok(name) && prefix.is_none_or(prefix_ok);
    (!key_ok || !(value.is_empty() || name_ok(value)))
        .then(|| format!("{key:?}: {value:?}: {}", rules::SELECTOR_LABELS_MESSAGE))
}

fn tls_on(spec: &EtcdClusterSpec) -> (bool, bool) {
    spec.tls
        .as_ref()
        .map_or((false, false), |t| (t.client.enabled, t.peer.enabled))
}

/// The transition rules of `spec.tls` and `spec.auth` ([`rules::TLS_IMMUTABLE_RULE`],
/// [`rules::AUTH_OFF_RULE`]) between the spec a cluster runs with and a new one.
pub fn validate_transition(old: &EtcdClusterSpec, new: &EtcdClusterSpec) -> Vec<FieldError> {
    let mut out = Vec::new();
    if tls_on(old) != tls_on(new) {
        out.push(err("spec.tls", rules::TLS_IMMUTABLE_MESSAGE));
    }
    let auth = |s: &EtcdClusterSpec| s.auth.as_ref().is_some_and(|a| a.enabled);
    if auth(old) && !auth(new) {
        out.push(err("spec.auth.enabled", rules::AUTH_OFF_MESSAGE));
    }
    out
}

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

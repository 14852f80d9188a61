//! security: what a pass does about `spec.tls` and `spec.auth` besides the members' flags. The
//! runtime keeps the certificates and the root password ([`Security`]); this module turns their
//! expiry into `status.tls` and enables etcd authentication once the cluster is up.

use std::fmt;
use std::time::SystemTime;

use super::clock::whole_seconds;
use crate::api::{AuthStatus, CertificateExpiry, EtcdClusterStatus, TlsStatus};
use crate::etcd::{Client, ServerError};
use crate::tls::pki::Kind;

/// The etcd user and role the operator creates and authenticates as.
pub const ROOT: &str = "root";

/// A password; never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(p: impl Into<String>) -> Self {
        Password(p.into())
    }

    /// The password itself (for etcd calls only).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// `opts` with the operator's TLS client identity (`tls`, when the cluster's client port
/// speaks TLS) and root's credentials (when auth is on): how both runtimes connect.
pub fn client_options(
    mut opts: crate::etcd::ConnectOptions,
    tls: Option<&crate::tls::pki::Bundle>,
    root_password: Option<&Password>,
) -> crate::etcd::ConnectOptions {
    if let Some(b) = tls {
        opts = opts.with_tls(crate::etcd::TlsOptions {
            ca_pem: Some(b.ca.cert_pem.clone().into_bytes()),
            cert_pem: Some(b.client.cert_pem.clone().into_bytes()),
            key_pem: Some(b.client.key_pem.clone().into_bytes()),
            server_name: None,
        });
    }
    if let Some(p) = root_password {
        opts = opts.with_user(ROOT, p.expose());
    }
    opts
}

/// What the runtime prepared for this pass.
#[derive(Debug, Clone, Default)]
pub struct Security {
    /// When each certificate expires (TLS clusters).
    pub not_after: Vec<(Kind, SystemTime)>,
    /// root's password (`spec.auth.enabled`).
    pub root_password: Option<Password>,
}

/// `status.tls` from the certificates' expiry (`None` without certificates).
pub fn tls_status(not_after: &[(Kind, SystemTime)]) -> Option<TlsStatus> {
    if not_after.is_empty() {
        return None;
    }
    let mut e = CertificateExpiry::default();
    for (kind, t) in not_after {
        let slot = match kind {
            Kind::Ca => &mut e.ca,
            Kind::Server => &mut e.server,
            Kind::Peer => &mut e.peer,
            Kind::Client => &mut e.client,
        };
        *slot = Some(whole_seconds(*t));
    }
    Some(TlsStatus { not_after: e })
}

/// Whether the pass should make sure authentication is on: asked for, not yet recorded as
/// on, and the cluster is idle and available (`idle_and_available`).
pub fn should_enable_auth(
    wanted: bool,
    previous: Option<&EtcdClusterStatus>,
    idle_and_available: bool,
) -> bool {
    let recorded = previous
        .and_then(|s| s.auth.as_ref())
        .is_some_and(|a| a.enabled);
    wanted && !recorded && idle_and_available
}

/// Why authentication could not be enabled.
#[derive(Debug, thiserror::Error)]
#[error("enabling authentication ({stage}): {source}")]
pub struct AuthError {
    /// The call that failed.
    pub stage: &'static str,
    /// etcd's error.
    #[source]
    pub source: crate::etcd::Error,
}

fn ok_if(
    result: Result<crate::etcd::kv::Header, crate::etcd::Error>,
    tolerated: ServerError,
    stage: &'static str,
) -> Result<(), AuthError> {
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.server_error() == Some(tolerated) => Ok(()),
        Err(source) => Err(AuthError { stage, source }),
    }
}

/// Turns authentication on with the user `root` (role `root`) and `password`; answers whether
/// it was off before. A `root` user that exists already gets `password`.
pub async fn enable_auth(client: &Client, password: &Password) -> Result<bool, AuthError> {
    let status = client.auth_status().await;
    match status {
        Ok(s) if s.enabled => return Ok(false),
        Ok(_) => {}
        // With auth on, an unauthenticated status call is refused: it is on.
        Err(e) if e.server_error() == Some(ServerError::UserEmpty) => return Ok(false),
        Err(source) => {
            return Err(AuthError {
                stage: "auth status",
                source,
            });
        }
    }
    match client.user_add(ROOT, password.expose()).await {
        Ok(_) => {}
        Err(e) if e.server_error() == Some(ServerError::UserAlreadyExist) => {
            client
                .user_change_password(ROOT, password.expose())
                .await
                .map_err(|source| AuthError {
                    stage: "root password",
                    source,
                })?;
        }
        Err(source) => {
            return Err(AuthError {
                stage: "user add",
                source,
            });
        }
    }
    ok_if(
        client.role_add(ROOT).await,
        ServerError::RoleAlreadyExist,
        "role add",
    )?;
    client
        .user_grant_role(ROOT, ROOT)
        .await
        .map_err(|source| AuthError {
            stage: "grant root",
            source,
        })?;
    client.auth_enable().await.map_err(|source| AuthError {
        stage: "auth enable",
        source,
    })?;
    Ok(true)
}

/// `status.auth` once authentication is on.
pub fn auth_on() -> AuthStatus {
    AuthStatus { enabled: true }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_printed() {
        let p = Password::new("hunter2");
        assert!(!format!("{p:?}").contains("hunter2"));
        let s = Security {
            not_after: vec![],
            root_password: Some(p),
        };
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn auth_is_enabled_once_when_idle() {
        assert!(should_enable_auth(true, None, true));
        assert!(!should_enable_auth(true, None, false));
        assert!(!should_enable_auth(false, None, true));
        let done = EtcdClusterStatus {
            auth: Some(auth_on()),
            ..EtcdClusterStatus::default()
        };
        assert!(!should_enable_auth(true, Some(&done), true));
    }

    #[test]
    fn expiry_is_reported_per_kind() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let s = tls_status(&[(Kind::Ca, t), (Kind::Client, t)]).expect("some");
        assert_eq!(s.not_after.ca.as_deref(), Some("2027-01-15T08:00:00Z"));
        assert!(s.not_after.server.is_none());
        assert!(tls_status(&[]).is_none());
    }
}

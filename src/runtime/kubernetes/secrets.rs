//! The Secrets of a TLS or auth cluster in Kubernetes: the operator-managed certificates
//! (`<cluster>-ca`, `<cluster>-server`, `<cluster>-peer`, `<cluster>-operator-client`, each
//! `kubernetes.io/tls` with `ca.crt`, owned by the `EtcdCluster`) and root's password (the
//! Secret `spec.auth.rootPasswordSecret` names, or a generated `<cluster>-root`). The objects
//! are pure functions; [`ensure_certificates`] and [`root_password`] do the API calls.

use std::collections::BTreeMap;
use std::time::SystemTime;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::api::AuthSpec;
use crate::controller::plan::MAX_ORDINAL;
use crate::controller::security::Password;
use crate::tls::pki::{self, Bundle, CertKey, Ensured, Kind, Names};

use super::KubeError;
use super::objects::{Blueprint, FIELD_MANAGER};

/// The key of the root password in its Secret.
pub const PASSWORD_KEY: &str = "password";

/// The SANs of the member certificates: every member's own Service name (for each ordinal a
/// member may have), the client Service's names, and loopback (a port-forward, a probe).
pub fn tls_names(info: &Blueprint) -> Names {
    let members: Vec<String> = (0..=MAX_ORDINAL).map(|o| info.member_host(o)).collect();
    let client = info.client_service();
    let ns = &info.namespace;
    let mut server = members.clone();
    server.extend([
        client.clone(),
        format!("{client}.{ns}"),
        format!("{client}.{ns}.svc"),
        format!("{client}.{ns}.svc.{}", info.cluster_domain),
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
    ]);
    Names {
        cluster: info.name.clone(),
        server,
        peer: members,
    }
}

/// The Secret holding the certificate `kind` of `bundle`.
pub fn certificate_secret(info: &Blueprint, kind: Kind, bundle: &Bundle) -> Secret {
    let c = bundle.get(kind);
    let data = BTreeMap::from([
        (
            "tls.crt".to_owned(),
            ByteString(c.cert_pem.clone().into_bytes()),
        ),
        (
            "tls.key".to_owned(),
            ByteString(c.key_pem.clone().into_bytes()),
        ),
        (
            "ca.crt".to_owned(),
            ByteString(bundle.ca.cert_pem.clone().into_bytes()),
        ),
    ]);
    let mut secret = owned_secret(info, info.tls_secret(kind), "tls");
    secret.type_ = Some("kubernetes.io/tls".to_owned());
    secret.data = Some(data);
    secret
}

fn owned_secret(info: &Blueprint, name: String, component: &str) -> Secret {
    let mut secret = Secret::default();
    secret.metadata.name = Some(name);
    secret.metadata.namespace = Some(info.namespace.clone());
    secret.metadata.labels = Some(info.labels(component));
    secret.metadata.owner_references = Some(vec![info.owner_reference()]);
    secret
}

fn pem_of(secret: Option<&Secret>) -> Option<CertKey> {
    let data = secret?.data.as_ref()?;
    let text = |k: &str| String::from_utf8(data.get(k)?.0.clone()).ok();
    Some(CertKey {
        cert_pem: text("tls.crt")?,
        key_pem: text("tls.key")?,
    })
}

/// The bundle the stored Secrets hold (blank leaves where one is missing; `None` without a CA).
pub fn bundle_of(secrets: &BTreeMap<Kind, Secret>) -> Option<Bundle> {
    let ca = pem_of(secrets.get(&Kind::Ca))?;
    let blank = || CertKey {
        cert_pem: String::new(),
        key_pem: String::new(),
    };
    let leaf = |k| pem_of(secrets.get(&k)).unwrap_or_else(blank);
    Some(Bundle {
        ca,
        server: leaf(Kind::Server),
        peer: leaf(Kind::Peer),
        client: leaf(Kind::Client),
    })
}

fn kube_err(what: String) -> impl FnOnce(kube::Error) -> KubeError {
    move |source| KubeError::Kube { what, source }
}

/// Reads the certificate Secrets, makes or renews what is due at `now` and applies the
/// Secrets that changed (leaves before the CA).
pub async fn ensure_certificates(
    client: &kube::Client,
    info: &Blueprint,
    now: SystemTime,
) -> Result<Ensured, KubeError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &info.namespace);
    let mut stored = BTreeMap::new();
    for kind in [Kind::Ca, Kind::Server, Kind::Peer, Kind::Client] {
        let name = info.tls_secret(kind);
        if let Some(s) = api.get_opt(&name).await.map_err(kube_err(format!(
            "reading Secret {}/{name}",
            info.namespace
        )))? {
            stored.insert(kind, s);
        }
    }
    let ensured =
        pki::ensure(bundle_of(&stored).as_ref(), &tls_names(info), now).map_err(KubeError::Tls)?;
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    // Every Secret carries ca.crt: a new CA rewrites them all.
    let ca_new = ensured.renewed.contains(&Kind::Ca);
    for kind in [Kind::Server, Kind::Peer, Kind::Client, Kind::Ca] {
        if ca_new || ensured.renewed.contains(&kind) || !stored.contains_key(&kind) {
            let secret = certificate_secret(info, kind, &ensured.bundle);
            let name = info.tls_secret(kind);
            api.patch(&name, &pp, &Patch::Apply(&secret))
                .await
                .map_err(kube_err(format!(
                    "applying Secret {}/{name}",
                    info.namespace
                )))?;
        }
    }
    Ok(ensured)
}

/// Reads the certificate Secrets without writing anything: the user's
/// (`spec.tls.source.secrets`), or the operator's while the cluster is paused. The kinds the
/// cluster uses must exist and hold a certificate (and key).
pub async fn read_certificates(
    client: &kube::Client,
    info: &Blueprint,
) -> Result<(Bundle, Vec<(Kind, SystemTime)>), KubeError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &info.namespace);
    let text = |s: &Secret, k: &str| {
        s.data
            .as_ref()
            .and_then(|d| d.get(k))
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
    };
    let mut read = Vec::new();
    for kind in [Kind::Ca, Kind::Server, Kind::Peer, Kind::Client] {
        let name = info.tls_secret(kind);
        let secret = api.get_opt(&name).await.map_err(kube_err(format!(
            "reading Secret {}/{name}",
            info.namespace
        )))?;
        read.push(pki::UserSecret {
            name: format!("{}/{name}", info.namespace),
            data: secret.map(|s| [text(&s, "tls.crt"), text(&s, "tls.key"), text(&s, "ca.crt")]),
        });
    }
    let [ca, server, peer, operator] = [&read[0], &read[1], &read[2], &read[3]];
    pki::user_bundle([ca, server, peer, operator], &info.template.tls.kinds())
        .map_err(KubeError::Tls)
}

/// The name of the generated root password Secret.
pub fn root_secret_name(info: &Blueprint) -> String {
    format!("{}-root", info.name)
}

/// root's password: from the Secret `auth.rootPasswordSecret` names, else from
/// `<cluster>-root`, which is created (owned by the cluster) with a random password when absent
/// and `create` (not while paused: `None` then).
pub async fn root_password(
    client: &kube::Client,
    info: &Blueprint,
    auth: &AuthSpec,
    create: bool,
) -> Result<Option<Password>, KubeError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &info.namespace);
    let read = |s: &Secret| {
        s.data
            .as_ref()
            .and_then(|d| d.get(PASSWORD_KEY))
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
    };
    if let Some(name) = &auth.root_password_secret {
        let secret = api
            .get_opt(name)
            .await
            .map_err(kube_err(format!(
                "reading Secret {}/{name}",
                info.namespace
            )))?
            .ok_or_else(|| {
                KubeError::Auth(format!(
                    "spec.auth.rootPasswordSecret: Secret {}/{name} does not exist",
                    info.namespace
                ))
            })?;
        return read(&secret)
            .map(|p| Some(Password::new(p)))
            .ok_or_else(|| {
                KubeError::Auth(format!(
                    "Secret {}/{name} has no non-empty key {PASSWORD_KEY:?}",
                    info.namespace
                ))
            });
    }
    let name = root_secret_name(info);
    let what = format!("Secret {}/{name}", info.namespace);
    if let Some(s) = api
        .get_opt(&name)
        .await
        .map_err(kube_err(format!("reading {what}")))?
        && let Some(p) = read(&s)
    {
        return Ok(Some(Password::new(p)));
    }
    if !create {
        return Ok(None);
    }
    let mut secret = owned_secret(info, name.clone(), "auth");
    secret.type_ = Some("Opaque".to_owned());
    let password = crate::runtime::local::security::new_password();
    secret.data = Some(BTreeMap::from([(
        PASSWORD_KEY.to_owned(),
        ByteString(password.clone().into_bytes()),
    )]));
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(Some(Password::new(password))),
        // Another writer was first: its password stands.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let s = api
                .get(&name)
                .await
                .map_err(kube_err(format!("reading {what}")))?;
            read(&s)
                .map(|p| Some(Password::new(p)))
                .ok_or_else(|| KubeError::Auth(format!("{what} has no key {PASSWORD_KEY:?}")))
        }
        Err(source) => Err(KubeError::Kube {
            what: format!("creating {what}"),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cover_every_member_and_the_client_service() {
        let info = Blueprint {
            name: "db".into(),
            namespace: "prod".into(),
            uid: "u".into(),
            cluster_domain: "cluster.local".into(),
            template: crate::controller::validate::member_template(
                &crate::api::EtcdClusterSpec::default(),
            ),
        };
        let n = tls_names(&info);
        assert!(n.server.contains(&"db-0.prod.svc.cluster.local".to_owned()));
        assert!(
            n.server
                .contains(&format!("db-{MAX_ORDINAL}.prod.svc.cluster.local"))
        );
        assert!(n.server.contains(&"db-client.prod.svc".to_owned()));
        assert!(
            n.peer
                .iter()
                .all(|p| p.ends_with(".prod.svc.cluster.local"))
        );
        let bundle = pki::ensure(None, &n, SystemTime::now())
            .expect("bundle")
            .bundle;
        let s = certificate_secret(&info, Kind::Server, &bundle);
        assert_eq!(s.metadata.name.as_deref(), Some("db-server"));
        assert_eq!(s.type_.as_deref(), Some("kubernetes.io/tls"));
        let stored = BTreeMap::from([
            (Kind::Ca, certificate_secret(&info, Kind::Ca, &bundle)),
            (Kind::Server, s),
        ]);
        let back = bundle_of(&stored).expect("a CA");
        assert_eq!(back.ca, bundle.ca);
        assert_eq!(back.server, bundle.server);
        assert!(back.peer.cert_pem.is_empty());
    }
}

//! The certificate volumes of a TLS member Pod: the CA's certificate (never its key), the
//! server and the peer Secrets, read-only under [`TLS_MOUNT`], and the paths etcd's flags name.

use k8s_openapi::api::core::v1::{Volume, VolumeMount};

use super::objects::Blueprint;

/// Where the certificate Secrets are mounted in a member Pod.
pub const TLS_MOUNT: &str = "/etc/etcd/tls";

/// The member's certificate files under [`TLS_MOUNT`]: the CA certificate (only `ca.crt` of
/// the CA Secret, never its key), the server and the peer `kubernetes.io/tls` Secrets.
pub fn tls_paths() -> crate::tls::CertPaths {
    crate::tls::CertPaths {
        ca: format!("{TLS_MOUNT}/ca/ca.crt"),
        server: (
            format!("{TLS_MOUNT}/server/tls.crt"),
            format!("{TLS_MOUNT}/server/tls.key"),
        ),
        peer: (
            format!("{TLS_MOUNT}/peer/tls.crt"),
            format!("{TLS_MOUNT}/peer/tls.key"),
        ),
    }
}

/// The certificate volumes and mounts of a member Pod (none without TLS).
pub(super) fn tls_volumes(info: &Blueprint) -> (Vec<Volume>, Vec<VolumeMount>) {
    use crate::tls::pki::Kind;
    use k8s_openapi::api::core::v1::{KeyToPath, SecretVolumeSource};
    let tls = info.template.tls;
    if !tls.any() {
        return (Vec::new(), Vec::new());
    }
    let mut wanted = vec![("ca", Kind::Ca)];
    if tls.client {
        wanted.push(("server", Kind::Server));
    }
    if tls.peer {
        wanted.push(("peer", Kind::Peer));
    }
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for (dir, kind) in wanted {
        let name = format!("tls-{dir}");
        volumes.push(Volume {
            name: name.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(info.tls_secret(kind)),
                // Group-readable for etcd's group (fsGroup), nobody else.
                default_mode: Some(0o440),
                items: (kind == Kind::Ca).then(|| {
                    vec![KeyToPath {
                        key: "ca.crt".to_owned(),
                        path: "ca.crt".to_owned(),
                        mode: None,
                    }]
                }),
                optional: Some(false),
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name,
            mount_path: format!("{TLS_MOUNT}/{dir}"),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    (volumes, mounts)
}

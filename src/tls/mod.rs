//! TLS and authentication of managed clusters: the certificates the operator makes
//! ([`pki`]) and the etcd flags and URL schemes that follow from `spec.tls` (pure functions the
//! runtimes share).

pub mod pki;

use crate::api::EtcdClusterSpec;

/// What `spec.tls` asks for, read once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TlsSettings {
    /// Members serve clients over TLS.
    pub client: bool,
    /// Clients must present a certificate signed by the cluster's CA.
    pub client_cert_auth: bool,
    /// Members talk to each other over mutual TLS.
    pub peer: bool,
}

impl TlsSettings {
    /// The settings of `spec`.
    pub fn of(spec: &EtcdClusterSpec) -> Self {
        spec.tls
            .as_ref()
            .map_or_else(TlsSettings::default, |t| TlsSettings {
                client: t.client.enabled,
                client_cert_auth: t.client.enabled && t.client.client_cert_auth,
                peer: t.peer.enabled,
            })
    }

    /// Whether any certificate is needed.
    pub fn any(self) -> bool {
        self.client || self.peer
    }

    /// The certificate kinds these settings use (the operator's client certificate with
    /// client TLS).
    pub fn kinds(self) -> Vec<pki::Kind> {
        let mut out = vec![pki::Kind::Ca];
        if self.client {
            out.extend([pki::Kind::Server, pki::Kind::Client]);
        }
        if self.peer {
            out.push(pki::Kind::Peer);
        }
        out
    }

    /// `https` or `http` for client URLs.
    pub fn client_scheme(self) -> &'static str {
        if self.client { "https" } else { "http" }
    }

    /// `https` or `http` for peer URLs.
    pub fn peer_scheme(self) -> &'static str {
        if self.peer { "https" } else { "http" }
    }
}

/// Where a member finds its certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    /// The CA certificate (trust for clients and peers).
    pub ca: String,
    /// The server certificate and key.
    pub server: (String, String),
    /// The peer certificate and key.
    pub peer: (String, String),
}

/// The TLS flags of a member (none for a plaintext cluster).
pub fn etcd_flags(tls: TlsSettings, paths: &CertPaths) -> Vec<String> {
    let mut out = Vec::new();
    if tls.client {
        out.push(format!("--cert-file={}", paths.server.0));
        out.push(format!("--key-file={}", paths.server.1));
        out.push(format!("--trusted-ca-file={}", paths.ca));
        out.push(format!("--client-cert-auth={}", tls.client_cert_auth));
    }
    if tls.peer {
        out.push(format!("--peer-cert-file={}", paths.peer.0));
        out.push(format!("--peer-key-file={}", paths.peer.1));
        out.push(format!("--peer-trusted-ca-file={}", paths.ca));
        out.push("--peer-client-cert-auth=true".to_owned());
    }
    out
}

/// Replaces the scheme of `url` (`http://…`) with `scheme`.
pub fn with_scheme(url: &str, scheme: &str) -> String {
    match url.split_once("://") {
        Some((_, rest)) => format!("{scheme}://{rest}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_follow_the_settings() {
        let paths = CertPaths {
            ca: "/tls/ca.crt".into(),
            server: ("/tls/server.crt".into(), "/tls/server.key".into()),
            peer: ("/tls/peer.crt".into(), "/tls/peer.key".into()),
        };
        assert!(etcd_flags(TlsSettings::default(), &paths).is_empty());
        let client_only = TlsSettings {
            client: true,
            client_cert_auth: false,
            peer: false,
        };
        let flags = etcd_flags(client_only, &paths);
        assert!(
            flags.contains(&"--client-cert-auth=false".to_owned()),
            "{flags:?}"
        );
        assert!(!flags.iter().any(|f| f.starts_with("--peer-")), "{flags:?}");
        let both = TlsSettings {
            client: true,
            client_cert_auth: true,
            peer: true,
        };
        let flags = etcd_flags(both, &paths);
        assert_eq!(flags.len(), 8);
        assert!(flags.contains(&"--peer-trusted-ca-file=/tls/ca.crt".to_owned()));
        assert_eq!(
            with_scheme("http://h:1", both.client_scheme()),
            "https://h:1"
        );
    }
}

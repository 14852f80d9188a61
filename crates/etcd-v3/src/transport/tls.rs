//! TLS for member connections: one rustls client configuration per client, built from
//! [`TlsOptions`](crate::options::TlsOptions).

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::error::{Error, Result};
use crate::options::TlsOptions;

/// The protocol every member connection negotiates.
const ALPN_H2: &[u8] = b"h2";

fn invalid(what: &str, e: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("TLS {what}: {e}"))
}

/// The rustls configuration for `tls`: the system roots plus the given CA, the client
/// certificate if any, and HTTP/2 by ALPN.
pub(crate) fn client_config(tls: &TlsOptions) -> Result<Arc<rustls::ClientConfig>> {
    if tls.cert_pem.is_some() != tls.key_pem.is_some() {
        return Err(Error::InvalidArgument(
            "a TLS client certificate needs both the certificate and the key".into(),
        ));
    }
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(ca) = &tls.ca_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(ca) {
            let cert = cert.map_err(|e| invalid("CA certificate", e))?;
            roots.add(cert).map_err(|e| invalid("CA certificate", e))?;
            added += 1;
        }
        if added == 0 {
            return Err(invalid("CA certificate", "no certificate in the PEM"));
        }
    }
    if roots.is_empty() {
        return Err(invalid(
            "roots",
            "no system CA certificates were found; give the CA that signed the servers' certificates",
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("protocol versions", e))?
        .with_root_certificates(roots);
    let mut config = match (&tls.cert_pem, &tls.key_pem) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_slice_iter(cert)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| invalid("client certificate", e))?;
            if chain.is_empty() {
                return Err(invalid("client certificate", "no certificate in the PEM"));
            }
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| invalid("client key", e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| invalid("client certificate", e))?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// The name a member's certificate is checked against: the configured one, else the URL's host.
pub(crate) fn server_name(tls: &TlsOptions, host: &str) -> Result<ServerName<'static>> {
    let name = tls.server_name.as_deref().unwrap_or(host);
    let name = name.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(name.to_string()).map_err(|e| invalid("server name", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_without_its_key_is_refused() {
        let tls = TlsOptions {
            cert_pem: Some(b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".to_vec()),
            ..Default::default()
        };
        let err = client_config(&tls).unwrap_err().to_string();
        assert!(err.contains("needs both"), "{err}");
    }

    #[test]
    fn garbage_ca_is_a_clear_error() {
        let tls = TlsOptions {
            ca_pem: Some(b"not a pem".to_vec()),
            ..Default::default()
        };
        let err = client_config(&tls).unwrap_err().to_string();
        assert!(err.contains("CA certificate"), "{err}");
    }

    #[test]
    fn server_name_defaults_to_the_host_and_accepts_ip_literals() {
        let tls = TlsOptions::default();
        assert!(matches!(
            server_name(&tls, "[::1]").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name(&tls, "etcd-0.example").unwrap(),
            ServerName::DnsName(_)
        ));
        let named = TlsOptions {
            server_name: Some("etcd.local".into()),
            ..Default::default()
        };
        assert_eq!(
            server_name(&named, "127.0.0.1").unwrap(),
            ServerName::try_from("etcd.local").unwrap()
        );
    }
}

//! The certificates of one cluster, made and renewed by pure functions: a CA (10 years), a
//! server certificate, a peer certificate and the operator's client certificate (1 year each),
//! all ECDSA P-256. Nothing here reads files or Secrets: the runtimes store the PEMs
//! ([`Bundle`]) and hand back what they stored ([`ensure`]).

use std::fmt;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// How long the CA is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a leaf certificate (server, peer, client) is valid.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// The common name of the operator's client certificate (not an etcd user: with auth on, the
/// operator authenticates as root with the password).
pub const OPERATOR_CLIENT_CN: &str = "etcd-operator";
/// How far back a new certificate's validity starts, for clocks a little behind.
const BACKDATE: Duration = Duration::from_secs(300);

/// Why a certificate could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused to make a certificate or key.
    #[error("making the {what}: {source}")]
    Generate {
        /// Which certificate.
        what: &'static str,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },
    /// A stored certificate or key cannot be parsed.
    #[error("reading the stored {what}: {why}")]
    Parse {
        /// Which certificate.
        what: &'static str,
        /// The parser's complaint.
        why: String,
    },
    /// A user Secret (`spec.tls.source.secrets`) is missing or does not hold a usable
    /// certificate.
    #[error("Secret {name}: {why}")]
    UserSecret {
        /// The Secret.
        name: String,
        /// What is wrong.
        why: String,
    },
}

/// One of the user's certificate Secrets as read (`None` when it does not exist).
#[derive(Debug, Clone, Default)]
pub struct UserSecret {
    /// The Secret's name.
    pub name: String,
    /// `tls.crt`, `tls.key` and `ca.crt`, when present.
    pub data: Option<[Option<String>; 3]>,
}

/// The certificates in the user's Secrets: `ca.crt` of the CA Secret (else its `tls.crt`),
/// `tls.crt`/`tls.key` of the others; `need` names the kinds the cluster uses (the rest stay
/// empty). Answers them with their expiry.
pub fn user_bundle(
    secrets: [&UserSecret; 4],
    need: &[Kind],
) -> Result<(Bundle, Vec<(Kind, SystemTime)>), PkiError> {
    let [ca, server, peer, client] = secrets;
    let bad = |s: &UserSecret, why: &str| PkiError::UserSecret {
        name: s.name.clone(),
        why: why.to_owned(),
    };
    let mut not_after = Vec::new();
    let mut pair = |s: &UserSecret, kind: Kind| -> Result<CertKey, PkiError> {
        if !need.contains(&kind) {
            return Ok(CertKey {
                cert_pem: String::new(),
                key_pem: String::new(),
            });
        }
        let data = s.data.as_ref().ok_or_else(|| bad(s, "does not exist"))?;
        let cert = match kind {
            Kind::Ca => data[2].clone().or_else(|| data[0].clone()),
            _ => data[0].clone(),
        }
        .ok_or_else(|| bad(s, "has no certificate (tls.crt, or ca.crt for the CA)"))?;
        let (v, _) = inspect(&cert, "certificate").map_err(|e| bad(s, &e.to_string()))?;
        not_after.push((kind, v.not_after));
        let key = if kind == Kind::Ca {
            String::new()
        } else {
            let key = data[1].clone().ok_or_else(|| bad(s, "has no tls.key"))?;
            KeyPair::from_pem(&key).map_err(|e| bad(s, &format!("tls.key: {e}")))?;
            key
        };
        Ok(CertKey {
            cert_pem: cert,
            key_pem: key,
        })
    };
    let bundle = Bundle {
        ca: pair(ca, Kind::Ca)?,
        server: pair(server, Kind::Server)?,
        peer: pair(peer, Kind::Peer)?,
        client: pair(client, Kind::Client)?,
    };
    Ok((bundle, not_after))
}

/// The kinds of certificate a cluster has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// The cluster's CA.
    Ca,
    /// The members' client-facing certificate.
    Server,
    /// The members' peer certificate (client and server of the peer connections).
    Peer,
    /// The operator's client certificate.
    Client,
}

impl Kind {
    /// The kind's name in files, Secrets and the status (`ca`, `server`, `peer`, `client`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ca => "ca",
            Kind::Server => "server",
            Kind::Peer => "peer",
            Kind::Client => "client",
        }
    }
}

/// A certificate and its private key, PEM. The key never shows in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct CertKey {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

impl fmt::Debug for CertKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertKey")
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// The names a member certificate must carry (subject alternative names: DNS names and IP
/// addresses as text).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Names {
    /// The cluster's name (the CA's and the certificates' common names start with it).
    pub cluster: String,
    /// SANs of the server certificate.
    pub server: Vec<String>,
    /// SANs of the peer certificate.
    pub peer: Vec<String>,
}

/// The certificates of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The CA.
    pub ca: CertKey,
    /// The server certificate (signed by the CA).
    pub server: CertKey,
    /// The peer certificate.
    pub peer: CertKey,
    /// The operator's client certificate.
    pub client: CertKey,
}

impl Bundle {
    /// The certificate of a kind.
    pub fn get(&self, kind: Kind) -> &CertKey {
        match kind {
            Kind::Ca => &self.ca,
            Kind::Server => &self.server,
            Kind::Peer => &self.peer,
            Kind::Client => &self.client,
        }
    }
}

/// When a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// Not before.
    pub not_before: SystemTime,
    /// Not after.
    pub not_after: SystemTime,
}

/// Whether a certificate valid over `v` is renewed at `now`: when less than a third of its
/// validity is left (or it is not valid yet or any more).
pub fn due_for_renewal(v: Validity, now: SystemTime) -> bool {
    let Ok(total) = v.not_after.duration_since(v.not_before) else {
        return true;
    };
    match v.not_after.duration_since(now) {
        Ok(left) => left < total / 3 || now < v.not_before,
        Err(_) => true,
    }
}

/// The validity and the SANs of a PEM certificate.
pub fn inspect(cert_pem: &str, what: &'static str) -> Result<(Validity, Vec<String>), PkiError> {
    let parse = |why: String| PkiError::Parse { what, why };
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|e| parse(e.to_string()))?;
    let cert = pem.parse_x509().map_err(|e| parse(e.to_string()))?;
    let at = |t: x509_parser::time::ASN1Time| {
        let secs = u64::try_from(t.timestamp()).unwrap_or(0);
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    };
    let validity = Validity {
        not_before: at(cert.validity().not_before),
        not_after: at(cert.validity().not_after),
    };
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(d) => sans.push((*d).to_owned()),
                x509_parser::extensions::GeneralName::IPAddress(ip) => {
                    let ip =
                        match ip.len() {
                            4 => <[u8; 4]>::try_from(*ip)
                                .map(|b| std::net::IpAddr::from(b).to_string()),
                            16 => <[u8; 16]>::try_from(*ip)
                                .map(|b| std::net::IpAddr::from(b).to_string()),
                            _ => continue,
                        };
                    if let Ok(ip) = ip {
                        sans.push(ip);
                    }
                }
                _ => {}
            }
        }
    }
    Ok((validity, sans))
}

fn generate(what: &'static str) -> impl Fn(rcgen::Error) -> PkiError {
    move |source| PkiError::Generate { what, source }
}

fn params(
    cn: &str,
    sans: &[String],
    now: SystemTime,
    validity: Duration,
    what: &'static str,
) -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::new(sans.to_vec()).map_err(generate(what))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.not_before = time::OffsetDateTime::from(now - BACKDATE);
    p.not_after = time::OffsetDateTime::from(now + validity);
    Ok(p)
}

/// The CA's parameters (a new CA, and the issuer of the leaves: same subject).
fn ca_params(cluster: &str, now: SystemTime) -> Result<CertificateParams, PkiError> {
    let mut p = params(&format!("{cluster}-ca"), &[], now, CA_VALIDITY, "CA")?;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

/// A new CA for `cluster`, valid from `now` for [`CA_VALIDITY`].
pub fn new_ca(cluster: &str, now: SystemTime) -> Result<CertKey, PkiError> {
    let key = KeyPair::generate().map_err(generate("CA key"))?;
    let cert = ca_params(cluster, now)?
        .self_signed(&key)
        .map_err(generate("CA"))?;
    Ok(CertKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A leaf certificate of `kind` signed by `ca`, with the common name `cn` and the SANs `sans`.
pub fn issue(
    ca: &CertKey,
    kind: Kind,
    cn: &str,
    sans: &[String],
    now: SystemTime,
) -> Result<CertKey, PkiError> {
    let what = match kind {
        Kind::Ca => "CA",
        Kind::Server => "server certificate",
        Kind::Peer => "peer certificate",
        Kind::Client => "client certificate",
    };
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(|e| PkiError::Parse {
        what: "CA key",
        why: e.to_string(),
    })?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).map_err(|e| PkiError::Parse {
        what: "CA certificate",
        why: e.to_string(),
    })?;
    let mut p = params(cn, sans, now, LEAF_VALIDITY, what)?;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = match kind {
        // etcd's gRPC gateway dials its own member with the server certificate, and peers are
        // both ends of their connections: both purposes.
        Kind::Server | Kind::Peer => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        Kind::Client | Kind::Ca => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    let key = KeyPair::generate().map_err(generate(what))?;
    let cert = p.signed_by(&key, &issuer).map_err(generate(what))?;
    Ok(CertKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// What [`ensure`] did.
#[derive(Debug, Clone)]
pub struct Ensured {
    /// The certificates to store (unchanged ones included).
    pub bundle: Bundle,
    /// The kinds made anew (empty: nothing to write).
    pub renewed: Vec<Kind>,
    /// When each certificate expires.
    pub not_after: Vec<(Kind, SystemTime)>,
}

/// Answers the certificates a cluster must have at `now`, starting from the stored ones: a
/// missing, unreadable or soon-expiring one is made anew, as is a member certificate whose SANs
/// are not `names`' (and every leaf when the CA is new). A new CA is made only when there is
/// none or it is due: its renewal changes the trust of every client (a rotation without
/// downtime is not implemented: the leaves are re-signed and members restart with them).
pub fn ensure(
    stored: Option<&Bundle>,
    names: &Names,
    now: SystemTime,
) -> Result<Ensured, PkiError> {
    let mut renewed = Vec::new();
    let fresh = |c: &CertKey, what, sans: Option<&[String]>| match inspect(&c.cert_pem, what) {
        Ok((v, have)) => {
            !due_for_renewal(v, now)
                && sans.is_none_or(|want| {
                    let mut a = have.clone();
                    let mut b = want.to_vec();
                    a.sort();
                    b.sort();
                    a == b
                })
                && KeyPair::from_pem(&c.key_pem).is_ok()
        }
        Err(_) => false,
    };
    let ca = match stored {
        Some(b) if fresh(&b.ca, "CA", None) => b.ca.clone(),
        _ => {
            renewed.push(Kind::Ca);
            new_ca(&names.cluster, now)?
        }
    };
    let ca_new = renewed.contains(&Kind::Ca);
    let mut leaf = |kind: Kind, cn: String, sans: &[String], old: Option<&CertKey>| match old {
        Some(c) if !ca_new && fresh(c, "certificate", Some(sans)) => Ok(c.clone()),
        _ => {
            renewed.push(kind);
            issue(&ca, kind, &cn, sans, now)
        }
    };
    let server = leaf(
        Kind::Server,
        format!("{}-server", names.cluster),
        &names.server,
        stored.map(|b| &b.server),
    )?;
    let peer = leaf(
        Kind::Peer,
        format!("{}-peer", names.cluster),
        &names.peer,
        stored.map(|b| &b.peer),
    )?;
    let client = leaf(
        Kind::Client,
        OPERATOR_CLIENT_CN.to_owned(),
        &[],
        stored.map(|b| &b.client),
    )?;
    let bundle = Bundle {
        ca,
        server,
        peer,
        client,
    };
    let mut not_after = Vec::new();
    for kind in [Kind::Ca, Kind::Server, Kind::Peer, Kind::Client] {
        let (v, _) = inspect(&bundle.get(kind).cert_pem, "certificate")?;
        not_after.push((kind, v.not_after));
    }
    Ok(Ensured {
        bundle,
        renewed,
        not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names {
            cluster: "demo".into(),
            server: vec!["localhost".into(), "127.0.0.1".into()],
            peer: vec!["127.0.0.1".into()],
        }
    }

    #[test]
    fn renewal_is_due_in_the_last_third() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let v = Validity {
            not_before: t0,
            not_after: t0 + Duration::from_secs(300),
        };
        assert!(!due_for_renewal(v, t0 + Duration::from_secs(199)));
        assert!(due_for_renewal(v, t0 + Duration::from_secs(201)));
        assert!(due_for_renewal(v, t0 + Duration::from_secs(400)));
        assert!(due_for_renewal(v, t0 - Duration::from_secs(1)));
    }

    #[test]
    fn a_bundle_is_made_once_and_kept_until_due() {
        let now = SystemTime::now();
        let first = ensure(None, &names(), now).expect("made");
        assert_eq!(
            first.renewed,
            [Kind::Ca, Kind::Server, Kind::Peer, Kind::Client]
        );
        let (v, sans) = inspect(&first.bundle.server.cert_pem, "server").expect("parsed");
        assert!(sans.contains(&"127.0.0.1".to_owned()), "{sans:?}");
        assert!(sans.contains(&"localhost".to_owned()), "{sans:?}");
        assert!(v.not_after > now + LEAF_VALIDITY - Duration::from_secs(60));
        let (ca, _) = inspect(&first.bundle.ca.cert_pem, "ca").expect("parsed");
        assert!(ca.not_after > now + CA_VALIDITY - Duration::from_secs(60));

        let again = ensure(Some(&first.bundle), &names(), now).expect("kept");
        assert!(again.renewed.is_empty(), "{:?}", again.renewed);
        assert_eq!(again.bundle, first.bundle);

        // Eight months on, the leaves are in their last third; the CA is not.
        let later = now + Duration::from_secs(250 * 24 * 3600);
        let renewed = ensure(Some(&first.bundle), &names(), later).expect("renewed");
        assert_eq!(renewed.renewed, [Kind::Server, Kind::Peer, Kind::Client]);
        assert_eq!(renewed.bundle.ca, first.bundle.ca);
        assert_ne!(renewed.bundle.server, first.bundle.server);
    }

    #[test]
    fn changed_names_reissue_the_member_certificates() {
        let now = SystemTime::now();
        let first = ensure(None, &names(), now).expect("made");
        let mut other = names();
        other.server.push("demo-client".into());
        let again = ensure(Some(&first.bundle), &other, now).expect("reissued");
        assert_eq!(again.renewed, [Kind::Server]);
    }

    #[test]
    fn user_secrets_are_read_and_checked() {
        let b = ensure(None, &names(), SystemTime::now())
            .expect("made")
            .bundle;
        let secret = |name: &str, c: &CertKey| UserSecret {
            name: name.into(),
            data: Some([
                Some(c.cert_pem.clone()),
                Some(c.key_pem.clone()),
                Some(b.ca.cert_pem.clone()),
            ]),
        };
        let ca = UserSecret {
            name: "ca".into(),
            data: Some([None, None, Some(b.ca.cert_pem.clone())]),
        };
        let (server, peer, client) = (
            secret("server", &b.server),
            secret("peer", &b.peer),
            secret("client", &b.client),
        );
        let all = [Kind::Ca, Kind::Server, Kind::Peer, Kind::Client];
        let (got, expiry) = user_bundle([&ca, &server, &peer, &client], &all).expect("read");
        assert_eq!(got.server, b.server);
        assert_eq!(expiry.len(), 4);
        let missing = UserSecret {
            name: "peer".into(),
            data: None,
        };
        let err = user_bundle([&ca, &server, &missing, &client], &all).expect_err("missing");
        assert!(
            err.to_string().contains("Secret peer: does not exist"),
            "{err}"
        );
        // Not needed (no peer TLS): not read.
        let some = [Kind::Ca, Kind::Server, Kind::Client];
        user_bundle([&ca, &server, &missing, &client], &some).expect("peer not needed");
    }

    #[test]
    fn garbage_is_replaced_and_keys_are_not_debug_printed() {
        let now = SystemTime::now();
        let mut b = ensure(None, &names(), now).expect("made").bundle;
        b.ca.cert_pem = "garbage".into();
        let again = ensure(Some(&b), &names(), now).expect("remade");
        assert_eq!(again.renewed.len(), 4);
        let debug = format!("{:?}", again.bundle);
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    }
}

//! `spec.tls`, `spec.auth` and `status.tls`/`status.auth`: TLS for clients and peers with the
//! certificates' source, and etcd authentication with a root user.
//!
//! Turning TLS on or off for an existing cluster is refused at admission (a transition rule on
//! the spec, [`super::rules::TLS_IMMUTABLE_RULE`]); cert-manager as a source is in the schema
//! so that it can come later, and refused today.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// TLS of the members: client connections, peer connections, and where the certificates come
/// from. Fixed at creation: to move a cluster between plaintext and TLS, take a snapshot and
/// restore it into a new cluster (`spec.bootstrap.restore`) with the TLS settings wanted.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// TLS for clients (`https://` client URLs).
    #[serde(default)]
    pub client: ClientTlsSpec,
    /// Mutual TLS between members (`https://` peer URLs).
    #[serde(default)]
    pub peer: PeerTlsSpec,
    /// Where the certificates come from; empty (the default) means operator-managed.
    #[serde(default)]
    pub source: CertificateSource,
}

/// TLS for clients.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClientTlsSpec {
    /// Serve clients over TLS (default false).
    #[serde(default)]
    pub enabled: bool,
    /// Require clients to present a certificate signed by the cluster's CA (default true;
    /// `--client-cert-auth`). The operator uses its own client certificate.
    #[serde(default = "default_true")]
    pub client_cert_auth: bool,
}

impl Default for ClientTlsSpec {
    fn default() -> Self {
        ClientTlsSpec {
            enabled: false,
            client_cert_auth: true,
        }
    }
}

fn default_true() -> bool {
    true
}

/// Mutual TLS between members.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PeerTlsSpec {
    /// Members authenticate each other with certificates signed by the cluster's CA (default
    /// false).
    #[serde(default)]
    pub enabled: bool,
}

/// Where the certificates come from: at most one source; none means operator-managed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(super::rules::TLS_ONE_SOURCE_RULE).message(super::rules::TLS_ONE_SOURCE_MESSAGE),
    validation = Rule::new(super::rules::TLS_CERT_MANAGER_RULE).message(super::rules::TLS_CERT_MANAGER_MESSAGE)
)]
pub struct CertificateSource {
    /// The operator makes a CA (10 years) and the server, peer and its own client certificates
    /// (1 year, renewed when less than a third is left), kept in Secrets owned by the cluster
    /// (`<cluster>-ca`, `<cluster>-server`, `<cluster>-peer`, `<cluster>-operator-client`) or,
    /// locally, under `<state dir>/<namespace>/<name>/tls/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_managed: Option<OperatorManagedSource>,
    /// Certificates from Secrets the user keeps and renews (in the local runtime, `kind: Secret`
    /// documents of the manifests): read each pass, never written. The members mount `ca.crt`
    /// of `ca` and `tls.crt`/`tls.key` of `server` and `peer`; the operator's client uses
    /// `operatorClient`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<TlsSecretsSource>,
    /// Certificates from cert-manager for the issuer named. Not supported yet: refused at
    /// admission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_manager: Option<CertManagerSource>,
}

/// Operator-managed certificates (no settings yet).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OperatorManagedSource {}

/// The user's Secrets: `ca` with `ca.crt` (its key is never read), the others
/// `kubernetes.io/tls` with `tls.crt` and `tls.key`. Only the kinds the cluster uses are
/// read (the server and operator client ones with client TLS, the peer one with peer TLS).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TlsSecretsSource {
    /// The CA certificate (`ca.crt`, else `tls.crt`) clients and peers are checked against.
    #[schemars(length(min = 1, max = 253))]
    pub ca: String,
    /// The members' server certificate.
    #[schemars(length(min = 1, max = 253))]
    pub server: String,
    /// The members' peer certificate.
    #[schemars(length(min = 1, max = 253))]
    pub peer: String,
    /// The operator's client certificate.
    #[schemars(length(min = 1, max = 253))]
    pub operator_client: String,
}

/// cert-manager as the source.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CertManagerSource {
    /// The issuer of the `Certificate` objects.
    pub issuer_ref: IssuerRef,
}

/// A cert-manager issuer.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    /// The issuer's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// `Issuer` or `ClusterIssuer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub kind: Option<String>,
    /// The issuer's API group (`cert-manager.io`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub group: Option<String>,
}

/// etcd authentication.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// Enable etcd authentication once the cluster is up (default false): the operator creates
    /// the `root` user with the `root` role and turns auth on, then authenticates as root.
    /// Users and roles beyond root are yours. Once on, it cannot be turned off here.
    #[serde(default)]
    pub enabled: bool,
    /// The Secret (in the cluster's namespace; in the local runtime a `kind: Secret` document
    /// of the manifests) whose `password` key is root's password. Unset: the operator
    /// generates one into the Secret `<cluster>-root` (locally
    /// `<state dir>/<namespace>/<name>/root-password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub root_password_secret: Option<String>,
}

/// The certificates' expiry and the state of authentication.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsStatus {
    /// When each certificate expires (RFC 3339), by kind.
    #[serde(default)]
    pub not_after: CertificateExpiry,
}

/// When each certificate expires (RFC 3339).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateExpiry {
    /// The CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// The members' server certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The members' peer certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The operator's client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

/// Whether the operator turned authentication on.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthStatus {
    /// etcd reported authentication as enabled.
    #[serde(default)]
    pub enabled: bool,
}

//! TLS against a real etcd 3.5.16 serving `https` with client-certificate authentication
//! (`--client-cert-auth`): certificates made here with rcgen (a CA, a server certificate for
//! `127.0.0.1` and `etcd.test`, a client certificate). The client must verify the server against
//! the CA, present its certificate, honour a server-name override, and fail clearly (as a
//! connect failure that never sent anything) when the CA is wrong or the certificate missing.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use etcd_v3::kv::{GetOptions, PutOptions};
use etcd_v3::{Client, ConnectOptions, Error, TlsOptions};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use support::bins::{EtcdVersion, etcd_tool};
use support::ports::free_port;
use support::process::Proc;

/// PEMs of one test PKI.
struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
    /// A client certificate whose common name is no etcd user.
    stranger_cert: String,
    stranger_key: String,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("ca key")).expect("ca")
}

fn pki() -> Pki {
    let ca = ca("etcd-operator test CA");
    let server_key = KeyPair::generate().expect("server key");
    let mut server = CertificateParams::new(vec!["127.0.0.1".to_string(), "etcd.test".to_string()])
        .expect("server params");
    server.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let server_cert = server.signed_by(&server_key, &ca).expect("server cert");
    let client_key = KeyPair::generate().expect("client key");
    let mut client = CertificateParams::new(Vec::<String>::new()).expect("client params");
    client.distinguished_name.push(DnType::CommonName, "root");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client.signed_by(&client_key, &ca).expect("client cert");
    let stranger_key = KeyPair::generate().expect("stranger key");
    let mut stranger = CertificateParams::new(Vec::<String>::new()).expect("stranger params");
    stranger
        .distinguished_name
        .push(DnType::CommonName, "stranger");
    stranger.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let stranger_cert = stranger
        .signed_by(&stranger_key, &ca)
        .expect("stranger cert");
    Pki {
        stranger_cert: stranger_cert.pem(),
        stranger_key: stranger_key.serialize_pem(),
        ca: ca.pem(),
        server_cert: server_cert.pem(),
        server_key: server_key.serialize_pem(),
        client_cert: client_cert.pem(),
        client_key: client_key.serialize_pem(),
    }
}

/// One etcd member serving clients over TLS only, requiring client certificates.
struct TlsEtcd {
    _dir: tempfile::TempDir,
    proc: Proc,
    port: u16,
}

impl TlsEtcd {
    fn start(pki: &Pki) -> TlsEtcd {
        let dir = support::temp_dir("etcd-tls").expect("dir");
        let write = |name: &str, pem: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, pem).expect("write pem");
            p
        };
        let ca = write("ca.pem", &pki.ca);
        let cert = write("server.pem", &pki.server_cert);
        let key = write("server-key.pem", &pki.server_key);
        let (port, peer) = (free_port().expect("port"), free_port().expect("port"));
        let path = |p: &Path| p.display().to_string();
        let args = vec![
            "--name=tls".to_string(),
            format!("--data-dir={}", dir.path().join("data").display()),
            format!("--listen-client-urls=https://127.0.0.1:{port}"),
            format!("--advertise-client-urls=https://127.0.0.1:{port}"),
            format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
            format!("--initial-cluster=tls=http://127.0.0.1:{peer}"),
            format!("--cert-file={}", path(&cert)),
            format!("--key-file={}", path(&key)),
            format!("--trusted-ca-file={}", path(&ca)),
            "--client-cert-auth=true".to_string(),
            "--unsafe-no-fsync=true".to_string(),
        ];
        let etcd = etcd_tool(EtcdVersion::V3_5, "etcd").expect("etcd binary");
        let proc = Proc::spawn("etcd-tls", &etcd, &args, &dir.path().join("etcd.log"))
            .expect("spawn etcd");
        TlsEtcd {
            _dir: dir,
            proc,
            port,
        }
    }

    fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

fn full_tls(pki: &Pki) -> TlsOptions {
    TlsOptions {
        ca_pem: Some(pki.ca.clone().into_bytes()),
        cert_pem: Some(pki.client_cert.clone().into_bytes()),
        key_pem: Some(pki.client_key.clone().into_bytes()),
        server_name: None,
    }
}

/// Connects and puts until etcd is up (it takes a moment to start), or panics with its log.
async fn ready_client(etcd: &TlsEtcd, endpoint: &str, tls: TlsOptions) -> Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = async {
            let c = Client::connect(
                [endpoint.to_string()],
                ConnectOptions::new()
                    .with_tls(tls.clone())
                    .with_request_timeout(Duration::from_secs(5)),
            )
            .await?;
            c.put("tls/ready", "1", PutOptions::new()).await?;
            Ok::<_, Error>(c)
        };
        match attempt.await {
            Ok(c) => return c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!(
                "etcd over TLS never answered: {e}\n{}",
                etcd.proc.log_tail(30)
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_ca_and_client_certificate_round_trips() {
    let pki = pki();
    let etcd = TlsEtcd::start(&pki);
    let c = ready_client(&etcd, &etcd.endpoint(), full_tls(&pki)).await;
    c.put("tls/k", "v", PutOptions::new()).await.expect("put");
    let got = c.get("tls/k", GetOptions::new()).await.expect("get");
    assert_eq!(got.kvs[0].value.as_ref(), b"v");
    // A member-local call and a stream over the same TLS connection.
    let st = c.status(&etcd.endpoint()).await.expect("status");
    assert!(st.version.starts_with("3.5"), "{}", st.version);
    // A bare host:port endpoint becomes https when TLS is configured.
    let bare = format!("127.0.0.1:{}", etcd.port);
    let c2 = ready_client(&etcd, &bare, full_tls(&pki)).await;
    assert_eq!(
        c2.get("tls/k", GetOptions::new()).await.expect("get").kvs[0]
            .value
            .as_ref(),
        b"v"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_server_name_override_is_checked_against_the_certificate() {
    let pki = pki();
    let etcd = TlsEtcd::start(&pki);
    let _up = ready_client(&etcd, &etcd.endpoint(), full_tls(&pki)).await;
    // The certificate names etcd.test: verifying against it works from 127.0.0.1.
    let named = TlsOptions {
        server_name: Some("etcd.test".into()),
        ..full_tls(&pki)
    };
    let c = ready_client(&etcd, &etcd.endpoint(), named).await;
    c.get("tls/ready", GetOptions::new()).await.expect("get");
    // A name the certificate does not carry is refused at the handshake.
    let wrong = TlsOptions {
        server_name: Some("other.test".into()),
        ..full_tls(&pki)
    };
    let c = Client::connect(
        [etcd.endpoint()],
        ConnectOptions::new()
            .with_tls(wrong)
            .with_max_retries(0)
            .with_request_timeout(Duration::from_secs(5)),
    )
    .await
    .expect("connect is lazy");
    let err = c.get("tls/ready", GetOptions::new()).await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(
        text.contains("TLS handshake") && text.to_lowercase().contains("certificate"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_wrong_ca_or_missing_client_certificate_fails_clearly() {
    let pki = pki();
    let etcd = TlsEtcd::start(&pki);
    let _up = ready_client(&etcd, &etcd.endpoint(), full_tls(&pki)).await;

    // Another CA: the server's certificate does not verify; the write was never sent.
    let other = ca("another CA");
    let wrong_ca = TlsOptions {
        ca_pem: Some(other.pem().into_bytes()),
        ..full_tls(&pki)
    };
    let c = Client::connect(
        [etcd.endpoint()],
        ConnectOptions::new()
            .with_tls(wrong_ca)
            .with_max_retries(0)
            .with_request_timeout(Duration::from_secs(5)),
    )
    .await
    .expect("connect is lazy");
    let err = c
        .put("tls/never", "x", PutOptions::new())
        .await
        .unwrap_err();
    assert!(
        !err.is_outcome_unknown(),
        "a failed handshake sent nothing: {err:?}"
    );
    let text = format!("{err} {err:?}");
    assert!(text.contains("TLS handshake"), "{text}");

    // No client certificate: etcd (--client-cert-auth) refuses the connection.
    let anonymous = TlsOptions {
        cert_pem: None,
        key_pem: None,
        ..full_tls(&pki)
    };
    let c = Client::connect(
        [etcd.endpoint()],
        ConnectOptions::new()
            .with_tls(anonymous)
            .with_max_retries(0)
            .with_request_timeout(Duration::from_secs(5)),
    )
    .await
    .expect("connect is lazy");
    assert!(c.get("tls/ready", GetOptions::new()).await.is_err());

    // Nothing was written by the refused clients.
    let ok = ready_client(&etcd, &etcd.endpoint(), full_tls(&pki)).await;
    let got = ok.get("tls/never", GetOptions::new()).await.expect("get");
    assert!(got.kvs.is_empty());
}

/// A certificate without its key is refused when the client is built.
#[tokio::test]
async fn tls_certificate_without_key_is_rejected_at_connect() {
    let pki = pki();
    let half = TlsOptions {
        key_pem: None,
        ..full_tls(&pki)
    };
    let err = Client::connect(
        ["https://127.0.0.1:1".to_string()],
        ConnectOptions::new().with_tls(half),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("needs both"), "{err}");
}

/// A client with a user configured connects while auth is off (no token), then auth is
/// enabled: etcd takes its certificate's common name ("stranger", no such user) and refuses
/// the call; the client authenticates its configured user and the call goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_connected_before_auth_was_enabled_authenticates_its_user() {
    let pki = pki();
    let etcd = TlsEtcd::start(&pki);
    // The admin's certificate says "root": once auth is on, etcd takes it as root.
    let admin = ready_client(&etcd, &etcd.endpoint(), full_tls(&pki)).await;
    let stranger = TlsOptions {
        cert_pem: Some(pki.stranger_cert.clone().into_bytes()),
        key_pem: Some(pki.stranger_key.clone().into_bytes()),
        ..full_tls(&pki)
    };
    let c = Client::connect(
        [etcd.endpoint()],
        ConnectOptions::new()
            .with_tls(stranger.clone())
            .with_user("root", "pw"),
    )
    .await
    .expect("connect");
    c.put("tls/before", "1", PutOptions::new())
        .await
        .expect("put while auth is off");
    admin.user_add("root", "pw").await.expect("user add");
    admin.role_add("root").await.expect("role add");
    admin.user_grant_role("root", "root").await.expect("grant");
    admin.auth_enable().await.expect("auth enable");
    // Without a user, the stranger certificate is refused.
    let bare = Client::connect(
        [etcd.endpoint()],
        ConnectOptions::new().with_tls(stranger).with_max_retries(1),
    )
    .await
    .expect("connect");
    let err = bare
        .put("tls/bare", "1", PutOptions::new())
        .await
        .expect_err("no user, a certificate of no user");
    // etcd refuses a KV write of an unknown user with "permission denied" (an admin call with
    // "user name not found"); both re-authenticate a client with a user configured.
    assert!(err.to_string().contains("permission denied"), "{err}");
    c.put("tls/after", "1", PutOptions::new())
        .await
        .expect("the configured user authenticates");
    let got = admin
        .get("tls/after", GetOptions::new())
        .await
        .expect("get");
    assert_eq!(got.kvs.len(), 1);
}

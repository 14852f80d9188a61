//! TLS (client and peer, operator-managed certificates) and etcd auth under the local operator,
//! on real etcd: who is refused, who gets in, and the operator still scales with both on.

mod support;

use std::path::Path;
use std::time::Duration;

use etcd_operator::etcd::kv::{GetOptions, PutOptions};
use etcd_operator::etcd::{Client, ConnectOptions, TlsOptions};
use support::bins::{EtcdVersion, etcd_tool};
use support::local::{LocalOperator, check_keys, manifest, member_list, write_keys};

const CONVERGE: Duration = Duration::from_secs(180);
const VERSION: &str = "3.6.16";

fn tls_manifest(name: &str, replicas: u32) -> String {
    format!(
        "{}  tls:\n    client:\n      enabled: true\n    peer:\n      enabled: true\n  auth:\n    \
         enabled: true\n",
        manifest(name, replicas, VERSION)
    )
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The https client URLs of the members that exist.
fn https_urls(op: &LocalOperator) -> Vec<String> {
    op.all_client_urls()
        .iter()
        .map(|u| u.replacen("http://", "https://", 1))
        .collect()
}

fn issued(op: &LocalOperator) -> TlsOptions {
    let tls = op.cluster_dir().join("tls");
    TlsOptions {
        ca_pem: Some(read(&tls.join("ca.crt"))),
        cert_pem: Some(read(&tls.join("client.crt"))),
        key_pem: Some(read(&tls.join("client.key"))),
        server_name: None,
    }
}

fn password(op: &LocalOperator) -> String {
    String::from_utf8(read(&op.cluster_dir().join("root-password")))
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// A put then a get through a client built from `opts`; the first error, if any.
async fn round_trip(urls: Vec<String>, opts: ConnectOptions) -> Result<(), String> {
    let opts = opts
        .with_dial_timeout(Duration::from_secs(2))
        .with_max_retries(1);
    let work = async {
        let c = Client::connect(urls, opts)
            .await
            .map_err(|e| e.to_string())?;
        c.put("tls/probe", "1", PutOptions::new())
            .await
            .map_err(|e| e.to_string())?;
        c.get("tls/probe", GetOptions::new())
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(20), work)
        .await
        .unwrap_or_else(|_| Err("no answer within 20 s".into()))
}

async fn root_client(op: &LocalOperator) -> Client {
    let opts = ConnectOptions::new()
        .with_tls(issued(op))
        .with_user("root", password(op));
    Client::connect(https_urls(op), opts).await.expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_auth_cluster_refuses_strangers_and_still_scales() {
    let mut op = LocalOperator::start("sec", &tls_manifest("sec", 3)).expect("operator");
    let status = op.wait_status("3 TLS members with auth on", CONVERGE, |s| {
        support::local::converged(s, 3, VERSION) && s.auth.as_ref().is_some_and(|a| a.enabled)
    });
    // The status records every certificate's expiry; members advertise https.
    let tls = status.tls.expect("status.tls").not_after;
    for (kind, t) in [
        ("ca", &tls.ca),
        ("server", &tls.server),
        ("peer", &tls.peer),
        ("client", &tls.client),
    ] {
        assert!(
            t.as_deref().is_some_and(|t| t.starts_with("20")),
            "{kind}: {t:?}"
        );
    }
    assert!(tls.ca > tls.server, "the CA outlives the leaves: {tls:?}");
    for m in &status.members {
        let url = m.client_url.as_deref().unwrap_or_default();
        assert!(url.starts_with("https://127.0.0.1:"), "{url}");
        let peer = m.peer_url.as_deref().unwrap_or_default();
        assert!(peer.starts_with("https://127.0.0.1:"), "{peer}");
    }
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(op.cluster_dir().join("tls/client.key"))
            .expect("key")
            .permissions(),
    );
    assert_eq!(key_mode & 0o077, 0, "keys are private: {key_mode:o}");

    // Plaintext to the same ports: refused.
    let plain = op.all_client_urls();
    let err = round_trip(plain, ConnectOptions::new())
        .await
        .expect_err("plaintext must be refused");
    eprintln!("plaintext: {err}");

    // A CA that did not sign the servers' certificates: refused.
    let other = etcd_operator::tls::pki::new_ca("stranger", std::time::SystemTime::now())
        .expect("other CA");
    let wrong_ca = TlsOptions {
        ca_pem: Some(other.cert_pem.into_bytes()),
        ..issued(&op)
    };
    let err = round_trip(
        https_urls(&op),
        ConnectOptions::new()
            .with_tls(wrong_ca)
            .with_user("root", password(&op)),
    )
    .await
    .expect_err("a wrong CA must be refused");
    eprintln!("wrong CA: {err}");

    // The right CA but no client certificate: refused (client-cert-auth is on by default).
    let no_cert = TlsOptions {
        cert_pem: None,
        key_pem: None,
        ..issued(&op)
    };
    let err = round_trip(
        https_urls(&op),
        ConnectOptions::new()
            .with_tls(no_cert)
            .with_user("root", password(&op)),
    )
    .await
    .expect_err("no client certificate must be refused");
    eprintln!("no client certificate: {err}");

    // The issued certificate without credentials: auth refuses the write.
    let err = round_trip(https_urls(&op), ConnectOptions::new().with_tls(issued(&op)))
        .await
        .expect_err("no credentials must be refused");
    eprintln!("no credentials: {err}");
    // A wrong password: refused.
    let err = round_trip(
        https_urls(&op),
        ConnectOptions::new()
            .with_tls(issued(&op))
            .with_user("root", "not-the-password"),
    )
    .await
    .expect_err("a wrong password must be refused");
    assert!(err.contains("authentication failed"), "{err}");

    // The issued certificate and root's password: in.
    round_trip(
        https_urls(&op),
        ConnectOptions::new()
            .with_tls(issued(&op))
            .with_user("root", password(&op)),
    )
    .await
    .expect("the issued certificate with root's password works");

    // etcdctl (the provisioned 3.5.16) with the issued files.
    let etcdctl = etcd_tool(EtcdVersion::V3_5, "etcdctl").expect("etcdctl");
    let tls_dir = op.cluster_dir().join("tls");
    let out = std::process::Command::new(&etcdctl)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", https_urls(&op).join(",")))
        .arg(format!("--cacert={}", tls_dir.join("ca.crt").display()))
        .arg(format!("--cert={}", tls_dir.join("client.crt").display()))
        .arg(format!("--key={}", tls_dir.join("client.key").display()))
        .arg(format!("--user=root:{}", password(&op)))
        .args(["put", "tls/etcdctl", "yes"])
        .output()
        .expect("etcdctl runs");
    assert!(
        out.status.success(),
        "etcdctl put: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(&etcdctl)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", https_urls(&op).join(",")))
        .arg(format!("--cacert={}", tls_dir.join("ca.crt").display()))
        .args(["get", "tls/etcdctl"])
        .output()
        .expect("etcdctl runs");
    assert!(
        !out.status.success(),
        "etcdctl without a client certificate got in: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Scaling 3 -> 5 -> 3 with TLS and auth on.
    let client = root_client(&op).await;
    write_keys(&client, "sec/", 200).await;
    op.write_manifest(&tls_manifest("sec", 5)).expect("edit");
    op.wait_converged(5, VERSION, CONVERGE);
    let client = root_client(&op).await;
    assert_eq!(member_list(&client).await.len(), 5);
    check_keys(&client, "sec/", 200).await;
    op.write_manifest(&tls_manifest("sec", 3)).expect("edit");
    op.wait_converged(3, VERSION, CONVERGE);
    let client = root_client(&op).await;
    assert_eq!(member_list(&client).await.len(), 3);
    check_keys(&client, "sec/", 200).await;

    // Turning TLS off is refused; the cluster keeps running with TLS.
    op.write_manifest(&manifest("sec", 3, VERSION))
        .expect("edit");
    let deadline = std::time::Instant::now() + CONVERGE;
    while !op.log().contains("manifest change refused: spec.tls") {
        assert!(
            std::time::Instant::now() < deadline,
            "the change was not refused:\n{}",
            op.log_tail()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    round_trip(
        https_urls(&op),
        ConnectOptions::new()
            .with_tls(issued(&op))
            .with_user("root", password(&op)),
    )
    .await
    .expect("still TLS");
}

/// Certificates from the user's Secrets (`kind: Secret` documents next to the cluster): the
/// members serve them, the operator's client uses the user's client certificate, and the
/// operator makes no CA of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_secrets_provide_the_certificates() {
    use base64::Engine;
    use etcd_operator::tls::pki::{Kind, issue, new_ca};
    let now = std::time::SystemTime::now();
    let ca = new_ca("mine", now).expect("CA");
    let local = ["localhost".to_owned(), "127.0.0.1".to_owned()];
    let server = issue(&ca, Kind::Server, "mine-server", &local, now).expect("server");
    let peer = issue(&ca, Kind::Peer, "mine-peer", &local, now).expect("peer");
    let client = issue(&ca, Kind::Client, "me", &[], now).expect("client");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let secret = |name: &str, crt: &str, key: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ndata:\n  tls.crt: {}\n  \
             tls.key: {}\n  ca.crt: {}\n---\n",
            b64(crt),
            b64(key),
            b64(&ca.cert_pem)
        )
    };
    let mut text = String::new();
    text.push_str(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: my-ca\ndata:\n  ca.crt: {}\n---\n",
        b64(&ca.cert_pem)
    ));
    text.push_str(&secret("my-server", &server.cert_pem, &server.key_pem));
    text.push_str(&secret("my-peer", &peer.cert_pem, &peer.key_pem));
    text.push_str(&secret("my-client", &client.cert_pem, &client.key_pem));
    text.push_str(&manifest("mine", 3, VERSION));
    text.push_str(
        "  tls:\n    client:\n      enabled: true\n    peer:\n      enabled: true\n    source:\n      \
         secrets:\n        ca: my-ca\n        server: my-server\n        peer: my-peer\n        \
         operatorClient: my-client\n",
    );
    let mut op = LocalOperator::start("mine", &text).expect("operator");
    let status = op.wait_converged(3, VERSION, CONVERGE);
    assert!(
        !op.cluster_dir().join("tls/ca.key").exists(),
        "the operator made no CA of its own"
    );
    let (ca_validity, _) = etcd_operator::tls::pki::inspect(&ca.cert_pem, "ca").expect("ca");
    let reported = status.tls.expect("status.tls").not_after.ca.expect("ca");
    assert_eq!(
        reported,
        etcd_operator::controller::clock::whole_seconds(ca_validity.not_after)
    );
    let mine = TlsOptions {
        ca_pem: Some(ca.cert_pem.clone().into_bytes()),
        cert_pem: Some(client.cert_pem.into_bytes()),
        key_pem: Some(client.key_pem.into_bytes()),
        server_name: None,
    };
    round_trip(https_urls(&op), ConnectOptions::new().with_tls(mine))
        .await
        .expect("the user's client certificate works");
    let err = round_trip(op.all_client_urls(), ConnectOptions::new())
        .await
        .expect_err("plaintext must be refused");
    eprintln!("plaintext: {err}");
}

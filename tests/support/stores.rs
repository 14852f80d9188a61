//! Real object-store servers on loopback for the snapshot-store tests, provisioned by
//! `hack/provision-stores.sh` (paths in `$TESTBIN/stores-env.sh`, or the default cache layout):
//!
//! - [`S3Server`]: Versity Gateway (`versitygw`) with its posix backend: S3.
//! - [`GcsServer`]: `fake-gcs-server` with its filesystem backend: Google Cloud Storage.
//! - [`AzureServer`]: Azurite's blob service (`azurite-blob`, node): Azure Blob Storage.
//!
//! Each server gets its own temporary directory and free port, and one bucket/container
//! ([`BUCKET`]); it is killed and its directory removed on drop. A missing binary is an error,
//! never a skipped test.

use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use etcd_operator::snapshot_store::{Credentials, Destination, StoreConfig};

use super::ports::free_port;
use super::process::Proc;
use super::{HarnessError, Result, temp_dir};

/// The bucket (container) every server starts with.
pub const BUCKET: &str = "backups";
/// The S3 access key pair versitygw is started with.
pub const S3_ACCESS_KEY: &str = "etcdoperatoraccess";
/// The S3 secret key (a test value: the tests check it never shows in `Debug`).
pub const S3_SECRET_KEY: &str = "s3-secret-Zq8vX2pL";
/// Azurite's well-known development account and key.
pub const AZURE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn testbin() -> PathBuf {
    std::env::var_os("ETCD_OPERATOR_TESTBIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/root"));
            home.join(".cache/etcd-operator/testbin")
        })
}

fn tool(var: &str, default: &str) -> Result<PathBuf> {
    let p = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| testbin().join(default));
    if p.is_file() {
        Ok(p)
    } else {
        Err(HarnessError::msg(format!(
            "store server not found: {} (set {var} or run `hack/provision-stores.sh`)",
            p.display()
        )))
    }
}

/// Waits until `port` accepts connections, failing early if `proc` exits.
fn wait_port(name: &str, proc: &mut Proc, port: u16, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = proc.exited() {
            return Err(HarnessError::msg(format!(
                "{name} exited ({status}) while starting; last log lines:\n{}",
                proc.log_tail(20)
            )));
        }
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(HarnessError::msg(format!(
                "{name} did not listen on 127.0.0.1:{port} within {timeout:?}; last log lines:\n{}",
                proc.log_tail(20)
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An S3 server: versitygw over a posix folder.
pub struct S3Server {
    proc: Proc,
    port: u16,
    _dir: tempfile::TempDir,
}

impl S3Server {
    pub fn start() -> Result<S3Server> {
        let bin = tool("VERSITYGW", "versitygw-1.8.0/bin/versitygw")?;
        let dir = temp_dir("s3")?;
        let root = dir.path().join("root");
        let meta = dir.path().join("meta");
        for d in [&root, &meta] {
            std::fs::create_dir_all(d).map_err(|e| HarnessError::io("creating s3 dirs", e))?;
        }
        let port = free_port()?;
        let args: Vec<String> = [
            "--access",
            S3_ACCESS_KEY,
            "--secret",
            S3_SECRET_KEY,
            "--port",
            &format!("127.0.0.1:{port}"),
            "posix",
            "--sidecar",
            &meta.display().to_string(),
            &root.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut proc = Proc::spawn("versitygw", &bin, &args, &dir.path().join("versitygw.log"))?;
        wait_port("versitygw", &mut proc, port, Duration::from_secs(60))?;
        let server = S3Server {
            proc,
            port,
            _dir: dir,
        };
        server.create_bucket()?;
        Ok(server)
    }

    fn create_bucket(&self) -> Result<()> {
        s3_create_bucket(self.port, BUCKET)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A store config for the bucket under `prefix`.
    pub fn config(&self, prefix: &str) -> StoreConfig {
        StoreConfig::new(Destination::S3 {
            bucket: BUCKET.into(),
            region: Some("us-east-1".into()),
            endpoint: Some(self.endpoint()),
            path_style: true,
        })
        .with_prefix(prefix)
        .with_allow_http(true)
        .with_credentials(Credentials::S3 {
            access_key_id: S3_ACCESS_KEY.into(),
            secret_access_key: S3_SECRET_KEY.into(),
            session_token: None,
        })
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.proc.log_tail(lines)
    }
}

/// A GCS server: fake-gcs-server with a filesystem backend, the bucket preloaded.
pub struct GcsServer {
    proc: Proc,
    port: u16,
    _dir: tempfile::TempDir,
}

impl GcsServer {
    pub fn start() -> Result<GcsServer> {
        let bin = tool(
            "FAKE_GCS_SERVER",
            "fake-gcs-server-1.56.1/bin/fake-gcs-server",
        )?;
        let dir = temp_dir("gcs")?;
        let data = dir.path().join("data");
        let storage = dir.path().join("storage");
        for d in [data.join(BUCKET), storage.clone()] {
            std::fs::create_dir_all(&d).map_err(|e| HarnessError::io("creating gcs dirs", e))?;
        }
        let port = free_port()?;
        let args: Vec<String> = [
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            &port.to_string(),
            "-public-host",
            &format!("127.0.0.1:{port}"),
            "-external-url",
            &format!("http://127.0.0.1:{port}"),
            "-backend",
            "filesystem",
            "-filesystem-root",
            &storage.display().to_string(),
            "-data",
            &data.display().to_string(),
            "-log-level",
            "warn",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut proc = Proc::spawn(
            "fake-gcs-server",
            &bin,
            &args,
            &dir.path().join("fake-gcs.log"),
        )?;
        wait_port("fake-gcs-server", &mut proc, port, Duration::from_secs(60))?;
        Ok(GcsServer {
            proc,
            port,
            _dir: dir,
        })
    }

    /// A store config for the bucket under `prefix` (a service account with OAuth disabled:
    /// the emulator checks no token).
    pub fn config(&self, prefix: &str) -> StoreConfig {
        let json =
            r#"{"private_key":"","private_key_id":"","client_email":"","disable_oauth":true}"#;
        StoreConfig::new(Destination::Gcs {
            bucket: BUCKET.into(),
            endpoint: Some(format!("http://127.0.0.1:{}", self.port)),
        })
        .with_prefix(prefix)
        .with_allow_http(true)
        .with_credentials(Credentials::GcsServiceAccount { json: json.into() })
    }

    /// Writes `bytes` as the object `name` (full path in the bucket) through the emulator's
    /// JSON upload API, which it implements (the store writes through the XML API, which it
    /// does not: see tests/store_gcs.rs).
    pub fn seed(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let path = format!(
            "/upload/storage/v1/b/{BUCKET}/o?uploadType=media&name={}",
            name.replace('/', "%2F")
        );
        let (code, resp) = http_send(
            self.port,
            "POST",
            &path,
            &[("Content-Type".into(), "application/octet-stream".into())],
            bytes,
        )?;
        if code != 200 {
            return Err(HarnessError::msg(format!("seeding {name}: {resp}")));
        }
        Ok(())
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.proc.log_tail(lines)
    }
}

/// An Azure Blob server: Azurite's blob service, with the container created.
pub struct AzureServer {
    proc: Proc,
    port: u16,
    _dir: tempfile::TempDir,
}

impl AzureServer {
    pub fn start() -> Result<AzureServer> {
        let bin = tool(
            "AZURITE_BLOB",
            "azurite-3.37.0/node_modules/.bin/azurite-blob",
        )?;
        let dir = temp_dir("azure")?;
        let port = free_port()?;
        let args: Vec<String> = [
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--location",
            &dir.path().join("data").display().to_string(),
            "--skipApiVersionCheck",
            "--silent",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut proc = Proc::spawn("azurite-blob", &bin, &args, &dir.path().join("azurite.log"))?;
        wait_port("azurite-blob", &mut proc, port, Duration::from_secs(60))?;
        azure_create_container(port, BUCKET)?;
        Ok(AzureServer {
            proc,
            port,
            _dir: dir,
        })
    }

    pub fn config(&self, prefix: &str) -> StoreConfig {
        StoreConfig::new(Destination::Azure {
            account: AZURE_ACCOUNT.into(),
            container: BUCKET.into(),
            endpoint: Some(format!("http://127.0.0.1:{}/{AZURE_ACCOUNT}", self.port)),
        })
        .with_prefix(prefix)
        .with_allow_http(true)
        .with_credentials(Credentials::AzureAccessKey {
            key: AZURE_KEY.into(),
        })
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.proc.log_tail(lines)
    }
}

// --- Creating the bucket and the container: one signed request each ---------------------------
// (the store layer never creates buckets; an operator's destination must exist.)

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&k, data).as_ref().to_vec()
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Sends `PUT path` with `headers` and an empty body to 127.0.0.1:`port`: the status code and
/// the whole response.
fn http_put(port: u16, path: &str, headers: &[(String, String)]) -> Result<(u16, String)> {
    http_send(port, "PUT", path, headers, &[])
}

fn http_send(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| HarnessError::io(format!("connecting to 127.0.0.1:{port}"), e))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| HarnessError::io("setting a timeout", e))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())
        .and_then(|()| s.write_all(body))
        .map_err(|e| HarnessError::io("sending a request", e))?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)
        .map_err(|e| HarnessError::io("reading a response", e))?;
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let code = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| HarnessError::msg(format!("bad HTTP response: {resp:?}")))?;
    Ok((code, resp))
}

fn utc_now() -> (String, String) {
    // (yyyymmdd'T'hhmmss'Z', RFC 1123) from the system clock, without a date crate.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let (h, m, s) = ((secs % 86_400) / 3600, (secs % 3600) / 60, secs % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days.rem_euclid(7)) as usize];
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(mo - 1) as usize];
    (
        format!("{y:04}{mo:02}{d:02}T{h:02}{m:02}{s:02}Z"),
        format!("{wd}, {d:02} {mon} {y:04} {h:02}:{m:02}:{s:02} GMT"),
    )
}

/// CreateBucket, signed with AWS Signature Version 4.
fn s3_create_bucket(port: u16, bucket: &str) -> Result<()> {
    let (amz_date, _) = utc_now();
    let date = &amz_date[..8];
    let region = "us-east-1";
    let host = format!("127.0.0.1:{port}");
    let payload = sha256_hex(b"");
    let canonical = format!(
        "PUT\n/{bucket}\n\nhost:{host}\nx-amz-content-sha256:{payload}\nx-amz-date:{amz_date}\n\nhost;x-amz-content-sha256;x-amz-date\n{payload}"
    );
    let scope = format!("{date}/{region}/s3/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let mut key = hmac(format!("AWS4{S3_SECRET_KEY}").as_bytes(), date.as_bytes());
    for part in [region, "s3", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let sig: String = hmac(&key, to_sign.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={S3_ACCESS_KEY}/{scope}, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={sig}"
    );
    let (code, resp) = http_put(
        port,
        &format!("/{bucket}"),
        &[
            ("x-amz-date".into(), amz_date.clone()),
            ("x-amz-content-sha256".into(), payload),
            ("Authorization".into(), auth),
        ],
    )?;
    if code != 200 {
        return Err(HarnessError::msg(format!("CreateBucket {bucket}: {resp}")));
    }
    Ok(())
}

/// Create Container, signed with the account's Shared Key.
fn azure_create_container(port: u16, container: &str) -> Result<()> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let (_, date) = utc_now();
    let version = "2021-08-06";
    let to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURE_ACCOUNT}/{AZURE_ACCOUNT}/{container}\nrestype:container"
    );
    let key = b64
        .decode(AZURE_KEY)
        .map_err(|e| HarnessError::msg(format!("bad account key: {e}")))?;
    let sig = b64.encode(hmac(&key, to_sign.as_bytes()));
    let (code, resp) = http_put(
        port,
        &format!("/{AZURE_ACCOUNT}/{container}?restype=container"),
        &[
            ("x-ms-date".into(), date),
            ("x-ms-version".into(), version.into()),
            (
                "Authorization".into(),
                format!("SharedKey {AZURE_ACCOUNT}:{sig}"),
            ),
        ],
    )?;
    if code != 201 {
        return Err(HarnessError::msg(format!(
            "Create Container {container}: {resp}"
        )));
    }
    Ok(())
}

// --- The scenarios every store runs -------------------------------------------------------------

pub mod scenarios {
    //! What tests/store_*.rs check on each store, against a real etcd member.

    use std::path::Path;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use etcd_operator::etcd::{Client, ConnectOptions};
    use etcd_operator::snapshot_store::{
        EncryptionKey, SnapshotStore, StoreConfig, StoreError, Upload,
    };
    use sha2::{Digest, Sha256};
    use tokio::io::{AsyncWrite, AsyncWriteExt};

    use crate::support::bins::{self, EtcdVersion};
    use crate::support::etcd::EtcdCluster;

    /// 5 MiB parts (S3's smallest), two in flight: a 12 MB snapshot takes three parts.
    pub const PART: usize = 5 * 1024 * 1024;

    /// A single etcd member holding ~12 MB of keys, and a client to it.
    pub async fn etcd_with_data() -> (EtcdCluster, Client) {
        let cluster = EtcdCluster::single().expect("etcd");
        let client = Client::connect(
            cluster.endpoints(),
            ConnectOptions::new().with_request_timeout(std::time::Duration::from_secs(60)),
        )
        .await
        .expect("connect");
        let value = "x".repeat(8 * 1024);
        for i in 0..1500 {
            client
                .put(
                    format!("bulk/{i:05}"),
                    value.clone(),
                    etcd_operator::etcd::kv::PutOptions::new(),
                )
                .await
                .expect("put");
        }
        (cluster, client)
    }

    pub fn open(cfg: &StoreConfig, part: usize) -> SnapshotStore {
        SnapshotStore::open(cfg)
            .expect("open store")
            .with_parts(part, 2)
    }

    /// Forwards to an [`Upload`] while hashing everything written, and optionally calls `trip`
    /// once `trip_at` bytes went through.
    pub struct Tee<'a> {
        pub up: &'a mut Upload,
        pub hasher: Sha256,
        pub written: u64,
        pub trip_at: u64,
        pub trip: Option<Box<dyn FnOnce() + Send>>,
    }

    impl<'a> Tee<'a> {
        pub fn new(up: &'a mut Upload) -> Self {
            Tee {
                up,
                hasher: Sha256::new(),
                written: 0,
                trip_at: u64::MAX,
                trip: None,
            }
        }
    }

    impl AsyncWrite for Tee<'_> {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            let this = &mut *self;
            let n = std::task::ready!(Pin::new(&mut *this.up).poll_write(cx, buf))?;
            this.hasher.update(&buf[..n]);
            this.written += n as u64;
            if this.written >= this.trip_at
                && let Some(t) = this.trip.take()
            {
                t();
            }
            Poll::Ready(Ok(n))
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut *self.up).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut *self.up).poll_shutdown(cx)
        }
    }

    fn file_sha(path: &Path) -> (u64, String) {
        let bytes = std::fs::read(path).expect("read back");
        (bytes.len() as u64, hex(&Sha256::digest(&bytes)))
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// `etcdutl snapshot status -w json` of `file`: (revision, total keys).
    pub fn etcdutl_status(file: &Path) -> (i64, i64) {
        let etcdutl = bins::etcd_tool(EtcdVersion::V3_5, "etcdutl").expect("etcdutl");
        let out = std::process::Command::new(etcdutl)
            .args(["snapshot", "status", "-w", "json"])
            .arg(file)
            .output()
            .expect("run etcdutl");
        assert!(
            out.status.success(),
            "etcdutl snapshot status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let json: serde_json::Value = text
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .unwrap_or_else(|| panic!("no JSON in {text:?}"));
        (
            json["revision"].as_i64().unwrap_or(-1),
            json["totalKey"].as_i64().unwrap_or(-1),
        )
    }

    /// A real snapshot streamed from the member into the store, read back byte-identical, and
    /// accepted by `etcdutl snapshot status`. Returns the snapshot bytes for the other
    /// scenarios.
    pub async fn real_snapshot_round_trip(
        cluster: &EtcdCluster,
        client: &Client,
        cfg: &StoreConfig,
        key: Option<EncryptionKey>,
        part: usize,
    ) -> Vec<u8> {
        let mut store = open(cfg, part);
        if let Some(k) = key.clone() {
            store = store.with_encryption(k);
        }
        let name = "demo-20261203T070000Z-r1.db";
        let mut up = store.upload(name).await.expect("start upload");
        let mut tee = Tee::new(&mut up);
        let info = client
            .snapshot_from(&cluster.member(0).client_url(), &mut tee)
            .await
            .expect("snapshot");
        let (written, whole_sha) = (tee.written, hex(&tee.hasher.clone().finalize()));
        let stored = up.commit().await.expect("commit");
        assert_eq!(stored.size, info.size);
        assert_eq!(stored.size, written);
        assert_eq!(stored.sha256, hex(&info.sha256));
        assert_eq!(stored.key_id, key.as_ref().map(EncryptionKey::id));
        assert!(
            stored.size > 12_000_000,
            "snapshot only {} bytes",
            stored.size
        );
        assert!(stored.location.ends_with(name), "{}", stored.location);

        let listed = store.list().await.expect("list");
        assert_eq!(
            listed.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
            [name]
        );
        assert_eq!(listed[0].size, stored.stored_size);

        let dir = crate::support::temp_dir("readback").expect("tempdir");
        let back = dir.path().join("back.db");
        let got = store.download_to_file(name, &back).await.expect("download");
        assert_eq!(got.sha256, stored.sha256);
        assert_eq!(got.key_id, stored.key_id);
        assert_eq!(file_sha(&back), (written, whole_sha), "read back differs");
        let (rev, keys) = etcdutl_status(&back);
        assert!(keys >= 1500, "{keys} keys in the snapshot");
        assert!(rev >= 1501, "revision {rev}");

        // The stream API gives the same bytes.
        let mut stream = store.get(name).await.expect("get");
        let mut h = Sha256::new();
        let mut n = 0u64;
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            let chunk = chunk.expect("chunk");
            n += chunk.len() as u64;
            h.update(&chunk);
        }
        assert_eq!((n, hex(&h.finalize())), file_sha(&back));
        let bytes = std::fs::read(&back).expect("read");
        store.delete(name).await.expect("delete");
        assert!(store.list().await.expect("list").is_empty());
        bytes
    }

    /// A snapshot stream cut mid-way by a fault proxy, a bad SHA-256, and a stream that just
    /// stops leave no object.
    pub async fn failures_leave_nothing(
        cluster: &EtcdCluster,
        cfg: &StoreConfig,
        snap: &[u8],
        part: usize,
    ) {
        let store = open(cfg, part);

        // The member's stream cut by the proxy after 6 MB (one part already uploaded).
        let proxy = std::sync::Arc::new(
            crate::support::proxy::FaultProxy::start(&cluster.member(0).client_addr())
                .expect("proxy"),
        );
        let via_proxy = Client::connect(
            [proxy.url()],
            ConnectOptions::new().with_request_timeout(std::time::Duration::from_secs(30)),
        )
        .await
        .expect("connect via proxy");
        let mut up = store.upload("cut.db").await.expect("upload");
        let mut tee = Tee::new(&mut up);
        tee.trip_at = 6 << 20;
        let p = proxy.clone();
        tee.trip = Some(Box::new(move || p.drop_all()));
        let result = via_proxy.snapshot_from(&proxy.url(), &mut tee).await;
        assert!(tee.written >= 6 << 20, "only {} bytes came", tee.written);
        assert!(result.is_err(), "a cut stream succeeded: {result:?}");
        up.abort().await.expect("abort");
        proxy.resume();

        // A flipped bit: the trailer does not match; commit refuses.
        let mut bad = snap.to_vec();
        bad[snap.len() / 2] ^= 0x10;
        let mut up = store.upload("bad.db").await.expect("upload");
        up.write_all(&bad).await.expect("write");
        let err = up.commit().await.expect_err("bad sha committed");
        assert!(matches!(err, StoreError::Integrity(_)), "{err:?}");

        // A stream that stops early without an error from the source.
        let mut up = store.upload("short.db").await.expect("upload");
        up.write_all(&snap[..snap.len() * 2 / 3])
            .await
            .expect("write");
        assert!(matches!(up.commit().await, Err(StoreError::Integrity(_))));

        // Dropped mid-way (a cancelled task).
        let mut up = store.upload("dropped.db").await.expect("upload");
        up.write_all(&snap[..7 << 20]).await.expect("write");
        drop(up);
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;

        let listed = store.list().await.expect("list");
        assert!(listed.is_empty(), "objects left behind: {listed:?}");
        for name in ["cut.db", "bad.db", "short.db", "dropped.db"] {
            let err = store.get(name).await.err();
            assert!(
                matches!(err, Some(StoreError::NotFound(_))),
                "{name}: {err:?}"
            );
        }
    }

    /// Retention keeps the newest `keep` of one cluster's snapshots and leaves others alone.
    pub async fn retention(cfg: &StoreConfig, snap: &[u8], part: usize) {
        let store = open(cfg, part);
        let names = [
            "demo-20261203T070000Z-r10.db",
            "demo-20261203T070100Z-r20.db",
            "demo-20261203T070200Z-r30.db",
            "other-20261203T070000Z-r5.db",
        ];
        for n in names {
            let mut up = store.upload(n).await.expect("upload");
            up.write_all(snap).await.expect("write");
            up.commit().await.expect("commit");
        }
        let gone = store
            .retain_newest(2, |n| n.starts_with("demo-"))
            .await
            .expect("retention");
        assert_eq!(gone, [names[0]]);
        let left: Vec<String> = store
            .list()
            .await
            .expect("list")
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(left, [names[1], names[2], names[3]]);
        // Another prefix of the same bucket is not touched by this store's listing.
        let sibling = open(
            &cfg.clone().with_prefix(format!("{}-sibling", cfg.prefix)),
            part,
        );
        assert!(sibling.list().await.expect("list").is_empty());
        for n in &left {
            store.delete(n).await.expect("delete");
        }
        assert!(store.list().await.expect("list").is_empty());
    }

    /// An encrypted object in the store reads back only with its key.
    pub async fn wrong_key_fails(cfg: &StoreConfig, snap: &[u8], part: usize) {
        let key = EncryptionKey::from_bytes(&[0x5a; 32]).expect("key");
        let store = open(cfg, part).with_encryption(key.clone());
        let mut up = store.upload("enc.db").await.expect("upload");
        up.write_all(snap).await.expect("write");
        let stored = up.commit().await.expect("commit");
        assert_eq!(stored.key_id, Some(key.id()));
        let dir = crate::support::temp_dir("wrongkey").expect("tempdir");

        let wrong =
            open(cfg, part).with_encryption(EncryptionKey::from_bytes(&[0xa5; 32]).expect("key"));
        let err = wrong
            .download_to_file("enc.db", dir.path().join("a.db"))
            .await
            .expect_err("wrong key");
        assert!(matches!(err, StoreError::WrongKey { .. }), "{err:?}");
        let err = open(cfg, part)
            .download_to_file("enc.db", dir.path().join("b.db"))
            .await
            .expect_err("no key");
        assert!(matches!(err, StoreError::KeyMissing { .. }), "{err:?}");
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("dir").count(),
            0,
            "a failed read left a file"
        );
        let ok = store
            .download_to_file("enc.db", dir.path().join("c.db"))
            .await
            .expect("right key");
        assert_eq!(ok.sha256, stored.sha256);
        store.delete("enc.db").await.expect("delete");
    }

    /// Neither the config nor the store shows a credential in `Debug`.
    pub fn credentials_redacted(cfg: &StoreConfig, secrets: &[&str]) {
        let store = open(cfg, PART);
        let shown = format!("{cfg:?} {cfg:#?} {store:?}");
        for s in secrets {
            assert!(!shown.contains(s), "a credential leaked: {shown}");
        }
        if !secrets.is_empty() {
            assert!(shown.contains("<redacted>"), "{shown}");
        }
    }

    /// Every scenario, in order, on one store, with `part`-byte parts: [`PART`] makes the
    /// ~12 MB snapshots multipart uploads; a part larger than them sends each with one request.
    pub async fn all(
        cluster: &EtcdCluster,
        client: &Client,
        cfg: impl Fn(&str) -> StoreConfig,
        secrets: &[&str],
        part: usize,
    ) {
        credentials_redacted(&cfg("redact"), secrets);
        let snap = real_snapshot_round_trip(cluster, client, &cfg("plain"), None, part).await;
        let key = EncryptionKey::from_bytes(&[0x42; 32]).expect("key");
        real_snapshot_round_trip(cluster, client, &cfg("encrypted"), Some(key), part).await;
        failures_leave_nothing(cluster, &cfg("failures"), &snap, part).await;
        retention(&cfg("retention"), &snap, part).await;
        wrong_key_fails(&cfg("wrongkey"), &snap, part).await;
    }
}

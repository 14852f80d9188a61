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

    /// The file versitygw's posix backend keeps the object `key` of [`BUCKET`] in: the bytes as
    /// stored, not through any client.
    pub fn object_file(&self, key: &str) -> PathBuf {
        self._dir.path().join("root").join(BUCKET).join(key)
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

pub mod scenarios;
mod signed;

use signed::{azure_create_container, http_send, s3_create_bucket};

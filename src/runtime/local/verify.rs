//! The local runtime's verification of a stored snapshot: the object is read back (decrypted,
//! its SHA-256 trailer checked) into `<cluster dir>/verify/`, restored there with the version's
//! `etcdutl snapshot restore`, and served by a throwaway `etcd` process on two free loopback
//! ports, plain HTTP, a single member of its own; its revision and key count are read and
//! [`check`]ed against the record. The process is killed (and waited for) and the folder removed
//! on every path: a pass, a failure, and the [`VERIFY_TIMEOUT`] cutting the whole of it.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::controller::backup::verify::{
    Served, VERIFY_TIMEOUT, Verified, VerifyError, VerifyRequest, check,
};
use crate::etcd::kv::GetOptions;
use crate::etcd::{Client, ConnectOptions};

use super::members::{etcd_binary, etcdutl_restore, tool_binary};
use super::store::blocking;

/// How often the throwaway etcd is asked whether it serves yet.
const POLL: Duration = Duration::from_millis(100);

/// The last lines of a throwaway etcd's log kept in a failure message.
const LOG_LINES: usize = 3;

/// Verifies `request`'s snapshot with the etcd binaries of `bin_dir` (or `PATH`), working in
/// `cluster_dir/verify` (removed before and after).
pub(super) async fn verify(
    bin_dir: Option<&Path>,
    cluster_dir: &Path,
    request: VerifyRequest<'_>,
) -> Verified {
    let started = Instant::now();
    let dir = cluster_dir.join("verify");
    let mut etcd: Option<tokio::process::Child> = None;
    let result = tokio::time::timeout(VERIFY_TIMEOUT, run(bin_dir, &dir, request, &mut etcd)).await;
    if let Some(mut child) = etcd.take() {
        // Killed and waited for before its data directory is removed.
        let _ = child.kill().await;
    }
    remove_dir(&dir).await;
    let snapshot = request.snapshot;
    let failed = |e: VerifyError| Verified::failed(snapshot, &e, started.elapsed());
    match result {
        Ok(Ok((message, served))) => Verified {
            object: snapshot.object.clone(),
            location: snapshot.location.clone(),
            result: Ok(message),
            served: Some(served),
            duration: started.elapsed(),
        },
        Ok(Err(e)) => failed(e),
        Err(_) => failed(VerifyError::Timeout {
            location: snapshot.location.clone(),
            timeout: VERIFY_TIMEOUT,
        }),
    }
}

async fn remove_dir(dir: &Path) {
    let dir = dir.to_path_buf();
    let _ = blocking(
        "removing the verification folder",
        move || match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => {
                tracing::warn!("removing {}: {e}", dir.display());
                Ok(())
            }
        },
    )
    .await;
}

/// A free TCP port on 127.0.0.1 (the OS's choice, released at once for etcd to bind).
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn run(
    bin_dir: Option<&Path>,
    dir: &Path,
    request: VerifyRequest<'_>,
    etcd: &mut Option<tokio::process::Child>,
) -> Result<(String, Served), VerifyError> {
    let snapshot = request.snapshot;
    let location = || snapshot.location.clone();
    let restore_err = |why: String| VerifyError::Restore {
        location: location(),
        why,
    };
    let serve_err = |why: String| VerifyError::Serve {
        location: location(),
        why,
    };
    remove_dir(dir).await;
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| restore_err(format!("creating {}: {e}", dir.display())))?;
    let file = dir.join("snapshot.db");
    let downloaded = request
        .store
        .download_to_file(&snapshot.object, &file)
        .await
        .map_err(|source| VerifyError::Download {
            location: location(),
            source,
        })?;
    if !snapshot.sha256.is_empty() && !downloaded.sha256.eq_ignore_ascii_case(&snapshot.sha256) {
        return Err(VerifyError::Sha256 {
            location: location(),
            found: downloaded.sha256,
            recorded: snapshot.sha256.clone(),
        });
    }
    // etcd 3.4 has no etcdutl: its etcdctl restores (the same arguments).
    let v = request.version;
    let tool = if (v.major, v.minor) < (3, 5) {
        "etcdctl"
    } else {
        "etcdutl"
    };
    let etcdutl = tool_binary(bin_dir, v, tool).map_err(|e| restore_err(e.to_string()))?;
    let binary = etcd_binary(bin_dir, request.version).map_err(|e| serve_err(e.to_string()))?;
    let (client_port, peer_port) = free_port()
        .and_then(|c| Ok((c, free_port()?)))
        .map_err(|e| serve_err(format!("no free port: {e}")))?;
    let client_url = format!("http://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let data = dir.join("data");
    etcdutl_restore(
        &etcdutl,
        &file,
        "verify",
        &peer_url,
        &format!("verify={peer_url}"),
        "verify",
        &data,
    )
    .await
    .map_err(|e| restore_err(e.to_string()))?;
    // The restored data is all that is needed now.
    let _ = tokio::fs::remove_file(&file).await;
    let log = dir.join("etcd.log");
    *etcd = Some(start(&binary, &data, &client_url, &peer_url, &log).map_err(serve_err)?);
    let served = serve(&client_url, etcd, &log).await.map_err(serve_err)?;
    let message = check(snapshot, &downloaded.sha256, served, request.version)?;
    Ok((message, served))
}

/// Starts the throwaway etcd on `data` (a single member; the restored data holds its
/// membership, so the initial-cluster flags are ignored), logging to `log`.
fn start(
    binary: &Path,
    data: &Path,
    client_url: &str,
    peer_url: &str,
    log: &Path,
) -> Result<tokio::process::Child, String> {
    let out = std::fs::File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("opening {}: {e}", log.display()))?;
    tokio::process::Command::new(binary)
        .arg("--name=verify")
        .arg(format!("--data-dir={}", data.display()))
        .arg(format!("--listen-client-urls={client_url}"))
        .arg(format!("--advertise-client-urls={client_url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=verify={peer_url}"))
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", binary.display()))
}

/// Waits until the throwaway etcd at `client_url` answers, then reads its revision and key
/// count; an etcd that exits first is reported with the last lines of its `log`.
async fn serve(
    client_url: &str,
    etcd: &mut Option<tokio::process::Child>,
    log: &Path,
) -> Result<Served, String> {
    let opts = ConnectOptions::new().with_dial_timeout(Duration::from_secs(1));
    loop {
        if let Some(child) = etcd.as_mut()
            && let Ok(Some(exit)) = child.try_wait()
        {
            return Err(format!("etcd exited ({exit}): {}", last_lines(log)));
        }
        if let Ok(client) = Client::connect([client_url], opts.clone()).await
            && let Ok(status) = client.status(client_url).await
            && status.leader != 0
        {
            let keys = client
                .get(
                    "\0",
                    GetOptions::new()
                        .with_from_key()
                        .with_count_only()
                        .with_serializable(),
                )
                .await;
            return match keys {
                Ok(r) => Ok(Served {
                    revision: r.header.revision,
                    keys: Some(r.count),
                }),
                Err(e) if is_auth(&e) => Ok(Served {
                    revision: status.revision,
                    keys: None,
                }),
                Err(e) => Err(format!("counting the keys: {e}")),
            };
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether `e` is etcd refusing a request for want of authentication.
fn is_auth(e: &crate::etcd::Error) -> bool {
    use crate::etcd::ServerError;
    matches!(
        e.server_error(),
        Some(
            ServerError::UserEmpty | ServerError::PermissionDenied | ServerError::InvalidAuthToken
        )
    )
}

/// The last [`LOG_LINES`] non-empty lines of `log`.
fn last_lines(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(LOG_LINES)..].join(" | ")
}

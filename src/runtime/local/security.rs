//! TLS and auth of a local cluster: the operator-managed certificates under
//! `<state dir>/<namespace>/<name>/tls/` (keys mode 0600), the root password, and what the
//! operator's client is built from.
//!
//! ```text
//! tls/ca.crt ca.key server.crt server.key peer.crt peer.key client.crt client.key
//! root-password          (generated when spec.auth names no Secret)
//! ```

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rand::Rng;

use crate::tls::CertPaths;
use crate::tls::pki::{self, Bundle, CertKey, Ensured, Kind, Names};

use super::LocalError;

/// The SANs of every local member certificate: members listen on 127.0.0.1.
fn names(cluster: &str) -> Names {
    let local = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    Names {
        cluster: cluster.to_owned(),
        server: local.clone(),
        peer: local,
    }
}

/// The folder of the certificates.
pub fn tls_dir(root: &Path) -> PathBuf {
    root.join("tls")
}

fn file(root: &Path, kind: Kind, ext: &str) -> PathBuf {
    tls_dir(root).join(format!("{}.{ext}", kind.as_str()))
}

/// Where members find their certificates.
pub fn cert_paths(root: &Path) -> CertPaths {
    let p = |k, e| file(root, k, e).display().to_string();
    CertPaths {
        ca: p(Kind::Ca, "crt"),
        server: (p(Kind::Server, "crt"), p(Kind::Server, "key")),
        peer: (p(Kind::Peer, "crt"), p(Kind::Peer, "key")),
    }
}

fn read(path: &Path) -> Result<Option<String>, LocalError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LocalError::io(format!("reading {}", path.display()), e)),
    }
}

/// Writes `bytes` to `path` through a temporary file created with `mode`, then renames it.
fn write_private(path: &Path, bytes: &[u8], mode: u32) -> Result<(), LocalError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|e| LocalError::io(format!("creating {}", dir.display()), e))?;
    let tmp = path.with_extension("tmp");
    let io = |e| LocalError::io(format!("writing {}", path.display()), e);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn read_bundle(root: &Path) -> Result<Option<Bundle>, LocalError> {
    let pair = |kind| -> Result<Option<CertKey>, LocalError> {
        Ok(
            match (
                read(&file(root, kind, "crt"))?,
                read(&file(root, kind, "key"))?,
            ) {
                (Some(cert_pem), Some(key_pem)) => Some(CertKey { cert_pem, key_pem }),
                _ => None,
            },
        )
    };
    Ok(
        match (
            pair(Kind::Ca)?,
            pair(Kind::Server)?,
            pair(Kind::Peer)?,
            pair(Kind::Client)?,
        ) {
            (Some(ca), Some(server), Some(peer), Some(client)) => Some(Bundle {
                ca,
                server,
                peer,
                client,
            }),
            // A partial set: what is there is kept only if it is the CA.
            (Some(ca), ..) => {
                let blank = CertKey {
                    cert_pem: String::new(),
                    key_pem: String::new(),
                };
                Some(Bundle {
                    ca,
                    server: blank.clone(),
                    peer: blank.clone(),
                    client: blank,
                })
            }
            _ => None,
        },
    )
}

/// Makes or renews the certificates of the cluster in `root` at `now` and writes what changed;
/// answers the certificates and their expiry.
pub fn ensure_certificates(
    root: &Path,
    cluster: &str,
    now: SystemTime,
) -> Result<Ensured, LocalError> {
    let stored = read_bundle(root)?;
    let ensured = pki::ensure(stored.as_ref(), &names(cluster), now).map_err(LocalError::Tls)?;
    // The CA last: a crash in between leaves leaves the old CA did not sign, which the next
    // pass reissues (they do not verify against it).
    for kind in [Kind::Server, Kind::Peer, Kind::Client, Kind::Ca] {
        if ensured.renewed.contains(&kind) {
            let c = ensured.bundle.get(kind);
            write_private(&file(root, kind, "key"), c.key_pem.as_bytes(), 0o600)?;
            write_private(&file(root, kind, "crt"), c.cert_pem.as_bytes(), 0o644)?;
        }
    }
    Ok(ensured)
}

/// Writes the certificates of the user's Secrets (`spec.tls.source.secrets`) where members
/// read them; a file whose content is unchanged is not rewritten. Answers whether any was.
pub fn write_user_certificates(root: &Path, bundle: &Bundle) -> Result<bool, LocalError> {
    let mut changed = false;
    for kind in [Kind::Ca, Kind::Server, Kind::Peer, Kind::Client] {
        let c = bundle.get(kind);
        for (ext, text, mode) in [("crt", &c.cert_pem, 0o644), ("key", &c.key_pem, 0o600)] {
            if text.is_empty() {
                continue;
            }
            let path = file(root, kind, ext);
            if read(&path)?.as_deref() != Some(text.as_str()) {
                write_private(&path, text.as_bytes(), mode)?;
                changed = true;
            }
        }
    }
    Ok(changed)
}

/// The path of the generated root password.
pub fn password_path(root: &Path) -> PathBuf {
    root.join("root-password")
}

/// The generated root password of the cluster in `root`, made (32 random letters and digits,
/// mode 0600) when absent.
pub fn generated_password(root: &Path) -> Result<String, LocalError> {
    let path = password_path(root);
    if let Some(p) = read(&path)? {
        let p = p.trim().to_owned();
        if !p.is_empty() {
            return Ok(p);
        }
    }
    let password = new_password();
    write_private(&path, password.as_bytes(), 0o600)?;
    Ok(password)
}

/// A new random password: 32 letters and digits.
pub fn new_password() -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_written_once_with_private_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = ensure_certificates(dir.path(), "demo", SystemTime::now()).expect("made");
        assert_eq!(first.renewed.len(), 4);
        let key = file(dir.path(), Kind::Server, "key");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&key).expect("key").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let again = ensure_certificates(dir.path(), "demo", SystemTime::now()).expect("kept");
        assert!(again.renewed.is_empty(), "{:?}", again.renewed);
        // A lost peer key: the CA is kept, the leaves it signs are made again.
        std::fs::remove_file(file(dir.path(), Kind::Peer, "key")).expect("rm");
        let third = ensure_certificates(dir.path(), "demo", SystemTime::now()).expect("remade");
        assert!(!third.renewed.contains(&Kind::Ca), "{:?}", third.renewed);
        assert!(third.renewed.contains(&Kind::Peer), "{:?}", third.renewed);
    }

    #[test]
    fn the_generated_password_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = generated_password(dir.path()).expect("made");
        assert_eq!(p.len(), 32);
        assert_eq!(generated_password(dir.path()).expect("read"), p);
    }
}

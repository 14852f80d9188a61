//! One Kubernetes control plane shared by every test of a test binary (starting one takes
//! seconds), with the operator's CRDs applied once.
//!
//! The control plane is started by a dedicated thread that lives as long as the test process, so
//! that `PDEATHSIG` (which fires when the spawning *thread* exits) does not kill the apiserver
//! when the first test finishes. An `atexit` handler stops the processes and removes the
//! directories when the test binary exits; `PDEATHSIG` still kills them if it is killed outright.

#![allow(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, mpsc};

use super::kube::KubeControlPlane;
use super::{HarnessError, Result};

static PLANE: Mutex<Option<KubeControlPlane>> = Mutex::new(None);
static HANDLE: OnceLock<std::result::Result<SharedKube, String>> = OnceLock::new();

/// What a test needs of the shared control plane.
#[derive(Debug, Clone)]
pub struct SharedKube {
    kubeconfig: PathBuf,
    dir: PathBuf,
}

extern "C" fn stop_plane() {
    let plane = PLANE.lock().ok().and_then(|mut g| g.take());
    drop(plane);
}

/// The shared control plane with the CRDs in `crds/` applied and established; started on first
/// use. Panics (failing the calling test) when it cannot start.
pub fn shared_kube() -> &'static SharedKube {
    let handle = HANDLE.get_or_init(|| start().map_err(|e| e.to_string()));
    match handle {
        Ok(h) => h,
        Err(e) => panic!("the shared control plane did not start: {e}"),
    }
}

fn start() -> Result<SharedKube> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("shared-kube".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(HarnessError::io("building a runtime", e)));
                    return;
                }
            };
            match rt.block_on(KubeControlPlane::start()) {
                Ok(cp) => {
                    let h = SharedKube {
                        kubeconfig: cp.kubeconfig().to_path_buf(),
                        dir: cp.dir().to_path_buf(),
                    };
                    if let Ok(mut g) = PLANE.lock() {
                        *g = Some(cp);
                    }
                    // SAFETY: registers a plain `extern "C"` function without captured state.
                    unsafe {
                        libc::atexit(stop_plane);
                    }
                    let _ = tx.send(Ok(h));
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
            // Keep this thread (the parent of the processes) alive until the process exits.
            loop {
                std::thread::park();
            }
        })
        .map_err(|e| HarnessError::io("spawning the control-plane thread", e))?;
    let h = rx
        .recv()
        .map_err(|_| HarnessError::msg("the control-plane thread died"))??;
    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    // As a person would: a client-side apply of the folder.
    h.kubectl(&["apply", "-f", &crds.display().to_string()])?;
    // Poll rather than `kubectl wait`, which fails outright while the CRD has no conditions yet.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let established = h.kubectl(&[
            "get",
            "crd",
            "etcdclusters.etcd.operator.dev",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
        ]);
        if matches!(&established, Ok(s) if s.trim() == "True") {
            break;
        }
        if std::time::Instant::now() > deadline {
            return Err(HarnessError::msg(format!(
                "the CRD was not established within 60 s: {established:?}"
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    Ok(h)
}

impl SharedKube {
    /// The kubeconfig file `kubectl` uses.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The control plane's folder (logs, pki).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A client authenticated as the admin, bound to the calling test's runtime.
    pub async fn client(&self) -> Result<kube::Client> {
        super::kube::client_for(&self.kubeconfig).await
    }

    /// Runs `kubectl --kubeconfig=<ours> args...`; stdout on success.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        super::kube::kubectl_with(&self.kubeconfig, args)
    }

    /// Runs `kubectl <verb> -f <file holding yaml> extra...` (the YAML is written to a file in the
    /// control plane's folder).
    pub fn kubectl_with_manifest(&self, verb: &str, yaml: &str, extra: &[&str]) -> Result<String> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.dir.join(format!("manifest-{n}.yaml"));
        std::fs::write(&path, yaml)
            .map_err(|e| HarnessError::io(format!("writing {}", path.display()), e))?;
        let file = path.display().to_string();
        let mut args = vec![verb, "-f", file.as_str()];
        args.extend_from_slice(extra);
        self.kubectl(&args)
    }

    /// Runs `helm args...` against the shared control plane (helm's state in its folder);
    /// stdout on success.
    pub fn helm(&self, args: &[&str]) -> Result<String> {
        let mut cmd = super::kube::helm_command()?;
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CACHE_HOME", self.dir.join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.dir.join("helm/config"))
            .env("HELM_DATA_HOME", self.dir.join("helm/data"))
            .args(args);
        let out = cmd
            .output()
            .map_err(|e| HarnessError::io("running helm", e))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(HarnessError::msg(format!(
                "`helm {}` failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            )))
        }
    }

    /// Writes a kubeconfig like the admin's that authenticates with `token` instead (for
    /// example a ServiceAccount's, from TokenRequest) and returns its path.
    pub fn kubeconfig_with_token(&self, name: &str, token: &str) -> Result<PathBuf> {
        let admin = std::fs::read_to_string(&self.kubeconfig)
            .map_err(|e| HarnessError::io("reading the admin kubeconfig", e))?;
        let mut replaced = false;
        let text: Vec<String> = admin
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("token: ") {
                    replaced = true;
                    format!("    token: {token}")
                } else {
                    l.to_owned()
                }
            })
            .collect();
        if !replaced {
            return Err(HarnessError::msg("the admin kubeconfig has no token line"));
        }
        let path = self.dir.join(format!("kubeconfig-{name}"));
        std::fs::write(&path, text.join("\n") + "\n")
            .map_err(|e| HarnessError::io(format!("writing {}", path.display()), e))?;
        Ok(path)
    }

    /// Creates a namespace for one test.
    pub fn namespace(&self, name: &str) -> Result<String> {
        self.kubectl(&["create", "namespace", name])?;
        Ok(name.to_owned())
    }
}

/// An `EtcdCluster` named `name` with `spec`, as a test creates it in the apiserver.
pub fn etcd_cluster(name: &str, spec: serde_json::Value) -> etcd_operator::api::EtcdCluster {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "etcd.operator.dev/v1alpha1",
        "kind": "EtcdCluster",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("an EtcdCluster")
}

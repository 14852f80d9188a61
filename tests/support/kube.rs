//! A real Kubernetes control plane for tests: its own etcd plus `kube-apiserver` with RBAC
//! authorization, a token-authenticated admin in `system:masters`, and service-account signing
//! keys (so TokenRequest works). No kubelet, controller-manager or scheduler: objects are stored and
//! validated, nothing runs them.
//!
//! It hands out a [`kube::Client`] and a kubeconfig file that `kubectl` and `helm` use.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::bins;
use super::etcd::EtcdCluster;
use super::ports::free_port;
use super::process::Proc;
use super::{HarnessError, Result, temp_dir};

/// A running etcd + kube-apiserver; both are killed and their directories removed on drop.
#[derive(Debug)]
pub struct KubeControlPlane {
    apiserver: Proc,
    port: u16,
    kubeconfig: PathBuf,
    token: String,
    dir: tempfile::TempDir,
    // Dropped after the apiserver (fields drop in declaration order).
    _etcd: EtcdCluster,
}

impl KubeControlPlane {
    /// Starts etcd and kube-apiserver and waits until `/readyz` is `ok` (60 s at most).
    pub async fn start() -> Result<KubeControlPlane> {
        let apiserver_bin = bins::kube_apiserver()?;
        let etcd = EtcdCluster::builder().members(1).start()?;
        let dir = temp_dir("kube")?;
        let d = dir.path();
        let pki = d.join("pki");
        std::fs::create_dir_all(&pki).map_err(|e| HarnessError::io("creating pki dir", e))?;

        let token = format!(
            "admin-{}",
            d.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        );
        write(
            &d.join("tokens.csv"),
            &format!("{token},admin,admin,\"system:masters\"\n"),
        )?;

        let key = rcgen::KeyPair::generate()
            .map_err(|e| HarnessError::msg(format!("generating the service-account key: {e}")))?;
        write(&d.join("sa.key"), &key.serialize_pem())?;
        write(&d.join("sa.pub"), &key.public_key_pem())?;

        let port = free_port()?;
        let args = vec![
            format!("--etcd-servers={}", etcd.member(0).client_url()),
            format!("--cert-dir={}", pki.display()),
            "--bind-address=127.0.0.1".to_string(),
            format!("--secure-port={port}"),
            "--service-cluster-ip-range=10.0.0.0/24".to_string(),
            "--allow-privileged=true".to_string(),
            "--disable-admission-plugins=ServiceAccount".to_string(),
            "--authorization-mode=RBAC".to_string(),
            format!("--token-auth-file={}", d.join("tokens.csv").display()),
            format!("--service-account-issuer=https://127.0.0.1:{port}"),
            format!("--service-account-key-file={}", d.join("sa.pub").display()),
            format!(
                "--service-account-signing-key-file={}",
                d.join("sa.key").display()
            ),
            "--profiling=false".to_string(),
        ];
        let apiserver = Proc::spawn(
            "kube-apiserver",
            &apiserver_bin,
            &args,
            &d.join("kube-apiserver.log"),
        )?;

        let kubeconfig = d.join("kubeconfig");
        let mut cp = KubeControlPlane {
            apiserver,
            port,
            kubeconfig,
            token,
            dir,
            _etcd: etcd,
        };
        cp.wait_ready(Duration::from_secs(60)).await?;
        Ok(cp)
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let ca = self.dir.path().join("pki/apiserver.crt");
        let mut last_err = String::from("not started");
        loop {
            if let Some(status) = self.apiserver.exited() {
                return Err(HarnessError::msg(format!(
                    "kube-apiserver exited ({status}) while starting; last log lines:\n{}",
                    self.apiserver.log_tail(20)
                )));
            }
            if ca.is_file() {
                self.write_kubeconfig(&ca)?;
                match self.client().await {
                    Ok(c) => {
                        let req = http::Request::get("/readyz")
                            .body(Vec::new())
                            .map_err(|e| HarnessError::msg(e.to_string()))?;
                        match c.request_text(req).await {
                            Ok(body) if body.trim() == "ok" => return Ok(()),
                            Ok(body) => last_err = body,
                            Err(e) => last_err = e.to_string(),
                        }
                    }
                    Err(e) => last_err = e.to_string(),
                }
            }
            if Instant::now() > deadline {
                return Err(HarnessError::msg(format!(
                    "kube-apiserver not ready after {timeout:?} (last answer: {last_err}); log:\n{}",
                    self.apiserver.log_tail(20)
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn write_kubeconfig(&self, ca: &Path) -> Result<()> {
        let text = format!(
            "apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: admin
  user:
    token: {token}
contexts:
- name: test
  context:
    cluster: test
    user: admin
    namespace: default
current-context: test
",
            server = self.url(),
            ca = ca.display(),
            token = self.token,
        );
        write(&self.kubeconfig, &text)
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    /// The serving certificate bundle (a CA for clients).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("pki/apiserver.crt")
    }
    pub fn admin_token(&self) -> &str {
        &self.token
    }

    /// A client authenticated as the admin (system:masters).
    pub async fn client(&self) -> Result<kube::Client> {
        client_for(&self.kubeconfig).await
    }

    /// Runs `kubectl --kubeconfig=<ours> args...`; stdout on success, an error with stderr otherwise.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        kubectl_with(&self.kubeconfig, args)
    }

    /// Runs `helm args...` with our kubeconfig and helm's state kept in the control plane's dir.
    pub fn helm(&self, args: &[&str]) -> Result<String> {
        let mut cmd = helm_command()?;
        let d = self.dir.path();
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CACHE_HOME", d.join("helm/cache"))
            .env("HELM_CONFIG_HOME", d.join("helm/config"))
            .env("HELM_DATA_HOME", d.join("helm/data"))
            .args(args);
        run(cmd, "helm", args)
    }
}

/// A client from a kubeconfig file.
pub async fn client_for(kubeconfig: &Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .map_err(|e| HarnessError::msg(format!("reading kubeconfig: {e}")))?;
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| HarnessError::msg(format!("kubeconfig: {e}")))?;
    kube::Client::try_from(cfg).map_err(|e| HarnessError::msg(format!("kube client: {e}")))
}

/// Runs `kubectl --kubeconfig=<kubeconfig> args...`; stdout on success, an error with stderr
/// otherwise.
pub fn kubectl_with(kubeconfig: &Path, args: &[&str]) -> Result<String> {
    let bin = bins::kubectl()?;
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(args);
    run(cmd, "kubectl", args)
}

/// `helm` without a cluster (lint, template, version), with its state in a throwaway folder.
pub fn helm_command() -> Result<Command> {
    let bin = bins::helm()?;
    let mut cmd = Command::new(bin);
    let tmp = std::env::temp_dir().join(format!("{}helm-home", super::DIR_PREFIX));
    cmd.env("HELM_CACHE_HOME", tmp.join("cache"))
        .env("HELM_CONFIG_HOME", tmp.join("config"))
        .env("HELM_DATA_HOME", tmp.join("data"));
    Ok(cmd)
}

fn run(mut cmd: Command, what: &str, args: &[&str]) -> Result<String> {
    let out = cmd
        .output()
        .map_err(|e| HarnessError::io(format!("running {what}"), e))?;
    output(out, what, args)
}

/// The stdout of a finished command, or an error naming the command, its status and its output.
pub fn output(out: std::process::Output, what: &str, args: &[&str]) -> Result<String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(HarnessError::msg(format!(
            "`{what} {}` failed ({}): {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        )))
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text)
        .map_err(|e| HarnessError::io(format!("writing {}", path.display()), e))
}

//! One cluster of the local runtime as the pass's [`Runtime`]: members are etcd processes
//! ([`LocalMembers`]), the intent and the status are files in the cluster's state folder, and
//! Events are lines of its `events.log`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::api::EtcdClusterSpec;
use crate::api::EtcdClusterStatus;
use crate::api::validation::validate_transition;
use crate::controller::backup::{Folders, SecretData};
use crate::controller::events::StepEvent;
use crate::controller::observe::{Resolve, Unreachable, same_url};
use crate::controller::pass::{Now, Report, Runtime, Target};
use crate::controller::plan::{Desired, Intent, RuntimeMember, Step};
use crate::controller::security::{Password, Security};
use crate::controller::status::phase_name;
use crate::controller::validate::Placement;
use crate::controller::validate::member_template;
use crate::etcd::{Client, ConnectOptions};
use crate::metrics::Metrics;
use crate::tls::pki::{Bundle, Kind, UserSecret, user_bundle};
use crate::tls::{TlsSettings, etcd_flags};

use super::LocalError;
use super::manifest::Manifest;
use super::members::{LocalMembers, config_hash};
use super::ports::Allocator;
use super::security::{
    cert_paths, ensure_certificates, generated_password, write_user_certificates,
};
use super::store::{StateFolder, blocking, read_yaml, write_yaml};

/// The certificates, their expiry by kind, and whether a file was written.
type Prepared = (Bundle, Vec<(Kind, std::time::SystemTime)>, bool);

/// The certificates of `manifest`'s cluster in `root` at `now`: the user's Secrets (from the
/// manifests' `kind: Secret` documents) written out, or the operator-managed ones made or
/// renewed. Answers them, their expiry and whether anything was written; `None` without TLS.
fn prepare_tls(
    manifest: &Manifest,
    root: &Path,
    now: std::time::SystemTime,
) -> Result<Option<Prepared>, LocalError> {
    let spec = &manifest.cluster.spec;
    let tls = TlsSettings::of(spec);
    if !tls.any() {
        return Ok(None);
    }
    let Some(user) = spec.tls.as_ref().and_then(|t| t.source.secrets.as_ref()) else {
        let ensured = ensure_certificates(root, &manifest.name, now)?;
        let renewed = !ensured.renewed.is_empty();
        return Ok(Some((ensured.bundle, ensured.not_after, renewed)));
    };
    let ns = &manifest.namespace;
    let read = |name: &str| {
        let text = |s: &crate::controller::backup::SecretData, k: &str| {
            s.get(k).and_then(|b| String::from_utf8(b.to_vec()).ok())
        };
        UserSecret {
            name: format!("{ns}/{name}"),
            data: manifest
                .secrets
                .get(ns, name)
                .map(|s| [text(s, "tls.crt"), text(s, "tls.key"), text(s, "ca.crt")]),
        }
    };
    let secrets = [
        read(&user.ca),
        read(&user.server),
        read(&user.peer),
        read(&user.operator_client),
    ];
    let [a, b, c, d] = &secrets;
    let (bundle, not_after) = user_bundle([a, b, c, d], &tls.kinds()).map_err(LocalError::Tls)?;
    let written = write_user_certificates(root, &bundle)?;
    Ok(Some((bundle, not_after, written)))
}

/// The flags every member of `spec` is started with: `spec.etcd`'s and the TLS flags with the
/// certificates under `root`.
fn member_flags(spec: &EtcdClusterSpec, root: &Path) -> Vec<String> {
    let mut flags = member_template(spec).flags;
    flags.extend(etcd_flags(TlsSettings::of(spec), &cert_paths(root)));
    flags
}

/// One cluster under reconciliation.
#[derive(Debug)]
pub struct LocalCluster {
    manifest: Manifest,
    generation: i64,
    members: LocalMembers,
    client: Option<Client>,
    last_status: Option<EtcdClusterStatus>,
    state_dir: PathBuf,
    metrics: Arc<Metrics>,
    /// The last progress line, so that a repeated one is written once.
    last_message: String,
    last_step: Option<Step>,
    last_event: Option<StepEvent>,
    /// The certificates the client was built with (a renewal reconnects).
    client_tls: Option<Bundle>,
    /// root's password once `spec.auth` asked for it.
    root_password: Option<Password>,
}

impl LocalCluster {
    /// Opens (or creates) the cluster's state and starts the members it already has. A new
    /// cluster's ports are chosen by `ports`.
    pub async fn open(
        manifest: Manifest,
        state_dir: &Path,
        bin_dir: Option<PathBuf>,
        metrics: Arc<Metrics>,
        ports: &Allocator,
    ) -> Result<Self, LocalError> {
        let dir = StateFolder::new(state_dir, &manifest.namespace, &manifest.name);
        let tls = TlsSettings::of(&manifest.cluster.spec);
        let record = {
            let (dir, state_dir, ports) = (dir.clone(), state_dir.to_path_buf(), ports.clone());
            let (ns, name) = (manifest.namespace.clone(), manifest.name.clone());
            let want = (tls.client, tls.peer);
            blocking("choosing the cluster's ports", move || {
                dir.load_or_create_record(&state_dir, &ports, &ns, &name, want)
            })
            .await?
        };
        if (record.client_tls, record.peer_tls) != (tls.client, tls.peer) {
            return Err(LocalError::Refused(format!(
                "{}: {} (it was created with client TLS {}, peer TLS {})",
                manifest.key(),
                crate::api::rules::TLS_IMMUTABLE_MESSAGE,
                record.client_tls,
                record.peer_tls
            )));
        }
        // Members find their certificates from the first start.
        prepare_tls(&manifest, dir.root(), std::time::SystemTime::now())?;
        let flags = member_flags(&manifest.cluster.spec, dir.root());
        let mut members =
            LocalMembers::new(manifest.key(), manifest.name.clone(), dir, record, bin_dir);
        members.set_flags(flags);
        members.resume()?;
        // The status written before: what the operator did (last snapshot, defragmentations)
        // is remembered across restarts.
        let status_path = members.dir().status_path();
        let last_status = if status_path.exists() {
            match read_yaml::<EtcdClusterStatus>(&status_path) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!("{}: ignoring the previous status: {e}", manifest.key());
                    None
                }
            }
        } else {
            None
        };
        Ok(Self {
            manifest,
            generation: 1,
            members,
            client: None,
            last_status,
            state_dir: state_dir.to_path_buf(),
            metrics,
            last_message: String::new(),
            last_step: None,
            last_event: None,
            client_tls: None,
            root_password: None,
        })
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        self.manifest.key()
    }

    /// Takes a new manifest for this cluster; logs what changed.
    pub fn update(&mut self, manifest: Manifest) {
        if manifest.cluster.spec == self.manifest.cluster.spec {
            self.manifest = manifest;
            return;
        }
        let (old, new) = (&self.manifest.cluster.spec, &manifest.cluster.spec);
        let refused = validate_transition(old, new);
        if !refused.is_empty() {
            for e in &refused {
                tracing::error!("{}: manifest change refused: {e}", self.key());
            }
            return;
        }
        let mut changes = Vec::new();
        if old.replicas != new.replicas {
            changes.push(format!("replicas {} → {}", old.replicas, new.replicas));
        }
        if old.version != new.version {
            changes.push(format!("version {} → {}", old.version, new.version));
        }
        if old.paused != new.paused {
            changes.push(format!("paused {} → {}", old.paused, new.paused));
        }
        if old.etcd != new.etcd {
            changes.push("etcd options".to_owned());
        }
        if old.tls != new.tls {
            changes.push("tls".to_owned());
        }
        if old.auth != new.auth {
            changes.push("auth".to_owned());
        }
        tracing::info!(
            "{}: manifest changed ({})",
            self.key(),
            if changes.is_empty() {
                "other fields".to_owned()
            } else {
                changes.join(", ")
            }
        );
        self.generation += 1;
        self.members.set_flags(member_flags(
            &manifest.cluster.spec,
            self.members.dir().root(),
        ));
        self.manifest = manifest;
    }

    /// Stops the members gracefully, keeping their data.
    pub async fn shutdown(&mut self) {
        self.members.stop_all().await;
    }
}

impl Runtime for LocalCluster {
    type Error = LocalError;
    type Members = LocalMembers;

    const OBSERVE_TIMEOUT: Duration = Duration::from_millis(1500);

    fn target(&self) -> Target<'_> {
        Target {
            namespace: &self.manifest.namespace,
            name: &self.manifest.name,
            spec: &self.manifest.cluster.spec,
            generation: Some(self.generation),
            status: self.last_status.as_ref(),
        }
    }

    fn placement(&self) -> Placement {
        let backups = self.members.dir().root().join("backups");
        Placement {
            namespace: self.manifest.namespace.clone(),
            cluster: self.manifest.name.clone(),
            config_hash: config_hash(&member_flags(
                &self.manifest.cluster.spec,
                self.members.dir().root(),
            )),
            peer_url_template: self.members.record().peer_url_template(),
            replace_after_failures: crate::controller::plan::DEFAULT_REPLACE_AFTER_FAILURES,
            snapshots: Folders::Allowed {
                base: self.state_dir.clone(),
                default: backups,
            },
            restore_base: Some(self.state_dir.clone()),
            restore_stores: Ok(()),
            verifies_snapshots: true,
        }
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn resolve(&self) -> Resolve<'_> {
        &same_url
    }

    async fn security(&mut self, now: std::time::SystemTime) -> Result<Security, LocalError> {
        let spec = &self.manifest.cluster.spec;
        let mut out = Security::default();
        if let Some((bundle, not_after, written)) =
            prepare_tls(&self.manifest, self.members.dir().root(), now)?
        {
            if written {
                tracing::info!("{}: certificates written", self.key());
            }
            if self.client_tls.as_ref() != Some(&bundle) {
                // The next connect builds a client with these.
                self.client = None;
                self.client_tls = Some(bundle);
            }
            out.not_after = not_after;
        }
        if let Some(auth) = spec.auth.as_ref().filter(|a| a.enabled) {
            let password = match &auth.root_password_secret {
                Some(name) => {
                    let secret = self
                        .manifest
                        .secrets
                        .get(&self.manifest.namespace, name)
                        .ok_or_else(|| {
                            LocalError::Auth(format!(
                                "spec.auth.rootPasswordSecret: no Secret {}/{name} in the manifests",
                                self.manifest.namespace
                            ))
                        })?;
                    let value = secret.get("password").ok_or_else(|| {
                        LocalError::Auth(format!(
                            "Secret {}/{name} has no key \"password\"",
                            self.manifest.namespace
                        ))
                    })?;
                    String::from_utf8(value.to_vec()).map_err(|_| {
                        LocalError::Auth(format!(
                            "Secret {}/{name}: the password is not UTF-8",
                            self.manifest.namespace
                        ))
                    })?
                }
                None => generated_password(self.members.dir().root())?,
            };
            let password = Password::new(password.trim());
            if self.root_password.as_ref() != Some(&password) {
                self.client = None;
                self.root_password = Some(password.clone());
            }
            out.root_password = Some(password);
        }
        Ok(out)
    }

    async fn observe_members(&mut self, _desired: &Desired) -> Result<Vec<String>, LocalError> {
        self.members.poll().await?;
        self.members.client_urls()
    }

    async fn connect(&mut self, endpoints: &[String]) -> Result<Client, Unreachable> {
        // One client per cluster, kept between passes and pointed at the members of the day.
        if let Some(c) = &self.client {
            c.set_endpoints(endpoints)
                .map_err(|e| Unreachable::Connect(e.to_string()))?;
            return Ok(c.clone());
        }
        let client_tls = TlsSettings::of(&self.manifest.cluster.spec).client;
        let opts = crate::controller::security::client_options(
            ConnectOptions::new()
                .with_dial_timeout(Duration::from_secs(1))
                .with_max_retries(u32::try_from(endpoints.len()).unwrap_or(1) * 2),
            self.client_tls.as_ref().filter(|_| client_tls),
            self.root_password.as_ref(),
        );
        let c = Client::connect(endpoints, opts)
            .await
            .map_err(|e| Unreachable::Connect(e.to_string()))?;
        self.client = Some(c.clone());
        Ok(c)
    }

    fn runtime_members(
        &self,
        _desired: &Desired,
        _answered: bool,
    ) -> Result<Vec<RuntimeMember>, LocalError> {
        self.members.observe()
    }

    fn read_intent(&self) -> Result<Option<Intent>, LocalError> {
        self.members.dir().read_intent()
    }

    async fn read_secret(&mut self, name: &str) -> Result<Option<SecretData>, LocalError> {
        // The `kind: Secret` documents of the manifests, in the cluster's namespace.
        Ok(self
            .manifest
            .secrets
            .get(&self.manifest.namespace, name)
            .cloned())
    }

    async fn write_status(&mut self, status: &EtcdClusterStatus) -> Result<(), LocalError> {
        let (path, value) = (self.members.dir().status_path(), status.clone());
        blocking("writing the status", move || write_yaml(&path, &value)).await?;
        self.last_status = Some(status.clone());
        Ok(())
    }

    async fn publish(&mut self, event: StepEvent) {
        // A step failing on every pass is one line, as Kubernetes aggregates repeated Events.
        if self.last_event.as_ref() == Some(&event) {
            return;
        }
        let line = format!(
            "{} {} {} {}: {}\n",
            Now::current().text,
            if event.warning { "Warning" } else { "Normal" },
            event.reason,
            event.action,
            event.note
        );
        let path = self.members.dir().root().join("events.log");
        let written = blocking("appending an Event", move || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()))
                .map_err(|e| LocalError::io(format!("appending to {}", path.display()), e))
        })
        .await;
        if let Err(e) = written {
            tracing::warn!("{}: {e}", self.key());
        }
        self.last_event = Some(event);
    }

    fn report(&mut self, report: Report<'_>) {
        let key = self.key();
        match report {
            Report::Idle { plan } => {
                if plan.status.message != self.last_message {
                    let phase = phase_name(plan.status.phase);
                    tracing::info!("{key}: {phase} — {}", plan.status.message);
                    self.last_message = plan.status.message.clone();
                }
            }
            Report::Running { plan, step, view } => {
                let repeat = self.last_message.starts_with("not yet: ")
                    && self.last_step.as_ref() == Some(step);
                if !repeat {
                    self.last_message.clear();
                    let leader = view
                        .and_then(|v| v.leader.and_then(|id| v.member(id)))
                        .map_or_else(|| "none".to_owned(), |m| m.member.name.clone());
                    let s = &plan.status;
                    tracing::info!(
                        "{key}: {} ({}; {} of {} voters ready, {} wanted; leader {leader})",
                        s.message,
                        phase_name(s.phase),
                        s.ready,
                        s.voters,
                        s.desired
                    );
                }
                self.last_step = Some(step.clone());
            }
            Report::NotYet { why, .. } => {
                // etcd asks to wait (a member just joined, a learner catching up): say so once.
                let line = format!("not yet: {why}");
                if line != self.last_message {
                    tracing::info!("{key}: {line}; retrying");
                    self.last_message = line;
                }
            }
            Report::Maintained { done } => tracing::info!("{key}: {done}"),
            Report::Failed { step, error } => {
                let line = format!("not yet: {error}");
                if line != self.last_message {
                    let when = if matches!(step, Step::Snapshot { .. }) {
                        "retrying after the back-off (status.backup.nextAttempt)"
                    } else {
                        "retrying on the next pass"
                    };
                    tracing::warn!("{key}: {error}; {when}");
                    self.last_message = line;
                }
            }
        }
    }

    fn members(&mut self) -> &mut LocalMembers {
        &mut self.members
    }
}

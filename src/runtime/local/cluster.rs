//! One cluster of the local runtime as the pass's [`Runtime`]: members are etcd processes
//! ([`LocalMembers`]), the intent and the status are files in the cluster's state folder, and
//! Events are lines of its `events.log`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::api::EtcdClusterStatus;
use crate::controller::backup::{Folders, SecretData};
use crate::controller::events::StepEvent;
use crate::controller::observe::{Resolve, Unreachable, same_url};
use crate::controller::pass::{Now, Report, Runtime, Target};
use crate::controller::plan::{Desired, Intent, RuntimeMember, Step};
use crate::controller::status::phase_name;
use crate::controller::validate::Placement;
use crate::controller::validate::member_template;
use crate::etcd::{Client, ConnectOptions};
use crate::metrics::Metrics;

use super::LocalError;
use super::manifest::Manifest;
use super::members::{LocalMembers, config_hash};
use super::ports::Allocator;
use super::store::{StateFolder, blocking, read_yaml, write_yaml};

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
        let record = {
            let (dir, state_dir, ports) = (dir.clone(), state_dir.to_path_buf(), ports.clone());
            let (ns, name) = (manifest.namespace.clone(), manifest.name.clone());
            blocking("choosing the cluster's ports", move || {
                dir.load_or_create_record(&state_dir, &ports, &ns, &name)
            })
            .await?
        };
        let mut members =
            LocalMembers::new(manifest.key(), manifest.name.clone(), dir, record, bin_dir);
        members.set_flags(member_template(&manifest.cluster.spec).flags);
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
        self.members
            .set_flags(member_template(&manifest.cluster.spec).flags);
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
            config_hash: config_hash(&member_template(&self.manifest.cluster.spec).flags),
            peer_url_template: self.members.record().peer_url_template(),
            replace_after_failures: crate::controller::plan::DEFAULT_REPLACE_AFTER_FAILURES,
            snapshots: Folders::Allowed {
                base: self.state_dir.clone(),
                default: backups,
            },
            restore_base: Some(self.state_dir.clone()),
            restore_stores: Ok(()),
        }
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn resolve(&self) -> Resolve<'_> {
        &same_url
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
        let opts = ConnectOptions::new()
            .with_dial_timeout(Duration::from_secs(1))
            .with_max_retries(u32::try_from(endpoints.len()).unwrap_or(1) * 2);
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

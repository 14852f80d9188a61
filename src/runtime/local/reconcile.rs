//! One cluster's reconcile pass: observe (processes and etcd), plan with the shared planner,
//! write the status when it changed, act on the one step.

use std::time::Duration;

use crate::api::EtcdClusterStatus;
use crate::controller::act::{Outcome, act};
use crate::controller::observe::{EtcdView, observe_etcd, same_url};
use crate::controller::plan::{Bootstrap, Desired, Observed, Step, Version, plan};
use crate::controller::status::{StatusInput, build_status, same_status};
use crate::etcd::{Client, ConnectOptions};

use super::LocalError;
use super::manifest::Manifest;
use super::members::{LocalMembers, config_hash};
use super::store::{ClusterDir, write_yaml};
use crate::controller::flags::option_flags;

/// How long each read of the observation may take.
pub const OBSERVE_TIMEOUT: Duration = Duration::from_millis(1500);

/// One cluster under reconciliation.
#[derive(Debug)]
pub struct ClusterLoop {
    manifest: Manifest,
    generation: i64,
    members: LocalMembers,
    client: Option<Client>,
    last_status: Option<EtcdClusterStatus>,
    last_message: String,
    last_step: Option<Step>,
    state_dir: std::path::PathBuf,
    /// Why the last restore attempt failed (kept in the status while the restore is retried).
    restore_error: Option<String>,
}

/// `path` as given, or taken from `base` when relative.
fn resolve(base: &std::path::Path, path: &str) -> std::path::PathBuf {
    let p = std::path::Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

impl ClusterLoop {
    /// Opens (or creates) the cluster's state and starts the members it already has.
    pub fn open(
        manifest: Manifest,
        state_dir: &std::path::Path,
        bin_dir: Option<std::path::PathBuf>,
    ) -> Result<Self, LocalError> {
        let dir = ClusterDir::new(state_dir, &manifest.namespace, &manifest.name);
        let record = dir.load_or_create_record(&manifest.namespace, &manifest.name)?;
        let mut members =
            LocalMembers::new(manifest.key(), manifest.name.clone(), dir, record, bin_dir);
        members.set_flags(option_flags(&manifest.cluster.spec.etcd));
        members.resume()?;
        // The status written before: what the operator did (last snapshot, defragmentations)
        // is remembered across restarts.
        let status_path = members.dir().status_path();
        let last_status = if status_path.exists() {
            match super::store::read_yaml::<EtcdClusterStatus>(&status_path) {
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
            last_message: String::new(),
            last_step: None,
            state_dir: state_dir.to_path_buf(),
            restore_error: None,
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
            .set_flags(option_flags(&manifest.cluster.spec.etcd));
        self.manifest = manifest;
    }

    fn desired(&self) -> Result<Desired, LocalError> {
        let spec = &self.manifest.cluster.spec;
        let version = spec
            .version
            .parse::<Version>()
            .map_err(|e| LocalError::Refused(e.to_string()))?;
        let flags = option_flags(&spec.etcd);
        let mut d = Desired::new(
            self.manifest.name.clone(),
            u32::try_from(spec.replicas).unwrap_or(0),
            version,
            config_hash(&flags),
            self.members.record().peer_url_template(),
        );
        d.paused = spec.paused;
        d.maintenance = crate::controller::policy::maintenance(spec);
        let backups = spec.backup.as_ref().map_or_else(
            || self.members.dir().root().join("backups"),
            |b| match &b.directory {
                Some(dir) => resolve(&self.state_dir, dir),
                None => self.members.dir().root().join("backups"),
            },
        );
        d.backup = crate::controller::policy::backup(spec, backups);
        if let Some(path) = crate::controller::policy::restore_path(spec) {
            d.bootstrap = Bootstrap::Restore {
                path: resolve(&self.state_dir, path),
            };
        }
        Ok(d)
    }

    async fn observe_etcd(&mut self) -> Result<Option<EtcdView>, LocalError> {
        let urls = self.members.client_urls()?;
        if urls.is_empty() {
            return Ok(None);
        }
        let client = match &self.client {
            Some(c) => {
                c.set_endpoints(&urls).map_err(LocalError::Etcd)?;
                c.clone()
            }
            None => {
                let opts = ConnectOptions::new()
                    .with_dial_timeout(Duration::from_secs(1))
                    .with_max_retries(u32::try_from(urls.len()).unwrap_or(1) * 2);
                let c = Client::connect(&urls, opts)
                    .await
                    .map_err(LocalError::Etcd)?;
                self.client = Some(c.clone());
                c
            }
        };
        Ok(observe_etcd(&client, OBSERVE_TIMEOUT, &same_url).await)
    }

    /// One pass; `true` when a step ran (the caller comes back sooner).
    pub async fn pass(&mut self) -> Result<bool, LocalError> {
        self.members.poll()?;
        let view = self.observe_etcd().await?;
        let desired = self.desired()?;
        let mut etcd = view.as_ref().map(EtcdView::membership);
        if let Some(m) = etcd.as_mut() {
            crate::controller::status::mark_defragmented(m, self.last_status.as_ref());
        }
        let observed = Observed {
            etcd,
            runtime: self.members.observe()?,
            intent: self.members.dir().read_intent()?,
            now: Some(std::time::SystemTime::now()),
            last_snapshot: crate::controller::status::last_snapshot_time(self.last_status.as_ref()),
        };
        let plan = plan(&desired, &observed);
        let now = crate::controller::status::now_rfc3339();
        let restoring = matches!(plan.next, Some(Step::RestoreCluster { .. }));
        if !restoring {
            self.restore_error = None;
        }
        let mut status = build_status(StatusInput {
            desired: &desired,
            plan: &plan,
            view: view.as_ref(),
            previous: self.last_status.as_ref(),
            generation: Some(self.generation),
            now: &now,
        });
        if let Some(why) = self.restore_error.as_deref().filter(|_| restoring) {
            crate::controller::status::mark_failed(&mut status, "RestoreFailed", why, &now);
        }
        if self
            .last_status
            .as_ref()
            .is_none_or(|old| !same_status(old, &status))
        {
            write_yaml(&self.members.dir().status_path(), &status)?;
            self.last_status = Some(status);
        }
        let Some(step) = plan.next.as_ref() else {
            if plan.status.message != self.last_message {
                tracing::info!(
                    "{}: {} — {}",
                    self.key(),
                    crate::controller::status::phase_name(plan.status.phase),
                    plan.status.message
                );
                self.last_message = plan.status.message.clone();
            }
            return Ok(false);
        };
        let repeat =
            self.last_message.starts_with("not yet: ") && self.last_step.as_ref() == Some(step);
        if !repeat {
            self.last_message.clear();
            let leader = view
                .as_ref()
                .and_then(|v| v.leader.and_then(|id| v.member(id)))
                .map_or_else(|| "none".to_owned(), |m| m.member.name.clone());
            tracing::info!(
                "{}: {} ({}; {} of {} voters ready, {} wanted; leader {leader})",
                self.key(),
                plan.status.message,
                crate::controller::status::phase_name(plan.status.phase),
                plan.status.ready,
                plan.status.voters,
                plan.status.desired
            );
        }
        self.last_step = Some(step.clone());
        let client = self.client.clone();
        match act(
            step,
            &desired,
            client.as_ref().filter(|_| view.is_some()),
            view.as_ref(),
            &mut self.members,
        )
        .await
        {
            Ok(Outcome::Done) => Ok(true),
            Ok(Outcome::Maintained(done)) => {
                tracing::info!("{}: {done}", self.key());
                if let Some(status) = self.last_status.as_mut() {
                    crate::controller::status::record_maintenance(status, &done, &now);
                    write_yaml(&self.members.dir().status_path(), status)?;
                }
                Ok(true)
            }
            Ok(Outcome::NotYet(why)) => {
                // etcd asks to wait (a member just joined, a learner catching up): say so once.
                let line = format!("not yet: {why}");
                if line != self.last_message {
                    tracing::info!("{}: {line}; retrying", self.key());
                    self.last_message = line;
                }
                Ok(false)
            }
            Err(e) => {
                match step {
                    Step::Snapshot { .. } => {
                        if let Some(status) = self.last_status.as_mut() {
                            crate::controller::status::record_backup_error(status, &e.to_string());
                            write_yaml(&self.members.dir().status_path(), status)?;
                        }
                    }
                    Step::RestoreCluster { .. } => {
                        let why = format!("{e}; nothing was started");
                        if self.restore_error.as_deref() != Some(why.as_str())
                            && let Some(status) = self.last_status.as_mut()
                        {
                            crate::controller::status::mark_failed(
                                status,
                                "RestoreFailed",
                                &why,
                                &now,
                            );
                            write_yaml(&self.members.dir().status_path(), status)?;
                        }
                        self.restore_error = Some(why);
                    }
                    _ => {}
                }
                let line = format!("not yet: {e}");
                if line != self.last_message {
                    tracing::warn!("{}: {e}; retrying on the next pass", self.key());
                    self.last_message = line;
                }
                Ok(false)
            }
        }
    }

    /// Stops the members gracefully, keeping their data.
    pub async fn shutdown(&mut self) {
        self.members.stop_all().await;
    }
}

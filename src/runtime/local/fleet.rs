//! The clusters of one local operator, each supervised by a task of its own.
//!
//! A cluster's task runs its passes one after the other (one step in flight per cluster, as the
//! planner expects) and never waits for another cluster: a 300 s defragmentation or snapshot of
//! one cluster leaves every other cluster's members restarted, scaled and upgraded meanwhile.
//! The driver ([`super::run`]) reads the manifests every second and hands each task its new
//! manifest through a [`watch`] channel: an idle task takes it at once, a busy one after its step.
//! Stopping a task (the cluster left the manifests, or the operator stops) lets the pass in
//! flight finish within [`STOP_GRACE`], then cancels it at its next await point, which every step
//! tolerates as it tolerates a crash (its intent is recorded first), and stops the cluster's
//! members gracefully, keeping their data.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::cluster::LocalCluster;
use super::manifest::Manifest;
use super::ports::Allocator;
use super::{AFTER_STEP, LocalError, RESYNC, not_yet_pause};
use crate::controller::pass::{PassError, Passed, pass};
use crate::metrics::Metrics;

/// What opening a cluster needs, the same for every cluster.
#[derive(Debug, Clone)]
pub struct OpenWith {
    /// The state directory.
    pub state_dir: PathBuf,
    /// The folder of etcd binaries per version, if not PATH.
    pub bin_dir: Option<PathBuf>,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    /// Chooses port blocks.
    pub ports: Allocator,
}

/// A running cluster task.
#[derive(Debug)]
struct Handle {
    manifest: watch::Sender<Manifest>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// What [`Fleet::apply`] does with the clusters it has and the manifests it is given.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Keys no longer in the manifests: their tasks stop.
    pub gone: Vec<String>,
    /// Keys with a task: they get the manifest.
    pub kept: Vec<String>,
    /// Keys without a task: they are opened.
    pub new: Vec<String>,
}

/// Sorts the manifests' keys against the running ones (pure).
pub fn changes<'a>(running: impl IntoIterator<Item = &'a String>, wanted: &[String]) -> Changes {
    let running: Vec<&String> = running.into_iter().collect();
    Changes {
        gone: running
            .iter()
            .filter(|k| !wanted.contains(k))
            .map(|k| (*k).clone())
            .collect(),
        kept: wanted
            .iter()
            .filter(|k| running.contains(k))
            .cloned()
            .collect(),
        new: wanted
            .iter()
            .filter(|k| !running.contains(k))
            .cloned()
            .collect(),
    }
}

/// The cluster tasks. Tasks are spawned with [`tokio::task::spawn_local`]: the fleet must be
/// used inside a [`tokio::task::LocalSet`] (see [`super::run`] for why).
#[derive(Debug)]
pub struct Fleet {
    with: OpenWith,
    running: BTreeMap<String, Handle>,
    /// Tasks told to stop that may not have finished (their members stopping).
    stopping: BTreeMap<String, JoinHandle<()>>,
}

impl Fleet {
    /// No cluster yet.
    pub fn new(with: OpenWith) -> Self {
        Self {
            with,
            running: BTreeMap::new(),
            stopping: BTreeMap::new(),
        }
    }

    /// Opens and starts a task for each new cluster, hands the others their manifest, and stops
    /// the tasks of clusters no longer in `manifests` (keeping their data). A cluster that cannot
    /// be opened is reported in the error after the others were dealt with.
    pub async fn apply(&mut self, manifests: Vec<Manifest>) -> Result<(), LocalError> {
        let keys: Vec<String> = manifests.iter().map(Manifest::key).collect();
        let plan = changes(self.running.keys(), &keys);
        for k in plan.gone {
            if let Some(h) = self.running.remove(&k) {
                tracing::info!("{k}: no longer in the manifests; stopping its members (data kept)");
                let _ = h.stop.send(true);
                self.stopping.insert(k, h.task);
            }
        }
        self.stopping.retain(|_, t| !t.is_finished());
        let mut first_error = None;
        for m in manifests {
            let key = m.key();
            if let Some(h) = self.running.get(&key) {
                h.manifest.send_replace(m);
                continue;
            }
            // The same cluster removed and added back: its old task must be done with its
            // members first.
            if let Some(old) = self.stopping.remove(&key) {
                join(&key, old).await;
            }
            tracing::info!(
                "{key}: reconciling from {} ({} members of etcd {})",
                m.file.display(),
                m.cluster.spec.replicas,
                m.cluster.spec.version
            );
            let w = &self.with;
            match LocalCluster::open(
                m.clone(),
                &w.state_dir,
                w.bin_dir.clone(),
                w.metrics.clone(),
                &w.ports,
            )
            .await
            {
                Ok(cluster) => {
                    let (manifest, manifest_rx) = watch::channel(m);
                    let (stop, stop_rx) = watch::channel(false);
                    let task = tokio::task::spawn_local(supervise(cluster, manifest_rx, stop_rx));
                    self.running.insert(
                        key,
                        Handle {
                            manifest,
                            stop,
                            task,
                        },
                    );
                }
                Err(e) => {
                    tracing::error!("{key}: cannot open the cluster: {e}");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Stops every task (each stops its members gracefully, the clusters at the same time) and
    /// waits for them.
    pub async fn shutdown(&mut self) {
        for h in self.running.values() {
            let _ = h.stop.send(true);
        }
        let tasks: Vec<(String, JoinHandle<()>)> = std::mem::take(&mut self.running)
            .into_iter()
            .map(|(k, h)| (k, h.task))
            .chain(std::mem::take(&mut self.stopping))
            .collect();
        for (k, t) in tasks {
            join(&k, t).await;
        }
    }
}

async fn join(key: &str, task: JoinHandle<()>) {
    if let Err(e) = task.await {
        tracing::error!("{key}: the cluster's task failed: {e}");
    }
}

/// How long a stopping task lets its pass in flight finish before cancelling it.
pub const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether the stop signal was given (or its sender is gone).
fn stopped(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// One cluster's passes until told to stop; then its members are stopped gracefully.
async fn supervise(
    mut cluster: LocalCluster,
    mut manifest: watch::Receiver<Manifest>,
    mut stop: watch::Receiver<bool>,
) {
    let mut not_yet_streak = 0u32;
    loop {
        if stopped(&stop) {
            break;
        }
        // One that came during the pass.
        if manifest.has_changed().unwrap_or(false) {
            let m = manifest.borrow_and_update().clone();
            cluster.update(m);
        }
        let passed = {
            let run = pass(&mut cluster);
            tokio::pin!(run);
            tokio::select! {
                biased;
                r = &mut run => r,
                _ = stop.changed() => {
                    // The step in flight may finish (a snapshot and its retention, the runtime
                    // half of a membership change) within STOP_GRACE; past it, it is cancelled.
                    let _ = tokio::time::timeout(STOP_GRACE, &mut run).await;
                    break;
                }
            }
        };
        not_yet_streak = match passed {
            Ok(Passed::NotYet) => not_yet_streak.saturating_add(1),
            _ => 0,
        };
        let pause = match passed {
            Ok(Passed::Stepped) => AFTER_STEP,
            Ok(Passed::NotYet) => not_yet_pause(not_yet_streak),
            Ok(Passed::Idle) => RESYNC,
            // Reported by the pass (log line, Event, status); retried on the next one.
            Err(PassError::Act(_)) => RESYNC,
            Err(e) => {
                tracing::warn!("{}: {e}", cluster.key());
                RESYNC
            }
        };
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            // A new manifest passes at once; a closed channel means the driver is gone.
            changed = manifest.changed() => match changed {
                Ok(()) => {
                    let m = manifest.borrow_and_update().clone();
                    cluster.update(m);
                }
                Err(_) => break,
            },
            _ = tokio::time::sleep(pause) => {}
        }
    }
    cluster.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_sort_keys_into_gone_kept_and_new() {
        let running = ["a/x".to_owned(), "a/y".to_owned()];
        let wanted = ["a/y".to_owned(), "b/z".to_owned()];
        assert_eq!(
            changes(&running, &wanted),
            Changes {
                gone: vec!["a/x".into()],
                kept: vec!["a/y".into()],
                new: vec!["b/z".into()],
            }
        );
        assert_eq!(changes(&running, &[]).gone.len(), 2);
        assert_eq!(changes(&[], &wanted).new.len(), 2);
    }
}

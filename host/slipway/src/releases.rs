//! The release pipeline: a persistent queue in the store, worked by a bounded
//! number of tasks, with progress published as events.
//!
//! A release is queued when created; a worker claims it (`packaging`), runs the
//! packaging stage and records the outcome. Work in flight when the server
//! stopped is found at start, marked `interrupted` and queued again, so it is
//! neither lost nor run twice.

use std::sync::Arc;

use semver::Version;
use serde::Serialize;
use slipway_runtime::Kind;
use tokio::sync::{Notify, Semaphore, broadcast};

use crate::packaging::Packager;
use crate::packaging::canvas::SubflowRef;
use crate::server::AppState;
use crate::store::{Release, Stage, Status, StoreError, now_ms};

/// A change of a release, as the event stream sends it.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseEvent {
    /// The release.
    pub id: u64,
    /// Its organisation (not sent to clients).
    #[serde(skip)]
    pub organisation: u64,
    /// Its status now.
    pub status: Status,
    /// What happened.
    pub message: String,
}

/// The queue's wake-up signal and the event channel.
pub struct ReleaseQueue {
    wake: Notify,
    events: broadcast::Sender<ReleaseEvent>,
    concurrency: usize,
}

impl ReleaseQueue {
    /// A queue running at most `concurrency` releases at once.
    pub fn new(concurrency: usize) -> ReleaseQueue {
        ReleaseQueue {
            wake: Notify::new(),
            events: broadcast::channel(1024).0,
            concurrency: concurrency.max(1),
        }
    }

    /// Tells the workers there is new work.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ReleaseEvent> {
        self.events.subscribe()
    }

    /// Stores `release` and publishes the change.
    pub fn record(
        &self,
        state: &AppState,
        release: &Release,
        message: &str,
    ) -> Result<(), StoreError> {
        state.store.put_release(release)?;
        let _ = self.events.send(ReleaseEvent {
            id: release.id,
            organisation: release.organisation,
            status: release.status,
            message: message.to_string(),
        });
        Ok(())
    }
}

/// The name a release's pins carry, as `used_by` shows it.
fn holder(id: u64) -> String {
    format!("release {id}")
}

/// Each plugin version a release's flow uses, as the catalog names it.
fn plugins_of(release: &Release) -> impl Iterator<Item = (&str, Version)> {
    release
        .flow
        .iter()
        .flat_map(|f| &f.plugins)
        .filter_map(|p| Some((p.name.as_str(), Version::parse(&p.version).ok()?)))
}

/// Pins the plugin versions a packaged release uses, in its organisation's
/// catalog, so none is deleted under it.
fn pin(state: &AppState, release: &Release) {
    let own = state.plugins.uploaded(release.organisation);
    for (name, version) in plugins_of(release) {
        own.pin(Kind::NodeType, name, &version, &holder(release.id));
    }
}

/// Drops a release's pins (it was deleted).
pub fn unpin(state: &AppState, release: &Release) {
    let own = state.plugins.uploaded(release.organisation);
    for (name, version) in plugins_of(release) {
        own.unpin(Kind::NodeType, name, &version, &holder(release.id));
    }
}

/// A plugin the flow names that is no longer loaded with the same digest.
fn missing_plugin(state: &AppState, release: &Release) -> Option<String> {
    let plugins = state.plugins.of(release.organisation);
    release.flow.iter().flat_map(|f| &f.plugins).find_map(|p| {
        let version = Version::parse(&p.version).ok()?;
        let loaded = [plugins.own(), state.plugins.builtins()]
            .into_iter()
            .filter_map(|c| c.get(Kind::NodeType, &p.name, &version))
            .any(|loaded| loaded.sha256() == p.sha256);
        (!loaded).then(|| format!("{}@{}", p.name, p.version))
    })
}

/// Pins the plugins of packaged releases and requeues what a stop
/// interrupted; call once, after the plugins load and before [`run`].
pub fn recover(state: &AppState) -> Result<usize, StoreError> {
    let mut requeued = 0;
    for mut release in state.store.releases()? {
        if release.status == Status::Packaged {
            pin(state, &release);
        }
        if release.status == Status::Packaging {
            if let Some(stage) = release.stages.last_mut()
                && stage.ended_ms.is_none()
            {
                stage.ended_ms = Some(now_ms());
            }
            release.status = Status::Interrupted;
            release.note("interrupted by a server stop; queued again");
            state.store.put_release(&release)?;
            requeued += 1;
        }
    }
    Ok(requeued)
}

/// Works the queue until the process ends.
pub async fn run(state: Arc<AppState>) {
    let permits = Arc::new(Semaphore::new(state.releases.concurrency));
    loop {
        let queued = match state.store.queued_releases() {
            Ok(queued) => queued,
            Err(err) => {
                tracing::error!(error = %err, "cannot read the release queue");
                state.releases.wake.notified().await;
                continue;
            }
        };
        for mut release in queued {
            let permit = permits.clone().acquire_owned().await.expect("never closed");
            // Claimed here, by the one dispatcher: no release runs twice.
            release.status = Status::Packaging;
            release.stages.push(Stage {
                stage: "packaging".into(),
                started_ms: now_ms(),
                ended_ms: None,
            });
            release.note("packaging");
            match state.releases.record(&state, &release, "packaging") {
                Ok(()) => {}
                // Deleted since the queue was read: nothing to do.
                Err(StoreError::ReleaseDeleted(_)) => continue,
                Err(err) => {
                    tracing::error!(error = %err, release = release.id, "cannot claim a release");
                    continue;
                }
            }
            let state = state.clone();
            tokio::spawn(async move {
                package(&state, release).await;
                drop(permit);
                state.releases.wake();
            });
        }
        state.releases.wake.notified().await;
    }
}

/// Runs the packaging stage of one claimed release and records the outcome.
async fn package(state: &AppState, mut release: Release) {
    let org = release.organisation;
    let root = SubflowRef {
        integration: release.integration.clone(),
        version: release.version,
    };
    let canvas = state
        .store
        .integration(org, &release.integration)
        .ok()
        .and_then(|i| state.store.canvas(&i, release.version).ok().flatten());
    let outcome = match canvas {
        None => Err(format!("integration {root} no longer exists")),
        Some(canvas) => {
            let plugins = state.plugins.of(org);
            let canvases = state.store.canvases_of(org);
            Packager::new(&plugins, &canvases)
                .package(&root, &canvas)
                .await
                .map_err(|diagnostics| {
                    let message = format!("the canvas has {} problem(s)", diagnostics.len());
                    release.diagnostics = diagnostics;
                    message
                })
        }
    };
    if let Some(stage) = release.stages.last_mut() {
        stage.ended_ms = Some(now_ms());
    }
    let outcome = outcome.and_then(|flow| {
        release.flow = Some(flow);
        // Pinned before it is recorded; a plugin deleted in between fails it.
        pin(state, &release);
        match missing_plugin(state, &release) {
            None => Ok(()),
            Some(plugin) => {
                unpin(state, &release);
                release.flow = None;
                Err(format!(
                    "plugin {plugin} was deleted or replaced while packaging"
                ))
            }
        }
    });
    let message = match outcome {
        Ok(()) => {
            let flow = release.flow.as_ref().expect("set on success");
            let message = format!(
                "packaged: {} nodes, {} plugins, {} subflows; compiling into an image is not available yet",
                flow.nodes.len(),
                flow.plugins.len(),
                flow.subflows.len()
            );
            release.status = Status::Packaged;
            message
        }
        Err(error) => {
            release.status = Status::Failed;
            release.error = Some(error.clone());
            format!("packaging failed: {error}")
        }
    };
    release.note(message.clone());
    match state.releases.record(state, &release, &message) {
        Ok(()) => {}
        // Deleted while it was packaged: it stays deleted, and pins nothing.
        Err(StoreError::ReleaseDeleted(_)) => unpin(state, &release),
        Err(err) => {
            tracing::error!(error = %err, release = release.id, "cannot record a release's outcome");
        }
    }
}

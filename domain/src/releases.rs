//! The release pipeline, as jobs of the [runner](crate::jobs), with progress
//! published as events.
//!
//! A release is queued with the job that builds it; the runner gives the job
//! a slot and it takes the release through `packaging`, `compiling` and
//! `distributing` to `ready`, or to `failed` at the first stage that fails.
//! A build in flight when the server stopped is found at start, marked
//! `interrupted` and queued again, so it is neither lost nor run twice.
//! Deleting a ready release deletes its image from the registry (`deleting`,
//! then `deleted`) in a job of its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use semver::Version;
use serde::Serialize;
use slipway_runtime::Kind;
use tokio::sync::broadcast;

use slipway_runtime::kinds::Image;

use crate::canvases::OrganisationCanvases;
use crate::image::Compiler;
use crate::image::user_code::UserCodeCompiler;
use crate::image::{self, ImageMeta};
use crate::images::{self, Images};
use crate::jobs::{Advance, Jobs, Step, Work, Works};
use crate::plugins::Plugins;
use crate::registry::{Deleted, Destination, Registries, Registry, RegistryFailure};
use slipway_flow::FlowDocument;
use slipway_flow::canvas::SubflowRef;
use slipway_flow::package::Packager;
use slipway_store::{
    Diagnostic, IntegrationError, Job, JobKind, JobStatus, LayerInfo, NewRelease, Release,
    ReleaseImage, Stage, Status, Store, StoreError, now_ms,
};

/// Longest release name.
pub const MAX_NAME: usize = 100;
/// Longest release description, in characters.
pub const MAX_DESCRIPTION: usize = 1_000;

/// Why a release was not created.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// A field of the request is wrong: `path` points at it.
    #[error("{message}")]
    Invalid {
        /// JSON pointer to the field.
        path: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(path: &'static str, message: String) -> Refused {
    Refused::Invalid { path, message }
}

/// What is wrong with `name` as a release name, if anything: 1 to
/// [`MAX_NAME`] ASCII letters, digits and `-`, starting with a letter (so a
/// name never reads as an id) and not ending with `-`.
pub fn name_problem(name: &str) -> Option<String> {
    let rule = "a release name is ASCII letters, digits and `-`, starts with a letter and does not end with `-`";
    if name.is_empty() || name.len() > MAX_NAME {
        return Some(format!("a release name has 1 to {MAX_NAME} characters"));
    }
    let letters_digits_dashes = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    let starts = name.starts_with(|c: char| c.is_ascii_alphabetic());
    (!letters_digits_dashes || !starts || name.ends_with('-')).then(|| rule.to_string())
}

impl Releases {
    /// Queues a new release of an integration version of `organisation`, after
    /// checking the version exists and the name is well-formed and free.
    pub fn create(&self, organisation: u64, new: NewRelease) -> Result<Release, Refused> {
        if let Some(problem) = name_problem(&new.name) {
            return Err(invalid("/name", problem));
        }
        if new
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION)
        {
            return Err(invalid(
                "/description",
                format!("a description has at most {MAX_DESCRIPTION} characters"),
            ));
        }
        let integration = match self.store.integration(organisation, &new.integration) {
            Ok(integration) => integration,
            Err(IntegrationError::Store(err)) => return Err(err.into()),
            Err(err) => return Err(invalid("/integration", err.to_string())),
        };
        if new.version == 0 || new.version > integration.latest_version {
            return Err(invalid(
                "/version",
                format!(
                    "integration `{}` has no version {}",
                    new.integration, new.version
                ),
            ));
        }
        let release = match self.store.create_release(organisation, new) {
            Err(StoreError::ReleaseNameTaken(name)) => {
                return Err(invalid(
                    "/name",
                    format!("the organisation has a release named `{name}` already"),
                ));
            }
            created => created?,
        };
        self.jobs.wake();
        Ok(release)
    }

    /// The id `reference` stands for: itself when it is an id (whose
    /// organisation the caller checks), else the id of the organisation's
    /// release of that name. Reads no release.
    pub fn id_of(&self, organisation: u64, reference: &str) -> Result<Option<u64>, StoreError> {
        match reference.parse::<u64>() {
            Ok(id) => Ok(Some(id)),
            Err(_) if name_problem(reference).is_none() => {
                self.store.release_named(organisation, reference)
            }
            Err(_) => Ok(None),
        }
    }

    /// The organisation's release `reference`, an id or a name.
    pub fn find(&self, organisation: u64, reference: &str) -> Result<Option<Release>, StoreError> {
        let Some(id) = self.id_of(organisation, reference)? else {
            return Ok(None);
        };
        Ok(self
            .store
            .release(id)?
            .filter(|release| release.organisation == organisation))
    }
}

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

/// Releases: created, found, built and pushed as jobs, and deleted with
/// their images.
pub struct Releases {
    store: Store,
    plugins: Arc<Plugins>,
    registries: Arc<Registries>,
    compiler: Compiler,
    user_code: UserCodeCompiler,
    jobs: Arc<Jobs>,
    /// Each organisation's event channel, while it has streams open.
    events: Mutex<HashMap<u64, broadcast::Sender<ReleaseEvent>>>,
}

impl Releases {
    /// Releases kept in `store`, built and deleted by `jobs`.
    pub fn new(
        store: Store,
        plugins: Arc<Plugins>,
        registries: Arc<Registries>,
        compiler: Compiler,
        user_code: UserCodeCompiler,
        jobs: Arc<Jobs>,
    ) -> Releases {
        Releases {
            store,
            plugins,
            registries,
            compiler,
            user_code,
            jobs,
            events: Mutex::default(),
        }
    }

    /// The work of the release jobs, for the runner.
    pub fn works(self: &Arc<Self>) -> Works {
        let work: Arc<dyn Work> = self.clone();
        Works::from([
            (JobKind::BuildRelease, work.clone()),
            (JobKind::DeleteRelease, work),
        ])
    }

    /// Changes of `organisation`'s releases from now on, unless it has
    /// [`MAX_ORGANISATION_SUBSCRIBERS`] streams open or the server
    /// [`MAX_SUBSCRIBERS`]. Each organisation has a channel of its own, so
    /// another's busy releases never make its streams fall behind.
    pub fn subscribe(
        &self,
        organisation: u64,
    ) -> Result<broadcast::Receiver<ReleaseEvent>, TooManyStreams> {
        let mut events = self.events.lock().expect("events lock");
        events.retain(|_, sender| sender.receiver_count() > 0);
        let open: usize = events.values().map(|s| s.receiver_count()).sum();
        let own = events.get(&organisation).map_or(0, |s| s.receiver_count());
        if own >= MAX_ORGANISATION_SUBSCRIBERS {
            return Err(TooManyStreams::Organisation);
        }
        if open >= MAX_SUBSCRIBERS {
            return Err(TooManyStreams::Server);
        }
        Ok(events
            .entry(organisation)
            .or_insert_with(|| broadcast::channel(EVENT_BACKLOG).0)
            .subscribe())
    }

    /// Stores `release` and publishes the change.
    pub fn save(&self, release: &Release, message: &str) -> Result<(), StoreError> {
        self.store.put_release(release)?;
        self.publish(release, message);
        Ok(())
    }

    /// Publishes a change of `release` already stored.
    fn publish(&self, release: &Release, message: &str) {
        let events = self.events.lock().expect("events lock");
        if let Some(sender) = events.get(&release.organisation) {
            let _ = sender.send(ReleaseEvent {
                id: release.id,
                organisation: release.organisation,
                status: release.status,
                message: message.to_string(),
            });
        }
    }
}

/// Most event streams open at once on a server.
pub const MAX_SUBSCRIBERS: usize = 4096;
/// Most event streams one organisation may have open at once.
pub const MAX_ORGANISATION_SUBSCRIBERS: usize = 256;
/// Changes an organisation's channel holds for a stream that falls behind;
/// past them the stream reads the release again.
const EVENT_BACKLOG: usize = 1024;

/// Why no event stream was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TooManyStreams {
    /// The organisation has [`MAX_ORGANISATION_SUBSCRIBERS`] open.
    #[error(
        "the organisation has {MAX_ORGANISATION_SUBSCRIBERS} event streams open; close one or try again later"
    )]
    Organisation,
    /// The server has [`MAX_SUBSCRIBERS`] open.
    #[error("too many event streams are open on this server; try again later")]
    Server,
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

impl Releases {
    /// Pins the plugin versions a packaged release uses, in its organisation's
    /// catalog, so none is deleted under it.
    fn pin(&self, release: &Release) {
        let own = self.plugins.uploaded(release.organisation);
        for (name, version) in plugins_of(release) {
            own.pin(Kind::NodeType, name, &version, &holder(release.id));
        }
    }

    /// Drops a release's pins (it was deleted).
    fn unpin(&self, release: &Release) {
        let own = self.plugins.uploaded(release.organisation);
        for (name, version) in plugins_of(release) {
            own.unpin(Kind::NodeType, name, &version, &holder(release.id));
        }
    }

    /// A plugin the flow names that is no longer loaded with the same digest.
    fn missing_plugin(&self, release: &Release) -> Option<String> {
        let plugins = self.plugins.of(release.organisation);
        release.flow.iter().flat_map(|f| &f.plugins).find_map(|p| {
            let version = Version::parse(&p.version).ok()?;
            let loaded = [plugins.own(), self.plugins.builtins()]
                .into_iter()
                .filter_map(|c| c.get(Kind::NodeType, &p.name, &version))
                .any(|loaded| loaded.sha256() == p.sha256);
            (!loaded).then(|| format!("{}@{}", p.name, p.version))
        })
    }

    /// Pins the plugins of releases that have a flow and indexes the blobs
    /// of pushed images; call once, after the plugins load and before the
    /// jobs run.
    pub fn recover(&self) -> Result<(), StoreError> {
        for release in self.store.releases()? {
            if release.flow.is_some() && !release.status.is_deleted() {
                self.pin(&release);
            }
            if let Some(image) = &release.image
                && release.status == Status::Ready
            {
                for layer in &image.layers {
                    self.registries.record_blob(
                        release.organisation,
                        &image.registry,
                        &image.repository,
                        &layer.digest,
                    );
                }
            }
        }
        Ok(())
    }
}

impl Work for Releases {
    fn advance<'a>(&'a self, job: &'a Job) -> Advance<'a> {
        Box::pin(async move {
            let release = match self.store.release(job.subject) {
                Ok(Some(release)) => release,
                Ok(None) => return Step::Stopped(format!("release {} is gone", job.subject)),
                Err(err) => {
                    return Step::Failed(format!("cannot read release {}: {err}", job.subject));
                }
            };
            match job.kind {
                // Running too when the last start cut it off before its
                // release showed the interruption.
                JobKind::BuildRelease
                    if release.status.is_waiting() || release.status.is_running() =>
                {
                    self.build(release).await
                }
                JobKind::DeleteRelease if release.status == Status::Deleting => {
                    Step::Done(self.delete_image(release).await)
                }
                _ => Step::Stopped(format!(
                    "release {} is {}: nothing to do",
                    release.id,
                    release.status.as_str()
                )),
            }
        })
    }

    /// What the runner did to a build shows on its release: interrupted
    /// (queued again, or paused), failed, or stopped; a deletion given up or
    /// stopped leaves the image.
    fn changed(&self, job: &Job) {
        let Ok(Some(mut release)) = self.store.release(job.subject) else {
            return;
        };
        let why = job.error.clone().unwrap_or_else(|| job.message.clone());
        match (job.kind, job.status) {
            (JobKind::BuildRelease, status)
                if !release.status.is_final() && !release.status.is_deleted() =>
            {
                if let Some(stage) = release.stages.last_mut()
                    && stage.ended_ms.is_none()
                {
                    stage.ended_ms = Some(now_ms());
                }
                release.interruptions = job.interruptions;
                match status {
                    JobStatus::Interrupted => {
                        release.status = Status::Interrupted;
                        release.note("interrupted by a server stop; queued again");
                    }
                    JobStatus::Paused => {
                        release.status = Status::Interrupted;
                        release.note(job.message.clone());
                    }
                    JobStatus::Failed | JobStatus::Stopped => {
                        release.status = Status::Failed;
                        release.note(format!("failed: {why}"));
                        release.error = Some(why);
                    }
                    _ => return,
                }
            }
            (JobKind::DeleteRelease, JobStatus::Failed | JobStatus::Stopped)
                if release.status == Status::Deleting =>
            {
                release.status = Status::Deleted;
                release.note(format!("deleted; the image stays in the registry: {why}"));
                self.unpin(&release);
            }
            _ => return,
        }
        let message = release
            .log
            .last()
            .map(|l| l.message.clone())
            .unwrap_or_default();
        if let Err(err) = self.save(&release, &message) {
            tracing::error!(error = %err, release = release.id, "cannot record a job's change");
        }
    }
}

/// Why work on a release stops before its end.
enum Stopped {
    /// A user deleted it.
    Deleted,
    /// The store refused the write (logged).
    Unrecorded,
}

impl Releases {
    /// Ends the current stage, starts `stage` with `status`, and records it.
    fn enter(&self, release: &mut Release, status: Status, stage: &str) -> Result<(), Stopped> {
        let now = now_ms();
        if let Some(last) = release.stages.last_mut()
            && last.ended_ms.is_none()
        {
            last.ended_ms = Some(now);
        }
        release.status = status;
        release.stages.push(Stage {
            stage: stage.into(),
            started_ms: now,
            ended_ms: None,
        });
        release.note(stage);
        self.record(release, stage)
    }

    /// Records `release`; a deleted one stays deleted and pins nothing.
    fn record(&self, release: &Release, message: &str) -> Result<(), Stopped> {
        match self.save(release, message) {
            Ok(()) => Ok(()),
            Err(StoreError::ReleaseDeleted(_)) => {
                self.unpin(release);
                Err(Stopped::Deleted)
            }
            Err(err) => {
                tracing::error!(error = %err, release = release.id, "cannot record a release");
                Err(Stopped::Unrecorded)
            }
        }
    }

    /// Takes a queued release through every stage and records the outcome,
    /// which the build job ends with.
    async fn build(&self, mut release: Release) -> Step {
        // The registry as it is now: a later change applies to later releases.
        let registry = self.registries.destination(release.organisation);
        match self.enter(&mut release, Status::Packaging, "packaging") {
            Ok(()) => {}
            Err(Stopped::Deleted) => return Step::Stopped("the release was deleted".into()),
            Err(Stopped::Unrecorded) => {
                return Step::Unrecorded("the store refused the release's packaging".into());
            }
        }
        let outcome = async {
            let flow = self.package(&mut release).await?;
            let registry = registry.map_err(|e| format!("cannot distribute: {e}"))?;
            self.enter(&mut release, Status::Compiling, "compiling")?;
            let image = self.compile(&mut release, &flow).await?;
            release.note(format!(
                "image {} built: {} layers, {} bytes",
                image.artifact.manifest.digest,
                image.layers.len(),
                image.layers.iter().map(|l| l.blob.len()).sum::<usize>()
            ));
            self.enter(&mut release, Status::Distributing, "distributing")?;
            match &registry {
                Destination::Registry(registry) => {
                    self.distribute(&mut release, registry, &image).await
                }
                Destination::Images(images) => self.keep(&mut release, images, &image).await,
            }
        }
        .await;
        if let Some(stage) = release.stages.last_mut() {
            stage.ended_ms = Some(now_ms());
        }
        let (message, step) = match outcome {
            Ok(message) => {
                release.status = Status::Ready;
                (message.clone(), Step::Done(message))
            }
            Err(StageError::Stopped(Stopped::Deleted)) => {
                return Step::Stopped("the release was deleted".into());
            }
            Err(StageError::Stopped(Stopped::Unrecorded)) => {
                return Step::Unrecorded("the store refused a stage of the release".into());
            }
            Err(StageError::Failed(error)) => {
                release.status = Status::Failed;
                release.error = Some(error.clone());
                (format!("failed: {error}"), Step::Failed(error))
            }
        };
        release.note(message.clone());
        match self.record(&release, &message) {
            Ok(()) => step,
            Err(Stopped::Deleted) => {
                // Deleted while it was pushed: its image goes too.
                if release.image.is_some() {
                    self.delete_image(release).await;
                }
                Step::Stopped("the release was deleted".into())
            }
            Err(Stopped::Unrecorded) => {
                Step::Unrecorded("the store refused the release's outcome".into())
            }
        }
    }
}

/// Why a release's stages ended before `ready`.
enum StageError {
    /// The release fails, for this reason (what its user reads).
    Failed(String),
    /// The work stopped with nothing to record: the release was deleted, or
    /// the store refused a write (logged).
    Stopped(Stopped),
}

impl From<String> for StageError {
    fn from(reason: String) -> StageError {
        StageError::Failed(reason)
    }
}

impl From<RegistryFailure> for StageError {
    fn from(failure: RegistryFailure) -> StageError {
        StageError::Failed(failure.to_string())
    }
}

impl From<Stopped> for StageError {
    fn from(stopped: Stopped) -> StageError {
        StageError::Stopped(stopped)
    }
}

impl Releases {
    /// The packaging stage: the flow document, pinned.
    async fn package(&self, release: &mut Release) -> Result<FlowDocument, StageError> {
        let org = release.organisation;
        let root = SubflowRef {
            integration: release.integration.clone(),
            version: release.version,
        };
        let unreadable = |e: StoreError| format!("cannot read integration {root}: {e}");
        let integration = match self.store.integration(org, &release.integration) {
            Ok(integration) => integration,
            Err(IntegrationError::Store(e)) => return Err(unreadable(e).into()),
            Err(_) => return Err(format!("integration {root} no longer exists").into()),
        };
        let canvas = self
            .store
            .canvas(&integration, release.version)
            .map_err(unreadable)?
            .ok_or_else(|| format!("integration {root} no longer exists"))?;
        let plugins = self.plugins.of(org);
        let canvases = OrganisationCanvases::new(&self.store, org);
        let flow = Packager::new(&plugins, &canvases)
            .package(&root, &canvas)
            .await
            .map_err(|diagnostics| {
                let message = format!("the canvas has {} problem(s)", diagnostics.len());
                release.diagnostics = diagnostics
                    .into_iter()
                    .map(|d| Diagnostic {
                        path: d.path,
                        message: d.message,
                    })
                    .collect();
                message
            })?;
        release.flow = Some(flow.clone());
        // Pinned before it is recorded; a plugin deleted in between fails it.
        self.pin(release);
        if let Some(plugin) = self.missing_plugin(release) {
            self.unpin(release);
            release.flow = None;
            return Err(format!("plugin {plugin} was deleted or replaced while packaging").into());
        }
        release.note(format!(
            "packaged: {} nodes, {} plugins, {} subflows",
            flow.nodes.len(),
            flow.plugins.len(),
            flow.subflows.len()
        ));
        Ok(flow)
    }

    /// The compiling stage: the image, built in-process.
    async fn compile(
        &self,
        release: &mut Release,
        flow: &FlowDocument,
    ) -> Result<image::Image, StageError> {
        // User code becomes components of its own in the image's flow; the
        // release keeps the packaged flow, which names `rust-code`.
        let mut flow = flow.clone();
        let compiled = self
            .user_code
            .compile_flow(&mut flow)
            .await
            .map_err(|e| e.to_string())?;
        for code in &compiled {
            let how = if code.built {
                format!("built in {:.1}s", code.elapsed.as_secs_f64())
            } else {
                "unchanged since an earlier build".into()
            };
            release.note(format!(
                "node `{}`: Rust source compiled to {}@{} ({how})",
                code.node, code.plugin.name, code.plugin.version
            ));
        }
        let user_code = image::user_code::by_sha(&compiled);
        let organisation = self
            .store
            .organisation(release.organisation)
            .ok()
            .flatten()
            .map_or_else(|| release.organisation.to_string(), |o| o.name);
        let meta = ImageMeta {
            organisation,
            integration: release.integration.clone(),
            version: release.version,
        };
        self.compiler
            .compile(
                &flow,
                |p| {
                    user_code
                        .get(&p.sha256)
                        .cloned()
                        .or_else(|| self.plugins.component(&self.store, &p.sha256))
                },
                &meta,
            )
            .await
            .map_err(|e| e.to_string().into())
    }

    /// The distributing stage: the image pushed; returns the closing message.
    async fn distribute(
        &self,
        release: &mut Release,
        registry: &Registry,
        built: &image::Image,
    ) -> Result<String, StageError> {
        let tag = format!("v{}", release.version);
        let target = registry.image(&release.integration, &tag).await?;
        self.registries.check_reachable(&target.registry)?;
        release.note(format!(
            "pushing to {} with {}",
            target.reference(),
            registry.adapter()
        ));
        let (digest, push) = self
            .registries
            .push(registry, &target, &built.artifact)
            .await?;
        let message = format!(
            "ready: {}@{digest} ({} uploaded, {} mounted, {} already there; {} bytes sent)",
            target.reference(),
            push.uploaded,
            push.mounted,
            push.present,
            push.bytes_uploaded
        );
        release.image = Some(ReleaseImage {
            reference: target.reference(),
            digest,
            registry: target.registry,
            repository: target.repository,
            tag: target.tag,
            adapter: registry.adapter(),
            layers: layers(built),
            push,
        });
        Ok(message)
    }
}

impl Releases {
    /// The distributing stage when the organisation has no registry: the
    /// image kept in the server's image store, as `<org>/<integration>`.
    async fn keep(
        &self,
        release: &mut Release,
        images: &Images,
        built: &image::Image,
    ) -> Result<String, StageError> {
        let organisation = self
            .store
            .organisation(release.organisation)
            .map_err(|e| e.to_string())?
            .map(|o| o.name)
            .unwrap_or_default();
        if !images::is_component(&organisation) || !images::is_component(&release.integration) {
            return Err(format!(
                "`{organisation}/{}` cannot name a repository of the server's image store (lowercase letters, digits, `.`, `_` and `-` inside): an org-admin sets a registry",
                release.integration
            )
            .into());
        }
        let tag = format!("v{}", release.version);
        let repository = format!("{organisation}/{}", release.integration);
        let reference = format!("{}/{repository}:{tag}", images.address());
        release.note(format!(
            "keeping {reference} in the server's image store (the organisation has no registry)"
        ));
        let push = images
            .put(
                release.organisation,
                &release.integration,
                &tag,
                &built.artifact,
            )
            .await
            .map_err(|e| format!("the image store cannot keep the image: {e}"))?;
        let digest = built.artifact.manifest.digest.clone();
        let message = format!(
            "ready: {reference}@{digest} ({} written, {} already there; {} bytes written)",
            push.uploaded, push.present, push.bytes_uploaded
        );
        release.image = Some(ReleaseImage {
            reference,
            digest,
            registry: images.address().to_string(),
            repository,
            tag,
            adapter: IMAGE_STORE.into(),
            layers: layers(built),
            push,
        });
        Ok(message)
    }
}

/// What a release kept in the server's image store names as its adapter.
pub const IMAGE_STORE: &str = "slipway-images";

/// The layers of `built`, bottom first, with what each holds.
fn layers(built: &image::Image) -> Vec<LayerInfo> {
    built
        .layers
        .iter()
        .zip(image::LAYER_CONTENTS)
        .map(|(l, holds)| LayerInfo {
            holds: holds.into(),
            digest: l.digest.clone(),
            size: l.blob.len() as u64,
        })
        .collect()
}

/// What asking to delete a release started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// It is deleted (it had no image, or was deleted already).
    Done,
    /// Its image is being deleted from the registry; `deleted` follows.
    Deleting,
}

impl Releases {
    /// Deletes release `id` as `by` asked: at once when it has no image, else
    /// its image leaves the registry in the background.
    pub fn delete(&self, id: u64, by: &str) -> Result<Deletion, StoreError> {
        let note = format!("deletion asked by {by}");
        let Some(release) = self.store.start_deletion(id, &note, by)? else {
            return Ok(Deletion::Done);
        };
        self.publish(&release, release.status.as_str());
        if release.status == Status::Deleting {
            self.jobs.wake();
            return Ok(Deletion::Deleting);
        }
        self.unpin(&release);
        Ok(Deletion::Done)
    }

    /// Finishes deleting a release: its image leaves the registry unless
    /// another release has the same one, then the release is `deleted`.
    async fn delete_image(&self, mut release: Release) -> String {
        let message = match &release.image {
            None => "deleted".to_string(),
            Some(image) => match self.delete_from_registry(&release, image).await {
                Ok(message) => message,
                Err(error) => format!("deleted; the image stays in the registry: {error}"),
            },
        };
        release.status = Status::Deleted;
        release.note(message.clone());
        if let Err(err) = self.save(&release, &message) {
            tracing::error!(error = %err, release = release.id, "cannot record a deletion");
        }
        self.unpin(&release);
        message
    }

    async fn delete_from_registry(
        &self,
        release: &Release,
        image: &ReleaseImage,
    ) -> Result<String, String> {
        let sharing = self
            .store
            .releases_with_image(&image.registry, &image.repository, &image.digest)
            .map_err(|e| e.to_string())?;
        let store_images = self
            .registries
            .images()
            .filter(|i| image.adapter == IMAGE_STORE && i.address() == image.registry);
        let others: Vec<u64> = sharing.into_iter().filter(|id| *id != release.id).collect();
        if let Some(other) = others.first() {
            // In the image store, its tag goes unless another has it too.
            if let Some(images) = store_images {
                let tagged = others.iter().any(|id| {
                    self.store
                        .release(*id)
                        .ok()
                        .flatten()
                        .and_then(|r| r.image)
                        .is_some_and(|i| i.tag == image.tag)
                });
                if !tagged {
                    let repository = image.repository.rsplit('/').next().unwrap_or_default();
                    images
                        .untag(release.organisation, repository, &image.tag, &image.digest)
                        .await
                        .map_err(|e| format!("the image store cannot untag it: {e}"))?;
                }
            }
            return Ok(format!(
                "deleted; the image stays in the registry: release {other} has the same one"
            ));
        }
        if let Some(images) = store_images {
            let repository = image.repository.rsplit('/').next().unwrap_or_default();
            return Ok(
                match images
                    .delete(release.organisation, repository, &image.tag, &image.digest)
                    .await
                    .map_err(|e| format!("the image store cannot delete it: {e}"))?
                {
                    Deleted::Absent => "deleted; the image was no longer in the image store".into(),
                    _ => format!("deleted, and {} from the image store", image.pinned()),
                },
            );
        }
        let registry = self.registries.current(release.organisation)?;
        // The organisation's registry now may be another host than the one the
        // image went to: its credentials are never sent there.
        let current = registry.image(&release.integration, &image.tag).await?;
        if current.registry != image.registry {
            return Ok(format!(
                "deleted; the image stays in {}: the organisation's registry is now {}, whose credentials are not sent elsewhere",
                image.registry, current.registry
            ));
        }
        self.registries.check_reachable(&image.registry)?;
        let target = Image {
            registry: image.registry.clone(),
            repository: image.repository.clone(),
            tag: image.tag.clone(),
        };
        Ok(
            match self
                .registries
                .delete(&registry, &target, &image.digest)
                .await
                .map_err(|e| e.to_string())?
            {
                Deleted::Deleted => format!("deleted, and {} from the registry", image.pinned()),
                Deleted::Absent => "deleted; the image was no longer in the registry".into(),
                Deleted::Unsupported => {
                    "deleted; the registry does not allow deleting images, so the image stays there"
                        .into()
                }
            },
        )
    }
}

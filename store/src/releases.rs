//! Releases: one integration version on its way to an image, with its stage
//! timings, log, problems and the resolved flow.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sled::Transactional;

use super::jobs::{JobKind, JobStatus, JobTrees, Requested, lift};
use super::{Store, StoreError, decode, encode, key, name_key};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use slipway_flow::FlowDocument;

/// Where a release is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Waiting for a worker.
    Queued,
    /// Was being worked on when the server stopped; waiting to run again.
    Interrupted,
    /// Being validated, resolved and translated.
    Packaging,
    /// Its image is being built.
    Compiling,
    /// Its image is being pushed to the organisation's registry.
    Distributing,
    /// Pushed: see `image` for the reference and digest.
    Ready,
    /// A stage failed; see `error` and `diagnostics`.
    Failed,
    /// Deleted by a user; its image is being deleted from the registry.
    Deleting,
    /// Deleted.
    Deleted,
}

impl Status {
    /// Whether nothing more will happen to it.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Ready | Status::Failed | Status::Deleted)
    }

    /// Whether a worker is on it (a stop interrupts it).
    pub fn is_running(self) -> bool {
        matches!(
            self,
            Status::Packaging | Status::Compiling | Status::Distributing
        )
    }

    /// Whether a user deleted it.
    pub fn is_deleted(self) -> bool {
        matches!(self, Status::Deleting | Status::Deleted)
    }

    /// Whether it waits in the queue for a worker.
    pub fn is_waiting(self) -> bool {
        matches!(self, Status::Queued | Status::Interrupted)
    }

    /// The status's name, as in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Interrupted => "interrupted",
            Status::Packaging => "packaging",
            Status::Compiling => "compiling",
            Status::Distributing => "distributing",
            Status::Ready => "ready",
            Status::Failed => "failed",
            Status::Deleting => "deleting",
            Status::Deleted => "deleted",
        }
    }
}

/// A stage's start and end, in ms since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Stage {
    /// `packaging`, ...
    pub stage: String,
    /// When it started.
    pub started_ms: u64,
    /// When it ended, if it has.
    pub ended_ms: Option<u64>,
}

/// One line of a release's build log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct LogLine {
    /// When, in ms since the Unix epoch.
    pub at_ms: u64,
    /// What happened.
    pub message: String,
}

/// A release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Release {
    /// Its id.
    pub id: u64,
    /// The organisation.
    pub organisation: u64,
    /// Unique among the organisation's releases not deleted.
    #[serde(default)]
    pub name: String,
    /// What it is for, as its author put it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The integration released.
    pub integration: String,
    /// Its canvas version.
    pub version: u32,
    /// Where it is.
    pub status: Status,
    /// When it was asked for.
    pub created_ms: u64,
    /// Stage timings, in order.
    pub stages: Vec<Stage>,
    /// The build log.
    pub log: Vec<LogLine>,
    /// Why it failed.
    pub error: Option<String>,
    /// The canvas's problems, when packaging found some.
    pub diagnostics: Vec<Diagnostic>,
    /// The packaged flow: nodes, plugins with digests, subflows with versions.
    pub flow: Option<FlowDocument>,
    /// The image, once pushed.
    #[serde(default)]
    pub image: Option<ReleaseImage>,
    /// How many times a server stop cut it off in flight.
    #[serde(default)]
    pub interruptions: u32,
}

/// Where a release's image is, and how it got there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct ReleaseImage {
    /// `registry/repository:tag`.
    pub reference: String,
    /// The manifest digest, `sha256:<hex>`.
    pub digest: String,
    /// Registry host (and port).
    pub registry: String,
    /// Repository in the registry.
    pub repository: String,
    /// Tag.
    pub tag: String,
    /// The registry adapter that pushed it, `name@version`, or
    /// `slipway-images` for the server's own image store.
    pub adapter: String,
    /// Its layers, bottom first.
    pub layers: Vec<LayerInfo>,
    /// What the push sent.
    pub push: PushReport,
}

impl ReleaseImage {
    /// `registry/repository@digest`: the image, whatever the tag points at later.
    pub fn pinned(&self) -> String {
        format!("{}/{}@{}", self.registry, self.repository, self.digest)
    }
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct LayerInfo {
    /// What it holds.
    pub holds: String,
    /// Its digest.
    pub digest: String,
    /// Its compressed size in bytes.
    pub size: u64,
}

/// One problem packaging found in a canvas, located by a JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Diagnostic {
    /// RFC 6901 JSON pointer into the canvas; `""` is the whole canvas.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// What pushing an image sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct PushReport {
    /// Blobs the repository already had.
    pub present: u32,
    /// Blobs mounted from another repository of the registry.
    pub mounted: u32,
    /// Blobs uploaded.
    pub uploaded: u32,
    /// Bytes sent: uploaded blobs and the manifest.
    pub bytes_uploaded: u64,
}

/// The name a release of `integration` at `version` gets when none is
/// given: `<integration>-v<version>`.
pub fn proposed_name(integration: &str, version: u32) -> String {
    format!("{integration}-v{version}")
}

impl NewRelease {
    /// A release of `integration` at `version` with the
    /// [`proposed_name`] and no description.
    pub fn proposed(integration: &str, version: u32) -> NewRelease {
        NewRelease {
            integration: integration.to_string(),
            version,
            name: proposed_name(integration, version),
            description: None,
        }
    }
}

/// The key of a release among those holding an image: the image (registry,
/// repository and digest, as a JSON array, so no part runs into the next),
/// then the release id.
fn image_key(image: &ReleaseImage, id: &[u8; 8]) -> Vec<u8> {
    let mut key = image_prefix(&image.registry, &image.repository, &image.digest);
    key.extend_from_slice(id);
    key
}

fn image_prefix(registry: &str, repository: &str, digest: &str) -> Vec<u8> {
    encode(&[registry, repository, digest])
}

/// The key of a release among its organisation's.
fn organisation_key(organisation: u64, id: &[u8; 8]) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&organisation.to_be_bytes());
    key[8..].copy_from_slice(id);
    key
}

/// Frees a deleted release's name, if it is still the one holding it.
fn free_name(
    names: &sled::transaction::TransactionalTree,
    named: &[u8],
    id: &[u8; 8],
) -> Result<(), ConflictableTransactionError<()>> {
    if names
        .get(named)?
        .is_some_and(|holder| holder.as_ref() == id)
    {
        names.remove(named)?;
    }
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Release {
    /// Appends a log line.
    pub fn note(&mut self, message: impl Into<String>) {
        self.log.push(LogLine {
            at_ms: now_ms(),
            message: message.into(),
        });
    }
}

/// What a new release is: its integration version, name and description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRelease {
    /// The integration.
    pub integration: String,
    /// Its canvas version.
    pub version: u32,
    /// Its name, unique among the organisation's releases not deleted.
    pub name: String,
    /// Its description.
    pub description: Option<String>,
}

impl Store {
    /// Records a new queued release and the job that builds it; refused with
    /// [`StoreError::ReleaseNameTaken`] when another release of the
    /// organisation, not deleted, has its name (checked and taken in one
    /// transaction).
    pub fn create_release(
        &self,
        organisation: u64,
        new: NewRelease,
    ) -> Result<Release, StoreError> {
        let NewRelease {
            integration,
            version,
            name,
            description,
        } = new;
        let mut release = Release {
            id: self.next_id()?,
            organisation,
            name,
            description,
            integration: integration.clone(),
            version,
            status: Status::Queued,
            created_ms: now_ms(),
            stages: Vec::new(),
            log: Vec::new(),
            error: None,
            diagnostics: Vec::new(),
            flow: None,
            image: None,
            interruptions: 0,
        };
        release.note(format!("queued {integration}@{version}"));
        let id = key(release.id);
        let value = encode(&release);
        let named = name_key(organisation, &release.name);
        let owned = organisation_key(organisation, &id);
        let build = self.new_job(organisation, JobKind::BuildRelease, release.id)?;
        let (jobs, open_jobs, organisation_jobs, subject_jobs) = self.job_trees();
        (
            &self.releases,
            &self.release_names,
            &self.organisation_releases,
            jobs,
            open_jobs,
            organisation_jobs,
            subject_jobs,
        )
            .transaction(
                |(releases, names, owners, jobs, open, job_owners, subjects)| {
                    if names.get(&named)?.is_some() {
                        return Err(ConflictableTransactionError::Abort(()));
                    }
                    names.insert(named.as_slice(), &id)?;
                    releases.insert(&id, value.as_slice())?;
                    owners.insert(&owned, &[])?;
                    JobTrees {
                        jobs,
                        open,
                        owners: job_owners,
                        subjects,
                    }
                    .insert(&build)
                },
            )
            .map_err(|e| match e {
                TransactionError::Abort(()) => StoreError::ReleaseNameTaken(release.name.clone()),
                TransactionError::Storage(e) => StoreError::Sled(e),
            })?;
        Ok(release)
    }

    /// The id of the organisation's release named `name`, among those not
    /// deleted.
    pub fn release_named(&self, organisation: u64, name: &str) -> Result<Option<u64>, StoreError> {
        Ok(self
            .release_names
            .get(name_key(organisation, name))?
            .and_then(|id| id.as_ref().try_into().ok().map(u64::from_be_bytes)))
    }

    /// Writes a release as it is now, and keeps its name and image indexes in
    /// step with its status (one transaction). Deleting is final: a write that
    /// would bring a deleted release back is refused with
    /// [`StoreError::ReleaseDeleted`].
    pub fn put_release(&self, release: &Release) -> Result<(), StoreError> {
        #[derive(Deserialize)]
        struct StatusOnly {
            status: Status,
        }
        let id = key(release.id);
        let value = encode(release);
        let named = name_key(release.organisation, &release.name);
        let imaged = release.image.as_ref().map(|image| image_key(image, &id));
        (&self.releases, &self.release_names, &self.release_images)
            .transaction(|(releases, names, images)| {
                if !release.status.is_deleted()
                    && let Some(old) = releases.get(id)?
                    && serde_json::from_slice::<StatusOnly>(&old)
                        .is_ok_and(|old| old.status.is_deleted())
                {
                    return Err(ConflictableTransactionError::Abort(()));
                }
                releases.insert(&id, value.as_slice())?;
                if release.status.is_deleted() {
                    free_name(names, &named, &id)?;
                }
                if let Some(imaged) = &imaged {
                    if release.status.is_deleted() {
                        images.remove(imaged.as_slice())?;
                    } else {
                        images.insert(imaged.as_slice(), &[])?;
                    }
                }
                Ok(())
            })
            .map_err(|e| match e {
                TransactionError::Abort(()) => StoreError::ReleaseDeleted(release.id),
                TransactionError::Storage(e) => StoreError::Sled(e),
            })?;
        // A deletion is on disk before anyone is told of it.
        if release.status.is_deleted() {
            self.db.flush()?;
        }
        Ok(())
    }

    /// Releases whose build waits for a slot, oldest first, without reading
    /// the others.
    pub fn queued_releases(&self) -> Result<Vec<Release>, StoreError> {
        let mut queued = Vec::new();
        for open in self.open_jobs()?.into_iter().filter(|j| j.waiting) {
            let Some(job) = self.job(open.id)? else {
                continue;
            };
            if job.kind == JobKind::BuildRelease
                && let Some(release) = self.release(job.subject)?
                && release.status.is_waiting()
            {
                queued.push(release);
            }
        }
        Ok(queued)
    }

    /// Starts deleting release `id` from what it is now, in one transaction
    /// (never from a copy read earlier, which a worker may since have made
    /// `ready` with an image): `deleting` when it has an image to take out of
    /// its registry, with a job that does it, `deleted` otherwise, with `note`
    /// in its log. Its build stops: at once when it waits, after the step in
    /// progress when it runs. Answers the release as written; `None` when it
    /// is gone or already deleted. On disk before it returns.
    pub fn start_deletion(
        &self,
        id: u64,
        note: &str,
        by: &str,
    ) -> Result<Option<Release>, StoreError> {
        let subject = id;
        let id = key(id);
        let (jobs, open_jobs, organisation_jobs, subject_jobs) = self.job_trees();
        // The deletion's job, written only when the release has an image.
        let deletion_id = self.next_id()?;
        let started = (
            &self.releases,
            &self.release_names,
            &self.release_images,
            &self.release_services,
            jobs,
            open_jobs,
            organisation_jobs,
            subject_jobs,
        )
            .transaction(
                |(releases, names, images, services, jobs, open, job_owners, subjects)| {
                    // None: a record that does not decode; some: the services using it.
                    let abort = ConflictableTransactionError::Abort;
                    let jobs = JobTrees {
                        jobs,
                        open,
                        owners: job_owners,
                        subjects,
                    };
                    let Some(bytes) = releases.get(id)? else {
                        return Ok(None);
                    };
                    let mut release: Release =
                        serde_json::from_slice(&bytes).map_err(|_| abort(None))?;
                    if release.status.is_deleted() {
                        return Ok(None);
                    }
                    if let Some(ids) = services.get(id)? {
                        let ids: Vec<u64> =
                            serde_json::from_slice(&ids).map_err(|_| abort(None))?;
                        return Err(abort(Some(ids)));
                    }
                    release.status = if release.image.is_some() {
                        Status::Deleting
                    } else {
                        Status::Deleted
                    };
                    release.note(note);
                    releases.insert(&id, encode(&release))?;
                    if let Some(mut build) = jobs
                        .of(JobKind::BuildRelease, subject)
                        .map_err(|e| lift(e, None))?
                        && !build.status.is_final()
                    {
                        if build.status == JobStatus::Running {
                            build.request = Some(Requested {
                                request: super::JobRequest::Stop,
                                by: by.into(),
                                at_ms: now_ms(),
                            });
                        } else {
                            build.status = JobStatus::Stopped;
                            build.message = format!("stopped: {note}");
                        }
                        build.updated_ms = now_ms();
                        jobs.put(&build).map_err(|e| lift(e, None))?;
                    }
                    if release.status == Status::Deleting {
                        jobs.insert(&super::Job::new(
                            deletion_id,
                            release.organisation,
                            JobKind::DeleteRelease,
                            subject,
                        ))
                        .map_err(|e| lift(e, None))?;
                    }
                    free_name(names, &name_key(release.organisation, &release.name), &id)
                        .map_err(|e| lift(e, None))?;
                    if let Some(image) = &release.image {
                        images.remove(image_key(image, &id))?;
                    }
                    Ok(Some(release))
                },
            )
            .map_err(|e| match e {
                TransactionError::Abort(Some(ids)) => StoreError::ReleaseInUse(ids),
                TransactionError::Abort(None) => StoreError::Corrupt {
                    tree: "releases",
                    detail: "a release does not decode".into(),
                },
                TransactionError::Storage(e) => StoreError::Sled(e),
            })?;
        if started.is_some() {
            self.db.flush()?;
        }
        Ok(started)
    }

    /// Marks packaged releases interrupted, now that releases go on to an
    /// image (schema migration 2 → 3: the `packaged` status is gone); 7 gives
    /// them a job.
    pub(super) fn requeue_packaged_releases(&self) -> Result<(), StoreError> {
        for entry in self.releases.iter() {
            let (id, bytes) = entry?;
            let mut release: serde_json::Value = decode("releases", &bytes)?;
            if release["status"] == "packaged" {
                release["status"] = "interrupted".into();
                self.releases.insert(&id, encode(&release))?;
            }
        }
        Ok(())
    }

    /// Names every release (schema migration 4 → 5): `<integration>-v<version>`,
    /// or with `-<id>` after it where an older release has that name.
    /// Deleted releases are named but hold no name.
    pub(super) fn name_releases(&self) -> Result<(), StoreError> {
        for entry in self.releases.iter() {
            let (id, bytes) = entry?;
            let mut release: serde_json::Value = decode("releases", &bytes)?;
            if release["name"].is_string() {
                continue;
            }
            let organisation = release["organisation"].as_u64().unwrap_or(0);
            let base = proposed_name(
                release["integration"].as_str().unwrap_or("release"),
                release["version"].as_u64().unwrap_or(0) as u32,
            );
            let deleted =
                ["deleting", "deleted"].contains(&release["status"].as_str().unwrap_or(""));
            let mut name = base.clone();
            if !deleted
                && self
                    .release_names
                    .get(name_key(organisation, &name))?
                    .is_some()
            {
                name = format!(
                    "{base}-{}",
                    u64::from_be_bytes(id.as_ref().try_into().unwrap_or([0; 8]))
                );
            }
            if !deleted {
                self.release_names
                    .insert(name_key(organisation, &name), id.as_ref())?;
            }
            release["name"] = name.into();
            self.releases.insert(&id, encode(&release))?;
        }
        Ok(())
    }

    /// A release by id, whatever its organisation.
    pub fn release(&self, id: u64) -> Result<Option<Release>, StoreError> {
        self.releases
            .get(key(id))?
            .map(|bytes| decode("releases", &bytes))
            .transpose()
    }

    /// A release's organisation and its stored JSON, which is what the API
    /// sends: the hot read path skips decoding and encoding it again.
    pub fn release_json(&self, id: u64) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        #[derive(Deserialize)]
        struct Owner {
            organisation: u64,
        }
        let Some(bytes) = self.releases.get(key(id))? else {
            return Ok(None);
        };
        let owner: Owner = decode("releases", &bytes)?;
        Ok(Some((owner.organisation, bytes.to_vec())))
    }

    /// The organisation's releases, oldest first, without reading another's.
    pub fn organisation_releases(&self, organisation: u64) -> Result<Vec<Release>, StoreError> {
        let mut found = Vec::new();
        for entry in self
            .organisation_releases
            .scan_prefix(key(organisation))
            .keys()
        {
            let owned = entry?;
            if let Some(bytes) = self.releases.get(&owned[8..])? {
                found.push(decode("releases", &bytes)?);
            }
        }
        Ok(found)
    }

    /// The ids of the releases not deleted whose image is `digest` in
    /// `repository` of `registry`, without reading any release.
    pub fn releases_with_image(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
    ) -> Result<Vec<u64>, StoreError> {
        self.release_images
            .scan_prefix(image_prefix(registry, repository, digest))
            .keys()
            .map(|entry| {
                let key = entry?;
                let id = key[key.len().saturating_sub(8)..].try_into().map_err(|_| {
                    StoreError::Corrupt {
                        tree: "release_images",
                        detail: "a key has no release id".into(),
                    }
                })?;
                Ok(u64::from_be_bytes(id))
            })
            .collect()
    }

    /// Indexes every release by organisation, and those not deleted by
    /// their image (schema migration 5 → 6). Read as JSON, as older
    /// records may not decode as today's.
    pub(super) fn index_releases(&self) -> Result<(), StoreError> {
        for entry in self.releases.iter() {
            let (id, bytes) = entry?;
            let id: [u8; 8] = id.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                tree: "releases",
                detail: "a key is not a release id".into(),
            })?;
            let release: serde_json::Value = decode("releases", &bytes)?;
            let organisation = release["organisation"].as_u64().unwrap_or(0);
            self.organisation_releases
                .insert(organisation_key(organisation, &id), &[])?;
            let image = &release["image"];
            let deleted =
                ["deleting", "deleted"].contains(&release["status"].as_str().unwrap_or(""));
            if let [Some(registry), Some(repository), Some(digest)] =
                ["registry", "repository", "digest"].map(|field| image[field].as_str())
                && !deleted
            {
                let mut imaged = image_prefix(registry, repository, digest);
                imaged.extend_from_slice(&id);
                self.release_images.insert(imaged, &[])?;
            }
        }
        self.db.flush()?;
        Ok(())
    }

    /// Every release, oldest first.
    pub fn releases(&self) -> Result<Vec<Release>, StoreError> {
        self.releases
            .iter()
            .map(|entry| decode("releases", &entry?.1))
            .collect()
    }
}

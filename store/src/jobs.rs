//! Jobs: durable units of background work (a release's build, its image's
//! deletion; later plan executions and rollouts), each with the state its
//! next step resumes from. [`JobStatus::may_become`] is the one place a
//! status change is allowed or refused; every write goes through it.

use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use super::{Store, StoreError, decode, encode, key, now_ms};

/// What a job does; the runner hands it to the work registered for its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    /// Packages, compiles and pushes a release (its subject).
    BuildRelease,
    /// Deletes a deleted release's image from its registry.
    DeleteRelease,
    /// Deploys, starts, stops, restarts or deletes a service (its subject).
    ServiceOperation,
    /// Runs a deploy plan (its subject) wave by wave.
    PlanExecution,
}

impl JobKind {
    /// Every kind.
    pub const ALL: [JobKind; 4] = [
        JobKind::BuildRelease,
        JobKind::DeleteRelease,
        JobKind::ServiceOperation,
        JobKind::PlanExecution,
    ];

    /// Whether a job of this kind cut off by a server stop waits for an
    /// operator to resume it (seed 002's interrupted executions) rather
    /// than running again by itself.
    pub fn resumes_by_hand(self) -> bool {
        self == JobKind::PlanExecution
    }

    /// Its byte in the subject and open indexes.
    fn tag(self) -> u8 {
        match self {
            JobKind::BuildRelease => 1,
            JobKind::DeleteRelease => 2,
            JobKind::ServiceOperation => 3,
            JobKind::PlanExecution => 4,
        }
    }

    fn tagged(tag: u8) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.tag() == tag)
    }
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum JobStatus {
    /// Waiting for a slot.
    Queued,
    /// Was running when the server stopped; waiting to run again.
    Interrupted,
    /// A worker is taking it through its steps.
    Running,
    /// Paused between two steps, as asked; waits to be resumed.
    Paused,
    /// Every step done.
    Succeeded,
    /// A step failed; see `error`.
    Failed,
    /// Stopped between two steps, as asked, or its subject went away.
    Stopped,
}

impl JobStatus {
    /// Whether it waits for a slot.
    pub fn is_waiting(self) -> bool {
        matches!(self, JobStatus::Queued | JobStatus::Interrupted)
    }

    /// Whether nothing more will happen to it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Stopped
        )
    }

    /// Whether a job may go from `self` to `next`. Running to running is a
    /// step recorded; a final status never changes.
    pub fn may_become(self, next: JobStatus) -> bool {
        use JobStatus::*;
        matches!(
            (self, next),
            (Queued | Interrupted, Running | Paused | Stopped)
                // Recovery gives up on a job cut off too often; a job that
                // resumes by hand is queued when resumed.
                | (Interrupted, Failed | Queued)
                | (
                    Running,
                    Running | Paused | Succeeded | Failed | Stopped | Interrupted
                )
                | (Paused, Paused | Queued | Stopped)
        )
    }

    /// The status's name, as in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Interrupted => "interrupted",
            JobStatus::Running => "running",
            JobStatus::Paused => "paused",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Stopped => "stopped",
        }
    }
}

/// What an operator asked of a running job; it takes effect between steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum JobRequest {
    /// Stop after the step in progress, to be resumed later.
    Pause,
    /// Stop after the step in progress, for good.
    Stop,
}

/// A request, who made it and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Requested {
    /// What was asked.
    pub request: JobRequest,
    /// Who asked.
    pub by: String,
    /// When, in ms since the Unix epoch.
    pub at_ms: u64,
}

/// A job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Job {
    /// Its id.
    pub id: u64,
    /// The organisation it works for.
    pub organisation: u64,
    /// What it does.
    pub kind: JobKind,
    /// What it works on: a release's id, for the release kinds.
    pub subject: u64,
    /// Where it is.
    pub status: JobStatus,
    /// What its next step resumes from; its kind alone reads it.
    pub state: serde_json::Value,
    /// Steps done.
    pub steps: u32,
    /// A pause or stop asked for and not yet taken.
    pub request: Option<Requested>,
    /// How many times a server stop cut it off while it ran.
    pub interruptions: u32,
    /// What happened last.
    pub message: String,
    /// Why it failed.
    pub error: Option<String>,
    /// When it was created, in ms since the Unix epoch.
    pub created_ms: u64,
    /// When it last changed.
    pub updated_ms: u64,
}

impl Job {
    /// Whether it waits for a slot: queued, or interrupted and of a kind
    /// that runs again by itself.
    pub fn is_waiting(&self) -> bool {
        match self.status {
            JobStatus::Queued => true,
            JobStatus::Interrupted => !self.kind.resumes_by_hand(),
            _ => false,
        }
    }

    /// A new queued job, given its id.
    pub(super) fn new(id: u64, organisation: u64, kind: JobKind, subject: u64) -> Job {
        let now = now_ms();
        Job {
            id,
            organisation,
            kind,
            subject,
            status: JobStatus::Queued,
            state: serde_json::Value::Null,
            steps: 0,
            request: None,
            interruptions: 0,
            message: "queued".into(),
            error: None,
            created_ms: now,
            updated_ms: now,
        }
    }
}

/// A job not yet ended, as the open-jobs index holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenJob {
    /// The job.
    pub id: u64,
    /// Its organisation.
    pub organisation: u64,
    /// Whether it waits for a slot.
    pub waiting: bool,
    /// What it does.
    pub kind: JobKind,
}

/// Why a job was not changed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// No job has the id.
    #[error("no job {0}")]
    NotFound(u64),
    /// The change asks for a transition [`JobStatus::may_become`] refuses.
    #[error("job {id} cannot go from {} to {}", from.as_str(), to.as_str())]
    Transition {
        /// The job.
        id: u64,
        /// Its status.
        from: JobStatus,
        /// The status asked for.
        to: JobStatus,
    },
    /// The job is queued or running, so it is not deleted.
    #[error("job {id} is {}: stop it first", status.as_str())]
    Active {
        /// The job.
        id: u64,
        /// Its status.
        status: JobStatus,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The job trees inside one transaction, writing a job and its indexes
/// together.
pub(super) struct JobTrees<'a> {
    pub jobs: &'a TransactionalTree,
    pub open: &'a TransactionalTree,
    pub owners: &'a TransactionalTree,
    pub subjects: &'a TransactionalTree,
}

/// A job-tree failure inside a transaction that aborts with its own
/// reasons: a record that does not decode becomes `corrupt`.
pub(super) fn lift<E>(
    e: ConflictableTransactionError<()>,
    corrupt: E,
) -> ConflictableTransactionError<E> {
    match e {
        ConflictableTransactionError::Abort(()) => ConflictableTransactionError::Abort(corrupt),
        ConflictableTransactionError::Storage(e) => ConflictableTransactionError::Storage(e),
        ConflictableTransactionError::Conflict => ConflictableTransactionError::Conflict,
    }
}

/// Keys: a job by organisation, and the latest job of a kind for a subject.
fn organisation_key(organisation: u64, id: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&organisation.to_be_bytes());
    key[8..].copy_from_slice(&id.to_be_bytes());
    key
}

fn subject_key(kind: JobKind, subject: u64) -> [u8; 9] {
    let mut key = [0; 9];
    key[0] = kind.tag();
    key[1..].copy_from_slice(&subject.to_be_bytes());
    key
}

/// The open index's value: the organisation, whether it waits, its kind.
fn open_value(job: &Job) -> [u8; 10] {
    let mut value = [0; 10];
    value[..8].copy_from_slice(&job.organisation.to_be_bytes());
    value[8] = job.is_waiting() as u8;
    value[9] = job.kind.tag();
    value
}

impl JobTrees<'_> {
    /// Writes a new job and indexes it.
    pub fn insert(&self, job: &Job) -> Result<(), ConflictableTransactionError<()>> {
        self.owners
            .insert(&organisation_key(job.organisation, job.id), &[])?;
        self.subjects
            .insert(&subject_key(job.kind, job.subject), &key(job.id))?;
        self.put(job)
    }

    /// Writes a job as it is now and keeps the open index in step.
    pub fn put(&self, job: &Job) -> Result<(), ConflictableTransactionError<()>> {
        self.jobs.insert(&key(job.id), encode(job))?;
        if job.status.is_final() {
            self.open.remove(&key(job.id))?;
        } else {
            self.open.insert(&key(job.id), &open_value(job))?;
        }
        Ok(())
    }

    /// The latest job of `kind` for `subject`.
    pub fn of(
        &self,
        kind: JobKind,
        subject: u64,
    ) -> Result<Option<Job>, ConflictableTransactionError<()>> {
        let Some(id) = self.subjects.get(subject_key(kind, subject))? else {
            return Ok(None);
        };
        let Some(bytes) = self.jobs.get(id)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|_| ConflictableTransactionError::Abort(()))
    }
}

impl Store {
    /// The job trees, for a transaction that writes jobs.
    pub(super) fn job_trees(&self) -> (&sled::Tree, &sled::Tree, &sled::Tree, &sled::Tree) {
        (
            &self.jobs,
            &self.open_jobs,
            &self.organisation_jobs,
            &self.subject_jobs,
        )
    }

    /// Records a new queued job of `kind` on `subject`.
    pub fn create_job(
        &self,
        organisation: u64,
        kind: JobKind,
        subject: u64,
        state: serde_json::Value,
    ) -> Result<Job, StoreError> {
        let mut job = Job::new(self.next_id()?, organisation, kind, subject);
        job.state = state;
        self.insert_job(&job)?;
        Ok(job)
    }

    /// Writes a new job and its indexes, in one transaction.
    fn insert_job(&self, job: &Job) -> Result<(), StoreError> {
        self.job_trees()
            .transaction(|(jobs, open, owners, subjects)| {
                JobTrees {
                    jobs,
                    open,
                    owners,
                    subjects,
                }
                .insert(job)
            })
            .map_err(|e| super::aborted("jobs", e))
    }

    /// A new job's record, for a transaction that writes it with others.
    pub(super) fn new_job(
        &self,
        organisation: u64,
        kind: JobKind,
        subject: u64,
    ) -> Result<Job, StoreError> {
        Ok(Job::new(self.next_id()?, organisation, kind, subject))
    }

    /// Changes job `id` from what it is now, in one transaction: `change`
    /// edits it (and may run again if another write raced it); a status
    /// change [`JobStatus::may_become`] refuses is refused, and nothing is
    /// written. Answers the job as written.
    pub fn update_job(&self, id: u64, change: impl Fn(&mut Job)) -> Result<Job, JobError> {
        enum Refusal {
            Missing,
            Corrupt(String),
            Transition(JobStatus, JobStatus),
        }
        let written = (&self.jobs, &self.open_jobs)
            .transaction(|(jobs, open)| {
                let abort = ConflictableTransactionError::Abort;
                let Some(bytes) = jobs.get(key(id))? else {
                    return Err(abort(Refusal::Missing));
                };
                let mut job: Job = serde_json::from_slice(&bytes)
                    .map_err(|e| abort(Refusal::Corrupt(e.to_string())))?;
                let from = job.status;
                change(&mut job);
                if job.status != from && !from.may_become(job.status) {
                    return Err(abort(Refusal::Transition(from, job.status)));
                }
                job.updated_ms = now_ms();
                jobs.insert(&key(id), encode(&job))?;
                if job.status.is_final() {
                    open.remove(&key(id))?;
                } else {
                    open.insert(&key(id), &open_value(&job))?;
                }
                Ok(job)
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => JobError::Store(e.into()),
                TransactionError::Abort(Refusal::Missing) => JobError::NotFound(id),
                TransactionError::Abort(Refusal::Corrupt(detail)) => {
                    JobError::Store(StoreError::Corrupt {
                        tree: "jobs",
                        detail,
                    })
                }
                TransactionError::Abort(Refusal::Transition(from, to)) => {
                    JobError::Transition { id, from, to }
                }
            })?;
        Ok(written)
    }

    /// A job by id, whatever its organisation.
    pub fn job(&self, id: u64) -> Result<Option<Job>, StoreError> {
        self.jobs
            .get(key(id))?
            .map(|bytes| decode("jobs", &bytes))
            .transpose()
    }

    /// The latest job of `kind` for `subject`.
    pub fn job_of(&self, kind: JobKind, subject: u64) -> Result<Option<Job>, StoreError> {
        match self.subject_jobs.get(subject_key(kind, subject))? {
            Some(id) => self.job(u64::from_be_bytes(id.as_ref().try_into().map_err(
                |_| StoreError::Corrupt {
                    tree: "subject_jobs",
                    detail: "a value is not a job id".into(),
                },
            )?)),
            None => Ok(None),
        }
    }

    /// Jobs not ended, oldest first, without reading them.
    pub fn open_jobs(&self) -> Result<Vec<OpenJob>, StoreError> {
        self.open_jobs
            .iter()
            .map(|entry| {
                let (id, value) = entry?;
                // Entries written before schema 8 have no kind: release builds
                // and deletions, which share a lane.
                let (organisation, waiting, kind) = match value.as_ref() {
                    [o @ .., waiting, kind] if o.len() == 8 => {
                        (o, *waiting, JobKind::tagged(*kind))
                    }
                    [o @ .., waiting] if o.len() == 8 => (o, *waiting, Some(JobKind::BuildRelease)),
                    _ => (&[][..], 0, None),
                };
                match (<[u8; 8]>::try_from(id.as_ref()), kind) {
                    (Ok(id), Some(kind)) => Ok(OpenJob {
                        id: u64::from_be_bytes(id),
                        organisation: u64::from_be_bytes(organisation.try_into().expect("8 bytes")),
                        waiting: waiting == 1,
                        kind,
                    }),
                    _ => Err(StoreError::Corrupt {
                        tree: "open_jobs",
                        detail: "an entry is not a job id and its organisation".into(),
                    }),
                }
            })
            .collect()
    }

    /// Deletes job `id` and its indexes, unless it is queued or running.
    pub fn delete_job(&self, id: u64) -> Result<Job, JobError> {
        enum Refusal {
            Missing,
            Corrupt(String),
            Active(JobStatus),
        }
        let (jobs, open, owners, subjects) = self.job_trees();
        let deleted = (jobs, open, owners, subjects)
            .transaction(|(jobs, open, owners, subjects)| {
                let abort = ConflictableTransactionError::Abort;
                let Some(bytes) = jobs.get(key(id))? else {
                    return Err(abort(Refusal::Missing));
                };
                let job: Job = serde_json::from_slice(&bytes)
                    .map_err(|e| abort(Refusal::Corrupt(e.to_string())))?;
                if matches!(job.status, JobStatus::Queued | JobStatus::Running) {
                    return Err(abort(Refusal::Active(job.status)));
                }
                jobs.remove(&key(id))?;
                open.remove(&key(id))?;
                owners.remove(&organisation_key(job.organisation, id))?;
                let subject = subject_key(job.kind, job.subject);
                if subjects.get(subject)?.as_deref() == Some(&key(id)[..]) {
                    subjects.remove(&subject)?;
                }
                Ok(job)
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => JobError::Store(e.into()),
                TransactionError::Abort(Refusal::Missing) => JobError::NotFound(id),
                TransactionError::Abort(Refusal::Corrupt(detail)) => {
                    JobError::Store(StoreError::Corrupt {
                        tree: "jobs",
                        detail,
                    })
                }
                TransactionError::Abort(Refusal::Active(status)) => JobError::Active { id, status },
            })?;
        self.db.flush().map_err(StoreError::from)?;
        Ok(deleted)
    }

    /// Takes job `id` off the open index, whatever its record says (a
    /// record that no longer decodes would otherwise be picked for ever).
    pub fn unlist_job(&self, id: u64) -> Result<(), StoreError> {
        self.open_jobs.remove(key(id))?;
        Ok(())
    }

    /// An organisation's jobs, oldest first.
    pub fn organisation_jobs(&self, organisation: u64) -> Result<Vec<Job>, StoreError> {
        let mut jobs = Vec::new();
        for entry in self
            .organisation_jobs
            .scan_prefix(organisation.to_be_bytes())
        {
            let (owned, _) = entry?;
            if let Some(job) = self.jobs.get(&owned[8..])? {
                jobs.push(decode("jobs", &job)?);
            }
        }
        Ok(jobs)
    }

    /// A job for every release the queue or a worker had, from the
    /// releases' statuses (schema migration 6 → 7, which retires the
    /// release queue): waiting ones queued, those in flight running (so the
    /// next start counts the interruption), deleting ones with a deletion.
    pub(super) fn give_releases_jobs(&self) -> Result<(), StoreError> {
        for entry in self.releases.iter() {
            let (_, bytes) = entry?;
            let release: serde_json::Value = decode("releases", &bytes)?;
            let (Some(id), Some(organisation)) =
                (release["id"].as_u64(), release["organisation"].as_u64())
            else {
                continue;
            };
            let (kind, status) = match release["status"].as_str().unwrap_or("") {
                "queued" => (JobKind::BuildRelease, JobStatus::Queued),
                "interrupted" => (JobKind::BuildRelease, JobStatus::Interrupted),
                "packaging" | "compiling" | "distributing" => {
                    (JobKind::BuildRelease, JobStatus::Running)
                }
                "deleting" => (JobKind::DeleteRelease, JobStatus::Queued),
                _ => continue,
            };
            // Run again after a crash part way: one job per release still.
            if self.job_of(kind, id)?.is_some() {
                continue;
            }
            let mut job = self.new_job(organisation, kind, id)?;
            job.status = status;
            job.interruptions = release["interruptions"].as_u64().unwrap_or(0) as u32;
            self.insert_job(&job)?;
        }
        self.db.drop_tree("queue")?;
        self.db.flush()?;
        Ok(())
    }
}

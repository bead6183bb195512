//! The job runner: takes durable jobs from the store through their steps,
//! a bounded number at once and fairly between organisations.
//!
//! A job is a persisted run: each [`Work::advance`] takes it one step on
//! from the state the last step saved, so a job cut off by a server stop
//! resumes where it was, and a pause or stop asked for (recorded on the job)
//! takes effect between two steps. The runner writes every status change
//! through [`Store::update_job`], where the allowed transitions are checked.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use slipway_store::{
    Job, JobError, JobKind, JobRequest, JobStatus, OpenJob, Requested, Store, StoreError, now_ms,
};
use tokio::sync::{Notify, Semaphore, broadcast};

/// A job is in flight at this many starts: it fails instead of running again.
pub const MAX_INTERRUPTIONS: u32 = 3;

/// What one step of a job came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Done; the next step resumes from this state.
    Next {
        /// What the next step resumes from.
        state: serde_json::Value,
        /// What the step did.
        message: String,
    },
    /// Progress recorded, but not a point a pause or stop may take
    /// effect at (a plan's wave still has services in flight): the next
    /// step runs with the request still asked.
    Wait {
        /// What the next step resumes from.
        state: serde_json::Value,
        /// Where it is.
        message: String,
    },
    /// Every step done.
    Done(String),
    /// The job fails, for this reason.
    Failed(String),
    /// Nothing is left to do (its subject went away, or was stopped).
    Stopped(String),
    /// The step could not record what it did (the store failed, logged):
    /// the job is left running, so the next start resumes it.
    Unrecorded(String),
}

/// The boxed future a step returns.
pub type Advance<'a> = Pin<Box<dyn Future<Output = Step> + Send + 'a>>;

/// What a kind of job does.
pub trait Work: Send + Sync {
    /// Takes `job` one step on from `job.state`.
    fn advance<'a>(&'a self, job: &'a Job) -> Advance<'a>;

    /// The runner changed `job` without a step of it: a start found it in
    /// flight (interrupted, failed when cut off too often, or paused or
    /// stopped as asked before), or a request paused or stopped it while it
    /// waited. Its subject may show that.
    fn changed(&self, _job: &Job) {}
}

/// The work for each kind of job.
pub type Works = HashMap<JobKind, Arc<dyn Work>>;

/// A change of a job, as its watchers see it.
#[derive(Debug, Clone)]
pub struct JobEvent {
    /// The job as written.
    pub job: Job,
}

/// Why a request on a job was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// No job of the organisation has the id.
    #[error("no job {0}")]
    NotFound(u64),
    /// It has ended.
    #[error("job {id} has ended: it is {}", status.as_str())]
    Ended {
        /// The job.
        id: u64,
        /// Its final status.
        status: JobStatus,
    },
    /// Resuming a job that is not paused.
    #[error("job {id} is not paused: it is {}", status.as_str())]
    NotPaused {
        /// The job.
        id: u64,
        /// Its status.
        status: JobStatus,
    },
    /// Deleting a job that is queued or running.
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

impl From<JobError> for Refused {
    fn from(err: JobError) -> Refused {
        match err {
            JobError::NotFound(id) => Refused::NotFound(id),
            JobError::Transition { id, from, .. } => Refused::Ended { id, status: from },
            JobError::Active { id, status } => Refused::Active { id, status },
            JobError::Store(e) => Refused::Store(e),
        }
    }
}

/// The runner.
pub struct Jobs {
    store: Store,
    /// The work of each kind, once registered; weak, as the works hold the
    /// runner to wake it.
    works: std::sync::OnceLock<HashMap<JobKind, Weak<dyn Work>>>,
    wake: Notify,
    events: broadcast::Sender<JobEvent>,
    concurrency: usize,
    /// Kinds with a bound of their own, apart from the others'.
    lanes: Vec<(Vec<JobKind>, usize)>,
}

impl Jobs {
    /// A runner over the jobs in `store`, at most `concurrency` at once.
    pub fn new(store: Store, concurrency: usize) -> Jobs {
        Jobs {
            store,
            works: std::sync::OnceLock::new(),
            wake: Notify::new(),
            events: broadcast::channel(1024).0,
            concurrency: concurrency.max(1),
            lanes: Vec::new(),
        }
    }

    /// Gives `kinds` a lane of their own, at most `concurrency` at once, so
    /// jobs that mostly wait (a rollout waiting for health) take no slot of
    /// those that compute (a build), and the other way round.
    pub fn with_lane(mut self, kinds: &[JobKind], concurrency: usize) -> Jobs {
        self.lanes.push((kinds.to_vec(), concurrency.max(1)));
        self
    }

    /// Registers the work of each kind; call once, before [`Jobs::recover`]
    /// and [`Jobs::run`]. A job of a kind with no work fails when claimed.
    pub fn register(&self, works: Works) {
        let works = works
            .iter()
            .map(|(kind, work)| (*kind, Arc::downgrade(work)))
            .collect();
        if self.works.set(works).is_err() {
            tracing::warn!("the jobs' work was registered already; kept the first");
        }
    }

    fn work(&self, kind: JobKind) -> Option<Arc<dyn Work>> {
        self.works.get()?.get(&kind)?.upgrade()
    }

    /// Tells the runner a job was queued.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Changes of jobs from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.events.subscribe()
    }

    /// Job `id` of `organisation`.
    pub fn find(&self, organisation: u64, id: u64) -> Result<Option<Job>, StoreError> {
        Ok(self
            .store
            .job(id)?
            .filter(|job| job.organisation == organisation))
    }

    /// Asks job `id` of `organisation` to pause or stop, as `by`: a waiting
    /// job does so at once, a running one after the step in progress.
    pub fn request(
        &self,
        organisation: u64,
        id: u64,
        request: JobRequest,
        by: &str,
    ) -> Result<Job, Refused> {
        let job = self.owned(organisation, id)?;
        if job.status.is_final() {
            return Err(Refused::Ended {
                id,
                status: job.status,
            });
        }
        let job = self.write(id, |job| match (job.status, request) {
            (JobStatus::Running, _) => {
                job.request = Some(Requested {
                    request,
                    by: by.into(),
                    at_ms: now_ms(),
                });
            }
            (_, JobRequest::Pause) => {
                job.status = JobStatus::Paused;
                job.message = format!("paused by {by}");
            }
            (_, JobRequest::Stop) => {
                job.request = None;
                job.status = JobStatus::Stopped;
                job.message = format!("stopped by {by}");
            }
        })?;
        if job.status != JobStatus::Running
            && let Some(work) = self.work(job.kind)
        {
            work.changed(&job);
        }
        Ok(job)
    }

    /// Resumes paused job `id` of `organisation` (or an interrupted one of
    /// a kind that resumes by hand), as `by`; a pause asked of a running
    /// job and not yet taken is withdrawn.
    pub fn resume(&self, organisation: u64, id: u64, by: &str) -> Result<Job, Refused> {
        let job = self.owned(organisation, id)?;
        let pausing = job.status == JobStatus::Running
            && job
                .request
                .as_ref()
                .is_some_and(|r| r.request == JobRequest::Pause);
        let held = job.status == JobStatus::Interrupted && job.kind.resumes_by_hand();
        if job.status != JobStatus::Paused && !pausing && !held {
            return Err(Refused::NotPaused {
                id,
                status: job.status,
            });
        }
        let job = self.write(id, |job| {
            if matches!(job.status, JobStatus::Paused | JobStatus::Interrupted) {
                job.status = JobStatus::Queued;
                job.message = format!("resumed by {by}");
            }
            job.request = None;
        })?;
        self.wake();
        Ok(job)
    }

    /// Deletes job `id` of `organisation`, unless it is queued or running
    /// (a pause or stop asked and not yet taken counts as running).
    pub fn delete(&self, organisation: u64, id: u64) -> Result<Job, Refused> {
        self.owned(organisation, id)?;
        Ok(self.store.delete_job(id)?)
    }

    fn owned(&self, organisation: u64, id: u64) -> Result<Job, Refused> {
        self.find(organisation, id)?.ok_or(Refused::NotFound(id))
    }

    /// Writes a change of job `id` and tells its watchers.
    pub(crate) fn write(&self, id: u64, change: impl Fn(&mut Job)) -> Result<Job, JobError> {
        let job = self.store.update_job(id, change)?;
        let _ = self.events.send(JobEvent { job: job.clone() });
        Ok(job)
    }

    /// Marks what a stop cut off in flight: interrupted, to run again, or
    /// failed once it was cut off [`MAX_INTERRUPTIONS`] times; each work
    /// hears of its jobs. Answers how many run again. Call once at start,
    /// before [`Jobs::run`].
    pub fn recover(&self) -> Result<usize, StoreError> {
        let mut requeued = 0;
        for open in self.store.open_jobs()? {
            let Some(job) = self.store.job(open.id)? else {
                continue;
            };
            if job.status != JobStatus::Running {
                continue;
            }
            let job = self
                .write(job.id, |job| {
                    // A pause or stop asked before the stop takes effect now.
                    match job.request.take() {
                        Some(Requested {
                            request: JobRequest::Pause,
                            by,
                            ..
                        }) => {
                            job.status = JobStatus::Paused;
                            job.message = format!("paused by {by} (a server stop cut its step off)");
                            return;
                        }
                        Some(Requested {
                            request: JobRequest::Stop,
                            by,
                            ..
                        }) => {
                            job.status = JobStatus::Stopped;
                            job.message = format!("stopped by {by} (a server stop cut its step off)");
                            return;
                        }
                        None => {}
                    }
                    job.interruptions += 1;
                    if job.interruptions >= MAX_INTERRUPTIONS {
                        // In flight at every one of the last starts: it may be
                        // what stops the server, so it is not run again.
                        let error = format!(
                            "interrupted {n} times: a server stop cut it off in flight at each of its last {n} starts, so it is not run again",
                            n = job.interruptions
                        );
                        job.status = JobStatus::Failed;
                        job.message = format!("failed: {error}");
                        job.error = Some(error);
                    } else {
                        job.status = JobStatus::Interrupted;
                        job.message = if job.kind.resumes_by_hand() {
                            "interrupted by a server stop; resume it to go on".into()
                        } else {
                            "interrupted by a server stop; queued again".into()
                        };
                    }
                })
                .map_err(|e| match e {
                    JobError::Store(e) => e,
                    other => StoreError::Corrupt {
                        tree: "jobs",
                        detail: other.to_string(),
                    },
                })?;
            if job.is_waiting() {
                requeued += 1;
            }
            if let Some(work) = self.work(job.kind) {
                work.changed(&job);
            }
        }
        Ok(requeued)
    }

    /// Works the jobs until the process ends. Each free slot goes to the
    /// oldest waiting job of the organisation with the fewest running, so
    /// one organisation's backlog delays another's job by one job at most.
    pub async fn run(self: Arc<Self>) {
        let default = Arc::new(Semaphore::new(self.concurrency));
        let lanes: Vec<(Vec<JobKind>, Arc<Semaphore>)> = self
            .lanes
            .iter()
            .map(|(kinds, n)| (kinds.clone(), Arc::new(Semaphore::new(*n))))
            .collect();
        let lane = |kind: JobKind| {
            lanes
                .iter()
                .find(|(kinds, _)| kinds.contains(&kind))
                .map_or(&default, |(_, permits)| permits)
        };
        let running = Arc::new(Running::default());
        loop {
            let next = match self.store.open_jobs() {
                Ok(open) => running.fairest(&open, |kind| lane(kind).available_permits() > 0),
                Err(err) => {
                    tracing::error!(error = %err, "cannot read the open jobs");
                    None
                }
            };
            // A slot's end or a new job wakes the dispatcher.
            let Some(next) = next else {
                self.wake.notified().await;
                continue;
            };
            let Ok(permit) = lane(next.kind).clone().try_acquire_owned() else {
                continue;
            };
            // Claimed here, by the one dispatcher: no job runs twice.
            let claimed = self.write(next.id, |job| {
                if job.is_waiting() {
                    job.status = JobStatus::Running;
                    job.message = "running".into();
                }
            });
            let job = match claimed {
                Ok(job) if job.status == JobStatus::Running => job,
                Ok(_) | Err(JobError::NotFound(_)) => continue,
                Err(JobError::Store(StoreError::Corrupt { detail, .. })) => {
                    tracing::error!(job = next.id, %detail, "a job record does not decode; it is not run");
                    if let Err(err) = self.store.unlist_job(next.id) {
                        tracing::error!(error = %err, job = next.id, "cannot unlist a job");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    continue;
                }
                Err(err) => {
                    // Logged; the store may recover, so try again a little later.
                    tracing::error!(error = %err, job = next.id, "cannot claim a job");
                    drop(permit);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let Some(work) = self.work(job.kind) else {
                let kind = job.kind;
                let _ = self.write(job.id, |job| {
                    job.status = JobStatus::Failed;
                    job.error = Some(format!("no work is registered for {kind:?} jobs"));
                });
                continue;
            };
            let slot = Slot {
                running: running.clone(),
                organisation: job.organisation,
                jobs: self.clone(),
                permit: Some(permit),
            };
            running.add(slot.organisation);
            tokio::spawn(async move {
                slot.jobs.steps(work.as_ref(), job).await;
                drop(slot);
            });
        }
    }

    /// Takes a claimed job through its steps until it ends, pauses or stops.
    async fn steps(&self, work: &dyn Work, mut job: Job) {
        loop {
            let step = work.advance(&job).await;
            if let Step::Unrecorded(why) = &step {
                tracing::error!(job = job.id, "a job's step went unrecorded: {why}");
                return;
            }
            let written = self.write(job.id, |job| {
                job.message = match &step {
                    Step::Next { message, .. }
                    | Step::Wait { message, .. }
                    | Step::Done(message)
                    | Step::Failed(message)
                    | Step::Stopped(message)
                    | Step::Unrecorded(message) => message.clone(),
                };
                match &step {
                    Step::Next { state, .. } => {
                        job.steps += 1;
                        job.state = state.clone();
                        // A request takes effect now, between two steps.
                        match job.request.take().map(|r| (r.request, r.by)) {
                            Some((JobRequest::Pause, by)) => {
                                job.status = JobStatus::Paused;
                                job.message = format!("paused by {by} after: {}", job.message);
                            }
                            Some((JobRequest::Stop, by)) => {
                                job.status = JobStatus::Stopped;
                                job.message = format!("stopped by {by} after: {}", job.message);
                            }
                            None => {}
                        }
                    }
                    Step::Wait { state, .. } => {
                        job.steps += 1;
                        job.state = state.clone();
                    }
                    Step::Done(_) => {
                        job.steps += 1;
                        job.request = None;
                        job.status = JobStatus::Succeeded;
                    }
                    Step::Failed(error) => {
                        job.request = None;
                        job.status = JobStatus::Failed;
                        job.error = Some(error.clone());
                    }
                    Step::Stopped(_) | Step::Unrecorded(_) => {
                        job.request = None;
                        job.status = JobStatus::Stopped;
                    }
                }
            });
            match written {
                Ok(next) if next.status == JobStatus::Running => job = next,
                Ok(_) => return,
                Err(err) => {
                    // The job stays running; the next start resumes it.
                    tracing::error!(error = %err, job = job.id, "cannot record a job's step");
                    return;
                }
            }
        }
    }
}

/// A running job's hold on a slot: given back, and the dispatcher woken,
/// however the job ends (a panic included).
struct Slot {
    running: Arc<Running>,
    organisation: u64,
    jobs: Arc<Jobs>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.running.remove(self.organisation);
        // Freed before the wake, so the dispatcher sees the slot free.
        self.permit.take();
        self.jobs.wake();
    }
}

/// How many jobs each organisation has running.
#[derive(Debug, Default)]
struct Running(Mutex<HashMap<u64, usize>>);

impl Running {
    /// The oldest waiting job of the organisation running the fewest.
    fn fairest(&self, open: &[OpenJob], free: impl Fn(JobKind) -> bool) -> Option<OpenJob> {
        let running = self.0.lock().expect("running lock");
        open.iter()
            .filter(|job| job.waiting && free(job.kind))
            .min_by_key(|job| (running.get(&job.organisation).copied().unwrap_or(0), job.id))
            .copied()
    }

    fn add(&self, organisation: u64) {
        *self
            .0
            .lock()
            .expect("running lock")
            .entry(organisation)
            .or_default() += 1;
    }

    fn remove(&self, organisation: u64) {
        let mut running = self.0.lock().expect("running lock");
        if let Some(count) = running.get_mut(&organisation) {
            *count -= 1;
            if *count == 0 {
                running.remove(&organisation);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicU32, Ordering};
    use tokio::sync::Semaphore;

    /// Counts to `state.to`, one step at a time, each step waiting for a
    /// permit the test hands out.
    struct Counting {
        gate: Semaphore,
        advanced: AtomicU32,
        changed: Mutex<Vec<JobStatus>>,
    }

    impl Counting {
        fn new() -> Arc<Counting> {
            Arc::new(Counting {
                gate: Semaphore::new(0),
                advanced: AtomicU32::new(0),
                changed: Mutex::new(Vec::new()),
            })
        }
    }

    impl Work for Counting {
        fn advance<'a>(&'a self, job: &'a Job) -> Advance<'a> {
            Box::pin(async move {
                self.gate.acquire().await.unwrap().forget();
                self.advanced.fetch_add(1, Ordering::SeqCst);
                let n = job.state["n"].as_u64().unwrap_or(0) + 1;
                if n == job.state["to"].as_u64().unwrap() {
                    Step::Done(format!("counted to {n}"))
                } else {
                    Step::Next {
                        state: json!({"n": n, "to": job.state["to"]}),
                        message: format!("at {n}"),
                    }
                }
            })
        }

        fn changed(&self, job: &Job) {
            self.changed.lock().unwrap().push(job.status);
        }
    }

    fn works(work: &Arc<Counting>) -> Works {
        let work: Arc<dyn Work> = work.clone();
        Works::from([(JobKind::BuildRelease, work)])
    }

    /// A runner over a fresh store, `work` registered for its jobs.
    fn setup_with(work: &Arc<Counting>) -> (tempfile::TempDir, Store, Arc<Jobs>) {
        let (dir, store, jobs) = setup();
        jobs.register(works(work));
        (dir, store, jobs)
    }

    fn setup() -> (tempfile::TempDir, Store, Arc<Jobs>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let jobs = Arc::new(Jobs::new(store.clone(), 2));
        (dir, store, jobs)
    }

    /// The job's next event with `status`, within 10 s.
    async fn until(events: &mut broadcast::Receiver<JobEvent>, id: u64, status: JobStatus) -> Job {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let event = events.recv().await.unwrap();
                if event.job.id == id && event.job.status == status {
                    return event.job;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("job {id} never became {status:?}"))
    }

    #[tokio::test]
    async fn a_job_advances_step_by_step_from_its_saved_state() {
        let work = Counting::new();
        let (_dir, store, jobs) = setup_with(&work);
        let job = store
            .create_job(7, JobKind::BuildRelease, 1, json!({"to": 3}))
            .unwrap();
        let mut events = jobs.subscribe();
        tokio::spawn(jobs.clone().run());
        jobs.wake();
        work.gate.add_permits(3);
        let done = until(&mut events, job.id, JobStatus::Succeeded).await;
        assert_eq!((done.steps, done.message.as_str()), (3, "counted to 3"));
        assert_eq!(done.state, json!({"n": 2, "to": 3}));
        assert_eq!(store.job(job.id).unwrap().unwrap(), done);
        assert!(store.open_jobs().unwrap().is_empty());
        assert_eq!(
            jobs.find(8, job.id).unwrap(),
            None,
            "another organisation's"
        );
    }

    #[tokio::test]
    async fn a_pause_takes_effect_between_steps_and_a_resume_carries_on_from_there() {
        let work = Counting::new();
        let (_dir, store, jobs) = setup_with(&work);
        let job = store
            .create_job(7, JobKind::BuildRelease, 1, json!({"to": 4}))
            .unwrap();
        let mut events = jobs.subscribe();
        tokio::spawn(jobs.clone().run());
        jobs.wake();
        until(&mut events, job.id, JobStatus::Running).await;
        // Asked while its first step runs: it takes effect after it.
        let asked = jobs.request(7, job.id, JobRequest::Pause, "ada").unwrap();
        assert_eq!(asked.status, JobStatus::Running);
        work.gate.add_permits(1);
        let paused = until(&mut events, job.id, JobStatus::Paused).await;
        assert_eq!(paused.steps, 1);
        assert_eq!(paused.message, "paused by ada after: at 1");
        assert_eq!(paused.request, None);
        work.gate.add_permits(10);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            work.advanced.load(Ordering::SeqCst),
            1,
            "no step while paused"
        );

        assert!(matches!(
            jobs.resume(8, job.id, "eve"),
            Err(Refused::NotFound(_))
        ));
        jobs.resume(7, job.id, "ada").unwrap();
        let done = until(&mut events, job.id, JobStatus::Succeeded).await;
        assert_eq!(done.steps, 4);
        assert_eq!(work.advanced.load(Ordering::SeqCst), 4, "each step once");
        assert!(matches!(
            jobs.request(7, job.id, JobRequest::Stop, "ada"),
            Err(Refused::Ended {
                status: JobStatus::Succeeded,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn a_stop_ends_a_job_between_steps_or_at_once_when_it_waits() {
        let work = Counting::new();
        let (_dir, store, jobs) = setup_with(&work);
        let running = store
            .create_job(7, JobKind::BuildRelease, 1, json!({"to": 5}))
            .unwrap();
        let mut events = jobs.subscribe();
        tokio::spawn(jobs.clone().run());
        jobs.wake();
        until(&mut events, running.id, JobStatus::Running).await;
        jobs.request(7, running.id, JobRequest::Stop, "ada")
            .unwrap();
        work.gate.add_permits(1);
        let stopped = until(&mut events, running.id, JobStatus::Stopped).await;
        assert_eq!(stopped.steps, 1);

        // A paused job stops at once, and never runs again.
        let (_dir, store, jobs) = setup_with(&work);
        let paused = store
            .create_job(7, JobKind::BuildRelease, 2, json!({"to": 5}))
            .unwrap();
        jobs.request(7, paused.id, JobRequest::Pause, "ada")
            .unwrap();
        let ended = jobs.request(7, paused.id, JobRequest::Stop, "ada").unwrap();
        assert_eq!(
            (ended.status, ended.message.as_str()),
            (JobStatus::Stopped, "stopped by ada")
        );
        tokio::spawn(jobs.clone().run());
        jobs.wake();
        work.gate.add_permits(10);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(work.advanced.load(Ordering::SeqCst), 1);
        assert!(store.open_jobs().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_job_cut_off_by_a_stop_resumes_where_it_was_and_fails_when_cut_off_too_often() {
        let work = Counting::new();
        let (_dir, store, jobs) = setup_with(&work);
        let job = store
            .create_job(7, JobKind::BuildRelease, 1, json!({"to": 9}))
            .unwrap();
        // As a stop leaves it: running, two steps done.
        store
            .update_job(job.id, |job| {
                job.status = JobStatus::Running;
                job.steps = 2;
                job.state = json!({"n": 7, "to": 9});
            })
            .unwrap();
        assert_eq!(jobs.recover().unwrap(), 1);
        let interrupted = store.job(job.id).unwrap().unwrap();
        assert_eq!(interrupted.status, JobStatus::Interrupted);
        assert_eq!(interrupted.interruptions, 1);

        let mut events = jobs.subscribe();
        tokio::spawn(jobs.clone().run());
        jobs.wake();
        work.gate.add_permits(2);
        let done = until(&mut events, job.id, JobStatus::Succeeded).await;
        assert_eq!((done.steps, done.message.as_str()), (4, "counted to 9"));
        assert_eq!(work.advanced.load(Ordering::SeqCst), 2, "from where it was");

        let again = store
            .create_job(7, JobKind::BuildRelease, 2, json!({"to": 9}))
            .unwrap();
        for _ in 0..MAX_INTERRUPTIONS {
            store
                .update_job(again.id, |job| job.status = JobStatus::Running)
                .unwrap();
            jobs.recover().unwrap();
        }
        let failed = store.job(again.id).unwrap().unwrap();
        assert_eq!(failed.status, JobStatus::Failed);
        assert_eq!(
            failed.error.as_deref(),
            Some(
                "interrupted 3 times: a server stop cut it off in flight at each of its last 3 starts, so it is not run again"
            )
        );
        assert_eq!(
            *work.changed.lock().unwrap(),
            [
                JobStatus::Interrupted,
                JobStatus::Interrupted,
                JobStatus::Interrupted,
                JobStatus::Failed
            ]
        );
    }

    #[test]
    fn a_pause_or_stop_asked_before_a_server_stop_is_taken_at_the_next_start() {
        let work = Counting::new();
        let (_dir, store, jobs) = setup_with(&work);
        let mut ids = Vec::new();
        for (subject, request) in [(1, JobRequest::Pause), (2, JobRequest::Stop)] {
            let job = store
                .create_job(7, JobKind::BuildRelease, subject, json!({"to": 3}))
                .unwrap();
            store
                .update_job(job.id, |job| job.status = JobStatus::Running)
                .unwrap();
            jobs.request(7, job.id, request, "ada").unwrap();
            ids.push(job.id);
        }
        assert_eq!(jobs.recover().unwrap(), 0);
        let paused = store.job(ids[0]).unwrap().unwrap();
        assert_eq!(
            (paused.status, paused.message.as_str()),
            (
                JobStatus::Paused,
                "paused by ada (a server stop cut its step off)"
            )
        );
        let stopped = store.job(ids[1]).unwrap().unwrap();
        assert_eq!(stopped.status, JobStatus::Stopped);
        assert_eq!((paused.interruptions, stopped.interruptions), (0, 0));
        assert_eq!(
            *work.changed.lock().unwrap(),
            [JobStatus::Paused, JobStatus::Stopped],
            "the work hears of both"
        );
    }

    #[test]
    fn an_ended_job_never_changes_status() {
        let (_dir, store, _jobs) = setup();
        let job = store
            .create_job(7, JobKind::BuildRelease, 1, json!(null))
            .unwrap();
        store
            .update_job(job.id, |job| job.status = JobStatus::Running)
            .unwrap();
        store
            .update_job(job.id, |job| job.status = JobStatus::Succeeded)
            .unwrap();
        for next in [JobStatus::Running, JobStatus::Queued, JobStatus::Failed] {
            let err = store
                .update_job(job.id, |job| job.status = next)
                .unwrap_err();
            assert!(
                matches!(err, JobError::Transition { from: JobStatus::Succeeded, to, .. } if to == next),
                "{err}"
            );
        }
        assert_eq!(
            store.job(job.id).unwrap().unwrap().status,
            JobStatus::Succeeded
        );
        // Waiting straight to succeeded skips running: refused too.
        let other = store
            .create_job(7, JobKind::BuildRelease, 2, json!(null))
            .unwrap();
        assert!(
            store
                .update_job(other.id, |job| job.status = JobStatus::Succeeded)
                .is_err()
        );
    }
}

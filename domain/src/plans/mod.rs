//! Deploy plans (seed 002): a document that deploys many services in
//! order, stored as it was checked, and its executions, each a job of the
//! runner that operators follow, pause, stop, resume and read the report of.
//!
//! An execution holds each of its services until it ends (succeeded,
//! failed or stopped): a second execution that shares one is refused,
//! naming the one that holds it. A paused or interrupted execution still
//! holds them; an operation started by hand is not refused, and a resume
//! finds what it changed.

pub mod document;
mod execution;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;
use slipway_store::{
    Job, JobKind, JobRequest, JobStatus, PlanError, PlanRecord, Requested, Store, StoreError,
};

pub use document::{Deployment, ExecMethod, PlanDocument, PlanItem, Problem};
pub use execution::{ExecutionState, ItemRun, ItemStatus, Moment, Undo, Wave};

use crate::jobs::{self, Jobs, Work, Works};
use crate::services::Services;

/// Why a request on a plan or an execution was refused; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The plan has problems, each at its pointer, line and column.
    #[error("the plan has {} problems", .0.len())]
    Invalid(Vec<Problem>),
    /// No plan of the organisation has the id.
    #[error("no plan {0}")]
    NoPlan(u64),
    /// No execution of the organisation has the id.
    #[error("no execution {0}")]
    NoExecution(u64),
    /// The plan has an execution that has not ended.
    #[error("execution {0} of the plan has not ended: stop it first")]
    Running(u64),
    /// Another execution holds one of the plan's services.
    #[error("execution {execution} holds service {service} until it ends: wait for it, or stop it")]
    Held {
        /// The service.
        service: u64,
        /// The execution.
        execution: u64,
    },
    /// The plan deploys in a way this server cannot yet.
    #[error("{0}")]
    Unavailable(String),
    /// Services still to deploy changed since the execution started:
    /// resuming needs `force`.
    #[error("services changed since the execution started, so resuming needs force: {}", .0.join("; "))]
    Changed(Vec<String>),
    /// The execution is not in a state that allows it.
    #[error("{0}")]
    State(String),
    /// As many event streams as the server serves at once are open.
    #[error("{MAX_EVENT_STREAMS} execution event streams are open: try again later")]
    TooManyStreams,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<PlanError> for Refused {
    fn from(e: PlanError) -> Refused {
        match e {
            PlanError::NotFound(id) => Refused::NoPlan(id),
            PlanError::Running(job) => Refused::Running(job),
            PlanError::Held { service, execution } => Refused::Held { service, execution },
            PlanError::Store(e) => Refused::Store(e),
        }
    }
}

impl From<jobs::Refused> for Refused {
    fn from(e: jobs::Refused) -> Refused {
        match e {
            jobs::Refused::NotFound(id) => Refused::NoExecution(id),
            jobs::Refused::Store(e) => Refused::Store(e),
            other => Refused::State(other.to_string().replace("job", "execution")),
        }
    }
}

/// A stored plan.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct PlanView {
    /// Its id.
    pub id: u64,
    /// The plan, its defaults filled in.
    pub plan: PlanDocument,
    /// The document as it was sent.
    pub source: String,
    /// Who stored it.
    pub created_by: String,
    /// When, in ms since the Unix epoch.
    pub created_ms: u64,
}

/// An execution as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct ExecutionView {
    /// Its id.
    pub id: u64,
    /// The plan it runs.
    pub plan: u64,
    /// The execution it rolls back, when it is a rollback.
    pub rollback_of: Option<u64>,
    /// `running`, `pausing`, `stopping`, `paused`, `stopped`,
    /// `interrupted`, `succeeded` or `failed` (seed 002's statuses).
    pub status: &'static str,
    /// The plan's comment.
    pub comment: String,
    /// Who started it.
    pub by: String,
    /// What happened last.
    pub message: String,
    /// Why it failed.
    pub error: Option<String>,
    /// A pause or stop asked and not yet taken.
    pub request: Option<Requested>,
    /// The wave in progress, from 1 (past the last once all are done).
    pub wave: usize,
    /// Its waves, highest priority first.
    pub waves: Vec<Wave>,
    /// What happened, oldest first.
    pub timeline: Vec<Moment>,
    /// When it started, in ms since the Unix epoch.
    pub created_ms: u64,
    /// When it last changed.
    pub updated_ms: u64,
    /// When it ended.
    pub ended_ms: Option<u64>,
}

/// A change an execution's watchers see.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case", tag = "event")]
pub enum ExecutionEvent {
    /// The execution as it is now.
    Execution(Box<ExecutionView>),
    /// A step of one of its services' operations.
    Operation {
        /// The service.
        service: u64,
        /// The operation's job.
        operation: u64,
        /// The operation's status.
        status: &'static str,
        /// Its step.
        message: String,
    },
}

/// Seed 002's status of an execution's job.
pub fn status(job: &Job) -> &'static str {
    match (job.status, job.request.as_ref().map(|r| r.request)) {
        (JobStatus::Running, Some(JobRequest::Pause)) => "pausing",
        (JobStatus::Running, Some(JobRequest::Stop)) => "stopping",
        (JobStatus::Queued | JobStatus::Running, _) => "running",
        (other, _) => other.as_str(),
    }
}

impl ExecutionView {
    fn of(job: &Job) -> Result<ExecutionView, StoreError> {
        let state = stored_state(job)?;
        let mut timeline = state.timeline.clone();
        // How it came to rest, when it has: the runner's last word.
        if !matches!(job.status, JobStatus::Queued | JobStatus::Running) {
            timeline.push(Moment {
                at_ms: job.updated_ms,
                message: format!("{}: {}", job.status.as_str(), job.message),
            });
        }
        Ok(ExecutionView {
            id: job.id,
            plan: state.plan,
            rollback_of: state.rollback_of,
            status: status(job),
            comment: state.comment,
            by: state.by,
            message: job.message.clone(),
            error: job.error.clone(),
            request: job.request.clone(),
            wave: state.wave + 1,
            waves: state.waves,
            timeline,
            created_ms: job.created_ms,
            updated_ms: job.updated_ms,
            ended_ms: job.status.is_final().then_some(job.updated_ms),
        })
    }

    /// The report as text for people: each service's status, times and
    /// key messages, then the timeline.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let rolls_back = self
            .rollback_of
            .map(|e| format!(" (rolling back execution {e})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "execution {} of plan {}{rolls_back}: {}{}",
            self.id,
            self.plan,
            self.status,
            self.error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
        if !self.comment.is_empty() {
            let _ = writeln!(out, "comment: {}", self.comment);
        }
        let _ = writeln!(out, "started by {} at {}", self.by, time(self.created_ms));
        if let Some(ended) = self.ended_ms {
            let _ = writeln!(out, "ended at {}", time(ended));
        }
        for (n, wave) in self.waves.iter().enumerate() {
            let _ = writeln!(out, "\nwave {} (priority {}):", n + 1, wave.priority);
            for item in &wave.items {
                let what = match item.undo {
                    Some(Undo::Revision(r)) => format!("back to revision {r}"),
                    Some(Undo::Stop) => "stopped (no revision ran before)".into(),
                    None => item.deployment.as_str().into(),
                };
                let _ = writeln!(
                    out,
                    "  {} ({}) {what}: {}",
                    item.name,
                    item.service,
                    match item.status {
                        ItemStatus::Pending => "not started",
                        ItemStatus::Running => "running",
                        ItemStatus::Succeeded => "succeeded",
                        ItemStatus::Failed => "failed",
                    }
                );
                if let Some(start) = item.started_ms {
                    let end = item.ended_ms.map(time).unwrap_or_else(|| "…".into());
                    let _ = writeln!(out, "    {} → {}", time(start), end);
                }
                if item.revision_before.is_some() || item.revision_after.is_some() {
                    let _ = writeln!(
                        out,
                        "    revision {} → {}",
                        revision_name(item.revision_before),
                        revision_name(item.revision_after)
                    );
                }
                if let Some(health) = &item.health {
                    let _ = writeln!(out, "    health: {health}");
                }
                for message in &item.messages {
                    let _ = writeln!(out, "    {message}");
                }
                if let Some(error) = &item.error {
                    let _ = writeln!(out, "    error: {error}");
                }
            }
        }
        let _ = writeln!(out, "\ntimeline:");
        for moment in &self.timeline {
            let _ = writeln!(out, "  {} {}", time(moment.at_ms), moment.message);
        }
        out
    }
}

/// The state execution `job` saved.
fn stored_state(job: &Job) -> Result<ExecutionState, StoreError> {
    serde_json::from_value(job.state.clone()).map_err(|e| StoreError::Corrupt {
        tree: "jobs",
        detail: format!("execution {}: {e}", job.id),
    })
}

/// A revision for people: its number, or `none`.
fn revision_name(revision: Option<u32>) -> String {
    revision.map_or("none".into(), |r| r.to_string())
}

/// A time for people (UTC, to the millisecond).
fn time(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

/// Execution event streams the server serves at once (my choice).
pub const MAX_EVENT_STREAMS: usize = 256;

/// The organisations' plans and their executions.
pub struct Plans {
    store: Store,
    services: Arc<Services>,
    jobs: Arc<Jobs>,
    streams: Arc<tokio::sync::Semaphore>,
}

impl Plans {
    /// Plans in `store`, run by `jobs` through `services`' operations.
    pub fn new(store: Store, services: Arc<Services>, jobs: Arc<Jobs>) -> Plans {
        Plans {
            store,
            services,
            jobs,
            streams: Arc::new(tokio::sync::Semaphore::new(MAX_EVENT_STREAMS)),
        }
    }

    /// The work the job runner calls for executions.
    pub fn works(self: &Arc<Self>) -> Works {
        let work: Arc<dyn Work> = self.clone();
        Works::from([(JobKind::PlanExecution, work)])
    }

    /// Checks and stores a plan (YAML, or JSON); nothing is stored from a
    /// plan with problems.
    pub fn create(&self, organisation: u64, text: &str, by: &str) -> Result<PlanView, Refused> {
        let plan = document::parse(text, &self.checks(organisation)).map_err(Refused::Invalid)?;
        let record = self.store.create_plan(
            organisation,
            serde_json::to_value(&plan).expect("serializes"),
            text.to_string(),
            by,
        )?;
        tracing::info!(organisation, plan = record.id, by, "plan stored");
        view(record)
    }

    /// The organisation's plans, oldest first.
    pub fn list(&self, organisation: u64) -> Result<Vec<PlanView>, Refused> {
        self.store
            .organisation_plans(organisation)?
            .into_iter()
            .map(view)
            .collect()
    }

    /// The organisation's plan `id`.
    pub fn show(&self, organisation: u64, id: u64) -> Result<PlanView, Refused> {
        view(self.owned(organisation, id)?)
    }

    fn owned(&self, organisation: u64, id: u64) -> Result<PlanRecord, Refused> {
        self.store
            .plan(id)?
            .filter(|p| p.organisation == organisation)
            .ok_or(Refused::NoPlan(id))
    }

    /// Deletes plan `id`, unless an execution of it has not ended; its
    /// executions and their reports stay.
    pub fn delete(&self, organisation: u64, id: u64, by: &str) -> Result<(), Refused> {
        self.owned(organisation, id)?;
        self.store.delete_plan(id)?;
        tracing::info!(organisation, plan = id, by, "plan deleted");
        Ok(())
    }

    /// Starts an execution of plan `id`.
    pub fn run(&self, organisation: u64, id: u64, by: &str) -> Result<ExecutionView, Refused> {
        let record = self.owned(organisation, id)?;
        // Checked again as it is now: a service deleted since it was
        // stored is a problem at its pointer.
        let plan = document::parse(&record.source, &self.checks(organisation))
            .map_err(Refused::Invalid)?;
        if let Some(item) = plan
            .deploy_plan_items
            .iter()
            .find(|i| i.deployment == Deployment::CompileDeploy)
        {
            return Err(Refused::Unavailable(format!(
                "this server cannot yet run {} items (service {})",
                item.deployment.as_str(),
                item.service_id
            )));
        }
        let mut baseline = BTreeMap::new();
        let mut waves: BTreeMap<std::cmp::Reverse<i32>, Vec<ItemRun>> = BTreeMap::new();
        for (index, item) in plan.deploy_plan_items.iter().enumerate() {
            let service = self
                .store
                .service(item.service_id)?
                .filter(|s| s.organisation == organisation)
                .ok_or(Refused::State(format!(
                    "service {} was deleted meanwhile",
                    item.service_id
                )))?;
            baseline.insert(service.id, (service.revision, service.running));
            waves
                .entry(std::cmp::Reverse(item.priority))
                .or_default()
                .push(ItemRun {
                    item: index,
                    service: service.id,
                    name: service.name,
                    deployment: item.deployment,
                    sequential: item.container_exec_method == ExecMethod::Sequential,
                    labels: item.labels(),
                    source: item
                        .http_src_uri
                        .clone()
                        .filter(|_| item.deployment == Deployment::HttpUploadDeploy),
                    undo: None,
                    status: ItemStatus::Pending,
                    operation: None,
                    started_ms: None,
                    ended_ms: None,
                    revision_before: service.running,
                    revision_after: None,
                    health: None,
                    messages: Vec::new(),
                    error: None,
                });
        }
        let waves = waves
            .into_iter()
            .map(|(priority, items)| Wave {
                priority: priority.0,
                items,
            })
            .collect();
        let services: Vec<u64> = baseline.keys().copied().collect();
        let state = ExecutionState::new(id, plan.comment, by, waves, baseline);
        let job = self.store.start_execution(
            organisation,
            id,
            &services,
            serde_json::to_value(&state).expect("serializes"),
        )?;
        tracing::info!(
            organisation,
            plan = id,
            execution = job.id,
            by,
            "plan execution queued"
        );
        self.jobs.wake();
        Ok(ExecutionView::of(&job)?)
    }

    fn execution_job(&self, organisation: u64, id: u64) -> Result<Job, Refused> {
        self.jobs
            .find(organisation, id)?
            .filter(|j| j.kind == JobKind::PlanExecution)
            .ok_or(Refused::NoExecution(id))
    }

    /// The organisation's execution `id`; also its report.
    pub fn execution(&self, organisation: u64, id: u64) -> Result<ExecutionView, Refused> {
        Ok(ExecutionView::of(&self.execution_job(organisation, id)?)?)
    }

    /// The organisation's executions, oldest first.
    pub fn executions(&self, organisation: u64) -> Result<Vec<ExecutionView>, Refused> {
        self.store
            .organisation_executions(organisation)?
            .iter()
            .map(|job| Ok(ExecutionView::of(job)?))
            .collect()
    }

    /// Execution `id` now, then each change of it and each step of its
    /// services' operations, until it ends.
    pub fn events(
        &self,
        organisation: u64,
        id: u64,
    ) -> Result<futures::stream::BoxStream<'static, ExecutionEvent>, Refused> {
        use futures::StreamExt;
        let permit = self
            .streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::TooManyStreams)?;
        // Subscribed before reading, so no change falls in between.
        let receiver = self.jobs.subscribe();
        let first = self.execution(organisation, id)?;
        let jobs = self.jobs.clone();
        let read = move || {
            let job = jobs.find(organisation, id).ok().flatten()?;
            ExecutionView::of(&job).ok()
        };
        struct Follow {
            receiver: tokio::sync::broadcast::Receiver<crate::jobs::JobEvent>,
            last: Option<ExecutionView>,
            first: bool,
        }
        let stream = futures::stream::unfold(
            Follow {
                receiver,
                last: Some(first),
                first: true,
            },
            move |mut follow| {
                let read = read.clone();
                async move {
                    let last = follow.last.take()?;
                    if std::mem::take(&mut follow.first) {
                        follow.last = Some(last.clone());
                        return Some((ExecutionEvent::Execution(Box::new(last)), follow));
                    }
                    if last.ended_ms.is_some() {
                        return None;
                    }
                    let watched: Vec<u64> = last
                        .waves
                        .iter()
                        .flat_map(|w| w.items.iter().filter_map(|i| i.operation))
                        .chain([id])
                        .collect();
                    loop {
                        match follow.receiver.recv().await {
                            Ok(event) if event.job.id != id && watched.contains(&event.job.id) => {
                                follow.last = Some(last);
                                let op = event.job;
                                return Some((
                                    ExecutionEvent::Operation {
                                        service: op.subject,
                                        operation: op.id,
                                        status: op.status.as_str(),
                                        message: op.message,
                                    },
                                    follow,
                                ));
                            }
                            Ok(event) if event.job.id == id => {}
                            Ok(_) => continue,
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                        }
                        let now = read()?;
                        follow.last = Some(now.clone());
                        return Some((ExecutionEvent::Execution(Box::new(now)), follow));
                    }
                }
            },
        );
        Ok(stream
            .map(move |event| {
                let _held = &permit;
                event
            })
            .boxed())
    }

    /// Asks execution `id` to pause or stop: the services in flight
    /// finish and no more start.
    pub fn request(
        &self,
        organisation: u64,
        id: u64,
        request: JobRequest,
        by: &str,
    ) -> Result<ExecutionView, Refused> {
        self.execution_job(organisation, id)?;
        let job = self.jobs.request(organisation, id, request, by)?;
        tracing::info!(
            organisation,
            execution = id,
            ?request,
            by,
            "execution asked"
        );
        Ok(ExecutionView::of(&job)?)
    }

    /// Resumes a paused or interrupted execution with the services not yet
    /// done. Services still to deploy whose revisions changed since the
    /// execution last saw them are refused unless `force`.
    pub fn resume(
        &self,
        organisation: u64,
        id: u64,
        force: bool,
        by: &str,
    ) -> Result<ExecutionView, Refused> {
        let job = self.execution_job(organisation, id)?;
        if !matches!(job.status, JobStatus::Paused | JobStatus::Interrupted) {
            return Err(Refused::State(format!(
                "execution {id} is {}: only a paused or interrupted execution resumes",
                status(&job)
            )));
        }
        let state = stored_state(&job)?;
        let changed = self.changed_since(&state)?;
        if !changed.is_empty() && !force {
            return Err(Refused::Changed(changed));
        }
        // How it came to rest, and that it resumed, in its timeline; what
        // runs now is what the next resume compares with.
        let mut resumed = state;
        resumed.timeline.push(Moment {
            at_ms: job.updated_ms,
            message: format!("{}: {}", job.status.as_str(), job.message),
        });
        resumed.note(if changed.is_empty() {
            format!("resumed by {by}")
        } else {
            format!("resumed by {by} with force: {}", changed.join("; "))
        });
        for (service, seen) in resumed.baseline.iter_mut() {
            if let Some(record) = self.store.service(*service)? {
                *seen = (record.revision, record.running);
            }
        }
        let resumed = serde_json::to_value(&resumed).expect("serializes");
        // Paused or interrupted, so no step writes the state meanwhile.
        self.jobs
            .write(job.id, |job| job.state = resumed.clone())
            .map_err(jobs::Refused::from)?;
        let job = self.jobs.resume(organisation, id, by)?;
        tracing::info!(organisation, execution = id, force, by, "execution resumed");
        Ok(ExecutionView::of(&job)?)
    }

    /// The services still to deploy whose revisions changed since the
    /// execution last saw them, each described.
    fn changed_since(&self, state: &ExecutionState) -> Result<Vec<String>, StoreError> {
        let mut changed = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for item in state.items() {
            if item.status != ItemStatus::Pending || !seen.insert(item.service) {
                continue;
            }
            let Some(&(newest, running)) = state.baseline.get(&item.service) else {
                continue;
            };
            match self.store.service(item.service)? {
                None => changed.push(format!("{} ({}) was deleted", item.name, item.service)),
                Some(now) if (now.revision, now.running) != (newest, running) => {
                    changed.push(format!(
                        "{} ({}): newest revision {newest} → {}, running {} → {}",
                        item.name,
                        item.service,
                        now.revision,
                        revision_name(running),
                        revision_name(now.running)
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(changed)
    }

    /// Starts an execution that puts back what ended execution `id`
    /// changed: each service it left on another revision goes back on the
    /// one it ran before (as a new revision with its settings and image),
    /// or is stopped when none ran before, in reverse wave order. Services
    /// changed since are refused, naming them, unless `force`.
    pub fn rollback(
        &self,
        organisation: u64,
        id: u64,
        force: bool,
        by: &str,
    ) -> Result<ExecutionView, Refused> {
        let job = self.execution_job(organisation, id)?;
        if !job.status.is_final() {
            return Err(Refused::State(format!(
                "execution {id} is {}: an execution is rolled back once it has ended",
                status(&job)
            )));
        }
        let done = stored_state(&job)?;
        let mut changed = Vec::new();
        let mut baseline = BTreeMap::new();
        // What each service ran before the execution first touched it.
        let mut before = BTreeMap::new();
        for item in done.items() {
            before.entry(item.service).or_insert(item.revision_before);
        }
        let mut waves = Vec::new();
        for wave in done.waves.iter().rev() {
            let mut items = Vec::new();
            for item in wave.items.iter().rev() {
                let first = before.get(&item.service).copied().flatten();
                if item.status != ItemStatus::Succeeded
                    || first == item.revision_after
                    || baseline.contains_key(&item.service)
                {
                    continue;
                }
                let Some(now) = self
                    .store
                    .service(item.service)?
                    .filter(|s| s.organisation == organisation)
                else {
                    changed.push(format!("{} ({}) was deleted", item.name, item.service));
                    continue;
                };
                if done.baseline.get(&item.service) != Some(&(now.revision, now.running)) {
                    changed.push(format!(
                        "{} ({}) is at revision {} (running {}) since",
                        item.name,
                        item.service,
                        now.revision,
                        revision_name(now.running)
                    ));
                    if !force {
                        continue;
                    }
                }
                baseline.insert(now.id, (now.revision, now.running));
                let mut undo = item.clone();
                undo.undo = Some(match first {
                    Some(revision) => Undo::Revision(revision),
                    None => Undo::Stop,
                });
                undo.status = ItemStatus::Pending;
                undo.operation = None;
                (undo.started_ms, undo.ended_ms) = (None, None);
                undo.revision_before = now.running;
                (undo.revision_after, undo.health, undo.error) = (None, None, None);
                undo.messages.clear();
                items.push(undo);
            }
            if !items.is_empty() {
                waves.push(Wave {
                    priority: wave.priority,
                    items,
                });
            }
        }
        if !changed.is_empty() && !force {
            return Err(Refused::Changed(changed));
        }
        if waves.is_empty() {
            return Err(Refused::State(format!(
                "execution {id} left no service on another revision: nothing to roll back"
            )));
        }
        let services: Vec<u64> = baseline.keys().copied().collect();
        let mut state = ExecutionState::new(done.plan, done.comment.clone(), by, waves, baseline);
        state.rollback_of = Some(id);
        state.note(if changed.is_empty() {
            format!("rolls back execution {id}")
        } else {
            format!("rolls back execution {id}, forced: {}", changed.join("; "))
        });
        let job = self.store.start_execution(
            organisation,
            id,
            &services,
            serde_json::to_value(&state).expect("serializes"),
        )?;
        tracing::info!(
            organisation,
            execution = job.id,
            rolls_back = id,
            force,
            by,
            "rollback queued"
        );
        self.jobs.wake();
        Ok(ExecutionView::of(&job)?)
    }

    /// Deletes execution `id`, unless it is running, pausing or stopping.
    pub fn delete_execution(&self, organisation: u64, id: u64, by: &str) -> Result<(), Refused> {
        let job = self.execution_job(organisation, id)?;
        if matches!(job.status, JobStatus::Queued | JobStatus::Running) {
            return Err(Refused::State(format!(
                "execution {id} is {}: stop it first",
                status(&job)
            )));
        }
        self.jobs.delete(organisation, id)?;
        tracing::info!(organisation, execution = id, by, "execution deleted");
        Ok(())
    }
}

/// What an organisation's plans are checked against: its services, and
/// the source hosts the operator allows.
struct OrganisationChecks<'a> {
    plans: &'a Plans,
    organisation: u64,
}

impl document::Checks for OrganisationChecks<'_> {
    fn owns(&self, id: u64) -> bool {
        self.plans
            .store
            .service(id)
            .ok()
            .flatten()
            .is_some_and(|s| s.organisation == self.organisation)
    }

    fn source(&self, url: &str) -> Result<(), String> {
        self.plans.services.check_source(url)
    }
}

impl Plans {
    fn checks(&self, organisation: u64) -> OrganisationChecks<'_> {
        OrganisationChecks {
            plans: self,
            organisation,
        }
    }
}

fn view(record: PlanRecord) -> Result<PlanView, Refused> {
    let plan = serde_json::from_value(record.plan).map_err(|e| StoreError::Corrupt {
        tree: "plans",
        detail: e.to_string(),
    })?;
    Ok(PlanView {
        id: record.id,
        plan,
        source: record.source,
        created_by: record.created_by,
        created_ms: record.created_ms,
    })
}

//! An execution of a plan as a job: waves by priority, the services of a
//! wave at the same time, each through its service's operation.
//!
//! A step starts the current wave's services, or waits until one of their
//! operations ends or a pause or stop is asked. Only when no service is in
//! flight may a pause or stop take effect ([`Step::Next`]); otherwise the
//! step is a [`Step::Wait`], so `pausing` and `stopping` wait for what is
//! being deployed now. A wave with a failed service fails the execution
//! once the rest of it has finished; no later wave starts.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use slipway_store::{Job, JobRequest, JobStatus, now_ms};

use super::Plans;
use super::document::Deployment;
use crate::jobs::{Advance, Step, Work};
use crate::services::source::Source;
use crate::services::{self, Operation, OperationRequest, OperationState};

/// Between two looks at the operations when no event came (a missed
/// event costs at most this).
const LOOK: Duration = Duration::from_secs(1);
/// Messages kept of each service's operation.
const MAX_MESSAGES: usize = 20;

/// Where one service of an execution is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ItemStatus {
    /// Not started.
    Pending,
    /// Its operation runs.
    Running,
    /// Its operation succeeded.
    Succeeded,
    /// Its operation failed, or could not start.
    Failed,
}

/// What a rollback does to a service instead of its item's deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Undo {
    /// Deploys a new revision with the settings and image of this one.
    Revision(u32),
    /// Stops it: no revision ran before.
    Stop,
}

/// One service of an execution: what is done to it and how that went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct ItemRun {
    /// The item's index in the plan.
    pub item: usize,
    /// The service.
    pub service: u64,
    /// Its name when the execution started.
    pub name: String,
    /// What is done to it.
    pub deployment: Deployment,
    /// One container at a time.
    pub sequential: bool,
    /// Labels put on what is deployed.
    pub labels: BTreeMap<String, String>,
    /// The code package it builds from (`HTTP_UPLOAD_DEPLOY`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// In a rollback, what undoes the deployment instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<Undo>,
    /// Where it is.
    pub status: ItemStatus,
    /// Its operation's job.
    pub operation: Option<u64>,
    /// When its operation started, in ms since the Unix epoch.
    pub started_ms: Option<u64>,
    /// When it ended.
    pub ended_ms: Option<u64>,
    /// The revision the service ran before.
    pub revision_before: Option<u32>,
    /// The revision it runs after.
    pub revision_after: Option<u32>,
    /// The health its operation reached.
    pub health: Option<String>,
    /// What its operation did, in order (the last few).
    pub messages: Vec<String>,
    /// Why it failed.
    pub error: Option<String>,
}

/// The services of one priority, deployed at the same time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Wave {
    /// Their priority.
    pub priority: i32,
    /// Its services.
    pub items: Vec<ItemRun>,
}

/// Something that happened to an execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Moment {
    /// When, in ms since the Unix epoch.
    pub at_ms: u64,
    /// What.
    pub message: String,
}

/// An execution's state: what its next step resumes from, and its report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionState {
    /// The plan.
    pub plan: u64,
    /// The execution this one rolls back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<u64>,
    /// The plan's comment.
    pub comment: String,
    /// Who started it.
    pub by: String,
    /// The waves, highest priority first.
    pub waves: Vec<Wave>,
    /// The wave in progress (`waves.len()` once all are done).
    pub wave: usize,
    /// What happened, oldest first.
    pub timeline: Vec<Moment>,
    /// Each service's newest and running revision as the execution last
    /// saw it: a resume finds what changed by hand since.
    pub baseline: BTreeMap<u64, (u32, Option<u32>)>,
    /// The request last noted in the timeline (its time).
    #[serde(default)]
    noted_request: Option<u64>,
}

impl ExecutionState {
    /// A new execution's state.
    pub(super) fn new(
        plan: u64,
        comment: String,
        by: &str,
        waves: Vec<Wave>,
        baseline: BTreeMap<u64, (u32, Option<u32>)>,
    ) -> ExecutionState {
        let services: usize = waves.iter().map(|w| w.items.len()).sum();
        ExecutionState {
            plan,
            rollback_of: None,
            comment,
            by: by.into(),
            timeline: vec![Moment {
                at_ms: now_ms(),
                message: format!(
                    "started by {by}: {services} services in {} waves",
                    waves.len()
                ),
            }],
            waves,
            wave: 0,
            baseline,
            noted_request: None,
        }
    }

    /// Adds a moment to the timeline.
    pub(super) fn note(&mut self, message: impl Into<String>) {
        // Bounded: a few moments per service, and per pause or resume.
        if self.timeline.len() < 10_000 {
            self.timeline.push(Moment {
                at_ms: now_ms(),
                message: message.into(),
            });
        }
    }

    /// Every service, in wave order.
    pub fn items(&self) -> impl Iterator<Item = &ItemRun> {
        self.waves.iter().flat_map(|w| w.items.iter())
    }
}

fn saved(state: &ExecutionState) -> serde_json::Value {
    serde_json::to_value(state).expect("serializes")
}

impl Plans {
    /// One step of an execution.
    async fn step(&self, job: &Job) -> Step {
        let mut state: ExecutionState = match serde_json::from_value(job.state.clone()) {
            Ok(state) => state,
            Err(e) => return Step::Failed(format!("the execution's state does not decode: {e}")),
        };
        // Subscribed before anything is read, so no change is missed.
        let mut events = self.jobs.subscribe();
        if let Some(asked) = &job.request
            && state.noted_request != Some(asked.at_ms)
        {
            state.noted_request = Some(asked.at_ms);
            let what = match asked.request {
                JobRequest::Pause => "pause",
                JobRequest::Stop => "stop",
            };
            state.note(format!(
                "{what} asked by {}: the services in flight finish, no more start",
                asked.by
            ));
        }
        let wave = state.wave;
        if wave >= state.waves.len() {
            return Step::Done(summary(&state));
        }
        let mut changed = self.refresh(job, &mut state, wave);
        loop {
            let items = &state.waves[wave].items;
            let running = items.iter().any(|i| i.status == ItemStatus::Running);
            let pending = items.iter().any(|i| i.status == ItemStatus::Pending);
            let failed = items.iter().any(|i| i.status == ItemStatus::Failed);
            if !running && (!pending || failed) {
                return self.wave_done(job, &mut state, wave);
            }
            if !running && job.request.is_some() {
                // At rest between services: the pause or stop takes effect.
                return Step::Next {
                    message: format!("wave {} of {} not started", wave + 1, state.waves.len()),
                    state: saved(&state),
                };
            }
            if pending && job.request.is_none() && !failed {
                self.start_wave(job, &mut state, wave);
                return Step::Wait {
                    message: progress(&state, wave),
                    state: saved(&state),
                };
            }
            if changed {
                return Step::Wait {
                    message: progress(&state, wave),
                    state: saved(&state),
                };
            }
            // Something in flight: wait for one of its operations to end,
            // or for a request on the execution.
            let watched: Vec<u64> = state.waves[wave]
                .items
                .iter()
                .filter_map(|i| i.operation)
                .chain([job.id])
                .collect();
            let _ = tokio::time::timeout(LOOK, async {
                loop {
                    match events.recv().await {
                        Ok(event) if watched.contains(&event.job.id) => break,
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                        Err(_) => std::future::pending::<()>().await,
                    }
                }
            })
            .await;
            if self
                .store
                .job(job.id)
                .ok()
                .flatten()
                .is_some_and(|now| now.request != job.request)
            {
                // A request came: the next step sees it.
                return Step::Wait {
                    message: progress(&state, wave),
                    state: saved(&state),
                };
            }
            changed = self.refresh(job, &mut state, wave);
        }
    }

    /// The end of a wave: the execution fails when one of its services
    /// did, ends when it was the last, and otherwise goes on to the next.
    /// The state is written first when the execution ends, as an ending
    /// step carries none.
    fn wave_done(&self, job: &Job, state: &mut ExecutionState, wave: usize) -> Step {
        let step = self.next_wave(state, wave);
        if matches!(step, Step::Failed(_) | Step::Done(_)) {
            let saved = saved(state);
            if let Err(e) = self.jobs.write(job.id, |job| job.state = saved.clone()) {
                return Step::Unrecorded(e.to_string());
            }
        }
        step
    }

    fn next_wave(&self, state: &mut ExecutionState, wave: usize) -> Step {
        let failed: Vec<String> = state.waves[wave]
            .items
            .iter()
            .filter(|i| i.status == ItemStatus::Failed)
            .map(|i| {
                format!(
                    "{} ({}): {}",
                    i.name,
                    i.service,
                    i.error.as_deref().unwrap_or("failed")
                )
            })
            .collect();
        if !failed.is_empty() {
            let total = state.waves.len();
            return Step::Failed(format!(
                "wave {} of {total} failed, so no later wave started: {}",
                wave + 1,
                failed.join("; ")
            ));
        }
        state.note(format!(
            "wave {} of {} (priority {}) succeeded",
            wave + 1,
            state.waves.len(),
            state.waves[wave].priority
        ));
        state.wave = wave + 1;
        if state.wave == state.waves.len() {
            return Step::Done(summary(state));
        }
        Step::Next {
            message: format!("wave {} of {} done", wave + 1, state.waves.len()),
            state: saved(state),
        }
    }

    /// Starts the pending services of `wave`, each through its operation.
    fn start_wave(&self, job: &Job, state: &mut ExecutionState, wave: usize) {
        let by = format!("{} (execution {})", state.by, job.id);
        let mut started = Vec::new();
        for item in &mut state.waves[wave].items {
            if item.status != ItemStatus::Pending {
                continue;
            }
            item.started_ms = Some(now_ms());
            item.ended_ms = None;
            item.error = None;
            let record = match self.store.service(item.service) {
                Ok(Some(r)) if r.organisation == job.organisation => r,
                Ok(_) => {
                    fail(item, format!("service {} was deleted", item.service));
                    continue;
                }
                Err(e) => {
                    fail(item, e.to_string());
                    continue;
                }
            };
            item.revision_before = record.running;
            let undo = match item.undo {
                Some(Undo::Revision(revision)) => {
                    match self
                        .services
                        .revert(job.organisation, item.service, revision, &by)
                    {
                        Ok(_) => Some(Operation::Deploy),
                        Err(e) => {
                            fail(item, format!("revision {revision} cannot be restored: {e}"));
                            continue;
                        }
                    }
                }
                Some(Undo::Stop) => Some(Operation::Stop),
                None => None,
            };
            let (operation, source) = match (undo, item.deployment, &item.source) {
                (Some(undo), ..) => (undo, None),
                (None, Deployment::Start, _) => (Operation::Start, None),
                (None, Deployment::Stop, _) => (Operation::Stop, None),
                (None, Deployment::Restart, _) => (Operation::Restart, None),
                (None, Deployment::HttpUploadDeploy, Some(url)) => (
                    Operation::Deploy,
                    Some(Source::Package { url: url.clone() }),
                ),
                (None, deployment, _) => {
                    fail(
                        item,
                        format!("this server cannot run {} items yet", deployment.as_str()),
                    );
                    continue;
                }
            };
            let request = OperationRequest {
                sequential: item.sequential,
                labels: item.labels.clone(),
                source,
            };
            match self
                .services
                .operate(job.organisation, item.service, operation, request, &by)
            {
                Ok(op) => {
                    item.operation = Some(op.id);
                    item.status = ItemStatus::Running;
                    started.push(format!("{} ({})", item.name, item.service));
                }
                Err(services::Refused::Busy(other)) => fail(
                    item,
                    format!(
                        "operation {other}, started outside this execution, is working on the service"
                    ),
                ),
                Err(e) => fail(item, e.to_string()),
            }
        }
        let total = state.waves.len();
        let priority = state.waves[wave].priority;
        if !started.is_empty() {
            state.note(format!(
                "wave {} of {total} (priority {priority}) started: {}",
                wave + 1,
                started.join(", ")
            ));
        }
        for item in state.waves[wave].items.clone() {
            if item.status == ItemStatus::Failed {
                state.note(format!(
                    "{} ({}) failed: {}",
                    item.name,
                    item.service,
                    item.error.unwrap_or_default()
                ));
            }
        }
    }

    /// Takes in what the operations of `wave` came to; answers whether any
    /// ended.
    fn refresh(&self, job: &Job, state: &mut ExecutionState, wave: usize) -> bool {
        let mut ended = Vec::new();
        for (i, item) in state.waves[wave].items.iter_mut().enumerate() {
            let (ItemStatus::Running, Some(id)) = (item.status, item.operation) else {
                continue;
            };
            let op = match self.store.job(id) {
                Ok(Some(op)) if op.organisation == job.organisation => op,
                Ok(_) => {
                    fail(item, format!("operation {id} is gone"));
                    ended.push(i);
                    continue;
                }
                Err(_) => continue,
            };
            if !op.status.is_final() {
                continue;
            }
            let done: Option<OperationState> = serde_json::from_value(op.state.clone()).ok();
            if let Some(done) = &done {
                let skip = done.applied.len().saturating_sub(MAX_MESSAGES);
                item.messages = done.applied[skip..].to_vec();
                item.health = done.health.clone();
            }
            item.ended_ms = Some(op.updated_ms);
            match op.status {
                JobStatus::Succeeded => {
                    item.status = ItemStatus::Succeeded;
                    let stops = item.undo == Some(Undo::Stop)
                        || (item.undo.is_none() && item.deployment == Deployment::Stop);
                    item.revision_after = if stops {
                        item.revision_before
                    } else {
                        done.map(|d| d.revision).or(item.revision_before)
                    };
                    item.messages.push(op.message.clone());
                }
                JobStatus::Failed => {
                    item.status = ItemStatus::Failed;
                    item.error = op.error.clone().or(Some(op.message.clone()));
                }
                _ => {
                    item.status = ItemStatus::Failed;
                    item.error = Some(format!("its operation {id} was stopped: {}", op.message));
                }
            }
            ended.push(i);
        }
        for &i in &ended {
            let item = state.waves[wave].items[i].clone();
            if let Ok(Some(record)) = self.store.service(item.service) {
                state
                    .baseline
                    .insert(item.service, (record.revision, record.running));
            }
            state.note(match item.status {
                ItemStatus::Succeeded => format!("{} ({}) succeeded", item.name, item.service),
                _ => format!(
                    "{} ({}) failed: {}",
                    item.name,
                    item.service,
                    item.error.unwrap_or_default()
                ),
            });
        }
        !ended.is_empty()
    }
}

fn fail(item: &mut ItemRun, error: String) {
    item.status = ItemStatus::Failed;
    item.error = Some(error);
    item.ended_ms = Some(now_ms());
}

/// Where a wave is, as the job's message.
fn progress(state: &ExecutionState, wave: usize) -> String {
    let items = &state.waves[wave].items;
    let count = |s: ItemStatus| items.iter().filter(|i| i.status == s).count();
    format!(
        "wave {} of {}: {} running, {} succeeded, {} failed",
        wave + 1,
        state.waves.len(),
        count(ItemStatus::Running),
        count(ItemStatus::Succeeded),
        count(ItemStatus::Failed),
    )
}

fn summary(state: &ExecutionState) -> String {
    format!(
        "every service deployed: {} services in {} waves",
        state.items().count(),
        state.waves.len()
    )
}

impl Work for Plans {
    fn advance<'a>(&'a self, job: &'a Job) -> Advance<'a> {
        Box::pin(self.step(job))
    }

    fn changed(&self, job: &Job) {
        // Not running, so nothing else writes its state now.
        if job.status == JobStatus::Interrupted {
            let _ = self.jobs.write(job.id, |job| {
                if let Ok(mut state) = serde_json::from_value::<ExecutionState>(job.state.clone()) {
                    state.note("interrupted by a server stop: resume it to go on");
                    job.state = saved(&state);
                }
            });
        }
    }
}

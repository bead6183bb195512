//! Service operations as jobs: each step does one part (prepare, one
//! replica, one health poll) and saves where it is, so a server stop
//! resumes the operation where it was, and applying the same revision again
//! changes nothing that already runs as planned.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use slipway_runtime::kinds::{Health, Observed, Probe, Rollout, Service};
use slipway_store::{Job, ServiceRecord, now_ms};

use super::source::Source;
use super::spec::ServiceSpec;
use super::{OperationRequest, Services, health_words};
use crate::jobs::{Advance, Step, Work};
use crate::targets::docker::{DockerDriver, Plan, plan};
use crate::targets::{Driver, Target};

mod kubernetes;

/// Between two health polls.
const POLL: Duration = Duration::from_millis(100);
/// An operation waits this long for health at least; a health check's own
/// interval and retries can make it longer, up to [`MAX_WAIT_MS`].
const MIN_WAIT_MS: u64 = 120_000;
/// The longest an operation waits for health (my choice), so a service that
/// never turns healthy gives its slot back.
const MAX_WAIT_MS: u64 = 15 * 60_000;

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    /// Applies the newest revision.
    Deploy,
    /// Starts what the running revision left stopped.
    Start,
    /// Stops the containers or pods, keeping them.
    Stop,
    /// Restarts them.
    Restart,
    /// Removes everything of the service, then the service.
    Delete,
}

/// Where an operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Phase {
    /// Fetch the code, build and push its image, make it a new revision.
    Build,
    /// Render, check, pull, create the network and volumes.
    Prepare,
    /// One replica (sequential) or all of them (parallel).
    Replicas,
    /// Poll health until healthy, failed or out of time.
    Wait,
    /// Remove what no longer belongs.
    Clean,
}

/// The state an operation's next step resumes from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperationState {
    /// What it does.
    pub operation: Operation,
    /// The revision it applies.
    pub revision: u32,
    /// One container at a time.
    pub sequential: bool,
    /// Labels it adds.
    pub labels: BTreeMap<String, String>,
    /// The code a deploy builds its revision from first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    phase: Phase,
    /// Replicas done, in the replicas phase.
    done: u32,
    /// What it has changed, in order: the report.
    pub applied: Vec<String>,
    /// When waiting for health stops.
    deadline_ms: Option<u64>,
    /// The health reached.
    pub health: Option<String>,
    /// Who asked.
    pub by: String,
}

impl OperationState {
    /// A new operation's state.
    pub fn new(
        operation: Operation,
        revision: u32,
        request: OperationRequest,
        by: &str,
    ) -> OperationState {
        let phase = match (&request.source, operation) {
            (Some(_), Operation::Deploy) => Phase::Build,
            _ => Phase::Prepare,
        };
        OperationState {
            operation,
            revision,
            sequential: request.sequential,
            labels: request.labels,
            source: request.source,
            phase,
            done: 0,
            applied: Vec::new(),
            deadline_ms: None,
            health: None,
            by: by.into(),
        }
    }
}

/// What one step needs: the service, its revision rendered, the target.
struct Context {
    record: ServiceRecord,
    spec: ServiceSpec,
    service: Service,
    target: Target,
}

fn next(state: &OperationState, message: impl Into<String>) -> Step {
    Step::Next {
        state: serde_json::to_value(state).expect("serializes"),
        message: message.into(),
    }
}

impl Services {
    fn context(&self, job: &Job, state: &OperationState) -> Result<Context, Step> {
        let record = match self.store.service(job.subject) {
            Ok(Some(record)) => record,
            Ok(None) => return Err(Step::Stopped("the service was deleted".into())),
            Err(e) => return Err(Step::Unrecorded(e.to_string())),
        };
        let revision = match self.store.service_revision(record.id, state.revision) {
            Ok(Some(revision)) => revision,
            Ok(None) => {
                return Err(Step::Failed(format!(
                    "revision {} is missing",
                    state.revision
                )));
            }
            Err(e) => return Err(Step::Unrecorded(e.to_string())),
        };
        let spec: ServiceSpec = serde_json::from_value(revision.spec.clone()).map_err(|e| {
            Step::Failed(format!("revision {} does not decode: {e}", state.revision))
        })?;
        let target = self
            .targets
            .open(record.organisation, &record.target)
            .map_err(Step::Failed)?;
        let rollout = if state.sequential {
            Rollout::Sequential
        } else {
            Rollout::Parallel
        };
        let service =
            self.rendered_service(&target, &record, &revision, &spec, &state.labels, rollout);
        Ok(Context {
            record,
            spec,
            service,
            target,
        })
    }

    async fn step(&self, job: &Job) -> Step {
        let mut state: OperationState = match serde_json::from_value(job.state.clone()) {
            Ok(state) => state,
            Err(e) => return Step::Failed(format!("the operation's state does not decode: {e}")),
        };
        let context = match self.context(job, &state) {
            Ok(context) => context,
            Err(step) => return step,
        };
        let stepped = match (context.target.driver().clone(), state.phase) {
            (_, Phase::Build) => self.build(job, &context, &mut state).await,
            (Driver::Docker(docker), _) => docker_step(self, &docker, &context, &mut state).await,
            (Driver::Kubernetes(kube), _) => {
                kubernetes::step(self, &kube, &context, &mut state).await
            }
        };
        match stepped {
            Ok(step) => step,
            Err(error) => {
                state.applied.push(format!("failed: {error}"));
                Step::Failed(if state.applied.len() > 1 {
                    format!(
                        "{error} (applied before: {})",
                        state.applied[..state.applied.len() - 1].join("; ")
                    )
                } else {
                    error
                })
            }
        }
    }
}

impl Services {
    /// The build phase: the source fetched and built by the server's
    /// Docker Engine, pushed where the organisation's images go, and the
    /// image made the service's newest revision, which the deploy applies.
    async fn build(
        &self,
        job: &Job,
        context: &Context,
        state: &mut OperationState,
    ) -> Result<Step, String> {
        let source = state.source.clone().ok_or("the build has no source")?;
        let record = &context.record;
        let built = self
            .sources
            .build(job, record, &source, &self.registries)
            .await?;
        let mut spec = context.spec.clone();
        spec.image = Some(built.pinned.clone());
        spec.release = None;
        let view = self
            .revise(record.organisation, record.id, spec, &state.by)
            .map_err(|e| format!("the built image cannot be the service's revision: {e}"))?;
        state.applied.push(format!(
            "built {} from {} ({} build steps)",
            built.pinned,
            source.describe(),
            built.steps
        ));
        state.revision = view.revision;
        state.phase = Phase::Prepare;
        Ok(next(state, format!("built revision {}", view.revision)))
    }
}

/// The wait's deadline for `spec`: long enough for its health check to
/// pass on every replica.
fn wait_ms(spec: &ServiceSpec) -> u64 {
    let check = spec.health_check.as_ref().map_or(0, |c| {
        u64::from(c.interval_s) * u64::from(c.retries + 1) * 1000
    });
    MIN_WAIT_MS.max(check * 2).min(MAX_WAIT_MS)
}

/// What was applied, as the operation reports it.
fn report(state: &OperationState) -> String {
    if state.applied.is_empty() {
        "nothing to change".to_string()
    } else {
        state.applied.join("; ")
    }
}

/// What a health poll's judgement means for the operation: the next poll,
/// a failure, or `None` once healthy (or degraded).
async fn judged(
    health: Health,
    context: &Context,
    state: &mut OperationState,
) -> Result<Option<Step>, String> {
    let (word, _) = health_words(&health);
    state.health = Some(word.clone());
    match health {
        Health::Healthy | Health::Degraded(_) => Ok(None),
        Health::Failed(reason) => Err(format!("the service failed: {reason}")),
        Health::Progressing(detail) => {
            if state.deadline_ms.is_some_and(|d| now_ms() > d) {
                return Err(format!(
                    "not healthy in {} s: {detail}",
                    wait_ms(&context.spec) / 1000
                ));
            }
            tokio::time::sleep(POLL).await;
            Ok(Some(next(state, format!("{word}: {detail}"))))
        }
    }
}

/// Records that the service runs the operation's revision: its end.
fn deployed(services: &Services, id: u64, state: &OperationState) -> Result<Step, String> {
    services
        .store
        .set_service_running(id, Some(state.revision))
        .map_err(|e| e.to_string())?;
    Ok(Step::Done(format!(
        "revision {} is {}: {}",
        state.revision,
        state.health.as_deref().unwrap_or("healthy"),
        report(state)
    )))
}

/// Renders the service and checks what was rendered.
async fn render(docker: &DockerDriver, context: &Context) -> Result<Plan, String> {
    let rendered = context.target.render(&context.service).await?;
    plan(&rendered, &context.service, docker.policy()).map_err(|e| e.to_string())
}

/// Refuses a service the Docker host cannot hold, naming the shortfall.
async fn check_capacity(docker: &DockerDriver, context: &Context) -> Result<(), String> {
    let asked = context.spec.requests();
    let replicas = u64::from(context.spec.replicas);
    let (cpu, memory) = (
        asked.cpu_millis.unwrap_or(0) * replicas,
        asked.memory_bytes.unwrap_or(0) * replicas,
    );
    if cpu == 0 && memory == 0 {
        return Ok(());
    }
    let (has_cpu, has_memory) = docker.capacity().await.map_err(|e| e.to_string())?;
    let (used_cpu, used_memory) = docker
        .requested(context.record.id)
        .await
        .map_err(|e| e.to_string())?;
    let free_cpu = has_cpu.saturating_sub(used_cpu);
    let free_memory = has_memory.saturating_sub(used_memory);
    let mut short = Vec::new();
    if cpu > free_cpu {
        short.push(format!(
            "CPU: {cpu}m requested, {free_cpu}m free of {has_cpu}m"
        ));
    }
    if memory > free_memory {
        short.push(format!(
            "memory: {} MiB requested, {} MiB free of {} MiB",
            memory >> 20,
            free_memory >> 20,
            has_memory >> 20
        ));
    }
    if short.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the Docker host cannot hold {} replicas: {}",
            context.spec.replicas,
            short.join("; ")
        ))
    }
}

async fn pull(
    services: &Services,
    docker: &DockerDriver,
    context: &Context,
) -> Result<Option<String>, String> {
    let image = &context.service.image;
    // The daemon connects where the reference says: the same rules as the
    // server's own requests. Pulled every time, with the organisation's
    // credentials where the image is in its registry, so the registry
    // decides who may run it, not what the engine happens to hold.
    let host = image.split('/').next().unwrap_or_default();
    services.registries.check_pull(host, docker.is_own())?;
    let credentials = services
        .registries
        .pull_credentials(context.record.organisation, image)
        .await?;
    let pulled = docker
        .pull(image, credentials)
        .await
        .map_err(|e| e.to_string())?;
    Ok(pulled.then(|| format!("pulled {image}")))
}

/// The containers of the service that are not in `plan`.
async fn strays(docker: &DockerDriver, id: u64, plan: &Plan) -> Result<Vec<String>, String> {
    Ok(docker
        .containers(id)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|name| !plan.containers.iter().any(|c| &c.name == name))
        .collect())
}

/// One step of an operation on a Docker target.
async fn docker_step(
    services: &Services,
    docker: &DockerDriver,
    context: &Context,
    state: &mut OperationState,
) -> Result<Step, String> {
    let id = context.record.id;
    match (state.operation, state.phase) {
        // Run by the host before any target step (see `Services::step`).
        (Operation::Deploy | Operation::Start, Phase::Build) => {
            Err("a build is not a step of the target".into())
        }
        (Operation::Deploy | Operation::Start, Phase::Prepare) => {
            let plan = render(docker, context).await?;
            check_capacity(docker, context).await?;
            if let Some(pulled) = pull(services, docker, context).await? {
                state.applied.push(pulled);
            }
            let created = docker
                .prepare(&plan, &context.service)
                .await
                .map_err(|e| e.to_string())?;
            state
                .applied
                .extend(created.into_iter().map(|c| format!("created {c}")));
            state.phase = Phase::Replicas;
            state.done = 0;
            Ok(next(state, format!("prepared revision {}", state.revision)))
        }
        (Operation::Deploy | Operation::Start, Phase::Replicas) => {
            let plan = render(docker, context).await?;
            let strays = strays(docker, id, &plan).await?;
            let batch: Vec<_> = if state.sequential {
                plan.containers
                    .iter()
                    .filter(|c| c.replica == state.done)
                    .collect()
            } else {
                plan.containers.iter().collect()
            };
            for container in &batch {
                // What publishes host ports cannot run beside what it replaces.
                let replaced: Vec<&String> = strays
                    .iter()
                    .filter(|s| !state.sequential || replica_of(s) == Some(container.replica))
                    .collect();
                if container.publishes() {
                    for old in &replaced {
                        docker.remove(old).await.map_err(|e| e.to_string())?;
                        state.applied.push(format!("removed {old}"));
                    }
                }
                if docker
                    .run(container, &context.service)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    state.applied.push(format!("started {}", container.name));
                }
            }
            if state.sequential {
                // Each replica is healthy before the one it replaces goes.
                let container = batch.first().map(|c| c.name.clone());
                if let Some(name) = container {
                    wait_container(docker, context, &name).await?;
                    for old in strays.iter().filter(|s| replica_of(s) == Some(state.done)) {
                        docker.remove(old).await.map_err(|e| e.to_string())?;
                        state.applied.push(format!("removed {old}"));
                    }
                }
                state.done += 1;
                if state.done < context.spec.replicas {
                    return Ok(next(
                        state,
                        format!(
                            "replica {} of {} replaced",
                            state.done, context.spec.replicas
                        ),
                    ));
                }
            }
            state.phase = Phase::Wait;
            state.deadline_ms = Some(now_ms() + wait_ms(&context.spec));
            Ok(next(state, "waiting for health"))
        }
        (Operation::Deploy | Operation::Start, Phase::Wait) => {
            let observed = docker.observe(id).await.map_err(|e| e.to_string())?;
            let mut current: Vec<_> = observed
                .iter()
                .filter(|o| {
                    o.state
                        .as_ref()
                        .is_some_and(|s| s["revision"] == state.revision)
                })
                .cloned()
                .collect();
            probe_starting(docker, &context.service, &mut current).await;
            let health = context.target.assess(&context.service, &current).await;
            if let Some(step) = judged(health, context, state).await? {
                return Ok(step);
            }
            state.phase = Phase::Clean;
            Ok(next(state, "healthy"))
        }
        (Operation::Deploy | Operation::Start, Phase::Clean) => {
            let plan = render(docker, context).await?;
            for old in strays(docker, id, &plan).await? {
                docker.remove(&old).await.map_err(|e| e.to_string())?;
                state.applied.push(format!("removed {old}"));
            }
            deployed(services, id, state)
        }
        (Operation::Stop, _) => {
            let names = docker.containers(id).await.map_err(|e| e.to_string())?;
            for name in &names {
                docker.stop(name).await.map_err(|e| e.to_string())?;
                state.applied.push(format!("stopped {name}"));
            }
            Ok(Step::Done(format!("stopped {} containers", names.len())))
        }
        (Operation::Restart, _) => {
            let names = docker.containers(id).await.map_err(|e| e.to_string())?;
            let batch: Vec<&String> = if state.sequential {
                names.iter().skip(state.done as usize).take(1).collect()
            } else {
                names.iter().collect()
            };
            for name in &batch {
                // Stopped on the network: the engine finishes what it is
                // answering, and the name resolves to it again once started.
                docker.stop(name).await.map_err(|e| e.to_string())?;
                docker.start(name).await.map_err(|e| e.to_string())?;
                if state.sequential {
                    wait_container(docker, context, name).await?;
                }
                state.applied.push(format!("restarted {name}"));
            }
            state.done += batch.len() as u32;
            if state.sequential && (state.done as usize) < names.len() {
                return Ok(next(
                    state,
                    format!("restarted {} of {}", state.done, names.len()),
                ));
            }
            // Back to waiting for the whole service.
            state.operation = Operation::Start;
            state.phase = Phase::Wait;
            state.deadline_ms = Some(now_ms() + wait_ms(&context.spec));
            Ok(next(state, "waiting for health"))
        }
        (Operation::Delete, _) => {
            for name in docker.containers(id).await.map_err(|e| e.to_string())? {
                docker.remove(&name).await.map_err(|e| e.to_string())?;
                state.applied.push(format!("removed {name}"));
            }
            for volume in docker.volumes(id).await.map_err(|e| e.to_string())? {
                docker
                    .remove_volume(&volume)
                    .await
                    .map_err(|e| e.to_string())?;
                state.applied.push(format!("removed volume {volume}"));
            }
            if !context.service.host_network {
                docker
                    .remove_network_if_unused(&context.service.namespace)
                    .await;
            }
            services
                .store
                .delete_service(id)
                .map_err(|e| e.to_string())?;
            Ok(Step::Done(format!(
                "deleted: {}",
                if state.applied.is_empty() {
                    "nothing ran".to_string()
                } else {
                    state.applied.join("; ")
                }
            )))
        }
    }
}

/// The replica index in a container's name (`…_r<revision>_<replica>`).
fn replica_of(name: &str) -> Option<u32> {
    name.rsplit('_').next()?.parse().ok()
}

/// Marks the observed containers whose engine health check has not passed
/// yet but that answer the service's HTTP probe from the host
/// (`ready-probe: ok`), so a deploy sees them ready without waiting a whole
/// check interval; the engine's check stays what later judges them.
pub(super) async fn probe_starting(
    docker: &DockerDriver,
    service: &Service,
    observed: &mut [Observed],
) {
    let Some(Probe::Http(http)) = service.health_check.as_ref().map(|c| &c.probe) else {
        return;
    };
    for o in observed.iter_mut() {
        let Some(state) = o.state.as_mut() else {
            continue;
        };
        let starting = state["status"] == "running" && state["health"] == "starting";
        let address = state["address"].as_str().map(str::to_string);
        if let (true, Some(address)) = (starting, address)
            && docker.answers(&address, http.port, &http.path).await
        {
            state["ready-probe"] = "ok".into();
        }
    }
}

/// Waits until container `name` is running and healthy (or has no check).
async fn wait_container(
    docker: &DockerDriver,
    context: &Context,
    name: &str,
) -> Result<(), String> {
    let deadline = now_ms() + wait_ms(&context.spec);
    loop {
        let observed = docker
            .observe(context.record.id)
            .await
            .map_err(|e| e.to_string())?;
        let state = observed
            .iter()
            .find(|o| o.name == name)
            .and_then(|o| o.state.clone());
        let Some(state) = state else {
            return Err(format!("{name} is gone"));
        };
        let mut once = [Observed {
            kind: "container".into(),
            name: name.to_string(),
            state: Some(state.clone()),
        }];
        probe_starting(docker, &context.service, &mut once).await;
        if once[0]
            .state
            .as_ref()
            .is_some_and(|s| s["ready-probe"] == "ok")
        {
            return Ok(());
        }
        match (state["status"].as_str(), state["health"].as_str()) {
            (Some("running"), Some("healthy" | "none")) => return Ok(()),
            (Some("exited" | "dead"), _) => {
                return Err(format!("{name} exited with {}", state["exit-code"]));
            }
            _ => {}
        }
        if now_ms() > deadline {
            return Err(format!(
                "{name} not healthy in {} s",
                wait_ms(&context.spec) / 1000
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

impl Work for Services {
    fn advance<'a>(&'a self, job: &'a Job) -> Advance<'a> {
        Box::pin(self.step(job))
    }
}

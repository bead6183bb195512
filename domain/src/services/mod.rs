//! Services: something deployed on a target (seed 003's nodes), each
//! change an immutable revision, and the operations on them (deploy, start,
//! stop, restart, delete), each a job of the runner.

mod operation;
pub mod source;
pub mod spec;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use slipway_runtime::kinds::{Health, Rollout};
use slipway_store::{
    Job, JobKind, Revision, ServiceError, ServiceRecord, Status, Store, StoreError, now_ms,
};

pub use operation::{Operation, OperationState};
use spec::{Placement, Problem, ServiceSpec};

use crate::jobs::{Jobs, Work, Works};
use crate::registry::Registries;
use crate::releases::Releases;
use crate::targets::{Driver, DriverError, Target, Targets, kubernetes};

/// Why a service was not created or changed.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The settings have problems, each at its pointer.
    #[error("the service has {} problems", .0.len())]
    Invalid(Vec<Problem>),
    /// No service of the organisation has the id.
    #[error("no service {0}")]
    NotFound(u64),
    /// Another operation is on the service: its job.
    #[error("job {0} is working on the service; wait for it, or stop it")]
    Busy(u64),
    /// As many log streams as the server serves at once are open.
    #[error("{MAX_LOG_STREAMS} log streams are open: try again later")]
    TooManyStreams,
    /// The target cannot be reached or read.
    #[error("{0}")]
    Target(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn one(path: &str, message: impl Into<String>) -> Refused {
    Refused::Invalid(vec![Problem {
        path: path.into(),
        message: message.into(),
    }])
}

impl From<ServiceError> for Refused {
    fn from(e: ServiceError) -> Refused {
        match e {
            ServiceError::NotFound(id) => Refused::NotFound(id),
            ServiceError::NameTaken(name) => one(
                "/name",
                format!("the target has a service named `{name}` already"),
            ),
            ServiceError::NoTarget(target) => one("/target", format!("no target `{target}`")),
            ServiceError::NoRelease(id) => one("/release", format!("release {id} does not exist")),
            ServiceError::Busy(job) => Refused::Busy(job),
            ServiceError::Store(e) => Refused::Store(e),
        }
    }
}

/// A service as the API shows it: the record, its current revision's
/// settings, and what runs.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct ServiceView {
    /// Its id.
    pub id: u64,
    /// Its name, a DNS label unique on the target.
    pub name: String,
    /// The target it runs on.
    pub target: String,
    /// The newest revision.
    pub revision: u32,
    /// The revision the last deploy applied, if any.
    pub running: Option<u32>,
    /// The image of the newest revision, pinned by digest when from a release.
    pub image: String,
    /// The release it came from.
    pub release: Option<u64>,
    /// The newest revision's settings.
    pub spec: ServiceSpec,
    /// Who created it.
    pub created_by: String,
    /// When, in ms since the Unix epoch.
    pub created_ms: u64,
    /// The latest operation's job, if any.
    pub operation: Option<u64>,
    /// What the target shows now (only on a single service's answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed: Option<ObservedState>,
}

/// What a target shows of a service now.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct ObservedState {
    /// Containers or pods of the running revision that are ready.
    pub ready: u32,
    /// The replicas asked for.
    pub replicas: u32,
    /// Health as the deploy target judged it: `progressing`, `healthy`,
    /// `degraded`, `failed`, or `unknown` when the target cannot be reached.
    pub health: String,
    /// What the judgement says.
    pub detail: Option<String>,
    /// Restarts of all its containers or pods.
    pub restarts: u64,
    /// The last error the target reported.
    pub last_error: Option<String>,
    /// Each container or pod.
    #[cfg_attr(feature = "schema", schema(value_type = Vec<Object>))]
    pub objects: Vec<serde_json::Value>,
}

/// A new service: settings that name it and its target.
#[derive(Debug, Clone)]
pub struct NewService {
    name: String,
    target: String,
    spec: ServiceSpec,
}

impl NewService {
    /// A new service from its settings: `name` and `target` are required.
    pub fn from_spec(spec: ServiceSpec) -> Result<NewService, Vec<Problem>> {
        let mut problems = Vec::new();
        for (field, value) in [("name", &spec.name), ("target", &spec.target)] {
            if value.is_none() {
                problems.push(Problem {
                    path: format!("/{field}"),
                    message: format!("`{field}` is required"),
                });
            }
        }
        problems.extend(spec.problems());
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(NewService {
            name: spec.name.clone().unwrap_or_default(),
            target: spec.target.clone().unwrap_or_default(),
            spec,
        })
    }
}

/// What an operation is asked with.
#[derive(Debug, Clone, Default)]
pub struct OperationRequest {
    /// Parallel (the default) or sequential across the containers.
    pub sequential: bool,
    /// Labels added to the containers or pods deployed (seed 002's
    /// `deployLabel`).
    pub labels: BTreeMap<String, String>,
    /// Code a deploy builds the service's next revision from first.
    pub source: Option<source::Source>,
}

/// Opens the log stream of one container or pod by its name.
type LogOpener =
    Box<dyn Fn(&str) -> futures::stream::BoxStream<'static, Result<String, DriverError>> + Send>;

/// Log streams the server serves at once (my choice).
pub const MAX_LOG_STREAMS: usize = 256;
/// The most lines a log read starts from.
pub const MAX_LOG_TAIL: u32 = 10_000;
/// Longer log lines are cut to this many bytes.
const MAX_LOG_LINE: usize = 16 << 10;

/// The organisations' services.
pub struct Services {
    store: Store,
    targets: Arc<Targets>,
    releases: Arc<Releases>,
    registries: Arc<Registries>,
    jobs: Arc<Jobs>,
    sources: source::Sources,
    log_streams: Arc<tokio::sync::Semaphore>,
}

impl Services {
    /// Services in `store`, on `targets`, their operations run by `jobs`,
    /// built from what `sources` allows.
    pub fn new(
        store: Store,
        targets: Arc<Targets>,
        releases: Arc<Releases>,
        registries: Arc<Registries>,
        jobs: Arc<Jobs>,
        sources: source::Sources,
    ) -> Services {
        Services {
            store,
            targets,
            releases,
            registries,
            jobs,
            sources,
            log_streams: Arc::new(tokio::sync::Semaphore::new(MAX_LOG_STREAMS)),
        }
    }

    /// The output of every container of service `id`, each line after its
    /// container's name in brackets: the last `tail` lines of each (at most
    /// [`MAX_LOG_TAIL`]), then, when `follow`, what they write until they
    /// stop or the reader goes.
    pub async fn logs(
        &self,
        organisation: u64,
        id: u64,
        tail: u32,
        follow: bool,
    ) -> Result<futures::stream::BoxStream<'static, String>, Refused> {
        use futures::StreamExt;
        let record = self.owned(organisation, id)?;
        let permit = self
            .log_streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::TooManyStreams)?;
        let target = self
            .targets
            .open(organisation, &record.target)
            .map_err(Refused::Target)?;
        let tail = tail.min(MAX_LOG_TAIL);
        let (names, open): (Vec<String>, LogOpener) = match target.driver().clone() {
            Driver::Docker(docker) => (
                docker
                    .containers(id)
                    .await
                    .map_err(|e| Refused::Target(e.to_string()))?,
                Box::new(move |name: &str| docker.logs(name, tail, follow).boxed()),
            ),
            Driver::Kubernetes(kube) => (
                kube.pods(id)
                    .await
                    .map_err(|e| Refused::Target(e.to_string()))?,
                Box::new(move |name: &str| kube.logs(name, tail, follow)),
            ),
        };
        let streams = names.into_iter().map(|name| {
            open(&name)
                .map(move |chunk| match chunk {
                    Ok(text) => {
                        let mut line = format!("[{name}] {}", text.trim_end_matches('\n'));
                        if line.len() > MAX_LOG_LINE {
                            let mut end = MAX_LOG_LINE;
                            while !line.is_char_boundary(end) {
                                end -= 1;
                            }
                            line.truncate(end);
                        }
                        line
                    }
                    Err(e) => format!("[{name}] (the log stopped: {e})"),
                })
                .boxed()
        });
        // The permit goes when the stream does.
        let merged = futures::stream::select_all(streams).map(move |line| {
            let _held = &permit;
            line
        });
        Ok(merged.boxed())
    }

    /// Why code may not be fetched from `url` to build a service, if it
    /// may not.
    pub fn check_source(&self, url: &str) -> Result<(), String> {
        self.sources.check(url).map(|_| ())
    }

    /// The work the job runner calls for service operations.
    pub fn works(self: &Arc<Self>) -> Works {
        let work: Arc<dyn Work> = self.clone();
        Works::from([(JobKind::ServiceOperation, work)])
    }

    /// The image `spec` runs and the release it came from, or the problem.
    fn image(
        &self,
        organisation: u64,
        spec: &ServiceSpec,
    ) -> Result<(String, Option<u64>), Refused> {
        if let Some(image) = &spec.image {
            return Ok((image.clone(), None));
        }
        let reference = spec.release.as_deref().unwrap_or_default();
        let release = self
            .releases
            .find(organisation, reference)?
            .filter(|r| !r.status.is_deleted())
            .ok_or_else(|| one("/release", format!("no release {reference}")))?;
        match (&release.image, release.status) {
            (Some(image), Status::Ready) => Ok((image.pinned(), Some(release.id))),
            _ => Err(one(
                "/release",
                format!(
                    "release {} is {}: a service runs a ready release",
                    release.name,
                    release.status.as_str()
                ),
            )),
        }
    }

    /// Creates a service with its first revision; nothing runs until it is
    /// deployed.
    pub fn create(
        &self,
        organisation: u64,
        new: NewService,
        by: &str,
    ) -> Result<ServiceView, Refused> {
        let problems = new.spec.problems();
        if !problems.is_empty() {
            return Err(Refused::Invalid(problems));
        }
        let target = self
            .targets
            .get(organisation, &new.target)?
            .ok_or_else(|| one("/target", format!("no target `{}`", new.target)))?;
        let (image, release) = self.image(organisation, &new.spec)?;
        // The built-in target is made a record of when first used, so the
        // store can hold its services; a stored one is kept as it is.
        self.store.add_target(organisation, &target)?;
        let record = self.store.create_service(
            organisation,
            &new.target,
            &new.name,
            Revision {
                revision: 0,
                spec: serde_json::to_value(&new.spec).expect("serializes"),
                image,
                release,
                by: by.into(),
                at_ms: now_ms(),
            },
        )?;
        tracing::info!(organisation, service = record.id, name = %record.name, by, "service created");
        self.view(&record)
    }

    /// Makes `spec` the service's newest revision; what runs changes at the
    /// next deploy.
    pub fn revise(
        &self,
        organisation: u64,
        id: u64,
        spec: ServiceSpec,
        by: &str,
    ) -> Result<ServiceView, Refused> {
        self.owned(organisation, id)?;
        let problems = spec.problems();
        if !problems.is_empty() {
            return Err(Refused::Invalid(problems));
        }
        let (image, release) = self.image(organisation, &spec)?;
        let record = self.store.revise_service(
            id,
            Revision {
                revision: 0,
                spec: serde_json::to_value(&spec).expect("serializes"),
                image,
                release,
                by: by.into(),
                at_ms: now_ms(),
            },
        )?;
        self.view(&record)
    }

    /// Makes a copy of `revision` (its settings and image) the service's
    /// newest revision: how a rollback puts back what ran before.
    pub fn revert(
        &self,
        organisation: u64,
        id: u64,
        revision: u32,
        by: &str,
    ) -> Result<ServiceView, Refused> {
        self.owned(organisation, id)?;
        let old = self.store.service_revision(id, revision)?.ok_or_else(|| {
            one(
                "/revision",
                format!("service {id} has no revision {revision}"),
            )
        })?;
        let record = self.store.revise_service(
            id,
            Revision {
                revision: 0,
                by: by.into(),
                at_ms: now_ms(),
                ..old
            },
        )?;
        self.view(&record)
    }

    fn owned(&self, organisation: u64, id: u64) -> Result<ServiceRecord, Refused> {
        self.store
            .service(id)?
            .filter(|s| s.organisation == organisation)
            .ok_or(Refused::NotFound(id))
    }

    /// The service's view; `observe` asks the target what runs.
    fn view(&self, record: &ServiceRecord) -> Result<ServiceView, Refused> {
        let revision = self
            .store
            .service_revision(record.id, record.revision)?
            .ok_or_else(|| StoreError::Corrupt {
                tree: "service_revisions",
                detail: format!("service {} has no revision {}", record.id, record.revision),
            })?;
        let spec: ServiceSpec =
            serde_json::from_value(revision.spec).map_err(|e| StoreError::Corrupt {
                tree: "service_revisions",
                detail: e.to_string(),
            })?;
        Ok(ServiceView {
            id: record.id,
            name: record.name.clone(),
            target: record.target.clone(),
            revision: record.revision,
            running: record.running,
            image: revision.image,
            release: revision.release,
            spec,
            created_by: record.created_by.clone(),
            created_ms: record.created_ms,
            operation: self
                .store
                .job_of(JobKind::ServiceOperation, record.id)?
                .map(|j| j.id),
            observed: None,
        })
    }

    /// The organisation's service `id`, with what its target shows now.
    pub async fn show(&self, organisation: u64, id: u64) -> Result<ServiceView, Refused> {
        let record = self.owned(organisation, id)?;
        let mut view = self.view(&record)?;
        view.observed = Some(self.observe(&record, &view.spec).await);
        Ok(view)
    }

    /// The organisation's services, oldest first.
    pub fn list(&self, organisation: u64) -> Result<Vec<ServiceView>, Refused> {
        self.store
            .organisation_services(organisation)?
            .iter()
            .map(|record| self.view(record))
            .collect()
    }

    /// The revisions of service `id`, oldest first.
    pub fn revisions(&self, organisation: u64, id: u64) -> Result<Vec<Revision>, Refused> {
        self.owned(organisation, id)?;
        Ok(self.store.service_revisions(id)?)
    }

    /// Queues `operation` on service `id`; answers its job.
    pub fn operate(
        &self,
        organisation: u64,
        id: u64,
        operation: Operation,
        request: OperationRequest,
        by: &str,
    ) -> Result<Job, Refused> {
        let record = self.owned(organisation, id)?;
        let problems = spec::label_problems(&request.labels, "/labels");
        if !problems.is_empty() {
            return Err(Refused::Invalid(problems));
        }
        let revision = match operation {
            Operation::Deploy => record.revision,
            _ => record.running.unwrap_or(record.revision),
        };
        let state = OperationState::new(operation, revision, request, by);
        let job = self
            .store
            .start_operation(id, serde_json::to_value(&state).expect("serializes"))?;
        tracing::info!(
            organisation,
            service = id,
            job = job.id,
            ?operation,
            by,
            "service operation queued"
        );
        self.jobs.wake();
        Ok(job)
    }

    /// The job `id` of the organisation, if it is a service operation.
    pub fn operation(&self, organisation: u64, id: u64) -> Result<Option<Job>, StoreError> {
        Ok(self
            .jobs
            .find(organisation, id)?
            .filter(|j| j.kind == JobKind::ServiceOperation))
    }

    /// What the target shows of the service now.
    async fn observe(&self, record: &ServiceRecord, spec: &ServiceSpec) -> ObservedState {
        let unknown = |detail: String| ObservedState {
            ready: 0,
            replicas: spec.replicas,
            health: "unknown".into(),
            detail: Some(detail),
            restarts: 0,
            last_error: None,
            objects: Vec::new(),
        };
        let target = match self.targets.open(record.organisation, &record.target) {
            Ok(target) => target,
            Err(e) => return unknown(e),
        };
        // What runs, or what the newest deploy left when none succeeded yet.
        let running = record.running.unwrap_or(record.revision);
        let Ok(Some(revision)) = self.store.service_revision(record.id, running) else {
            return unknown("the running revision is missing".into());
        };
        let running_spec: ServiceSpec =
            serde_json::from_value(revision.spec.clone()).unwrap_or_else(|_| spec.clone());
        let service = self.rendered_service(
            &target,
            record,
            &revision,
            &running_spec,
            &BTreeMap::new(),
            Rollout::Parallel,
        );
        let (observed, ready) = match target.driver() {
            Driver::Docker(docker) => {
                let mut observed = match docker.observe(record.id).await {
                    Ok(observed) => observed,
                    Err(e) => return unknown(e.to_string()),
                };
                // Ready as a deploy judges it.
                operation::probe_starting(docker, &service, &mut observed).await;
                let ready = observed
                    .iter()
                    .filter_map(|o| o.state.as_ref())
                    .filter(|s| {
                        s["revision"] == running
                            && s["status"] == "running"
                            && (s["health"] == "healthy"
                                || s["health"] == "none"
                                || s["ready-probe"] == "ok")
                    })
                    .count();
                (observed, ready)
            }
            Driver::Kubernetes(kube) => {
                let objects = match target.render(&service).await.and_then(|rendered| {
                    kubernetes::plan(&rendered, &service).map_err(|e| e.to_string())
                }) {
                    Ok(objects) => objects,
                    Err(e) => return unknown(e),
                };
                let observed = match kube.observe(record.id, &kubernetes::refs(&objects)).await {
                    Ok(observed) => observed,
                    Err(e) => return unknown(e.to_string()),
                };
                let ready = observed
                    .iter()
                    .filter(|o| o.kind == "Pod")
                    .filter_map(|o| o.state.as_ref())
                    .filter(|pod| {
                        pod["status"]["conditions"].as_array().is_some_and(|c| {
                            c.iter()
                                .any(|c| c["type"] == "Ready" && c["status"] == "True")
                        })
                    })
                    .count();
                (observed, ready)
            }
        };
        let ready = ready as u32;
        let health = target.assess(&service, &observed).await;
        let states: Vec<&serde_json::Value> =
            observed.iter().filter_map(|o| o.state.as_ref()).collect();
        let restarts = states
            .iter()
            .map(|s| s["restarts"].as_u64().unwrap_or(0))
            .sum();
        let last_error = states
            .iter()
            .filter_map(|s| s["error"].as_str().filter(|e| !e.is_empty()))
            .next_back()
            .map(str::to_string);
        let (health, detail) = health_words(&health);
        ObservedState {
            ready,
            replicas: running_spec.replicas,
            health,
            detail,
            restarts,
            last_error,
            objects: observed
                .into_iter()
                .map(|o| serde_json::json!({"kind": o.kind, "name": o.name, "state": o.state}))
                .collect(),
        }
    }

    /// `revision` of the service as the target renders it.
    fn rendered_service(
        &self,
        target: &Target,
        record: &ServiceRecord,
        revision: &Revision,
        spec: &ServiceSpec,
        labels: &BTreeMap<String, String>,
        rollout: Rollout,
    ) -> slipway_runtime::kinds::Service {
        spec.to_target(Placement {
            id: record.id,
            revision: revision.revision,
            name: &record.name,
            namespace: target.namespace(),
            image: &revision.image,
            release_image: revision.release.is_some(),
            labels,
            rollout,
        })
    }
}

/// A health as its name and detail.
pub fn health_words(health: &Health) -> (String, Option<String>) {
    match health {
        Health::Progressing(d) => ("progressing".into(), Some(d.clone())),
        Health::Healthy => ("healthy".into(), None),
        Health::Degraded(d) => ("degraded".into(), Some(d.clone())),
        Health::Failed(d) => ("failed".into(), Some(d.clone())),
    }
}

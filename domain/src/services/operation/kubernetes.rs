//! Operations on a Kubernetes target. The cluster's controllers replace and
//! restart pods; the plugin's rendering says how (a sequential rollout
//! surges one pod at a time and keeps every old one until its replacement
//! is ready). So every operation applies, then waits for the plugin to
//! judge the rollout healthy.

use slipway_runtime::kinds::Service;
use slipway_store::now_ms;

use super::{Context, Operation, OperationState, Phase, deployed, judged, next, report, wait_ms};
use crate::jobs::Step;
use crate::services::Services;
use crate::targets::kubernetes::{
    FIELD_MANAGER, KubernetesDriver, ObjectRef, RESTART_MANAGER, plan, refs, restart_config,
};

/// The service's objects as the driver applies them.
async fn render(context: &Context, service: &Service) -> Result<Vec<serde_json::Value>, String> {
    let rendered = context.target.render(service).await?;
    plan(&rendered, service).map_err(|e| e.to_string())
}

/// Applies `objects` as Slipway, listing each in the report.
async fn apply(
    kube: &KubernetesDriver,
    id: u64,
    objects: &[serde_json::Value],
    state: &mut OperationState,
) -> Result<(), String> {
    for object in objects {
        kube.apply(id, object, FIELD_MANAGER)
            .await
            .map_err(|e| e.to_string())?;
        state
            .applied
            .push(format!("applied {}", ObjectRef::of_value(object)));
    }
    Ok(())
}

/// Deletes the service's objects that `objects` does not hold.
async fn prune(
    kube: &KubernetesDriver,
    id: u64,
    objects: &[serde_json::Value],
    state: &mut OperationState,
) -> Result<(), String> {
    let wanted = refs(objects);
    for stray in kube.applied(id).await.map_err(|e| e.to_string())? {
        if !wanted.contains(&stray)
            && kube
                .delete(&stray, false)
                .await
                .map_err(|e| e.to_string())?
        {
            state.applied.push(format!("deleted {stray}"));
        }
    }
    Ok(())
}

/// One poll of `service`'s health: the next step, or done when healthy.
async fn wait(
    kube: &KubernetesDriver,
    context: &Context,
    service: &Service,
    state: &mut OperationState,
) -> Result<Option<Step>, String> {
    let objects = render(context, service).await?;
    let observed = kube
        .observe(context.record.id, &refs(&objects))
        .await
        .map_err(|e| e.to_string())?;
    let health = context.target.assess(service, &observed).await;
    judged(health, context, state).await
}

/// One step of an operation on a Kubernetes target.
pub(super) async fn step(
    services: &Services,
    kube: &KubernetesDriver,
    context: &Context,
    state: &mut OperationState,
) -> Result<Step, String> {
    let id = context.record.id;
    // Stopped is the same service with no replicas.
    let stopped = Service {
        replicas: 0,
        ..context.service.clone()
    };
    match (state.operation, state.phase) {
        // Run by the host before any target step (see `Services::step`).
        (Operation::Deploy | Operation::Start, Phase::Build) => {
            Err("a build is not a step of the target".into())
        }
        (Operation::Deploy | Operation::Start, Phase::Prepare | Phase::Replicas) => {
            // The cluster's nodes pull the image; never from this server.
            let host = context.service.image.split('/').next().unwrap_or_default();
            if services.registries.is_images(host) {
                services.registries.check_pull(host, false)?;
            }
            let objects = render(context, &context.service).await?;
            apply(kube, id, &objects, state).await?;
            prune(kube, id, &objects, state).await?;
            state.phase = Phase::Wait;
            state.deadline_ms = Some(now_ms() + wait_ms(&context.spec));
            Ok(next(state, format!("applied revision {}", state.revision)))
        }
        (Operation::Deploy | Operation::Start, Phase::Wait) => {
            if let Some(step) = wait(kube, context, &context.service, state).await? {
                return Ok(step);
            }
            state.phase = Phase::Clean;
            Ok(next(state, "healthy"))
        }
        (Operation::Deploy | Operation::Start, Phase::Clean) => deployed(services, id, state),
        (Operation::Stop, Phase::Prepare) => {
            let objects = render(context, &stopped).await?;
            for object in &objects {
                let target = ObjectRef::of_value(object);
                if target.kind == "Job" {
                    // A Job has no replicas: stopping it ends its pods.
                    if kube
                        .delete(&target, false)
                        .await
                        .map_err(|e| e.to_string())?
                    {
                        state.applied.push(format!("deleted {target}"));
                    }
                } else if target.is_workload() {
                    kube.apply(id, object, FIELD_MANAGER)
                        .await
                        .map_err(|e| e.to_string())?;
                    state.applied.push(format!("scaled {target} to 0"));
                }
            }
            state.phase = Phase::Wait;
            state.deadline_ms = Some(now_ms() + wait_ms(&context.spec));
            Ok(next(state, "stopping"))
        }
        (Operation::Stop, _) => {
            let pods = kube.pods(id).await.map_err(|e| e.to_string())?;
            if !pods.is_empty() {
                if state.deadline_ms.is_some_and(|d| now_ms() > d) {
                    return Err(format!("{} pods still run", pods.len()));
                }
                tokio::time::sleep(super::POLL).await;
                return Ok(next(state, format!("{} pods still run", pods.len())));
            }
            Ok(Step::Done(format!("stopped: {}", report(state))))
        }
        (Operation::Restart, _) => {
            // The rollout the request asks for first, then the annotation
            // that rolls the pods by it.
            let objects = render(context, &context.service).await?;
            apply(kube, id, &objects, state).await?;
            let at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
            for workload in refs(&objects).iter().filter(|o| o.is_workload()) {
                if workload.kind == "Job" {
                    kube.delete(workload, false)
                        .await
                        .map_err(|e| e.to_string())?;
                    let job = objects
                        .iter()
                        .find(|o| ObjectRef::of_value(o) == *workload)
                        .expect("rendered");
                    kube.apply(id, job, FIELD_MANAGER)
                        .await
                        .map_err(|e| e.to_string())?;
                } else {
                    let config = restart_config(workload, kube.namespace(), &at);
                    kube.apply(id, &config, RESTART_MANAGER)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                state.applied.push(format!("restarted {workload}"));
            }
            state.operation = Operation::Start;
            state.phase = Phase::Wait;
            state.deadline_ms = Some(now_ms() + wait_ms(&context.spec));
            Ok(next(state, "waiting for health"))
        }
        (Operation::Delete, Phase::Prepare) => {
            for object in kube.owned(id).await.map_err(|e| e.to_string())? {
                if kube
                    .delete(&object, true)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    state.applied.push(format!("deleted {object}"));
                }
            }
            state.phase = Phase::Wait;
            state.deadline_ms = Some(now_ms() + wait_ms(&context.spec));
            Ok(next(state, "deleting"))
        }
        (Operation::Delete, _) => {
            // Foreground: each object goes once its pods have.
            let left = kube.owned(id).await.map_err(|e| e.to_string())?;
            let pods = kube.pods(id).await.map_err(|e| e.to_string())?;
            if !left.is_empty() || !pods.is_empty() {
                if state.deadline_ms.is_some_and(|d| now_ms() > d) {
                    return Err(format!(
                        "{} objects and {} pods are still there",
                        left.len(),
                        pods.len()
                    ));
                }
                tokio::time::sleep(super::POLL).await;
                return Ok(next(
                    state,
                    format!(
                        "waiting for {} objects and {} pods to go",
                        left.len(),
                        pods.len()
                    ),
                ));
            }
            services
                .store
                .delete_service(id)
                .map_err(|e| e.to_string())?;
            Ok(Step::Done(format!("deleted: {}", report(state))))
        }
    }
}

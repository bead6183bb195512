//! The `kubernetes` deploy target: a service becomes a Deployment (a
//! StatefulSet when it has storage directories, a Job when it runs once), a
//! Service for its ports, and PersistentVolumeClaims for its storage, in the
//! namespace the host gives it. Rollouts are judged as `kubectl rollout
//! status` judges them: the controller must have observed the newest
//! generation before any replica count counts.

use serde::Deserialize;
use slipway_sdk::serde_json::{Map, Value, json};
use slipway_sdk::target::{
    DeployTarget, Error, Health, MountKind, Object, Observed, Probe, Rollout, Service, ServiceKind,
    ServiceType,
};
use slipway_sdk::{Diagnostic, serde_json};

/// The target.
pub struct Kubernetes;

/// The target's settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// The storage class of the claims storage directories make; the
    /// cluster's default when left out.
    #[serde(default)]
    pub storage_class: Option<String>,
    /// Seconds a rollout may make no progress before it is failed.
    #[serde(default = "default_deadline")]
    pub progress_deadline_s: u32,
}

fn default_deadline() -> u32 {
    600
}

fn labels(service: &Service) -> Map<String, Value> {
    let mut labels: Map<String, Value> = service
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    labels.insert("app.kubernetes.io/name".into(), service.name.clone().into());
    labels.insert(
        "app.kubernetes.io/instance".into(),
        service.name.clone().into(),
    );
    labels.insert("app.kubernetes.io/managed-by".into(), "slipway".into());
    labels
}

/// The pods' selector: the labels that never change between revisions.
fn selector(service: &Service) -> Value {
    json!({
        "app.kubernetes.io/name": service.name,
        "app.kubernetes.io/instance": service.name,
    })
}

fn metadata(service: &Service, name: &str) -> Value {
    json!({
        "name": name,
        "namespace": service.namespace,
        "labels": labels(service),
        "annotations": {"slipway.dev/revision": service.revision.to_string()},
    })
}

fn host_path_type(kind: MountKind) -> &'static str {
    match kind {
        MountKind::File => "File",
        MountKind::CharacterDevice => "CharDevice",
        MountKind::Directory => "Directory",
        MountKind::Socket => "Socket",
        MountKind::BlockDevice => "BlockDevice",
    }
}

fn resources(service: &Service) -> Value {
    let amounts = |cpu: Option<u32>, memory: Option<u64>| {
        let mut out = Map::new();
        if let Some(cpu) = cpu {
            out.insert("cpu".into(), format!("{cpu}m").into());
        }
        if let Some(memory) = memory {
            out.insert("memory".into(), memory.to_string().into());
        }
        Value::Object(out)
    };
    json!({
        "requests": amounts(service.requests.cpu_millis, service.requests.memory_bytes),
        "limits": amounts(service.limits.cpu_millis, service.limits.memory_bytes),
    })
}

fn probe(service: &Service) -> Option<Value> {
    let check = service.health_check.as_ref()?;
    let mut probe = match &check.probe {
        Probe::Http(http) => json!({"httpGet": {"path": http.path, "port": http.port}}),
        Probe::Command(command) => json!({"exec": {"command": command}}),
    };
    probe["periodSeconds"] = json!((check.interval_ms / 1000).max(1));
    probe["timeoutSeconds"] = json!((check.timeout_ms / 1000).max(1));
    probe["failureThreshold"] = json!(check.retries.max(1));
    Some(probe)
}

fn protocol(protocol: &str) -> &'static str {
    if protocol.eq_ignore_ascii_case("udp") {
        "UDP"
    } else {
        "TCP"
    }
}

/// The pod template.
fn pod(service: &Service) -> Value {
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for (i, mount) in service.host_mounts.iter().enumerate() {
        let name = format!("host-{i}");
        volumes.push(json!({
            "name": name,
            "hostPath": {"path": mount.host_path, "type": host_path_type(mount.kind)},
        }));
        mounts.push(
            json!({"name": name, "mountPath": mount.container_path, "readOnly": mount.read_only}),
        );
    }
    for storage in &service.storage {
        // Claimed per pod by the StatefulSet's volume claim templates.
        mounts.push(json!({"name": storage.name, "mountPath": storage.container_path}));
    }
    if let Some(dir) = &service.log_dir {
        // Outlives the container's restarts within its pod.
        volumes.push(json!({"name": "logs", "emptyDir": {}}));
        mounts.push(json!({"name": "logs", "mountPath": dir}));
    }
    let mut container = json!({
        "name": service.name,
        "image": service.image,
        "env": service.env.iter().map(|(k, v)| json!({"name": k, "value": v})).collect::<Vec<_>>(),
        "ports": service.ports.iter().map(|p| json!({"containerPort": p.container, "protocol": protocol(&p.protocol)})).collect::<Vec<_>>(),
        "resources": resources(service),
        "volumeMounts": mounts,
    });
    if let Some(probe) = probe(service) {
        container["readinessProbe"] = probe.clone();
        let restarts = service
            .health_check
            .as_ref()
            .is_some_and(|c| c.restart_on_failure);
        if restarts && service.kind == ServiceKind::LongRunning {
            container["livenessProbe"] = probe;
        }
    }
    let mut spec = json!({
        "containers": [container],
        "volumes": volumes,
        "hostNetwork": service.host_network,
    });
    if service.kind == ServiceKind::RunOnce {
        spec["restartPolicy"] = "Never".into();
    }
    json!({"metadata": {"labels": labels(service)}, "spec": spec})
}

/// The workload's kind for `service`.
fn workload_kind(service: &Service) -> &'static str {
    match (service.kind, service.storage.is_empty()) {
        (ServiceKind::RunOnce, _) => "Job",
        (ServiceKind::LongRunning, true) => "Deployment",
        (ServiceKind::LongRunning, false) => "StatefulSet",
    }
}

fn problems(service: &Service) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    if service.kind == ServiceKind::RunOnce && !service.storage.is_empty() {
        problems.push(Diagnostic::at(
            "/storage",
            "a run-once service (a Job) has no storage directories",
        ));
    }
    problems
}

impl DeployTarget for Kubernetes {
    type Settings = Settings;

    fn settings_schema() -> Value {
        json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "storage-class": {"type": "string", "description": "The storage class of storage directories' claims."},
                "progress-deadline-s": {"type": "integer", "minimum": 1, "maximum": 86400, "description": "Seconds a rollout may make no progress before it is failed."}
            }
        })
    }

    fn validate_settings(settings: &Settings) -> Vec<Diagnostic> {
        let mut problems = Vec::new();
        if !(1..=86_400).contains(&settings.progress_deadline_s) {
            problems.push(Diagnostic::at("/progress-deadline-s", "1 to 86400 seconds"));
        }
        problems
    }

    fn render(settings: &Settings, service: &Service) -> Result<Vec<Object>, Error> {
        let problems = problems(service);
        if !problems.is_empty() {
            return Err(Error::InvalidService(problems));
        }
        let kind = workload_kind(service);
        let mut objects = Vec::new();
        let workload = match kind {
            "Job" => json!({
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": metadata(service, &format!("{}-r{}", service.name, service.revision)),
                "spec": {"backoffLimit": 0, "template": pod(service)},
            }),
            _ => {
                let mut spec = json!({
                    "replicas": service.replicas,
                    "selector": {"matchLabels": selector(service)},
                    "template": pod(service),
                });
                let sequential = service.rollout == Rollout::Sequential;
                if kind == "Deployment" {
                    spec["progressDeadlineSeconds"] = json!(settings.progress_deadline_s);
                    spec["strategy"] = json!({
                        "type": "RollingUpdate",
                        "rollingUpdate": if sequential {
                            json!({"maxSurge": 1, "maxUnavailable": 0})
                        } else {
                            json!({"maxSurge": "100%", "maxUnavailable": 0})
                        },
                    });
                } else {
                    spec["serviceName"] = json!(service.name);
                    spec["podManagementPolicy"] = json!(if sequential {
                        "OrderedReady"
                    } else {
                        "Parallel"
                    });
                    spec["volumeClaimTemplates"] = Value::Array(
                        service
                            .storage
                            .iter()
                            .map(|s| {
                                let mut claim = json!({
                                    "metadata": {"name": s.name},
                                    "spec": {
                                        "accessModes": ["ReadWriteOnce"],
                                        "resources": {"requests": {"storage": s.size_bytes.to_string()}},
                                    },
                                });
                                if let Some(class) = &settings.storage_class {
                                    claim["spec"]["storageClassName"] = json!(class);
                                }
                                claim
                            })
                            .collect(),
                    );
                }
                json!({
                    "apiVersion": "apps/v1",
                    "kind": kind,
                    "metadata": metadata(service, &service.name),
                    "spec": spec,
                })
            }
        };
        let name = workload["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        objects.push(Object {
            kind: kind.into(),
            name,
            body: workload.to_string(),
        });
        if !service.ports.is_empty() && service.kind == ServiceKind::LongRunning {
            let kind = match service.service_type {
                ServiceType::ClusterIp => "ClusterIP",
                ServiceType::LoadBalancer => "LoadBalancer",
                ServiceType::NodePort => "NodePort",
            };
            let body = json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": metadata(service, &service.name),
                "spec": {
                    "type": kind,
                    "selector": selector(service),
                    "ports": service.ports.iter().map(|p| json!({
                        "name": format!("{}-{}", protocol(&p.protocol).to_ascii_lowercase(), p.service),
                        "port": p.service,
                        "targetPort": p.container,
                        "protocol": protocol(&p.protocol),
                    })).collect::<Vec<_>>(),
                },
            });
            objects.push(Object {
                kind: "Service".into(),
                name: service.name.clone(),
                body: body.to_string(),
            });
        }
        Ok(objects)
    }

    fn assess(_: &Settings, service: &Service, observed: &[Observed]) -> Health {
        let kind = workload_kind(service);
        let Some(state) = observed
            .iter()
            .find(|o| o.kind == kind)
            .and_then(|o| o.state.as_deref())
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
        else {
            return Health::Progressing(format!("the {kind} is not created yet"));
        };
        let health = match kind {
            "Job" => job_status(&state),
            "Deployment" => deployment_status(&state),
            _ => stateful_set_status(&state),
        };
        // Why it is stuck, when the scheduler says.
        match (health, unschedulable(observed)) {
            (Health::Progressing(_), Some(reason)) => {
                Health::Progressing(format!("a pod cannot be scheduled: {reason}"))
            }
            (Health::Failed(why), Some(reason)) => {
                Health::Failed(format!("{why}: a pod cannot be scheduled: {reason}"))
            }
            (health, _) => health,
        }
    }
}

fn number(value: &Value) -> i64 {
    value.as_i64().unwrap_or(0)
}

/// The condition of `kind` when its status is `True`.
fn condition<'a>(state: &'a Value, kind: &str) -> Option<&'a Value> {
    state["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind && c["status"] == "True")
}

/// A Job: complete, failed, or running.
fn job_status(state: &Value) -> Health {
    if condition(state, "Complete").is_some() {
        return Health::Healthy;
    }
    if let Some(failed) = condition(state, "Failed") {
        return Health::Failed(format!(
            "the Job failed: {}",
            failed["message"].as_str().unwrap_or("no reason given")
        ));
    }
    Health::Progressing("the Job runs".into())
}

/// A Deployment, as `kubectl rollout status` reads it.
fn deployment_status(state: &Value) -> Health {
    let generation = number(&state["metadata"]["generation"]);
    let status = &state["status"];
    if generation > number(&status["observedGeneration"]) {
        return Health::Progressing(
            "waiting for the Deployment's new generation to be observed".into(),
        );
    }
    let stalled = state["status"]["conditions"].as_array().is_some_and(|all| {
        all.iter()
            .any(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded")
    });
    if stalled {
        return Health::Failed("the Deployment exceeded its progress deadline".into());
    }
    let wanted = state["spec"]["replicas"].as_i64().unwrap_or(1);
    let updated = number(&status["updatedReplicas"]);
    let replicas = number(&status["replicas"]);
    let available = number(&status["availableReplicas"]);
    if updated < wanted {
        return Health::Progressing(format!(
            "{updated} of {wanted} new replicas have been updated"
        ));
    }
    if replicas > updated {
        return Health::Progressing(format!(
            "{} old replicas are pending termination",
            replicas - updated
        ));
    }
    if available < updated {
        return Health::Progressing(format!(
            "{available} of {updated} updated replicas are available"
        ));
    }
    Health::Healthy
}

/// A StatefulSet, as `kubectl rollout status` reads it.
fn stateful_set_status(state: &Value) -> Health {
    let generation = number(&state["metadata"]["generation"]);
    let status = &state["status"];
    if generation > number(&status["observedGeneration"]) {
        return Health::Progressing(
            "waiting for the StatefulSet's new generation to be observed".into(),
        );
    }
    let wanted = state["spec"]["replicas"].as_i64().unwrap_or(1);
    let ready = number(&status["readyReplicas"]);
    if ready < wanted {
        return Health::Progressing(format!("{ready} of {wanted} pods are ready"));
    }
    let updated = number(&status["updatedReplicas"]);
    if updated < wanted {
        return Health::Progressing(format!("{updated} of {wanted} pods have been updated"));
    }
    if status["updateRevision"] != status["currentRevision"] {
        return Health::Progressing("waiting for the rolling update to complete".into());
    }
    Health::Healthy
}

/// The scheduler's reason when one of the observed pods cannot be placed.
fn unschedulable(observed: &[Observed]) -> Option<String> {
    observed
        .iter()
        .filter(|o| o.kind == "Pod")
        .filter_map(|o| serde_json::from_str::<Value>(o.state.as_deref()?).ok())
        .find_map(|pod| {
            let condition = pod["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "PodScheduled" && c["status"] == "False")?;
            Some(
                condition["message"]
                    .as_str()
                    .unwrap_or("unschedulable")
                    .to_string(),
            )
        })
}

slipway_sdk::export_deploy_target!(Kubernetes, manifest: r#"objects = "kubernetes""#);

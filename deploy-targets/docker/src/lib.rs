//! The `docker` deploy target: a service runs as containers on a Docker
//! Engine, one per replica, on a network of the target's where the service's
//! name is their DNS alias. Storage directories and the log directory are
//! named volumes that outlive the containers.
//!
//! Names are `<namespace>_<service>_r<revision>_<replica>` for containers
//! and `<namespace>_<service>_<storage>` for volumes: `_` is in no DNS
//! label, so no two services' names meet.
//!
//! Published ports follow Docker Compose's rule for scaled services: replica
//! `i` of a `load-balancer` or `node-port` service publishes the service port
//! plus `i` on the host; `cluster-ip` publishes nothing.
//!
//! The objects are the host's Docker family (`network`, `volume`,
//! `container`); the host applies them and reports each container's state.

use serde::Deserialize;
use slipway_sdk::serde_json::{Map, Value, json};
use slipway_sdk::target::{
    DeployTarget, Error, Health, MountKind, Object, Observed, Probe, Service, ServiceKind,
    ServiceType,
};
use slipway_sdk::{Diagnostic, serde_json};

/// The target.
pub struct Docker;

/// The target's settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// Restarts of one container after which the service is failed.
    #[serde(default = "default_max_restarts")]
    pub max_restarts: u32,
}

fn default_max_restarts() -> u32 {
    3
}

/// The label holding an object's replica index.
const REPLICA: &str = "slipway.replica";

/// The container name of `service`'s replica `i` at its revision.
fn container_name(service: &Service, i: u32) -> String {
    format!(
        "{}_{}_r{}_{i}",
        service.namespace, service.name, service.revision
    )
}

fn volume_name(service: &Service, storage: &str) -> String {
    format!("{}_{}_{storage}", service.namespace, service.name)
}

/// The volume holding the log directory.
const LOGS: &str = "logs";

fn mount_kind(kind: MountKind) -> &'static str {
    match kind {
        MountKind::File => "file",
        MountKind::CharacterDevice => "character-device",
        MountKind::Directory => "directory",
        MountKind::Socket => "socket",
        MountKind::BlockDevice => "block-device",
    }
}

/// The container's health check, in the engine's terms.
fn health_check(service: &Service) -> Value {
    let Some(check) = &service.health_check else {
        return Value::Null;
    };
    let test: Vec<String> = match &check.probe {
        // Release images are `FROM scratch`: the engine probes itself.
        Probe::Http(http) if service.release_image => vec![
            "CMD".into(),
            "/slipway-engine".into(),
            "probe".into(),
            format!("http://127.0.0.1:{}{}", http.port, http.path),
        ],
        Probe::Http(http) => vec![
            "CMD-SHELL".into(),
            format!(
                "wget -q -O /dev/null 'http://127.0.0.1:{}{}' || exit 1",
                http.port,
                http.path.replace('\'', "")
            ),
        ],
        Probe::Command(command) => {
            let mut test = vec!["CMD".to_string()];
            test.extend(command.iter().cloned());
            test
        }
    };
    json!({
        "test": test,
        "interval-ms": check.interval_ms,
        "timeout-ms": check.timeout_ms,
        "retries": check.retries,
    })
}

fn problems(service: &Service) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    if service.kind == ServiceKind::RunOnce && service.replicas != 1 {
        problems.push(Diagnostic::at(
            "/replicas",
            "a run-once service runs one container",
        ));
    }
    if service.host_network && service.replicas > 1 && !service.ports.is_empty() {
        problems.push(Diagnostic::at(
            "/replicas",
            "replicas on the host network would listen on the same ports: use one",
        ));
    }
    let published = matches!(
        service.service_type,
        ServiceType::LoadBalancer | ServiceType::NodePort
    );
    for (i, port) in service.ports.iter().enumerate() {
        if published && u32::from(port.service) + service.replicas > 65_536 {
            problems.push(Diagnostic::at(
                format!("/ports/{i}/service"),
                format!(
                    "{} replicas publish ports {} to {}, past 65535",
                    service.replicas,
                    port.service,
                    u32::from(port.service) + service.replicas - 1
                ),
            ));
        }
    }
    problems
}

impl DeployTarget for Docker {
    type Settings = Settings;

    fn settings_schema() -> Value {
        json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "max-restarts": {
                    "type": "integer", "minimum": 0, "maximum": 1000,
                    "description": "Restarts of one container after which the service is failed."
                }
            }
        })
    }

    fn render(_: &Settings, service: &Service) -> Result<Vec<Object>, Error> {
        let problems = problems(service);
        if !problems.is_empty() {
            return Err(Error::InvalidService(problems));
        }
        let labels: Map<String, Value> = service
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let mut objects = Vec::new();
        if !service.host_network {
            objects.push(Object {
                kind: "network".into(),
                name: service.namespace.clone(),
                body: json!({ "labels": {} }).to_string(),
            });
        }
        let mut volumes: Vec<(String, String)> = service
            .storage
            .iter()
            .map(|s| (volume_name(service, &s.name), s.container_path.clone()))
            .collect();
        if let Some(dir) = &service.log_dir {
            volumes.push((volume_name(service, LOGS), dir.clone()));
        }
        for (name, _) in &volumes {
            objects.push(Object {
                kind: "volume".into(),
                name: name.clone(),
                body: json!({ "labels": labels }).to_string(),
            });
        }
        let published = matches!(
            service.service_type,
            ServiceType::LoadBalancer | ServiceType::NodePort
        );
        let mut mounts: Vec<Value> = service
            .host_mounts
            .iter()
            .map(|m| {
                json!({
                    "type": "bind",
                    "source": m.host_path,
                    "target": m.container_path,
                    "read-only": m.read_only,
                    "expect": mount_kind(m.kind),
                })
            })
            .collect();
        mounts.extend(volumes.iter().map(|(name, target)| {
            json!({ "type": "volume", "source": name, "target": target, "read-only": false })
        }));
        let env: Vec<String> = service
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let restart = match (service.kind, &service.health_check) {
            (ServiceKind::RunOnce, _) => "no",
            _ => "on-failure",
        };
        for i in 0..service.replicas {
            let mut labels = labels.clone();
            labels.insert(REPLICA.into(), Value::String(i.to_string()));
            let ports: Vec<Value> = service
                .ports
                .iter()
                .map(|p| {
                    let host = published.then(|| u32::from(p.service) + i);
                    json!({ "container": p.container, "host": host, "protocol": p.protocol })
                })
                .collect();
            objects.push(Object {
                kind: "container".into(),
                name: container_name(service, i),
                body: json!({
                    "image": service.image,
                    "env": env,
                    "labels": labels,
                    "network": (!service.host_network).then(|| service.namespace.clone()),
                    "aliases": [service.name],
                    "host-network": service.host_network,
                    "ports": ports,
                    "mounts": mounts,
                    "nano-cpus": service.limits.cpu_millis.map(|m| u64::from(m) * 1_000_000),
                    "cpu-shares": service.requests.cpu_millis.map(|m| (u64::from(m) * 1024 / 1000).max(2)),
                    "memory-bytes": service.limits.memory_bytes,
                    "memory-reservation-bytes": service.requests.memory_bytes,
                    "health-check": health_check(service),
                    "restart": restart,
                })
                .to_string(),
            });
        }
        Ok(objects)
    }

    fn assess(settings: &Settings, service: &Service, observed: &[Observed]) -> Health {
        let mut ready = 0;
        let mut waiting = Vec::new();
        let mut old = 0;
        for i in 0..service.replicas {
            let name = container_name(service, i);
            let Some(state) = observed
                .iter()
                .find(|o| o.kind == "container" && o.name == name)
                .and_then(|o| o.state.as_deref())
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
            else {
                waiting.push(format!("{name} is not created yet"));
                continue;
            };
            let status = state["status"].as_str().unwrap_or("unknown");
            let health = state["health"].as_str().unwrap_or("none");
            let exit = state["exit-code"].as_i64().unwrap_or(0);
            let restarts = state["restarts"].as_u64().unwrap_or(0);
            if let Some(error) = state["error"].as_str().filter(|e| !e.is_empty()) {
                return Health::Failed(format!("{name}: {error}"));
            }
            match service.kind {
                ServiceKind::RunOnce => match status {
                    "exited" if exit == 0 => ready += 1,
                    "exited" | "dead" => {
                        return Health::Failed(format!("{name} exited with {exit}"));
                    }
                    _ => waiting.push(format!("{name} is {status}")),
                },
                ServiceKind::LongRunning => {
                    if restarts > u64::from(settings.max_restarts) {
                        return Health::Failed(format!(
                            "{name} restarted {restarts} times (exit code {exit})"
                        ));
                    }
                    match (status, health) {
                        ("running", "healthy" | "none") => ready += 1,
                        // The host saw it answer its HTTP probe before the
                        // engine's first check.
                        ("running", "starting") if state["ready-probe"] == "ok" => ready += 1,
                        ("running", "unhealthy") => waiting.push(format!("{name} is unhealthy")),
                        ("running", _) => waiting.push(format!("{name} is starting")),
                        ("exited" | "dead", _)
                            if service.health_check.is_none() && restarts == 0 =>
                        {
                            waiting.push(format!("{name} exited with {exit}; restarting"))
                        }
                        _ => waiting.push(format!("{name} is {status}")),
                    }
                }
            }
        }
        for o in observed {
            let current = (0..service.replicas).any(|i| o.name == container_name(service, i));
            if o.kind == "container" && !current && o.state.is_some() {
                old += 1;
            }
        }
        if ready == service.replicas && old == 0 {
            return Health::Healthy;
        }
        let mut detail = format!("{ready} of {} ready", service.replicas);
        if old > 0 {
            detail.push_str(&format!(", {old} of an earlier revision still there"));
        }
        if let Some(first) = waiting.first() {
            detail.push_str(&format!(" ({first})"));
        }
        if ready == service.replicas {
            Health::Degraded(detail)
        } else {
            Health::Progressing(detail)
        }
    }
}

slipway_sdk::export_deploy_target!(Docker, manifest: r#"objects = "docker""#);

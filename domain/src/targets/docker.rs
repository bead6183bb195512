//! The Docker driver: applies what a `docker`-family deploy target rendered
//! to a Docker Engine (bollard), and observes it.
//!
//! The objects are parsed strictly and checked against the service before
//! anything reaches the engine: a plugin names no field the driver does not
//! know (no privileges, capabilities, devices or namespaces of the host),
//! runs no image but the service's, mounts no host path the service does not
//! declare, and names nothing outside the namespace the host gave it. The
//! host's own labels go on every object, over any the plugin wrote.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthConfig, HostConfig, Mount, MountType,
    NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest, NetworkingConfig,
    PortBinding, RestartPolicy, RestartPolicyNameEnum, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder, StopContainerOptionsBuilder,
};
use futures::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use slipway_runtime::kinds::{MountKind, Observed, Rendered, Service, ServiceType};

use super::DriverError;

/// Labels the host puts on every object it creates.
pub const SERVICE_LABEL: &str = "slipway.service";
/// The server that created an object (see [`slipway_store::Store::server_id`]).
pub const SERVER_LABEL: &str = "slipway.server";
const REVISION_LABEL: &str = "slipway.revision";
/// The sha256 of the container as rendered: the same revision applied again
/// leaves a container with the same hash alone.
const SPEC_LABEL: &str = "slipway.spec";
const CPU_REQUEST_LABEL: &str = "slipway.requests.cpu-millis";
/// On a container whose service restarts it when its health check fails.
const RESTART_LABEL: &str = "slipway.restart-unhealthy";
const MEMORY_REQUEST_LABEL: &str = "slipway.requests.memory-bytes";

/// Seconds a container has to stop before it is killed.
const STOP_SECONDS: i32 = 10;
/// Host ports below this are not published for services (my choice: a
/// shared engine's well-known ports are the operator's).
const MIN_HOST_PORT: u16 = 1024;
/// Host paths no service mounts, whatever the operator allows.
const NEVER_MOUNTED: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/var/run",
    "/var/lib/docker",
];

/// What the operator lets services do on the server's own Docker Engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerPolicy {
    /// Host paths (and what is under them) services may mount.
    pub host_paths: Vec<PathBuf>,
    /// Whether services may use the host's network.
    pub host_network: bool,
}

/// A network's or volume's body: checked, its labels not applied (the
/// host labels what it creates itself).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct LabelsBody {
    #[serde(default, rename = "labels")]
    _labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ContainerBody {
    image: String,
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    network: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    host_network: bool,
    #[serde(default)]
    ports: Vec<PortBody>,
    #[serde(default)]
    mounts: Vec<MountBody>,
    nano_cpus: Option<u64>,
    cpu_shares: Option<u64>,
    memory_bytes: Option<u64>,
    memory_reservation_bytes: Option<u64>,
    health_check: Option<CheckBody>,
    restart: Restart,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PortBody {
    container: u16,
    host: Option<u16>,
    protocol: String,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case",
    tag = "type"
)]
enum MountBody {
    Bind {
        source: String,
        target: String,
        read_only: bool,
        expect: String,
    },
    Volume {
        source: String,
        target: String,
        read_only: bool,
    },
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct CheckBody {
    test: Vec<String>,
    interval_ms: u32,
    timeout_ms: u32,
    retries: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
enum Restart {
    No,
    OnFailure,
    UnlessStopped,
}

/// A container, checked, ready to be created.
#[derive(Debug, Clone)]
pub struct ContainerPlan {
    /// Its name.
    pub name: String,
    body: ContainerBody,
    hash: String,
    /// Its replica index, from the `slipway.replica` label.
    pub replica: u32,
}

impl ContainerPlan {
    /// Whether it publishes ports on the host (and so cannot run beside the
    /// container it replaces).
    pub fn publishes(&self) -> bool {
        self.body.host_network || self.body.ports.iter().any(|p| p.host.is_some())
    }
}

/// Everything a service's revision needs on the engine, checked.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The network, if the service is not on the host's.
    pub network: Option<String>,
    /// Named volumes.
    pub volumes: Vec<String>,
    /// One container per replica.
    pub containers: Vec<ContainerPlan>,
}

fn engine(e: bollard::errors::Error) -> DriverError {
    DriverError::Engine(match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message,
        other => other.to_string(),
    })
}

/// An engine error's first line, at most 200 characters: what the engine
/// says of a registry it reached goes no further.
fn short(e: bollard::errors::Error) -> String {
    let text = match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message,
        bollard::errors::Error::DockerStreamError { error } => error,
        other => other.to_string(),
    };
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect()
}

fn not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// What a container's mount kind is called on disk.
fn kind_name(kind: MountKind) -> &'static str {
    match kind {
        MountKind::File => "file",
        MountKind::CharacterDevice => "character-device",
        MountKind::Directory => "directory",
        MountKind::Socket => "socket",
        MountKind::BlockDevice => "block-device",
    }
}

/// What is at `path`, by the names of [`kind_name`].
fn found_kind(path: &Path) -> Result<&'static str, std::io::Error> {
    use std::os::unix::fs::FileTypeExt;
    let kind = std::fs::metadata(path)?.file_type();
    Ok(if kind.is_file() {
        "file"
    } else if kind.is_dir() {
        "directory"
    } else if kind.is_char_device() {
        "character-device"
    } else if kind.is_block_device() {
        "block-device"
    } else if kind.is_socket() {
        "socket"
    } else {
        "something else"
    })
}

/// Checks what `docker`-family `rendered` objects ask of the engine against
/// `service` and the operator's `policy`.
pub fn plan(
    rendered: &[Rendered],
    service: &Service,
    policy: &DockerPolicy,
) -> Result<Plan, DriverError> {
    let refuse = |what: String| DriverError::Rendered(what);
    let mut plan = Plan::default();
    let prefix = format!("{}_{}_", service.namespace, service.name);
    for object in rendered {
        let named = |ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(refuse(format!(
                    "a {} named `{}`, outside the service's names (`{prefix}...`, a network `{}`)",
                    object.kind, object.name, service.namespace
                )))
            }
        };
        let body = object.body.clone();
        match object.kind.as_str() {
            "network" => {
                named(object.name == service.namespace)?;
                serde_json::from_value::<LabelsBody>(body)
                    .map_err(|e| refuse(format!("a network that does not parse: {e}")))?;
                plan.network = Some(object.name.clone());
            }
            "volume" => {
                named(object.name.starts_with(&prefix))?;
                serde_json::from_value::<LabelsBody>(body)
                    .map_err(|e| refuse(format!("a volume that does not parse: {e}")))?;
                plan.volumes.push(object.name.clone());
            }
            "container" => {
                named(object.name.starts_with(&prefix))?;
                let body: ContainerBody = serde_json::from_value(body).map_err(|e| {
                    refuse(format!(
                        "a container `{}` that does not parse: {e}",
                        object.name
                    ))
                })?;
                let replica = body
                    .labels
                    .get("slipway.replica")
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(plan.containers.len() as u32);
                plan.containers.push(ContainerPlan {
                    name: object.name.clone(),
                    hash: hex::encode(Sha256::digest(
                        serde_json::to_vec(&body).expect("serializes"),
                    )),
                    body,
                    replica,
                });
            }
            other => {
                return Err(refuse(format!(
                    "an object of kind `{other}`, not a network, volume or container"
                )));
            }
        }
    }
    let mut replicas: Vec<u32> = plan.containers.iter().map(|c| c.replica).collect();
    replicas.sort_unstable();
    if replicas != (0..service.replicas).collect::<Vec<_>>() {
        return Err(refuse(format!(
            "containers for replicas {replicas:?}, not one for each of the service's {}",
            service.replicas
        )));
    }
    for container in &plan.containers {
        let body = &container.body;
        let name = &container.name;
        let limits = &service.limits;
        let asked = (
            limits.cpu_millis.map(|m| u64::from(m) * 1_000_000),
            limits.memory_bytes,
            service.requests.memory_bytes,
        );
        if (
            body.nano_cpus,
            body.memory_bytes,
            body.memory_reservation_bytes,
        ) != asked
        {
            return Err(refuse(format!(
                "container `{name}` with other CPU or memory limits than the service's"
            )));
        }
        if body.cpu_shares.is_some_and(|s| !(2..=262_144).contains(&s)) {
            return Err(refuse(format!(
                "container `{name}` with CPU shares past 2 to 262144"
            )));
        }
        if !body.host_network && body.network.as_deref() != Some(service.namespace.as_str()) {
            return Err(refuse(format!(
                "container `{name}` off the target's network `{}`",
                service.namespace
            )));
        }
        if body.image != service.image {
            return Err(refuse(format!(
                "container `{name}` with the image `{}`, not the service's",
                body.image
            )));
        }
        if body.host_network && !service.host_network {
            return Err(refuse(format!(
                "container `{name}` on the host's network, which the service does not ask for"
            )));
        }
        if body.host_network && !policy.host_network {
            return Err(DriverError::NotAllowed(
                "this Docker host does not let services use its network".into(),
            ));
        }
        if body.network.is_some() && body.network != plan.network {
            return Err(refuse(format!(
                "container `{name}` on a network it did not render"
            )));
        }
        let published = matches!(
            service.service_type,
            ServiceType::LoadBalancer | ServiceType::NodePort
        );
        for port in &body.ports {
            let declared = service
                .ports
                .iter()
                .find(|p| p.container == port.container && p.protocol == port.protocol);
            let Some(declared) = declared else {
                return Err(refuse(format!(
                    "container `{name}` with a port {}/{} the service does not declare",
                    port.container, port.protocol
                )));
            };
            // Compose's rule for scaled services, and nothing else.
            let expected = published
                .then(|| u32::from(declared.service) + container.replica)
                .and_then(|p| u16::try_from(p).ok());
            if port.host != expected {
                return Err(refuse(format!(
                    "container `{name}` publishing {:?} for port {}, not {expected:?}",
                    port.host, port.container
                )));
            }
            if port.host.is_some_and(|p| p < MIN_HOST_PORT) {
                return Err(DriverError::NotAllowed(format!(
                    "this Docker host publishes no port under {MIN_HOST_PORT} for a service"
                )));
            }
        }
        for mount in &body.mounts {
            match mount {
                MountBody::Bind {
                    source,
                    target,
                    expect,
                    read_only,
                } => {
                    // Declared read-only, mounted read-only.
                    let declared = service.host_mounts.iter().any(|m| {
                        &m.host_path == source
                            && &m.container_path == target
                            && kind_name(m.kind) == expect
                            && (!m.read_only || *read_only)
                    });
                    if !declared {
                        return Err(refuse(format!(
                            "container `{name}` mounting the host path `{source}`, which the service does not declare"
                        )));
                    }
                    let path = Path::new(source);
                    let allowed = policy.host_paths.iter().any(|root| path.starts_with(root))
                        && !NEVER_MOUNTED.iter().any(|never| path.starts_with(never))
                        && !source.ends_with(".sock");
                    if !allowed || !Path::new(source).is_absolute() || source.contains("/../") {
                        return Err(DriverError::NotAllowed(format!(
                            "this Docker host does not let services mount `{source}`"
                        )));
                    }
                }
                MountBody::Volume { source, .. } => {
                    if !plan.volumes.contains(source) {
                        return Err(refuse(format!(
                            "container `{name}` mounting a volume `{source}` it did not render"
                        )));
                    }
                }
            }
        }
    }
    Ok(plan)
}

/// Held while a network is looked up and made or removed, on any engine.
static NETWORKS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A Docker Engine and what the operator lets services do on it.
#[derive(Debug, Clone)]
pub struct DockerDriver {
    docker: Docker,
    policy: DockerPolicy,
    server: String,
    /// The server's own engine, whose containers' addresses the host may
    /// probe; a remote engine's answers are its owner's word.
    own: bool,
    /// Restarts the driver made of unhealthy containers, by name: the engine
    /// counts only those of its restart policy. Kept while the server runs.
    restarted: Arc<Mutex<HashMap<String, u64>>>,
}

impl DockerDriver {
    /// The engine `DOCKER_HOST` names, or the local socket; objects are
    /// labelled as made by `server`.
    pub fn local(policy: DockerPolicy, server: &str) -> Result<DockerDriver, DriverError> {
        let docker = Docker::connect_with_local_defaults().map_err(engine)?;
        Ok(DockerDriver {
            docker,
            policy,
            server: server.into(),
            own: true,
            restarted: Arc::default(),
        })
    }

    /// An engine an organisation set as a target, reached through
    /// `docker`: its services mount no host path and use no host network
    /// (the operator's [`DockerPolicy`] is for the server's own engine).
    pub fn remote(docker: Docker, server: &str) -> DockerDriver {
        DockerDriver {
            docker,
            policy: DockerPolicy::default(),
            server: server.into(),
            own: false,
            restarted: Arc::default(),
        }
    }

    /// Whether this is the server's own engine.
    pub fn is_own(&self) -> bool {
        self.own
    }

    /// Whether the engine answers.
    pub async fn ping(&self) -> bool {
        self.docker.ping().await.is_ok()
    }

    /// The operator's policy.
    pub fn policy(&self) -> &DockerPolicy {
        &self.policy
    }

    /// The engine's CPUs (millicores) and memory (bytes).
    pub async fn capacity(&self) -> Result<(u64, u64), DriverError> {
        let info = self.docker.info().await.map_err(engine)?;
        Ok((
            info.ncpu.unwrap_or(0).max(0) as u64 * 1000,
            info.mem_total.unwrap_or(0).max(0) as u64,
        ))
    }

    /// What the running containers of this server's services other than
    /// `except` request: millicores and bytes.
    pub async fn requested(&self, except: u64) -> Result<(u64, u64), DriverError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{SERVER_LABEL}={}", self.server)],
        )]);
        let options = ListContainersOptionsBuilder::new()
            .filters(&filters)
            .build();
        let mut total = (0, 0);
        for container in self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(engine)?
        {
            let labels = container.labels.unwrap_or_default();
            if labels.get(SERVICE_LABEL) == Some(&except.to_string()) {
                continue;
            }
            let number = |key: &str| {
                labels
                    .get(key)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            total.0 += number(CPU_REQUEST_LABEL);
            total.1 += number(MEMORY_REQUEST_LABEL);
        }
        Ok(total)
    }

    fn labels(
        &self,
        service: &Service,
        extra: &BTreeMap<String, String>,
    ) -> HashMap<String, String> {
        let mut labels: HashMap<String, String> = extra
            .iter()
            .filter(|(k, _)| !k.starts_with("slipway.") || k.as_str() == "slipway.replica")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.insert(SERVER_LABEL.into(), self.server.clone());
        labels.insert(SERVICE_LABEL.into(), service.id.to_string());
        labels
    }

    /// Refuses an object named as `service`'s that this server did not make
    /// for it.
    fn owns(
        &self,
        labels: &HashMap<String, String>,
        service: &Service,
        name: &str,
    ) -> Result<(), DriverError> {
        let ours = labels.get(SERVER_LABEL) == Some(&self.server)
            && labels.get(SERVICE_LABEL) == Some(&service.id.to_string());
        if ours {
            Ok(())
        } else {
            Err(DriverError::NotAllowed(format!(
                "`{name}` exists on the engine and is not this service's: remove or rename it"
            )))
        }
    }

    /// Creates the network and volumes of `plan` that do not exist yet.
    pub async fn prepare(
        &self,
        plan: &Plan,
        service: &Service,
    ) -> Result<Vec<String>, DriverError> {
        let mut created = Vec::new();
        if let Some(network) = &plan.network {
            // The engine lets two networks have one name: services of a
            // namespace prepared at once (a plan's wave) make it once.
            let _one = NETWORKS.lock().await;
            match self.docker.inspect_network(network, None).await {
                Ok(existing) => {
                    let labels = existing.labels.unwrap_or_default();
                    if labels.get(SERVER_LABEL) != Some(&self.server) {
                        return Err(DriverError::NotAllowed(format!(
                            "the network `{network}` exists on the engine and is not this server's"
                        )));
                    }
                }
                Err(e) if not_found(&e) => {
                    let labels = HashMap::from([(SERVER_LABEL.to_string(), self.server.clone())]);
                    self.docker
                        .create_network(NetworkCreateRequest {
                            name: network.clone(),
                            driver: Some("bridge".into()),
                            labels: Some(labels),
                            ..Default::default()
                        })
                        .await
                        .map_err(engine)?;
                    created.push(format!("network {network}"));
                }
                Err(e) => return Err(engine(e)),
            }
        }
        for volume in &plan.volumes {
            match self.docker.inspect_volume(volume).await {
                Ok(existing) => self.owns(&existing.labels, service, volume)?,
                Err(e) if not_found(&e) => {
                    self.docker
                        .create_volume(VolumeCreateRequest {
                            name: Some(volume.clone()),
                            labels: Some(self.labels(service, &BTreeMap::new())),
                            ..Default::default()
                        })
                        .await
                        .map_err(engine)?;
                    created.push(format!("volume {volume}"));
                }
                Err(e) => return Err(engine(e)),
            }
        }
        Ok(created)
    }

    /// Pulls `image`, even when the engine has it (the registry decides who
    /// may run it); answers whether the engine's image changed.
    pub async fn pull(
        &self,
        image: &str,
        credentials: Option<DockerCredentials>,
    ) -> Result<bool, DriverError> {
        let id =
            |inspected: Result<bollard::models::ImageInspect, _>| inspected.ok().and_then(|i| i.id);
        let before = id(self.docker.inspect_image(image).await);
        let options = CreateImageOptionsBuilder::new().from_image(image).build();
        let mut pulling = self.docker.create_image(Some(options), None, credentials);
        while let Some(progress) = pulling.next().await {
            progress.map_err(|e| {
                DriverError::Engine(format!("pulling {image} failed: {}", short(e)))
            })?;
        }
        Ok(id(self.docker.inspect_image(image).await) != before)
    }

    /// Checks every host path `container` mounts is what it declares, and
    /// is reached through no symbolic link.
    fn check_host_paths(container: &ContainerPlan) -> Result<(), DriverError> {
        for mount in &container.body.mounts {
            if let MountBody::Bind { source, expect, .. } = mount {
                let resolved = std::fs::canonicalize(source).map_err(|e| {
                    DriverError::HostPath(format!("the host path `{source}` cannot be used: {e}"))
                })?;
                if resolved != Path::new(source) {
                    return Err(DriverError::HostPath(format!(
                        "the host path `{source}` goes through a symbolic link (to `{}`): name the path itself",
                        resolved.display()
                    )));
                }
                match found_kind(Path::new(source)) {
                    Ok(found) if found == expect => {}
                    Ok(found) => {
                        return Err(DriverError::HostPath(format!(
                            "the host path `{source}` is a {found}, not a {expect}"
                        )));
                    }
                    Err(e) => {
                        return Err(DriverError::HostPath(format!(
                            "the host path `{source}` cannot be used as a {expect}: {e}"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Creates and starts `container` for `service`, unless it runs as
    /// planned already; a container of that name from another plan is
    /// replaced. Answers whether anything changed.
    pub async fn run(
        &self,
        container: &ContainerPlan,
        service: &Service,
    ) -> Result<bool, DriverError> {
        if let Ok(existing) = self.docker.inspect_container(&container.name, None).await {
            let labels = existing.config.and_then(|c| c.labels).unwrap_or_default();
            self.owns(&labels, service, &container.name)?;
            let same = labels.get(SPEC_LABEL) == Some(&container.hash);
            let running = existing.state.and_then(|s| s.running).unwrap_or(false);
            let on_network = match &container.body.network {
                Some(network) => existing
                    .network_settings
                    .and_then(|n| n.networks)
                    .is_some_and(|n| n.contains_key(network)),
                None => true,
            };
            if same && running && on_network {
                return Ok(false);
            }
            if same && service_runs_once(service) {
                // A run-once container that has ended is not run again.
                return Ok(false);
            }
            if same {
                // Stopped; an earlier server's stop took it off its network.
                if let (Some(network), false) = (&container.body.network, on_network) {
                    self.reconnect(&container.name, network, &service.name)
                        .await?;
                }
                self.start(&container.name).await?;
                return Ok(true);
            }
            self.remove(&container.name).await?;
        }
        Self::check_host_paths(container)?;
        let body = &container.body;
        let mut labels = self.labels(service, &body.labels);
        labels.insert(REVISION_LABEL.into(), service.revision.to_string());
        labels.insert(SPEC_LABEL.into(), container.hash.clone());
        let restarts = service
            .health_check
            .as_ref()
            .is_some_and(|c| c.restart_on_failure);
        if restarts && !service_runs_once(service) {
            labels.insert(RESTART_LABEL.into(), "true".into());
        }
        labels.insert(
            CPU_REQUEST_LABEL.into(),
            service.requests.cpu_millis.unwrap_or(0).to_string(),
        );
        labels.insert(
            MEMORY_REQUEST_LABEL.into(),
            service.requests.memory_bytes.unwrap_or(0).to_string(),
        );
        let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        let mut exposed = Vec::new();
        for port in &body.ports {
            let key = format!("{}/{}", port.container, port.protocol);
            exposed.push(key.clone());
            if let Some(host) = port.host {
                bindings
                    .entry(key)
                    .or_default()
                    .get_or_insert_default()
                    .push(PortBinding {
                        host_ip: None,
                        host_port: Some(host.to_string()),
                    });
            }
        }
        let mounts = body
            .mounts
            .iter()
            .map(|m| match m {
                MountBody::Bind {
                    source,
                    target,
                    read_only,
                    ..
                } => Mount {
                    typ: Some(MountType::BIND),
                    source: Some(source.clone()),
                    target: Some(target.clone()),
                    read_only: Some(*read_only),
                    ..Default::default()
                },
                MountBody::Volume {
                    source,
                    target,
                    read_only,
                } => Mount {
                    typ: Some(MountType::VOLUME),
                    source: Some(source.clone()),
                    target: Some(target.clone()),
                    read_only: Some(*read_only),
                    ..Default::default()
                },
            })
            .collect();
        let millis = |ms: u32| i64::from(ms) * 1_000_000;
        let healthcheck = body.health_check.as_ref().map(|c| HealthConfig {
            test: Some(c.test.clone()),
            interval: Some(millis(c.interval_ms)),
            timeout: Some(millis(c.timeout_ms)),
            retries: Some(i64::from(c.retries)),
            // While it starts, probed every half second: healthy as soon as it
            // answers, not an interval later; failures count after it.
            start_period: Some(millis(c.interval_ms.saturating_mul(c.retries))),
            start_interval: Some(millis(500)),
        });
        let network_mode = if body.host_network {
            Some("host".to_string())
        } else {
            body.network.clone()
        };
        let networking_config = body.network.as_ref().map(|network| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network.clone(),
                EndpointSettings {
                    aliases: Some(body.aliases.clone()),
                    ..Default::default()
                },
            )])),
        });
        let restart = match body.restart {
            Restart::No => RestartPolicyNameEnum::NO,
            Restart::OnFailure => RestartPolicyNameEnum::ON_FAILURE,
            Restart::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
        };
        let config = ContainerCreateBody {
            image: Some(body.image.clone()),
            env: Some(body.env.clone()),
            labels: Some(labels),
            exposed_ports: Some(exposed),
            healthcheck,
            host_config: Some(HostConfig {
                network_mode,
                port_bindings: Some(bindings),
                mounts: Some(mounts),
                nano_cpus: body.nano_cpus.map(|n| n as i64),
                cpu_shares: body.cpu_shares.map(|n| n as i64),
                memory: body.memory_bytes.map(|n| n as i64),
                memory_reservation: body.memory_reservation_bytes.map(|n| n as i64),
                restart_policy: Some(RestartPolicy {
                    name: Some(restart),
                    maximum_retry_count: None,
                }),
                // What no service gets, whatever was rendered.
                privileged: Some(false),
                cap_drop: Some(vec!["NET_RAW".into(), "MKNOD".into(), "SYS_CHROOT".into()]),
                security_opt: Some(vec!["no-new-privileges".into()]),
                pids_limit: Some(4096),
                ..Default::default()
            }),
            networking_config,
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::new()
            .name(&container.name)
            .build();
        self.docker
            .create_container(Some(options), config)
            .await
            .map_err(engine)?;
        self.docker
            .start_container(&container.name, None)
            .await
            .map_err(engine)?;
        Ok(true)
    }

    /// Stops container `name` (on its networks still, so it finishes what
    /// it is answering while its alias leads elsewhere), takes it off them
    /// and removes it. Absent is removed.
    pub async fn remove(&self, name: &str) -> Result<(), DriverError> {
        let existing = match self.docker.inspect_container(name, None).await {
            Ok(existing) => existing,
            Err(e) if not_found(&e) => return Ok(()),
            Err(e) => return Err(engine(e)),
        };
        // Stopped first, still on its networks, so it finishes what it is
        // answering; a stopped container's name resolves no more.
        self.stop(name).await?;
        let networks = existing
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default();
        for network in networks.keys().filter(|n| n.as_str() != "host") {
            let request = NetworkDisconnectRequest {
                container: name.to_string(),
                force: Some(true),
            };
            if let Err(e) = self.docker.disconnect_network(network, request).await
                && !not_found(&e)
            {
                tracing::warn!(container = name, network, error = %e, "cannot disconnect a container");
            }
        }
        self.restarted.lock().expect("restarts lock").remove(name);
        let options = RemoveContainerOptionsBuilder::new().force(true).build();
        match self.docker.remove_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }

    /// Restarts this server's containers whose health check fails and whose
    /// service asks for it (seed 003: a node restarts when its health check
    /// fails); the engine's restart policy restarts only what exits.
    /// Answers the containers restarted.
    pub async fn restart_unhealthy(&self) -> Result<Vec<String>, DriverError> {
        let filters = HashMap::from([
            (
                "label".to_string(),
                vec![
                    format!("{SERVER_LABEL}={}", self.server),
                    format!("{RESTART_LABEL}=true"),
                ],
            ),
            ("health".to_string(), vec!["unhealthy".to_string()]),
        ]);
        let options = ListContainersOptionsBuilder::new()
            .filters(&filters)
            .build();
        let mut restarted = Vec::new();
        for container in self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(engine)?
        {
            let Some(name) = container.names.and_then(|n| n.into_iter().next()) else {
                continue;
            };
            let name = name.trim_start_matches('/').to_string();
            let options = bollard::query_parameters::RestartContainerOptionsBuilder::new()
                .t(STOP_SECONDS)
                .build();
            match self.docker.restart_container(&name, Some(options)).await {
                Ok(()) => {
                    *self
                        .restarted
                        .lock()
                        .expect("restarts lock")
                        .entry(name.clone())
                        .or_default() += 1;
                    restarted.push(name);
                }
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(engine(e)),
            }
        }
        Ok(restarted)
    }

    /// Stops container `name`; a stopped or absent one is left as it is.
    pub async fn stop(&self, name: &str) -> Result<(), DriverError> {
        let options = StopContainerOptionsBuilder::new().t(STOP_SECONDS).build();
        match self.docker.stop_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }

    /// Starts container `name` again, back on `network` under `aliases` when
    /// it was taken off.
    pub async fn start(&self, name: &str) -> Result<(), DriverError> {
        match self.docker.start_container(name, None).await {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }

    /// Puts container `name` back on `network` under its alias, after a
    /// stop took it off.
    pub async fn reconnect(
        &self,
        name: &str,
        network: &str,
        alias: &str,
    ) -> Result<(), DriverError> {
        let request = NetworkConnectRequest {
            container: name.to_string(),
            endpoint_config: Some(EndpointSettings {
                aliases: Some(vec![alias.to_string()]),
                ..Default::default()
            }),
        };
        match self.docker.connect_network(network, request).await {
            Ok(()) => Ok(()),
            // Already on it.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 403, ..
            }) => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }

    /// The containers of service `id`, every revision's, by name.
    pub async fn containers(&self, id: u64) -> Result<Vec<String>, DriverError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![
                format!("{SERVICE_LABEL}={id}"),
                format!("{SERVER_LABEL}={}", self.server),
            ],
        )]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let mut names: Vec<String> = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(engine)?
            .into_iter()
            .filter_map(|c| c.names?.into_iter().next())
            .map(|n| n.trim_start_matches('/').to_string())
            .collect();
        names.sort();
        Ok(names)
    }

    /// What the engine says of service `id`'s containers, as a deploy target
    /// reads it: `status`, `health`, `exit-code`, `restarts`, `revision`,
    /// `error`, and the host ports published.
    pub async fn observe(&self, id: u64) -> Result<Vec<Observed>, DriverError> {
        let mut observed = Vec::new();
        for name in self.containers(id).await? {
            let supervised = self
                .restarted
                .lock()
                .expect("restarts lock")
                .get(&name)
                .copied()
                .unwrap_or(0);
            let inspected = match self.docker.inspect_container(&name, None).await {
                Ok(inspected) => inspected,
                Err(e) if not_found(&e) => continue,
                Err(e) => return Err(engine(e)),
            };
            let state = inspected.state.unwrap_or_default();
            let labels = inspected.config.and_then(|c| c.labels).unwrap_or_default();
            let address = inspected
                .network_settings
                .as_ref()
                .and_then(|n| n.networks.as_ref())
                .and_then(|n| {
                    n.values()
                        .find_map(|e| e.ip_address.clone().filter(|a| !a.is_empty()))
                });
            let mut ports: Vec<String> = inspected
                .network_settings
                .and_then(|n| n.ports)
                .unwrap_or_default()
                .into_iter()
                .flat_map(|(port, bindings)| {
                    bindings
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(move |b| Some(format!("{}->{port}", b.host_port?)))
                })
                .collect();
            // Bound on IPv4 and IPv6 alike: one port.
            ports.sort();
            ports.dedup();
            observed.push(Observed {
                kind: "container".into(),
                name,
                state: Some(serde_json::json!({
                    "status": state.status.map(|s| s.to_string()).unwrap_or_default(),
                    "health": state.health.and_then(|h| h.status).map(|s| s.to_string()).filter(|s| !s.is_empty()).unwrap_or_else(|| "none".into()),
                    "exit-code": state.exit_code.unwrap_or(0),
                    "restarts": inspected.restart_count.unwrap_or(0).max(0) as u64 + supervised,
                    "oom-killed": state.oom_killed.unwrap_or(false),
                    "error": state.error.unwrap_or_default(),
                    "revision": labels.get(REVISION_LABEL).and_then(|r| r.parse::<u32>().ok()),
                    "replica": labels.get("slipway.replica").and_then(|r| r.parse::<u32>().ok()),
                    "ports": ports,
                    "address": address,
                })),
            });
        }
        Ok(observed)
    }

    /// What container `name` wrote to standard output and error, a chunk
    /// (usually a line) at a time: its last `tail` lines, then, when
    /// `follow`, what it writes until it stops.
    pub fn logs(
        &self,
        name: &str,
        tail: u32,
        follow: bool,
    ) -> impl futures::Stream<Item = Result<String, DriverError>> + Send + 'static {
        let options = bollard::query_parameters::LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .follow(follow)
            .tail(&tail.to_string())
            .build();
        self.docker
            .logs(name, Some(options))
            .map(|chunk| chunk.map(|c| c.to_string()).map_err(engine))
    }

    /// Whether a container at `address` answers GET `path` on `port` with
    /// 2xx or 3xx within a second: readiness seen from the host while the
    /// engine's health check has not run yet. Only on the server's own
    /// engine: a remote one could name any address for its containers.
    pub async fn answers(&self, address: &str, port: u16, path: &str) -> bool {
        let Ok(ip) = address.parse::<std::net::IpAddr>() else {
            return false;
        };
        if !self.own {
            return false;
        }
        let url = format!("http://{}{path}", std::net::SocketAddr::new(ip, port));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(1))
            .build();
        match client {
            Ok(client) => client
                .get(url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success() || r.status().is_redirection()),
            Err(_) => false,
        }
    }

    /// Removes network `name` unless containers are still on it.
    pub async fn remove_network_if_unused(&self, name: &str) {
        let _one = NETWORKS.lock().await;
        let used = match self.docker.inspect_network(name, None).await {
            Ok(network) => network.containers.is_some_and(|c| !c.is_empty()),
            Err(_) => return,
        };
        if !used && let Err(e) = self.docker.remove_network(name).await {
            tracing::warn!(network = name, error = %e, "cannot remove a network");
        }
    }

    /// Removes volume `name`; absent is removed.
    pub async fn remove_volume(&self, name: &str) -> Result<(), DriverError> {
        let options = RemoveVolumeOptionsBuilder::new().force(true).build();
        match self.docker.remove_volume(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }

    /// The volumes of service `id`.
    pub async fn volumes(&self, id: u64) -> Result<Vec<String>, DriverError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![
                format!("{SERVICE_LABEL}={id}"),
                format!("{SERVER_LABEL}={}", self.server),
            ],
        )]);
        let options = bollard::query_parameters::ListVolumesOptionsBuilder::new()
            .filters(&filters)
            .build();
        let listed = self
            .docker
            .list_volumes(Some(options))
            .await
            .map_err(engine)?;
        Ok(listed
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .collect())
    }
}

fn service_runs_once(service: &Service) -> bool {
    service.kind == slipway_runtime::kinds::ServiceKind::RunOnce
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service() -> Service {
        super::super::tests::service("sw1_o1_local")
    }

    fn container(body: serde_json::Value) -> Vec<Rendered> {
        let mut base = json!({
            "image": "registry.example/web@sha256:ab",
            "network": "sw1_o1_local",
            "aliases": ["web"],
            "restart": "on-failure",
        });
        for (k, v) in body.as_object().unwrap() {
            base[k] = v.clone();
        }
        vec![
            Rendered {
                kind: "network".into(),
                name: "sw1_o1_local".into(),
                body: json!({}),
            },
            Rendered {
                kind: "container".into(),
                name: "sw1_o1_local_web_r1_0".into(),
                body: base,
            },
        ]
    }

    fn allowing(paths: &[&str]) -> DockerPolicy {
        DockerPolicy {
            host_paths: paths.iter().map(PathBuf::from).collect(),
            host_network: false,
        }
    }

    fn refusal(rendered: &[Rendered], policy: &DockerPolicy) -> String {
        plan(rendered, &service(), policy).unwrap_err().to_string()
    }

    #[test]
    fn what_a_plugin_renders_runs_only_as_the_service_declares() {
        let policy = allowing(&["/srv"]);
        let planned = plan(&container(json!({})), &service(), &policy).unwrap();
        assert_eq!(planned.containers.len(), 1);
        assert_eq!(planned.network.as_deref(), Some("sw1_o1_local"));

        // A field the driver does not know never reaches the engine.
        let privileged = refusal(&container(json!({"privileged": true})), &policy);
        assert!(
            privileged.contains("unknown field `privileged`"),
            "{privileged}"
        );
        // Another image than the service's.
        let image = refusal(&container(json!({"image": "evil/miner"})), &policy);
        assert!(image.contains("not the service's"), "{image}");
        // A host path the service does not declare, or declared read-only
        // and mounted writable.
        let root = json!([{"type": "bind", "source": "/", "target": "/host", "read-only": false, "expect": "directory"}]);
        assert!(refusal(&container(json!({"mounts": root})), &policy).contains("does not declare"));
        let writable = json!([{"type": "bind", "source": "/srv/data", "target": "/data", "read-only": false, "expect": "directory"}]);
        assert!(
            refusal(&container(json!({"mounts": writable})), &policy).contains("does not declare")
        );
        // The declared one, where the operator allows it, and not elsewhere.
        let declared = json!([{"type": "bind", "source": "/srv/data", "target": "/data", "read-only": true, "expect": "directory"}]);
        assert!(plan(&container(json!({"mounts": declared})), &service(), &policy).is_ok());
        let elsewhere = refusal(
            &container(json!({"mounts": declared})),
            &allowing(&["/home"]),
        );
        assert!(
            elsewhere.contains("does not let services mount"),
            "{elsewhere}"
        );
        // The host's network, which the service does not ask for.
        let host = refusal(
            &container(json!({"host-network": true, "network": null})),
            &policy,
        );
        assert!(host.contains("host's network"), "{host}");
        // A volume it did not render (another service's, say).
        let volume = json!([{"type": "volume", "source": "sw1_o1_local_db_data", "target": "/d", "read-only": false}]);
        assert!(refusal(&container(json!({"mounts": volume})), &policy).contains("did not render"));
    }

    #[test]
    fn names_stay_inside_the_services_namespace() {
        let policy = allowing(&[]);
        let mut rendered = container(json!({}));
        rendered[1].name = "sw1_o2_local_web_r1_0".into();
        assert!(refusal(&rendered, &policy).contains("outside the service's names"));
        let mut rendered = container(json!({}));
        rendered[0].name = "bridge".into();
        assert!(refusal(&rendered, &policy).contains("outside the service's names"));
        let mut rendered = container(json!({}));
        rendered.push(Rendered {
            kind: "plugin".into(),
            name: "sw1_o1_local_x".into(),
            body: json!({}),
        });
        assert!(refusal(&rendered, &policy).contains("not a network, volume or container"));
        // Another service's names on the same target.
        let mut rendered = container(json!({}));
        rendered[1].name = "sw1_o1_local_webx_r1_0".into();
        assert!(refusal(&rendered, &policy).contains("outside the service's names"));
    }

    #[test]
    fn a_plugin_neither_adds_containers_nor_changes_limits_or_ports() {
        let policy = allowing(&[]);
        let mut rendered = container(json!({}));
        let mut second = rendered[1].clone();
        second.name = "sw1_o1_local_web_r1_1".into();
        second.body["labels"] = json!({"slipway.replica": "1"});
        rendered.push(second);
        assert!(refusal(&rendered, &policy).contains("not one for each"));
        let unlimited = refusal(&container(json!({"memory-bytes": 1u64 << 40})), &policy);
        assert!(unlimited.contains("limits"), "{unlimited}");
        let bridge = refusal(&container(json!({"network": null})), &policy);
        assert!(bridge.contains("off the target's network"), "{bridge}");
        let port = json!([{"container": 8080, "host": 80, "protocol": "tcp"}]);
        assert!(refusal(&container(json!({"ports": port})), &policy).contains("does not declare"));
    }
}

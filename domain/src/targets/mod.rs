//! Deploy targets: where an organisation's services run. A target names a
//! deploy-target plugin (which renders objects and judges their health,
//! and never connects anywhere), its settings, and how the host reaches the
//! target; the host's driver for the plugin's object family applies what
//! the plugin rendered.
//!
//! When the server's own Docker Engine answers, every organisation has a
//! target [`LOCAL_DOCKER`] without setting one, under the operator's
//! [`DockerPolicy`].

pub mod docker;
mod docker_tls;
pub mod kubernetes;

use std::collections::BTreeMap;
use std::sync::Arc;

use semver::VersionReq;
use serde::{Deserialize, Serialize};
use slipway_runtime::kinds::{Health, Observed, Rendered, Service, TargetError as PluginError};
use slipway_runtime::{CallContext, Egress, Kind, ObjectFamily, Plugin};
use slipway_store::{
    AdapterCode, Connection, Origin, Store, StoreError, StoredTarget, TargetChangeRecord,
    TargetError, now_ms,
};

pub use crate::refused::Refused;
use crate::refused::invalid;
pub use docker::{DockerDriver, DockerPolicy};
pub use kubernetes::KubernetesDriver;

use crate::plugins::Plugins;
use crate::services::spec::is_dns_label;

/// Why a service could not be applied or observed.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The plugin rendered something the driver refuses.
    #[error("the deploy target rendered {0}")]
    Rendered(String),
    /// The service asks for what the operator does not allow here.
    #[error("{0}")]
    NotAllowed(String),
    /// A host path is missing or not what the service declares.
    #[error("{0}")]
    HostPath(String),
    /// The engine failed or refused.
    #[error("the Docker Engine: {0}")]
    Engine(String),
    /// The Kubernetes API server failed, refused, or did not answer.
    #[error("the Kubernetes API server: {0}")]
    Api(String),
}

/// How often unhealthy containers are looked for (my choice).
pub const SUPERVISE_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// The target every organisation has when the server's Docker Engine answers.
pub const LOCAL_DOCKER: &str = "local-docker";

/// A target as an org-admin sets it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TargetSettings {
    /// The deploy-target plugin: `docker`, `kubernetes`, or an upload.
    #[cfg_attr(feature = "schema", schema(min_length = 1, max_length = 64))]
    pub plugin: String,
    /// Which of its versions: a semver requirement (`^1` when left out).
    #[serde(default = "major_one")]
    #[cfg_attr(feature = "schema", schema(value_type = String))]
    pub version: VersionReq,
    /// The plugin's settings.
    #[serde(default = "empty_object")]
    pub settings: serde_json::Value,
    /// How the host reaches it.
    pub connection: Connection,
    /// The driver's secrets (never shown again). Left out, the current ones
    /// stay while the connection stays the same.
    pub secrets: Option<BTreeMap<String, String>>,
}

fn major_one() -> VersionReq {
    VersionReq::parse("^1").expect("a requirement")
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

/// A target, ready to deploy to: its plugin and its driver.
#[derive(Clone)]
pub struct Target {
    /// As stored (or the built-in one).
    pub stored: StoredTarget,
    organisation: u64,
    plugin: Arc<Plugin>,
    driver: Driver,
    namespace: String,
}

/// The host's driver for a target's objects.
#[derive(Clone)]
pub enum Driver {
    /// A Docker Engine.
    Docker(DockerDriver),
    /// A Kubernetes API server.
    Kubernetes(KubernetesDriver),
}

impl Target {
    /// Where the target's objects are kept apart: a Docker name prefix, or
    /// a Kubernetes namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The driver.
    pub fn driver(&self) -> &Driver {
        &self.driver
    }

    fn context(&self) -> CallContext {
        CallContext {
            settings: Arc::from(self.stored.settings.to_string()),
            secrets: Arc::default(),
            allowed_hosts: Some(Arc::default()),
            cache: None,
            tenant: Some(self.organisation),
        }
    }

    /// The objects the plugin renders for `service`.
    pub async fn render(&self, service: &Service) -> Result<Vec<Rendered>, String> {
        match self.plugin.render(&self.context(), service).await {
            Ok(Ok(objects)) => Ok(objects),
            Ok(Err(
                PluginError::InvalidService(problems) | PluginError::InvalidSettings(problems),
            )) => Err(problems
                .iter()
                .map(|p| format!("{}: {}", p.path, p.message))
                .collect::<Vec<_>>()
                .join("; ")),
            Ok(Err(PluginError::Other(message))) => Err(message),
            Err(e) => Err(format!("the deploy target failed: {e}")),
        }
    }

    /// The service's health as the plugin judges what was observed.
    pub async fn assess(&self, service: &Service, observed: &[Observed]) -> Health {
        match self.plugin.assess(&self.context(), service, observed).await {
            Ok(health) => health,
            Err(e) => Health::Failed(format!("the deploy target failed: {e}")),
        }
    }

    /// `name@version` of the plugin.
    pub fn plugin(&self) -> String {
        self.plugin.id().to_string()
    }
}

/// The organisations' targets.
pub struct Targets {
    store: Store,
    plugins: Arc<Plugins>,
    /// The server's own Docker Engine, when the operator offers it.
    local: Option<DockerDriver>,
    /// Whether it answered at start.
    local_answers: std::sync::atomic::AtomicBool,
    server: String,
    /// Kubernetes drivers by organisation and target, with the connection
    /// and secrets each was made for.
    /// The drivers of targets the organisations set, each made once for
    /// the connection and secrets it has.
    drivers: std::sync::Mutex<Drivers>,
}

type Drivers =
    std::collections::HashMap<(u64, String), (Connection, BTreeMap<String, String>, Driver)>;

impl Targets {
    /// The targets in `store`; `local` is the server's Docker Engine when
    /// it answers.
    pub fn new(store: Store, plugins: Arc<Plugins>, local: Option<DockerDriver>) -> Targets {
        let server = store.server_id();
        Targets {
            store,
            plugins,
            local,
            local_answers: std::sync::atomic::AtomicBool::new(false),
            server,
            drivers: std::sync::Mutex::default(),
        }
    }

    /// Asks the server's Docker Engine whether it answers; until it has,
    /// there is no [`LOCAL_DOCKER`] target.
    pub async fn probe_local(&self) {
        let answers = match &self.local {
            Some(docker) => docker.ping().await,
            None => false,
        };
        if !answers && self.local.is_some() {
            tracing::info!("the local Docker Engine does not answer: no `local-docker` target");
        }
        self.local_answers
            .store(answers, std::sync::atomic::Ordering::Release);
    }

    /// Restarts unhealthy containers that ask for it, every
    /// [`SUPERVISE_EVERY`], until the targets are dropped.
    pub async fn supervise(targets: std::sync::Weak<Targets>) {
        loop {
            tokio::time::sleep(SUPERVISE_EVERY).await;
            let Some(targets) = targets.upgrade() else {
                return;
            };
            let mut engines: Vec<DockerDriver> = targets.local().cloned().into_iter().collect();
            engines.extend(
                targets
                    .drivers
                    .lock()
                    .expect("drivers lock")
                    .values()
                    .filter_map(|(_, _, driver)| match driver {
                        Driver::Docker(docker) => Some(docker.clone()),
                        Driver::Kubernetes(_) => None,
                    }),
            );
            for docker in engines {
                match docker.restart_unhealthy().await {
                    Ok(restarted) => {
                        for name in restarted {
                            tracing::warn!(container = %name, "restarted: its health check failed");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot look for unhealthy containers"),
                }
            }
        }
    }

    fn local(&self) -> Option<&DockerDriver> {
        self.local.as_ref().filter(|_| {
            self.local_answers
                .load(std::sync::atomic::Ordering::Acquire)
        })
    }

    /// The built-in [`LOCAL_DOCKER`] target, when the engine answers.
    fn local_docker(&self) -> Option<StoredTarget> {
        self.local()?;
        let plugin = self
            .plugins
            .builtins()
            .resolve(Kind::DeployTarget, "docker", &major_one())
            .ok()?;
        Some(StoredTarget {
            name: LOCAL_DOCKER.into(),
            plugin: "docker".into(),
            version: "^1".into(),
            settings: empty_object(),
            connection: Connection::Docker {
                endpoint: "local".into(),
            },
            secrets: BTreeMap::new(),
            resolved: plugin.id().to_string(),
            code: AdapterCode {
                sha256: plugin.sha256().to_string(),
                origin: Origin::BuiltIn,
            },
            changed_by: "server".into(),
            changed_ms: 0,
        })
    }

    /// The organisation's target `name`, the built-in one included.
    pub fn get(&self, organisation: u64, name: &str) -> Result<Option<StoredTarget>, StoreError> {
        match self.store.target(organisation, name)? {
            Some(target) => Ok(Some(target)),
            None if name == LOCAL_DOCKER => Ok(self.local_docker()),
            None => Ok(None),
        }
    }

    /// The organisation's targets by name, the built-in one included.
    pub fn list(&self, organisation: u64) -> Result<Vec<StoredTarget>, StoreError> {
        let mut targets = self.store.targets(organisation)?;
        if !targets.iter().any(|t| t.name == LOCAL_DOCKER)
            && let Some(local) = self.local_docker()
        {
            targets.push(local);
            targets.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(targets)
    }

    /// The changes of target `name`, oldest first; none when the
    /// organisation has no such target and never had one.
    pub fn changes(
        &self,
        organisation: u64,
        name: &str,
    ) -> Result<Option<Vec<TargetChangeRecord>>, StoreError> {
        let changes = self.store.target_changes(organisation, name)?;
        if changes.is_empty() && self.get(organisation, name)?.is_none() {
            return Ok(None);
        }
        Ok(Some(changes))
    }

    /// Deletes target `name` unless services are on it.
    pub fn delete(&self, organisation: u64, name: &str, by: &str) -> Result<(), TargetError> {
        self.store.delete_target(organisation, name, by)?;
        self.drivers
            .lock()
            .expect("drivers lock")
            .remove(&(organisation, name.to_string()));
        Ok(())
    }

    /// Sets target `name` as `by` asked, once the plugin loads, renders the
    /// connection's object family and accepts the settings.
    pub async fn set(
        &self,
        organisation: u64,
        name: &str,
        settings: TargetSettings,
        by: &str,
    ) -> Result<StoredTarget, Refused> {
        let failed = |e: &dyn std::fmt::Display| Refused::Failed(e.to_string());
        if !is_dns_label(name) {
            return Err(invalid(
                "",
                format!(
                    "`{name}` is not a DNS label: 1 to 63 lowercase letters, digits and `-`, starting and ending with a letter or digit"
                ),
            ));
        }
        let plugin = self
            .plugins
            .of(organisation)
            .resolve(Kind::DeployTarget, &settings.plugin, &settings.version)
            .map_err(|e| invalid("/plugin", format!("the deploy target cannot be used: {e}")))?;
        let family = plugin.manifest().objects;
        let wanted = match &settings.connection {
            Connection::Docker { .. } => ObjectFamily::Docker,
            Connection::Kubernetes { .. } => ObjectFamily::Kubernetes,
        };
        if family != Some(wanted) {
            return Err(invalid(
                "/connection/driver",
                match family {
                    Some(family) => format!(
                        "{} renders {family:?} objects, not what this connection's driver applies",
                        plugin.id()
                    ),
                    None => format!(
                        "{} names no object family (`objects` in its manifest), so no driver can apply what it renders",
                        plugin.id()
                    ),
                },
            ));
        }
        let secret_names: &[&str] = match &settings.connection {
            Connection::Docker { endpoint } if endpoint != "local" => {
                let (host, port) = docker_tls::check_endpoint(endpoint)
                    .map_err(|e| invalid("/connection/endpoint", e))?;
                let egress = self.plugins.runtime().egress();
                if egress.permits_literal(&host, port) == Some(false) {
                    return Err(invalid(
                        "/connection/endpoint",
                        "an internal address the operator did not allow (`egress-allow`)",
                    ));
                }
                docker_tls::SECRETS
            }
            Connection::Docker { .. } => {
                if self.local().is_none() {
                    return Err(invalid(
                        "/connection/endpoint",
                        "the server's Docker Engine does not answer",
                    ));
                }
                &[]
            }
            Connection::Kubernetes { server, namespace } => {
                let url = kubernetes::check_server(server)
                    .map_err(|e| invalid("/connection/server", e))?;
                let https = url.scheme_str() == Some("https");
                let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
                let egress = self.plugins.runtime().egress();
                if egress.permits_literal(url.host().unwrap_or_default(), port) == Some(false) {
                    return Err(invalid(
                        "/connection/server",
                        "an internal address the operator did not allow (`egress-allow`)",
                    ));
                }
                if !is_dns_label(namespace) {
                    return Err(invalid(
                        "/connection/namespace",
                        format!("`{namespace}` is not a DNS label"),
                    ));
                }
                &["token", "ca", "kubeconfig"]
            }
        };
        let current = self
            .store
            .target(organisation, name)
            .map_err(|e| failed(&e))?;
        let secrets = match settings.secrets {
            Some(secrets) => secrets,
            None => current
                .filter(|c| c.connection == settings.connection)
                .map(|c| c.secrets)
                .unwrap_or_default(),
        };
        if let Some(secret) = secrets.keys().find(|s| !secret_names.contains(&s.as_str())) {
            return Err(invalid(
                format!("/secrets/{}", slipway_flow::pointer::escape(secret)),
                format!("this connection takes no secret `{secret}`"),
            ));
        }
        if let Some(ca) = secrets.get("ca") {
            kubernetes::certificates(ca).map_err(|e| invalid("/secrets/ca", e))?;
        }
        if let (Some(yaml), Connection::Kubernetes { server, .. }) =
            (secrets.get("kubeconfig"), &settings.connection)
        {
            if secrets.len() > 1 {
                return Err(invalid(
                    "/secrets/kubeconfig",
                    "either a kubeconfig, or a token and a CA: not both",
                ));
            }
            kubernetes::read_kubeconfig(yaml, server)
                .map_err(|e| invalid("/secrets/kubeconfig", e))?;
        }
        if secret_names == docker_tls::SECRETS {
            if let Some(missing) = secret_names.iter().find(|s| !secrets.contains_key(**s)) {
                return Err(invalid(
                    format!("/secrets/{missing}"),
                    "a Docker Engine over TLS takes the `ca`, `cert` and `key` secrets (PEM)",
                ));
            }
            docker_tls::client_identity(&secrets["cert"], &secrets["key"])
                .map_err(|(name, e)| invalid(format!("/secrets/{name}"), e))?;
        }
        let context = CallContext {
            settings: Arc::from(settings.settings.to_string()),
            secrets: Arc::default(),
            allowed_hosts: Some(Arc::default()),
            cache: None,
            tenant: Some(organisation),
        };
        let problems = plugin
            .validate_settings(&context, &settings.settings)
            .await
            .map_err(|e| failed(&format!("the deploy target failed: {e}")))?;
        if let Some(problem) = problems.first() {
            return Err(invalid(
                format!("/settings{}", problem.path),
                problem.message.clone(),
            ));
        }
        let origin = if self.plugins.of(organisation).is_own(&plugin) {
            Origin::Upload
        } else {
            Origin::BuiltIn
        };
        let stored = StoredTarget {
            name: name.into(),
            plugin: settings.plugin,
            version: settings.version.to_string(),
            settings: settings.settings,
            connection: settings.connection,
            secrets,
            resolved: plugin.id().to_string(),
            code: AdapterCode {
                sha256: plugin.sha256().to_string(),
                origin,
            },
            changed_by: by.into(),
            changed_ms: now_ms(),
        };
        self.store
            .put_target(organisation, &stored)
            .map_err(|e| failed(&e))?;
        tracing::info!(organisation, target = name, plugin = %plugin.id(), by, "target set");
        Ok(stored)
    }

    /// The driver of the organisation's target `stored`, made once for each
    /// connection and secrets it has; the server's own engine is shared.
    fn driver(&self, organisation: u64, stored: &StoredTarget) -> Result<Driver, String> {
        let make = |connection: &Connection| -> Result<Driver, String> {
            let egress = Egress::clone(self.plugins.runtime().egress());
            let secret = |name: &str| stored.secrets.get(name).map_or("", String::as_str);
            Ok(match connection {
                Connection::Docker { endpoint } if endpoint == "local" => Driver::Docker(
                    self.local()
                        .cloned()
                        .ok_or("the server's Docker Engine does not answer")?,
                ),
                Connection::Docker { endpoint } => {
                    let docker = docker_tls::connect(
                        endpoint,
                        secret("ca"),
                        secret("cert"),
                        secret("key"),
                        egress,
                    )?;
                    Driver::Docker(DockerDriver::remote(docker, &self.server))
                }
                Connection::Kubernetes { server, namespace } => Driver::Kubernetes(
                    KubernetesDriver::new(server, namespace, &stored.secrets, egress)?,
                ),
            })
        };
        if matches!(&stored.connection, Connection::Docker { endpoint } if endpoint == "local") {
            return make(&stored.connection);
        }
        let key = (organisation, stored.name.clone());
        let mut drivers = self.drivers.lock().expect("drivers lock");
        if let Some((connection, secrets, driver)) = drivers.get(&key)
            && *connection == stored.connection
            && *secrets == stored.secrets
        {
            return Ok(driver.clone());
        }
        let driver = make(&stored.connection)?;
        drivers.insert(
            key,
            (
                stored.connection.clone(),
                stored.secrets.clone(),
                driver.clone(),
            ),
        );
        Ok(driver)
    }

    /// Where the organisation's target `name` keeps its objects apart (the
    /// Docker name prefix), when the host chooses it.
    pub fn namespace(
        &self,
        organisation: u64,
        name: &str,
        connection: &Connection,
    ) -> Option<String> {
        match connection {
            Connection::Docker { .. } => Some(format!("sw{}_o{organisation}_{name}", self.server)),
            Connection::Kubernetes { namespace, .. } => Some(namespace.clone()),
        }
    }

    /// The organisation's target `name`, ready to deploy to.
    pub fn open(&self, organisation: u64, name: &str) -> Result<Target, String> {
        let stored = self
            .get(organisation, name)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no target `{name}`"))?;
        let version = VersionReq::parse(&stored.version).map_err(|e| e.to_string())?;
        let plugin = self
            .plugins
            .of(organisation)
            .resolve(Kind::DeployTarget, &stored.plugin, &version)
            .map_err(|e| format!("the target's deploy target cannot be used: {e}"))?;
        let driver = self.driver(organisation, &stored)?;
        let namespace = self
            .namespace(organisation, name, &stored.connection)
            .unwrap_or_default();
        Ok(Target {
            stored,
            organisation,
            plugin,
            driver,
            namespace,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use slipway_runtime::kinds::{
        HostMount, MountKind, Resources, Rollout, Service, ServiceKind, ServiceType,
    };

    /// A service of one replica with one declared host directory.
    pub(super) fn service(namespace: &str) -> Service {
        let none = Resources {
            cpu_millis: None,
            memory_bytes: None,
        };
        Service {
            id: 7,
            revision: 1,
            namespace: namespace.into(),
            name: "web".into(),
            kind: ServiceKind::LongRunning,
            image: "registry.example/web@sha256:ab".into(),
            release_image: false,
            replicas: 1,
            requests: none,
            limits: none,
            env: Vec::new(),
            log_dir: None,
            ports: Vec::new(),
            host_network: false,
            service_type: ServiceType::ClusterIp,
            host_mounts: vec![HostMount {
                kind: MountKind::Directory,
                host_path: "/srv/data".into(),
                container_path: "/data".into(),
                read_only: true,
            }],
            storage: Vec::new(),
            labels: Vec::new(),
            health_check: None,
            rollout: Rollout::Parallel,
        }
    }
}

//! A service's settings as users write them, their bounds, and the
//! checks that report every problem at once with its JSON pointer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use slipway_runtime::kinds;

/// At most this many replicas.
pub const MAX_REPLICAS: u32 = 64;
/// At most this many environment variables, port pairs, mounts, storage
/// directories and labels.
pub const MAX_ENV: usize = 256;
/// See [`MAX_ENV`].
pub const MAX_PORTS: usize = 32;
/// See [`MAX_ENV`].
pub const MAX_MOUNTS: usize = 32;
/// See [`MAX_ENV`].
pub const MAX_STORAGE: usize = 16;
/// See [`MAX_ENV`].
pub const MAX_LABELS: usize = 64;
/// Longest path, variable name or label key.
const MAX_NAME: usize = 256;
/// Longest environment value or label value.
const MAX_VALUE: usize = 32 << 10;
/// Longest image reference.
const MAX_IMAGE: usize = 1024;
/// At most this many CPUs (in millicores) and this much memory.
const MAX_CPU_MILLIS: u64 = 1024 * 1000;
const MAX_MEMORY: u64 = 1 << 40;

/// A problem with a service's settings: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// JSON pointer into the settings.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn problem(path: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem {
        path: path.into(),
        message: message.into(),
    }
}

/// Whether a service runs on or runs once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ServiceKind {
    /// Kept running; restarted when it stops.
    #[default]
    LongRunning,
    /// Runs once and must end with exit code 0.
    RunOnce,
}

/// Who can reach a service's ports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub enum ServiceType {
    /// Other services of the target, by name.
    #[default]
    ClusterIP,
    /// Outside the target, on an address of its own.
    LoadBalancer,
    /// Outside the target, on a port of every host.
    NodePort,
}

/// What a host path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum MountKind {
    /// A regular file.
    File,
    /// A character device.
    CharacterDevice,
    /// A directory.
    Directory,
    /// A Unix socket.
    Socket,
    /// A block device.
    BlockDevice,
}

/// CPU and memory, as Kubernetes writes them: `cpu` `"250m"`, `"0.5"` or
/// `2`; `memory` `"128Mi"`, `"1G"` or bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU: millicores (`"250m"`) or cores (`"0.5"`, `2`).
    #[cfg_attr(feature = "schema", schema(value_type = Option<serde_json::Value>))]
    pub cpu: Option<Quantity>,
    /// Memory: bytes, or with a suffix (`Ki`, `Mi`, `Gi`, `Ti`, `k`, `M`, `G`, `T`).
    #[cfg_attr(feature = "schema", schema(value_type = Option<serde_json::Value>))]
    pub memory: Option<Quantity>,
}

/// A quantity as written: a string or a number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Quantity {
    /// `"250m"`, `"128Mi"`.
    Text(String),
    /// `2`, `0.5`, as written.
    Number(serde_json::Number),
}

impl Quantity {
    fn text(&self) -> String {
        match self {
            Quantity::Text(t) => t.trim().to_string(),
            Quantity::Number(n) => n.to_string(),
        }
    }
}

/// The longest quantity read.
const MAX_QUANTITY: usize = 32;

/// Millicores of a CPU quantity.
pub(crate) fn cpu_millis(quantity: &Quantity) -> Option<u64> {
    let text = quantity.text();
    if text.len() > MAX_QUANTITY {
        return None;
    }
    if let Some(millis) = text.strip_suffix('m') {
        return millis.parse().ok();
    }
    let cores: f64 = text.parse().ok()?;
    (cores.is_finite() && cores >= 0.0).then(|| (cores * 1000.0).round() as u64)
}

/// Bytes of a memory quantity.
pub(crate) fn memory_bytes(quantity: &Quantity) -> Option<u64> {
    let text = quantity.text();
    if text.len() > MAX_QUANTITY {
        return None;
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let factor: u64 = match suffix {
        "" => 1,
        "k" => 1000,
        "M" => 1000_u64.pow(2),
        "G" => 1000_u64.pow(3),
        "T" => 1000_u64.pow(4),
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return None,
    };
    let number: f64 = number.parse().ok()?;
    let bytes = number * factor as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// A container port and the port the service publishes it on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PortPair {
    /// The port the container listens on.
    #[cfg_attr(feature = "schema", schema(minimum = 1))]
    pub container: u16,
    /// The port other services (and, when published, the outside) use.
    #[cfg_attr(feature = "schema", schema(minimum = 1))]
    pub service: u16,
    /// `tcp` (the default) or `udp`.
    #[serde(default = "tcp")]
    #[cfg_attr(feature = "schema", schema(pattern = "^(tcp|udp)$"))]
    pub protocol: String,
}

fn tcp() -> String {
    "tcp".into()
}

/// A host path mounted into the containers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HostMount {
    /// What the host path must be.
    pub kind: MountKind,
    /// The absolute path on the host.
    #[cfg_attr(feature = "schema", schema(max_length = 256))]
    pub host_path: String,
    /// The absolute path in the container.
    #[cfg_attr(feature = "schema", schema(max_length = 256))]
    pub container_path: String,
    /// Mounted read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// A persistent directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StorageDir {
    /// A DNS label, unique in the service.
    #[cfg_attr(
        feature = "schema",
        schema(max_length = 63, pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// The absolute path in the container.
    #[cfg_attr(feature = "schema", schema(max_length = 256))]
    pub container_path: String,
    /// Its size, as memory is written (`"1Gi"`); 1 GiB when left out.
    #[cfg_attr(feature = "schema", schema(value_type = Option<serde_json::Value>))]
    pub size: Option<Quantity>,
}

/// How a service's health is probed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// GET this path on this container port; 2xx and 3xx are healthy.
    pub http: Option<HttpProbe>,
    /// Or run this command in the container; exit 0 is healthy.
    #[cfg_attr(feature = "schema", schema(max_items = 64))]
    pub command: Option<Vec<String>>,
    /// Seconds between probes (1 to 3600; 5 when left out).
    #[serde(default = "five")]
    #[cfg_attr(feature = "schema", schema(minimum = 1, maximum = 3600))]
    pub interval_s: u32,
    /// Seconds a probe may take (1 to 600; 3 when left out).
    #[serde(default = "three")]
    #[cfg_attr(feature = "schema", schema(minimum = 1, maximum = 600))]
    pub timeout_s: u32,
    /// Failed probes in a row before it is unhealthy (1 to 100; 3).
    #[serde(default = "three")]
    #[cfg_attr(feature = "schema", schema(minimum = 1, maximum = 100))]
    pub retries: u32,
    /// Restart a container that turns unhealthy (true when left out).
    #[serde(default = "yes")]
    pub restart_on_failure: bool,
}

fn five() -> u32 {
    5
}
fn three() -> u32 {
    3
}
fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}

/// An HTTP probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HttpProbe {
    /// Starts with `/`.
    #[cfg_attr(feature = "schema", schema(max_length = 256))]
    pub path: String,
    /// The container port.
    #[cfg_attr(feature = "schema", schema(minimum = 1))]
    pub port: u16,
}

/// A service's settings. Its `name` and `target` are set when it is
/// created and stay; a revision may leave them out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// A DNS label, unique on the target (required to create one).
    #[cfg_attr(
        feature = "schema",
        schema(max_length = 63, pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: Option<String>,
    /// The organisation's target, e.g. `local-docker` (required to create one).
    #[cfg_attr(feature = "schema", schema(max_length = 63))]
    pub target: Option<String>,
    /// A release of the organisation, by id or name: its image, pinned by
    /// digest. Give this or `image`.
    #[cfg_attr(feature = "schema", schema(max_length = 64))]
    pub release: Option<String>,
    /// An image reference. Give this or `release`.
    #[cfg_attr(feature = "schema", schema(max_length = 1024))]
    pub image: Option<String>,
    /// `long-running` (the default) or `run-once`.
    #[serde(default)]
    pub kind: ServiceKind,
    /// What each replica needs to start.
    #[serde(default)]
    pub requests: Resources,
    /// The most each replica may use.
    #[serde(default)]
    pub limits: Resources,
    /// How many containers or pods (1 when left out; at most 64).
    #[serde(default = "one")]
    #[cfg_attr(feature = "schema", schema(minimum = 0, maximum = 64))]
    pub replicas: u32,
    /// Environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Where the application writes its logs: a volume that outlives the
    /// containers is mounted there.
    #[cfg_attr(feature = "schema", schema(max_length = 256))]
    pub log_dir: Option<String>,
    /// Port pairs.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schema(max_items = 32))]
    pub ports: Vec<PortPair>,
    /// Use the host's network.
    #[serde(default)]
    pub host_network: bool,
    /// `ClusterIP` (the default), `LoadBalancer` or `NodePort`.
    #[serde(default)]
    pub service_type: ServiceType,
    /// Host paths mounted into the containers.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schema(max_items = 32))]
    pub mounts: Vec<HostMount>,
    /// Persistent directories.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schema(max_items = 16))]
    pub storage: Vec<StorageDir>,
    /// Labels on every container or pod.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// How health is probed; without one, running is healthy.
    pub health_check: Option<HealthCheck>,
}

/// Whether `image` names its registry host (with a `.` or a `:`, or
/// `localhost`) and a repository: never an engine's image id or a short
/// name the engine would complete, so what runs is what the registry serves.
fn qualified(image: &str) -> bool {
    let valid = !image.is_empty()
        && image.len() <= MAX_IMAGE
        && !image.chars().any(|c| c.is_whitespace() || c.is_control());
    let Some((host, repository)) = image.split_once('/') else {
        return false;
    };
    valid
        && (host.contains('.') || host.contains(':') || host == "localhost")
        && !repository.is_empty()
        && !host.starts_with("sha256")
}

/// Every problem of `labels` at `at` (`/labels`): at most 64, keys of 1 to
/// 63 letters, digits, `-`, `_`, `.` and `/` not starting with `slipway.`,
/// values of at most 63 letters, digits, `-`, `_` and `.`.
pub fn label_problems(labels: &BTreeMap<String, String>, at: &str) -> Vec<Problem> {
    let mut problems = Vec::new();
    if labels.len() > MAX_LABELS {
        problems.push(problem(at, format!("at most {MAX_LABELS} labels")));
    }
    for (key, value) in labels {
        let at = format!("{at}/{}", slipway_flow::pointer::escape(key));
        if key.is_empty()
            || key.len() > 63
            || key.starts_with("slipway.")
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        {
            problems.push(problem(&at, "a label key is 1 to 63 letters, digits, `-`, `_`, `.` and `/`, not starting with `slipway.`"));
        }
        if value.len() > 63
            || !value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            problems.push(problem(
                at,
                "a label value is at most 63 letters, digits, `-`, `_` and `.`",
            ));
        }
    }
    problems
}

/// Whether `name` is a DNS label (RFC 1123): 1 to 63 lowercase letters,
/// digits and `-`, starting and ending with a letter or digit.
pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

fn absolute_path(path: &str) -> bool {
    path.starts_with('/')
        && path.len() <= MAX_NAME
        && !path.contains('\0')
        && !path.split('/').any(|part| part == "..")
}

/// The numbers a spec's resources come to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amounts {
    /// Millicores.
    pub cpu_millis: Option<u64>,
    /// Bytes.
    pub memory_bytes: Option<u64>,
}

impl Resources {
    fn amounts(&self, at: &str, problems: &mut Vec<Problem>) -> Amounts {
        let cpu = self.cpu.as_ref().and_then(|q| match cpu_millis(q) {
            Some(m) if m <= MAX_CPU_MILLIS => Some(m),
            _ => {
                problems.push(problem(
                    format!("{at}/cpu"),
                    format!("`{}` is not a CPU quantity up to 1024 cores: write millicores (`250m`) or cores (`0.5`)", q.text()),
                ));
                None
            }
        });
        let memory = self.memory.as_ref().and_then(|q| match memory_bytes(q) {
            Some(b) if b <= MAX_MEMORY => Some(b),
            _ => {
                problems.push(problem(
                    format!("{at}/memory"),
                    format!(
                        "`{}` is not a memory quantity up to 1Ti: write bytes or `128Mi`, `1Gi`",
                        q.text()
                    ),
                ));
                None
            }
        });
        Amounts {
            cpu_millis: cpu,
            memory_bytes: memory,
        }
    }
}

impl ServiceSpec {
    /// Parses `value`; a field of the wrong shape is one problem at its pointer.
    pub fn parse(value: serde_json::Value) -> Result<ServiceSpec, Vec<Problem>> {
        serde_path_to_error::deserialize(value).map_err(|e| {
            let message = e.inner().to_string();
            let path = slipway_flow::pointer::locate(e.path(), &message);
            vec![problem(path, message)]
        })
    }

    /// Every problem of the settings, each with its pointer.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Some(name) = &self.name
            && !is_dns_label(name)
        {
            problems.push(problem(
                "/name",
                "a DNS label: 1 to 63 lowercase letters, digits and `-`, starting and ending with a letter or digit",
            ));
        }
        match (&self.release, &self.image) {
            (Some(_), Some(_)) => {
                problems.push(problem("/image", "give `release` or `image`, not both"))
            }
            (None, None) => problems.push(problem(
                "/release",
                "give a `release` (its id or name) or an `image` reference",
            )),
            (None, Some(image)) if !qualified(image) => {
                problems.push(problem(
                    "/image",
                    "an image reference names its registry, as `registry.example:5000/team/app:1` or `…@sha256:…` (1 to 1024 characters, no spaces)",
                ));
            }
            _ => {}
        }
        if self.replicas > MAX_REPLICAS {
            problems.push(problem(
                "/replicas",
                format!("at most {MAX_REPLICAS} replicas"),
            ));
        }
        if self.kind == ServiceKind::RunOnce {
            if self.replicas != 1 {
                problems.push(problem("/replicas", "a run-once service has one replica"));
            }
            if !self.ports.is_empty() && self.service_type != ServiceType::ClusterIP {
                problems.push(problem(
                    "/service_type",
                    "a run-once service publishes no port",
                ));
            }
        }
        let requests = self.requests.amounts("/requests", &mut problems);
        let limits = self.limits.amounts("/limits", &mut problems);
        if let (Some(r), Some(l)) = (requests.cpu_millis, limits.cpu_millis)
            && r > l
        {
            problems.push(problem(
                "/requests/cpu",
                "the CPU request is above the limit",
            ));
        }
        if let (Some(r), Some(l)) = (requests.memory_bytes, limits.memory_bytes)
            && r > l
        {
            problems.push(problem(
                "/requests/memory",
                "the memory request is above the limit",
            ));
        }
        if self.env.len() > MAX_ENV {
            problems.push(problem("/env", format!("at most {MAX_ENV} variables")));
        }
        for (name, value) in &self.env {
            let at = format!("/env/{}", slipway_flow::pointer::escape(name));
            let valid = !name.is_empty()
                && name.len() <= MAX_NAME
                && !name.contains('=')
                && !name.contains('\0');
            if !valid {
                problems.push(problem(
                    &at,
                    "a variable name is 1 to 256 characters, without `=`",
                ));
            }
            if value.len() > MAX_VALUE || value.contains('\0') {
                problems.push(problem(at, "a value is at most 32 KiB, without NUL"));
            }
        }
        if let Some(dir) = &self.log_dir
            && !absolute_path(dir)
        {
            problems.push(problem(
                "/log_dir",
                "an absolute path without `..`, at most 256 characters",
            ));
        }
        if self.ports.len() > MAX_PORTS {
            problems.push(problem("/ports", format!("at most {MAX_PORTS} port pairs")));
        }
        for (i, port) in self.ports.iter().enumerate() {
            if port.container == 0 {
                problems.push(problem(
                    format!("/ports/{i}/container"),
                    "a port is 1 to 65535",
                ));
            }
            if port.service == 0 {
                problems.push(problem(
                    format!("/ports/{i}/service"),
                    "a port is 1 to 65535",
                ));
            }
            if !matches!(port.protocol.as_str(), "tcp" | "udp") {
                problems.push(problem(format!("/ports/{i}/protocol"), "`tcp` or `udp`"));
            }
            if self.ports[..i]
                .iter()
                .any(|p| p.service == port.service && p.protocol == port.protocol)
            {
                problems.push(problem(
                    format!("/ports/{i}/service"),
                    format!("port {} is used by an earlier pair", port.service),
                ));
            }
        }
        if self.mounts.len() > MAX_MOUNTS {
            problems.push(problem("/mounts", format!("at most {MAX_MOUNTS} mounts")));
        }
        let mut targets: Vec<&str> = self.log_dir.iter().map(String::as_str).collect();
        for (i, mount) in self.mounts.iter().enumerate() {
            if !absolute_path(&mount.host_path) {
                problems.push(problem(
                    format!("/mounts/{i}/host_path"),
                    "an absolute path without `..`, at most 256 characters",
                ));
            }
            if !absolute_path(&mount.container_path) {
                problems.push(problem(
                    format!("/mounts/{i}/container_path"),
                    "an absolute path without `..`, at most 256 characters",
                ));
            } else if targets.contains(&mount.container_path.as_str()) {
                problems.push(problem(
                    format!("/mounts/{i}/container_path"),
                    "an earlier mount has this path",
                ));
            }
            targets.push(&mount.container_path);
        }
        if self.storage.len() > MAX_STORAGE {
            problems.push(problem(
                "/storage",
                format!("at most {MAX_STORAGE} storage directories"),
            ));
        }
        for (i, dir) in self.storage.iter().enumerate() {
            if !is_dns_label(&dir.name) || dir.name == "logs" {
                problems.push(problem(
                    format!("/storage/{i}/name"),
                    "a DNS label (lowercase letters, digits and `-`), not `logs`",
                ));
            } else if self.storage[..i].iter().any(|d| d.name == dir.name) {
                problems.push(problem(
                    format!("/storage/{i}/name"),
                    "an earlier directory has this name",
                ));
            }
            if !absolute_path(&dir.container_path) {
                problems.push(problem(
                    format!("/storage/{i}/container_path"),
                    "an absolute path without `..`, at most 256 characters",
                ));
            } else if targets.contains(&dir.container_path.as_str()) {
                problems.push(problem(
                    format!("/storage/{i}/container_path"),
                    "a mount has this path",
                ));
            }
            targets.push(&dir.container_path);
            if let Some(size) = &dir.size
                && memory_bytes(size).is_none_or(|b| b == 0 || b > MAX_MEMORY)
            {
                problems.push(problem(
                    format!("/storage/{i}/size"),
                    "a size as memory is written (`1Gi`), up to 1Ti",
                ));
            }
        }
        problems.extend(label_problems(&self.labels, "/labels"));
        if let Some(check) = &self.health_check {
            match (&check.http, &check.command) {
                (Some(http), None) => {
                    if !http.path.starts_with('/')
                        || http.path.len() > MAX_NAME
                        || http
                            .path
                            .chars()
                            .any(|c| c.is_whitespace() || c.is_control())
                    {
                        problems.push(problem(
                            "/health_check/http/path",
                            "a path starting with `/`, without spaces",
                        ));
                    }
                    if http.port == 0 {
                        problems.push(problem("/health_check/http/port", "a port is 1 to 65535"));
                    }
                }
                (None, Some(command)) => {
                    if command.is_empty()
                        || command.len() > 64
                        || command
                            .iter()
                            .any(|a| a.len() > MAX_NAME || a.contains('\0'))
                    {
                        problems.push(problem(
                            "/health_check/command",
                            "1 to 64 arguments of at most 256 characters",
                        ));
                    }
                }
                _ => problems.push(problem("/health_check", "give `http` or `command`")),
            }
            if !(1..=3600).contains(&check.interval_s) {
                problems.push(problem("/health_check/interval_s", "1 to 3600 seconds"));
            }
            if !(1..=600).contains(&check.timeout_s) {
                problems.push(problem("/health_check/timeout_s", "1 to 600 seconds"));
            }
            if !(1..=100).contains(&check.retries) {
                problems.push(problem("/health_check/retries", "1 to 100"));
            }
        }
        problems
    }

    /// The health check the service runs with: its own, or for a release's
    /// long-running service that sets none, the engine's readiness
    /// (`/readyz` on 8080, the image's port) with the defaults.
    pub fn health_check(&self, release_image: bool) -> Option<HealthCheck> {
        let engines = release_image && self.kind == ServiceKind::LongRunning;
        self.health_check.clone().or_else(|| {
            engines.then(|| HealthCheck {
                http: Some(HttpProbe {
                    path: "/readyz".into(),
                    port: 8080,
                }),
                command: None,
                interval_s: five(),
                timeout_s: three(),
                retries: three(),
                restart_on_failure: yes(),
            })
        })
    }

    /// What each replica requests.
    pub fn requests(&self) -> Amounts {
        self.requests.amounts("", &mut Vec::new())
    }

    /// The service as a deploy target renders it.
    pub fn to_target(&self, at: Placement<'_>) -> kinds::Service {
        let requests = self.requests();
        let limits = self.limits.amounts("", &mut Vec::new());
        let resources = |a: Amounts| kinds::Resources {
            cpu_millis: a.cpu_millis.map(|m| m.min(u64::from(u32::MAX)) as u32),
            memory_bytes: a.memory_bytes,
        };
        kinds::Service {
            id: at.id,
            revision: at.revision,
            namespace: at.namespace.to_string(),
            name: at.name.to_string(),
            kind: match self.kind {
                ServiceKind::LongRunning => kinds::ServiceKind::LongRunning,
                ServiceKind::RunOnce => kinds::ServiceKind::RunOnce,
            },
            image: at.image.to_string(),
            release_image: at.release_image,
            replicas: self.replicas,
            requests: resources(requests),
            limits: resources(limits),
            env: self
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            log_dir: self.log_dir.clone(),
            ports: self
                .ports
                .iter()
                .map(|p| kinds::PortPair {
                    container: p.container,
                    service: p.service,
                    protocol: p.protocol.clone(),
                })
                .collect(),
            host_network: self.host_network,
            service_type: match self.service_type {
                ServiceType::ClusterIP => kinds::ServiceType::ClusterIp,
                ServiceType::LoadBalancer => kinds::ServiceType::LoadBalancer,
                ServiceType::NodePort => kinds::ServiceType::NodePort,
            },
            host_mounts: self
                .mounts
                .iter()
                .map(|m| kinds::HostMount {
                    kind: match m.kind {
                        MountKind::File => kinds::MountKind::File,
                        MountKind::CharacterDevice => kinds::MountKind::CharacterDevice,
                        MountKind::Directory => kinds::MountKind::Directory,
                        MountKind::Socket => kinds::MountKind::Socket,
                        MountKind::BlockDevice => kinds::MountKind::BlockDevice,
                    },
                    host_path: m.host_path.clone(),
                    container_path: m.container_path.clone(),
                    read_only: m.read_only,
                })
                .collect(),
            storage: self
                .storage
                .iter()
                .map(|s| kinds::Storage {
                    name: s.name.clone(),
                    container_path: s.container_path.clone(),
                    size_bytes: s.size.as_ref().and_then(memory_bytes).unwrap_or(1 << 30),
                })
                .collect(),
            labels: self
                .labels
                .iter()
                .chain(at.labels)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            health_check: self
                .health_check(at.release_image)
                .map(|c| kinds::HealthCheck {
                    probe: match (&c.http, &c.command) {
                        (Some(http), _) => kinds::Probe::Http(kinds::HttpProbe {
                            path: http.path.clone(),
                            port: http.port,
                        }),
                        (None, command) => {
                            kinds::Probe::Command(command.clone().unwrap_or_default())
                        }
                    },
                    interval_ms: c.interval_s * 1000,
                    timeout_ms: c.timeout_s * 1000,
                    retries: c.retries,
                    restart_on_failure: c.restart_on_failure,
                }),
            rollout: at.rollout,
        }
    }
}

/// Where and how a revision is rendered.
#[derive(Debug, Clone, Copy)]
pub struct Placement<'a> {
    /// The service's id.
    pub id: u64,
    /// The revision.
    pub revision: u32,
    /// The service's name.
    pub name: &'a str,
    /// The target's namespace.
    pub namespace: &'a str,
    /// The image, pinned.
    pub image: &'a str,
    /// Whether it is a release's.
    pub release_image: bool,
    /// Labels the operation adds (seed 002's deploy labels).
    pub labels: &'a BTreeMap<String, String>,
    /// Parallel or sequential.
    pub rollout: kinds::Rollout,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(value: serde_json::Value) -> Vec<String> {
        match ServiceSpec::parse(value) {
            Ok(spec) => spec.problems().into_iter().map(|p| p.path).collect(),
            Err(problems) => problems.into_iter().map(|p| p.path).collect(),
        }
    }

    #[test]
    fn quantities_read_as_kubernetes_writes_them() {
        let q = |s: &str| Quantity::Text(s.into());
        assert_eq!(cpu_millis(&q("250m")), Some(250));
        assert_eq!(cpu_millis(&q("0.5")), Some(500));
        assert_eq!(cpu_millis(&Quantity::Number(2.into())), Some(2000));
        assert_eq!(cpu_millis(&q("-1")), None);
        assert_eq!(memory_bytes(&q("128Mi")), Some(128 << 20));
        assert_eq!(memory_bytes(&q("1G")), Some(1_000_000_000));
        assert_eq!(memory_bytes(&q("512")), Some(512));
        assert_eq!(memory_bytes(&q("1Xi")), None);
    }

    #[test]
    fn every_problem_is_reported_at_its_pointer() {
        let found = paths(json!({
            "image": "registry.example/app:1",
            "replicas": 65,
            "requests": {"cpu": "2", "memory": "lots"},
            "limits": {"cpu": "1"},
            "ports": [{"container": 0, "service": 80}, {"container": 81, "service": 80}],
            "mounts": [{"kind": "file", "host_path": "relative", "container_path": "/a"}],
            "storage": [{"name": "Data", "container_path": "/a"}],
            "labels": {"slipway.mine": "x"},
            "health_check": {"http": {"path": "healthz", "port": 8080}},
        }));
        assert_eq!(
            found,
            [
                "/replicas",
                "/requests/memory",
                "/requests/cpu",
                "/ports/0/container",
                "/ports/1/service",
                "/mounts/0/host_path",
                "/storage/0/name",
                "/storage/0/container_path",
                "/labels/slipway.mine",
                "/health_check/http/path"
            ]
        );
    }

    #[test]
    fn images_name_their_registry() {
        for image in [
            "registry.example/app:1",
            "127.0.0.1:5000/a/b@sha256:00",
            "localhost/app",
        ] {
            assert!(qualified(image), "{image}");
        }
        for image in [
            "3f",
            "sha256:3f2a",
            "nginx",
            "nginx:1",
            "library/nginx",
            "a b/c",
            "registry.example/",
        ] {
            assert!(!qualified(image), "{image}");
        }
    }

    #[test]
    fn a_field_of_the_wrong_shape_is_named() {
        assert_eq!(
            paths(json!({"image": "a", "mounts": [{}, {"kind": "pipe"}]})),
            ["/mounts/0/kind"]
        );
        assert_eq!(
            paths(
                json!({"image": "a", "mounts": [{"kind": "pipe", "host_path": "/a", "container_path": "/b"}]})
            ),
            ["/mounts/0/kind"]
        );
        assert_eq!(paths(json!({"image": "a", "Replicas": 2})), ["/Replicas"]);
        assert_eq!(paths(json!({})), ["/release"]);
    }

    #[test]
    fn a_release_that_sets_no_health_check_gets_the_engines_readiness() {
        let spec = |v| ServiceSpec::parse(v).unwrap();
        let plain = spec(json!({"release": "orders-v1"}));
        let engines = plain.health_check(true).unwrap();
        assert_eq!(engines.http.unwrap().path, "/readyz");
        assert!(engines.restart_on_failure);
        assert_eq!(
            plain.health_check(false),
            None,
            "another image's health is its own"
        );
        let once = spec(json!({"release": "orders-v1", "kind": "run-once"}));
        assert_eq!(once.health_check(true), None, "a run-once container exits");
        let own = spec(json!({"release": "orders-v1", "health_check": {"command": ["true"]}}));
        assert_eq!(own.health_check(true).unwrap().command.unwrap(), ["true"]);
    }
}

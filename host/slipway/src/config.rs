//! Server settings: embedded defaults, overridden by a TOML file, then by
//! environment variables and flags.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use std::time::Duration;

use serde::Deserialize;
use slipway_runtime::RuntimeConfig;
use slipway_runtime::egress::IpNet;
use slipway_serve::ConnectionLimits;

use slipway_domain::registry::RegistrySettings;

/// The port `slipway serve` listens on by default.
pub const DEFAULT_PORT: u16 = 7420;

/// Releases run at once by default: one per core of a small machine.
pub const DEFAULT_RELEASE_CONCURRENCY: usize = 2;
/// Service operations run at once by default (my choice: they mostly wait).
pub const DEFAULT_DEPLOY_CONCURRENCY: usize = 16;
/// How long compiling one `rust-code` node may take by default (my choice:
/// a cold build of the SDK's dependencies takes about a minute on 2 cores).
pub const DEFAULT_USER_CODE_TIME_LIMIT_SECS: u64 = 300;

/// The shortest `admin-token` accepted.
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// Debian's (and most distributions') bundle of CA certificates.
pub const SYSTEM_CA_CERTIFICATES: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Everything `slipway serve` needs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Where the database and the code cache live.
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The organisation made on first start.
    pub organisation: String,
    /// The first admin's token, for automation; a random one when absent.
    pub admin_token: Option<String>,
    /// How many jobs (release builds and deletions) run at once; more wait.
    pub release_concurrency: usize,
    /// The static engine binary baked into images; found beside the server when absent.
    pub engine_binary: Option<PathBuf>,
    /// CA certificates copied into images; the system bundle when absent.
    pub ca_certificates: Option<PathBuf>,
    /// The organisation's registry at installation. It applies at start
    /// unless an org-admin has set another through the API since.
    pub registry: Option<RegistrySettings>,
    /// Where `rust-code` nodes are compiled; `<data-dir>/user-code` when absent.
    pub user_code_dir: Option<PathBuf>,
    /// How long compiling one `rust-code` node may take, in seconds.
    pub user_code_time_limit_secs: u64,
    /// Internal networks plugins may reach all the same, as `127.0.0.1/32`
    /// or `10.0.0.0/8` (a bare address is one host): loopback, link-local,
    /// private and this server's own address are refused otherwise.
    pub egress_allow: Vec<String>,
    /// Connections the API serves at once; more wait until one closes.
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers (and to start the
    /// next request on a kept-alive connection).
    pub header_read_timeout_secs: u64,
    /// Seconds a request may take to be answered, its body included (an
    /// event stream's body is not counted).
    pub request_timeout_secs: u64,
    /// Limits on plugin calls, shared by every organisation.
    pub calls: CallLimits,
    /// What services may do on this server's own Docker Engine.
    pub docker: DockerSettings,
    /// The server's own image store, for organisations with no registry.
    pub images: ImageSettings,
    /// How many service operations run at once (apart from release jobs:
    /// they mostly wait for containers to turn healthy).
    pub deploy_concurrency: usize,
    /// Where deploy plans may fetch code to build from.
    pub sources: SourceSettings,
}

/// Where deploy plans may fetch code to build from (`HTTP_UPLOAD_DEPLOY`),
/// and what a build may take.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SourceSettings {
    /// Hosts code may come from (`name`, `*.name`, `name:port`); none by
    /// default. Their addresses are still held to `egress-allow`.
    pub hosts: Vec<String>,
    /// MiB a code package may have, packed or unpacked.
    pub max_mib: u64,
    /// Seconds one build may take.
    pub build_time_limit_secs: u64,
}

impl Default for SourceSettings {
    fn default() -> Self {
        SourceSettings {
            hosts: Vec::new(),
            max_mib: 256,
            build_time_limit_secs: 600,
        }
    }
}

impl SourceSettings {
    /// The host patterns, or the first that does not parse.
    pub fn patterns(&self) -> Result<Vec<slipway_runtime::HostPattern>, String> {
        self.hosts
            .iter()
            .map(|h| {
                slipway_runtime::HostPattern::try_from(h.clone())
                    .map_err(|e| format!("sources.hosts: {e}"))
            })
            .collect()
    }
}

/// The server's own Docker Engine as a deploy target (`local-docker`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct DockerSettings {
    /// Offer it to every organisation when it answers.
    pub local: bool,
    /// Host paths (and what is under them) services may mount; none by default.
    pub host_paths: Vec<PathBuf>,
    /// Whether services may use the host's network.
    pub host_network: bool,
}

impl Default for DockerSettings {
    fn default() -> Self {
        DockerSettings {
            local: true,
            host_paths: Vec::new(),
            host_network: false,
        }
    }
}

/// The server's own image store.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImageSettings {
    /// MiB of images one organisation may keep there.
    pub max_mib_per_organisation: u64,
}

/// MiB of images an organisation keeps in the server's store by default
/// (my choice: a few hundred releases of a 10 MiB image).
pub const DEFAULT_IMAGES_MIB_PER_ORGANISATION: u64 = 4096;

impl Default for ImageSettings {
    fn default() -> Self {
        ImageSettings {
            max_mib_per_organisation: DEFAULT_IMAGES_MIB_PER_ORGANISATION,
        }
    }
}

/// What plugin calls may take of the server: time, memory and slots.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct CallLimits {
    /// Seconds one call may take in all, time waiting on the host (HTTP,
    /// sleeps) included.
    pub time_limit_secs: u64,
    /// Calls running at once; more wait for a slot.
    pub max_concurrent: u32,
    /// Calls of one organisation running at once.
    pub max_per_organisation: u32,
    /// MiB of linear memory every running call holds together.
    pub memory_budget_mib: u64,
    /// MiB of it one organisation's running calls may hold.
    pub organisation_memory_mib: u64,
}

impl Default for CallLimits {
    fn default() -> Self {
        let runtime = RuntimeConfig::default();
        CallLimits {
            time_limit_secs: runtime.call_time_limit.as_secs(),
            max_concurrent: runtime.max_concurrent_calls,
            max_per_organisation: runtime.max_calls_per_tenant,
            // Never more than half the machine's memory.
            memory_budget_mib: physical_memory_mib().map_or(runtime.memory_budget_mib, |total| {
                runtime.memory_budget_mib.min(total / 2)
            }),
            organisation_memory_mib: runtime.tenant_memory_mib,
        }
    }
}

/// The machine's memory in MiB, from `/proc/meminfo` (Linux).
fn physical_memory_mib() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

impl CallLimits {
    /// `base` with these limits.
    pub fn apply(&self, base: RuntimeConfig) -> RuntimeConfig {
        RuntimeConfig {
            call_time_limit: Duration::from_secs(self.time_limit_secs),
            max_concurrent_calls: self.max_concurrent,
            max_calls_per_tenant: self.max_per_organisation,
            memory_budget_mib: self.memory_budget_mib,
            tenant_memory_mib: self.organisation_memory_mib,
            ..base
        }
    }

    /// Refuses limits that cannot work.
    fn check(&self) -> Result<(), String> {
        let max_deadline = RuntimeConfig::default().max_deadline.as_secs();
        if !(max_deadline..=3600).contains(&self.time_limit_secs) {
            return Err(format!(
                "calls.time-limit-secs must be between {max_deadline} (the longest deadline a plugin may ask for) and 3600, not {}",
                self.time_limit_secs
            ));
        }
        if !(1..=4096).contains(&self.max_concurrent) {
            return Err(format!(
                "calls.max-concurrent must be between 1 and 4096, not {}",
                self.max_concurrent
            ));
        }
        if !(1..=self.max_concurrent).contains(&self.max_per_organisation) {
            return Err(format!(
                "calls.max-per-organisation must be between 1 and calls.max-concurrent ({}), not {}",
                self.max_concurrent, self.max_per_organisation
            ));
        }
        let max_memory = RuntimeConfig::default().max_memory_mib;
        if self.memory_budget_mib < max_memory {
            return Err(format!(
                "calls.memory-budget-mib must be at least {max_memory} (the most one call may ask for), not {}",
                self.memory_budget_mib
            ));
        }
        if !(max_memory..=self.memory_budget_mib).contains(&self.organisation_memory_mib) {
            return Err(format!(
                "calls.organisation-memory-mib must be between {max_memory} and calls.memory-budget-mib ({}), not {}",
                self.memory_budget_mib, self.organisation_memory_mib
            ));
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("slipway-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            organisation: "default".into(),
            admin_token: None,
            release_concurrency: DEFAULT_RELEASE_CONCURRENCY,
            engine_binary: None,
            ca_certificates: None,
            registry: None,
            user_code_dir: None,
            user_code_time_limit_secs: DEFAULT_USER_CODE_TIME_LIMIT_SECS,
            egress_allow: Vec::new(),
            max_connections: ConnectionLimits::default().max_connections,
            header_read_timeout_secs: ConnectionLimits::default().header_read_timeout.as_secs(),
            request_timeout_secs: ConnectionLimits::default().request_timeout.as_secs(),
            calls: CallLimits::default(),
            docker: DockerSettings::default(),
            images: ImageSettings::default(),
            deploy_concurrency: DEFAULT_DEPLOY_CONCURRENCY,
            sources: SourceSettings::default(),
        }
    }
}

/// The configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// It could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not valid.
    #[error("invalid configuration in {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// The CA bundle for images: the configured one, or the system's when it exists.
    pub fn ca_certificates(&self) -> Option<PathBuf> {
        self.ca_certificates.clone().or_else(|| {
            let system = Path::new(SYSTEM_CA_CERTIFICATES);
            system.exists().then(|| system.to_path_buf())
        })
    }

    /// Where `rust-code` nodes are compiled.
    pub fn user_code_dir(&self) -> PathBuf {
        self.user_code_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("user-code"))
    }

    /// What one client can hold of the API server.
    pub fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: self.max_connections,
            header_read_timeout: Duration::from_secs(self.header_read_timeout_secs),
            request_timeout: Duration::from_secs(self.request_timeout_secs),
        }
    }

    /// The networks of `egress-allow`.
    pub fn egress_networks(&self) -> Result<Vec<IpNet>, String> {
        self.egress_allow
            .iter()
            .map(|text| {
                text.parse::<IpNet>()
                    .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!(
                            "egress-allow: `{text}` is not a network (`10.0.0.0/8`) or an address"
                        )
                    })
            })
            .collect()
    }

    /// The defaults overridden by the TOML file at `path`.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let config: Config =
            toml::from_str(&text).map_err(|e| invalid(e.message().trim_end().to_string()))?;
        config.check().map_err(invalid)?;
        Ok(config)
    }

    /// Refuses values that parse but cannot work.
    pub fn check(&self) -> Result<(), String> {
        self.sources.patterns()?;
        if self.sources.max_mib == 0 || self.sources.build_time_limit_secs == 0 {
            return Err("sources.max-mib and sources.build-time-limit-secs are at least 1".into());
        }
        if !(1..=256).contains(&self.deploy_concurrency) {
            return Err(format!(
                "deploy-concurrency must be between 1 and 256, not {}",
                self.deploy_concurrency
            ));
        }
        if let Some(path) = self.docker.host_paths.iter().find(|p| !p.is_absolute()) {
            return Err(format!(
                "docker.host-paths are absolute paths, not `{}`",
                path.display()
            ));
        }
        if !(1..=256).contains(&self.release_concurrency) {
            return Err(format!(
                "release-concurrency must be between 1 and 256, not {}",
                self.release_concurrency
            ));
        }
        if let Some(token) = &self.admin_token
            && token.trim().len() < MIN_ADMIN_TOKEN_LEN
        {
            return Err(format!(
                "admin-token must be at least {MIN_ADMIN_TOKEN_LEN} characters: it is the first admin's credential"
            ));
        }
        self.egress_networks()?;
        if !(1..=3600).contains(&self.user_code_time_limit_secs) {
            return Err(format!(
                "user-code-time-limit-secs must be between 1 and 3600, not {}",
                self.user_code_time_limit_secs
            ));
        }
        if !(1..=1_000_000).contains(&self.max_connections) {
            return Err(format!(
                "max-connections must be between 1 and 1000000, not {}",
                self.max_connections
            ));
        }
        for (key, secs) in [
            ("header-read-timeout-secs", self.header_read_timeout_secs),
            ("request-timeout-secs", self.request_timeout_secs),
        ] {
            if !(1..=86_400).contains(&secs) {
                return Err(format!("{key} must be between 1 and 86400, not {secs}"));
            }
        }
        self.calls.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_overrides_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slipway.toml");
        std::fs::write(
            &path,
            "data-dir = \"/var/lib/slipway\"\nlisten = \"0.0.0.0:9000\"\n",
        )
        .unwrap();
        let config = Config::from_file(&path).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/slipway"));
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.organisation, "default");

        std::fs::write(&path, "listen = \"nowhere\"\n").unwrap();
        let err = Config::from_file(&path).unwrap_err().to_string();
        assert!(err.starts_with("invalid configuration in "), "{err}");
        std::fs::write(&path, "colour = \"blue\"\n").unwrap();
        assert!(
            Config::from_file(&path)
                .unwrap_err()
                .to_string()
                .contains("unknown field `colour`")
        );
        std::fs::write(
            &path,
            "[registry]\nadapter = \"distribution\"\nversion = \"^1\"\n\
             settings = { url = \"http://127.0.0.1:5000\" }\nsecrets = { password = \"s3cret\" }\n",
        )
        .unwrap();
        let registry = Config::from_file(&path).unwrap().registry.unwrap();
        assert_eq!(registry.adapter, "distribution");
        assert_eq!(registry.settings["url"], "http://127.0.0.1:5000");
        assert!(
            !format!("{registry:?}").contains("s3cret"),
            "Debug hides secrets"
        );
        for (file, error) in [
            (
                "admin-token = \"\"\n",
                "admin-token must be at least 16 characters",
            ),
            (
                "admin-token = \"short\"\n",
                "admin-token must be at least 16 characters",
            ),
            (
                "egress-allow = [\"10.0.0.0/33\"]\n",
                "`10.0.0.0/33` is not a network",
            ),
        ] {
            std::fs::write(&path, file).unwrap();
            let err = Config::from_file(&path).unwrap_err().to_string();
            assert!(err.contains(error), "{err}");
        }
        std::fs::write(&path, "egress-allow = [\"127.0.0.1\", \"10.0.0.0/8\"]\n").unwrap();
        let networks = Config::from_file(&path).unwrap().egress_networks().unwrap();
        assert_eq!(
            networks,
            [
                "127.0.0.1/32".parse().unwrap(),
                "10.0.0.0/8".parse().unwrap()
            ]
        );
        std::fs::write(&path, "release-concurrency = 0\n").unwrap();
        assert!(
            Config::from_file(&path)
                .unwrap_err()
                .to_string()
                .contains("release-concurrency must be between 1 and 256, not 0")
        );
    }

    #[test]
    fn an_operator_bounds_what_each_organisation_keeps_in_the_image_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slipway.toml");
        std::fs::write(&path, "[images]\nmax-mib-per-organisation = 512\n").unwrap();
        let images = Config::from_file(&path).unwrap().images;
        assert_eq!(images.max_mib_per_organisation, 512);
        assert_eq!(
            Config::default().images.max_mib_per_organisation,
            DEFAULT_IMAGES_MIB_PER_ORGANISATION
        );
    }

    #[test]
    fn an_operator_sets_what_plugin_calls_may_take() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slipway.toml");
        std::fs::write(
            &path,
            "[calls]\ntime-limit-secs = 45\nmax-concurrent = 64\nmax-per-organisation = 8\n\
             memory-budget-mib = 4096\norganisation-memory-mib = 1024\n",
        )
        .unwrap();
        let runtime = Config::from_file(&path)
            .unwrap()
            .calls
            .apply(RuntimeConfig::default());
        assert_eq!(runtime.call_time_limit, Duration::from_secs(45));
        assert_eq!(
            (runtime.max_concurrent_calls, runtime.max_calls_per_tenant),
            (64, 8)
        );
        assert_eq!(
            (runtime.memory_budget_mib, runtime.tenant_memory_mib),
            (4096, 1024)
        );
        let defaults = CallLimits::default();
        assert_eq!(defaults.time_limit_secs, 60);
        assert!(defaults.memory_budget_mib <= 8192);
        for (file, error) in [
            (
                "[calls]\ntime-limit-secs = 5\n",
                "calls.time-limit-secs must be between 30",
            ),
            (
                "[calls]\nmax-per-organisation = 300\n",
                "calls.max-per-organisation must be between 1 and calls.max-concurrent (256), not 300",
            ),
            (
                "[calls]\nmemory-budget-mib = 100\n",
                "calls.memory-budget-mib must be at least 512",
            ),
            (
                "[calls]\nmemory-budget-mib = 1024\norganisation-memory-mib = 2048\n",
                "calls.organisation-memory-mib must be between 512 and calls.memory-budget-mib (1024)",
            ),
        ] {
            std::fs::write(&path, file).unwrap();
            let err = Config::from_file(&path).unwrap_err().to_string();
            assert!(err.contains(error), "{file}: {err}");
        }
    }
}

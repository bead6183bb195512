//! The plugin manifest: who a plugin is and what it may do.
//!
//! It is TOML embedded in the component's `slipway:manifest` custom section
//! (the SDK's export macros write it), so the manifest travels with the code
//! and the component's sha256 covers both.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Name of the custom section holding the manifest.
pub const SECTION: &str = "slipway:manifest";

/// The three plugin kinds, one WIT world each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A canvas node type (`node-type` world).
    NodeType,
    /// A container registry's rules (`registry-adapter` world).
    RegistryAdapter,
    /// A place services run (`deploy-target` world).
    DeployTarget,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 3] = [Kind::NodeType, Kind::RegistryAdapter, Kind::DeployTarget];

    /// The kind's name as in manifests and WIT world names.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::NodeType => "node-type",
            Kind::RegistryAdapter => "registry-adapter",
            Kind::DeployTarget => "deploy-target",
        }
    }

    /// The kind named `text` (as [`Kind::as_str`] writes it).
    pub fn named(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// The interface a component of this kind exports, without version.
    pub fn export(self) -> &'static str {
        match self {
            Kind::NodeType => "slipway:plugin/node",
            Kind::RegistryAdapter => "slipway:plugin/registry",
            Kind::DeployTarget => "slipway:plugin/target",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The objects a deploy target renders, and so the host driver that applies
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ObjectFamily {
    /// Docker Engine networks, volumes and containers.
    Docker,
    /// Kubernetes objects, applied server-side.
    Kubernetes,
}

/// A plugin's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Manifest {
    /// Which world the component implements.
    pub kind: Kind,
    /// Lowercase letters, digits and dashes; unique per kind.
    pub name: String,
    /// The plugin's semver version.
    pub version: semver::Version,
    /// One sentence for people.
    #[serde(default)]
    pub description: String,
    /// Hosts the plugin may reach over HTTP: `api.example.com`, `*.example.com`,
    /// `127.0.0.1:8080` (that port only), or `*` (any; operators narrow it per use).
    #[serde(default)]
    pub allowed_hosts: Vec<HostPattern>,
    /// Names of the secrets the plugin asks for.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Overrides of the host's default limits.
    #[serde(default)]
    pub limits: Limits,
    /// For a deploy target: the objects it renders. A target without one
    /// can be called but not deployed to.
    #[serde(default)]
    pub objects: Option<ObjectFamily>,
}

/// Per-call limits a manifest may ask for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Limits {
    /// Time the plugin's code may run in one call, in milliseconds.
    pub deadline_ms: Option<u64>,
    /// Linear memory one call may use, in MiB.
    pub memory_mib: Option<u64>,
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct ManifestError(String);

impl ManifestError {
    pub(crate) fn from_text(text: &str) -> Self {
        ManifestError(text.to_string())
    }
}

impl Manifest {
    /// Parses and checks a manifest.
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let manifest: Manifest =
            toml::from_str(text).map_err(|e| ManifestError(e.message().trim_end().to_string()))?;
        if !valid_name(&manifest.name) {
            return Err(ManifestError(format!(
                "invalid name `{}`: use 1 to 64 lowercase letters, digits and dashes, starting with a letter",
                manifest.name
            )));
        }
        if manifest.objects.is_some() && manifest.kind != Kind::DeployTarget {
            return Err(ManifestError(
                "`objects` is for deploy targets only".to_string(),
            ));
        }
        if let Some(secret) = manifest.secrets.iter().find(|s| s.is_empty()) {
            return Err(ManifestError(format!("invalid secret name `{secret}`")));
        }
        Ok(manifest)
    }

    /// `name@version`.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// Whether the manifest lets the plugin reach `host` on `port`.
    pub fn allows_host(&self, host: &str, port: u16) -> bool {
        self.allowed_hosts.iter().any(|p| p.matches(host, port))
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A host an HTTP call may go to; see [`Manifest::allowed_hosts`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostPattern {
    host: String,
    port: Option<u16>,
}

impl HostPattern {
    /// Whether it is `*`, any host on any port.
    pub fn is_any(&self) -> bool {
        self.host == "*" && self.port.is_none()
    }

    /// Whether `host:port` matches.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match self.host.as_str() {
            "*" => true,
            pattern => match pattern.strip_prefix("*.") {
                Some(domain) => host
                    .strip_suffix(domain)
                    .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
                None => pattern.eq_ignore_ascii_case(host),
            },
        }
    }
}

impl TryFrom<String> for HostPattern {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let bad = || format!("invalid host pattern `{text}`");
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(':') => {
                (host, Some(port.parse::<u16>().map_err(|_| bad())?))
            }
            _ => (text.as_str(), None),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = host.strip_prefix("*.").unwrap_or(host);
        let ok = host == "*"
            || (!name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':')));
        if !ok {
            return Err(bad());
        }
        Ok(HostPattern {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl From<HostPattern> for String {
    fn from(pattern: HostPattern) -> String {
        pattern.to_string()
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) if self.host.contains(':') => write!(f, "[{}]:{port}", self.host),
            Some(port) => write!(f, "{}:{port}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> HostPattern {
        HostPattern::try_from(text.to_string()).unwrap()
    }

    #[test]
    fn patterns_match_hosts_and_ports() {
        assert!(pattern("api.example.com").matches("API.example.com", 443));
        assert!(pattern("*.example.com").matches("a.b.example.com", 80));
        assert!(!pattern("*.example.com").matches("example.com", 80));
        assert!(!pattern("*.example.com").matches("badexample.com", 80));
        assert!(pattern("127.0.0.1:8080").matches("127.0.0.1", 8080));
        assert!(!pattern("127.0.0.1:8080").matches("127.0.0.1", 8081));
        assert!(pattern("*").matches("anything", 1));
        assert!(pattern("[::1]:80").matches("[::1]", 80));
        assert!(HostPattern::try_from("a b".to_string()).is_err());
        assert!(HostPattern::try_from("x:notaport".to_string()).is_err());
    }

    #[test]
    fn manifest_parses_and_checks_the_name() {
        let m = Manifest::parse(
            "kind = \"node-type\"\nname = \"transform\"\nversion = \"1.2.0\"\nallowed-hosts = [\"*.example.com\"]\n[limits]\ndeadline-ms = 50\n",
        )
        .unwrap();
        assert_eq!(m.id(), "transform@1.2.0");
        assert_eq!(m.limits.deadline_ms, Some(50));
        assert!(m.allows_host("x.example.com", 443));

        let err = Manifest::parse("kind = \"node-type\"\nname = \"Bad_Name\"\nversion = \"1.0.0\"")
            .unwrap_err();
        assert!(err.to_string().starts_with("invalid name `Bad_Name`"));
        let err =
            Manifest::parse("kind = \"gadget\"\nname = \"x\"\nversion = \"1.0.0\"").unwrap_err();
        assert!(
            err.to_string().contains("unknown variant `gadget`"),
            "{err}"
        );
    }
}

//! The loaded plugins: several versions side by side, resolved by semver
//! requirement, replaced atomically, and protected from removal while pinned.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use semver::{Version, VersionReq};

use crate::manifest::Kind;
use crate::plugin::Plugin;

type Key = (Kind, String);

/// Loaded plugins by kind, name and version.
#[derive(Default)]
pub struct Catalog {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    plugins: BTreeMap<Key, BTreeMap<Version, Arc<Plugin>>>,
    pins: BTreeMap<(Kind, String, Version), BTreeSet<String>>,
}

/// Why a plugin could not be found.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ResolveError {
    /// No plugin of that kind and name.
    #[error("no {kind} plugin named `{name}` is loaded")]
    Unknown {
        /// The kind asked for.
        kind: Kind,
        /// The name asked for.
        name: String,
    },
    /// The plugin exists but no version matches.
    #[error("no version of {kind} `{name}` matches `{requirement}` (loaded: {available})")]
    NoMatch {
        /// The kind asked for.
        kind: Kind,
        /// The name asked for.
        name: String,
        /// The requirement.
        requirement: String,
        /// Loaded versions, comma-separated.
        available: String,
    },
}

/// Why a plugin could not be removed.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum RemoveError {
    /// Not loaded.
    #[error("{kind} `{name}@{version}` is not loaded")]
    Unknown {
        /// The kind.
        kind: Kind,
        /// The name.
        name: String,
        /// The version.
        version: Version,
    },
    /// Something still uses it.
    #[error("{kind} `{name}@{version}` is still used by {}", holders.join(", "))]
    Pinned {
        /// The kind.
        kind: Kind,
        /// The name.
        name: String,
        /// The version.
        version: Version,
        /// Who pins it.
        holders: Vec<String>,
    },
}

impl Catalog {
    /// Adds a plugin, or replaces the one with the same kind, name and version.
    /// Calls already running keep the old code; new calls get the new one.
    /// Returns the replaced plugin.
    pub fn insert(&self, plugin: Arc<Plugin>) -> Option<Arc<Plugin>> {
        let m = plugin.manifest();
        let key = (m.kind, m.name.clone());
        let version = m.version.clone();
        let mut inner = self.inner.write().expect("catalog lock");
        inner
            .plugins
            .entry(key)
            .or_default()
            .insert(version, plugin)
    }

    /// The highest loaded version matching `requirement`.
    pub fn resolve(
        &self,
        kind: Kind,
        name: &str,
        requirement: &VersionReq,
    ) -> Result<Arc<Plugin>, ResolveError> {
        let inner = self.inner.read().expect("catalog lock");
        let versions = inner
            .plugins
            .get(&(kind, name.to_string()))
            .ok_or_else(|| ResolveError::Unknown {
                kind,
                name: name.to_string(),
            })?;
        versions
            .iter()
            .rev()
            .find(|(v, _)| requirement.matches(v))
            .map(|(_, p)| p.clone())
            .ok_or_else(|| ResolveError::NoMatch {
                kind,
                name: name.to_string(),
                requirement: requirement.to_string(),
                available: versions
                    .keys()
                    .map(Version::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// One exact version.
    pub fn get(&self, kind: Kind, name: &str, version: &Version) -> Option<Arc<Plugin>> {
        let inner = self.inner.read().expect("catalog lock");
        inner
            .plugins
            .get(&(kind, name.to_string()))
            .and_then(|versions| versions.get(version).cloned())
    }

    /// Every loaded plugin, by kind, name and version.
    pub fn list(&self) -> Vec<Arc<Plugin>> {
        let inner = self.inner.read().expect("catalog lock");
        inner
            .plugins
            .values()
            .flat_map(|versions| versions.values().cloned())
            .collect()
    }

    /// Records that `holder` (e.g. `release 42`) uses this version.
    pub fn pin(&self, kind: Kind, name: &str, version: &Version, holder: &str) {
        let mut inner = self.inner.write().expect("catalog lock");
        inner
            .pins
            .entry((kind, name.to_string(), version.clone()))
            .or_default()
            .insert(holder.to_string());
    }

    /// Forgets one pin.
    pub fn unpin(&self, kind: Kind, name: &str, version: &Version, holder: &str) {
        let mut inner = self.inner.write().expect("catalog lock");
        let key = (kind, name.to_string(), version.clone());
        if let Some(holders) = inner.pins.get_mut(&key) {
            holders.remove(holder);
            if holders.is_empty() {
                inner.pins.remove(&key);
            }
        }
    }

    /// Who pins this version.
    pub fn holders(&self, kind: Kind, name: &str, version: &Version) -> Vec<String> {
        let inner = self.inner.read().expect("catalog lock");
        inner
            .pins
            .get(&(kind, name.to_string(), version.clone()))
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Removes a version nothing pins.
    pub fn remove(
        &self,
        kind: Kind,
        name: &str,
        version: &Version,
    ) -> Result<Arc<Plugin>, RemoveError> {
        let mut inner = self.inner.write().expect("catalog lock");
        if let Some(holders) = inner.pins.get(&(kind, name.to_string(), version.clone())) {
            return Err(RemoveError::Pinned {
                kind,
                name: name.to_string(),
                version: version.clone(),
                holders: holders.iter().cloned().collect(),
            });
        }
        let key = (kind, name.to_string());
        let versions = inner.plugins.get_mut(&key);
        let removed = versions.and_then(|v| v.remove(version));
        if inner.plugins.get(&key).is_some_and(BTreeMap::is_empty) {
            inner.plugins.remove(&key);
        }
        removed.ok_or_else(|| RemoveError::Unknown {
            kind,
            name: name.to_string(),
            version: version.clone(),
        })
    }
}

//! Deploy targets: where an organisation's services run (one record per
//! organisation and name, secrets sealed), and the history of their changes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::registries::AdapterCode;
use super::{Store, StoreError, decode, encode, key, name_key};

/// How the host reaches a target; the plugin never does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case", tag = "driver")]
pub enum Connection {
    /// A Docker Engine: `local` (the server's own, as the operator allows
    /// it), or `tcp://host:port` (TLS with the `ca`, `cert` and `key` secrets).
    Docker {
        /// `local` or `tcp://host:port`.
        endpoint: String,
    },
    /// A Kubernetes API server, with the `token` and `ca` secrets.
    Kubernetes {
        /// `https://host:port`.
        server: String,
        /// The namespace services go to.
        namespace: String,
    },
}

/// A target as an org-admin set it.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredTarget {
    /// A DNS label, unique in the organisation.
    pub name: String,
    /// The deploy-target plugin.
    pub plugin: String,
    /// Which of its versions: a semver requirement.
    pub version: String,
    /// The plugin's settings.
    pub settings: serde_json::Value,
    /// How the host reaches it.
    pub connection: Connection,
    /// Secrets the host's driver uses, by name; sealed on disk.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// The plugin version the settings were checked with, `name@version`.
    pub resolved: String,
    /// That version's code.
    pub code: AdapterCode,
    /// Who set it: a user name, or `server` for the built-in one.
    pub changed_by: String,
    /// When, in ms since the Unix epoch.
    pub changed_ms: u64,
}

impl std::fmt::Debug for StoredTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredTarget")
            .field("name", &self.name)
            .field("plugin", &self.plugin)
            .field("version", &self.version)
            .field("settings", &self.settings)
            .field("connection", &self.connection)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("resolved", &self.resolved)
            .finish()
    }
}

/// A target as its changes record it: secrets by name only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub struct TargetChoice {
    /// The deploy-target plugin.
    pub plugin: String,
    /// The version requirement.
    pub version: String,
    /// The version it resolved to, `name@version`.
    pub resolved: String,
    /// The plugin's settings.
    pub settings: serde_json::Value,
    /// How the host reaches it.
    pub connection: Connection,
    /// The names of its secrets.
    pub secrets: Vec<String>,
}

impl From<&StoredTarget> for TargetChoice {
    fn from(target: &StoredTarget) -> Self {
        TargetChoice {
            plugin: target.plugin.clone(),
            version: target.version.clone(),
            resolved: target.resolved.clone(),
            settings: target.settings.clone(),
            connection: target.connection.clone(),
            secrets: target.secrets.keys().cloned().collect(),
        }
    }
}

/// One change of a target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub struct TargetChangeRecord {
    /// Who changed it.
    pub by: String,
    /// When, in ms since the Unix epoch.
    pub at_ms: u64,
    /// The target before; none when it was created.
    pub from: Option<TargetChoice>,
    /// The target after; none when it was deleted.
    pub to: Option<TargetChoice>,
}

/// Why a target was not deleted.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// No target has the name.
    #[error("no target `{0}`")]
    NotFound(String),
    /// Services are on it: their ids.
    #[error("services {0:?} run on the target")]
    InUse(Vec<u64>),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn seal_context(organisation: u64, target: &str, name: &str) -> String {
    format!("target/{organisation}/{target}/{name}")
}

/// A target's change key: its name key, a 0 byte (never in a DNS label),
/// then the change id.
fn change_key(organisation: u64, name: &str, change: u64) -> Vec<u8> {
    let mut key = changes_prefix(organisation, name);
    key.extend_from_slice(&change.to_be_bytes());
    key
}

fn changes_prefix(organisation: u64, name: &str) -> Vec<u8> {
    let mut key = name_key(organisation, name);
    key.push(0);
    key
}

impl Store {
    /// The organisation's target `name`, its secrets opened.
    pub fn target(
        &self,
        organisation: u64,
        name: &str,
    ) -> Result<Option<StoredTarget>, StoreError> {
        let Some(bytes) = self.targets.get(name_key(organisation, name))? else {
            return Ok(None);
        };
        let mut target: StoredTarget = decode("targets", &bytes)?;
        for (secret, value) in target.secrets.iter_mut() {
            *value = self
                .sealer
                .unseal(value, &seal_context(organisation, name, secret))?;
        }
        Ok(Some(target))
    }

    /// The organisation's targets by name, secrets left out.
    pub fn targets(&self, organisation: u64) -> Result<Vec<StoredTarget>, StoreError> {
        self.targets
            .scan_prefix(key(organisation))
            .values()
            .map(|bytes| {
                let mut target: StoredTarget = decode("targets", &bytes?)?;
                target.secrets.values_mut().for_each(String::clear);
                Ok(target)
            })
            .collect()
    }

    /// Creates or replaces a target and records the change, in one
    /// transaction, on disk before it returns.
    pub fn put_target(&self, organisation: u64, target: &StoredTarget) -> Result<(), StoreError> {
        self.write_target(organisation, target, true).map(|_| ())
    }

    /// Records `target` unless the organisation has one of its name (an
    /// org-admin's, set meanwhile, is never overwritten); answers whether
    /// it did.
    pub fn add_target(&self, organisation: u64, target: &StoredTarget) -> Result<bool, StoreError> {
        self.write_target(organisation, target, false)
    }

    fn write_target(
        &self,
        organisation: u64,
        target: &StoredTarget,
        replace: bool,
    ) -> Result<bool, StoreError> {
        let mut sealed = target.clone();
        for (secret, value) in sealed.secrets.iter_mut() {
            *value = self
                .sealer
                .seal(value, &seal_context(organisation, &target.name, secret));
        }
        let named = name_key(organisation, &target.name);
        let change = change_key(organisation, &target.name, self.next_id()?);
        let written = (&self.targets, &self.target_changes)
            .transaction(|(targets, changes)| {
                if !replace && targets.get(named.as_slice())?.is_some() {
                    return Ok(false);
                }
                let from = targets
                    .insert(named.as_slice(), encode(&sealed))?
                    .and_then(|bytes| serde_json::from_slice::<StoredTarget>(&bytes).ok());
                let record = TargetChangeRecord {
                    by: target.changed_by.clone(),
                    at_ms: target.changed_ms,
                    from: from.as_ref().map(TargetChoice::from),
                    to: Some(TargetChoice::from(target)),
                };
                changes.insert(change.as_slice(), encode(&record))?;
                Ok(true)
            })
            .map_err(|e| super::aborted("targets", e))?;
        if written {
            self.db.flush()?;
        }
        Ok(written)
    }

    /// Deletes a target no service is on, recording who did, in one
    /// transaction with the check.
    pub fn delete_target(
        &self,
        organisation: u64,
        name: &str,
        by: &str,
    ) -> Result<(), TargetError> {
        enum Refusal {
            Missing,
            InUse(Vec<u64>),
        }
        let named = name_key(organisation, name);
        let change = change_key(organisation, name, self.next_id()?);
        (&self.targets, &self.target_changes, &self.target_services)
            .transaction(|(targets, changes, services)| {
                let abort = ConflictableTransactionError::Abort;
                // Read in the transaction, so a service created meanwhile counts.
                if let Some(ids) = services.get(target_services_key(organisation, name))? {
                    let ids: Vec<u64> = serde_json::from_slice(&ids).unwrap_or_default();
                    if !ids.is_empty() {
                        return Err(abort(Refusal::InUse(ids)));
                    }
                }
                let Some(bytes) = targets.remove(named.as_slice())? else {
                    return Err(abort(Refusal::Missing));
                };
                let from = serde_json::from_slice::<StoredTarget>(&bytes).ok();
                let record = TargetChangeRecord {
                    by: by.into(),
                    at_ms: super::now_ms(),
                    from: from.as_ref().map(TargetChoice::from),
                    to: None,
                };
                changes.insert(change.as_slice(), encode(&record))?;
                Ok(())
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => TargetError::Store(e.into()),
                TransactionError::Abort(Refusal::Missing) => TargetError::NotFound(name.into()),
                TransactionError::Abort(Refusal::InUse(ids)) => TargetError::InUse(ids),
            })?;
        self.db.flush().map_err(StoreError::from)?;
        Ok(())
    }

    /// The changes of the organisation's target `name`, oldest first; a
    /// target deleted and made again keeps its history.
    pub fn target_changes(
        &self,
        organisation: u64,
        name: &str,
    ) -> Result<Vec<TargetChangeRecord>, StoreError> {
        self.target_changes
            .scan_prefix(changes_prefix(organisation, name))
            .values()
            .map(|bytes| decode("target_changes", &bytes?))
            .collect()
    }
}

/// The key of a target's service list.
pub(super) fn target_services_key(organisation: u64, target: &str) -> Vec<u8> {
    name_key(organisation, target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registries::Origin;

    fn target(plugin: &str, secret: &str) -> StoredTarget {
        StoredTarget {
            name: "edge".into(),
            plugin: plugin.into(),
            version: "^1".into(),
            settings: serde_json::json!({}),
            connection: Connection::Docker {
                endpoint: "local".into(),
            },
            secrets: BTreeMap::from([("token".to_string(), secret.to_string())]),
            resolved: format!("{plugin}@1.0.0"),
            code: AdapterCode {
                sha256: "00".into(),
                origin: Origin::BuiltIn,
            },
            changed_by: "admin".into(),
            changed_ms: 1,
        }
    }

    #[test]
    fn a_target_set_meanwhile_is_not_overwritten_by_the_built_in_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.add_target(1, &target("docker", "a")).unwrap());
        assert!(!store.add_target(1, &target("other", "b")).unwrap());
        let kept = store.target(1, "edge").unwrap().unwrap();
        assert_eq!(
            (kept.plugin.as_str(), kept.secrets["token"].as_str()),
            ("docker", "a")
        );
        assert_eq!(store.target_changes(1, "edge").unwrap().len(), 1);
        // Another organisation's target of the same name is its own.
        assert_eq!(store.target(2, "edge").unwrap(), None);
        // Secrets are sealed on disk, opened when read.
        let raw = store.targets.get(name_key(1, "edge")).unwrap().unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains("\"token\":\"a\""));
    }
}

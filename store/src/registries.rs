//! Each organisation's registry settings (one record per organisation), and
//! the history of its changes (who, when, from what, to what).

use serde::{Deserialize, Serialize};
use sled::Transactional;

use std::collections::BTreeMap;

use super::seal::Sealer;
use super::{Store, StoreError, aborted, decode, encode, key};

/// An organisation's registry and who set it, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRegistry {
    /// The settings, secrets included.
    pub settings: StoredSettings,
    /// The adapter version the settings resolved to when set, `name@version`
    /// (unknown for settings from the configuration file).
    #[serde(default)]
    pub resolved: Option<String>,
    /// That adapter's code: its sha256 and origin. With `resolved`, the pin
    /// the secrets go to; see `releases::registry_of`.
    #[serde(default)]
    pub code: Option<AdapterCode>,
    /// Who set them: a user name, `configuration` for the file, or `server`.
    pub changed_by: String,
    /// When, in ms since the Unix epoch.
    pub changed_ms: u64,
}

/// The settings an org-admin (or the configuration file) gave a registry,
/// as written: secrets are sealed on disk and opened when read.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct StoredSettings {
    /// The registry-adapter plugin.
    pub adapter: String,
    /// Which of its versions: a semver requirement.
    pub version: String,
    /// The adapter's settings.
    pub settings: serde_json::Value,
    /// Secrets the adapter may read, by name.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Hosts the adapter may reach besides the registry.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

impl std::fmt::Debug for StoredSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSettings")
            .field("adapter", &self.adapter)
            .field("version", &self.version)
            .field("settings", &self.settings)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("allowed_hosts", &self.allowed_hosts)
            .finish()
    }
}

/// One change of an organisation's registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub struct RegistryChangeRecord {
    /// A user name, `configuration`, or `server` when the server's built-in
    /// adapter changed under the settings.
    pub by: String,
    /// When, in ms since the Unix epoch.
    pub at_ms: u64,
    /// The registry before; none for the first one.
    pub from: Option<RegistryChoice>,
    /// The registry after.
    pub to: RegistryChoice,
}

/// Which adapter and settings a registry used; secrets by name only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub struct RegistryChoice {
    /// The adapter plugin.
    pub adapter: String,
    /// The version requirement.
    pub version: String,
    /// The version it resolved to, `name@version`, when known.
    pub resolved: Option<String>,
    /// That version's code, when known.
    pub code: Option<AdapterCode>,
    /// The adapter's settings.
    pub settings: serde_json::Value,
    /// The names of the secrets granted.
    pub secrets: Vec<String>,
}

impl From<&StoredRegistry> for RegistryChoice {
    fn from(stored: &StoredRegistry) -> Self {
        let settings = &stored.settings;
        RegistryChoice {
            adapter: settings.adapter.clone(),
            version: settings.version.clone(),
            resolved: stored.resolved.clone(),
            code: stored.code.clone(),
            settings: settings.settings.clone(),
            secrets: settings.secrets.keys().cloned().collect(),
        }
    }
}

/// Which code an adapter version is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub struct AdapterCode {
    /// The component's sha256, hex.
    pub sha256: String,
    /// Who installed it.
    pub origin: Origin,
}

/// Who installed a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// The operator: it came with the server.
    BuiltIn,
    /// An org-admin uploaded it.
    Upload,
}

/// What a registry secret is sealed to: its organisation and name.
fn seal_context(organisation: u64, name: &str) -> String {
    format!("registry/{organisation}/{name}")
}

impl Store {
    /// The organisation's registry, if one is set, its secrets opened.
    pub fn registry(&self, organisation: u64) -> Result<Option<StoredRegistry>, StoreError> {
        let Some(bytes) = self.registries.get(key(organisation))? else {
            return Ok(None);
        };
        let mut registry: StoredRegistry = decode("registries", &bytes)?;
        for (name, value) in registry.settings.secrets.iter_mut() {
            *value = self
                .sealer
                .unseal(value, &seal_context(organisation, name))?;
        }
        Ok(Some(registry))
    }

    /// `registry` of `organisation` as it is written: every secret sealed
    /// to the organisation and its name (a value that looks sealed is sealed
    /// again, so it cannot bring another's sealed secret in).
    fn sealed(&self, organisation: u64, registry: &StoredRegistry) -> StoredRegistry {
        let mut sealed = registry.clone();
        for (name, value) in sealed.settings.secrets.iter_mut() {
            *value = self.sealer.seal(value, &seal_context(organisation, name));
        }
        sealed
    }

    /// Seals the secrets every registry written before sealing holds in the
    /// clear (schema 4), on disk before it returns. sled drops the old
    /// values' log segments only as it reclaims them.
    pub(super) fn seal_registry_secrets(&self) -> Result<bool, StoreError> {
        let mut sealed = false;
        for entry in self.registries.iter() {
            let (id, bytes) = entry?;
            let organisation =
                u64::from_be_bytes(id.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    tree: "registries",
                    detail: "a key is not an organisation id".into(),
                })?);
            let mut registry: StoredRegistry = decode("registries", &bytes)?;
            let mut changed = false;
            for (name, value) in registry.settings.secrets.iter_mut() {
                if !Sealer::is_sealed(value) {
                    *value = self.sealer.seal(value, &seal_context(organisation, name));
                    changed = true;
                }
            }
            if changed {
                self.registries.insert(id, encode(&registry))?;
                sealed = true;
            }
        }
        self.db.flush()?;
        Ok(sealed)
    }

    /// Sets the organisation's registry and records the change, in one
    /// transaction.
    pub fn put_registry(
        &self,
        organisation: u64,
        registry: &StoredRegistry,
    ) -> Result<(), StoreError> {
        let change_id = self.next_id()?;
        let sealed = self.sealed(organisation, registry);
        let mut change_key = key(organisation).to_vec();
        change_key.extend_from_slice(&key(change_id));
        (&self.registries, &self.registry_changes)
            .transaction(|(registries, changes)| {
                let from = registries
                    .insert(&key(organisation), encode(&sealed))?
                    .and_then(|bytes| serde_json::from_slice::<StoredRegistry>(&bytes).ok());
                let change = RegistryChangeRecord {
                    by: registry.changed_by.clone(),
                    at_ms: registry.changed_ms,
                    from: from.as_ref().map(RegistryChoice::from),
                    to: RegistryChoice::from(registry),
                };
                changes.insert(change_key.as_slice(), encode(&change))?;
                Ok(())
            })
            .map_err(|e| aborted("registries", e))
    }

    /// The organisation's registry changes, oldest first.
    pub fn registry_changes(
        &self,
        organisation: u64,
    ) -> Result<Vec<RegistryChangeRecord>, StoreError> {
        self.registry_changes
            .scan_prefix(key(organisation))
            .values()
            .map(|bytes| decode("registry_changes", &bytes?))
            .collect()
    }
}

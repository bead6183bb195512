//! Uploaded plugin components, kept so they load again after a restart.

use serde::{Deserialize, Serialize};
use sled::Transactional;

use super::{Store, StoreError, aborted, decode, encode};

/// An uploaded plugin version of one organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPlugin {
    /// The organisation that uploaded it.
    pub organisation: u64,
    /// `node-type`, `registry-adapter` or `deploy-target`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The sha256 of the component.
    pub sha256: String,
}

fn record_key(organisation: u64, kind: &str, name: &str, version: &str) -> Vec<u8> {
    let mut key = organisation.to_be_bytes().to_vec();
    key.extend_from_slice(format!("{kind}/{name}@{version}").as_bytes());
    key
}

fn hosts_key(organisation: u64, kind: &str, name: &str) -> Vec<u8> {
    let mut key = organisation.to_be_bytes().to_vec();
    key.extend_from_slice(format!("{kind}/{name}").as_bytes());
    key
}

impl Store {
    /// The hosts an org-admin granted an uploaded plugin (every version).
    pub fn plugin_hosts(
        &self,
        organisation: u64,
        kind: &str,
        name: &str,
    ) -> Result<Vec<String>, StoreError> {
        match self.plugin_hosts.get(hosts_key(organisation, kind, name))? {
            Some(bytes) => decode("plugin_hosts", &bytes),
            None => Ok(Vec::new()),
        }
    }

    /// Grants an uploaded plugin these hosts, replacing the earlier grant;
    /// on disk before it answers.
    pub fn set_plugin_hosts(
        &self,
        organisation: u64,
        kind: &str,
        name: &str,
        hosts: &[String],
    ) -> Result<(), StoreError> {
        self.plugin_hosts
            .insert(hosts_key(organisation, kind, name), encode(&hosts))?;
        self.plugin_hosts.flush()?;
        Ok(())
    }

    /// Keeps a plugin version and its component, replacing the same version.
    pub fn save_plugin(&self, plugin: &StoredPlugin, component: &[u8]) -> Result<(), StoreError> {
        let key = record_key(
            plugin.organisation,
            &plugin.kind,
            &plugin.name,
            &plugin.version,
        );
        (&self.plugins, &self.components)
            .transaction(|(plugins, components)| {
                plugins.insert(key.as_slice(), encode(plugin))?;
                components.insert(plugin.sha256.as_bytes(), component)?;
                Ok(())
            })
            .map_err(|e| aborted("plugins", e))
    }

    /// Forgets a plugin version (its component stays while another record uses it).
    pub fn remove_plugin(&self, plugin: &StoredPlugin) -> Result<(), StoreError> {
        let key = record_key(
            plugin.organisation,
            &plugin.kind,
            &plugin.name,
            &plugin.version,
        );
        self.plugins.remove(key)?;
        let still_used = self
            .stored_plugins()?
            .iter()
            .any(|p| p.sha256 == plugin.sha256);
        if !still_used {
            self.components.remove(plugin.sha256.as_bytes())?;
        }
        Ok(())
    }

    /// Every uploaded plugin version, of every organisation.
    pub fn stored_plugins(&self) -> Result<Vec<StoredPlugin>, StoreError> {
        self.plugins
            .iter()
            .map(|entry| decode("plugins", &entry?.1))
            .collect()
    }

    /// A component by sha256.
    pub fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.components.get(sha256.as_bytes())?.map(|b| b.to_vec()))
    }
}

//! Each organisation's registry settings (one record per organisation).

use serde::{Deserialize, Serialize};

use super::{Store, StoreError, decode, encode, key};
use crate::registry::RegistrySettings;

/// An organisation's registry and who set it, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRegistry {
    /// The settings, secrets included.
    pub settings: RegistrySettings,
    /// Who set them: a user name, or `configuration` for the file.
    pub changed_by: String,
    /// When, in ms since the Unix epoch.
    pub changed_ms: u64,
}

impl Store {
    /// The organisation's registry, if one is set.
    pub fn registry(&self, organisation: u64) -> Result<Option<StoredRegistry>, StoreError> {
        self.registries
            .get(key(organisation))?
            .map(|bytes| decode("registries", &bytes))
            .transpose()
    }

    /// Sets the organisation's registry.
    pub fn put_registry(
        &self,
        organisation: u64,
        registry: &StoredRegistry,
    ) -> Result<(), StoreError> {
        self.registries
            .insert(key(organisation), encode(registry))?;
        Ok(())
    }
}

//! Integrations and their immutable, numbered canvas versions.

use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::{Store, StoreError, decode, encode, name_key};
use slipway_flow::canvas::Canvas;

/// A named flow of one organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct Integration {
    /// Its id.
    pub id: u64,
    /// The organisation.
    pub organisation: u64,
    /// Unique in the organisation.
    pub name: String,
    /// The newest canvas version; 0 before the first.
    pub latest_version: u32,
}

/// Why an integration change was refused.
#[derive(Debug, thiserror::Error)]
pub enum IntegrationError {
    /// The name is taken.
    #[error("an integration named `{0}` exists")]
    Exists(String),
    /// No such integration.
    #[error("no integration named `{0}`")]
    NotFound(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn version_key(integration: u64, version: u32) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&integration.to_be_bytes());
    key[8..].copy_from_slice(&version.to_be_bytes());
    key
}

fn abort(e: IntegrationError) -> ConflictableTransactionError<IntegrationError> {
    ConflictableTransactionError::Abort(e)
}

fn outcome<T>(
    result: Result<T, TransactionError<IntegrationError>>,
) -> Result<T, IntegrationError> {
    result.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => IntegrationError::Store(StoreError::Sled(e)),
    })
}

impl Store {
    /// Creates an integration with no canvas yet.
    pub fn create_integration(
        &self,
        organisation: u64,
        name: &str,
    ) -> Result<Integration, IntegrationError> {
        let integration = Integration {
            id: self.next_id()?,
            organisation,
            name: name.to_string(),
            latest_version: 0,
        };
        let key = name_key(organisation, name);
        outcome(self.integrations.transaction(|tree| {
            if tree.get(&key)?.is_some() {
                return Err(abort(IntegrationError::Exists(name.to_string())));
            }
            tree.insert(key.as_slice(), encode(&integration))?;
            Ok(())
        }))?;
        Ok(integration)
    }

    /// One integration by name.
    pub fn integration(
        &self,
        organisation: u64,
        name: &str,
    ) -> Result<Integration, IntegrationError> {
        match self
            .integrations
            .get(name_key(organisation, name))
            .map_err(StoreError::from)?
        {
            Some(bytes) => Ok(decode("integrations", &bytes)?),
            None => Err(IntegrationError::NotFound(name.to_string())),
        }
    }

    /// The organisation's integrations, by name.
    pub fn integrations(&self, organisation: u64) -> Result<Vec<Integration>, StoreError> {
        self.integrations
            .scan_prefix(organisation.to_be_bytes())
            .map(|entry| decode("integrations", &entry?.1))
            .collect()
    }

    /// Deletes an integration and all its canvas versions, in one transaction.
    pub fn delete_integration(
        &self,
        organisation: u64,
        name: &str,
    ) -> Result<(), IntegrationError> {
        let integration = self.integration(organisation, name)?;
        let key = name_key(organisation, name);
        outcome(
            (&self.integrations, &self.canvases).transaction(|(integrations, canvases)| {
                integrations.remove(key.as_slice())?;
                for version in 1..=integration.latest_version {
                    canvases.remove(&version_key(integration.id, version))?;
                }
                Ok(())
            }),
        )
    }

    /// Stores `canvas` as the integration's next version; returns the version.
    pub fn add_canvas(
        &self,
        organisation: u64,
        name: &str,
        canvas: &Canvas,
    ) -> Result<u32, IntegrationError> {
        let key = name_key(organisation, name);
        outcome(
            (&self.integrations, &self.canvases).transaction(|(integrations, canvases)| {
                let Some(bytes) = integrations.get(&key)? else {
                    return Err(abort(IntegrationError::NotFound(name.to_string())));
                };
                let mut integration: Integration =
                    decode("integrations", &bytes).map_err(|e| abort(e.into()))?;
                integration.latest_version += 1;
                canvases.insert(
                    &version_key(integration.id, integration.latest_version),
                    encode(canvas),
                )?;
                integrations.insert(key.as_slice(), encode(&integration))?;
                Ok(integration.latest_version)
            }),
        )
    }

    /// One canvas version, if it exists.
    pub fn canvas(
        &self,
        integration: &Integration,
        version: u32,
    ) -> Result<Option<Canvas>, StoreError> {
        match self.canvases.get(version_key(integration.id, version))? {
            Some(bytes) => Ok(Some(decode("canvases", &bytes)?)),
            None => Ok(None),
        }
    }
}

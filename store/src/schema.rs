//! The schema version and the migrations that lead to it.

use super::{Store, StoreError};

/// The schema this build writes.
pub const SCHEMA_VERSION: u32 = 7;

const KEY: &[u8] = b"schema-version";

/// Brings the database to [`SCHEMA_VERSION`], one step at a time.
pub(super) fn migrate(store: &Store) -> Result<(), StoreError> {
    let mut version = match store.meta.get(KEY)? {
        Some(bytes) => {
            u32::from_be_bytes(bytes.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                tree: "meta",
                detail: "schema version is not 4 bytes".into(),
            })?)
        }
        None => 0,
    };
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    while version < SCHEMA_VERSION {
        // Version 0 is an empty database; 1 is the first schema.
        version += 1;
        match version {
            // 2 indexed the release queue, which 7 replaces with jobs.
            3 => store.requeue_packaged_releases()?,
            4 => store.seal_registry_secrets()?,
            5 => store.name_releases()?,
            6 => store.index_releases()?,
            7 => store.give_releases_jobs()?,
            _ => {}
        }
        store.meta.insert(KEY, &version.to_be_bytes())?;
        tracing::info!(version, "database schema migrated");
    }
    Ok(())
}

/// The stored version (for tests and diagnostics).
pub fn version(store: &Store) -> Result<u32, StoreError> {
    Ok(store
        .meta
        .get(KEY)?
        .and_then(|b| b.as_ref().try_into().ok().map(u32::from_be_bytes))
        .unwrap_or(0))
}

/// Writes `version` as the stored schema, as an older Slipway left it (for
/// the migration tests).
#[cfg(test)]
pub(super) fn set_version(store: &Store, version: u32) {
    store.meta.insert(KEY, &version.to_be_bytes()).unwrap();
}

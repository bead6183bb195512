//! The schema version and the migrations that lead to it.

use std::path::{Path, PathBuf};

use super::{Store, StoreError};

/// The schema this build writes.
pub const SCHEMA_VERSION: u32 = 7;

const KEY: &[u8] = b"schema-version";

/// What migrating left to do.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Migrated {
    /// Nothing.
    Done,
    /// Write the database afresh: older values (plain secrets) are still in
    /// its log.
    Rewrite,
}

/// Brings the database to [`SCHEMA_VERSION`], one step at a time.
pub(super) fn migrate(store: &Store) -> Result<Migrated, StoreError> {
    let mut migrated = Migrated::Done;
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
            4 if store.seal_registry_secrets()? => migrated = Migrated::Rewrite,
            5 => store.name_releases()?,
            6 => store.index_releases()?,
            7 => store.give_releases_jobs()?,
            _ => {}
        }
        store.meta.insert(KEY, &version.to_be_bytes())?;
        tracing::info!(version, "database schema migrated");
    }
    Ok(migrated)
}

/// Where a rewrite builds the new database, and where the old one waits
/// until the new one is in place.
fn rewrite_dirs(dir: &Path) -> (PathBuf, PathBuf) {
    let beside = |suffix: &str| {
        let mut name = dir.file_name().unwrap_or_default().to_os_string();
        name.push(suffix);
        dir.with_file_name(name)
    };
    (beside(".fresh"), beside(".old"))
}

/// Writes the closed database in `dir` afresh, every tree and the seal key,
/// and puts the copy in its place. A crash part way leaves the old one
/// or the new one, which [`finish_rewrite`] takes up at the next open.
pub(super) fn rewrite(dir: &Path) -> Result<(), StoreError> {
    let (fresh, old) = rewrite_dirs(dir);
    let io = |err: std::io::Error| StoreError::Seal(format!("rewriting {}: {err}", dir.display()));
    if fresh.exists() {
        std::fs::remove_dir_all(&fresh).map_err(io)?;
    }
    {
        let from = sled::Config::new().path(dir).open()?;
        let to = sled::Config::new().path(&fresh).open()?;
        to.import(from.export());
        to.flush()?;
    }
    let key = dir.join(super::seal::KEY_FILE);
    if key.exists() {
        std::fs::copy(&key, fresh.join(super::seal::KEY_FILE)).map_err(io)?;
    }
    std::fs::rename(dir, &old).map_err(io)?;
    std::fs::rename(&fresh, dir).map_err(io)?;
    std::fs::remove_dir_all(&old).map_err(io)?;
    tracing::info!("database written afresh");
    Ok(())
}

/// Ends a rewrite a crash cut off: the old database back when the new one
/// never took its place, the old one removed when it did.
pub(super) fn finish_rewrite(dir: &Path) -> Result<(), StoreError> {
    let (_, old) = rewrite_dirs(dir);
    if !old.exists() {
        return Ok(());
    }
    let io = |err: std::io::Error| StoreError::Seal(format!("rewriting {}: {err}", dir.display()));
    if dir.exists() {
        std::fs::remove_dir_all(&old).map_err(io)
    } else {
        std::fs::rename(&old, dir).map_err(io)
    }
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

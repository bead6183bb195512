//! The schema version and the migrations that lead to it.

use std::path::{Path, PathBuf};

use super::{Store, StoreError};

/// The schema this build writes.
pub const SCHEMA_VERSION: u32 = 8;

const KEY: &[u8] = b"schema-version";

/// Set while the database is to be written afresh (older values, plain
/// secrets, are still in its log); written with the migration that needs
/// it, so a crash before the rewrite ends leaves it to the next open.
const REWRITE: &[u8] = b"rewrite-pending";

/// Added to every id the database generates, so ids go on from where they
/// were before a rewrite (sled's id counter is not part of an export).
pub(super) const ID_FLOOR: &[u8] = b"id-floor";

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
            4 => {
                // Marked first: a crash while sealing still rewrites.
                store.meta.insert(REWRITE, &[])?;
                if !store.seal_registry_secrets()? {
                    store.meta.remove(REWRITE)?;
                }
            }
            5 => store.name_releases()?,
            6 => store.index_releases()?,
            7 => store.give_releases_jobs()?,
            // 8 adds targets and services, in trees of their own.
            _ => {}
        }
        store.meta.insert(KEY, &version.to_be_bytes())?;
        store.db.flush()?;
        tracing::info!(version, "database schema migrated");
    }
    Ok(())
}

/// Whether the database is to be written afresh before use.
pub(super) fn rewrite_pending(store: &Store) -> Result<bool, StoreError> {
    Ok(store.meta.contains_key(REWRITE)?)
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
        let floor = id_floor(&from.open_tree("meta")?)?;
        // Past every id the old database gave out.
        let next_floor = floor + from.generate_id()? + 1;
        let to = sled::Config::new().path(&fresh).open()?;
        to.import(from.export());
        let meta = to.open_tree("meta")?;
        meta.insert(ID_FLOOR, &next_floor.to_be_bytes())?;
        meta.remove(REWRITE)?;
        to.flush()?;
    }
    let key = dir.join(super::seal::KEY_FILE);
    if key.exists() {
        let copy = fresh.join(super::seal::KEY_FILE);
        std::fs::copy(&key, &copy).map_err(io)?;
        std::fs::File::open(&copy)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
    }
    std::fs::rename(dir, &old).map_err(io)?;
    std::fs::rename(&fresh, dir).map_err(io)?;
    // The renames on disk before the old copy, the key's only other one, goes.
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
    }
    std::fs::remove_dir_all(&old).map_err(io)?;
    tracing::info!("database written afresh");
    Ok(())
}

/// Ends a rewrite a crash cut off: the old database back when the new one
/// never took its place, the old one removed when it did.
pub(super) fn finish_rewrite(dir: &Path) -> Result<(), StoreError> {
    let (fresh, old) = rewrite_dirs(dir);
    let io = |err: std::io::Error| StoreError::Seal(format!("rewriting {}: {err}", dir.display()));
    if fresh.exists() && (dir.exists() || !old.exists()) {
        // A copy never put in place (the marker makes the rewrite again).
        std::fs::remove_dir_all(&fresh).map_err(io)?;
    }
    if !old.exists() {
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(&old).map_err(io)
    } else {
        std::fs::rename(&old, dir).map_err(io)
    }
}

/// The floor added to generated ids, from the `meta` tree.
pub(super) fn id_floor(meta: &sled::Tree) -> Result<u64, StoreError> {
    Ok(meta
        .get(ID_FLOOR)?
        .and_then(|b| b.as_ref().try_into().ok().map(u64::from_be_bytes))
        .unwrap_or(0))
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

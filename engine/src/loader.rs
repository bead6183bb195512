//! Loading a flow's plugins from a directory, each checked against the
//! digest the flow document pins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::time::Instant;

use sha2::{Digest, Sha256};
use slipway_runtime::{CodeSource, Plugin, Runtime};

use slipway_flow::{FlowDocument, PluginRef};

/// A plugin the flow needs could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Its component is not in the directory.
    #[error("plugin {name}@{version}: cannot read {path}: {source}")]
    Missing {
        /// Plugin name.
        name: String,
        /// Its version.
        version: String,
        /// Where it was looked for.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Its bytes are not the ones the flow pinned.
    #[error("plugin {name}@{version}: sha256 is {found}, the flow pins {expected}")]
    Digest {
        /// Plugin name.
        name: String,
        /// Its version.
        version: String,
        /// What the flow document says.
        expected: String,
        /// What the file holds.
        found: String,
    },
    /// The runtime refused it.
    #[error("plugin {name}@{version}: {source}")]
    Load {
        /// Plugin name.
        name: String,
        /// Its version.
        version: String,
        /// Why.
        source: slipway_runtime::LoadError,
    },
}

/// Where a plugin's component lies in a bundle: `<dir>/<name>@<version>.wasm`.
pub fn component_path(dir: &Path, plugin: &PluginRef) -> PathBuf {
    dir.join(format!("{}@{}.wasm", plugin.name, plugin.version))
}

/// Loads every plugin `flow` names from `dir`, refusing any whose sha256
/// differs from the flow's before running any of its code. Each is logged
/// with where its code came from: the runtime's code directory when it holds
/// code for this engine, otherwise compiled now.
pub async fn load_plugins(
    runtime: &Runtime,
    flow: &FlowDocument,
    dir: &Path,
) -> Result<BTreeMap<PluginRef, Arc<Plugin>>, LoadError> {
    let mut loaded = BTreeMap::new();
    for wanted in &flow.plugins {
        let path = component_path(dir, wanted);
        let bytes = std::fs::read(&path).map_err(|source| LoadError::Missing {
            name: wanted.name.clone(),
            version: wanted.version.clone(),
            path: path.clone(),
            source,
        })?;
        let found = hex::encode(Sha256::digest(&bytes));
        if found != wanted.sha256 {
            return Err(LoadError::Digest {
                name: wanted.name.clone(),
                version: wanted.version.clone(),
                expected: wanted.sha256.clone(),
                found,
            });
        }
        let started = Instant::now();
        let plugin = runtime
            .load(&bytes)
            .await
            .map_err(|source| LoadError::Load {
                name: wanted.name.clone(),
                version: wanted.version.clone(),
                source,
            })?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        match plugin.code_source() {
            CodeSource::Cached => {
                tracing::info!(plugin = plugin.id(), ms, "loaded precompiled code");
            }
            CodeSource::Compiled => tracing::warn!(
                plugin = plugin.id(),
                ms,
                engine_hash = runtime.engine_hash(),
                "no precompiled code for this engine: compiled the component"
            ),
        }
        loaded.insert(wanted.clone(), plugin);
    }
    Ok(loaded)
}

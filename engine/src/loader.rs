//! Loading a flow's plugins from a directory, each checked against the
//! digest the flow document pins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use slipway_runtime::{Plugin, Runtime};

use crate::flow::{FlowDocument, PluginRef};

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
/// differs from the flow's.
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
        let plugin = runtime
            .load(&bytes)
            .await
            .map_err(|source| LoadError::Load {
                name: wanted.name.clone(),
                version: wanted.version.clone(),
                source,
            })?;
        if plugin.sha256() != wanted.sha256 {
            return Err(LoadError::Digest {
                name: wanted.name.clone(),
                version: wanted.version.clone(),
                expected: wanted.sha256.clone(),
                found: plugin.sha256().to_string(),
            });
        }
        loaded.insert(wanted.clone(), plugin);
    }
    Ok(loaded)
}

//! Plugins as an organisation sees them: the built-in ones, shared by all,
//! and the ones it uploaded, which no other organisation sees.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use semver::{Version, VersionReq};
use slipway_runtime::{
    Catalog, HostPattern, Kind, LoadError, Plugin, RemoveError, ResolveError, Runtime,
};

use slipway_flow::package::NodeTypes;
use slipway_store::{Store, StoreError, StoredPlugin};

/// Why an uploaded plugin version was not deleted.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// The organisation uploaded no such version.
    #[error("no {kind} plugin `{name}@{version}`")]
    NotFound {
        /// Its kind.
        kind: Kind,
        /// Its name.
        name: String,
        /// Its version.
        version: Version,
    },
    /// It is a built-in plugin.
    #[error("built-in plugins cannot be deleted")]
    BuiltIn,
    /// A release pins it.
    #[error("{0}")]
    Pinned(RemoveError),
    /// The database failed; nothing changed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The runtime, its built-in catalog, and one catalog of uploads per organisation.
pub struct Plugins {
    runtime: Runtime,
    uploaded: RwLock<BTreeMap<u64, Arc<Catalog>>>,
    /// The built-in components by sha256, for building images.
    builtin_components: RwLock<BTreeMap<String, &'static [u8]>>,
}

impl Plugins {
    /// Over a runtime whose own catalog holds the built-ins.
    pub fn new(runtime: Runtime) -> Plugins {
        Plugins {
            runtime,
            uploaded: RwLock::default(),
            builtin_components: RwLock::default(),
        }
    }

    /// Installs a built-in plugin.
    pub async fn install_builtin(&self, wasm: &'static [u8]) -> Result<(), LoadError> {
        let installed = self.runtime.install(wasm).await?;
        self.builtin_components
            .write()
            .expect("plugins lock")
            .insert(installed.plugin.sha256().to_string(), wasm);
        Ok(())
    }

    /// A component's bytes by sha256: a built-in, or an upload in `store`.
    pub fn component(&self, store: &Store, sha256: &str) -> Option<Arc<[u8]>> {
        if let Some(wasm) = self
            .builtin_components
            .read()
            .expect("plugins lock")
            .get(sha256)
        {
            return Some(Arc::from(*wasm));
        }
        store.component(sha256).ok().flatten().map(Arc::from)
    }

    /// Deletes an uploaded version from memory and the store together (a
    /// failed store write puts it back). With its name's last version gone,
    /// the hosts granted to the name go too, so a new upload starts with none.
    pub fn delete_upload(
        &self,
        store: &Store,
        organisation: u64,
        kind: Kind,
        name: &str,
        version: &Version,
    ) -> Result<(), DeleteError> {
        let not_found = || DeleteError::NotFound {
            kind,
            name: name.to_string(),
            version: version.clone(),
        };
        let own = self.uploaded(organisation);
        if own.get(kind, name, version).is_none() {
            if self.builtins().get(kind, name, version).is_some() {
                return Err(DeleteError::BuiltIn);
            }
            return Err(not_found());
        }
        let plugin = match own.remove(kind, name, version) {
            Ok(plugin) => plugin,
            Err(err @ RemoveError::Pinned { .. }) => return Err(DeleteError::Pinned(err)),
            Err(RemoveError::Unknown { .. }) => return Err(not_found()),
        };
        let stored = StoredPlugin {
            organisation,
            kind: kind.as_str().to_string(),
            name: name.to_string(),
            version: version.to_string(),
            sha256: plugin.sha256().to_string(),
        };
        if let Err(err) = store.remove_plugin(&stored) {
            own.insert(plugin);
            return Err(err.into());
        }
        let left = own
            .list()
            .iter()
            .any(|p| p.manifest().kind == kind && p.manifest().name == name);
        if !left {
            store.set_plugin_hosts(organisation, kind.as_str(), name, &[])?;
        }
        Ok(())
    }

    /// The runtime that loads and runs them.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The built-in plugins.
    pub fn builtins(&self) -> &Catalog {
        self.runtime.catalog()
    }

    /// Loads a component `organisation` uploaded, with the hosts its
    /// org-admin granted that plugin; registers nothing.
    pub async fn load_upload(
        &self,
        store: &Store,
        organisation: u64,
        wasm: &[u8],
    ) -> Result<Arc<Plugin>, LoadError> {
        let plugin = self.runtime.load_upload(wasm, organisation).await?;
        let m = plugin.manifest();
        let granted = store
            .plugin_hosts(organisation, m.kind.as_str(), &m.name)
            .unwrap_or_else(|err| {
                tracing::error!(error = %err, plugin = %plugin.id(), "cannot read the hosts granted to a plugin; none are");
                Vec::new()
            });
        plugin.grant_hosts(host_patterns(&granted));
        Ok(plugin)
    }

    /// Loads every upload in `store`. One that no longer loads is logged and
    /// skipped, so one organisation's plugin cannot keep the server down.
    pub async fn load_uploads(&self, store: &Store) -> Result<(), StoreError> {
        for stored in store.stored_plugins()? {
            let Some(component) = store.component(&stored.sha256)? else {
                tracing::error!(plugin = %stored.name, sha256 = %stored.sha256, "uploaded plugin has no component");
                continue;
            };
            if Kind::named(&stored.kind)
                .is_some_and(|kind| self.is_builtin_name(kind, &stored.name))
            {
                // Stored before uploads could not take a built-in's name.
                tracing::error!(plugin = %stored.name, version = %stored.version, organisation = stored.organisation, "uploaded plugin takes a built-in's name; not loaded");
                continue;
            }
            match self
                .load_upload(store, stored.organisation, &component)
                .await
            {
                Ok(plugin) => {
                    self.uploaded(stored.organisation).insert(plugin);
                }
                Err(err) => tracing::error!(error = %err, "uploaded plugin does not load"),
            }
        }
        Ok(())
    }

    /// Grants every loaded version of `organisation`'s upload `name` these
    /// hosts (its calls that start from now on).
    pub fn grant_hosts(&self, organisation: u64, kind: Kind, name: &str, hosts: &[HostPattern]) {
        for plugin in self.uploaded(organisation).list() {
            if plugin.manifest().kind == kind && plugin.manifest().name == name {
                plugin.grant_hosts(hosts.to_vec());
            }
        }
    }

    /// Whether a built-in plugin of this kind has this name.
    pub fn is_builtin_name(&self, kind: Kind, name: &str) -> bool {
        self.builtins()
            .list()
            .iter()
            .any(|p| p.manifest().kind == kind && p.manifest().name == name)
    }

    /// An organisation's uploads (an empty catalog at first).
    pub fn uploaded(&self, organisation: u64) -> Arc<Catalog> {
        if let Some(catalog) = self
            .uploaded
            .read()
            .expect("plugins lock")
            .get(&organisation)
        {
            return catalog.clone();
        }
        let mut all = self.uploaded.write().expect("plugins lock");
        all.entry(organisation).or_default().clone()
    }

    /// What `organisation` can use.
    pub fn of(&self, organisation: u64) -> OrganisationPlugins<'_> {
        OrganisationPlugins {
            organisation,
            builtins: self.builtins(),
            own: self.uploaded(organisation),
        }
    }
}

/// Stored host grants as patterns; a stored one that no longer parses grants nothing.
fn host_patterns(hosts: &[String]) -> Vec<HostPattern> {
    hosts
        .iter()
        .filter_map(|h| HostPattern::try_from(h.clone()).ok())
        .collect()
}

/// The built-ins and one organisation's uploads, resolved together.
pub struct OrganisationPlugins<'a> {
    organisation: u64,
    builtins: &'a Catalog,
    own: Arc<Catalog>,
}

impl OrganisationPlugins<'_> {
    /// The highest version matching `requirement` among the organisation's
    /// uploads and the built-ins; an upload wins over a built-in of the same version.
    pub fn resolve(
        &self,
        kind: Kind,
        name: &str,
        requirement: &VersionReq,
    ) -> Result<Arc<Plugin>, ResolveError> {
        let own = self.own.resolve(kind, name, requirement);
        let builtin = self.builtins.resolve(kind, name, requirement);
        match (own, builtin) {
            (Ok(own), Ok(builtin)) if builtin.manifest().version > own.manifest().version => {
                Ok(builtin)
            }
            (Ok(own), _) => Ok(own),
            (Err(_), Ok(builtin)) => Ok(builtin),
            (Err(own), Err(builtin)) => Err(match (&own, &builtin) {
                // Name the versions loaded wherever the name is known.
                (ResolveError::Unknown { .. }, _) => builtin,
                _ => own,
            }),
        }
    }

    /// The organisation's own catalog.
    pub fn own(&self) -> &Catalog {
        &self.own
    }

    /// Whether `plugin` is one of the organisation's uploads.
    pub fn is_own(&self, plugin: &Arc<Plugin>) -> bool {
        self.own.list().iter().any(|own| Arc::ptr_eq(own, plugin))
    }
}

impl NodeTypes for OrganisationPlugins<'_> {
    fn resolve(&self, name: &str, requirement: &VersionReq) -> Result<Arc<Plugin>, ResolveError> {
        OrganisationPlugins::resolve(self, Kind::NodeType, name, requirement)
    }

    fn tenant(&self) -> Option<u64> {
        Some(self.organisation)
    }
}

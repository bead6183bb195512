//! Plugins as an organisation sees them: the built-in ones, shared by all,
//! and the ones it uploaded, which no other organisation sees.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use semver::VersionReq;
use slipway_runtime::{Catalog, Kind, Plugin, ResolveError, Runtime};

use crate::packaging::NodeTypes;

/// The runtime, its built-in catalog, and one catalog of uploads per organisation.
pub struct Plugins {
    runtime: Runtime,
    uploaded: RwLock<BTreeMap<u64, Arc<Catalog>>>,
}

impl Plugins {
    /// Over a runtime whose own catalog holds the built-ins.
    pub fn new(runtime: Runtime) -> Plugins {
        Plugins {
            runtime,
            uploaded: RwLock::default(),
        }
    }

    /// The runtime that loads and runs them.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The built-in plugins.
    pub fn builtins(&self) -> &Catalog {
        self.runtime.catalog()
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
            builtins: self.builtins(),
            own: self.uploaded(organisation),
        }
    }
}

/// The built-ins and one organisation's uploads, resolved together.
pub struct OrganisationPlugins<'a> {
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
}

impl NodeTypes for OrganisationPlugins<'_> {
    fn resolve(&self, name: &str, requirement: &VersionReq) -> Result<Arc<Plugin>, ResolveError> {
        OrganisationPlugins::resolve(self, Kind::NodeType, name, requirement)
    }
}

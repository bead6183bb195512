//! The canvases packaging reads subflows from: one organisation's, in the store.

use slipway_flow::package::{Canvases, Lookup};
use slipway_store::Store;

/// The canvases of one organisation.
pub struct OrganisationCanvases<'a> {
    store: &'a Store,
    organisation: u64,
}

impl<'a> OrganisationCanvases<'a> {
    /// Subflow lookups within `organisation`.
    pub fn new(store: &'a Store, organisation: u64) -> Self {
        OrganisationCanvases {
            store,
            organisation,
        }
    }
}

impl Canvases for OrganisationCanvases<'_> {
    fn lookup(&self, integration: &str, version: u32) -> Lookup {
        let Ok(found) = self.store.integration(self.organisation, integration) else {
            return Lookup::NoIntegration;
        };
        match self.store.canvas(&found, version) {
            Ok(Some(canvas)) => Lookup::Found(canvas),
            _ => Lookup::NoVersion {
                latest: (found.latest_version > 0).then_some(found.latest_version),
            },
        }
    }
}

//! The canvases packaging reads subflows from: one organisation's, in the store.

use slipway_flow::package::{Canvases, Lookup};
use slipway_store::{IntegrationError, Store};

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
        let found = match self.store.integration(self.organisation, integration) {
            Ok(found) => found,
            Err(IntegrationError::Store(e)) => return Lookup::Unreadable(e.to_string()),
            Err(_) => return Lookup::NoIntegration,
        };
        match self.store.canvas(&found, version) {
            Ok(Some(canvas)) => Lookup::Found(canvas),
            Ok(None) => Lookup::NoVersion {
                latest: (found.latest_version > 0).then_some(found.latest_version),
            },
            Err(e) => Lookup::Unreadable(e.to_string()),
        }
    }
}

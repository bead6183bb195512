//! What the host grants one call: settings, secrets, and which hosts it may reach.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::manifest::HostPattern;
use crate::plugin_cache::CacheScope;

/// Grants for calls into a plugin. The default grants nothing: settings `{}`,
/// no secrets, HTTP limited to the manifest's `allowed-hosts`.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The plugin's settings as JSON text.
    pub settings: Arc<str>,
    /// Secrets an operator granted, by name; the plugin sees only those its manifest asks for.
    pub secrets: Arc<BTreeMap<String, String>>,
    /// When set, HTTP must also match one of these (an operator's or a flow's narrowing
    /// of a manifest that allows `*`).
    pub allowed_hosts: Option<Arc<[HostPattern]>>,
    /// Where `cache-put` keeps values for later calls; without one the
    /// plugin's cache is always empty.
    pub cache: Option<CacheScope>,
    /// Whom the call is for (an organisation): a tenant's calls share its
    /// part of the runtime's slots and memory. `None` for the host's own.
    pub tenant: Option<u64>,
}

impl Default for CallContext {
    fn default() -> Self {
        CallContext {
            settings: Arc::from("{}"),
            secrets: Arc::default(),
            allowed_hosts: None,
            cache: None,
            tenant: None,
        }
    }
}

impl CallContext {
    /// A context with these settings.
    pub fn with_settings(settings: &serde_json::Value) -> Self {
        CallContext {
            settings: Arc::from(settings.to_string()),
            ..CallContext::default()
        }
    }
}

//! Typed calls into each plugin kind, one module per kind with the same shape:
//! the kind's public types, `describe` at load, and one method per export.
//! Every export runs through one path, [`run_export!`]: a fresh instance in
//! the call's session, under its CPU deadline and wall-clock cap.

/// Runs an export on a fresh instance of `$pre` in `$session`, under the
/// call's bounds; `$exports` is the generated accessor of the kind's
/// interface. Answers the export's result, for the session to conclude.
macro_rules! run_export {
    ($session:expr, $pre:expr, $exports:ident, |$guest:ident, $store:ident| $call:expr) => {{
        let bounds = $session.bounds();
        $crate::plugin::within(bounds, async {
            let instance = $pre.instantiate_async(&mut $session.store).await?;
            let $guest = instance.$exports();
            let $store = &mut $session.store;
            $call.await
        })
        .await
    }};
}

/// Runs export `$name` of `$plugin`, a plugin of the kind whose instance
/// pre is `$variant`, in a new session for `$context`. Answers the session
/// and the export's result; a plugin of another kind is refused.
macro_rules! call_export {
    ($plugin:expr, $context:expr, $name:literal, $variant:path, $exports:ident, |$guest:ident, $store:ident| $call:expr) => {{
        let pre = match &$plugin.pre {
            $variant(pre) => pre,
            _ => return Err($plugin.wrong_kind($name)),
        };
        let mut session = $plugin.session($context, $name).await;
        let result = run_export!(session, pre, $exports, |$guest, $store| $call);
        (session, result)
    }};
}

mod deploy_target;
mod node_type;
mod registry_adapter;

use serde::{Deserialize, Serialize};

pub use deploy_target::{
    Health, HealthCheck, HostMount, HttpProbe, MountKind, Observed, PortPair, Probe, Rendered,
    Resources, Rollout, Service, ServiceKind, ServiceType, Storage, TargetError, TargetInfo,
};
pub use node_type::{Message, NodeError, NodeInfo, Output, Port, Translation};
pub use registry_adapter::{Credentials, Image, PushCredentials, RegistryError, RegistryInfo};

pub(crate) use deploy_target::describe as describe_target;
pub(crate) use node_type::describe as describe_node;
pub(crate) use registry_adapter::describe as describe_registry;

use crate::bindings::types;

/// One problem in a checked document, located by a JSON pointer into it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// RFC 6901 JSON pointer; `""` is the whole document.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl From<types::Diagnostic> for Diagnostic {
    fn from(d: types::Diagnostic) -> Self {
        Diagnostic {
            path: d.path,
            message: d.message,
        }
    }
}

pub(crate) fn diagnostics(list: Vec<types::Diagnostic>) -> Vec<Diagnostic> {
    list.into_iter().map(Diagnostic::from).collect()
}

/// What a registry adapter or a deploy target says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterInfo {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// One sentence for people.
    pub description: String,
    /// JSON Schema of its settings.
    pub settings_schema: serde_json::Value,
}

impl AdapterInfo {
    /// From `describe`'s fields; the schema must be JSON.
    pub(crate) fn new(
        name: String,
        version: String,
        description: String,
        settings_schema: &str,
    ) -> Result<Self, String> {
        Ok(AdapterInfo {
            name,
            version,
            description,
            settings_schema: plugin_json(settings_schema, "the settings schema")?,
        })
    }
}

/// Parses JSON a plugin returned; `what` names it in the error.
pub(crate) fn plugin_json(text: &str, what: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|e| format!("{what} is not valid JSON: {e}"))
}

//! Changing an organisation's registry: which secrets are kept, what the
//! adapter must accept before the change is written, and who made it.

use std::collections::BTreeMap;

use super::{Registries, RegistrySettings};
pub use crate::refused::Refused;
use crate::refused::invalid;
use slipway_store::{StoredRegistry, now_ms};

impl Registries {
    /// Sets `organisation`'s registry to `settings`, as `by` asked, once the
    /// adapter loads, asks for every secret given and accepts the settings.
    /// `secrets: None` keeps the current secrets only where they would go:
    /// the same adapter and version requirement, to the same settings and
    /// hosts. A new URL, endpoint or host needs them given again, so an edit
    /// cannot send them somewhere new.
    pub async fn change(
        &self,
        organisation: u64,
        mut settings: RegistrySettings,
        secrets: Option<BTreeMap<String, String>>,
        by: &str,
    ) -> Result<StoredRegistry, Refused> {
        let failed = |err: &dyn std::fmt::Display| Refused::Failed(err.to_string());
        match secrets {
            Some(secrets) => settings.secrets = secrets,
            None => {
                if let Some(current) = self.store.registry(organisation).map_err(|e| failed(&e))? {
                    // Everything but the secrets as it is now.
                    let mut kept = settings.to_stored();
                    kept.secrets = current.settings.secrets.clone();
                    if kept == current.settings {
                        settings.secrets = current.settings.secrets;
                    }
                }
            }
        }
        let registry = self
            .resolve(organisation, settings.clone())
            .map_err(|e| invalid("/adapter", e))?;
        let asked = registry.secrets_asked();
        if let Some(name) = settings.secrets.keys().find(|name| !asked.contains(name)) {
            let asks = if asked.is_empty() {
                "none".to_string()
            } else {
                asked.join(", ")
            };
            return Err(invalid(
                format!("/secrets/{}", slipway_flow::pointer::escape(name)),
                format!(
                    "{} does not ask for a secret named `{name}`; it asks for: {asks}",
                    registry.adapter()
                ),
            ));
        }
        let problems = registry.check().await.map_err(|e| failed(&e))?;
        if let Some(problem) = problems.first() {
            // A secret's problem points at the secret; the rest into the settings.
            let path = if problem.path.starts_with("/secrets/") {
                problem.path.clone()
            } else {
                format!("/settings{}", problem.path)
            };
            return Err(invalid(path, problem.message.clone()));
        }
        let stored = StoredRegistry {
            settings: settings.to_stored(),
            resolved: Some(registry.adapter()),
            code: Some(registry.code()),
            changed_by: by.to_string(),
            changed_ms: now_ms(),
        };
        self.store
            .put_registry(organisation, &stored)
            .map_err(|e| failed(&e))?;
        tracing::info!(organisation, adapter = %registry.adapter(), by, "registry changed");
        Ok(stored)
    }
}

//! A registry adapter with simple rules: repositories under a fixed prefix,
//! lowercase names only, basic credentials from the `password` secret.

use serde::Deserialize;
use slipway_sdk::registry::{Credentials, Error, Image, PushCredentials, RegistryAdapter};
use slipway_sdk::serde_json::{Value, json};
use slipway_sdk::{Diagnostic, host};

/// The adapter.
pub struct Fixed;

/// Settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Registry host.
    pub registry: String,
    /// Repository prefix.
    pub prefix: String,
    /// User name.
    pub username: String,
}

impl RegistryAdapter for Fixed {
    type Settings = Settings;

    fn settings_schema() -> Value {
        json!({"type": "object", "required": ["registry", "prefix", "username"]})
    }

    fn validate_settings(settings: &Settings) -> Vec<Diagnostic> {
        if settings.registry.is_empty() {
            vec![Diagnostic::at("/registry", "must not be empty")]
        } else {
            Vec::new()
        }
    }

    fn resolve(settings: &Settings, repository: &str, tag: &str) -> Result<Image, Error> {
        if repository.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(Error::InvalidName(format!(
                "`{repository}` has uppercase letters"
            )));
        }
        Ok(Image {
            registry: settings.registry.clone(),
            repository: format!("{}/{repository}", settings.prefix),
            tag: tag.into(),
        })
    }

    fn authenticate(
        settings: &Settings,
        _: &Image,
        _: &[String],
    ) -> Result<PushCredentials, Error> {
        let password = host::secret("password")
            .ok_or_else(|| Error::Unauthorized("no `password` secret was granted".into()))?;
        Ok(PushCredentials {
            credentials: Credentials::Basic((settings.username.clone(), password)),
            expires_at_ms: Some(host::now_ms() + 3_600_000),
        })
    }
}

slipway_sdk::export_registry_adapter!(
    Fixed,
    name: "registry-fixed",
    manifest: r#"secrets = ["password"]"#
);

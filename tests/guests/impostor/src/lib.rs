//! A registry adapter named `distribution`, at a version above the
//! built-in's: were it accepted, releases would resolve to it and hand it
//! the organisation's registry password, which it sends on as it likes.

use slipway_sdk::registry::{Credentials, Error, Image, PushCredentials, RegistryAdapter};
use slipway_sdk::serde_json::{Value, json};
use slipway_sdk::{Diagnostic, host};

/// The adapter.
pub struct Impostor;

impl RegistryAdapter for Impostor {
    type Settings = Value;

    fn settings_schema() -> Value {
        json!({"type": "object"})
    }

    fn validate_settings(_: &Value) -> Vec<Diagnostic> {
        Vec::new()
    }

    fn resolve(settings: &Value, repository: &str, tag: &str) -> Result<Image, Error> {
        Ok(Image {
            registry: settings["url"].as_str().unwrap_or_default().into(),
            repository: repository.into(),
            tag: tag.into(),
        })
    }

    fn authenticate(_: &Value, _: &Image, _: &[String]) -> Result<PushCredentials, Error> {
        let password = host::secret("password").unwrap_or_default();
        Ok(PushCredentials {
            credentials: Credentials::Basic(("stolen".into(), password)),
            expires_at_ms: None,
        })
    }
}

slipway_sdk::export_registry_adapter!(
    Impostor,
    name: "distribution",
    manifest: r#"allowed-hosts = ["*"]
secrets = ["password"]"#
);

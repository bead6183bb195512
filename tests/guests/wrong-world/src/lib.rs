//! Declares kind `node-type` in its manifest but exports the registry-adapter world.

use slipway_sdk::registry::{Credentials, Error, Image, PushCredentials, RegistryAdapter};
use slipway_sdk::serde_json::{Value, json};

/// The adapter.
pub struct Impostor;

impl RegistryAdapter for Impostor {
    type Settings = Value;

    fn settings_schema() -> Value {
        json!({})
    }

    fn resolve(_: &Value, repository: &str, tag: &str) -> Result<Image, Error> {
        Ok(Image {
            registry: "example.com".into(),
            repository: repository.into(),
            tag: tag.into(),
        })
    }

    fn authenticate(_: &Value, _: &Image, _: &[String]) -> Result<PushCredentials, Error> {
        Ok(PushCredentials {
            credentials: Credentials::Anonymous,
            expires_at_ms: None,
        })
    }
}

slipway_sdk::__manifest!(Impostor, "node-type", [env!("CARGO_PKG_NAME")], "");
slipway_sdk::__export_registry!(Impostor);

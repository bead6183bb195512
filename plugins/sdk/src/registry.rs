//! Registry adapters: implement [`RegistryAdapter`], export with
//! [`crate::export_registry_adapter!`].

use std::marker::PhantomData;

use serde::de::DeserializeOwned;

use crate::bindings::registry::exports::slipway::plugin::registry as wit;
use crate::{Diagnostic, Named, config, host};

pub use wit::{Credentials, Error, Image, PushCredentials};

/// A registry's naming and authentication rules.
pub trait RegistryAdapter: Named {
    /// The adapter's settings, as an operator configures them.
    type Settings: DeserializeOwned;

    /// JSON Schema of the settings.
    fn settings_schema() -> serde_json::Value;

    /// Checks settings that parsed.
    fn validate_settings(_settings: &Self::Settings) -> Vec<Diagnostic> {
        Vec::new()
    }

    /// Where the image for `repository:tag` lives.
    fn resolve(settings: &Self::Settings, repository: &str, tag: &str) -> Result<Image, Error>;

    /// Credentials to push `image`, also allowing pulls from the `mount_from`
    /// repositories of the same registry (for cross-repository mounts).
    fn authenticate(
        settings: &Self::Settings,
        image: &Image,
        mount_from: &[String],
    ) -> Result<PushCredentials, Error>;

    /// Runs before the first blob is pushed.
    fn before_push(_settings: &Self::Settings, _image: &Image) -> Result<(), Error> {
        Ok(())
    }

    /// Runs after the manifest was pushed.
    fn after_push(_settings: &Self::Settings, _image: &Image, _digest: &str) -> Result<(), Error> {
        Ok(())
    }
}

/// Bridges a [`RegistryAdapter`] to the generated world.
pub struct Adapter<T>(PhantomData<T>);

impl<T: RegistryAdapter> Adapter<T> {
    fn settings() -> Result<T::Settings, Error> {
        config::settings(T::validate_settings).map_err(Error::InvalidSettings)
    }
}

impl<T: RegistryAdapter> wit::Guest for Adapter<T> {
    fn describe() -> wit::Info {
        host::install_panic_hook();
        wit::Info {
            name: T::NAME.into(),
            version: T::VERSION.into(),
            description: T::DESCRIPTION.into(),
            settings_schema: T::settings_schema().to_string(),
        }
    }

    fn validate_settings(settings: String) -> Vec<Diagnostic> {
        host::install_panic_hook();
        config::check(&settings, T::validate_settings)
    }

    fn resolve(repository: String, tag: String) -> Result<Image, Error> {
        host::install_panic_hook();
        T::resolve(&Self::settings()?, &repository, &tag)
    }

    fn authenticate(image: Image, mount_from: Vec<String>) -> Result<PushCredentials, Error> {
        host::install_panic_hook();
        T::authenticate(&Self::settings()?, &image, &mount_from)
    }

    fn before_push(image: Image) -> Result<(), Error> {
        host::install_panic_hook();
        T::before_push(&Self::settings()?, &image)
    }

    fn after_push(image: Image, digest: String) -> Result<(), Error> {
        host::install_panic_hook();
        T::after_push(&Self::settings()?, &image, &digest)
    }
}

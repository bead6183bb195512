//! Deploy targets: implement [`DeployTarget`], export with [`crate::export_deploy_target!`].

use std::marker::PhantomData;

use serde::de::DeserializeOwned;

use crate::bindings::target::exports::slipway::plugin::target as wit;
use crate::{Diagnostic, Named, config, host};

pub use wit::{
    Error, Health, HealthCheck, HostMount, HttpProbe, MountKind, Object, Observed, PortPair, Probe,
    Resources, Rollout, Service, ServiceKind, ServiceType, Storage,
};

/// Renders services into a target's objects and judges their health.
pub trait DeployTarget: Named {
    /// The target's settings, as an operator configures them.
    type Settings: DeserializeOwned;

    /// JSON Schema of the settings.
    fn settings_schema() -> serde_json::Value;

    /// Checks settings that parsed.
    fn validate_settings(_settings: &Self::Settings) -> Vec<Diagnostic> {
        Vec::new()
    }

    /// The objects that run `service` on this target.
    fn render(settings: &Self::Settings, service: &Service) -> Result<Vec<Object>, Error>;

    /// The service's health from what the host observed of its objects.
    fn assess(settings: &Self::Settings, service: &Service, observed: &[Observed]) -> Health;
}

/// Bridges a [`DeployTarget`] to the generated world.
pub struct Adapter<T>(PhantomData<T>);

impl<T: DeployTarget> Adapter<T> {
    fn settings() -> Result<T::Settings, Error> {
        config::settings(T::validate_settings).map_err(Error::InvalidSettings)
    }
}

impl<T: DeployTarget> wit::Guest for Adapter<T> {
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

    fn render(service: Service) -> Result<Vec<Object>, Error> {
        host::install_panic_hook();
        T::render(&Self::settings()?, &service)
    }

    fn assess(service: Service, observed: Vec<Observed>) -> Health {
        host::install_panic_hook();
        match Self::settings() {
            Ok(settings) => T::assess(&settings, &service, &observed),
            Err(_) => Health::Failed("the target's settings are invalid".into()),
        }
    }
}

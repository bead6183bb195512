//! Calls into `registry-adapter` plugins.

use serde::{Deserialize, Serialize};

use super::{Diagnostic, diagnostics};
use crate::bindings::registry::RegistryAdapterPre;
use crate::bindings::registry::exports::slipway::plugin::registry as wit;
use crate::context::CallContext;
use crate::error::CallError;
use crate::plugin::{Description, Plugin, Pre, Session};
use crate::state::CallState;

/// What a registry adapter says about itself.
pub type RegistryInfo = super::AdapterInfo;

/// Where an image lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// Registry host (and port).
    pub registry: String,
    /// Repository path.
    pub repository: String,
    /// Tag.
    pub tag: String,
}

impl Image {
    /// `registry/repository:tag`.
    pub fn reference(&self) -> String {
        format!("{}/{}:{}", self.registry, self.repository, self.tag)
    }
}

/// How to authenticate a push. `Debug` never shows a secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No credentials.
    Anonymous,
    /// User name and password.
    Basic {
        /// User name.
        username: String,
        /// Password or token.
        password: String,
    },
    /// A registry token.
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credentials::Bearer(_) => f.write_str("Bearer(***)"),
        }
    }
}

/// Credentials and when they expire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushCredentials {
    /// The credentials.
    pub credentials: Credentials,
    /// Expiry in ms since the Unix epoch, if known.
    pub expires_at_ms: Option<u64>,
}

/// A failure the adapter reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Settings are invalid.
    #[error("invalid settings: {}", .0.iter().map(|d| format!("{}: {}", d.path, d.message)).collect::<Vec<_>>().join("; "))]
    InvalidSettings(Vec<Diagnostic>),
    /// The name breaks the registry's rules.
    #[error("invalid name: {0}")]
    InvalidName(String),
    /// Credentials refused.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The registry cannot be reached.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl From<wit::Error> for RegistryError {
    fn from(e: wit::Error) -> Self {
        match e {
            wit::Error::InvalidSettings(d) => RegistryError::InvalidSettings(diagnostics(d)),
            wit::Error::InvalidName(m) => RegistryError::InvalidName(m),
            wit::Error::Unauthorized(m) => RegistryError::Unauthorized(m),
            wit::Error::Unavailable(m) => RegistryError::Unavailable(m),
            wit::Error::Other(m) => RegistryError::Other(m),
        }
    }
}

impl From<wit::Image> for Image {
    fn from(i: wit::Image) -> Self {
        Image {
            registry: i.registry,
            repository: i.repository,
            tag: i.tag,
        }
    }
}

impl From<&Image> for wit::Image {
    fn from(i: &Image) -> Self {
        wit::Image {
            registry: i.registry.clone(),
            repository: i.repository.clone(),
            tag: i.tag.clone(),
        }
    }
}

pub(crate) async fn describe(
    mut session: Session,
    pre: &RegistryAdapterPre<CallState>,
) -> Result<Description, CallError> {
    let result = run_export!(session, pre, slipway_plugin_registry, |g, s| g
        .call_describe(s));
    session.conclude(result, |raw| {
        super::AdapterInfo::new(raw.name, raw.version, raw.description, &raw.settings_schema)
            .map(Description::Registry)
    })
}

/// Runs one export of a registry adapter on a fresh instance.
macro_rules! registry_call {
    ($plugin:expr, $context:expr, $name:literal, |$g:ident, $s:ident| $call:expr) => {{
        let (session, result) = call_export!(
            $plugin,
            $context,
            $name,
            Pre::Registry,
            slipway_plugin_registry,
            |$g, $s| $call
        );
        session.finish(result)
    }};
}

impl Plugin {
    /// Checks settings before an operator saves them.
    pub async fn validate_settings(
        &self,
        context: &CallContext,
        settings: &serde_json::Value,
    ) -> Result<Vec<Diagnostic>, CallError> {
        let settings = settings.to_string();
        match &self.pre {
            Pre::Registry(_) => registry_call!(self, context, "validate-settings", |g, s| g
                .call_validate_settings(s, &settings))
            .map(diagnostics),
            Pre::Target(_) => self.target_validate_settings(context, &settings).await,
            Pre::Node(_) => Err(self.wrong_kind("validate-settings")),
        }
    }

    /// Where `repository:tag` lives under the adapter's rules.
    pub async fn resolve_image(
        &self,
        context: &CallContext,
        repository: &str,
        tag: &str,
    ) -> Result<Result<Image, RegistryError>, CallError> {
        registry_call!(self, context, "resolve", |g, s| g
            .call_resolve(s, repository, tag))
        .map(|r| r.map(Image::from).map_err(RegistryError::from))
    }

    /// Credentials to push `image`, also allowing pulls from the `mount_from`
    /// repositories of the same registry.
    pub async fn authenticate(
        &self,
        context: &CallContext,
        image: &Image,
        mount_from: &[String],
    ) -> Result<Result<PushCredentials, RegistryError>, CallError> {
        let image = wit::Image::from(image);
        registry_call!(self, context, "authenticate", |g, s| g
            .call_authenticate(s, &image, mount_from))
        .map(|r| {
            r.map(|c| PushCredentials {
                credentials: match c.credentials {
                    wit::Credentials::Anonymous => Credentials::Anonymous,
                    wit::Credentials::Basic((username, password)) => {
                        Credentials::Basic { username, password }
                    }
                    wit::Credentials::Bearer(token) => Credentials::Bearer(token),
                },
                expires_at_ms: c.expires_at_ms,
            })
            .map_err(RegistryError::from)
        })
    }

    /// The hook before the first blob is pushed.
    pub async fn before_push(
        &self,
        context: &CallContext,
        image: &Image,
    ) -> Result<Result<(), RegistryError>, CallError> {
        let image = wit::Image::from(image);
        registry_call!(self, context, "before-push", |g, s| g
            .call_before_push(s, &image))
        .map(|r| r.map_err(RegistryError::from))
    }

    /// The hook after the manifest was pushed.
    pub async fn after_push(
        &self,
        context: &CallContext,
        image: &Image,
        digest: &str,
    ) -> Result<Result<(), RegistryError>, CallError> {
        let image = wit::Image::from(image);
        registry_call!(self, context, "after-push", |g, s| g
            .call_after_push(s, &image, digest))
        .map(|r| r.map_err(RegistryError::from))
    }
}

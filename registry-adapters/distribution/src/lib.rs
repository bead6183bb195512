//! `distribution`: any registry that speaks the OCI distribution API (the
//! CNCF registry, Zot, Quay, GitLab, ...).
//!
//! Repositories are `<namespace>/<name>` under the spec's naming rules.
//! Authentication follows the registry's challenge: none, basic with the
//! configured user and the `password` secret, or a token from the registry's
//! token service. The manifest allows any host; the server grants each call
//! only the configured registry (and the hosts an operator adds, e.g. a token
//! service elsewhere).

use serde::Deserialize;
use slipway_sdk::distribution::{self, Login};
use slipway_sdk::registry::{Error, Image, PushCredentials, RegistryAdapter};
use slipway_sdk::serde_json::{Value, json};
use slipway_sdk::{Diagnostic, host};

/// The adapter.
pub struct Distribution;

/// Settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `https://host[:port]` (or `http://` for a registry without TLS).
    pub url: String,
    /// Prefix of every repository, e.g. `flows`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// User name; the password is the `password` secret.
    #[serde(default)]
    pub username: Option<String>,
}

impl Settings {
    fn base(&self) -> String {
        distribution::split_url(&self.url)
            .map(|(base, _)| base)
            .unwrap_or_default()
    }

    fn login(&self) -> Result<Option<Login>, Error> {
        let Some(username) = &self.username else {
            return Ok(None);
        };
        let password = host::secret("password").ok_or_else(|| {
            Error::Unauthorized(format!(
                "user `{username}` is configured but the `password` secret is not granted"
            ))
        })?;
        Ok(Some(Login {
            username: username.clone(),
            password,
        }))
    }
}

impl RegistryAdapter for Distribution {
    type Settings = Settings;

    fn settings_schema() -> Value {
        json!({
            "type": "object",
            "required": ["url"],
            "additionalProperties": false,
            "properties": {
                "url": {"type": "string", "description": "https://host[:port], or http:// for a registry without TLS"},
                "namespace": {"type": "string", "description": "Prefix of every repository"},
                "username": {"type": "string", "description": "User name; the password is the `password` secret"}
            }
        })
    }

    fn validate_settings(settings: &Settings) -> Vec<Diagnostic> {
        let mut problems = Vec::new();
        if let Err(problem) = distribution::url_setting(&settings.url, "/url") {
            problems.push(problem);
        }
        if let Some(namespace) = &settings.namespace
            && let Err(Error::InvalidName(message)) = distribution::check_repository(namespace)
        {
            problems.push(Diagnostic::at("/namespace", message));
        }
        if settings.username.as_deref() == Some("") {
            problems.push(Diagnostic::at("/username", "must not be empty"));
        }
        problems
    }

    fn resolve(settings: &Settings, repository: &str, tag: &str) -> Result<Image, Error> {
        let repository = match &settings.namespace {
            Some(namespace) => format!("{namespace}/{repository}"),
            None => repository.to_string(),
        };
        distribution::image(&settings.url, repository, tag)
    }

    fn authenticate(
        settings: &Settings,
        image: &Image,
        mount_from: &[String],
    ) -> Result<PushCredentials, Error> {
        distribution::push_credentials(
            &settings.base(),
            settings.login()?.as_ref(),
            &image.repository,
            mount_from,
        )
    }
}

slipway_sdk::export_registry_adapter!(
    Distribution,
    manifest: r#"allowed-hosts = ["*"]
secrets = ["password"]"#
);

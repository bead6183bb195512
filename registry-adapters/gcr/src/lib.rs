//! `gcr`: Google Artifact Registry (`LOCATION-docker.pkg.dev/PROJECT/REPO/IMAGE`)
//! and Container Registry (`[REGION.]gcr.io/PROJECT/IMAGE`).
//!
//! Credentials are a service-account key (the `service-account-key` secret,
//! the JSON file Google issues) or a ready access token (the `access-token`
//! secret). A key signs a JWT (RS256) that Google's OAuth token endpoint
//! exchanges for an access token; the token is kept between releases and
//! renewed before it expires. The registry is logged in to as
//! `oauth2accesstoken`. Artifact Registry repositories are not created on
//! push, so `before-push` checks that the repository exists.

mod key;

use serde::Deserialize;
use slipway_sdk::cloud::{self, Answer};
use slipway_sdk::distribution::{self, Login};
use slipway_sdk::registry::{Error, Image, PushCredentials, RegistryAdapter};
use slipway_sdk::serde_json::{Value, json};
use slipway_sdk::{Diagnostic, host};

pub use key::{ServiceAccountKey, jwt_assertion};

/// Google's OAuth token endpoint.
const TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// Artifact Registry's API.
const ARTIFACT_REGISTRY_API: &str = "https://artifactregistry.googleapis.com";
/// The OAuth scope pushes need.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Container Registry's hosts.
const GCR_HOSTS: &[&str] = &["gcr.io", "us.gcr.io", "eu.gcr.io", "asia.gcr.io"];

/// The adapter.
pub struct Gcr;

/// Settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// `europe-west1-docker.pkg.dev`, or `gcr.io` (also `us.`, `eu.`, `asia.`).
    pub registry: String,
    /// The Google Cloud project id.
    pub project: String,
    /// The Artifact Registry repository (required for `*-docker.pkg.dev`).
    #[serde(default)]
    pub repository: Option<String>,
    /// Prefix of every image name, e.g. `flows`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Where Google answers, when not at its public endpoints.
    #[serde(default)]
    pub endpoints: Endpoints,
}

/// Overridable endpoints (private service connect, tests).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Endpoints {
    /// The registry, e.g. `https://europe-west1-docker.pkg.dev`.
    #[serde(default)]
    pub registry: Option<String>,
    /// The OAuth token endpoint.
    #[serde(default)]
    pub token: Option<String>,
    /// Artifact Registry's API.
    #[serde(default)]
    pub artifact_registry: Option<String>,
}

impl Settings {
    /// `Some(location)` for Artifact Registry, `None` for Container Registry.
    fn location(&self) -> Option<&str> {
        self.registry.strip_suffix("-docker.pkg.dev")
    }

    fn registry_url(&self) -> String {
        self.endpoints
            .registry
            .clone()
            .unwrap_or_else(|| format!("https://{}", self.registry))
    }

    fn token_url(&self, key: Option<&ServiceAccountKey>) -> String {
        self.endpoints
            .token
            .clone()
            .or_else(|| key.and_then(|k| k.token_uri.clone()))
            .unwrap_or_else(|| TOKEN_URL.into())
    }

    /// An access token: the given one, or one for the service-account key.
    fn access_token(&self) -> Result<String, Error> {
        if let Some(token) = host::secret("access-token") {
            return Ok(token);
        }
        let key = ServiceAccountKey::from_secret().map_err(|d| Error::InvalidSettings(vec![d]))?;
        let token_url = self.token_url(Some(&key));
        cloud::cached_token("access-token", || exchange(&key, &token_url))
    }

    fn path(&self, image: &str) -> String {
        let mut parts = vec![self.project.as_str()];
        parts.extend(self.repository.as_deref());
        parts.extend(self.namespace.as_deref());
        parts.push(image);
        parts.join("/")
    }
}

/// Exchanges a signed JWT for an access token (RFC 7523).
fn exchange(key: &ServiceAccountKey, token_url: &str) -> Result<(String, u64), Error> {
    let now_s = host::now_ms() / 1000;
    let assertion =
        jwt_assertion(key, token_url, now_s).map_err(|d| Error::InvalidSettings(vec![d]))?;
    let answer = cloud::post_form(
        "Google's token endpoint",
        token_url,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", &assertion),
        ],
    )?;
    if answer.status != 200 {
        return Err(Error::Unauthorized(format!(
            "Google's token endpoint refused the key of `{}` (/secrets/service-account-key): {}",
            key.client_email,
            cloud::provider_message(&answer)
        )));
    }
    let body = answer.json();
    let token = body["access_token"].as_str().ok_or_else(|| {
        Error::Unavailable("Google's token endpoint answered without an access_token".into())
    })?;
    let seconds = body["expires_in"].as_u64().unwrap_or(3600);
    Ok((token.to_string(), host::now_ms() + seconds * 1000))
}

/// Project ids: 6 to 30 lowercase letters, digits and hyphens, starting
/// with a letter and not ending with a hyphen.
fn valid_project(id: &str) -> bool {
    let bytes = id.as_bytes();
    (6..=30).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1] != b'-'
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// Artifact Registry repository ids: lowercase letters, digits and
/// hyphens, starting with a letter, at most 63 characters.
fn valid_repository(id: &str) -> bool {
    let bytes = id.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1] != b'-'
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

fn bearer(token: &str) -> Vec<(String, String)> {
    vec![("authorization".into(), format!("Bearer {token}"))]
}

impl RegistryAdapter for Gcr {
    type Settings = Settings;

    fn settings_schema() -> Value {
        let url = json!({"type": "string", "format": "uri"});
        json!({
            "type": "object",
            "required": ["registry", "project"],
            "additionalProperties": false,
            "properties": {
                "registry": {"type": "string", "description": "LOCATION-docker.pkg.dev (Artifact Registry) or [us.|eu.|asia.]gcr.io"},
                "project": {"type": "string", "description": "The Google Cloud project id"},
                "repository": {"type": "string", "description": "The Artifact Registry repository (required for *-docker.pkg.dev)"},
                "namespace": {"type": "string", "description": "Prefix of every image name"},
                "endpoints": {
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {"registry": url, "token": url, "artifact-registry": url}
                }
            },
            "x-secrets": {
                "service-account-key": "The service account's JSON key",
                "access-token": "An OAuth access token, used as is (instead of a key)"
            }
        })
    }

    fn validate_settings(settings: &Settings) -> Vec<Diagnostic> {
        let mut problems = Vec::new();
        match settings.location() {
            Some(location) => {
                let ok = !location.is_empty()
                    && location
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                if !ok {
                    problems.push(Diagnostic::at(
                        "/registry",
                        "the location must be a Google Cloud region, e.g. `europe-west1-docker.pkg.dev`",
                    ));
                }
                match &settings.repository {
                    None => problems.push(Diagnostic::at(
                        "/repository",
                        "Artifact Registry needs the repository images go in",
                    )),
                    Some(r) if !valid_repository(r) => problems.push(Diagnostic::at(
                        "/repository",
                        "use up to 63 lowercase letters, digits and hyphens, starting with a letter",
                    )),
                    Some(_) => {}
                }
            }
            None if GCR_HOSTS.contains(&settings.registry.as_str()) => {
                if settings.repository.is_some() {
                    problems.push(Diagnostic::at(
                        "/repository",
                        "Container Registry (gcr.io) has no repositories; leave it out",
                    ));
                }
            }
            None => problems.push(Diagnostic::at(
                "/registry",
                "use LOCATION-docker.pkg.dev (Artifact Registry) or gcr.io, us.gcr.io, eu.gcr.io, asia.gcr.io",
            )),
        }
        if !valid_project(&settings.project) {
            problems.push(Diagnostic::at(
                "/project",
                "a project id has 6 to 30 lowercase letters, digits and hyphens, starting with a letter",
            ));
        }
        if let Some(namespace) = &settings.namespace
            && distribution::check_repository(namespace).is_err()
        {
            problems.push(Diagnostic::at(
                "/namespace",
                "use lowercase letters and digits, separated by `.`, `_`, `-` or `/`",
            ));
        }
        let endpoints = &settings.endpoints;
        problems.extend(cloud::check_endpoints(
            &[("/endpoints/registry", &endpoints.registry)],
            &[
                ("/endpoints/token", &endpoints.token),
                ("/endpoints/artifact-registry", &endpoints.artifact_registry),
            ],
        ));
        // The credentials: a key that parses, or an access token.
        if host::secret("access-token").is_none() {
            match ServiceAccountKey::from_secret() {
                Ok(key) => problems.extend(key.check_private_key().err()),
                Err(problem) => problems.push(problem),
            }
        }
        problems
    }

    fn resolve(settings: &Settings, repository: &str, tag: &str) -> Result<Image, Error> {
        distribution::image(&settings.registry_url(), settings.path(repository), tag)
    }

    fn authenticate(
        settings: &Settings,
        image: &Image,
        mount_from: &[String],
    ) -> Result<PushCredentials, Error> {
        let login = Login {
            username: "oauth2accesstoken".into(),
            password: settings.access_token()?,
        };
        let (base, _) = distribution::split_url(&settings.registry_url())
            .ok_or_else(|| Error::Other("the registry URL is invalid".into()))?;
        distribution::push_credentials(&base, Some(&login), &image.repository, mount_from)
    }

    /// Artifact Registry: the repository must exist (checked once, then
    /// remembered for ten minutes).
    fn before_push(settings: &Settings, _: &Image) -> Result<(), Error> {
        let (Some(location), Some(repository)) = (settings.location(), &settings.repository) else {
            return Ok(());
        };
        let name = format!(
            "projects/{}/locations/{location}/repositories/{repository}",
            settings.project
        );
        let remembered = format!("exists:{name}");
        if host::cache_get(&remembered).is_some() {
            return Ok(());
        }
        let api = settings
            .endpoints
            .artifact_registry
            .as_deref()
            .unwrap_or(ARTIFACT_REGISTRY_API)
            .trim_end_matches('/');
        let url = format!("{api}/v1/{name}");
        let token = settings.access_token()?;
        let answer: Answer =
            cloud::send("Artifact Registry", "GET", &url, bearer(&token), Vec::new())?;
        match answer.status {
            200 => {
                let format = answer.json()["format"].as_str().unwrap_or("").to_string();
                if format != "DOCKER" {
                    return Err(Error::Other(format!(
                        "Artifact Registry repository `{name}` holds {format} packages, not Docker images"
                    )));
                }
                host::cache_put(&remembered, "1", 10 * 60 * 1000);
                Ok(())
            }
            404 => Err(Error::Other(format!(
                "Artifact Registry repository `{name}` does not exist; create it with \
                 `gcloud artifacts repositories create {repository} --repository-format=docker \
                 --location={location} --project={}`",
                settings.project
            ))),
            401 | 403 => Err(Error::Unauthorized(format!(
                "Artifact Registry refused to show `{name}`: {} (the account needs roles/artifactregistry.writer)",
                cloud::provider_message(&answer)
            ))),
            status => Err(Error::Unavailable(format!(
                "Artifact Registry answered {status} for `{name}`"
            ))),
        }
    }
}

slipway_sdk::export_registry_adapter!(
    Gcr,
    manifest: r#"allowed-hosts = ["*", "oauth2.googleapis.com:443", "artifactregistry.googleapis.com:443", "*.pkg.dev:443", "*.gcr.io:443", "gcr.io:443"]
secrets = ["service-account-key", "access-token"]"#
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_and_repository_ids() {
        assert!(valid_project("my-project-1"));
        for bad in [
            "short",
            "1project",
            "project-",
            "Project-x",
            "a".repeat(31).as_str(),
        ] {
            assert!(!valid_project(bad), "{bad}");
        }
        assert!(valid_repository("flows"));
        assert!(!valid_repository("Flows"));
        assert!(!valid_repository("-flows"));
    }
}

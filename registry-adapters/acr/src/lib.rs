//! `acr`: Azure Container Registry, `<name>.azurecr.io/<repository>`.
//!
//! Two ways in:
//! - a service principal (`tenant-id`, `client-id`, the `client-secret`
//!   secret): Entra ID's client-credentials grant gives an access token,
//!   ACR's `/oauth2/exchange` turns it into a refresh token (kept between
//!   releases until shortly before it expires), and `/oauth2/token` gives
//!   an access token scoped to the repositories of one push;
//! - basic credentials (`username` and the `password` secret): the admin
//!   user or a repository-scoped token, through the registry's challenge.

use serde::Deserialize;
use slipway_sdk::cloud::{self, Answer};
use slipway_sdk::distribution::{self, Login};
use slipway_sdk::registry::{Credentials, Error, Image, PushCredentials, RegistryAdapter};
use slipway_sdk::serde_json::{Value, json};
use slipway_sdk::{Diagnostic, host};

/// Entra ID's public cloud authority.
const AUTHORITY: &str = "https://login.microsoftonline.com";
/// The resource ACR tokens are asked for.
pub const ACR_SCOPE: &str = "https://containerregistry.azure.net/.default";
/// Login server suffixes of the public and sovereign clouds.
const SUFFIXES: &[&str] = &[".azurecr.io", ".azurecr.cn", ".azurecr.us"];

/// The adapter.
pub struct Acr;

/// Settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// The login server, e.g. `myregistry.azurecr.io`.
    pub registry: String,
    /// Prefix of every repository, e.g. `flows`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The directory (tenant) of the service principal.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// The service principal's application (client) id.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The admin user or a token name, for basic credentials.
    #[serde(default)]
    pub username: Option<String>,
    /// Where Azure answers, when not at its public endpoints.
    #[serde(default)]
    pub endpoints: Endpoints,
}

/// Overridable endpoints (sovereign clouds, private links, tests).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Endpoints {
    /// The registry, e.g. `https://myregistry.azurecr.io`.
    #[serde(default)]
    pub registry: Option<String>,
    /// Entra ID's authority, e.g. `https://login.microsoftonline.us`.
    #[serde(default)]
    pub authority: Option<String>,
    /// Where `/oauth2/exchange` and `/oauth2/token` answer [default: the registry].
    #[serde(default)]
    pub token_server: Option<String>,
}

/// How the adapter signs in.
enum Auth<'a> {
    ServicePrincipal { tenant: &'a str, client: &'a str },
    Basic { username: &'a str },
}

impl Settings {
    fn auth(&self) -> Result<Auth<'_>, Error> {
        match (&self.tenant_id, &self.client_id, &self.username) {
            (Some(tenant), Some(client), None) => Ok(Auth::ServicePrincipal { tenant, client }),
            (None, None, Some(username)) => Ok(Auth::Basic { username }),
            _ => Err(Error::InvalidSettings(vec![Diagnostic::at(
                "",
                "set tenant-id and client-id (a service principal) or username (basic)",
            )])),
        }
    }

    fn registry_url(&self) -> String {
        self.endpoints
            .registry
            .clone()
            .unwrap_or_else(|| format!("https://{}", self.registry))
    }

    fn token_server(&self) -> String {
        self.endpoints
            .token_server
            .clone()
            .unwrap_or_else(|| self.registry_url())
            .trim_end_matches('/')
            .to_string()
    }

    fn secret(name: &str) -> Result<String, Error> {
        host::required_secret(name, format!("grant the `{name}` secret"))
            .map_err(|problem| Error::InvalidSettings(vec![problem]))
    }

    /// A refresh token for the service principal, kept between calls.
    fn refresh_token(&self, tenant: &str, client: &str) -> Result<String, Error> {
        cloud::cached_token("refresh-token", || {
            let entra = self.entra_token(tenant, client)?;
            let url = format!("{}/oauth2/exchange", self.token_server());
            let answer = cloud::post_form(
                "ACR's token exchange",
                &url,
                &[
                    ("grant_type", "access_token"),
                    ("service", &self.registry),
                    ("tenant", tenant),
                    ("access_token", &entra),
                ],
            )?;
            if answer.status != 200 {
                return Err(refused("ACR's token exchange", &answer));
            }
            let token = field(&answer, "refresh_token", "ACR's token exchange")?;
            let expires = cloud::jwt_expiry_ms(&token).unwrap_or(host::now_ms() + 3600 * 1000);
            Ok((token, expires))
        })
    }

    /// `/oauth2/token`: an access token for `scopes`.
    fn scoped_token(&self, scopes: &[String], refresh: &str) -> Result<Answer, Error> {
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("service", self.registry.as_str()),
        ];
        form.extend(scopes.iter().map(|s| ("scope", s.as_str())));
        form.push(("refresh_token", refresh));
        let url = format!("{}/oauth2/token", self.token_server());
        cloud::post_form("ACR's token endpoint", &url, &form)
    }

    /// Entra ID's client-credentials grant for ACR.
    fn entra_token(&self, tenant: &str, client: &str) -> Result<String, Error> {
        let secret = Self::secret("client-secret")?;
        let authority = self.endpoints.authority.as_deref().unwrap_or(AUTHORITY);
        let url = format!(
            "{}/{tenant}/oauth2/v2.0/token",
            authority.trim_end_matches('/')
        );
        let answer = cloud::post_form(
            "Entra ID",
            &url,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", client),
                ("client_secret", &secret),
                ("scope", ACR_SCOPE),
            ],
        )?;
        if answer.status != 200 {
            return Err(Error::Unauthorized(format!(
                "Entra ID refused service principal `{client}` of tenant `{tenant}`: {}",
                cloud::provider_message(&answer)
            )));
        }
        field(&answer, "access_token", "Entra ID")
    }
}

fn field(answer: &Answer, name: &str, what: &str) -> Result<String, Error> {
    answer.json()[name]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Error::Unavailable(format!("{what} answered without `{name}`")))
}

fn refused(what: &str, answer: &Answer) -> Error {
    let message = format!(
        "{what} refused ({}): {}",
        answer.status,
        cloud::provider_message(answer)
    );
    if matches!(answer.status, 400 | 401 | 403) {
        Error::Unauthorized(message)
    } else {
        Error::Unavailable(message)
    }
}

/// Registry names: 5 to 50 letters and digits.
fn valid_login_server(server: &str) -> bool {
    SUFFIXES.iter().any(|suffix| {
        server.strip_suffix(suffix).is_some_and(|name| {
            (5..=50).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric())
        })
    })
}

impl RegistryAdapter for Acr {
    type Settings = Settings;

    fn settings_schema() -> Value {
        let url = json!({"type": "string", "format": "uri"});
        json!({
            "type": "object",
            "required": ["registry"],
            "additionalProperties": false,
            "properties": {
                "registry": {"type": "string", "description": "The login server, e.g. myregistry.azurecr.io"},
                "namespace": {"type": "string", "description": "Prefix of every repository"},
                "tenant-id": {"type": "string", "description": "The service principal's tenant"},
                "client-id": {"type": "string", "description": "The service principal's application id; its secret is `client-secret`"},
                "username": {"type": "string", "description": "Admin user or token name; its password is `password`"},
                "endpoints": {
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {"registry": url, "authority": url, "token-server": url}
                }
            },
            "oneOf": [
                {"required": ["tenant-id", "client-id"], "not": {"required": ["username"]}},
                {"required": ["username"], "not": {"anyOf": [{"required": ["tenant-id"]}, {"required": ["client-id"]}]}}
            ],
            "x-secrets": {
                "client-secret": "The service principal's client secret",
                "password": "The admin or token password"
            }
        })
    }

    fn validate_settings(settings: &Settings) -> Vec<Diagnostic> {
        let mut problems = Vec::new();
        if !valid_login_server(&settings.registry) {
            problems.push(Diagnostic::at(
                "/registry",
                "must be a login server: 5 to 50 letters and digits, then .azurecr.io (or .azurecr.cn, .azurecr.us)",
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
        match (&settings.tenant_id, &settings.client_id, &settings.username) {
            (Some(_), Some(_), None) => {
                if host::secret("client-secret").is_none() {
                    problems.push(Diagnostic::at(
                        "/secrets/client-secret",
                        "a service principal needs its client secret granted as `client-secret`",
                    ));
                }
            }
            (None, None, Some(_)) => {
                if host::secret("password").is_none() {
                    problems.push(Diagnostic::at(
                        "/secrets/password",
                        "basic credentials need the `password` secret",
                    ));
                }
            }
            (None, Some(_), None) => problems.push(Diagnostic::at(
                "/tenant-id",
                "a service principal needs its tenant",
            )),
            (Some(_), None, None) => problems.push(Diagnostic::at(
                "/client-id",
                "a service principal needs its application (client) id",
            )),
            (_, _, Some(_)) => problems.push(Diagnostic::at(
                "/username",
                "set either username (basic) or tenant-id and client-id (service principal), not both",
            )),
            (None, None, None) => problems.push(Diagnostic::at(
                "",
                "set tenant-id and client-id (a service principal) or username (basic)",
            )),
        }
        let endpoints = &settings.endpoints;
        problems.extend(cloud::check_endpoints(
            &[("/endpoints/registry", &endpoints.registry)],
            &[
                ("/endpoints/authority", &endpoints.authority),
                ("/endpoints/token-server", &endpoints.token_server),
            ],
        ));
        problems
    }

    fn resolve(settings: &Settings, repository: &str, tag: &str) -> Result<Image, Error> {
        let repository = match &settings.namespace {
            Some(namespace) => format!("{namespace}/{repository}"),
            None => repository.to_string(),
        };
        distribution::image(&settings.registry_url(), repository, tag)
    }

    fn authenticate(
        settings: &Settings,
        image: &Image,
        mount_from: &[String],
    ) -> Result<PushCredentials, Error> {
        match settings.auth()? {
            Auth::Basic { username } => {
                let login = Login {
                    username: username.to_string(),
                    password: Settings::secret("password")?,
                };
                let (base, _) = distribution::split_url(&settings.registry_url())
                    .ok_or_else(|| Error::Other("the registry URL is invalid".into()))?;
                distribution::push_credentials(&base, Some(&login), &image.repository, mount_from)
            }
            Auth::ServicePrincipal { tenant, client } => {
                let mut scopes = vec![format!("repository:{}:pull,push", image.repository)];
                scopes.extend(mount_from.iter().map(|r| format!("repository:{r}:pull")));
                let refresh = settings.refresh_token(tenant, client)?;
                let mut answer = settings.scoped_token(&scopes, &refresh)?;
                if matches!(answer.status, 400 | 401) {
                    // The kept refresh token may have been revoked: start over once.
                    host::cache_put("refresh-token", "", 0);
                    let refresh = settings.refresh_token(tenant, client)?;
                    answer = settings.scoped_token(&scopes, &refresh)?;
                }
                if answer.status != 200 {
                    return Err(refused("ACR's token endpoint", &answer));
                }
                let token = field(&answer, "access_token", "ACR's token endpoint")?;
                let expires = cloud::jwt_expiry_ms(&token).unwrap_or(host::now_ms() + 60_000);
                Ok(PushCredentials {
                    credentials: Credentials::Bearer(token),
                    expires_at_ms: Some(expires),
                })
            }
        }
    }
}

slipway_sdk::export_registry_adapter!(
    Acr,
    manifest: r#"allowed-hosts = ["*", "login.microsoftonline.com:443", "*.azurecr.io:443"]
secrets = ["client-secret", "password"]"#
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_servers() {
        assert!(valid_login_server("myregistry.azurecr.io"));
        assert!(valid_login_server("contoso1.azurecr.cn"));
        assert!(!valid_login_server("abc.azurecr.io"));
        assert!(!valid_login_server("my-registry.azurecr.io"));
        assert!(!valid_login_server("myregistry.example.com"));
    }
}

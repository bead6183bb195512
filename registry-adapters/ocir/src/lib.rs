//! `ocir`: Oracle Cloud Infrastructure Registry,
//! `<region>.ocir.io/<tenancy namespace>/<repository>`.
//!
//! Credentials are a user's auth token (the `auth-token` secret) with the
//! user name OCIR expects: `<namespace>/<user>`, or
//! `<namespace>/<identity domain or provider>/<user>` for federated users
//! (`oracleidentitycloudservice` for IDCS). Pushes get their token from the
//! registry's token service, as its challenge asks.
//!
//! A tenancy may refuse to create repositories on first push. `before-push`
//! finds out before any blob goes: when the repository does not exist it
//! opens (and cancels) an upload, and a refusal is reported as exactly that.

use serde::Deserialize;
use slipway_sdk::cloud;
use slipway_sdk::distribution::{self, Login};
use slipway_sdk::http::{self, Request};
use slipway_sdk::registry::{Error, Image, PushCredentials, RegistryAdapter};
use slipway_sdk::serde_json::{Value, json};
use slipway_sdk::{Diagnostic, host};

/// The adapter.
pub struct Ocir;

/// Settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// The region key (`iad`) or identifier (`us-ashburn-1`).
    pub region: String,
    /// The tenancy's object storage namespace.
    pub namespace: String,
    /// `<namespace>/<user>` or `<namespace>/<identity domain>/<user>`.
    pub username: String,
    /// Prefix of every repository inside the namespace, e.g. `flows`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Where OCIR answers, when not at `https://<region>.ocir.io`.
    #[serde(default)]
    pub endpoints: Endpoints,
}

/// Overridable endpoints (private endpoints, tests).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Endpoints {
    /// The registry, e.g. `https://iad.ocir.io`.
    #[serde(default)]
    pub registry: Option<String>,
}

impl Settings {
    fn registry_url(&self) -> String {
        self.endpoints
            .registry
            .clone()
            .unwrap_or_else(|| format!("https://{}.ocir.io", self.region))
    }

    fn base(&self) -> Result<String, Error> {
        distribution::split_url(&self.registry_url())
            .map(|(base, _)| base)
            .ok_or_else(|| Error::Other("the registry URL is invalid".into()))
    }

    fn login(&self) -> Result<Login, Error> {
        let password = host::required_secret(
            "auth-token",
            format!(
                "grant the auth token of `{}` as `auth-token`",
                self.username
            ),
        )
        .map_err(|problem| Error::InvalidSettings(vec![problem]))?;
        Ok(Login {
            username: self.username.clone(),
            password,
        })
    }
}

/// Why a user name is not one OCIR accepts, if it is not.
fn username_problem(namespace: &str, username: &str) -> Option<String> {
    let Some(rest) = username
        .strip_prefix(namespace)
        .and_then(|r| r.strip_prefix('/'))
    else {
        return Some(format!(
            "must start with the tenancy namespace: `{namespace}/<user>` or \
             `{namespace}/oracleidentitycloudservice/<user>`"
        ));
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let ok = matches!(parts.len(), 1 | 2) && parts.iter().all(|p| !p.trim().is_empty());
    (!ok).then(|| {
        format!(
            "must be `{namespace}/<user>` or `{namespace}/<identity domain>/<user>` \
             (e.g. `{namespace}/oracleidentitycloudservice/<user>`)"
        )
    })
}

fn valid_region(region: &str) -> bool {
    let key = region.len() == 3 && region.bytes().all(|b| b.is_ascii_lowercase());
    let parts: Vec<&str> = region.split('-').collect();
    let id = parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit());
    key || id
}

fn send(method: &str, url: &str, authorization: Option<String>) -> Result<http::Response, Error> {
    http::send(&Request {
        method: method.into(),
        url: url.into(),
        headers: authorization
            .map(|a| vec![("authorization".to_string(), a)])
            .unwrap_or_default(),
        body: Vec::new(),
        timeout_ms: Some(30_000),
    })
    .map_err(|e| Error::Unavailable(format!("OCIR at {url}: {e:?}")))
}

fn header<'a>(response: &'a http::Response, name: &str) -> Option<&'a str> {
    response
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl RegistryAdapter for Ocir {
    type Settings = Settings;

    fn settings_schema() -> Value {
        json!({
            "type": "object",
            "required": ["region", "namespace", "username"],
            "additionalProperties": false,
            "properties": {
                "region": {"type": "string", "description": "Region key (iad) or identifier (us-ashburn-1)"},
                "namespace": {"type": "string", "description": "The tenancy's object storage namespace"},
                "username": {"type": "string", "description": "<namespace>/<user> or <namespace>/oracleidentitycloudservice/<user>; the auth token is `auth-token`"},
                "prefix": {"type": "string", "description": "Prefix of every repository inside the namespace"},
                "endpoints": {
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {"registry": {"type": "string", "format": "uri"}}
                }
            },
            "x-secrets": {"auth-token": "The user's auth token"}
        })
    }

    fn validate_settings(settings: &Settings) -> Vec<Diagnostic> {
        let mut problems = Vec::new();
        if !valid_region(&settings.region) {
            problems.push(Diagnostic::at(
                "/region",
                "must be a region key (e.g. `iad`) or identifier (e.g. `us-ashburn-1`)",
            ));
        }
        let namespace_ok = !settings.namespace.is_empty()
            && settings
                .namespace
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !namespace_ok {
            problems.push(Diagnostic::at(
                "/namespace",
                "must be the tenancy's object storage namespace: lowercase letters and digits",
            ));
        }
        if let Some(problem) = username_problem(&settings.namespace, &settings.username) {
            problems.push(Diagnostic::at("/username", problem));
        }
        if let Some(prefix) = &settings.prefix
            && distribution::check_repository(prefix).is_err()
        {
            problems.push(Diagnostic::at(
                "/prefix",
                "use lowercase letters and digits, separated by `.`, `_`, `-` or `/`",
            ));
        }
        problems.extend(cloud::check_endpoints(
            &[("/endpoints/registry", &settings.endpoints.registry)],
            &[],
        ));
        if host::secret("auth-token").is_none() {
            problems.push(Diagnostic::at(
                "/secrets/auth-token",
                "grant the user's auth token as `auth-token`",
            ));
        }
        problems
    }

    fn resolve(settings: &Settings, repository: &str, tag: &str) -> Result<Image, Error> {
        let mut path = vec![settings.namespace.as_str()];
        path.extend(settings.prefix.as_deref());
        path.push(repository);
        distribution::image(&settings.registry_url(), path.join("/"), tag)
    }

    fn authenticate(
        settings: &Settings,
        image: &Image,
        mount_from: &[String],
    ) -> Result<PushCredentials, Error> {
        let login = settings.login()?;
        distribution::push_credentials(&settings.base()?, Some(&login), &image.repository, mount_from)
            .map_err(|e| match e {
                Error::Unauthorized(m) => Error::Unauthorized(format!(
                    "{m}; OCIR wants the user's auth token (not the console password) and the user name `{}`",
                    settings.username
                )),
                other => other,
            })
    }

    /// A missing repository is fine when the tenancy creates repositories on
    /// push; when it does not, the push stops here saying so. A repository
    /// seen is remembered for an hour.
    fn before_push(settings: &Settings, image: &Image) -> Result<(), Error> {
        let name = &image.repository;
        let remembered = format!("repository:{name}");
        if host::cache_get(&remembered).is_some() {
            return Ok(());
        }
        let base = settings.base()?;
        let credentials = Self::authenticate(settings, image, &[])?;
        let authorization = distribution::authorization_header(&credentials.credentials);
        let tags = send(
            "GET",
            &format!("{base}/v2/{name}/tags/list"),
            authorization.clone(),
        )?;
        if tags.status == 200 {
            host::cache_put(&remembered, "1", 3600 * 1000);
            return Ok(());
        }
        let upload = send(
            "POST",
            &format!("{base}/v2/{name}/blobs/uploads/"),
            authorization.clone(),
        )?;
        match upload.status {
            202 => {
                if let Some(location) = header(&upload, "location") {
                    let url = if location.starts_with("http") {
                        location.to_string()
                    } else {
                        format!("{base}{location}")
                    };
                    // Only tidiness: an unused upload expires on its own.
                    let _ = send("DELETE", &url, authorization);
                }
                host::info(&format!(
                    "OCIR repository `{name}` does not exist yet; the tenancy creates it on push"
                ));
                Ok(())
            }
            401 | 403 | 404 => Err(Error::Other(format!(
                "OCIR repository `{name}` does not exist and the tenancy does not create \
                 repositories on first push; create it (Developer Services > Container Registry > \
                 Create repository) or let the tenancy create repositories on push"
            ))),
            status => Err(Error::Unavailable(format!(
                "OCIR answered {status} when opening an upload to `{name}`"
            ))),
        }
    }
}

slipway_sdk::export_registry_adapter!(
    Ocir,
    manifest: r#"allowed-hosts = ["*", "*.ocir.io:443"]
secrets = ["auth-token"]"#
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_follow_ocir() {
        assert_eq!(username_problem("acme", "acme/alice"), None);
        assert_eq!(
            username_problem("acme", "acme/oracleidentitycloudservice/alice@acme.com"),
            None
        );
        for bad in ["alice", "other/alice", "acme/", "acme/a/b/c", "acme//alice"] {
            assert!(username_problem("acme", bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn regions() {
        assert!(valid_region("iad"));
        assert!(valid_region("us-ashburn-1"));
        assert!(!valid_region("IAD"));
        assert!(!valid_region("ashburn"));
    }
}

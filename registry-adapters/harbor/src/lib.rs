//! `harbor`: a Harbor registry. Repositories are `<project>/<name>`; the
//! project must exist before the first push, so `before-push` checks it
//! through Harbor's v2 API and creates it when allowed. Credentials are a
//! user or a robot account (`robot$...`) with the `password` secret; pushes
//! get their token from Harbor's token service, as its registry asks.

use serde::Deserialize;
use slipway_sdk::distribution::{self, Login};
use slipway_sdk::http::{self, Request};
use slipway_sdk::registry::{Error, Image, PushCredentials, RegistryAdapter};
use slipway_sdk::serde_json::{Value, json};
use slipway_sdk::{Diagnostic, host};

/// The adapter.
pub struct Harbor;

/// Settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// `https://harbor.example.com`.
    pub url: String,
    /// Where Harbor's API answers, when not at `url` (a private endpoint).
    #[serde(default)]
    pub api_url: Option<String>,
    /// The project every repository goes in.
    pub project: String,
    /// A user or robot account (`robot$...`); its password is the `password` secret.
    pub username: String,
    /// Create the project when it does not exist [default: true].
    #[serde(default = "yes")]
    pub create_project: bool,
}

fn yes() -> bool {
    true
}

impl Settings {
    fn base(&self) -> String {
        distribution::split_url(&self.url)
            .map(|(base, _)| base)
            .unwrap_or_default()
    }

    fn api(&self) -> String {
        let url = self.api_url.as_deref().unwrap_or(&self.url);
        distribution::split_url(url)
            .map(|(base, _)| format!("{base}/api/v2.0"))
            .unwrap_or_default()
    }

    fn login(&self) -> Result<Login, Error> {
        let password = host::secret("password").ok_or_else(|| {
            Error::Unauthorized(format!(
                "the `password` secret of `{}` is not granted",
                self.username
            ))
        })?;
        Ok(Login {
            username: self.username.clone(),
            password,
        })
    }

    fn is_robot(&self) -> bool {
        self.username.starts_with("robot$")
    }
}

/// Harbor's project names: lowercase letters and digits, joined by single
/// `.`, `_` or `-`, 1 to 255 characters.
fn valid_project(name: &str) -> bool {
    name.len() <= 255
        && !name.is_empty()
        && name.split(['.', '_', '-']).all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

fn send(
    method: &str,
    url: &str,
    login: &Login,
    body: Option<Value>,
) -> Result<http::Response, Error> {
    let mut headers = vec![(
        "authorization".to_string(),
        distribution::basic_header(&login.username, &login.password),
    )];
    if body.is_some() {
        headers.push(("content-type".into(), "application/json".into()));
    }
    http::send(&Request {
        method: method.into(),
        url: url.into(),
        headers,
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        timeout_ms: Some(30_000),
    })
    .map_err(|e| Error::Unavailable(format!("Harbor's API at {url}: {e:?}")))
}

impl RegistryAdapter for Harbor {
    type Settings = Settings;

    fn settings_schema() -> Value {
        json!({
            "type": "object",
            "required": ["url", "project", "username"],
            "additionalProperties": false,
            "properties": {
                "url": {"type": "string", "description": "https://harbor.example.com"},
                "api-url": {"type": "string", "description": "Where Harbor's API answers, when not at url"},
                "project": {"type": "string", "description": "The project every repository goes in"},
                "username": {"type": "string", "description": "A user or robot account (robot$...); the password is the `password` secret"},
                "create-project": {"type": "boolean", "default": true}
            }
        })
    }

    fn validate_settings(settings: &Settings) -> Vec<Diagnostic> {
        let mut problems = Vec::new();
        if let Err(problem) = distribution::url_setting(&settings.url, "/url") {
            problems.push(problem);
        }
        if let Some(api) = &settings.api_url
            && let Err(problem) = distribution::url_setting(api, "/api-url")
        {
            problems.push(problem);
        }
        if !valid_project(&settings.project) {
            problems.push(Diagnostic::at(
                "/project",
                "use lowercase letters and digits joined by single `.`, `_` or `-`",
            ));
        }
        if settings.username.is_empty() {
            problems.push(Diagnostic::at("/username", "must not be empty"));
        }
        problems
    }

    fn resolve(settings: &Settings, repository: &str, tag: &str) -> Result<Image, Error> {
        let repository = format!("{}/{repository}", settings.project);
        distribution::image(&settings.url, repository, tag)
    }

    fn authenticate(
        settings: &Settings,
        image: &Image,
        mount_from: &[String],
    ) -> Result<PushCredentials, Error> {
        distribution::push_credentials(
            &settings.base(),
            Some(&settings.login()?),
            &image.repository,
            mount_from,
        )
    }

    /// The project exists, or is created now.
    fn before_push(settings: &Settings, _: &Image) -> Result<(), Error> {
        let login = settings.login()?;
        let api = settings.api();
        let project = &settings.project;
        let check = format!("{api}/projects?project_name={project}");
        match send("HEAD", &check, &login, None)?.status {
            200 => return Ok(()),
            404 => {}
            401 => {
                return Err(Error::Unauthorized(format!(
                    "Harbor refused the password of `{}`",
                    settings.username
                )));
            }
            status => {
                return Err(Error::Unavailable(format!(
                    "Harbor answered {status} when asked for project `{project}`"
                )));
            }
        }
        if !settings.create_project {
            return Err(Error::Other(format!(
                "project `{project}` does not exist in Harbor; create it, or set create-project"
            )));
        }
        let created = send(
            "POST",
            &format!("{api}/projects"),
            &login,
            Some(json!({"project_name": project, "metadata": {"public": "false"}})),
        )?;
        match created.status {
            // 409: made at the same moment by another release.
            201 | 409 => {
                host::info(&format!("created Harbor project `{project}`"));
                Ok(())
            }
            401 | 403 if settings.is_robot() => Err(Error::Unauthorized(format!(
                "project `{project}` does not exist and robot account `{}` may not create projects; create it in Harbor",
                settings.username
            ))),
            401 | 403 => Err(Error::Unauthorized(format!(
                "project `{project}` does not exist and `{}` may not create it",
                settings.username
            ))),
            status => Err(Error::Unavailable(format!(
                "Harbor answered {status} when creating project `{project}`"
            ))),
        }
    }
}

slipway_sdk::export_registry_adapter!(
    Harbor,
    manifest: r#"allowed-hosts = ["*"]
secrets = ["password"]"#
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_follow_harbor() {
        for good in ["flows", "team-a", "a.b_c", "0x"] {
            assert!(valid_project(good), "{good}");
        }
        for bad in ["", "Flows", "a--b", "-a", "a.", "a b"] {
            assert!(!valid_project(bad), "{bad}");
        }
    }
}

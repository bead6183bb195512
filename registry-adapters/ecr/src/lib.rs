//! `ecr`: Amazon Elastic Container Registry,
//! `<account>.dkr.ecr.<region>.amazonaws.com/<repository>`.
//!
//! An IAM access key (`access-key-id` setting, `secret-access-key` secret,
//! optional `session-token` secret) signs `GetAuthorizationToken` with
//! Signature Version 4. ECR answers a `AWS:<password>` pair good for 12
//! hours, kept between releases and renewed before it expires; the host
//! pushes with it as basic credentials. ECR creates no repository on push,
//! so `before-push` creates it (unless `create-repositories` is off, when it
//! checks that it exists). ECR's quirks are the host's: 403 for a token it
//! expired early (the host renews once), no `Location` on a manifest PUT.

pub mod sigv4;

use base64::Engine as _;
use serde::Deserialize;
use slipway_sdk::cloud::{self, Answer};
use slipway_sdk::distribution;
use slipway_sdk::registry::{Credentials, Error, Image, PushCredentials, RegistryAdapter};
use slipway_sdk::serde_json::{Value, json};
use slipway_sdk::{Diagnostic, host};

/// The JSON protocol's target prefix for ECR's API.
const TARGET: &str = "AmazonEC2ContainerRegistry_V20150921";

/// The adapter.
pub struct Ecr;

/// Settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// The 12-digit AWS account id that owns the registry.
    pub account_id: String,
    /// e.g. `eu-west-1`.
    pub region: String,
    /// The IAM access key id; its secret is the `secret-access-key` secret.
    pub access_key_id: String,
    /// Prefix of every repository, e.g. `flows`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Create a repository on its first push [default: true].
    #[serde(default = "yes")]
    pub create_repositories: bool,
    /// Where AWS answers, when not at its public endpoints.
    #[serde(default)]
    pub endpoints: Endpoints,
}

/// Overridable endpoints (VPC endpoints, other partitions, tests).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Endpoints {
    /// ECR's API, e.g. `https://api.ecr.eu-west-1.amazonaws.com`.
    #[serde(default)]
    pub api: Option<String>,
    /// The registry, e.g. `https://123456789012.dkr.ecr.eu-west-1.amazonaws.com`.
    #[serde(default)]
    pub registry: Option<String>,
}

fn yes() -> bool {
    true
}

impl Settings {
    fn domain(&self) -> &'static str {
        if self.region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        }
    }

    fn api_url(&self) -> String {
        self.endpoints
            .api
            .clone()
            .unwrap_or_else(|| format!("https://api.ecr.{}.{}", self.region, self.domain()))
    }

    fn registry_url(&self) -> String {
        self.endpoints.registry.clone().unwrap_or_else(|| {
            format!(
                "https://{}.dkr.ecr.{}.{}",
                self.account_id,
                self.region,
                self.domain()
            )
        })
    }

    /// Calls `operation` of ECR's JSON API, signed.
    fn call(&self, operation: &str, body: &Value) -> Result<Answer, Error> {
        let invalid = |problem| Error::InvalidSettings(vec![problem]);
        let secret = host::required_secret(
            "secret-access-key",
            "grant the IAM access key's secret as `secret-access-key`",
        )
        .map_err(invalid)?;
        let url = self.api_url();
        let (_, authority) = distribution::url_setting(&url, "/endpoints/api").map_err(invalid)?;
        let amz_date = sigv4::amz_date(host::now_ms());
        let mut headers = vec![
            (
                "content-type".to_string(),
                "application/x-amz-json-1.1".to_string(),
            ),
            ("host".to_string(), authority),
            ("x-amz-date".to_string(), amz_date.clone()),
            ("x-amz-target".to_string(), format!("{TARGET}.{operation}")),
        ];
        if let Some(token) = host::secret("session-token") {
            headers.push(("x-amz-security-token".to_string(), token));
        }
        let body = body.to_string().into_bytes();
        let request = sigv4::Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body: &body,
        };
        let scope = sigv4::Scope {
            amz_date: &amz_date,
            region: &self.region,
            service: "ecr",
        };
        let authorization = sigv4::authorization(&request, &scope, &self.access_key_id, &secret);
        headers.push(("authorization".to_string(), authorization));
        cloud::send(&format!("ECR's {operation}"), "POST", &url, headers, body)
    }

    fn repository(&self, image: &str) -> String {
        match &self.namespace {
            Some(namespace) => format!("{namespace}/{image}"),
            None => image.to_string(),
        }
    }
}

/// The exception name of an AWS JSON error (`__type`, without its namespace).
fn exception(answer: &Answer) -> String {
    let json = answer.json();
    let kind = json["__type"].as_str().unwrap_or_default();
    kind.rsplit('#').next().unwrap_or_default().to_string()
}

fn refused(operation: &str, answer: &Answer) -> Error {
    let message = format!(
        "ECR refused {operation} ({}): {}",
        answer.status,
        cloud::provider_message(answer)
    );
    match exception(answer).as_str() {
        "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "AccessDeniedException"
        | "ExpiredTokenException"
        | "MissingAuthenticationTokenException" => Error::Unauthorized(message),
        _ if matches!(answer.status, 401 | 403) => Error::Unauthorized(message),
        _ => Error::Other(message),
    }
}

/// `GetAuthorizationToken`: the decoded `user:password` and its expiry (ms).
fn authorization_token(settings: &Settings) -> Result<(String, u64), Error> {
    let operation = "GetAuthorizationToken";
    let answer = settings.call(operation, &json!({}))?;
    if answer.status != 200 {
        return Err(refused(operation, &answer));
    }
    let body = answer.json();
    let data = &body["authorizationData"][0];
    let token = data["authorizationToken"]
        .as_str()
        .and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok())
        .and_then(|t| String::from_utf8(t).ok())
        .filter(|t| t.contains(':'))
        .ok_or_else(|| Error::Unavailable(format!("ECR's {operation} answered no usable token")))?;
    let expires_ms = data["expiresAt"]
        .as_f64()
        .map(|s| (s * 1000.0) as u64)
        .unwrap_or_else(|| host::now_ms() + 12 * 3600 * 1000);
    Ok((token, expires_ms))
}

/// ECR's repository names: 2 to 256 characters, `/`-separated components
/// of lowercase letters and digits joined by single `.`, `_` or `-`.
fn check_repository(name: &str) -> Result<(), Error> {
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.split(['.', '_', '-']).all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            })
    };
    if !(2..=256).contains(&name.len()) || !name.split('/').all(component_ok) {
        return Err(Error::InvalidName(format!(
            "repository `{name}` breaks ECR's rules: 2 to 256 characters, `/`-separated parts of \
             lowercase letters and digits joined by single `.`, `_` or `-`"
        )));
    }
    Ok(())
}

fn valid_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

impl RegistryAdapter for Ecr {
    type Settings = Settings;

    fn settings_schema() -> Value {
        let url = json!({"type": "string", "format": "uri"});
        json!({
            "type": "object",
            "required": ["account-id", "region", "access-key-id"],
            "additionalProperties": false,
            "properties": {
                "account-id": {"type": "string", "pattern": "^[0-9]{12}$"},
                "region": {"type": "string", "description": "e.g. eu-west-1"},
                "access-key-id": {"type": "string", "description": "The IAM access key id; the secret is `secret-access-key`"},
                "namespace": {"type": "string", "description": "Prefix of every repository"},
                "create-repositories": {"type": "boolean", "default": true},
                "endpoints": {
                    "type": "object",
                    "additionalProperties": false,
                    "properties": {"api": url, "registry": url}
                }
            },
            "x-secrets": {
                "secret-access-key": "The IAM access key's secret",
                "session-token": "A session token, for temporary credentials"
            }
        })
    }

    fn validate_settings(settings: &Settings) -> Vec<Diagnostic> {
        let mut problems = Vec::new();
        if settings.account_id.len() != 12
            || !settings.account_id.bytes().all(|b| b.is_ascii_digit())
        {
            problems.push(Diagnostic::at(
                "/account-id",
                "must be the 12-digit AWS account id",
            ));
        }
        if !valid_region(&settings.region) {
            problems.push(Diagnostic::at(
                "/region",
                "must be an AWS region, e.g. `eu-west-1`",
            ));
        }
        let key = &settings.access_key_id;
        if !(16..=128).contains(&key.len())
            || !key
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            problems.push(Diagnostic::at(
                "/access-key-id",
                "must be an access key id: 16 to 128 uppercase letters and digits, e.g. `AKIA...`",
            ));
        }
        if let Some(namespace) = &settings.namespace
            && check_repository(&format!("{namespace}/x")).is_err()
        {
            problems.push(Diagnostic::at(
                "/namespace",
                "use lowercase letters and digits joined by single `.`, `_`, `-` or `/`",
            ));
        }
        problems.extend(cloud::check_endpoints(
            &[
                ("/endpoints/api", &settings.endpoints.api),
                ("/endpoints/registry", &settings.endpoints.registry),
            ],
            &[],
        ));
        if host::secret("secret-access-key").is_none_or(|s| s.is_empty()) {
            problems.push(Diagnostic::at(
                "/secrets/secret-access-key",
                "grant the IAM access key's secret as `secret-access-key`",
            ));
        }
        problems
    }

    fn resolve(settings: &Settings, repository: &str, tag: &str) -> Result<Image, Error> {
        let repository = settings.repository(repository);
        check_repository(&repository)?;
        distribution::image(&settings.registry_url(), repository, tag)
    }

    fn authenticate(
        settings: &Settings,
        _: &Image,
        _: &[String],
    ) -> Result<PushCredentials, Error> {
        let kept = cloud::cached_token("authorization", || {
            let (token, expires_ms) = authorization_token(settings)?;
            Ok((format!("{expires_ms}\n{token}"), expires_ms))
        })?;
        let (expires_ms, pair) = kept
            .split_once('\n')
            .ok_or_else(|| Error::Other("a kept ECR token is malformed".into()))?;
        let (username, password) = pair
            .split_once(':')
            .ok_or_else(|| Error::Other("a kept ECR token is malformed".into()))?;
        Ok(PushCredentials {
            credentials: Credentials::Basic((username.to_string(), password.to_string())),
            expires_at_ms: expires_ms.parse().ok(),
        })
    }

    /// Creates the repository (or checks it exists); remembered for an hour.
    fn before_push(settings: &Settings, image: &Image) -> Result<(), Error> {
        let name = &image.repository;
        let remembered = format!("repository:{name}");
        if host::cache_get(&remembered).is_some() {
            return Ok(());
        }
        if settings.create_repositories {
            let operation = "CreateRepository";
            let answer = settings.call(
                operation,
                &json!({"repositoryName": name, "imageTagMutability": "MUTABLE"}),
            )?;
            match (answer.status, exception(&answer).as_str()) {
                (200, _) => host::info(&format!("created ECR repository `{name}`")),
                (_, "RepositoryAlreadyExistsException") => {}
                _ => return Err(refused(operation, &answer)),
            }
        } else {
            let operation = "DescribeRepositories";
            let answer = settings.call(operation, &json!({"repositoryNames": [name]}))?;
            match (answer.status, exception(&answer).as_str()) {
                (200, _) => {}
                (_, "RepositoryNotFoundException") => {
                    return Err(Error::Other(format!(
                        "ECR repository `{name}` does not exist and create-repositories is off; \
                         create it with `aws ecr create-repository --repository-name {name} --region {}`",
                        settings.region
                    )));
                }
                _ => return Err(refused(operation, &answer)),
            }
        }
        host::cache_put(&remembered, "1", 3600 * 1000);
        Ok(())
    }
}

slipway_sdk::export_registry_adapter!(
    Ecr,
    manifest: r#"allowed-hosts = ["*", "*.amazonaws.com:443", "*.amazonaws.com.cn:443"]
secrets = ["secret-access-key", "session-token"]"#
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_follow_ecr() {
        for good in ["flows/orders", "a.b-c_d", "ab"] {
            assert!(check_repository(good).is_ok(), "{good}");
        }
        for bad in ["a", "Flows", "a__b", "a//b", "-a", "a-"] {
            assert!(check_repository(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn regions() {
        for good in ["eu-west-1", "us-gov-west-1", "cn-north-1"] {
            assert!(valid_region(good), "{good}");
        }
        for bad in ["", "eu-west", "EU-west-1", "euwest1"] {
            assert!(!valid_region(bad), "{bad}");
        }
    }
}

//! Amazon ECR as the `ecr` adapter meets it, in front of the test registry:
//! - the API (`POST /`, JSON 1.1, `X-Amz-Target`) checks each call's
//!   Signature Version 4 as AWS does (known key, its session token, region,
//!   service, a date within 15 minutes, the signature over the signed
//!   headers and body) and answers `GetAuthorizationToken`,
//!   `CreateRepository` and `DescribeRepositories`;
//! - the registry front takes basic `AWS:<password>` credentials only while
//!   ECR issued and has not expired them, answers 403 for an expired one,
//!   404 for a repository ECR does not have, and no `Location` on a
//!   manifest PUT.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ecr::sigv4;

use crate::front::{self, Gate};
use crate::token_server::TokenIssuer;

/// The access key the fake knows, with its secret.
pub const ACCESS_KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
pub const SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
/// A temporary key, valid only with [`SESSION_TOKEN`].
pub const TEMPORARY_KEY_ID: &str = "ASIAIOSFODNN7EXAMPLE";
pub const TEMPORARY_SECRET: &str = "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY";
pub const SESSION_TOKEN: &str = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN";
/// The account and region the fake stands for.
pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "eu-west-1";

/// ECR's API and registry front.
pub struct FakeEcr {
    /// The API, `http://host:port`.
    pub api: String,
    /// The registry front, `host:port` (set once it listens).
    front: std::sync::OnceLock<String>,
    /// Repositories ECR has.
    pub repositories: Mutex<BTreeSet<String>>,
    /// Operations called with a good signature, in order.
    pub calls: Mutex<Vec<String>>,
    /// Calls refused for their signature.
    pub refused: AtomicUsize,
    /// Passwords issued, and whether ECR has expired them.
    passwords: Mutex<Vec<(String, bool)>>,
    /// After this many more registry requests, every password expires.
    pub expire_after: Mutex<Option<usize>>,
    issuer: Arc<TokenIssuer>,
}

impl FakeEcr {
    /// Starts the API and a front to `upstream` (`http://host:port`, a
    /// registry trusting `issuer`).
    pub async fn start(issuer: &Arc<TokenIssuer>, upstream: &str) -> Arc<FakeEcr> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = format!("http://{}", listener.local_addr().unwrap());
        let fake = Arc::new(FakeEcr {
            api,
            front: std::sync::OnceLock::new(),
            repositories: Mutex::default(),
            calls: Mutex::default(),
            refused: AtomicUsize::new(0),
            passwords: Mutex::default(),
            expire_after: Mutex::default(),
            issuer: issuer.clone(),
        });
        let app = axum::Router::new()
            .route("/", axum::routing::post(call))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let registry = front::start(upstream.to_string(), Arc::new(EcrGate(fake.clone()))).await;
        fake.front.set(registry).unwrap();
        fake
    }

    /// The registry front, `host:port`.
    pub fn registry(&self) -> &str {
        self.front.get().expect("started")
    }

    /// Calls of `operation` so far.
    pub fn count(&self, operation: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| *c == operation)
            .count()
    }
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn aws_error(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = serde_json::json!({"__type": kind, "message": message});
    (status, axum::Json(body)).into_response()
}

/// AWS's exception name and message for a refused call.
pub type Refusal = (&'static str, String);

/// Checks a request's SigV4 signature; the error is what AWS answers (403).
pub fn verify(
    method: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    now_s: u64,
) -> Result<(), Refusal> {
    let refuse = |kind: &'static str, message: &str| Err((kind, message.to_string()));
    let Some(parsed) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(sigv4::parse_authorization)
    else {
        return refuse(
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        );
    };
    let secret = match parsed.access_key_id.as_str() {
        ACCESS_KEY_ID => SECRET_ACCESS_KEY,
        TEMPORARY_KEY_ID => {
            let token = headers
                .get("x-amz-security-token")
                .and_then(|v| v.to_str().ok());
            if token != Some(SESSION_TOKEN) {
                return refuse(
                    "UnrecognizedClientException",
                    "The security token included in the request is invalid.",
                );
            }
            TEMPORARY_SECRET
        }
        _ => {
            return refuse(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            );
        }
    };
    if parsed.region != REGION || parsed.service != "ecr" {
        return refuse(
            "InvalidSignatureException",
            "Credential should be scoped to a valid region and service.",
        );
    }
    for required in ["host", "x-amz-date"] {
        if !parsed.signed_headers.iter().any(|h| h == required) {
            return refuse(
                "InvalidSignatureException",
                &format!("'{required}' must be a signed header."),
            );
        }
    }
    if headers.contains_key("x-amz-security-token")
        && !parsed
            .signed_headers
            .iter()
            .any(|h| h == "x-amz-security-token")
    {
        return refuse(
            "InvalidSignatureException",
            "'x-amz-security-token' must be a signed header.",
        );
    }
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let skew_ok = amz_date.starts_with(&parsed.date)
        && epoch_seconds(amz_date).is_some_and(|sent| sent.abs_diff(now_s) <= 15 * 60);
    if !skew_ok {
        return refuse(
            "InvalidSignatureException",
            "Signature expired: the request date is more than 15 minutes from now.",
        );
    }
    let signed: Vec<(String, String)> = parsed
        .signed_headers
        .iter()
        .map(|name| {
            let values: Vec<&str> = headers
                .get_all(name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            (name.clone(), values.join(","))
        })
        .collect();
    let request = sigv4::Request {
        method,
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        headers: &signed,
        body,
    };
    let scope = sigv4::Scope {
        amz_date,
        region: &parsed.region,
        service: &parsed.service,
    };
    if sigv4::signature(&request, &scope, secret) != parsed.signature {
        return refuse(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided.",
        );
    }
    Ok(())
}

/// Seconds since the epoch of `YYYYMMDDTHHMMSSZ`.
fn epoch_seconds(date: &str) -> Option<u64> {
    if date.len() != 16 || &date[8..9] != "T" || !date.ends_with('Z') {
        return None;
    }
    let n = |range: std::ops::Range<usize>| date.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (n(0..4)?, n(4..6)?, n(6..8)?);
    // Howard Hinnant's days-from-civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + n(9..11)? * 3600 + n(11..13)? * 60 + n(13..15)?;
    u64::try_from(seconds).ok()
}

async fn call(
    State(fake): State<Arc<FakeEcr>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err((kind, message)) = verify(method.as_str(), &uri, &headers, &body, now_s()) {
        fake.refused.fetch_add(1, Ordering::SeqCst);
        return aws_error(StatusCode::FORBIDDEN, kind, &message);
    }
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(operation) = target.strip_prefix("AmazonEC2ContainerRegistry_V20150921.") else {
        return aws_error(StatusCode::BAD_REQUEST, "UnknownOperationException", target);
    };
    if headers.get("content-type").and_then(|v| v.to_str().ok())
        != Some("application/x-amz-json-1.1")
    {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            "bad content type",
        );
    }
    let input: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    fake.calls.lock().unwrap().push(operation.to_string());
    match operation {
        "GetAuthorizationToken" => {
            let password = crate::token_server::random_hex(24);
            fake.passwords
                .lock()
                .unwrap()
                .push((password.clone(), false));
            let token = STANDARD.encode(format!("AWS:{password}"));
            axum::Json(serde_json::json!({"authorizationData": [{
                "authorizationToken": token,
                "expiresAt": (now_s() + 12 * 3600) as f64,
                "proxyEndpoint": format!("http://{}", fake.registry()),
            }]}))
            .into_response()
        }
        "CreateRepository" => {
            let name = input["repositoryName"].as_str().unwrap_or("").to_string();
            if !fake.repositories.lock().unwrap().insert(name.clone()) {
                return aws_error(
                    StatusCode::BAD_REQUEST,
                    "RepositoryAlreadyExistsException",
                    &format!(
                        "The repository with name '{name}' already exists in the registry with id '{ACCOUNT}'"
                    ),
                );
            }
            axum::Json(
                serde_json::json!({"repository": {"repositoryName": name, "registryId": ACCOUNT}}),
            )
            .into_response()
        }
        "DescribeRepositories" => {
            let names: Vec<String> = input["repositoryNames"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            let known = fake.repositories.lock().unwrap();
            if let Some(missing) = names.iter().find(|n| !known.contains(*n)) {
                return aws_error(
                    StatusCode::BAD_REQUEST,
                    "RepositoryNotFoundException",
                    &format!(
                        "The repository with name '{missing}' does not exist in the registry with id '{ACCOUNT}'"
                    ),
                );
            }
            axum::Json(serde_json::json!({"repositories": names.iter().map(|n| serde_json::json!({"repositoryName": n})).collect::<Vec<_>>()}))
                .into_response()
        }
        other => aws_error(StatusCode::BAD_REQUEST, "UnknownOperationException", other),
    }
}

struct EcrGate(Arc<FakeEcr>);

impl Gate for EcrGate {
    fn admit(
        &self,
        _: &Method,
        path: &str,
        query: &str,
        headers: &HeaderMap,
    ) -> Result<Option<String>, Box<Response>> {
        let fake = &self.0;
        {
            let mut countdown = fake.expire_after.lock().unwrap();
            if let Some(left) = countdown.as_mut() {
                if *left == 0 {
                    for (_, expired) in fake.passwords.lock().unwrap().iter_mut() {
                        *expired = true;
                    }
                    *countdown = None;
                } else {
                    *left -= 1;
                }
            }
        }
        let password = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|v| STANDARD.decode(v).ok())
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|pair| pair.strip_prefix("AWS:").map(str::to_string));
        let known = password.and_then(|p| {
            fake.passwords
                .lock()
                .unwrap()
                .iter()
                .find(|(issued, _)| *issued == p)
                .map(|(_, expired)| *expired)
        });
        match known {
            None => {
                let mut answer = front::refusal(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHORIZED",
                    "authentication required",
                );
                answer.headers_mut().insert(
                    "www-authenticate",
                    format!(
                        "Basic realm=\"http://{}/\",service=\"ecr.amazonaws.com\"",
                        fake.registry()
                    )
                    .parse()
                    .unwrap(),
                );
                return Err(Box::new(answer));
            }
            Some(true) => {
                return Err(Box::new(front::refusal(
                    StatusCode::FORBIDDEN,
                    "DENIED",
                    "Your authorization token has expired. Reauthenticate and try again.",
                )));
            }
            Some(false) => {}
        }
        let Some(name) = front::repository(path) else {
            return Ok(Some(format!(
                "Bearer {}",
                fake.issuer.token_for("AWS", &[])
            )));
        };
        if !fake.repositories.lock().unwrap().contains(&name) {
            return Err(Box::new(front::refusal(
                StatusCode::NOT_FOUND,
                "NAME_UNKNOWN",
                &format!(
                    "The repository with name '{name}' does not exist in the registry with id '{ACCOUNT}'"
                ),
            )));
        }
        let mut scopes = vec![format!("repository:{name}:pull,push,delete")];
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if key == "from" {
                scopes.push(format!("repository:{value}:pull"));
            }
        }
        Ok(Some(format!(
            "Bearer {}",
            fake.issuer.token_for("AWS", &scopes)
        )))
    }

    fn hides_manifest_location(&self) -> bool {
        true
    }
}

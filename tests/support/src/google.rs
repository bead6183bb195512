//! Google's OAuth token endpoint and Artifact Registry's API, as the `gcr`
//! adapter meets them:
//! - `POST /token` takes the JWT-bearer grant and checks the assertion as
//!   Google does: RS256 over header and claims with the service account's
//!   registered public key, `iss` the account, `aud` this endpoint, the
//!   cloud-platform scope, issued now and good for at most an hour. The
//!   access token it answers is then a password the registry's token realm
//!   honours for `oauth2accesstoken`.
//! - `GET /v1/projects/{p}/locations/{l}/repositories/{r}` answers the
//!   repositories created, to a known access token.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

use crate::token_server::{TokenIssuer, random_hex};

/// The service account the fake knows.
pub const CLIENT_EMAIL: &str = "slipway-pusher@acme-flows.iam.gserviceaccount.com";
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Its private key (test only).
pub const PRIVATE_KEY: &str = include_str!("keys/service-account.pem");
const PUBLIC_KEY: &str = include_str!("keys/service-account.pub.pem");
/// A well-formed key Google does not know.
pub const UNREGISTERED_KEY: &str = include_str!("keys/unregistered.pem");

/// The service account's key file, as Google issues it, with `private_key`.
pub fn key_file(private_key: &str) -> String {
    serde_json::json!({
        "type": "service_account",
        "project_id": "acme-flows",
        "private_key_id": "0123456789abcdef",
        "private_key": private_key,
        "client_email": CLIENT_EMAIL,
        "client_id": "100000000000000000001",
        "token_uri": "https://oauth2.googleapis.com/token",
    })
    .to_string()
}

/// The token endpoint and Artifact Registry's API.
pub struct FakeGoogle {
    /// `http://host:port`.
    pub url: String,
    /// Artifact Registry repositories, `projects/p/locations/l/repositories/r`.
    pub repositories: Mutex<BTreeSet<String>>,
    /// Assertions exchanged for access tokens.
    pub exchanges: AtomicUsize,
    /// Assertions refused, with Google's reason.
    pub refusals: Mutex<Vec<String>>,
    tokens: Mutex<Vec<String>>,
    issuer: Arc<TokenIssuer>,
}

impl FakeGoogle {
    /// Serves on 127.0.0.1; tokens become passwords `issuer`'s realm honours.
    pub async fn start(issuer: &Arc<TokenIssuer>) -> Arc<FakeGoogle> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = Arc::new(FakeGoogle {
            url: format!("http://{}", listener.local_addr().unwrap()),
            repositories: Mutex::default(),
            exchanges: AtomicUsize::new(0),
            refusals: Mutex::default(),
            tokens: Mutex::default(),
            issuer: issuer.clone(),
        });
        let app = axum::Router::new()
            .route("/token", axum::routing::post(token))
            .route(
                "/v1/projects/{project}/locations/{location}/repositories/{repository}",
                axum::routing::get(repository),
            )
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake
    }

    /// The token endpoint's URL.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.url)
    }

    /// Forgets every access token issued (as if they expired).
    pub fn revoke_all(&self) {
        self.tokens.lock().unwrap().clear();
        self.issuer.remove_user("oauth2accesstoken");
    }

    /// Why an assertion is not acceptable, as Google says it.
    fn check(&self, assertion: &str) -> Result<(), String> {
        let parts: Vec<&str> = assertion.split('.').collect();
        let [header, claims, signature] = parts[..] else {
            return Err(
                "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe"
                    .into(),
            );
        };
        let decode = |part: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        };
        let (Some(header_json), Some(claims)) = (decode(header), decode(claims)) else {
            return Err("Invalid JWT: not base64url JSON".into());
        };
        if header_json["alg"] != "RS256" {
            return Err("Invalid JWT: the algorithm must be RS256".into());
        }
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| "Invalid JWT Signature.")?;
        let public = pem_body(PUBLIC_KEY);
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public)
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .map_err(|_| "Invalid JWT Signature.".to_string())?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let iat = claims["iat"].as_u64().unwrap_or(0);
        let exp = claims["exp"].as_u64().unwrap_or(0);
        if claims["iss"] != CLIENT_EMAIL {
            return Err("Invalid JWT: unknown issuer".into());
        }
        if claims["aud"] != self.token_url().as_str() {
            return Err("Invalid JWT: the audience must be the token endpoint".into());
        }
        if !claims["scope"]
            .as_str()
            .unwrap_or("")
            .split(' ')
            .any(|s| s == SCOPE)
        {
            return Err("Invalid JWT: no usable scope".into());
        }
        if iat > now + 60 || exp <= now || exp.saturating_sub(iat) > 3600 {
            return Err("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe".into());
        }
        Ok(())
    }

    fn knows(&self, headers: &HeaderMap) -> bool {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        token.is_some_and(|t| self.tokens.lock().unwrap().iter().any(|k| k == t))
    }
}

/// The DER inside a PEM block.
fn pem_body(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap()
}

fn oauth_error(error: &str, description: &str) -> Response {
    let body = serde_json::json!({"error": error, "error_description": description});
    (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
}

async fn token(State(fake): State<Arc<FakeGoogle>>, body: String) -> Response {
    let form: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    if get("grant_type") != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return oauth_error("unsupported_grant_type", "Invalid grant_type");
    }
    if let Err(reason) = fake.check(get("assertion").unwrap_or("")) {
        fake.refusals.lock().unwrap().push(reason.clone());
        return oauth_error("invalid_grant", &reason);
    }
    let access = format!("ya29.{}", random_hex(32));
    fake.tokens.lock().unwrap().push(access.clone());
    fake.issuer.add_user("oauth2accesstoken", &access);
    fake.exchanges.fetch_add(1, Ordering::SeqCst);
    axum::Json(
        serde_json::json!({"access_token": access, "expires_in": 3599, "token_type": "Bearer"}),
    )
    .into_response()
}

async fn repository(
    State(fake): State<Arc<FakeGoogle>>,
    Path((project, location, repository)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if !fake.knows(&headers) {
        let body = serde_json::json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}});
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    let name = format!("projects/{project}/locations/{location}/repositories/{repository}");
    if !fake.repositories.lock().unwrap().contains(&name) {
        let body = serde_json::json!({"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}});
        return (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
    }
    axum::Json(serde_json::json!({"name": name, "format": "DOCKER", "mode": "STANDARD_REPOSITORY"}))
        .into_response()
}

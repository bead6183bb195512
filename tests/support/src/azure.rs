//! Entra ID and ACR's token server, as the `acr` adapter meets them with a
//! service principal:
//! - `POST /{tenant}/oauth2/v2.0/token`: the client-credentials grant, for
//!   the ACR scope only, with the principal's id and secret;
//! - `POST /oauth2/exchange`: `grant_type=access_token`, the registry as
//!   `service`, the tenant and an Entra token it issued, for a refresh token;
//! - `POST /oauth2/token`: `grant_type=refresh_token`, the registry as
//!   `service`, `repository:<name>:<actions>` scopes and a refresh token it
//!   issued, for a registry token the test registry accepts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::token_server::{TokenIssuer, random_hex};

pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const CLIENT_ID: &str = "5b1e5c9a-2f0e-4a63-9d1c-0e6a8d1c2b3f";
pub const CLIENT_SECRET: &str = "Xy8Q~azure-client-secret~test";
/// The registry's login server name, the `service` of every exchange.
pub const LOGIN_SERVER: &str = "acmeflows.azurecr.io";

/// Entra ID and ACR's token server.
pub struct FakeAzure {
    /// `http://host:port`.
    pub url: String,
    /// Grants that were refused, with the reason.
    pub refusals: Mutex<Vec<String>>,
    /// Scopes asked of `/oauth2/token`.
    pub scopes: Mutex<Vec<String>>,
    /// Entra tokens issued.
    pub entra_tokens: AtomicUsize,
    aad: Mutex<Vec<String>>,
    refresh: Mutex<Vec<String>>,
    issuer: Arc<TokenIssuer>,
}

impl FakeAzure {
    /// Serves on 127.0.0.1; registry tokens are signed by `issuer`.
    pub async fn start(issuer: &Arc<TokenIssuer>) -> Arc<FakeAzure> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = Arc::new(FakeAzure {
            url: format!("http://{}", listener.local_addr().unwrap()),
            refusals: Mutex::default(),
            scopes: Mutex::default(),
            entra_tokens: AtomicUsize::new(0),
            aad: Mutex::default(),
            refresh: Mutex::default(),
            issuer: issuer.clone(),
        });
        let app = axum::Router::new()
            .route("/{tenant}/oauth2/v2.0/token", axum::routing::post(entra))
            .route("/oauth2/exchange", axum::routing::post(exchange))
            .route("/oauth2/token", axum::routing::post(registry_token))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake
    }

    /// Forgets every refresh token (as if ACR revoked them).
    pub fn revoke_refresh_tokens(&self) {
        self.refresh.lock().unwrap().clear();
    }

    fn refuse(&self, status: StatusCode, error: &str, description: &str) -> Response {
        self.refusals.lock().unwrap().push(description.to_string());
        let body = serde_json::json!({"error": error, "error_description": description});
        (status, axum::Json(body)).into_response()
    }
}

fn form(body: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(body.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn one<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

async fn entra(
    State(fake): State<Arc<FakeAzure>>,
    Path(tenant): Path<String>,
    body: String,
) -> Response {
    let form = form(&body);
    if one(&form, "grant_type") != Some("client_credentials") {
        return fake.refuse(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "AADSTS70003: the app asked for an unsupported grant type",
        );
    }
    if tenant != TENANT {
        return fake.refuse(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "AADSTS90002: Tenant not found",
        );
    }
    if one(&form, "scope") != Some("https://containerregistry.azure.net/.default") {
        return fake.refuse(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "AADSTS1002012: the scope is not valid for the client credentials flow",
        );
    }
    if one(&form, "client_id") != Some(CLIENT_ID)
        || one(&form, "client_secret") != Some(CLIENT_SECRET)
    {
        return fake.refuse(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided.",
        );
    }
    let token = format!("aad.{}", random_hex(24));
    fake.aad.lock().unwrap().push(token.clone());
    fake.entra_tokens.fetch_add(1, Ordering::SeqCst);
    axum::Json(
        serde_json::json!({"token_type": "Bearer", "expires_in": 3599, "access_token": token}),
    )
    .into_response()
}

async fn exchange(State(fake): State<Arc<FakeAzure>>, body: String) -> Response {
    let form = form(&body);
    if one(&form, "grant_type") != Some("access_token") {
        return fake.refuse(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be access_token",
        );
    }
    if one(&form, "service") != Some(LOGIN_SERVER) || one(&form, "tenant") != Some(TENANT) {
        return fake.refuse(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "service or tenant does not match the registry",
        );
    }
    let known =
        one(&form, "access_token").is_some_and(|t| fake.aad.lock().unwrap().iter().any(|k| k == t));
    if !known {
        return fake.refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the Entra token is not valid",
        );
    }
    let refresh = format!("acr-refresh.{}", random_hex(24));
    fake.refresh.lock().unwrap().push(refresh.clone());
    axum::Json(serde_json::json!({"refresh_token": refresh})).into_response()
}

async fn registry_token(State(fake): State<Arc<FakeAzure>>, body: String) -> Response {
    let form = form(&body);
    if one(&form, "grant_type") != Some("refresh_token") {
        return fake.refuse(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be refresh_token",
        );
    }
    if one(&form, "service") != Some(LOGIN_SERVER) {
        return fake.refuse(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "service does not match the registry",
        );
    }
    let known = one(&form, "refresh_token")
        .is_some_and(|t| fake.refresh.lock().unwrap().iter().any(|k| k == t));
    if !known {
        return fake.refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the refresh token is not valid",
        );
    }
    let scopes: Vec<String> = form
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.clone())
        .collect();
    let well_formed = !scopes.is_empty()
        && scopes.iter().all(|s| {
            let parts: Vec<&str> = s.splitn(3, ':').collect();
            parts.len() == 3
                && parts[0] == "repository"
                && parts[2]
                    .split(',')
                    .all(|a| matches!(a, "pull" | "push" | "delete"))
        });
    if !well_formed {
        return fake.refuse(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "scopes must be repository:<name>:<actions>",
        );
    }
    fake.scopes.lock().unwrap().extend(scopes.iter().cloned());
    let token = fake.issuer.token_for("acr-service-principal", &scopes);
    axum::Json(serde_json::json!({"access_token": token})).into_response()
}

//! The HTTP API (`/api/v1`, JSON), the health endpoints and the image
//! store's OCI distribution API (`/v2/`).
//!
//! Every error is `{"error": {"code", "message", "path"?}}` with its status;
//! `path` is a JSON pointer into the request body. A resource of another
//! organisation answers 404, like one that does not exist.

mod distribution;
mod integrations;
mod openapi;
mod plans;
mod plugins;
mod registry;
mod releases;
mod services;
mod targets;
mod users;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::server::AppState;
pub use openapi::{ApiDoc, ErrorBody};
pub use releases::KEEP_ALIVE;
use slipway_store::{Principal, Role};

/// The largest request body accepted.
pub const MAX_BODY: usize = 4 << 20;

/// The server's routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/me", get(me))
        .route("/api/v1/openapi.json", get(openapi::document))
        .merge(distribution::routes())
        .merge(integrations::routes())
        .merge(plans::routes())
        .merge(plugins::routes())
        .merge(registry::routes())
        .merge(releases::routes())
        .merge(services::routes())
        .merge(targets::routes())
        .merge(users::routes())
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such resource")
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// An API error with its status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    path: Option<String>,
    /// Where in the body's text, when it is text (a line and a column).
    at: Option<(u32, u32)>,
    /// Every problem, when there are several.
    problems: Vec<Located>,
}

/// One problem of a request body: its pointer, message and, for a text
/// body, its line and column.
#[derive(Debug, Clone)]
pub struct Located {
    /// JSON pointer into the body.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// The line and column, from 1.
    pub at: Option<(u32, u32)>,
}

impl ApiError {
    /// An error with a status, a code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            path: None,
            at: None,
            problems: Vec::new(),
        }
    }

    /// 422 for every problem found, each a JSON pointer and a message; the
    /// first is also the error's own `path` and `message`.
    pub fn problems(problems: Vec<(String, String)>) -> Self {
        ApiError::located(
            problems
                .into_iter()
                .map(|(path, message)| Located {
                    path,
                    message,
                    at: None,
                })
                .collect(),
        )
    }

    /// 422 for every problem found, each with its place; the first is also
    /// the error's own `path`, `message`, `line` and `column`.
    pub fn located(problems: Vec<Located>) -> Self {
        let Some(first) = problems.first().cloned() else {
            return ApiError::invalid("", "invalid");
        };
        ApiError {
            at: first.at,
            problems: if problems.len() > 1 {
                problems
            } else {
                Vec::new()
            },
            ..ApiError::invalid(first.path, first.message)
        }
    }

    /// 422 for the field at `path` of the request body.
    pub fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            path: Some(path.into()),
            ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
        }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not-found", message)
    }

    /// An unexpected failure: logged with its cause, answered with a generic 500.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(path) = self.path {
            error["path"] = json!(path);
        }
        if let Some((line, column)) = self.at {
            error["line"] = json!(line);
            error["column"] = json!(column);
        }
        if !self.problems.is_empty() {
            error["problems"] = self
                .problems
                .into_iter()
                .map(|p| {
                    let mut problem = json!({"path": p.path, "message": p.message});
                    if let Some((line, column)) = p.at {
                        problem["line"] = json!(line);
                        problem["column"] = json!(column);
                    }
                    problem
                })
                .collect();
        }
        (self.status, Json(json!({ "error": error }))).into_response()
    }
}

/// The authenticated caller of a request: its user and organisation, from
/// the bearer token.
pub struct Caller(pub Principal);

impl std::ops::Deref for Caller {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let unauthorized =
            |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("an `Authorization: Bearer <token>` header is required"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
        state
            .store
            .authenticate(token.trim())
            .map_err(ApiError::internal)?
            .map(Caller)
            .ok_or_else(|| unauthorized("unknown token"))
    }
}

impl Caller {
    /// 403 unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.user.role) {
            return Ok(());
        }
        let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "the `{}` role cannot do this; it needs {}",
                self.user.role.as_str(),
                names.join(" or ")
            ),
        ))
    }
}

/// Roles that change things.
pub const WRITERS: &[Role] = &[Role::OrgAdmin, Role::ApiProvider];

/// A request body and its content type, within [`MAX_BODY`].
pub struct Payload {
    /// The body.
    pub bytes: Bytes,
    /// Its `Content-Type`, without parameters.
    pub content_type: String,
}

impl<S: Send + Sync> FromRequest<S> for Payload {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .unwrap_or("application/json")
            .trim()
            .to_ascii_lowercase();
        let bytes = Bytes::from_request(request, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    e.status(),
                    "too-large",
                    format!("the body is larger than {MAX_BODY} bytes"),
                )
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "bad-request", e.body_text())
            }
        })?;
        Ok(Payload {
            bytes,
            content_type,
        })
    }
}

impl Payload {
    /// The body as JSON of type `T`: 400 when it is not JSON, 422 with the
    /// field's pointer when it does not fit.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        let mut de = serde_json::Deserializer::from_slice(&self.bytes);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let inner = e.inner();
            if inner.is_syntax() || inner.is_eof() {
                return ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad-json",
                    format!("the body is not JSON: {inner}"),
                );
            }
            let message = inner.to_string();
            let message = message
                .split(" at line ")
                .next()
                .unwrap_or_default()
                .to_string();
            let path = slipway_flow::pointer::locate(e.path(), &message);
            ApiError::invalid(path, message)
        })
    }
}

/// Path parameters of type `T` (axum's `Path`); 400 with the JSON error
/// when they do not fit, e.g. `/users/-1`.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(params)) => Ok(Path(params)),
            Err(rejection) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad-path",
                rejection.body_text(),
            )),
        }
    }
}

/// Query parameters of type `T`; 400 naming the parameter when they do not fit.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Params)
            .map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad-query",
                    format!("query parameter `{}`: {}", e.path(), e.inner()),
                )
            })
    }
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, Json(json!({"ready": true}))).into_response()
    } else {
        let body = json!({"ready": false, "waiting_for": "plugins"});
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// Who the caller is: the CLI checks a login with it.
#[utoipa::path(get, path = "/api/v1/me", tag = "users",
    responses((status = 200, body = Principal), (status = 401, body = ErrorBody)))]
async fn me(principal: Caller) -> Json<Principal> {
    Json(principal.0)
}

//! Integrations, their canvas versions, and validation (the packaging stage
//! without a release).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use slipway_runtime::kinds::Diagnostic;
use utoipa::ToSchema;

use super::{ApiError, Caller, ErrorBody, Path, Payload, WRITERS};
use crate::server::AppState;
use slipway_domain::canvases::OrganisationCanvases;
use slipway_flow::FlowDocument;
use slipway_flow::canvas::{Canvas, Format, SubflowRef};
use slipway_flow::package::Packager;
use slipway_store::{Integration, IntegrationError, Principal};

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/integrations", post(create).get(list))
        .route("/api/v1/integrations/{name}", get(show).delete(delete))
        .route(
            "/api/v1/integrations/{name}/versions",
            post(add_version).get(versions),
        )
        .route(
            "/api/v1/integrations/{name}/versions/{version}",
            get(version),
        )
        .route(
            "/api/v1/integrations/{name}/versions/{version}/validate",
            post(validate),
        )
}

impl From<IntegrationError> for ApiError {
    fn from(err: IntegrationError) -> Self {
        match err {
            IntegrationError::Exists(_) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", err.to_string())
            }
            IntegrationError::NotFound(_) => ApiError::not_found(err.to_string()),
            IntegrationError::Store(e) => ApiError::internal(e),
        }
    }
}

/// A new integration.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewIntegration {
    /// 1 to 64 lowercase letters, digits and dashes, starting with a letter.
    #[schema(pattern = "^[a-z][a-z0-9-]{0,63}$")]
    name: String,
}

/// The version a canvas was stored as.
#[derive(Serialize, ToSchema)]
pub(super) struct VersionCreated {
    integration: String,
    version: u32,
}

/// One version of an integration.
#[derive(Serialize, ToSchema)]
pub(super) struct VersionEntry {
    version: u32,
}

/// What the packaging stage found.
#[derive(Serialize, ToSchema)]
pub(super) struct Validation {
    /// No problems found.
    valid: bool,
    /// Every problem, each with a JSON pointer into the canvas.
    #[schema(value_type = Vec<slipway_store::Diagnostic>)]
    diagnostics: Vec<Diagnostic>,
    /// The flow document the engine would run, when valid.
    flow: Option<FlowDocument>,
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Create an integration.
#[utoipa::path(post, path = "/api/v1/integrations", tag = "integrations", request_body = NewIntegration,
    responses((status = 201, body = Integration), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn create(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    payload: Payload,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(WRITERS)?;
    let body: NewIntegration = payload.json()?;
    if !valid_name(&body.name) {
        return Err(ApiError::invalid(
            "/name",
            format!(
                "invalid name `{}`: use 1 to 64 lowercase letters, digits and dashes, starting with a letter",
                body.name
            ),
        ));
    }
    let integration = state
        .store
        .create_integration(principal.organisation.id, &body.name)?;
    Ok((StatusCode::CREATED, Json(integration)))
}

/// The organisation's integrations.
#[utoipa::path(get, path = "/api/v1/integrations", tag = "integrations",
    responses((status = 200, body = Vec<Integration>), (status = 401, body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    principal: Caller,
) -> Result<Json<Vec<Integration>>, ApiError> {
    Ok(Json(
        state
            .store
            .integrations(principal.organisation.id)
            .map_err(ApiError::internal)?,
    ))
}

/// One integration.
#[utoipa::path(get, path = "/api/v1/integrations/{name}", tag = "integrations", params(("name" = String, Path)),
    responses((status = 200, body = Integration), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn show(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path(name): Path<String>,
) -> Result<Json<Integration>, ApiError> {
    Ok(Json(
        state.store.integration(principal.organisation.id, &name)?,
    ))
}

/// Delete an integration and its canvases.
#[utoipa::path(delete, path = "/api/v1/integrations/{name}", tag = "integrations", params(("name" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn delete(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(WRITERS)?;
    state
        .store
        .delete_integration(principal.organisation.id, &name)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Store a canvas (JSON or YAML) as the next immutable version.
#[utoipa::path(post, path = "/api/v1/integrations/{name}/versions", tag = "integrations", params(("name" = String, Path)),
    request_body(content((Canvas = "application/json"), (Canvas = "application/yaml"))),
    responses((status = 201, body = VersionCreated), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody),
              (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn add_version(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path(name): Path<String>,
    payload: Payload,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(WRITERS)?;
    let format = match payload.content_type.as_str() {
        "application/json" => Format::Json,
        "application/yaml" | "application/x-yaml" | "text/yaml" => Format::Yaml,
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                format!("a canvas is application/json or application/yaml, not {other}"),
            ));
        }
    };
    let canvas =
        Canvas::parse(&payload.bytes, format).map_err(|e| ApiError::invalid(e.path, e.message))?;
    let version = state
        .store
        .add_canvas(principal.organisation.id, &name, &canvas)?;
    Ok((
        StatusCode::CREATED,
        Json(VersionCreated {
            integration: name,
            version,
        }),
    ))
}

/// The integration's versions.
#[utoipa::path(get, path = "/api/v1/integrations/{name}/versions", tag = "integrations", params(("name" = String, Path)),
    responses((status = 200, body = Vec<VersionEntry>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn versions(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path(name): Path<String>,
) -> Result<Json<Vec<VersionEntry>>, ApiError> {
    let integration = state.store.integration(principal.organisation.id, &name)?;
    Ok(Json(
        (1..=integration.latest_version)
            .map(|version| VersionEntry { version })
            .collect(),
    ))
}

/// The integration and one of its canvases, or 404 naming what is missing.
fn find(
    state: &AppState,
    principal: &Principal,
    name: &str,
    version: u32,
) -> Result<(Integration, Canvas), ApiError> {
    let integration = state.store.integration(principal.organisation.id, name)?;
    match state
        .store
        .canvas(&integration, version)
        .map_err(ApiError::internal)?
    {
        Some(canvas) => Ok((integration, canvas)),
        None => Err(ApiError::not_found(format!(
            "integration `{name}` has no version {version}"
        ))),
    }
}

/// One canvas version, as stored.
#[utoipa::path(get, path = "/api/v1/integrations/{name}/versions/{version}", tag = "integrations",
    params(("name" = String, Path), ("version" = u32, Path)),
    responses((status = 200, body = Canvas), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn version(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path((name, version)): Path<(String, u32)>,
) -> Result<Json<Canvas>, ApiError> {
    Ok(Json(find(&state, &principal, &name, version)?.1))
}

/// Runs the packaging stage without a release: the diagnostics, and the
/// flow document when the canvas is valid.
#[utoipa::path(post, path = "/api/v1/integrations/{name}/versions/{version}/validate", tag = "integrations",
    params(("name" = String, Path), ("version" = u32, Path)),
    responses((status = 200, body = Validation), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn validate(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path((name, version)): Path<(String, u32)>,
) -> Result<Json<Validation>, ApiError> {
    let (_, canvas) = find(&state, &principal, &name, version)?;
    let canvases = OrganisationCanvases::new(&state.store, principal.organisation.id);
    let root = SubflowRef {
        integration: name,
        version,
    };
    let plugins = state.plugins.of(principal.organisation.id);
    let result = Packager::new(&plugins, &canvases)
        .package(&root, &canvas)
        .await;
    Ok(Json(match result {
        Ok(flow) => Validation {
            valid: true,
            diagnostics: Vec::new(),
            flow: Some(flow),
        },
        Err(diagnostics) => Validation {
            valid: false,
            diagnostics,
            flow: None,
        },
    }))
}

//! Integrations, their canvas versions, and validation (the packaging stage
//! without a release).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, Payload, WRITERS};
use crate::packaging::Packager;
use crate::packaging::canvas::{Canvas, Format, SubflowRef};
use crate::server::AppState;
use crate::store::{Integration, IntegrationError, Principal};

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewIntegration {
    name: String,
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

async fn create(
    State(state): State<Arc<AppState>>,
    principal: Principal,
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

async fn list(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> Result<Json<Vec<Integration>>, ApiError> {
    Ok(Json(
        state
            .store
            .integrations(principal.organisation.id)
            .map_err(ApiError::internal)?,
    ))
}

async fn show(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<Integration>, ApiError> {
    Ok(Json(
        state.store.integration(principal.organisation.id, &name)?,
    ))
}

async fn delete(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(WRITERS)?;
    state
        .store
        .delete_integration(principal.organisation.id, &name)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn add_version(
    State(state): State<Arc<AppState>>,
    principal: Principal,
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
        Json(json!({"integration": name, "version": version})),
    ))
}

async fn versions(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let integration = state.store.integration(principal.organisation.id, &name)?;
    let list: Vec<Value> = (1..=integration.latest_version)
        .map(|v| json!({"version": v}))
        .collect();
    Ok(Json(json!(list)))
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

async fn version(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path((name, version)): Path<(String, u32)>,
) -> Result<Json<Canvas>, ApiError> {
    Ok(Json(find(&state, &principal, &name, version)?.1))
}

/// Runs the packaging stage: the diagnostics, and the flow document when valid.
async fn validate(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path((name, version)): Path<(String, u32)>,
) -> Result<Json<Value>, ApiError> {
    let (_, canvas) = find(&state, &principal, &name, version)?;
    let canvases = state.store.canvases_of(principal.organisation.id);
    let root = SubflowRef {
        integration: name,
        version,
    };
    let plugins = state.plugins.of(principal.organisation.id);
    let result = Packager::new(&plugins, &canvases)
        .package(&root, &canvas)
        .await;
    Ok(Json(match result {
        Ok(flow) => json!({"valid": true, "diagnostics": [], "flow": flow}),
        Err(diagnostics) => json!({"valid": false, "diagnostics": diagnostics, "flow": null}),
    }))
}

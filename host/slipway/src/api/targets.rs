//! Deploy targets: where the organisation's services run. Read by anyone in
//! the organisation (secrets by name only), changed by an org-admin.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use super::{ApiError, Caller, ErrorBody, Path, Payload};
use crate::server::AppState;
use slipway_domain::targets::{Refused, TargetSettings};
use slipway_store::{Connection, Role, StoredTarget, TargetChangeRecord, TargetError};

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/targets", get(list))
        .route("/api/v1/targets/{name}", get(show).put(set).delete(remove))
        .route("/api/v1/targets/{name}/changes", get(changes))
}

/// A target as the API shows it: secrets by name only.
#[derive(Serialize, ToSchema)]
pub(super) struct TargetView {
    name: String,
    plugin: String,
    version: String,
    /// The plugin version its settings were checked with, `name@version`.
    resolved: String,
    settings: serde_json::Value,
    connection: Connection,
    secrets: Vec<String>,
    /// Where the host keeps its objects apart: the prefix of every Docker
    /// container, volume and network name.
    namespace: Option<String>,
    /// A user name, or `server` for the built-in `local-docker`.
    changed_by: String,
    changed_ms: u64,
}

impl TargetView {
    fn of(state: &AppState, organisation: u64, t: StoredTarget) -> Self {
        TargetView {
            namespace: state
                .targets
                .namespace(organisation, &t.name, &t.connection),
            name: t.name,
            plugin: t.plugin,
            version: t.version,
            resolved: t.resolved,
            settings: t.settings,
            connection: t.connection,
            secrets: t.secrets.into_keys().collect(),
            changed_by: t.changed_by,
            changed_ms: t.changed_ms,
        }
    }
}

const NAME: &str = "The target's name, a DNS label";

/// The organisation's targets, the built-in `local-docker` included when the
/// server's Docker Engine answers.
#[utoipa::path(get, path = "/api/v1/targets", tag = "targets",
    responses((status = 200, body = Vec<TargetView>), (status = 401, body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    principal: Caller,
) -> Result<Json<Vec<TargetView>>, ApiError> {
    let targets = state
        .targets
        .list(principal.organisation.id)
        .map_err(ApiError::internal)?;
    let organisation = principal.organisation.id;
    Ok(Json(
        targets
            .into_iter()
            .map(|t| TargetView::of(&state, organisation, t))
            .collect(),
    ))
}

/// One target.
#[utoipa::path(get, path = "/api/v1/targets/{name}", tag = "targets", params(("name" = String, Path, description = NAME)),
    responses((status = 200, body = TargetView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn show(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path(name): Path<String>,
) -> Result<Json<TargetView>, ApiError> {
    state
        .targets
        .get(principal.organisation.id, &name)
        .map_err(ApiError::internal)?
        .map(|t| Json(TargetView::of(&state, principal.organisation.id, t)))
        .ok_or_else(|| ApiError::not_found(format!("no target `{name}`")))
}

/// Creates or changes a target once its plugin accepted the settings.
#[utoipa::path(put, path = "/api/v1/targets/{name}", tag = "targets", params(("name" = String, Path, description = NAME)), request_body = TargetSettings,
    responses((status = 200, body = TargetView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn set(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path(name): Path<String>,
    payload: Payload,
) -> Result<Json<TargetView>, ApiError> {
    principal.require(&[Role::OrgAdmin])?;
    let settings: TargetSettings = payload.json()?;
    let stored = state
        .targets
        .set(
            principal.organisation.id,
            &name,
            settings,
            &principal.user.name,
        )
        .await
        .map_err(|refused| match refused {
            Refused::Invalid { path, message } => ApiError::invalid(path, message),
            Refused::Failed(err) => ApiError::internal(err),
        })?;
    Ok(Json(TargetView::of(
        &state,
        principal.organisation.id,
        stored,
    )))
}

/// Deletes a target no service runs on.
#[utoipa::path(delete, path = "/api/v1/targets/{name}", tag = "targets", params(("name" = String, Path, description = NAME)),
    responses((status = 204, description = "deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, description = "services run on it", body = ErrorBody)))]
pub(super) async fn remove(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(&[Role::OrgAdmin])?;
    match state
        .targets
        .delete(principal.organisation.id, &name, &principal.user.name)
    {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(TargetError::NotFound(_)) => Err(ApiError::not_found(format!("no target `{name}`"))),
        Err(TargetError::InUse(ids)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "in-use",
            format!("services {ids:?} run on the target: delete them first"),
        )),
        Err(TargetError::Store(e)) => Err(ApiError::internal(e)),
    }
}

/// Every change of a target, oldest first (secrets by name only); a
/// deleted target keeps its history.
#[utoipa::path(get, path = "/api/v1/targets/{name}/changes", tag = "targets", params(("name" = String, Path, description = NAME)),
    responses((status = 200, body = Vec<TargetChangeRecord>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn changes(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path(name): Path<String>,
) -> Result<Json<Vec<TargetChangeRecord>>, ApiError> {
    state
        .targets
        .changes(principal.organisation.id, &name)
        .map_err(ApiError::internal)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no target `{name}`")))
}

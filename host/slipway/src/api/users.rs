//! Users and their API tokens: managed by the organisation's admins.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, Payload};
use crate::server::AppState;
use crate::store::{Principal, Role, User};

const ADMINS: &[Role] = &[Role::OrgAdmin];

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/users", post(create).get(list))
        .route("/api/v1/users/{id}", delete(remove))
        .route("/api/v1/users/{id}/tokens", post(new_token).delete(revoke))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    role: Role,
}

fn find(state: &AppState, principal: &Principal, id: u64) -> Result<User, ApiError> {
    state
        .store
        .user(principal.organisation.id, id)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("no user {id}")))
}

async fn create(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    payload: Payload,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(ADMINS)?;
    let body: NewUser = payload.json()?;
    if body.name.trim().is_empty() || body.name.len() > 128 {
        return Err(ApiError::invalid("/name", "must be 1 to 128 characters"));
    }
    let (user, token) = state
        .store
        .create_user(principal.organisation.id, body.name.trim(), body.role)
        .map_err(ApiError::internal)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"user": user, "token": token})),
    ))
}

async fn list(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> Result<Json<Vec<User>>, ApiError> {
    principal.require(ADMINS)?;
    Ok(Json(
        state
            .store
            .users(principal.organisation.id)
            .map_err(ApiError::internal)?,
    ))
}

async fn remove(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    principal.require(ADMINS)?;
    let user = find(&state, &principal, id)?;
    if user.id == principal.user.id {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "you cannot delete yourself",
        ));
    }
    state
        .store
        .revoke(&user, true)
        .map_err(ApiError::internal)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn new_token(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<u64>,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(ADMINS)?;
    let user = find(&state, &principal, id)?;
    let token = state
        .store
        .create_token(&user)
        .map_err(ApiError::internal)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"user": user.id, "token": token})),
    ))
}

async fn revoke(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path(id): Path<u64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    principal.require(ADMINS)?;
    let user = find(&state, &principal, id)?;
    let revoked = state
        .store
        .revoke(&user, false)
        .map_err(ApiError::internal)?;
    Ok(Json(json!({"user": user.id, "revoked": revoked})))
}

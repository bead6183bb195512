//! Users and their API tokens: managed by the organisation's admins.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, Caller, ErrorBody, Path, Payload};
use crate::server::AppState;
use slipway_store::{Principal, Role, User};

const ADMINS: &[Role] = &[Role::OrgAdmin];

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/users", post(create).get(list))
        .route("/api/v1/users/{id}", delete(remove))
        .route("/api/v1/users/{id}/tokens", post(new_token).delete(revoke))
}

/// A new user of the caller's organisation.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewUser {
    /// 1 to 128 characters, not only spaces.
    #[schema(min_length = 1, max_length = 128, pattern = "\\S")]
    name: String,
    role: Role,
}

/// A user made, with its first token (shown once).
#[derive(Serialize, ToSchema)]
pub(super) struct UserMade {
    user: User,
    token: String,
}

/// A new token of a user (shown once).
#[derive(Serialize, ToSchema)]
pub(super) struct TokenMade {
    user: u64,
    token: String,
}

/// How many tokens of a user were revoked.
#[derive(Serialize, ToSchema)]
pub(super) struct Revoked {
    user: u64,
    revoked: usize,
}

fn find(state: &AppState, principal: &Principal, id: u64) -> Result<User, ApiError> {
    state
        .store
        .user(principal.organisation.id, id)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(format!("no user {id}")))
}

/// Add a user to the organisation, with a first token.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = UserMade), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn create(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    payload: Payload,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(ADMINS)?;
    let body: NewUser = payload.json()?;
    if body.name.trim().is_empty() || body.name.chars().count() > 128 {
        return Err(ApiError::invalid("/name", "must be 1 to 128 characters"));
    }
    let (user, token) = state
        .store
        .create_user(principal.organisation.id, body.name.trim(), body.role)
        .map_err(ApiError::internal)?;
    Ok((StatusCode::CREATED, Json(UserMade { user, token })))
}

/// The organisation's users.
#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, body = Vec<User>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    principal: Caller,
) -> Result<Json<Vec<User>>, ApiError> {
    principal.require(ADMINS)?;
    Ok(Json(
        state
            .store
            .users(principal.organisation.id)
            .map_err(ApiError::internal)?,
    ))
}

/// Delete a user and revoke its tokens.
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users", params(("id" = u64, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn remove(
    State(state): State<Arc<AppState>>,
    principal: Caller,
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

/// A new API token for a user.
#[utoipa::path(post, path = "/api/v1/users/{id}/tokens", tag = "users", params(("id" = u64, Path)),
    responses((status = 201, body = TokenMade), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn new_token(
    State(state): State<Arc<AppState>>,
    principal: Caller,
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
        Json(TokenMade {
            user: user.id,
            token,
        }),
    ))
}

/// Revoke every token of a user.
#[utoipa::path(delete, path = "/api/v1/users/{id}/tokens", tag = "users", params(("id" = u64, Path)),
    responses((status = 200, body = Revoked), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn revoke(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path(id): Path<u64>,
) -> Result<Json<Revoked>, ApiError> {
    principal.require(ADMINS)?;
    let user = find(&state, &principal, id)?;
    let revoked = state
        .store
        .revoke(&user, false)
        .map_err(ApiError::internal)?;
    Ok(Json(Revoked {
        user: user.id,
        revoked,
    }))
}

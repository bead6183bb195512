//! Services on the organisation's targets: created, revised and read by
//! anyone who may release (viewers read), and operated on (deploy, start,
//! stop, restart, delete) through jobs that answer 202.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, Caller, ErrorBody, Params, Path, Payload, WRITERS};
use crate::server::AppState;
use slipway_domain::services::spec::{Problem, ServiceSpec};
use slipway_domain::services::{NewService, Operation, OperationRequest, Refused, ServiceView};
use slipway_store::{Job, Revision};

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/services", get(list).post(create))
        .route(
            "/api/v1/services/{id}",
            get(show).put(revise).delete(remove),
        )
        .route("/api/v1/services/{id}/revisions", get(revisions))
        .route("/api/v1/services/{id}/logs", get(logs))
        .route("/api/v1/services/{id}/operations", post(operate))
        .route("/api/v1/services/{id}/operations/{job}", get(operation))
}

/// How an operation goes over the containers or pods.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub(super) enum Containers {
    /// All at once.
    #[default]
    Parallel,
    /// One at a time, each healthy before the next.
    Sequential,
}

/// An operation to run on a service.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct OperationBody {
    /// `deploy` (the newest revision), `start`, `stop` or `restart`.
    operation: Operation,
    /// `parallel` (the default) or `sequential`.
    #[serde(default)]
    containers: Containers,
    /// Labels put on the containers or pods deployed.
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

fn refused(e: Refused) -> ApiError {
    match e {
        Refused::Invalid(problems) => ApiError::problems(
            problems
                .into_iter()
                .map(|Problem { path, message }| (path, message))
                .collect(),
        ),
        Refused::NotFound(id) => ApiError::not_found(format!("no service {id}")),
        Refused::Busy(job) => ApiError::new(
            StatusCode::CONFLICT,
            "busy",
            format!("operation {job} is working on the service; wait for it to end"),
        ),
        Refused::TooManyStreams => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too-many-streams",
            Refused::TooManyStreams.to_string(),
        ),
        Refused::Target(message) => ApiError::new(StatusCode::BAD_GATEWAY, "target", message),
        Refused::Store(e) => ApiError::internal(e),
    }
}

fn accepted(job: Job) -> impl IntoResponse {
    let location = format!("/api/v1/services/{}/operations/{}", job.subject, job.id);
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(job),
    )
}

const ID: &str = "The service's id";

/// Creates a service; nothing runs until it is deployed.
#[utoipa::path(post, path = "/api/v1/services", tag = "services", request_body = ServiceSpec,
    responses((status = 201, body = ServiceView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn create(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    payload: Payload,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(WRITERS)?;
    let body: serde_json::Value = payload.json()?;
    let new = ServiceSpec::parse(body)
        .and_then(NewService::from_spec)
        .map_err(|problems| refused(Refused::Invalid(problems)))?;
    let view = state
        .services
        .create(principal.organisation.id, new, &principal.user.name)
        .map_err(refused)?;
    let location = format!("/api/v1/services/{}", view.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(view),
    ))
}

/// The organisation's services, oldest first.
#[utoipa::path(get, path = "/api/v1/services", tag = "services",
    responses((status = 200, body = Vec<ServiceView>), (status = 401, body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    principal: Caller,
) -> Result<Json<Vec<ServiceView>>, ApiError> {
    Ok(Json(
        state
            .services
            .list(principal.organisation.id)
            .map_err(refused)?,
    ))
}

/// A service with what its target shows now.
#[utoipa::path(get, path = "/api/v1/services/{id}", tag = "services", params(("id" = u64, Path, description = ID)),
    responses((status = 200, body = ServiceView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn show(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path(id): Path<u64>,
) -> Result<Json<ServiceView>, ApiError> {
    Ok(Json(
        state
            .services
            .show(principal.organisation.id, id)
            .await
            .map_err(refused)?,
    ))
}

/// Gives a service new settings, as its next revision; deploy applies it.
#[utoipa::path(put, path = "/api/v1/services/{id}", tag = "services", params(("id" = u64, Path, description = ID)), request_body = ServiceSpec,
    responses((status = 200, body = ServiceView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn revise(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path(id): Path<u64>,
    payload: Payload,
) -> Result<Json<ServiceView>, ApiError> {
    principal.require(WRITERS)?;
    let body: serde_json::Value = payload.json()?;
    let spec = ServiceSpec::parse(body).map_err(|problems| refused(Refused::Invalid(problems)))?;
    Ok(Json(
        state
            .services
            .revise(principal.organisation.id, id, spec, &principal.user.name)
            .map_err(refused)?,
    ))
}

/// Removes everything of a service from its target, then the service.
#[utoipa::path(delete, path = "/api/v1/services/{id}", tag = "services", params(("id" = u64, Path, description = ID)),
    responses((status = 202, body = Job, headers(("location" = String, description = "The operation's URL"))), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn remove(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path(id): Path<u64>,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(WRITERS)?;
    let job = state
        .services
        .operate(
            principal.organisation.id,
            id,
            Operation::Delete,
            OperationRequest::default(),
            &principal.user.name,
        )
        .map_err(refused)?;
    Ok(accepted(job))
}

/// Which logs to read.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct LogQuery {
    /// Keep the stream open for what the containers write next.
    #[serde(default)]
    follow: bool,
    /// Start from each container's last this many lines (100 when left out).
    #[param(minimum = 0, maximum = 10000)]
    tail: Option<u32>,
}

/// What the service's containers write, each line after its container's
/// name in brackets (plain text; `follow=true` keeps it open).
#[utoipa::path(get, path = "/api/v1/services/{id}/logs", tag = "services", params(("id" = u64, Path, description = ID), LogQuery),
    responses((status = 200, content_type = "text/plain", body = String), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 502, description = "the target cannot be read", body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn logs(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path(id): Path<u64>,
    Params(query): Params<LogQuery>,
) -> Result<impl IntoResponse, ApiError> {
    use futures::StreamExt;
    let tail = query.tail.unwrap_or(100);
    if tail > slipway_domain::services::MAX_LOG_TAIL {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-query",
            format!("tail is at most {}", slipway_domain::services::MAX_LOG_TAIL),
        ));
    }
    let lines = state
        .services
        .logs(principal.organisation.id, id, tail, query.follow)
        .await
        .map_err(refused)?;
    let body = axum::body::Body::from_stream(
        lines.map(|line| Ok::<_, std::convert::Infallible>(format!("{line}\n"))),
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body))
}

/// Every revision of a service, oldest first.
#[utoipa::path(get, path = "/api/v1/services/{id}/revisions", tag = "services", params(("id" = u64, Path, description = ID)),
    responses((status = 200, body = Vec<Object>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn revisions(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path(id): Path<u64>,
) -> Result<Json<Vec<Revision>>, ApiError> {
    Ok(Json(
        state
            .services
            .revisions(principal.organisation.id, id)
            .map_err(refused)?,
    ))
}

/// Runs an operation on a service, in the background.
#[utoipa::path(post, path = "/api/v1/services/{id}/operations", tag = "services", params(("id" = u64, Path, description = ID)), request_body = OperationBody,
    responses((status = 202, body = Job, headers(("location" = String, description = "The operation's URL"))), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn operate(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path(id): Path<u64>,
    payload: Payload,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(WRITERS)?;
    let body: OperationBody = payload.json()?;
    if body.operation == Operation::Delete {
        return Err(ApiError::invalid(
            "/operation",
            "a service is deleted with DELETE /api/v1/services/{id}",
        ));
    }
    let request = OperationRequest {
        sequential: matches!(body.containers, Containers::Sequential),
        labels: body.labels,
        source: None,
    };
    let job = state
        .services
        .operate(
            principal.organisation.id,
            id,
            body.operation,
            request,
            &principal.user.name,
        )
        .map_err(refused)?;
    Ok(accepted(job))
}

/// An operation: its status, steps, what it applied and the health reached.
#[utoipa::path(get, path = "/api/v1/services/{id}/operations/{job}", tag = "services",
    params(("id" = u64, Path, description = ID), ("job" = u64, Path, description = "The operation's job id")),
    responses((status = 200, body = Job), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn operation(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path((id, job)): Path<(u64, u64)>,
) -> Result<Json<Job>, ApiError> {
    state
        .services
        .operation(principal.organisation.id, job)
        .map_err(ApiError::internal)?
        .filter(|j| j.subject == id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no operation {job} of service {id}")))
}

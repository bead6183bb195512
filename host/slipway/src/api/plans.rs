//! Deploy plans and their executions: plans stored and run by anyone who
//! may release (viewers read), executions paused, stopped, resumed and
//! reported on.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ApiError, Caller, ErrorBody, Located, Params, Path, Payload, WRITERS};
use crate::server::AppState;
use slipway_domain::plans::{ExecutionEvent, ExecutionView, PlanDocument, PlanView, Refused};
use slipway_store::JobRequest;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/plans", get(list).post(create))
        .route("/api/v1/plans/{id}", get(show).delete(remove))
        .route("/api/v1/plans/{id}/executions", post(run))
        .route("/api/v1/executions", get(executions))
        .route(
            "/api/v1/executions/{id}",
            get(execution).delete(remove_execution),
        )
        .route("/api/v1/executions/{id}/pause", post(pause))
        .route("/api/v1/executions/{id}/stop", post(stop))
        .route("/api/v1/executions/{id}/resume", post(resume))
        .route("/api/v1/executions/{id}/rollback", post(rollback))
        .route("/api/v1/executions/{id}/report", get(report))
        .route("/api/v1/executions/{id}/events", get(events))
}

fn refused(e: Refused) -> ApiError {
    let conflict = |code, e: &Refused| ApiError::new(StatusCode::CONFLICT, code, e.to_string());
    match e {
        Refused::Invalid(problems) => ApiError::located(
            problems
                .into_iter()
                .map(|p| Located {
                    path: p.path,
                    message: p.message,
                    at: Some((p.line, p.column)),
                })
                .collect(),
        ),
        Refused::NoPlan(_) | Refused::NoExecution(_) => ApiError::not_found(e.to_string()),
        Refused::Running(_) | Refused::Held { .. } => conflict("busy", &e),
        Refused::Changed(_) => conflict("changed", &e),
        Refused::State(_) => conflict("state", &e),
        Refused::TooManyStreams => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too-many-streams",
            e.to_string(),
        ),
        Refused::Unavailable(_) => ApiError::invalid("/deployPlanItems", e.to_string()),
        Refused::Store(e) => ApiError::internal(e),
    }
}

const ID: &str = "The plan's id";
const EXECUTION: &str = "The execution's id";

/// Checks and stores a deploy plan: seed 002's YAML (`application/yaml`)
/// or the same as JSON. Every problem is reported at once, each with its
/// pointer, line and column; nothing is stored from a plan with problems.
#[utoipa::path(post, path = "/api/v1/plans", tag = "plans",
    request_body(content((PlanDocument = "application/yaml"), (PlanDocument = "application/json"))),
    responses((status = 201, body = PlanView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn create(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    payload: Payload,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(WRITERS)?;
    let text = std::str::from_utf8(&payload.bytes).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "a plan is UTF-8 text",
        )
    })?;
    let view = state
        .plans
        .create(principal.organisation.id, text, &principal.user.name)
        .map_err(refused)?;
    let location = format!("/api/v1/plans/{}", view.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(view),
    ))
}

/// The organisation's plans, oldest first.
#[utoipa::path(get, path = "/api/v1/plans", tag = "plans",
    responses((status = 200, body = Vec<PlanView>), (status = 401, body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    principal: Caller,
) -> Result<Json<Vec<PlanView>>, ApiError> {
    Ok(Json(
        state
            .plans
            .list(principal.organisation.id)
            .map_err(refused)?,
    ))
}

/// A plan as stored: parsed, with its defaults, and as it was sent.
#[utoipa::path(get, path = "/api/v1/plans/{id}", tag = "plans", params(("id" = u64, Path, description = ID)),
    responses((status = 200, body = PlanView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn show(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path(id): Path<u64>,
) -> Result<Json<PlanView>, ApiError> {
    Ok(Json(
        state
            .plans
            .show(principal.organisation.id, id)
            .map_err(refused)?,
    ))
}

/// Deletes a plan, unless an execution of it has not ended; its
/// executions stay.
#[utoipa::path(delete, path = "/api/v1/plans/{id}", tag = "plans", params(("id" = u64, Path, description = ID)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn remove(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    principal.require(WRITERS)?;
    state
        .plans
        .delete(principal.organisation.id, id, &principal.user.name)
        .map_err(refused)?;
    Ok(StatusCode::NO_CONTENT)
}

fn accepted(view: ExecutionView) -> Response {
    let location = format!("/api/v1/executions/{}", view.id);
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(view),
    )
        .into_response()
}

/// Runs a plan: waves by priority, highest first, the services of a wave
/// at the same time. Refused (409) while another execution that has not
/// ended holds one of its services.
#[utoipa::path(post, path = "/api/v1/plans/{id}/executions", tag = "plans", params(("id" = u64, Path, description = ID)),
    responses((status = 202, body = ExecutionView, headers(("location" = String, description = "The execution's URL"))), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn run(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path(id): Path<u64>,
) -> Result<Response, ApiError> {
    principal.require(WRITERS)?;
    let view = state
        .plans
        .run(principal.organisation.id, id, &principal.user.name)
        .map_err(refused)?;
    Ok(accepted(view))
}

/// The organisation's executions, oldest first.
#[utoipa::path(get, path = "/api/v1/executions", tag = "plans",
    responses((status = 200, body = Vec<ExecutionView>), (status = 401, body = ErrorBody)))]
pub(super) async fn executions(
    State(state): State<Arc<AppState>>,
    principal: Caller,
) -> Result<Json<Vec<ExecutionView>>, ApiError> {
    Ok(Json(
        state
            .plans
            .executions(principal.organisation.id)
            .map_err(refused)?,
    ))
}

/// An execution: its status, waves, services and timeline.
#[utoipa::path(get, path = "/api/v1/executions/{id}", tag = "plans", params(("id" = u64, Path, description = EXECUTION)),
    responses((status = 200, body = ExecutionView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn execution(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path(id): Path<u64>,
) -> Result<Json<ExecutionView>, ApiError> {
    Ok(Json(
        state
            .plans
            .execution(principal.organisation.id, id)
            .map_err(refused)?,
    ))
}

/// Deletes an execution, unless it is running, pausing or stopping.
#[utoipa::path(delete, path = "/api/v1/executions/{id}", tag = "plans", params(("id" = u64, Path, description = EXECUTION)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn remove_execution(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path(id): Path<u64>,
) -> Result<StatusCode, ApiError> {
    principal.require(WRITERS)?;
    state
        .plans
        .delete_execution(principal.organisation.id, id, &principal.user.name)
        .map_err(refused)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn ask(
    state: &AppState,
    principal: &Caller,
    id: u64,
    request: JobRequest,
) -> Result<Response, ApiError> {
    principal.require(WRITERS)?;
    let view = state
        .plans
        .request(principal.organisation.id, id, request, &principal.user.name)
        .map_err(refused)?;
    Ok(accepted(view))
}

/// Pauses an execution: the services being deployed finish, no more
/// start (`pausing`, then `paused`).
#[utoipa::path(post, path = "/api/v1/executions/{id}/pause", tag = "plans", params(("id" = u64, Path, description = EXECUTION)),
    responses((status = 202, body = ExecutionView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn pause(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path(id): Path<u64>,
) -> Result<Response, ApiError> {
    ask(&state, &principal, id, JobRequest::Pause).await
}

/// Stops an execution for good: the services being deployed finish, no
/// more start (`stopping`, then `stopped`).
#[utoipa::path(post, path = "/api/v1/executions/{id}/stop", tag = "plans", params(("id" = u64, Path, description = EXECUTION)),
    responses((status = 202, body = ExecutionView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn stop(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path(id): Path<u64>,
) -> Result<Response, ApiError> {
    ask(&state, &principal, id, JobRequest::Stop).await
}

/// How to resume or roll back.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ResumeQuery {
    /// Go on even though services changed since the execution saw them
    /// (seed 002 warns this can deploy the wrong version).
    #[serde(default)]
    force: bool,
}

/// Resumes a paused or interrupted execution with the services not yet
/// done; 409 `changed` when some of them changed since, unless `force`.
#[utoipa::path(post, path = "/api/v1/executions/{id}/resume", tag = "plans", params(("id" = u64, Path, description = EXECUTION), ResumeQuery),
    responses((status = 202, body = ExecutionView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn resume(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path(id): Path<u64>,
    Params(query): Params<ResumeQuery>,
) -> Result<Response, ApiError> {
    principal.require(WRITERS)?;
    let view = state
        .plans
        .resume(
            principal.organisation.id,
            id,
            query.force,
            &principal.user.name,
        )
        .map_err(refused)?;
    Ok(accepted(view))
}

/// Starts an execution that puts back what an ended execution changed:
/// each service it left on another revision back on the one it ran before
/// (a new revision with those settings), in reverse wave order; 409
/// `changed` when some changed since, unless `force`.
#[utoipa::path(post, path = "/api/v1/executions/{id}/rollback", tag = "plans", params(("id" = u64, Path, description = EXECUTION), ResumeQuery),
    responses((status = 202, body = ExecutionView, headers(("location" = String, description = "The rollback's URL"))), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn rollback(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path(id): Path<u64>,
    Params(query): Params<ResumeQuery>,
) -> Result<Response, ApiError> {
    principal.require(WRITERS)?;
    let view = state
        .plans
        .rollback(
            principal.organisation.id,
            id,
            query.force,
            &principal.user.name,
        )
        .map_err(refused)?;
    Ok(accepted(view))
}

/// The report's form.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum Format {
    /// The execution as JSON.
    #[default]
    Json,
    /// Plain text for people.
    Text,
}

/// Which report.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ReportQuery {
    /// `json` (the default) or `text`.
    #[serde(default)]
    #[param(inline)]
    format: Format,
}

/// The execution's report: each service's status, start and end, key
/// messages and revisions, and the timeline; as JSON or as text.
#[utoipa::path(get, path = "/api/v1/executions/{id}/report", tag = "plans", params(("id" = u64, Path, description = EXECUTION), ReportQuery),
    responses((status = 200, content((ExecutionView = "application/json"), (String = "text/plain"))), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn report(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path(id): Path<u64>,
    Params(query): Params<ReportQuery>,
) -> Result<Response, ApiError> {
    let view = state
        .plans
        .execution(principal.organisation.id, id)
        .map_err(refused)?;
    Ok(match query.format {
        Format::Json => Json(view).into_response(),
        Format::Text => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            view.text(),
        )
            .into_response(),
    })
}

/// The execution now, then every change of it (`execution` events, each
/// the execution) and every step of its services' operations (`operation`
/// events), until it ends (Server-Sent Events).
#[utoipa::path(get, path = "/api/v1/executions/{id}/events", tag = "plans", params(("id" = u64, Path, description = EXECUTION)),
    responses((status = 200, content_type = "text/event-stream", body = ExecutionEvent), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn events(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path(id): Path<u64>,
) -> Result<impl IntoResponse, ApiError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures::StreamExt;
    let events = state
        .plans
        .events(principal.organisation.id, id)
        .map_err(refused)?;
    let stream = events.map(|event| {
        let name = match &event {
            ExecutionEvent::Execution(_) => "execution",
            ExecutionEvent::Operation { .. } => "operation",
        };
        let data = serde_json::to_string(&event).unwrap_or_default();
        Ok::<_, std::convert::Infallible>(Event::default().event(name).data(data))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(super::KEEP_ALIVE)))
}

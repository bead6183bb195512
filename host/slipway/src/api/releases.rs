//! Releases: create (202, built in the background), list, show, delete, and a
//! live event stream (Server-Sent Events).

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::Stream;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, Caller, ErrorBody, Params, Path, Payload, WRITERS};
use crate::server::AppState;
use slipway_domain::releases::{Deletion, Refused};
use slipway_store::{Principal, Release, Status, StoreError};

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/releases", post(create).get(list))
        .route("/api/v1/releases/{id}", get(show).delete(remove))
        .route("/api/v1/releases/{id}/events", get(events))
}

/// What to release.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewRelease {
    /// The integration.
    #[schema(pattern = "^[a-z][a-z0-9-]{0,63}$")]
    integration: String,
    /// Its canvas version.
    #[serde(deserialize_with = "slipway_flow::number::u32")]
    #[schema(minimum = 1)]
    version: u32,
    /// Unique among the organisation's releases not deleted: ASCII letters,
    /// digits and `-`, starting with a letter, not ending with `-`.
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[A-Za-z]([A-Za-z0-9-]*[A-Za-z0-9])?$"
    )]
    name: String,
    /// What the release is for.
    #[schema(max_length = 1000)]
    description: Option<String>,
}

/// A release accepted into the queue.
#[derive(Serialize, ToSchema)]
pub(super) struct Accepted {
    id: u64,
    status: Status,
}

/// A release in a list.
#[derive(Serialize, ToSchema)]
pub(super) struct ReleaseSummary {
    id: u64,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    integration: String,
    version: u32,
    status: Status,
    /// When it was asked for, in ms since the Unix epoch.
    created_ms: u64,
}

/// The status change the event stream sends (SSE event `status`, JSON data).
#[derive(Serialize, ToSchema)]
pub(super) struct StatusEvent {
    id: u64,
    status: Status,
    message: String,
}

/// The caller's organisation's release `reference` (an id or a name), or 404.
fn visible(state: &AppState, principal: &Principal, reference: &str) -> Result<Release, ApiError> {
    state
        .releases
        .find(principal.organisation.id, reference)
        .map_err(ApiError::internal)?
        .ok_or_else(|| not_found(reference))
}

fn not_found(reference: &str) -> ApiError {
    ApiError::not_found(format!("no release {reference}"))
}

/// How the release routes name a release.
const REFERENCE: &str = "The release's id, or its name";

/// Release an integration version: accepted at once (202), built in the background.
#[utoipa::path(post, path = "/api/v1/releases", tag = "releases", request_body = NewRelease,
    responses((status = 202, body = Accepted, headers(("location" = String, description = "The release's URL"))),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn create(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    payload: Payload,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(WRITERS)?;
    let body: NewRelease = payload.json()?;
    let new = slipway_store::NewRelease {
        integration: body.integration,
        version: body.version,
        name: body.name,
        description: body.description,
    };
    let release = state
        .releases
        .create(principal.organisation.id, new)
        .map_err(|refused| match refused {
            Refused::Invalid { path, message } => ApiError::invalid(path, message),
            Refused::Store(err) => ApiError::internal(err),
        })?;
    let location = format!("/api/v1/releases/{}", release.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(Accepted {
            id: release.id,
            status: release.status,
        }),
    ))
}

/// Which releases to list.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct Filter {
    /// Only releases with this status.
    status: Option<Status>,
    /// Only releases of this integration.
    integration: Option<String>,
}

/// The organisation's releases, oldest first.
#[utoipa::path(get, path = "/api/v1/releases", tag = "releases", params(Filter),
    responses((status = 200, body = Vec<ReleaseSummary>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Params(filter): Params<Filter>,
) -> Result<Json<Vec<ReleaseSummary>>, ApiError> {
    let releases = state
        .store
        .organisation_releases(principal.organisation.id)
        .map_err(ApiError::internal)?
        .into_iter()
        .filter(|r| filter.status.is_none_or(|s| s == r.status))
        .filter(|r| {
            filter
                .integration
                .as_ref()
                .is_none_or(|i| *i == r.integration)
        })
        .map(|r| ReleaseSummary {
            id: r.id,
            name: r.name,
            description: r.description,
            integration: r.integration,
            version: r.version,
            status: r.status,
            created_ms: r.created_ms,
        })
        .collect();
    Ok(Json(releases))
}

/// A release: status, stage timings, log, problems, the packaged flow.
#[utoipa::path(get, path = "/api/v1/releases/{id}", tag = "releases", params(("id" = String, Path, description = REFERENCE)),
    responses((status = 200, body = Release), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn show(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path(reference): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let organisation = principal.organisation.id;
    // The stored JSON is sent as it is: the hot read path.
    let id = state
        .releases
        .id_of(organisation, &reference)
        .map_err(ApiError::internal)?;
    let stored = match id {
        Some(id) => state.store.release_json(id).map_err(ApiError::internal)?,
        None => None,
    };
    match stored {
        Some((owner, json)) if owner == organisation => {
            Ok(([(header::CONTENT_TYPE, "application/json")], json))
        }
        _ => Err(not_found(&reference)),
    }
}

/// Delete a release.
#[utoipa::path(delete, path = "/api/v1/releases/{id}", tag = "releases", params(("id" = String, Path, description = REFERENCE)),
    responses((status = 202, description = "deleting its image from the registry"), (status = 204, description = "deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, description = "services run the release", body = ErrorBody)))]
pub(super) async fn remove(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path(reference): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(WRITERS)?;
    let id = visible(&state, &principal, &reference)?.id;
    let deletion = state.releases.delete(id, &principal.user.name);
    match deletion.map_err(|e| match e {
        StoreError::ReleaseInUse(services) => ApiError::new(
            StatusCode::CONFLICT,
            "in-use",
            format!(
                "services {} run the release: delete them or move them to another image first",
                services
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        other => ApiError::internal(other),
    })? {
        Deletion::Done => Ok(StatusCode::NO_CONTENT),
        Deletion::Deleting => Ok(StatusCode::ACCEPTED),
    }
}

/// The release's status now, with its latest log line, then every change
/// until it is final (Server-Sent Events; each event `status` carries a JSON
/// `StatusEvent`).
#[utoipa::path(get, path = "/api/v1/releases/{id}/events", tag = "releases", params(("id" = String, Path, description = REFERENCE)),
    responses((status = 200, content_type = "text/event-stream", body = StatusEvent), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(super) async fn events(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path(reference): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // Subscribe before reading, so no change falls in between.
    let receiver = state
        .releases
        .subscribe(principal.organisation.id)
        .map_err(|refused| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too-many-streams",
                refused.to_string(),
            )
        })?;
    let release = visible(&state, &principal, &reference)?;
    let id = release.id;
    let first = now(&release);
    let done = release.status.is_final();
    let stream = futures::stream::unfold(
        (Some(first), receiver, done),
        move |(first, mut receiver, done)| {
            let state = state.clone();
            async move {
                if let Some(event) = first {
                    return Some((Ok(event), (None, receiver, done)));
                }
                if done {
                    return None;
                }
                loop {
                    match receiver.recv().await {
                        Ok(event) if event.id == id => {
                            let done = event.status.is_final();
                            let data = serde_json::to_string(&event).unwrap_or_default();
                            let sse = Event::default().event("status").data(data);
                            return Some((Ok(sse), (None, receiver, done)));
                        }
                        Ok(_) => continue,
                        // Changes were missed, this release's last among them
                        // perhaps: say where it is now.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            let release = state.store.release(id).ok().flatten()?;
                            let done = release.status.is_final();
                            return Some((Ok(now(&release)), (None, receiver, done)));
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// How often a quiet event stream sends a comment, so proxies keep it open.
pub const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// A release's status now, as an event.
fn now(release: &Release) -> Event {
    let event = StatusEvent {
        id: release.id,
        status: release.status,
        message: release
            .log
            .last()
            .map_or_else(|| "queued".into(), |line| line.message.clone()),
    };
    Event::default()
        .event("status")
        .data(serde_json::to_string(&event).unwrap_or_default())
}

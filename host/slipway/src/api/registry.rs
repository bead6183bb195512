//! The organisation's registry: which registry-adapter plugin pushes release
//! images, with which settings and secrets. Read by anyone in the
//! organisation (secrets by name only), changed by an org-admin; a change
//! applies to the next release.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use semver::VersionReq;
use serde::{Deserialize, Serialize};
use slipway_runtime::HostPattern;
use utoipa::ToSchema;

use super::{ApiError, Caller, ErrorBody, Payload};
use crate::server::AppState;
use slipway_domain::registry::RegistrySettings;
use slipway_domain::registry::change::Refused;
use slipway_store::{RegistryChangeRecord, Role, StoredRegistry};

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/registry", get(show).put(set))
        .route("/api/v1/registry/changes", get(changes))
}

/// A registry change. Without `secrets` the current ones are kept.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RegistryChange {
    /// The registry-adapter plugin.
    adapter: String,
    /// A semver requirement on its version [default: any].
    #[schema(value_type = Option<String>)]
    version: Option<VersionReq>,
    /// The adapter's settings (its `describe` gives their schema).
    #[serde(default)]
    settings: Option<serde_json::Value>,
    /// Secrets by name, as the adapter's manifest asks for them.
    #[serde(default)]
    secrets: Option<BTreeMap<String, String>>,
    /// Hosts the adapter may reach besides the registry, e.g. `auth.example.com:443`.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    allowed_hosts: Vec<HostPattern>,
}

/// The registry as the API shows it: secrets by name only.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub(super) struct RegistryView {
    adapter: String,
    version: String,
    /// The adapter version the next release uses, `name@version`.
    resolved: Option<String>,
    settings: serde_json::Value,
    secrets: Vec<String>,
    allowed_hosts: Vec<String>,
    /// A user name, or `configuration` when it came from the configuration file.
    changed_by: String,
    changed_ms: u64,
}

fn view(state: &AppState, organisation: u64, stored: StoredRegistry) -> RegistryView {
    let resolved = RegistrySettings::from_stored(stored.settings.clone())
        .ok()
        .and_then(|settings| state.registries.resolve(organisation, settings).ok())
        .map(|r| r.adapter());
    let settings = stored.settings;
    RegistryView {
        adapter: settings.adapter,
        version: settings.version,
        resolved,
        settings: settings.settings,
        secrets: settings.secrets.into_keys().collect(),
        allowed_hosts: settings.allowed_hosts,
        changed_by: stored.changed_by,
        changed_ms: stored.changed_ms,
    }
}

/// The organisation's registry.
#[utoipa::path(get, path = "/api/v1/registry", tag = "registry",
    responses((status = 200, body = RegistryView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn show(
    State(state): State<Arc<AppState>>,
    principal: Caller,
) -> Result<Json<RegistryView>, ApiError> {
    let organisation = principal.organisation.id;
    let stored = state
        .store
        .registry(organisation)
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("the organisation has no registry yet"))?;
    Ok(Json(view(&state, organisation, stored)))
}

/// Sets the organisation's registry after the adapter checked the settings.
#[utoipa::path(put, path = "/api/v1/registry", tag = "registry", request_body = RegistryChange,
    responses((status = 200, body = RegistryView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn set(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    payload: Payload,
) -> Result<Json<RegistryView>, ApiError> {
    principal.require(&[Role::OrgAdmin])?;
    let change: RegistryChange = payload.json()?;
    let organisation = principal.organisation.id;
    let settings = RegistrySettings {
        adapter: change.adapter,
        version: change.version.unwrap_or(VersionReq::STAR),
        settings: change.settings.unwrap_or_else(|| serde_json::json!({})),
        secrets: BTreeMap::new(),
        allowed_hosts: change.allowed_hosts,
    };
    let stored = state
        .registries
        .change(organisation, settings, change.secrets, &principal.user.name)
        .await
        .map_err(|refused| match refused {
            Refused::Invalid { path, message } => ApiError::invalid(path, message),
            Refused::Failed(err) => ApiError::internal(err),
        })?;
    Ok(Json(view(&state, organisation, stored)))
}

/// Every change of the organisation's registry, oldest first: who, when,
/// from which adapter and settings to which (secrets by name only).
#[utoipa::path(get, path = "/api/v1/registry/changes", tag = "registry",
    responses((status = 200, body = Vec<RegistryChangeRecord>), (status = 401, body = ErrorBody)))]
pub(super) async fn changes(
    State(state): State<Arc<AppState>>,
    principal: Caller,
) -> Result<Json<Vec<RegistryChangeRecord>>, ApiError> {
    let changes = state
        .store
        .registry_changes(principal.organisation.id)
        .map_err(ApiError::internal)?;
    Ok(Json(changes))
}

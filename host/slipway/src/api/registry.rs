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

use super::{ApiError, ErrorBody, Payload};
use crate::registry::RegistrySettings;
use crate::server::AppState;
use crate::store::{Principal, RegistryChangeRecord, Role, StoredRegistry, now_ms};

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
    let resolved = state
        .registry(organisation, stored.settings.clone())
        .ok()
        .map(|r| r.adapter());
    let settings = stored.settings;
    RegistryView {
        adapter: settings.adapter,
        version: settings.version.to_string(),
        resolved,
        settings: settings.settings,
        secrets: settings.secrets.into_keys().collect(),
        allowed_hosts: settings
            .allowed_hosts
            .iter()
            .map(ToString::to_string)
            .collect(),
        changed_by: stored.changed_by,
        changed_ms: stored.changed_ms,
    }
}

/// The organisation's registry.
#[utoipa::path(get, path = "/api/v1/registry", tag = "registry",
    responses((status = 200, body = RegistryView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn show(
    State(state): State<Arc<AppState>>,
    principal: Principal,
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
    principal: Principal,
    payload: Payload,
) -> Result<Json<RegistryView>, ApiError> {
    principal.require(&[Role::OrgAdmin])?;
    let change: RegistryChange = payload.json()?;
    let organisation = principal.organisation.id;
    let current = state
        .store
        .registry(organisation)
        .map_err(ApiError::internal)?;
    let mut settings = RegistrySettings {
        adapter: change.adapter,
        version: change.version.unwrap_or(VersionReq::STAR),
        settings: change.settings.unwrap_or_else(|| serde_json::json!({})),
        secrets: change.secrets.clone().unwrap_or_default(),
        allowed_hosts: change.allowed_hosts,
    };
    // Secrets left out stay only where they would go: the same adapter and
    // version requirement, to the same settings and hosts. A new URL, endpoint or host needs them
    // given again, so an admin's edit cannot send them somewhere new.
    if change.secrets.is_none()
        && let Some(current) = current
        && current.settings.adapter == settings.adapter
        && current.settings.version == settings.version
        && current.settings.settings == settings.settings
        && current.settings.allowed_hosts == settings.allowed_hosts
    {
        settings.secrets = current.settings.secrets;
    }
    let registry = state
        .registry(organisation, settings.clone())
        .map_err(|e| ApiError::invalid("/adapter", e))?;
    let asked = registry.secrets_asked();
    if let Some(name) = settings.secrets.keys().find(|name| !asked.contains(name)) {
        return Err(ApiError::invalid(
            format!("/secrets/{}", slipway_flow::pointer::escape(name)),
            format!(
                "{} does not ask for a secret named `{name}`; it asks for: {}",
                registry.adapter(),
                if asked.is_empty() {
                    "none".to_string()
                } else {
                    asked.join(", ")
                }
            ),
        ));
    }
    let problems = registry.check().await.map_err(ApiError::internal)?;
    if let Some(problem) = problems.first() {
        // A secret's problem points at the secret; the rest into the settings.
        let path = if problem.path.starts_with("/secrets/") {
            problem.path.clone()
        } else {
            format!("/settings{}", problem.path)
        };
        return Err(ApiError::invalid(path, problem.message.clone()));
    }
    let stored = StoredRegistry {
        settings,
        resolved: Some(registry.adapter()),
        code: Some(registry.code()),
        changed_by: principal.user.name.clone(),
        changed_ms: now_ms(),
    };
    state
        .store
        .put_registry(organisation, &stored)
        .map_err(ApiError::internal)?;
    tracing::info!(organisation = %principal.organisation.name, adapter = %registry.adapter(), by = %principal.user.name, "registry changed");
    Ok(Json(view(&state, organisation, stored)))
}

/// Every change of the organisation's registry, oldest first: who, when,
/// from which adapter and settings to which (secrets by name only).
#[utoipa::path(get, path = "/api/v1/registry/changes", tag = "registry",
    responses((status = 200, body = Vec<RegistryChangeRecord>), (status = 401, body = ErrorBody)))]
pub(super) async fn changes(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> Result<Json<Vec<RegistryChangeRecord>>, ApiError> {
    let changes = state
        .store
        .registry_changes(principal.organisation.id)
        .map_err(ApiError::internal)?;
    Ok(Json(changes))
}

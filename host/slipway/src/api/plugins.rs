//! Plugins: upload (effective at once, kept across restarts), list, show, delete.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use slipway_runtime::{Kind, Plugin, RemoveError};

use super::{ApiError, Payload, WRITERS};
use crate::server::AppState;
use crate::store::{Principal, StoredPlugin};

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/plugins", post(upload).get(list))
        .route("/api/v1/plugins/{kind}/{name}", get(show))
        .route("/api/v1/plugins/{kind}/{name}/{version}", delete(remove))
}

/// One plugin version as the API shows it.
fn summary(plugin: &Plugin, builtin: bool, used_by: Vec<String>) -> Value {
    let m = plugin.manifest();
    json!({
        "kind": m.kind,
        "name": m.name,
        "version": m.version.to_string(),
        "sha256": plugin.sha256(),
        "builtin": builtin,
        "manifest": m,
        "describe": plugin.description(),
        "used_by": used_by,
    })
}

fn kind(text: &str) -> Result<Kind, ApiError> {
    Kind::ALL
        .into_iter()
        .find(|k| k.as_str() == text)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no plugin kind `{text}`: use node-type, registry-adapter or deploy-target"
            ))
        })
}

async fn upload(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    payload: Payload,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(WRITERS)?;
    let plugin = state
        .plugins
        .runtime()
        .load(&payload.bytes)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-plugin",
                e.to_string(),
            )
        })?;
    let m = plugin.manifest();
    let stored = StoredPlugin {
        organisation: principal.organisation.id,
        kind: m.kind.as_str().to_string(),
        name: m.name.clone(),
        version: m.version.to_string(),
        sha256: plugin.sha256().to_string(),
    };
    // Stored first: a plugin in use is always one that survives a restart.
    state
        .store
        .save_plugin(&stored, &payload.bytes)
        .map_err(ApiError::internal)?;
    let replaced = state
        .plugins
        .uploaded(principal.organisation.id)
        .insert(plugin.clone());
    tracing::info!(plugin = %plugin.id(), sha256 = %plugin.sha256(), organisation = principal.organisation.id, "plugin uploaded");
    let mut body = summary(&plugin, false, Vec::new());
    body["replaced"] = json!(replaced.map(|p| p.sha256().to_string()));
    Ok((StatusCode::CREATED, Json(body)))
}

async fn list(State(state): State<Arc<AppState>>, principal: Principal) -> Json<Value> {
    let own = state.plugins.uploaded(principal.organisation.id);
    let mut all: Vec<Value> = state
        .plugins
        .builtins()
        .list()
        .iter()
        .map(|p| summary(p, true, Vec::new()))
        .collect();
    all.extend(own.list().iter().map(|p| summary(p, false, Vec::new())));
    Json(json!(all))
}

async fn show(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path((kind_name, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let kind = kind(&kind_name)?;
    let own = state.plugins.uploaded(principal.organisation.id);
    let mut versions = Vec::new();
    // Pins live in the organisation's catalog, for built-ins too.
    for (catalog, builtin) in [(state.plugins.builtins(), true), (own.as_ref(), false)] {
        for plugin in catalog.list() {
            let m = plugin.manifest();
            if m.kind == kind && m.name == name {
                let used_by = own.holders(kind, &name, &m.version);
                versions.push(summary(&plugin, builtin, used_by));
            }
        }
    }
    if versions.is_empty() {
        return Err(ApiError::not_found(format!(
            "no {kind} plugin named `{name}`"
        )));
    }
    Ok(Json(
        json!({"kind": kind, "name": name, "versions": versions}),
    ))
}

async fn remove(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    Path((kind_name, name, version)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    principal.require(WRITERS)?;
    let kind = kind(&kind_name)?;
    let not_found = || ApiError::not_found(format!("no {kind} plugin `{name}@{version}`"));
    let version = semver::Version::parse(&version).map_err(|_| not_found())?;
    let own = state.plugins.uploaded(principal.organisation.id);
    if own.get(kind, &name, &version).is_none() {
        if state
            .plugins
            .builtins()
            .get(kind, &name, &version)
            .is_some()
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "builtin",
                "built-in plugins cannot be deleted",
            ));
        }
        return Err(not_found());
    }
    let plugin = match own.remove(kind, &name, &version) {
        Ok(plugin) => plugin,
        Err(err @ RemoveError::Pinned { .. }) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "in-use",
                err.to_string(),
            ));
        }
        Err(RemoveError::Unknown { .. }) => return Err(not_found()),
    };
    let stored = StoredPlugin {
        organisation: principal.organisation.id,
        kind: kind.as_str().to_string(),
        name,
        version: version.to_string(),
        sha256: plugin.sha256().to_string(),
    };
    if let Err(err) = state.store.remove_plugin(&stored) {
        // Keep memory and disk in step: put it back.
        own.insert(plugin);
        return Err(ApiError::internal(err));
    }
    Ok(StatusCode::NO_CONTENT)
}

//! Plugins: upload (effective at once, kept across restarts), list, show,
//! delete, and the hosts an org-admin grants an upload.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use slipway_runtime::{HostPattern, Kind, Plugin};
use utoipa::ToSchema;

use super::{ApiError, Caller, ErrorBody, Path, Payload, WRITERS};
use crate::server::AppState;
use slipway_domain::plugins::DeleteError;
use slipway_store::{Role, StoredPlugin};

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/plugins", post(upload).get(list))
        .route("/api/v1/plugins/{kind}/{name}", get(show))
        .route("/api/v1/plugins/{kind}/{name}/allowed-hosts", put(grant))
        .route("/api/v1/plugins/{kind}/{name}/{version}", delete(remove))
}

/// One plugin version as the API shows it.
#[derive(Serialize, ToSchema)]
pub(super) struct PluginVersion {
    /// `node-type`, `registry-adapter` or `deploy-target`.
    kind: String,
    name: String,
    version: String,
    /// The sha256 of the component.
    sha256: String,
    /// Built into the server (cannot be deleted) or uploaded.
    builtin: bool,
    /// The manifest embedded in the component.
    manifest: Value,
    /// What the plugin's `describe` returned.
    describe: Value,
    /// Who pins this version, e.g. `release 42`; it cannot be deleted while any does.
    used_by: Vec<String>,
    /// For an upload: the hosts an org-admin granted it; its HTTP reaches
    /// only those (within its manifest's list). Absent for a built-in.
    #[serde(rename = "granted-hosts", skip_serializing_if = "Option::is_none")]
    granted_hosts: Option<Vec<String>>,
}

/// The hosts an org-admin grants an uploaded plugin.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct HostGrant {
    /// `host`, `host:port` or `*.domain`, each also within the plugin's
    /// manifest; addresses the operator did not allow stay refused.
    #[serde(rename = "allowed-hosts")]
    #[schema(max_items = 64)]
    allowed_hosts: Vec<String>,
}

/// Most hosts one grant may name.
const MAX_GRANTED_HOSTS: usize = 64;

/// An upload, and the digest of the same version it replaced.
#[derive(Serialize, ToSchema)]
pub(super) struct Uploaded {
    #[serde(flatten)]
    plugin: PluginVersion,
    replaced: Option<String>,
}

/// Every version of one plugin.
#[derive(Serialize, ToSchema)]
pub(super) struct PluginVersions {
    kind: String,
    name: String,
    versions: Vec<PluginVersion>,
}

fn summary(plugin: &Plugin, builtin: bool, used_by: Vec<String>) -> PluginVersion {
    let m = plugin.manifest();
    PluginVersion {
        kind: m.kind.as_str().to_string(),
        name: m.name.clone(),
        version: m.version.to_string(),
        sha256: plugin.sha256().to_string(),
        builtin,
        manifest: serde_json::to_value(m).unwrap_or_default(),
        describe: serde_json::to_value(plugin.description()).unwrap_or_default(),
        used_by,
        granted_hosts: plugin
            .granted_hosts()
            .map(|hosts| hosts.iter().map(ToString::to_string).collect()),
    }
}

fn kind(text: &str) -> Result<Kind, ApiError> {
    Kind::named(text).ok_or_else(|| {
        ApiError::not_found(format!(
            "no plugin kind `{text}`: use node-type, registry-adapter or deploy-target"
        ))
    })
}

/// Upload a component (with its manifest); usable at once, kept across restarts.
#[utoipa::path(post, path = "/api/v1/plugins", tag = "plugins",
    request_body(content = Vec<u8>, content_type = "application/wasm"),
    responses((status = 201, body = Uploaded), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn upload(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    payload: Payload,
) -> Result<impl IntoResponse, ApiError> {
    principal.require(WRITERS)?;
    let organisation = principal.organisation.id;
    let plugin = state
        .plugins
        .load_upload(&state.store, organisation, &payload.bytes)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-plugin",
                e.to_string(),
            )
        })?;
    let m = plugin.manifest();
    // Registry adapters and deploy targets are handed the organisation's
    // credentials: only an org-admin brings one in.
    if m.kind != Kind::NodeType {
        principal.require(&[Role::OrgAdmin])?;
    }
    if state.plugins.is_builtin_name(m.kind, &m.name) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "builtin-name",
            format!(
                "`{}` is the name of a built-in {}: an upload takes a name of its own",
                m.name, m.kind
            ),
        ));
    }
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
    let body = Uploaded {
        plugin: summary(&plugin, false, Vec::new()),
        replaced: replaced.map(|p| p.sha256().to_string()),
    };
    Ok((StatusCode::CREATED, Json(body)))
}

/// (org-admin) Grant an uploaded plugin, every version, the hosts its HTTP may reach.
#[utoipa::path(put, path = "/api/v1/plugins/{kind}/{name}/allowed-hosts", tag = "plugins",
    params(("kind" = String, Path, description = "node-type, registry-adapter or deploy-target"), ("name" = String, Path)),
    request_body = HostGrant,
    responses((status = 200, body = HostGrant), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(super) async fn grant(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path((kind_name, name)): Path<(String, String)>,
    payload: Payload,
) -> Result<Json<HostGrant>, ApiError> {
    principal.require(&[Role::OrgAdmin])?;
    let kind = kind(&kind_name)?;
    let grant: HostGrant = payload.json()?;
    if grant.allowed_hosts.len() > MAX_GRANTED_HOSTS {
        return Err(ApiError::invalid(
            "/allowed-hosts",
            format!("at most {MAX_GRANTED_HOSTS} hosts"),
        ));
    }
    let mut hosts = Vec::new();
    for (i, host) in grant.allowed_hosts.iter().enumerate() {
        let pattern = HostPattern::try_from(host.clone())
            .map_err(|e| ApiError::invalid(format!("/allowed-hosts/{i}"), e.to_string()))?;
        if pattern.is_any() {
            return Err(ApiError::invalid(
                format!("/allowed-hosts/{i}"),
                "a grant names the hosts: `*` is only for built-in plugins, whose host narrows it at each call",
            ));
        }
        hosts.push(pattern);
    }
    let organisation = principal.organisation.id;
    let uploaded = state
        .plugins
        .uploaded(organisation)
        .list()
        .iter()
        .any(|p| p.manifest().kind == kind && p.manifest().name == name);
    if !uploaded {
        if state.plugins.is_builtin_name(kind, &name) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "builtin",
                "a built-in plugin reaches the hosts its manifest names; grants are for uploads",
            ));
        }
        return Err(ApiError::not_found(format!(
            "no uploaded {kind} plugin named `{name}`"
        )));
    }
    state
        .store
        .set_plugin_hosts(organisation, kind.as_str(), &name, &grant.allowed_hosts)
        .map_err(ApiError::internal)?;
    state.plugins.grant_hosts(organisation, kind, &name, &hosts);
    tracing::info!(organisation, plugin = %name, hosts = ?grant.allowed_hosts, by = %principal.user.name, "plugin hosts granted");
    Ok(Json(grant))
}

/// The built-in plugins and the organisation's uploads.
#[utoipa::path(get, path = "/api/v1/plugins", tag = "plugins",
    responses((status = 200, body = Vec<PluginVersion>), (status = 401, body = ErrorBody)))]
pub(super) async fn list(
    State(state): State<Arc<AppState>>,
    principal: Caller,
) -> Json<Vec<PluginVersion>> {
    let own = state.plugins.uploaded(principal.organisation.id);
    let mut all: Vec<PluginVersion> = state
        .plugins
        .builtins()
        .list()
        .iter()
        .map(|p| summary(p, true, Vec::new()))
        .collect();
    all.extend(own.list().iter().map(|p| summary(p, false, Vec::new())));
    Json(all)
}

/// Every version of one plugin, with who uses each.
#[utoipa::path(get, path = "/api/v1/plugins/{kind}/{name}", tag = "plugins",
    params(("kind" = String, Path, description = "node-type, registry-adapter or deploy-target"), ("name" = String, Path)),
    responses((status = 200, body = PluginVersions), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn show(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path((kind_name, name)): Path<(String, String)>,
) -> Result<Json<PluginVersions>, ApiError> {
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
    Ok(Json(PluginVersions {
        kind: kind.as_str().to_string(),
        name,
        versions,
    }))
}

/// Delete an uploaded version; refused (409) while a release pins it.
#[utoipa::path(delete, path = "/api/v1/plugins/{kind}/{name}/{version}", tag = "plugins",
    params(("kind" = String, Path), ("name" = String, Path), ("version" = String, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub(super) async fn remove(
    State(state): State<Arc<AppState>>,
    principal: Caller,
    Path((kind_name, name, version)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    principal.require(WRITERS)?;
    let kind = kind(&kind_name)?;
    let not_found = || ApiError::not_found(format!("no {kind} plugin `{name}@{version}`"));
    let version = semver::Version::parse(&version).map_err(|_| not_found())?;
    let deleted = state.plugins.delete_upload(
        &state.store,
        principal.organisation.id,
        kind,
        &name,
        &version,
    );
    match deleted {
        Ok(()) => {}
        Err(DeleteError::NotFound { .. }) => return Err(not_found()),
        Err(DeleteError::BuiltIn) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "builtin",
                "built-in plugins cannot be deleted",
            ));
        }
        Err(DeleteError::Pinned(err)) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "in-use",
                err.to_string(),
            ));
        }
        Err(DeleteError::Store(err)) => return Err(ApiError::internal(err)),
    }
    Ok(StatusCode::NO_CONTENT)
}

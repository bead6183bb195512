//! The HTTP server: health endpoints, authentication and the API.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use slipway_runtime::{Runtime, RuntimeConfig};

use crate::config::Config;
use crate::store::{Principal, Store};

/// What every request handler shares.
pub struct AppState {
    /// The database.
    pub store: Store,
    /// The plugin runtime.
    pub runtime: Runtime,
    ready: AtomicBool,
}

impl AppState {
    /// State over an open store and a runtime; not ready until [`AppState::load_builtins`].
    pub fn new(store: Store, runtime: Runtime) -> Arc<AppState> {
        Arc::new(AppState {
            store,
            runtime,
            ready: AtomicBool::new(false),
        })
    }

    /// Installs the built-in plugins, then reports ready.
    pub async fn load_builtins(&self) -> anyhow::Result<()> {
        for (name, wasm) in slipway_plugin_artifacts::BUILTIN {
            self.runtime
                .install(wasm)
                .await
                .with_context(|| format!("the built-in plugin `{name}` does not load"))?;
        }
        self.ready.store(true, Ordering::Release);
        Ok(())
    }
}

/// An API error: `{"error": {"code", "message", "path"?}}` with its status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    path: Option<String>,
}

impl ApiError {
    /// An error with a status, a code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            path: None,
        }
    }

    /// An unexpected failure: logged with its cause, answered with a generic 500.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(path) = self.path {
            error["path"] = json!(path);
        }
        (self.status, Json(json!({ "error": error }))).into_response()
    }
}

impl FromRequestParts<Arc<AppState>> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let unauthorized =
            |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("an `Authorization: Bearer <token>` header is required"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
        state
            .store
            .authenticate(token.trim())
            .map_err(ApiError::internal)?
            .ok_or_else(|| unauthorized("unknown token"))
    }
}

/// The server's routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/me", get(me))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such resource")
        })
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, Json(json!({"ready": true}))).into_response()
    } else {
        let body = json!({"ready": false, "waiting_for": "built-in plugins"});
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// Who the caller is: the CLI checks a login with it.
async fn me(principal: Principal) -> Json<Principal> {
    Json(principal)
}

/// Runs the server until `shutdown` completes, then finishes requests in
/// flight and flushes the database.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    let store = Store::open(&config.data_dir.join("db"))
        .with_context(|| format!("cannot open the database in {}", config.data_dir.display()))?;
    if let Some(made) = store.bootstrap(&config.organisation, config.admin_token.as_deref())? {
        if config.admin_token.is_some() {
            println!(
                "created organisation `{}` with the configured admin token",
                made.organisation.name
            );
        } else {
            println!(
                "created organisation `{}`; admin token (shown once, keep it): {}",
                made.organisation.name, made.token
            );
        }
    }
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(config.data_dir.join("code-cache")),
        ..RuntimeConfig::default()
    })?;
    let state = AppState::new(store.clone(), runtime);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let address = listener.local_addr()?;
    println!("listening on http://{address}");
    tracing::info!(%address, data_dir = %config.data_dir.display(), "slipway serving");

    let loader = state.clone();
    tokio::spawn(async move {
        match loader.load_builtins().await {
            Ok(()) => tracing::info!("built-in plugins loaded; ready"),
            Err(err) => tracing::error!(error = %format!("{err:#}"), "not ready"),
        }
    });
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    store.flush()?;
    tracing::info!("stopped; database flushed");
    Ok(())
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("install the SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down: finishing requests in flight");
}

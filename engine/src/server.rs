//! Serving a flow: one listener for every `http-trigger`, `/healthz`,
//! `/readyz` and `/metrics`, and a bounded drain on shutdown.
//!
//! The listener answers as soon as it is bound; flow routes and `/readyz`
//! answer 503 until every plugin is loaded, and again once draining starts.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::{ALLOW, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use slipway_runtime::Runtime;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::executor::{Executor, FlowError, Outcome, Route, triggers};
use crate::http;
use crate::loader::{LoadError, load_plugins};
use crate::metrics::Metrics;
use slipway_flow::FlowDocument;
use slipway_serve::ConnectionLimits;

/// Paths the engine answers itself; no trigger may use them.
pub const RESERVED_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// The largest request body accepted by default: 16 MiB.
pub const DEFAULT_MAX_BODY: usize = 16 << 20;

/// The flow cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The flow document is inconsistent.
    #[error(transparent)]
    Flow(#[from] FlowError),
    /// Two triggers' paths overlap, or one is not a valid route.
    #[error("trigger `{trigger}`: path `{path}`: {reason}")]
    Route {
        /// The trigger node.
        trigger: String,
        /// Its path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A plugin could not be loaded.
    #[error(transparent)]
    Load(#[from] Box<LoadError>),
}

/// A flow being served.
pub struct Engine {
    triggers: Vec<Route>,
    /// Path template to the triggers serving it.
    paths: matchit::Router<Vec<usize>>,
    executor: OnceLock<Arc<Executor>>,
    metrics: Metrics,
    draining: AtomicBool,
    in_flight: AtomicUsize,
    max_body: usize,
}

impl Engine {
    /// Routes `flow`'s triggers; nothing is loaded yet.
    pub fn new(flow: &FlowDocument, max_body: usize) -> Result<Arc<Engine>, ServeError> {
        let triggers = triggers(flow)?;
        let mut paths = matchit::Router::new();
        let mut by_path: Vec<(&str, Vec<usize>)> = Vec::new();
        for (i, route) in triggers.iter().enumerate() {
            let route_error = |reason: String| ServeError::Route {
                trigger: route.id.clone(),
                path: route.path.clone(),
                reason,
            };
            if RESERVED_PATHS.contains(&route.path.as_str()) {
                return Err(route_error("the engine answers this path itself".into()));
            }
            match by_path.iter_mut().find(|(path, _)| *path == route.path) {
                Some((_, served)) => {
                    if let Some(&other) = served
                        .iter()
                        .find(|&&other| triggers[other].method == route.method)
                    {
                        let other = &triggers[other].id;
                        return Err(route_error(format!("trigger `{other}` serves it already")));
                    }
                    served.push(i);
                }
                None => by_path.push((&route.path, vec![i])),
            }
        }
        for (path, served) in by_path {
            let trigger = &triggers[served[0]];
            paths.insert(path, served).map_err(|e| ServeError::Route {
                trigger: trigger.id.clone(),
                path: trigger.path.clone(),
                reason: e.to_string(),
            })?;
        }
        let metrics = Metrics::new(
            triggers.iter().map(|t| t.id.as_str()),
            flow.nodes.iter().map(|n| n.id.as_str()),
        );
        Ok(Arc::new(Engine {
            triggers,
            paths,
            executor: OnceLock::new(),
            metrics,
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            max_body,
        }))
    }

    /// Loads `flow`'s plugins from `plugins` and starts answering.
    pub async fn load(
        &self,
        runtime: &Runtime,
        flow: &FlowDocument,
        plugins: &Path,
    ) -> Result<(), ServeError> {
        let started = Instant::now();
        let loaded = load_plugins(runtime, flow, plugins)
            .await
            .map_err(Box::new)?;
        let executor = Arc::new(Executor::new(flow, &loaded)?);
        let _ = self.executor.set(executor);
        tracing::info!(
            plugins = loaded.len(),
            nodes = flow.nodes.len(),
            ms = started.elapsed().as_millis() as u64,
            "ready"
        );
        Ok(())
    }

    /// The executor, while requests are being answered: once every plugin
    /// is loaded and until draining starts.
    fn serving(&self) -> Option<&Arc<Executor>> {
        self.executor
            .get()
            .filter(|_| !self.draining.load(Ordering::Relaxed))
    }

    /// Fan-out copies still running.
    fn branches(&self) -> usize {
        self.executor.get().map_or(0, |e| e.branches())
    }

    /// Whether requests are being answered.
    pub fn is_ready(&self) -> bool {
        self.serving().is_some()
    }

    /// The routes: the triggers, then the engine's own paths.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(ready))
            .route("/metrics", get(metrics))
            .fallback(answer)
            .with_state(self.clone())
    }
}

async fn ready(State(engine): State<Arc<Engine>>) -> Response {
    if engine.is_ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        let why = if engine.draining.load(Ordering::Relaxed) {
            "draining"
        } else {
            "loading plugins"
        };
        (StatusCode::SERVICE_UNAVAILABLE, why).into_response()
    }
}

async fn metrics(State(engine): State<Arc<Engine>>) -> Response {
    let content_type = HeaderValue::from_static("text/plain; version=0.0.4");
    (
        [(CONTENT_TYPE, content_type)],
        engine.metrics.render(engine.is_ready()),
    )
        .into_response()
}

/// Counts a request as in flight while it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        InFlight(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs a request through the trigger serving its method and path.
async fn answer(State(engine): State<Arc<Engine>>, request: Request) -> Response {
    let started = Instant::now();
    let _in_flight = InFlight::enter(&engine.in_flight);
    let (parts, body) = request.into_parts();
    let Ok(matched) = engine.paths.at(parts.uri.path()) else {
        return http::problem(
            StatusCode::NOT_FOUND,
            "not-found",
            "no trigger serves this path",
        );
    };
    let served = matched.value;
    let Some(&index) = served
        .iter()
        .find(|&&i| engine.triggers[i].method == parts.method.as_str())
    else {
        let methods: Vec<&str> = served
            .iter()
            .map(|&i| engine.triggers[i].method.as_str())
            .collect();
        let mut response = http::problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            &format!("this path answers {} only", methods.join(", ")),
        );
        if let Ok(allow) = HeaderValue::try_from(methods.join(", ")) {
            response.headers_mut().insert(ALLOW, allow);
        }
        return response;
    };
    let params: Vec<(String, String)> = matched
        .params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let Some(executor) = engine.serving() else {
        return http::problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "the engine is not serving: plugins are loading or it is stopping",
        );
    };
    let body = match axum::body::to_bytes(body, engine.max_body).await {
        Ok(body) => body,
        Err(_) => {
            return http::problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                &format!("the request body is over {} bytes", engine.max_body),
            );
        }
    };
    let message = http::to_message(
        &parts,
        body,
        params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let trigger = &engine.triggers[index];
    let observe = |node: usize, elapsed: Duration, failed: bool| {
        engine.metrics.node(node, elapsed, failed);
    };
    let response = match executor.run(trigger.node, message, &observe).await {
        Outcome::Reply(message) => http::reply(message, &parts.headers),
        Outcome::Failed(failure) => {
            tracing::warn!(
                trigger = %trigger.id,
                node = %failure.node,
                code = %failure.code,
                status = failure.status,
                "{}",
                failure.message
            );
            http::failure(&failure)
        }
    };
    engine
        .metrics
        .request(index, response.status().as_u16(), started.elapsed());
    response
}

/// How serving ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every request in flight was answered.
    Drained,
    /// The drain time ran out with this many requests still in flight.
    CutOff(usize),
}

/// Serves `engine` on `listener` within `limits` until `stop` completes,
/// then stops accepting, answers the requests in flight and returns,
/// waiting no longer than `drain`.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    limits: ConnectionLimits,
    stop: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> Stopped {
    let (stopping, mut stopped) = watch::channel(false);
    let mut graceful = stopped.clone();
    let server = slipway_serve::serve(
        listener,
        engine.router(),
        limits,
        async move {
            let _ = graceful.wait_for(|s| *s).await;
        },
        drain,
    );
    let signalled = engine.clone();
    tokio::spawn(async move {
        stop.await;
        signalled.draining.store(true, Ordering::Relaxed);
        tracing::info!(
            in_flight = signalled.in_flight.load(Ordering::Relaxed),
            "stopping: answering requests in flight"
        );
        let _ = stopping.send(true);
    });
    let deadline = async {
        if stopped.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(drain).await;
    };
    // Answered, and every fan-out copy run to its end; false when the
    // serve loop's own drain time ran out first (the two end together).
    let drained = async {
        if server.await != slipway_serve::Drained::Closed {
            return false;
        }
        while engine.branches() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    };
    let cut_off = || Stopped::CutOff(engine.in_flight.load(Ordering::Relaxed) + engine.branches());
    tokio::select! {
        all = drained => if all { Stopped::Drained } else { cut_off() },
        () = deadline => cut_off(),
    }
}

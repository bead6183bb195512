//! Serving HTTP/1 within bounds a client cannot stretch: how many
//! connections are open at once, how long a client may take to send a
//! request's headers, and how long a request may take to be answered.
//!
//! The engine and the Slipway server both serve through [`serve`], and stop
//! on [`shutdown_signal`].

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

/// What one client can hold of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections served at once; further ones wait in the listen backlog
    /// until one closes.
    pub max_connections: usize,
    /// Time a client has to send a request's headers, counted from the
    /// connection's start, or from the previous answer on a kept-alive
    /// connection (so it also closes idle connections).
    pub header_read_timeout: Duration,
    /// Time from a request's headers to its answer's headers, reading the
    /// request body included; a streamed answer's body is not counted.
    pub request_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
        }
    }
}

/// How serving ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every connection closed within the drain time.
    Closed,
    /// The drain time ran out with this many connections open.
    TimedOut(usize),
}

/// Serves `router` on `listener` within `limits` until `stop` completes;
/// then stops accepting, lets each connection finish the request it is on,
/// and returns when every connection has closed, or once `drain` has passed
/// (a streamed answer, such as a release's events, may never end).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    stop: impl Future<Output = ()> + Send,
    drain: Duration,
) -> Drained {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (closing, closed) = watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(stop);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the slots are never closed"),
            () = &mut stop => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Out of descriptors, most often: wait for some to close.
                    tracing::warn!(error = %err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            answer(
                router.clone(),
                request.map(Body::new),
                limits.request_timeout,
            )
        });
        let connection = http
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut closed = closed.clone();
        tokio::spawn(async move {
            let _slot = slot;
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = closed.wait_for(|closing| *closing) => {}
            }
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        });
    }
    drop(listener);
    let _ = closing.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(drain, slots.acquire_many(all))
        .await
        .is_err()
    {
        let open = limits.max_connections - slots.available_permits();
        tracing::warn!(
            open,
            "stopped: the drain time ran out with connections still open"
        );
        return Drained::TimedOut(open);
    }
    Drained::Closed
}

/// `router`'s answer to `request`, or a 503 when it takes longer than `limit`.
async fn answer(
    router: Router,
    request: axum::extract::Request,
    limit: Duration,
) -> Result<Response, Infallible> {
    match tokio::time::timeout(limit, router.oneshot(request)).await {
        Ok(answered) => answered,
        Err(_) => {
            let message = format!("the request was not answered within {} s", limit.as_secs());
            let body =
                serde_json::json!({"error": {"code": "request-timeout", "message": message}});
            Ok((
                StatusCode::SERVICE_UNAVAILABLE,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body.to_string(),
            )
                .into_response())
        }
    }
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
}

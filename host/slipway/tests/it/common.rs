//! What the server tests share: a state over a store, and one request
//! through the router as a client sends it.
#![allow(dead_code)] // Each test file uses its own part.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use slipway::config::Config;
use slipway::server::{AppState, router};
use slipway_runtime::{Egress, Runtime, RuntimeConfig};
use slipway_store::Store;
use tower::ServiceExt;

/// A state over `store` running two releases at once, its compiled code
/// cached across tests; plugins not loaded yet.
pub fn state(store: Store) -> Arc<AppState> {
    state_running(store, 2)
}

/// The same, running at most `releases` releases at once.
pub fn state_running(store: Store, releases: usize) -> Arc<AppState> {
    state_with(
        store,
        &Config {
            data_dir: PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("server-tests"),
            release_concurrency: releases,
            ..Config::default()
        },
    )
}

/// A state set up as `config` says, sharing the tests' code cache; its
/// plugins may reach loopback, where the tests' registries and fakes listen
/// (as an operator's `egress-allow` would let them).
pub fn state_with(store: Store, config: &Config) -> Arc<AppState> {
    state_reaching(store, config, Egress::loopback())
}

/// The same, with plugins reaching what `egress` allows.
pub fn state_reaching(store: Store, config: &Config, egress: Egress) -> Arc<AppState> {
    state_on(
        store,
        config,
        RuntimeConfig {
            egress,
            ..RuntimeConfig::default()
        },
    )
}

/// The same, its plugin runtime set up as `runtime` says (with the tests'
/// code cache).
pub fn state_on(store: Store, config: &Config, runtime: RuntimeConfig) -> Arc<AppState> {
    log_to_test_output();
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("code-cache")),
        ..runtime
    })
    .unwrap();
    AppState::new(store, runtime, config)
}

/// Sends the server's warnings and errors to the output a failing test
/// prints, so a 500 shows its cause.
fn log_to_test_output() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLIPWAY_TEST_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .try_init();
}

/// A state with its plugins loaded.
pub async fn loaded(store: Store) -> Arc<AppState> {
    let state = state(store);
    state.load_plugins().await.unwrap();
    state
}

/// One request; the body as JSON (a string when it is not JSON, null when empty).
pub async fn call(
    state: &Arc<AppState>,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: impl Into<Vec<u8>>,
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request.body(Body::from(body.into())).unwrap();
    let response = router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)))
    };
    (status, body)
}

/// A release of `integration` at `version`, named uniquely.
pub fn new_release(integration: &str, version: u32) -> slipway_store::NewRelease {
    static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    slipway_store::NewRelease {
        integration: integration.to_string(),
        version,
        name: format!("{integration}-v{version}-r{n}"),
        description: None,
    }
}

/// Leaves `release` as a server stop cuts it off: at `status`, its build
/// job running.
pub fn in_flight(store: &Store, release: &slipway_store::Release, status: slipway_store::Status) {
    let mut release = release.clone();
    release.status = status;
    store.put_release(&release).unwrap();
    let job = store
        .job_of(slipway_store::JobKind::BuildRelease, release.id)
        .unwrap()
        .unwrap();
    store
        .update_job(job.id, |job| job.status = slipway_store::JobStatus::Running)
        .unwrap();
}

/// The body of `POST /api/v1/releases` for [`new_release`].
pub fn release_body(integration: &str, version: u32) -> Value {
    let release = new_release(integration, version);
    json!({"integration": release.integration, "version": release.version, "name": release.name})
}

/// A `slipway serve` process, killed when dropped so a failing test leaves
/// none behind (one would hold the test's output open).
pub struct Served(Child);

impl std::ops::Deref for Served {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Served {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `slipway serve` on an ephemeral port; returns the process and its stdout lines so far.
pub fn start(data_dir: &std::path::Path) -> (Served, Vec<String>) {
    start_with(data_dir, &[])
}

/// The same, with more flags.
pub fn start_with(data_dir: &std::path::Path, flags: &[&str]) -> (Served, Vec<String>) {
    let mut child = Served(
        Command::new(env!("CARGO_BIN_EXE_slipway"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-token",
                "slw_crash_test_token",
                "--data-dir",
            ])
            .arg(data_dir)
            .args(flags)
            .env("SLIPWAY_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = Vec::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "serve exited early: {lines:?}"
        );
        let listening = line.starts_with("listening on ");
        lines.push(line.trim().to_string());
        if listening {
            return (child, lines);
        }
    }
}

/// The base URL a started server printed, `http://address`.
pub fn base_of(lines: &[String]) -> String {
    lines
        .last()
        .and_then(|line| line.strip_prefix("listening on "))
        .expect("start returns once the server says where it listens")
        .to_string()
}

/// Waits until the server at `base` answers `/readyz` with 200. Its first
/// start compiles every built-in plugin, which on a loaded two-core machine
/// takes tens of seconds in a debug build: this checks readiness, not speed.
pub async fn ready(base: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let client = reqwest::Client::new();
    while !client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "{base} not ready within 120 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

pub fn stop(mut child: Served) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "serve exits cleanly on SIGTERM: {exit:?}");
}

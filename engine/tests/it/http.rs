//! The `slipway-engine` binary serving flows the real packaging stage
//! produced: requests in, responses out, failures named, metrics kept,
//! and a bounded drain on SIGTERM.

use crate::common;
use slipway_test_support::slow_clients;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use common::{EngineProcess, bundle, transform_chain, trigger, two_branches, with_subflow};
use serde_json::{Value, json};
use tokio::sync::Notify;

async fn post_json(engine: &EngineProcess, path: &str, body: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(engine.url(path))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, body)
}

async fn metrics(engine: &EngineProcess) -> String {
    reqwest::get(engine.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transform_chain_answers_and_is_counted() {
    let (_, dir) = bundle(transform_chain(), &[], &[]).await;
    let engine = EngineProcess::start(dir.path(), &[]).await;
    let response = reqwest::Client::new()
        .post(engine.url("/orders"))
        .body(r#"{"items": [1, 2, 3]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"total": 12})
    );

    let health = reqwest::get(engine.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let text = metrics(&engine).await;
    for line in [
        "slipway_engine_ready 1",
        "slipway_engine_requests_total{trigger=\"in\",status=\"200\"} 1",
        "slipway_engine_node_duration_seconds_count{node=\"sum\"} 1",
        "slipway_engine_node_duration_seconds_count{node=\"double\"} 1",
        "slipway_engine_node_errors_total{node=\"sum\"} 0",
    ] {
        assert!(has_line(&text, line), "no `{line}` in:\n{text}");
    }
    assert!(engine.stop(Duration::from_secs(10)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_choice_sends_each_request_down_one_branch() {
    let (_, dir) = bundle(two_branches(), &[], &[]).await;
    let engine = EngineProcess::start(dir.path(), &[]).await;
    assert_eq!(
        post_json(&engine, "/orders", r#"{"total": 500}"#).await,
        (200, json!({"size": "large"}))
    );
    assert_eq!(
        post_json(&engine, "/orders", r#"{"total": 5}"#).await,
        (200, json!({"size": "small"}))
    );
    let text = metrics(&engine).await;
    assert!(has_line(
        &text,
        "slipway_engine_node_duration_seconds_count{node=\"big\"} 1"
    ));
    assert!(has_line(
        &text,
        "slipway_engine_node_duration_seconds_count{node=\"little\"} 1"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subflow_runs_inside_the_request() {
    let (root, enrich) = with_subflow();
    let (_, dir) = bundle(root, &[("enrich", enrich)], &[]).await;
    let engine = EngineProcess::start(dir.path(), &[]).await;
    assert_eq!(
        post_json(&engine, "/orders", r#"{"total": 7}"#).await,
        (200, json!({"tagged": "vip", "total": 7}))
    );
    assert!(has_line(
        &metrics(&engine).await,
        "slipway_engine_node_duration_seconds_count{node=\"enrich/tag\"} 1"
    ));
}

/// An upstream on loopback: `POST /quote` answers 201 with the request's
/// `qty` times 3, after `delay`; `arrived` hears of each request.
async fn upstream(delay: Duration, arrived: Arc<Notify>) -> SocketAddr {
    let app = Router::new().route(
        "/quote",
        post(move |body: String| {
            let arrived = arrived.clone();
            async move {
                arrived.notify_one();
                tokio::time::sleep(delay).await;
                let qty = serde_json::from_str::<Value>(&body).unwrap()["qty"]
                    .as_i64()
                    .unwrap();
                (
                    StatusCode::CREATED,
                    [("content-type", "application/json")],
                    json!({"price": qty * 3}).to_string(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    address
}

/// trigger → `http-call` to `upstream` → transform.
fn calling(upstream: SocketAddr) -> Value {
    json!({
        "nodes": [trigger(),
            {"id": "quote", "type": "http-call@^1", "config": {"url": format!("http://{upstream}/quote")}},
            {"id": "reply", "type": "transform@^1", "config": {"expression": "{quoted: .price}"}}],
        "edges": [{"from": "in", "to": "quote"}, {"from": "quote", "to": "reply"}]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_call_reaches_its_upstream_and_passes_its_status_on() {
    let upstream = upstream(Duration::ZERO, Arc::new(Notify::new())).await;
    let (_, dir) = bundle(calling(upstream), &[], &[]).await;
    let engine = EngineProcess::start(dir.path(), &[]).await;
    assert_eq!(
        post_json(&engine, "/orders", r#"{"qty": 4}"#).await,
        (201, json!({"quoted": 12}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_node_is_named_and_the_engine_keeps_serving() {
    let (_, dir) = bundle(
        json!({
            "nodes": [trigger(),
                {"id": "sum", "type": "transform@^1", "config": {"expression": "{total: (.items | add)}"}}],
            "edges": [{"from": "in", "to": "sum"}]
        }),
        &[],
        &[],
    )
    .await;
    let engine = EngineProcess::start(dir.path(), &[]).await;
    let (status, body) = post_json(&engine, "/orders", "not json").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["node"], "sum");
    assert_eq!(body["error"]["code"], "transform-failed");
    assert!(body["error"]["message"].as_str().unwrap().len() > 5);
    assert_eq!(
        post_json(&engine, "/orders", r#"{"items": [2, 3]}"#).await,
        (200, json!({"total": 5}))
    );
    let text = metrics(&engine).await;
    assert!(has_line(
        &text,
        "slipway_engine_node_errors_total{node=\"sum\"} 1"
    ));
    assert!(has_line(
        &text,
        "slipway_engine_requests_total{trigger=\"in\",status=\"400\"} 1"
    ));
    let warned = engine
        .logs
        .lock()
        .unwrap()
        .iter()
        .any(|r| r["level"] == "WARN" && r["node"] == "sum" && r["code"] == "transform-failed");
    assert!(warned, "the failure is logged with its node");

    // Wrong method, unknown path: the engine's own JSON errors.
    let response = reqwest::get(engine.url("/orders")).await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    let (status, body) = post_json(&engine, "/nowhere", "{}").await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("not-found")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_plugin_fails_its_request_only() {
    let (_, dir) = bundle(
        json!({
            "nodes": [trigger(),
                {"id": "route", "type": "choice@^1", "config": {"routes": [{"when": ".crash", "port": "crash"}], "otherwise": "fine"}},
                {"id": "boom", "type": "hostile@^1", "config": {"mode": "trap"}},
                {"id": "ok", "type": "transform@^1", "config": {"expression": "{ok: true}"}}],
            "edges": [{"from": "in", "to": "route"},
                      {"from": "route", "port": "crash", "to": "boom"},
                      {"from": "route", "port": "fine", "to": "ok"}]
        }),
        &[],
        &["hostile"],
    )
    .await;
    let engine = EngineProcess::start(dir.path(), &[]).await;
    let (status, body) = post_json(&engine, "/orders", r#"{"crash": true}"#).await;
    assert_eq!(status, 500);
    assert_eq!(body["error"]["node"], "boom");
    assert_eq!(body["error"]["code"], "plugin-failed");
    assert_eq!(
        post_json(&engine, "/orders", r#"{"crash": false}"#).await,
        (200, json!({"ok": true}))
    );
    assert!(has_line(
        &metrics(&engine).await,
        "slipway_engine_node_errors_total{node=\"boom\"} 1"
    ));
}

/// Posts `{"qty": 2}` to `/orders` from a task of its own.
fn order_in_background(
    engine: &EngineProcess,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let request = reqwest::Client::new()
        .post(engine.url("/orders"))
        .body(r#"{"qty": 2}"#);
    tokio::spawn(request.send())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_requests_in_flight_and_refuses_new_ones() {
    let arrived = Arc::new(Notify::new());
    let upstream = upstream(Duration::from_millis(1500), arrived.clone()).await;
    let (_, dir) = bundle(calling(upstream), &[], &[]).await;
    let engine = EngineProcess::start(dir.path(), &[]).await;
    let in_flight = order_in_background(&engine);
    arrived.notified().await;
    engine.terminate();
    // The listener closes: new connections are refused while the request drains.
    let address = engine.address;
    let refused = tokio::time::timeout(Duration::from_secs(1), async {
        while tokio::net::TcpStream::connect(address).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "still accepting after SIGTERM");
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"quoted": 6})
    );
    let status = engine.stop(Duration::from_secs(5));
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_is_bounded() {
    let arrived = Arc::new(Notify::new());
    let upstream = upstream(Duration::from_secs(30), arrived.clone()).await;
    let (_, dir) = bundle(calling(upstream), &[], &[]).await;
    let engine = EngineProcess::start(dir.path(), &["--drain-seconds", "1"]).await;
    let stuck = order_in_background(&engine);
    arrived.notified().await;
    let logs = engine.logs.clone();
    let status = tokio::task::spawn_blocking(move || engine.stop(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        stuck.await.unwrap().is_err(),
        "the stuck request was cut off"
    );
    let cut = logs.lock().unwrap().iter().any(|r| {
        r["message"] == "stopped: drain time ran out, requests cut off" && r["in_flight"] == 1
    });
    assert!(cut, "the cut-off is logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn precompiled_code_is_used_and_its_absence_logged() {
    let (_, dir) = bundle(
        json!({"nodes": [trigger(), {"id": "t", "type": "transform@^1", "config": {"expression": "."}}],
               "edges": [{"from": "in", "to": "t"}]}),
        &[],
        &[],
    )
    .await;
    // An empty code directory: compiled at start, and said so.
    let scratch = dir.path().join("scratch");
    let engine = EngineProcess::start(dir.path(), &["--code", scratch.to_str().unwrap()]).await;
    let compiled = engine
        .logged("no precompiled code for this engine: compiled the component")
        .expect("compiling is logged");
    assert_eq!(compiled["level"], "WARN");
    assert!(engine.stop(Duration::from_secs(5)).success());

    // `precompile` fills the bundle's `code/`; a start from it compiles nothing.
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_slipway-engine"))
        .args(["precompile", "--bundle"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let code = slipway_engine::Bundle::at(dir.path()).code;
    assert_eq!(
        std::fs::read_dir(&code).unwrap().count(),
        2,
        "one file per component"
    );
    let engine = EngineProcess::start(dir.path(), &["--code", code.to_str().unwrap()]).await;
    assert!(
        engine
            .logged("no precompiled code for this engine: compiled the component")
            .is_none()
    );
    let precompiled = engine
        .logs
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r["message"] == "loaded precompiled code")
        .count();
    assert_eq!(precompiled, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_that_cannot_run_stops_the_engine_with_a_clear_error() {
    let (flow, dir) = bundle(json!({"nodes": [trigger()]}), &[], &[]).await;
    let run = |dir: &std::path::Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_slipway-engine"))
            .arg("--bundle")
            .arg(dir)
            .env("PORT", "0")
            .env("SLIPWAY_BIND", "127.0.0.1")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let last = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .unwrap();
        assert_eq!(last["level"], "ERROR");
        last["message"].as_str().unwrap().to_string()
    };
    let bundle = slipway_engine::Bundle::at(dir.path());
    let component = slipway_engine::loader::component_path(&bundle.plugins, &flow.plugins[0]);
    std::fs::write(&component, b"\0asm tampered").unwrap();
    let message = run(dir.path());
    assert!(
        message.starts_with("plugin http-trigger@1.0.0: sha256 is "),
        "{message}"
    );

    let mut broken = serde_json::to_value(&flow).unwrap();
    broken["nodes"][0]["plugin"] = json!("http-trigger");
    std::fs::write(&bundle.flow, broken.to_string()).unwrap();
    let message = run(dir.path());
    assert!(
        message.contains("not a flow document: at `nodes[0].plugin`"),
        "{message}"
    );

    let mut reserved = serde_json::to_value(&flow).unwrap();
    reserved["nodes"][0]["node"]["path"] = json!("/metrics");
    std::fs::write(&bundle.flow, reserved.to_string()).unwrap();
    let message = run(dir.path());
    assert_eq!(
        message,
        "trigger `in`: path `/metrics`: the engine answers this path itself"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_copy_still_running_is_waited_for_by_the_drain() {
    // `in` feeds `reply` (answers at once) and `quote` (a slow upstream).
    let arrived = Arc::new(Notify::new());
    let upstream = upstream(Duration::from_millis(1500), arrived.clone()).await;
    let flow = json!({
        "nodes": [trigger(),
            {"id": "reply", "type": "transform@^1", "config": {"expression": "{accepted: true}"}},
            {"id": "quote", "type": "http-call@^1", "config": {"url": format!("http://{upstream}/quote")}}],
        "edges": [{"from": "in", "to": "reply"}, {"from": "in", "to": "quote"}]
    });
    let (_, dir) = bundle(flow, &[], &[]).await;
    let engine = EngineProcess::start(dir.path(), &[]).await;
    assert_eq!(
        post_json(&engine, "/orders", r#"{"qty": 2}"#).await,
        (200, json!({"accepted": true}))
    );
    arrived.notified().await;
    // Answered, but its copy is still with the upstream: the drain waits.
    let logs = engine.logs.clone();
    let started = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || engine.stop(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "it waited for the copy"
    );
    let drained = logs
        .lock()
        .unwrap()
        .iter()
        .any(|r| r["message"] == "stopped: every request answered");
    assert!(drained, "the copy ran to its end before the exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_slow_clients_do_not_stop_healthz() {
    let (_, dir) = bundle(transform_chain(), &[], &[]).await;
    // Long enough to open and trickle 5,000 clients on a loaded machine.
    let engine = EngineProcess::start(dir.path(), &["--header-read-timeout-secs", "15"]).await;
    let slow = slow_clients::healthz_answers_beside_5000(engine.address).await;
    let open = slow_clients::still_open_after(&slow, Duration::from_secs(30)).await;
    assert_eq!(open, 0, "the header-read timeout closed every slow client");
    assert!(engine.stop(Duration::from_secs(10)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped_and_slow_or_idle_ones_closed() {
    let upstream = upstream(Duration::from_secs(30), Arc::new(Notify::new())).await;
    let (_, dir) = bundle(calling(upstream), &[], &[]).await;
    let limits = [
        "--max-connections",
        "4",
        "--header-read-timeout-secs",
        "2",
        "--request-timeout-secs",
        "1",
    ];
    let engine = EngineProcess::start(dir.path(), &limits).await;

    // A flow slower than the request timeout is answered, naming the limit.
    let (status, body) = post_json(&engine, "/orders", r#"{"qty": 1}"#).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "request-timeout");

    // A kept-alive connection left idle is closed by the header-read timeout.
    let mut idle = tokio::net::TcpStream::connect(engine.address)
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut idle, b"GET /healthz HTTP/1.1\r\nHost: idle\r\n\r\n")
        .await
        .unwrap();
    let open = slow_clients::still_open_after(std::slice::from_ref(&idle), Duration::from_secs(6));
    assert_eq!(open.await, 0, "the idle connection was closed");

    // Four silent clients take every connection: a fifth waits in the
    // backlog until the timeout closes them, then is served.
    let silent = slow_clients::open(engine.address, 4).await;
    let waiting = slow_clients::healthz(engine.address, Duration::from_millis(800)).await;
    assert_eq!(waiting, None, "a fifth connection is not served at once");
    let (status, _) = slow_clients::healthz(engine.address, Duration::from_secs(8))
        .await
        .expect("served once the silent clients are closed");
    assert_eq!(status, 200);
    let open = slow_clients::still_open_after(&silent, Duration::from_secs(1)).await;
    assert_eq!(open, 0);
    assert!(engine.stop(Duration::from_secs(10)).success());
}

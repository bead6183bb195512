//! Organisations share the plugin runtime: one organisation's plugins that
//! sleep, spin or loop on a slow host hold only that organisation's part of
//! the call slots, so another organisation validates and releases at its
//! usual pace, and every hostile call ends at its cap.
//!
//! Needs `docker-registry` (Debian) and what `tests/support/src/static_engine.rs`
//! needs.

use crate::common;
use crate::releasing;
use slipway_test_support::registry;

use std::time::{Duration, Instant};

use registry::TestRegistry;
use releasing::Releaser;
use serde_json::{Value, json};
use slipway_runtime::{Egress, RuntimeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The wall-clock cap of a call in this test.
const WALL: Duration = Duration::from_secs(3);

/// A host that answers every request, a second late.
async fn slow_host() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    port
}

/// A canvas whose one node misbehaves as `config` says when validated.
fn hostile_canvas(config: Value) -> Value {
    json!({
        "nodes": [
            {"id": "in", "type": "http-trigger@^1", "config": {"method": "POST", "path": "/hog"}},
            {"id": "hog", "type": "hostile@^1", "config": config}
        ],
        "edges": [{"from": "in", "to": "hog"}]
    })
}

/// How long `work` takes.
async fn timed<T>(work: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let out = work.await;
    (out, started.elapsed())
}

/// A server whose own organisation (B) releases to a registry on loopback,
/// its calls capped at [`WALL`]. It runs 64 calls at once, 32 of them (the
/// default share) for one organisation: fewer slots than A's calls, so
/// without shares A would hold them all.
async fn server_with_registry() -> (Releaser, TestRegistry) {
    let server = Releaser::start_on(RuntimeConfig {
        call_time_limit: WALL,
        max_concurrent_calls: 64,
        egress: Egress::loopback(),
        ..RuntimeConfig::default()
    })
    .await;
    let registry = TestRegistry::htpasswd("ci", "hunter2-registry");
    let (status, body) = server
        .call(
            "PUT",
            "/api/v1/registry",
            json!({"adapter": "distribution", "settings": {"url": format!("http://{}", registry.address), "namespace": "flows", "username": "ci"},
                   "secrets": {"password": "hunter2-registry"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    (server, registry)
}

/// Organisation A: the hostile node type uploaded and granted `slow_port`,
/// and an integration of each name whose canvas misbehaves as its config
/// says. Answers A's admin token.
async fn hostile_organisation(
    server: &Releaser,
    slow_port: u16,
    canvases: &[(&str, Value)],
) -> String {
    let a = server.state.store.create_organisation("hog").unwrap().token;
    let call = async |method: &str, path: &str, content_type: &str, body: Vec<u8>| {
        common::call(&server.state, method, path, Some(&a), content_type, body).await
    };
    let wasm = std::fs::read(slipway_plugin_artifacts::test_guest("hostile").unwrap()).unwrap();
    let (status, body) = call("POST", "/api/v1/plugins", "application/wasm", wasm).await;
    assert_eq!(status, 201, "{body}");
    let grant = json!({"allowed-hosts": [format!("127.0.0.1:{slow_port}")]});
    let path = "/api/v1/plugins/node-type/hostile/allowed-hosts";
    let (status, body) = call("PUT", path, "application/json", grant.to_string().into()).await;
    assert_eq!(status, 200, "{body}");
    for (name, config) in canvases {
        let made = json!({"name": name}).to_string();
        let (status, _) = call(
            "POST",
            "/api/v1/integrations",
            "application/json",
            made.into(),
        )
        .await;
        assert_eq!(status, 201);
        let canvas = hostile_canvas(config.clone()).to_string();
        let path = format!("/api/v1/integrations/{name}/versions");
        let (status, body) = call("POST", &path, "application/json", canvas.into()).await;
        assert_eq!(status, 201, "{body}");
    }
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_organisations_hostile_calls_leave_another_at_its_pace() {
    let (server, _registry) = server_with_registry().await;
    let validate_b = async || {
        let path = "/api/v1/integrations/orders/versions/1/validate";
        let (status, answer) = server.call("POST", path, Value::Null).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["valid"], true, "{answer}");
    };
    let release_b = async || {
        let release = server.release("orders").await;
        assert_eq!(release["status"], "ready", "{release}");
    };
    // The usual pace, once the code and the registry are warm.
    validate_b().await;
    release_b().await;
    let ((), validate_alone) = timed(validate_b()).await;
    let ((), release_alone) = timed(release_b()).await;

    // Organisation A's node type sleeps, spins or fetches a slow host for ever.
    let port = slow_host().await;
    let url = format!("http://127.0.0.1:{port}/");
    let modes = [
        ("sleep", json!({"mode": "sleep", "stage": "validate"})),
        ("spin", json!({"mode": "spin", "stage": "validate"})),
        (
            "fetch",
            json!({"mode": "fetch-forever", "stage": "validate", "url": url}),
        ),
    ];
    let a = hostile_organisation(&server, port, &modes).await;

    // 300 validations from A at once, 100 of each kind.
    let mut hogs = tokio::task::JoinSet::new();
    for i in 0..300 {
        let state = server.state.clone();
        let token = a.clone();
        let name = modes[i % 3].0;
        hogs.spawn(async move {
            let path = format!("/api/v1/integrations/{name}/versions/1/validate");
            (
                name,
                common::call(&state, "POST", &path, Some(&token), "", "").await,
            )
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let ((), validate_beside) = timed(validate_b()).await;
    let ((), release_beside) = timed(release_b()).await;
    let slack = Duration::from_secs(2);
    assert!(
        validate_beside <= validate_alone + slack,
        "B's validation took {validate_beside:?} beside A's calls, {validate_alone:?} alone"
    );
    assert!(
        release_beside <= release_alone + slack,
        "B's release took {release_beside:?} beside A's calls, {release_alone:?} alone"
    );

    // Every one of A's calls ended at its cap, and said which.
    let mut ended = 0;
    while let Some(joined) = hogs.join_next().await {
        let (name, (status, answer)) = joined.unwrap();
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["valid"], false, "{answer}");
        let message = answer["diagnostics"][0]["message"].as_str().unwrap();
        let cap = match name {
            "spin" => "ran past its 200 ms deadline",
            _ => "ran past the 3000 ms a call may take in all",
        };
        assert!(message.contains(cap), "{name}: {message}");
        ended += 1;
    }
    assert_eq!(ended, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_queued_releases_delay_another_organisation_by_one_at_most() {
    let (server, _registry) = server_with_registry().await;
    // Each of A's releases takes the wall-clock cap to fail its packaging.
    let slow = [("slow", json!({"mode": "sleep", "stage": "validate"}))];
    let a = hostile_organisation(&server, slow_host().await, &slow).await;
    let mut queued = Vec::new();
    for _ in 0..1_000 {
        let asked = common::release_body("slow", 1).to_string();
        let (status, accepted) = common::call(
            &server.state,
            "POST",
            "/api/v1/releases",
            Some(&a),
            "application/json",
            asked,
        )
        .await;
        assert_eq!(status, 202, "{accepted}");
        queued.push(accepted["id"].as_u64().unwrap());
    }

    let b = server
        .settled(server.start_release("orders", 1).await)
        .await;
    assert_eq!(b["status"], "ready", "{b}");
    let asked = b["created_ms"].as_u64().unwrap();
    let started = b["stages"][0]["started_ms"].as_u64().unwrap();
    assert!(
        started - asked <= WALL.as_millis() as u64 + 2_000,
        "B's release waited {} ms: more than one of A's",
        started - asked
    );
    // Of A's releases, only those already being handed a slot as B's was
    // asked for (one per slot at most) started while B's waited.
    let mut overtook = Vec::new();
    for id in &queued {
        let path = format!("/api/v1/releases/{id}");
        let (_, release) = common::call(&server.state, "GET", &path, Some(&a), "", "").await;
        if let Some(at) = release["stages"][0]["started_ms"].as_u64()
            && at > asked
            && at < started
        {
            overtook.push(*id);
        }
    }
    let slots = slipway::config::DEFAULT_RELEASE_CONCURRENCY;
    assert!(
        overtook.len() <= slots,
        "A's releases {overtook:?} started while B's waited"
    );

    // A's backlog is deleted rather than left to run.
    for id in queued {
        let path = format!("/api/v1/releases/{id}");
        common::call(&server.state, "DELETE", &path, Some(&a), "", "").await;
    }
}
